/* SPDX-License-Identifier: MIT */
#ifndef JOURNAL_H
#define JOURNAL_H

/*
 * The journal report spool and its delivery threads.
 *
 * A report is written into <spool>/tmp, fdatasync()ed and renamed into
 * <spool>/new before the milter lets Postfix accept the message, so an
 * accepted message always has its report on disk.  A few threads deliver
 * <spool>/new over LMTP sessions they keep open while there is work,
 * oldest first, or (journal_store = imap) in IMAP APPEND batches of many
 * reports each; a temporary failure keeps the file and backs off (1 s
 * doubling to 5 min), a permanent one moves it to
 * <spool>/failed and says so in the log.  <spool>/status holds the
 * counters that `mailauditctl journal-status` shows.
 */

#include <stdbool.h>
#include <stddef.h>
#include "ma-journal.h"
#include "ma-util.h"

struct journal;
struct journal_file;

struct journal_opts {
	const char *spool_dir;
	const char *lmtp; /* LMTP target (journal_store = lmtp) */
	const char *helo;
	/* journal_store = imap: APPEND batches of up to batch reports */
	bool imap;
	const char *imap_target, *master_user, *password_file, *mailbox;
	unsigned int batch;
	/* a batch not full yet waits this long for more (IMAP only) */
	unsigned int batch_delay_ms;
	enum ma_mailbox_names names; /* report recipient -> IMAP user */
	const struct ma_domains *local;
};

/* Reads the IMAP password file: call before dropping privileges. */
struct journal *journal_create(
    const struct journal_opts *opts, struct ma_error *err);
/* Start the delivery threads. */
void journal_start(struct journal *j);
/* Stop the threads (finishing deliveries in progress) and free. */
void journal_destroy(struct journal **j);

/* A new report for rcpt; NULL with err set on failure. */
struct journal_file *journal_file_open(
    struct journal *j, const char *rcpt, struct ma_error *err);
int journal_file_write(struct journal_file *f, const void *data, size_t len);
/* Make it durable and hand it to the delivery threads; frees f. */
int journal_file_commit(
    struct journal *j, struct journal_file **f, struct ma_error *err);
/* Throw an unfinished report away; accepts NULL. */
void journal_file_abort(struct journal_file **f);

#endif
