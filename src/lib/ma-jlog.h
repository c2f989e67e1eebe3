/* SPDX-License-Identifier: MIT */
#ifndef MA_JLOG_H
#define MA_JLOG_H

/*
 * The journal log: an append-only spool of journal items (reports and
 * copies) in segment files, with group commit.  Many threads append,
 * each waiting until its item is on disk (fdatasync), but concurrent
 * appends share one fdatasync; one reader takes items in order and
 * consumes them once the mail store has them.  Compared with a file per
 * item (create, fdatasync, rename, directory sync, unlink) an item costs
 * one write and a share of one fdatasync.
 *
 * Layout of the directory: NNNNNNNNNNNNNNNN.log segments (hex, in order),
 * "cursor" ("SEGMENT OFFSET": the first item not yet consumed).  An item:
 *
 *   MAJ1 <len> <crc32 hex> <time ms> <rcpt>\r\n<len bytes>\r\n
 *
 * After a crash the tail of the last segment may hold an item that was
 * never acknowledged (its fdatasync did not return): the checksum finds
 * it and the reader skips it.  A restart always appends to a new segment.
 * The cursor is replaced atomically but not synced: after a crash a few
 * items may be stored twice, never lost.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ma-util.h"

#define MA_JLOG_RCPT_MAX 400

struct ma_jlog;

struct ma_jlog_item {
	char rcpt[MA_JLOG_RCPT_MAX + 1];
	int64_t time_ms; /* when it was appended */
	int fd;          /* its segment, open for reading; owned by the log */
	uint64_t off;    /* where the item's bytes start in fd */
	uint64_t len;
	uint64_t seg, next; /* the position after it */
};

/*
 * ma_jlog_open - open (creating) the log in dir, finding where the reader
 * stopped and how many items wait.  NULL with err on failure.
 */
struct ma_jlog *ma_jlog_open(const char *dir, struct ma_error *err);
void ma_jlog_close(struct ma_jlog **l);

/*
 * ma_jlog_append - append one item and return once it is on disk (0), or
 * -1 with err (the item then does not count as stored).  Thread-safe.
 */
int ma_jlog_append(struct ma_jlog *l, const char *rcpt, const void *data,
    size_t len, struct ma_error *err);

/*
 * ma_jlog_peek - up to max items from the reader's position, durable, in
 * order, all for the recipient of the first, together at most max_bytes
 * (but at least one).  0 when there is nothing to take.  Reader only.
 */
size_t ma_jlog_peek(struct ma_jlog *l, struct ma_jlog_item *items, size_t max,
    uint64_t max_bytes);

/* ma_jlog_consume - the items up to and including last are done. */
void ma_jlog_consume(
    struct ma_jlog *l, const struct ma_jlog_item *last, size_t count);

/* Items appended (durable or about to be) and not yet consumed. */
uint64_t ma_jlog_pending(struct ma_jlog *l);

/*
 * ma_jlog_scan - for status tools, without opening the log for writing:
 * items after the cursor in dir and the oldest one's time (0 if none).
 */
int ma_jlog_scan(const char *dir, uint64_t *pending_r, int64_t *oldest_ms_r,
    struct ma_error *err);

#endif
