/* SPDX-License-Identifier: MIT */
#ifndef MA_STORE_H
#define MA_STORE_H

/*
 * The audit store: SQLite in WAL mode.  mailauditd is its only writer;
 * mailauditctl opens it read-only to search (WAL lets readers run beside
 * the writer).  Records get a monotonic sequence number (never reused,
 * even after purges) and keep their sensor-chosen id, which is unique: a
 * record delivered twice (socket and spool) is stored once.  The policy
 * (mailboxes, organisation settings, bypass list) lives in the same file.
 * Schema: docs/SCHEMA.md.
 */

#include <stdbool.h>
#include <stdint.h>
#include "ma-policy.h"
#include "ma-record.h"
#include "ma-util.h"

struct ma_store;

struct ma_store_options {
	bool readonly;
	bool sync_full;     /* synchronous=FULL (else NORMAL) */
	uint64_t cache_kib; /* page cache size */
	/*
	 * Checkpoint the WAL from a thread of the store's own (with its own
	 * connection) instead of inside the writer's COMMIT: the writer
	 * never pays for copying pages into the database file.
	 */
	bool checkpoint_thread;
	/*
	 * Commit without waiting for the disk (synchronous=NORMAL) and leave
	 * durability to the caller: ma_store_sync, typically on a thread of
	 * its own while the next transaction is being written.  A commit
	 * counts as durable only once a later ma_store_sync has returned 0.
	 */
	bool deferred_sync;
};

/*
 * ma_store_open - open (creating and migrating the schema unless
 * readonly).  NULL with err on failure.  Owned: ma_store_destroy.
 */
struct ma_store *ma_store_open(const char *path,
    const struct ma_store_options *opts, struct ma_error *err);
void ma_store_destroy(struct ma_store **store);

/* Batches: every insert between begin and commit lands atomically. */
int ma_store_begin(struct ma_store *store, struct ma_error *err);
int ma_store_commit(struct ma_store *store, struct ma_error *err);
void ma_store_rollback(struct ma_store *store);

/*
 * ma_store_insert - store rec (validated by the caller); only between
 * ma_store_begin and ma_store_commit, which also writes the batch's
 * index entries.  *dup_r is set
 * when a record with the same id is already there (then nothing changes).
 * On success rec->seq holds the new sequence number.
 */
int ma_store_insert(struct ma_store *store, struct ma_record *rec,
    int64_t received_ms, bool *dup_r, struct ma_error *err);

/*
 * A record as the store keeps it: strings decoded and validated, items
 * and properties already in their stored form (detail: the item=/prop=
 * lines of ma_proto_encode_detail, detail_len bytes, NULL for none).
 * mailauditd prepares rows on its event thread so that its writer thread
 * does only SQLite work.  The store copies nothing it is not asked to
 * keep: the strings must live until the insert returns.
 */
struct ma_store_row {
	uint8_t id[16];
	int64_t time_ms;
	const char *operation, *user, *mailbox; /* required */
	const char *folder, *dest_folder, *dest_mailbox;
	const char *session, *client_ip, *client_info, *protocol, *server;
	enum ma_result result;
	enum ma_logon logon_type;
	uint32_t count, item_count;
	const char *detail;
	size_t detail_len;
};

/*
 * ma_store_insert_row - ma_store_insert for a prepared row: *seq_r is the
 * new sequence number, or 0 when the id is already stored (a duplicate;
 * nothing changes).
 */
int ma_store_insert_row(struct ma_store *store, const struct ma_store_row *row,
    int64_t received_ms, int64_t *seq_r, struct ma_error *err);

/*
 * ma_store_sync - make every transaction committed before the call
 * durable: fdatasync of the WAL (and, the first time, of its directory,
 * which holds a WAL file the process may have just created).  It uses only
 * a file descriptor of its own, so one other thread may call it while
 * the writer works on the store.  -1 with err on failure: commits since
 * the last successful call may be lost on a power failure.
 */
int ma_store_sync(struct ma_store *store, struct ma_error *err);

/*
 * ma_store_insert_rows - insert n prepared rows, in order, several per
 * statement; *stored_r counts the new ones (the rest were duplicates).
 * Sequence numbers are assigned as by ma_store_insert_row, without gaps.
 */
int ma_store_insert_rows(struct ma_store *store,
    const struct ma_store_row *rows, size_t n, int64_t received_ms,
    size_t *stored_r, struct ma_error *err);

/* Search filters; zero/NULL members do not filter. */
struct ma_query {
	const char *const *mailboxes;
	unsigned int mailbox_count;
	const char *const *users;
	unsigned int user_count;
	const char *const *operations;
	unsigned int operation_count;
	unsigned int logon_mask;  /* bit n = LogonType n; 0 = any */
	int result;               /* enum ma_result, or -1 for any */
	int64_t start_ms, end_ms; /* [start, end); 0 = open */
	const char *client_ip;
	const char *session;
	const char *text; /* substring of subject, folder, Message-ID, ... */
	bool newest_first;
	int64_t cursor; /* seq: continue after (oldest-first) or before it */
	uint32_t limit; /* rows per page; 0 = no limit */
};

