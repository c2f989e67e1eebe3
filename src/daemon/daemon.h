/* SPDX-License-Identifier: MIT */
#ifndef MAILAUDITD_H
#define MAILAUDITD_H

/*
 * mailauditd's parts: the event loop and batching (mailauditd.c), sensor
 * connections and the spool (ingest.c), and the control socket with
 * policy changes (control.c).  One thread; the store is touched only here.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ma-conf.h"
#include "ma-store.h"

#define INGEST_RECV_BATCH 32

enum conn_kind {
	CONN_INGEST,
	CONN_CONTROL,
};

struct conn {
	int fd;
	enum conn_kind kind;
	pid_t pid;
	uid_t uid;
	uint64_t
	    received;   /* record frames stored in the open batch or earlier */
	uint64_t acked; /* last count acknowledged */
	bool in_batch;  /* has records in the open batch */
	bool closing;
	struct conn *next_dirty;
	struct conn *prev, *next;
};

/* A spool file whose records are in the open batch: unlinked on commit. */
struct spooled {
	char *path;
	struct spooled *next;
};

struct daemon {
	struct ma_conf conf;
	struct ma_store *store;
	int epfd;
	int ingest_fd, control_fd, signal_fd;
	struct conn *conns;
	struct conn *dead; /* closed, freed by reap() */
	unsigned int conn_count, control_count;
	int64_t accept_resume_ms; /* 0: accepting */

	/* The open batch. */
	bool batch_open;
	uint64_t batch_records;
	int64_t batch_start_ms, batch_deadline_ms;
	struct conn *dirty;
	struct spooled *spooled;

	int64_t next_spool_scan_ms;
	int64_t next_purge_ms;
	bool quit;

	/* Counters for status. */
	uint64_t stored_total, duplicates_total, rejected_total;
	uint64_t spool_files_total;

	char *recvbuf;
	/* recvmmsg buffers: INGEST_RECV_BATCH frames of the maximum size */
	char *recvbufs[INGEST_RECV_BATCH];
};

/* mailauditd.c */
int daemon_batch_begin(struct daemon *d);
/* daemon_batch_abort - roll back the open batch (no-op when none). */
void daemon_batch_abort(struct daemon *d);
int daemon_batch_add(
    struct daemon *d, struct ma_record *rec, struct conn *from);
int daemon_batch_commit(struct daemon *d);
void daemon_conn_close(struct daemon *d, struct conn *c, const char *why);

/* ingest.c */
void ingest_accept(struct daemon *d, int listen_fd, enum conn_kind kind);
void ingest_accept_resume(struct daemon *d);
void ingest_readable(struct daemon *d, struct conn *c);
void ingest_send_acks(struct daemon *d);
void spool_scan(struct daemon *d);
void spool_commit(struct daemon *d, bool success);
/* spool_count - files waiting to be drained, and quarantined ones. */
void spool_count(
    struct daemon *d, unsigned int *pending_r, unsigned int *bad_r);

/* control.c */
void control_readable(struct daemon *d, struct conn *c);
int control_write_snapshot(struct daemon *d);

#endif