/* Called per row; a non-zero return stops the search (and is returned). */
typedef int ma_store_row_fn(void *ctx, const struct ma_record *rec);

/*
 * ma_store_search - run q, calling fn for up to q->limit rows in order.
 * *matched_r is the number of records matching the filters beyond the
 * cursor (all pages), so a caller can always say what is left.  Counting
 * reads every match: a caller that pages through a large store without
 * needing the total (mailaudit-forward) passes matched_r NULL, and a page
 * after a cursor with no filter is then one range scan of the rowid.
 */
int ma_store_search(struct ma_store *store, const struct ma_query *q,
    ma_store_row_fn *fn, void *ctx, uint64_t *matched_r, struct ma_error *err);

/*
 * ma_store_read_after - the records after seq cursor, oldest first, into
 * recs[0..max) (initialised by the caller, each reset before it is
 * filled; they own their strings); *n_r is how many.  What
 * mailaudit-forward pages through the store with: no filters and no
 * count, one statement prepared once per store, the names of operation,
 * user and mailbox taken from a cache by id.  -1 with err (then *n_r is
 * 0 and the records are to be treated as unset).
 */
int ma_store_read_after(struct ma_store *store, int64_t cursor,
    struct ma_record *recs, size_t max, size_t *n_r, struct ma_error *err);

/* Policy. */
struct ma_org_policy {
	bool audit_disabled;
	enum ma_preset preset;
};
int ma_store_org_get(
    struct ma_store *store, struct ma_org_policy *org_r, struct ma_error *err);
int ma_store_org_put(struct ma_store *store, const struct ma_org_policy *org,
    struct ma_error *err);

/* 1 found, 0 unknown mailbox, -1 error.  Default sets follow the preset. */
int ma_store_mailbox_get(struct ma_store *store, const char *name,
    struct ma_mailbox_policy *mp_r, struct ma_error *err);
int ma_store_mailbox_put(struct ma_store *store, const char *name,
    const struct ma_mailbox_policy *mp, struct ma_error *err);
int ma_store_mailbox_remove(
    struct ma_store *store, const char *name, struct ma_error *err);
typedef int ma_store_mailbox_fn(
    void *ctx, const char *name, const struct ma_mailbox_policy *mp);
int ma_store_mailbox_foreach(struct ma_store *store, ma_store_mailbox_fn *fn,
    void *ctx, struct ma_error *err);

/* 1 = present. */
int ma_store_bypass_has(
    struct ma_store *store, const char *name, struct ma_error *err);
int ma_store_bypass_set(
    struct ma_store *store, const char *name, bool on, struct ma_error *err);
typedef int ma_store_name_fn(void *ctx, const char *name);
int ma_store_bypass_foreach(struct ma_store *store, ma_store_name_fn *fn,
    void *ctx, struct ma_error *err);

/*
 * ma_store_purge - delete records older than their mailbox's age limit,
 * never younger than min_days.  Runs in chunks of its own transactions
 * (call outside a batch) and stops once max_rows are deleted (0: no
 * limit), so a caller can interleave other work.  *deleted_r counts
 * deleted records.  With a purge guard set, it first asks the guard for
 * the highest sequence number it may delete and never goes above it; a
 * guard that fails stops the purge (-1, nothing deleted).
 */
int ma_store_purge(struct ma_store *store, int64_t now_ms, uint32_t min_days,
    uint64_t max_rows, uint64_t *deleted_r, struct ma_error *err);

/*
 * A purge guard: 1 with *max_seq_r = the highest seq retention may
 * delete, 0 for no limit, -1 with err when the limit cannot be known
 * (then nothing is deleted).  mailauditd's guard is the lowest cursor of
 * the forward destinations (docs/FORWARDING.md, "Retention").
 */
typedef int ma_store_purge_guard_fn(
    void *ctx, int64_t *max_seq_r, struct ma_error *err);
void ma_store_set_purge_guard(
    struct ma_store *store, ma_store_purge_guard_fn *fn, void *ctx);
/*
 * ma_store_purge_held - after a purge: true if the guard kept a record
 * that was otherwise due (*limit_r, if not NULL, the guard's limit).
 */
bool ma_store_purge_held(const struct ma_store *store, int64_t *limit_r);

/* ma_store_last_seq - the highest stored sequence number (0: none); cheap. */
int ma_store_last_seq(
    struct ma_store *store, int64_t *last_seq_r, struct ma_error *err);

/* Number of records and the highest sequence number (counts every row). */
int ma_store_stats(struct ma_store *store, uint64_t *count_r,
    int64_t *last_seq_r, struct ma_error *err);

#endif
