/* SPDX-License-Identifier: MIT */
/*
 * ma-store.c - the SQLite audit store.
 *
 * Workload: one writer (mailauditd) inserting records in batches of up to
 * tens of thousands per transaction, and occasional readers searching by
 * mailbox, user, operation and time.  Records are append-only apart from
 * retention purges.  Every statement is prepared with bound parameters;
 * search SQL is assembled only from fixed fragments, never from values.
 *
 * Items and properties are kept in one "detail" column in the wire
 * encoding (item=/prop= lines): compact, lossless, and free-text search can
 * match subjects and Message-IDs there without a join.
 */

#include "ma-store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ma-proto.h"

#define SCHEMA_VERSION 3
/*
 * Records: the INSERT of one row (INSERT_COLS parameters), and of
 * INSERT_ROWS rows in one statement, which saves the per-statement work
 * (cursors, halt) for all but one of them.
 */
#define INSERT_HEAD                                                            \
	"INSERT INTO records (id, time_ms, received_ms, operation, result,"    \
	" logon_type, user, mailbox, folder, dest_folder, dest_mailbox,"       \
	" session, client_ip, client_info, protocol, server, count,"           \
	" item_count, detail, seq) VALUES"
#define INSERT_COLS 20
#define INSERT_ROWS 32

/* WAL length (frames) at which the writer completes a checkpoint. */
#define WAL_RESTART_FRAMES 16384
#define MA_STR_(x)         #x
#define MA_STR(x)          MA_STR_(x)

struct checkpointer {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
	char *path;
};

/*
 * Secondary indexes.  Maintaining a B-tree index per row on random keys
 * (mailbox, user) costs more than the row itself; instead each batch's
 * (key, seq) pairs are collected and, at commit, written as posting
 * lists: one row per key and batch, (k, first seq, JSON array of the
 * batch's seqs for k), so a mailbox with 40 records in a batch costs one
 * index row, not 40.  Names are interned (names table) so index keys are
 * small integers.  Search expands the lists with json_each.
 */
enum index_kind {
	INDEX_MAILBOX,
	INDEX_USER,
	INDEX_OPERATION,
	INDEX_COUNT
};

static const char *const index_table[INDEX_COUNT] = {
    "idx_mailbox", "idx_user", "idx_operation"};

struct index_entry {
	int64_t key, seq;
};

struct pending {
	struct index_entry *v;
	size_t count, cap;
};

/* name -> id cache of the writer; emptied on rollback. */
struct name_slot {
	char *name;
	int64_t id;
};

/* Names by id kept by ma_store_read_after (a power of two). */
#define NAME_CACHE 4096

struct ma_store {
	sqlite3 *db;
	bool readonly;
	struct checkpointer *ckpt;
	int wal_frames; /* frames in the WAL after the last commit */
	/* ma_store_sync's own: the WAL's path and descriptor (opened on
	   first use, under the lock, since two threads may sync). */
	char *wal_path;
	pthread_mutex_t wal_lock;
	int wal_fd;
	sqlite3_stmt *insert, *name_get, *name_put;
	sqlite3_stmt *insert_many; /* INSERT_ROWS records */
	sqlite3_stmt *delete_seqs;
	sqlite3_stmt *index_put[INDEX_COUNT];
	sqlite3_stmt *index_put_many[INDEX_COUNT]; /* INDEX_ROWS rows */
	struct pending pending[INDEX_COUNT];
	struct ma_buf postings; /* JSON arrays of the rows being written */
	struct name_slot *names;
	size_t name_count, name_cap;
	/* ma_store_read_after's: its statement, and names by id (a name's
	   id never changes and names are never deleted, so a cached entry
	   stays right for as long as the store is open) */
	sqlite3_stmt *read_after, *name_by_id;
	struct name_slot *id_cache; /* NAME_CACHE slots, by id modulo */
	struct ma_buf detail;
	/*
	 * Sequence numbers are assigned here, not by AUTOINCREMENT (which
	 * costs a sqlite_sequence update per row): next_seq starts above
	 * both the highest stored seq and the high-water mark retention
	 * saves before it deletes, so a number is never reused.
	 */
	int64_t next_seq, batch_first_seq;
	/* Retention's limit (ma_store_set_purge_guard) and what it kept. */
	ma_store_purge_guard_fn *guard;
	void *guard_ctx;
	bool purge_held;
	int64_t purge_held_seq;
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS records ("
    " seq INTEGER PRIMARY KEY,"
    " id BLOB NOT NULL,"
    " time_ms INTEGER NOT NULL,"
    " received_ms INTEGER NOT NULL,"
    " operation INTEGER NOT NULL,"
    " result INTEGER NOT NULL,"
    " logon_type INTEGER NOT NULL,"
    " user INTEGER NOT NULL,"
    " mailbox INTEGER NOT NULL,"
    " folder TEXT, dest_folder TEXT, dest_mailbox TEXT,"
    " session TEXT, client_ip TEXT, client_info TEXT, protocol TEXT,"
    " server TEXT,"
    " count INTEGER NOT NULL DEFAULT 0,"
    " item_count INTEGER NOT NULL DEFAULT 0,"
    " detail TEXT"
    ") STRICT;"
    "CREATE UNIQUE INDEX IF NOT EXISTS records_id ON records(id);"
    "CREATE INDEX IF NOT EXISTS records_time ON records(time_ms);"
    "CREATE TABLE IF NOT EXISTS names ("
    " id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE) STRICT;"
    "CREATE TABLE IF NOT EXISTS idx_mailbox (b INTEGER NOT NULL,"
    " k INTEGER NOT NULL, seq INTEGER NOT NULL, seqs TEXT NOT NULL,"
    " PRIMARY KEY (b, k, seq)) WITHOUT ROWID, STRICT;"
    "CREATE TABLE IF NOT EXISTS idx_user (b INTEGER NOT NULL,"
    " k INTEGER NOT NULL, seq INTEGER NOT NULL, seqs TEXT NOT NULL,"
    " PRIMARY KEY (b, k, seq)) WITHOUT ROWID, STRICT;"
    "CREATE TABLE IF NOT EXISTS idx_operation (b INTEGER NOT NULL,"
    " k INTEGER NOT NULL, seq INTEGER NOT NULL, seqs TEXT NOT NULL,"
    " PRIMARY KEY (b, k, seq)) WITHOUT ROWID, STRICT;"
    "CREATE TABLE IF NOT EXISTS mailboxes ("
    " name TEXT PRIMARY KEY,"
    " type TEXT NOT NULL,"
    " enabled INTEGER NOT NULL,"
    " age_limit_days INTEGER NOT NULL,"
    " owner_set TEXT, delegate_set TEXT, admin_set TEXT"
    ") STRICT;"
    "CREATE TABLE IF NOT EXISTS settings ("
    " key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;"
    "CREATE TABLE IF NOT EXISTS bypass ("
    " name TEXT PRIMARY KEY) STRICT;";

static int
db_error(struct ma_store *store, struct ma_error *err, const char *what)
{
	return ma_error_set(
	    err, "store: %s: %s", what, sqlite3_errmsg(store->db));
}

static int
exec(struct ma_store *store, const char *sql, struct ma_error *err)
{
	char *msg = NULL;

	if (sqlite3_exec(store->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		ma_error_set(err, "store: %s", msg != NULL ? msg : "exec");
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int
prepare(struct ma_store *store, const char *sql, sqlite3_stmt **stmt_r,
    struct ma_error *err)
{
	if (sqlite3_prepare_v3(store->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
		stmt_r, NULL) != SQLITE_OK)
		return db_error(store, err, "prepare");
	return 0;
}

static int
setup_schema(struct ma_store *store, struct ma_error *err)
{
	sqlite3_stmt *st;
	int version = 0;

	if (prepare(store, "PRAGMA user_version", &st, err) < 0)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version > SCHEMA_VERSION)
		return ma_error_set(err,
		    "store: schema version %d is newer "
		    "than this program (%d)",
		    version, SCHEMA_VERSION);
	/* Version 1 kept one index row per record and name; there is no
	   in-place conversion (the store format is new): refuse rather than
	   mix the two. */
	if (version != 0 && version < SCHEMA_VERSION)
		return ma_error_set(err,
		    "store: schema version %d is from an older mailauditd; "
		    "this one needs version %d: move the old store (and its "
		    "-wal and -shm files) aside, keep it for mailauditctl of "
		    "that version, and start with a new store",
		    version, SCHEMA_VERSION);
	if (store->readonly)
		return 0;
	if (exec(store, "BEGIN", err) < 0)
		return -1;
	if (exec(store, schema_sql, err) < 0 ||
	    exec(store, "PRAGMA user_version = " MA_STR(SCHEMA_VERSION), err) <
		0) {
		exec(store, "ROLLBACK", NULL);
		return -1;
	}
	return exec(store, "COMMIT", err);
}

static int
configure(struct ma_store *store, const struct ma_store_options *opts,
    struct ma_error *err)
{
	char sql[128];

	/* The writer must not stall its event loop for long behind an
	   outside lock (a backup, a sqlite3 shell): fail, and let the sensors
	   spool.  Readers can afford to wait. */
	sqlite3_busy_timeout(store->db, store->readonly ? 5000 : 1000);
	snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%llu",
	    (unsigned long long)(opts->cache_kib != 0 ? opts->cache_kib
						      : 16384));
	if (exec(store, sql, err) < 0)
		return -1;
	if (store->readonly)
		return 0;
	if (exec(store, "PRAGMA journal_mode = WAL", err) < 0 ||
	    exec(store,
		opts->sync_full && !opts->deferred_sync
		    ? "PRAGMA synchronous = FULL"
		    : "PRAGMA synchronous = NORMAL",
		err) < 0 ||
	    exec(store, "PRAGMA foreign_keys = OFF", err) < 0)
		return -1;
	return 0;
}

/*
 * checkpoint_main - every 200 ms (or when woken) copy committed WAL
 * frames into the database file, on a connection of its own.  PASSIVE
 * never blocks the writer or readers; what it cannot copy now it copies
 * next time.
 */
static void *
checkpoint_main(void *arg)
{
	struct checkpointer *ck = arg;
	struct timespec ts;
	sqlite3 *db = NULL;

	if (sqlite3_open_v2(ck->path, &db,
		SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
		NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 100);
	/* A connection learns that the file is in WAL mode only when it
	   first reads it; until then a checkpoint is a no-op. */
	sqlite3_exec(
	    db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
	pthread_mutex_lock(&ck->lock);
	while (!ck->stop) {
		ma_deadline(CLOCK_REALTIME, 200, &ts);
		pthread_cond_timedwait(&ck->wake, &ck->lock, &ts);
		if (ck->stop)
			break;
		pthread_mutex_unlock(&ck->lock);
		sqlite3_wal_checkpoint_v2(
		    db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		pthread_mutex_lock(&ck->lock);
	}
	pthread_mutex_unlock(&ck->lock);
	sqlite3_close(db);
	return NULL;
}

/* wal_hook - after each commit: how long the WAL is now */
static int
wal_hook(void *ctx, sqlite3 *db, const char *name, int frames)
{
	struct ma_store *store = ctx;

	(void)db;
	(void)name;
	store->wal_frames = frames;
	return SQLITE_OK;
}

static int
checkpointer_start(
    struct ma_store *store, const char *path, struct ma_error *err)
{
	struct checkpointer *ck = ma_xcalloc(1, sizeof(*ck));
	sigset_t all, old;
	int rc;

	ck->path = ma_xstrdup(path);
	pthread_mutex_init(&ck->lock, NULL);
	pthread_cond_init(&ck->wake, NULL);
	/* The thread takes no signals: they stay with the program's own
	   threads (a daemon that blocks SIGTERM for its signalfd must not
	   have it delivered here, where it would kill the process). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&ck->thread, NULL, checkpoint_main, ck);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		free(ck->path);
		free(ck);
		return ma_error_set(err, "store: cannot start checkpointer");
	}
	store->ckpt = ck;
	if (exec(store, "PRAGMA wal_autocheckpoint = 0", err) < 0)
		return -1;
	sqlite3_wal_hook(store->db, wal_hook, store);
	return 0;
}

static void
checkpointer_stop(struct ma_store *store)
{
	struct checkpointer *ck = store->ckpt;

	if (ck == NULL)
		return;
	pthread_mutex_lock(&ck->lock);
	ck->stop = true;
	pthread_cond_signal(&ck->wake);
	pthread_mutex_unlock(&ck->lock);
	pthread_join(ck->thread, NULL);
	pthread_mutex_destroy(&ck->lock);
	pthread_cond_destroy(&ck->wake);
	free(ck->path);
	free(ck);
	store->ckpt = NULL;
}

/* Name interning. */

static uint64_t
name_hash(const char *s)
{
	return ma_hash_str(s);
}

static void
names_clear(struct ma_store *store)
{
	for (size_t i = 0; i < store->name_cap; i++)
		free(store->names[i].name);
	free(store->names);
	store->names = NULL;
	store->name_count = store->name_cap = 0;
}

static struct name_slot *
names_find(struct ma_store *store, const char *name)
{
	size_t mask = store->name_cap - 1;
	size_t i = (size_t)name_hash(name) & mask;

	while (store->names[i].name != NULL &&
	       strcmp(store->names[i].name, name) != 0)
		i = (i + 1) & mask;
	return &store->names[i];
}

static void
names_add(struct ma_store *store, const char *name, int64_t id)
{
	struct name_slot *old = store->names, *slot;
	size_t old_cap = store->name_cap;

	/* Bounded: a store with millions of distinct names simply starts
	   over rather than growing without limit. */
	if (store->name_count >= 1000000)
		names_clear(store), old = NULL, old_cap = 0;
	if ((store->name_count + 1) * 2 > store->name_cap) {
		store->name_cap =
		    store->name_cap == 0 ? 1024 : store->name_cap * 2;
		store->names = ma_xcalloc(store->name_cap, sizeof(*slot));
		store->name_count = 0;
		for (size_t i = 0; i < old_cap; i++) {
			if (old[i].name == NULL)
				continue;
			*names_find(store, old[i].name) = old[i];
			store->name_count++;
		}
		free(old);
	}
	slot = names_find(store, name);
	slot->name = ma_xstrdup(name);
	slot->id = id;
	store->name_count++;
}

/* intern - the id of name, adding it to the names table if new */
static int
intern(struct ma_store *store, const char *name, int64_t *id_r,
    struct ma_error *err)
{
	int rc;

	if (store->name_cap > 0) {
		struct name_slot *slot = names_find(store, name);

		if (slot->name != NULL) {
			*id_r = slot->id;
			return 0;
		}
	}
	sqlite3_bind_text(store->name_get, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(store->name_get);
	if (rc == SQLITE_ROW)
		*id_r = sqlite3_column_int64(store->name_get, 0);
	sqlite3_reset(store->name_get);
	if (rc == SQLITE_DONE) {
		sqlite3_bind_text(store->name_put, 1, name, -1, SQLITE_STATIC);
		rc = sqlite3_step(store->name_put);
		sqlite3_reset(store->name_put);
		if (rc != SQLITE_DONE)
			return db_error(store, err, "intern");
		*id_r = sqlite3_last_insert_rowid(store->db);
	} else if (rc != SQLITE_ROW) {
		return db_error(store, err, "intern");
	}
	names_add(store, name, *id_r);
	return 0;
}

static void
pending_add(struct pending *p, int64_t key, int64_t seq)
{
	if (p->count == p->cap) {
		p->cap = p->cap == 0 ? 1024 : p->cap * 2;
		p->v = ma_xrealloc(p->v, p->cap, sizeof(*p->v));
	}
	p->v[p->count].key = key;
	p->v[p->count].seq = seq;
	p->count++;
}

/*
 * sort_entries - p's entries by key, keeping seq order within a key: an
 * LSD radix sort over the key's bytes in use (name ids are small), which
 * is stable, and entries arrive in seq order.  tmp: scratch of p->count.
 */
static void
sort_entries(struct pending *p, struct index_entry *tmp)
{
	struct index_entry *src = p->v, *dst = tmp, *swap;
	uint64_t max = 0;
	size_t count[256];

	for (size_t i = 0; i < p->count; i++) {
		if ((uint64_t)p->v[i].key > max)
			max = (uint64_t)p->v[i].key;
	}
	for (unsigned int shift = 0; shift < 64 && (max >> shift) != 0;
	     shift += 8) {
		size_t sum = 0;

		memset(count, 0, sizeof(count));
		for (size_t i = 0; i < p->count; i++)
			count[((uint64_t)src[i].key >> shift) & 0xff]++;
		for (int b = 0; b < 256; b++) {
			size_t c = count[b];

			count[b] = sum;
			sum += c;
		}
		for (size_t i = 0; i < p->count; i++)
			dst[count[((uint64_t)src[i].key >> shift) & 0xff]++] =
			    src[i];
		swap = src;
		src = dst;
		dst = swap;
	}
	if (src != p->v)
		memcpy(p->v, src, p->count * sizeof(*p->v));
}

/* Posting rows per multi-row INSERT: one statement step for many rows. */
#define INDEX_ROWS 64

/*
 * Posting rows are clustered by bucket, seq >> BUCKET_SHIFT: a batch's
 * rows all land in the current bucket's part of the table, a few hundred
 * pages, instead of at the end of every name's range all over the table
 * (which made each commit rewrite a page per active name).  A search
 * looks a name up once per bucket.  No row spans two buckets.
 */
#define BUCKET_SHIFT 16

/* A posting row: bucket, key, first seq, its JSON array's text. */
struct posting {
	int64_t bucket, key, seq;
	size_t off, len;
};

/* put_postings - n rows with one step of st (4n parameters) */
static int
put_postings(struct ma_store *store, sqlite3_stmt *st, const struct posting *r,
    size_t n, struct ma_error *err)
{
	int rc;

	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_int64(st, (int)(4 * i + 1), r[i].bucket);
		sqlite3_bind_int64(st, (int)(4 * i + 2), r[i].key);
		sqlite3_bind_int64(st, (int)(4 * i + 3), r[i].seq);
		sqlite3_bind_text(st, (int)(4 * i + 4),
		    store->postings.data + r[i].off, (int)r[i].len,
		    SQLITE_STATIC);
	}
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : db_error(store, err, "index");
}

/*
 * build_postings - group p's entries (sorted by key, then seq) into one
 * row per key and bucket; the rows go to rows (room for p->count), their
 * arrays to store->postings.  The number of rows, -1 if the text is too
 * large.
 */
static long
build_postings(
    struct ma_store *store, const struct pending *p, struct posting *rows)
{
	struct ma_buf *b = &store->postings;
	size_t n = 0;

	ma_buf_reset(b);
	for (size_t i = 0; i < p->count;) {
		struct posting *r = &rows[n++];
		size_t j = i;

		r->key = p->v[i].key;
		r->seq = p->v[i].seq;
		r->bucket = r->seq >> BUCKET_SHIFT;
		r->off = b->len;
		if (ma_buf_putc(b, '[') < 0)
			return -1;
		for (; j < p->count && p->v[j].key == r->key &&
		       p->v[j].seq >> BUCKET_SHIFT == r->bucket;
		     j++) {
			if ((j > i && ma_buf_putc(b, ',') < 0) ||
			    ma_buf_put_u64(b, (uint64_t)p->v[j].seq) < 0)
				return -1;
		}
		if (ma_buf_putc(b, ']') < 0)
			return -1;
		r->len = b->len - r->off;
		i = j;
	}
	return (long)n;
}

/* flush_indexes - the batch's (key, seq) pairs into the posting tables */
static int
flush_indexes(struct ma_store *store, struct ma_error *err)
{
	struct posting *rows = NULL;
	struct index_entry *tmp = NULL;
	size_t cap = 0;
	int ret = 0;

	for (int k = 0; k < INDEX_COUNT && ret == 0; k++) {
		struct pending *p = &store->pending[k];
		size_t i = 0;
		long n;

		if (p->count == 0)
			continue;
		if (p->count > cap) {
			cap = p->count;
			rows = ma_xrealloc(rows, cap, sizeof(*rows));
			tmp = ma_xrealloc(tmp, cap, sizeof(*tmp));
		}
		sort_entries(p, tmp);
		n = build_postings(store, p, rows);
		if (n < 0) {
			ret = ma_error_set(err, "store: index batch too large");
			break;
		}
		for (; i + INDEX_ROWS <= (size_t)n && ret == 0; i += INDEX_ROWS)
			ret = put_postings(store, store->index_put_many[k],
			    &rows[i], INDEX_ROWS, err);
		for (; i < (size_t)n && ret == 0; i++)
			ret = put_postings(
			    store, store->index_put[k], &rows[i], 1, err);
		p->count = 0;
	}
	free(rows);
	free(tmp);
	return ret;
}

static void
pending_clear(struct ma_store *store)
{
	for (int k = 0; k < INDEX_COUNT; k++)
		store->pending[k].count = 0;
}

static int
prepare_writer(struct ma_store *store, struct ma_error *err)
{
	char sql[128];
	struct ma_buf many;

	ma_buf_init(&many, 64 * 1024);
	ma_buf_puts(&many, INSERT_HEAD);
	for (int i = 0; i < INSERT_ROWS; i++)
		ma_buf_puts(&many, i == 0 ? " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
					    "?,?,?,?)"
					  : ",(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
					    "?,?,?,?)");
	ma_buf_puts(&many, " ON CONFLICT(id) DO NOTHING");
	if (prepare(store, many.data, &store->insert_many, err) < 0) {
		ma_buf_deinit(&many);
		return -1;
	}
	ma_buf_deinit(&many);
	if (prepare(store, "DELETE FROM records WHERE seq BETWEEN ? AND ?",
		&store->delete_seqs, err) < 0)
		return -1;
	if (prepare(store, "SELECT id FROM names WHERE name = ?",
		&store->name_get, err) < 0 ||
	    prepare(store, "INSERT INTO names (name) VALUES (?)",
		&store->name_put, err) < 0)
		return -1;
	for (int k = 0; k < INDEX_COUNT; k++) {
		snprintf(sql, sizeof(sql),
		    "INSERT INTO %s (b, k, seq, seqs) VALUES (?, ?, ?, ?)",
		    index_table[k]);
		if (prepare(store, sql, &store->index_put[k], err) < 0)
			return -1;
		ma_buf_init(&many, 4096);
		ma_buf_printf(&many, "INSERT INTO %s (b, k, seq, seqs) VALUES",
		    index_table[k]);
		for (int i = 0; i < INDEX_ROWS; i++)
			ma_buf_puts(
			    &many, i == 0 ? " (?,?,?,?)" : ",(?,?,?,?)");
		if (prepare(store, many.data, &store->index_put_many[k], err) <
		    0) {
			ma_buf_deinit(&many);
			return -1;
		}
		ma_buf_deinit(&many);
	}
	return 0;
}

static int
load_next_seq(struct ma_store *store, struct ma_error *err)
{
	sqlite3_stmt *st;
	int64_t high = 0;
	int rc;

	if (prepare(store,
		"SELECT max(coalesce((SELECT max(seq) FROM records), 0),"
		" coalesce((SELECT CAST(value AS INTEGER) FROM settings"
		" WHERE key = 'seq_high'), 0))",
		&st, err) < 0)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		high = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return db_error(store, err, "sequence");
	store->next_seq = store->batch_first_seq = high + 1;
	return 0;
}

struct ma_store *
ma_store_open(
    const char *path, const struct ma_store_options *opts, struct ma_error *err)
{
	static bool configured;
	struct ma_store *store = ma_xcalloc(1, sizeof(*store));
	int flags = opts->readonly ? SQLITE_OPEN_READONLY
				   : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;

	/* Memory statistics take a global mutex on every allocation; we never
	   read them.  Only possible before SQLite initialises (else a no-op).
	 */
	if (!configured) {
		sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
		configured = true;
	}
	store->readonly = opts->readonly;
	store->wal_fd = -1;
	pthread_mutex_init(&store->wal_lock, NULL);
	store->wal_path = ma_xmalloc(strlen(path) + 5);
	memcpy(store->wal_path, path, strlen(path));
	memcpy(store->wal_path + strlen(path), "-wal", 5);
	ma_buf_init(&store->detail, 4 * 1024 * 1024);
	ma_buf_init(&store->postings, 64 * 1024 * 1024);
	if (sqlite3_open_v2(path, &store->db, flags | SQLITE_OPEN_NOMUTEX,
		NULL) != SQLITE_OK) {
		ma_error_set(err, "store: open %s: %s", path,
		    store->db != NULL ? sqlite3_errmsg(store->db)
				      : "out of memory");
		ma_store_destroy(&store);
		return NULL;
	}
	if (configure(store, opts, err) < 0 || setup_schema(store, err) < 0 ||
	    (!store->readonly &&
		prepare(store,
		    INSERT_HEAD " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
				" ON CONFLICT(id) DO NOTHING",
		    &store->insert, err) < 0) ||
	    (!store->readonly && prepare_writer(store, err) < 0) ||
	    (!store->readonly && load_next_seq(store, err) < 0) ||
	    (opts->checkpoint_thread && !store->readonly &&
		checkpointer_start(store, path, err) < 0)) {
		ma_store_destroy(&store);
		return NULL;
	}
	return store;
}

void
ma_store_destroy(struct ma_store **storep)
{
	struct ma_store *store = *storep;

	if (store == NULL)
		return;
	checkpointer_stop(store);
	sqlite3_finalize(store->insert);
	sqlite3_finalize(store->insert_many);
	sqlite3_finalize(store->delete_seqs);
	sqlite3_finalize(store->name_get);
	sqlite3_finalize(store->name_put);
	sqlite3_finalize(store->read_after);
	sqlite3_finalize(store->name_by_id);
	if (store->id_cache != NULL) {
		for (size_t i = 0; i < NAME_CACHE; i++)
			free(store->id_cache[i].name);
		free(store->id_cache);
	}
	for (int k = 0; k < INDEX_COUNT; k++) {
		sqlite3_finalize(store->index_put[k]);
		sqlite3_finalize(store->index_put_many[k]);
		free(store->pending[k].v);
	}
	names_clear(store);
	sqlite3_close(store->db);
	if (store->wal_fd >= 0)
		close(store->wal_fd);
	pthread_mutex_destroy(&store->wal_lock);
	free(store->wal_path);
	ma_buf_deinit(&store->detail);
	ma_buf_deinit(&store->postings);
	free(store);
	*storep = NULL;
}

/* fsync_dir - make the directory entry of path durable */
static int
fsync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd, rc;

	if (slash == NULL)
		dir = ma_xstrdup(".");
	else if (slash == path)
		dir = ma_xstrdup("/");
	else
		dir = ma_xstrndup(path, (size_t)(slash - path));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

int
ma_store_sync(struct ma_store *store, struct ma_error *err)
{
	int fd;

	pthread_mutex_lock(&store->wal_lock);
	if (store->wal_fd < 0) {
		/* SQLite keeps the WAL file (same inode) for as long as the
		   store is open; it is created by the first commit. */
		store->wal_fd =
		    open(store->wal_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (store->wal_fd < 0 || fsync_dir(store->wal_path) < 0) {
			ma_error_set(err, "store: sync: open %s: %s",
			    store->wal_path, strerror(errno));
			if (store->wal_fd >= 0)
				close(store->wal_fd);
			store->wal_fd = -1;
			pthread_mutex_unlock(&store->wal_lock);
			return -1;
		}
	}
	fd = store->wal_fd;
	pthread_mutex_unlock(&store->wal_lock);
	/* fdatasync flushes the file's data whichever descriptor wrote it. */
	if (fdatasync(fd) < 0)
		return ma_error_set(err, "store: sync %s: %s", store->wal_path,
		    strerror(errno));
	return 0;
}

int
ma_store_begin(struct ma_store *store, struct ma_error *err)
{
	store->batch_first_seq = store->next_seq;
	return exec(store, "BEGIN IMMEDIATE", err);
}

int
ma_store_commit(struct ma_store *store, struct ma_error *err)
{
	if (!store->readonly && flush_indexes(store, err) < 0)
		return -1;
	if (exec(store, "COMMIT", err) < 0)
		return -1;
	/*
	 * Under sustained load the checkpoint thread never quite catches up
	 * with the WAL's end, and SQLite starts writing the WAL from its
	 * beginning again only once everything is copied.  So now and then
	 * the writer copies the rest itself, between transactions (PASSIVE:
	 * never waits for readers; if one pins the WAL, the next try goes).
	 */
	if (store->ckpt != NULL && store->wal_frames >= WAL_RESTART_FRAMES) {
		sqlite3_wal_checkpoint_v2(
		    store->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		store->wal_frames = 0;
	}
	return 0;
}

void
ma_store_rollback(struct ma_store *store)
{
	if (!sqlite3_get_autocommit(store->db))
		exec(store, "ROLLBACK", NULL);
	if (!store->readonly) {
		/* Names and numbers handed out in the batch are gone with it.
		 */
		pending_clear(store);
		names_clear(store);
		store->next_seq = store->batch_first_seq;
	}
}

static void
bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s == NULL)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* intern_row - check row's sizes and look up its three name ids */
static int
intern_row(struct ma_store *store, const struct ma_store_row *row,
    int64_t key[INDEX_COUNT], struct ma_error *err)
{
	if (row->detail_len > INT32_MAX)
		return ma_error_set(err, "store: record detail too large");
	if (intern(store, row->mailbox, &key[INDEX_MAILBOX], err) < 0 ||
	    intern(store, row->user, &key[INDEX_USER], err) < 0 ||
	    intern(store, row->operation, &key[INDEX_OPERATION], err) < 0)
		return -1;
	return 0;
}

/* bind_row - row's INSERT_COLS parameters, after the first base */
static void
bind_row(sqlite3_stmt *st, int base, const struct ma_store_row *row,
    const int64_t key[INDEX_COUNT], int64_t received_ms, int64_t seq)
{
	/* Every parameter is bound on every call, so the statements never
	   need sqlite3_clear_bindings. */
	sqlite3_bind_blob(st, base + 1, row->id, 16, SQLITE_STATIC);
	sqlite3_bind_int64(st, base + 2, row->time_ms);
	sqlite3_bind_int64(st, base + 3, received_ms);
	sqlite3_bind_int64(st, base + 4, key[INDEX_OPERATION]);
	sqlite3_bind_int(st, base + 5, (int)row->result);
	sqlite3_bind_int(st, base + 6, (int)row->logon_type);
	sqlite3_bind_int64(st, base + 7, key[INDEX_USER]);
	sqlite3_bind_int64(st, base + 8, key[INDEX_MAILBOX]);
	bind_text(st, base + 9, row->folder);
	bind_text(st, base + 10, row->dest_folder);
	bind_text(st, base + 11, row->dest_mailbox);
	bind_text(st, base + 12, row->session);
	bind_text(st, base + 13, row->client_ip);
	bind_text(st, base + 14, row->client_info);
	bind_text(st, base + 15, row->protocol);
	bind_text(st, base + 16, row->server);
	sqlite3_bind_int64(st, base + 17, row->count);
	sqlite3_bind_int64(st, base + 18, row->item_count);
	if (row->detail == NULL || row->detail_len == 0)
		sqlite3_bind_null(st, base + 19);
	else
		sqlite3_bind_text(st, base + 19, row->detail,
		    (int)row->detail_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, base + 20, seq);
}

int
ma_store_insert_row(struct ma_store *store, const struct ma_store_row *row,
    int64_t received_ms, int64_t *seq_r, struct ma_error *err)
{
	sqlite3_stmt *st = store->insert;
	int64_t key[INDEX_COUNT];
	int rc;

	/* Index entries are written at commit: no batch, no indexes. */
	if (sqlite3_get_autocommit(store->db))
		return ma_error_set(err, "store: insert outside a batch");
	if (intern_row(store, row, key, err) < 0)
		return -1;
	bind_row(st, 0, row, key, received_ms, store->next_seq);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_error(store, err, "insert");
	if (sqlite3_changes(store->db) == 0) {
		*seq_r = 0;
		return 0;
	}
	*seq_r = store->next_seq++;
	for (int k = 0; k < INDEX_COUNT; k++)
		pending_add(&store->pending[k], key[k], *seq_r);
	return 0;
}

/*
 * insert_chunk - INSERT_ROWS rows with one step of the multi-row INSERT.
 * 1 if all were new; 0 if any was a duplicate, and then nothing of the
 * chunk is left in the table (the caller inserts it row by row, so that
 * sequence numbers have no gaps); -1 on error.
 */
static int
insert_chunk(struct ma_store *store, const struct ma_store_row *rows,
    int64_t received_ms, struct ma_error *err)
{
	sqlite3_stmt *st = store->insert_many;
	int64_t key[INSERT_ROWS][INDEX_COUNT], first = store->next_seq;
	int rc, changes;

	for (int j = 0; j < INSERT_ROWS; j++) {
		if (intern_row(store, &rows[j], key[j], err) < 0)
			return -1;
		bind_row(st, j * INSERT_COLS, &rows[j], key[j], received_ms,
		    first + j);
	}
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return db_error(store, err, "insert");
	changes = sqlite3_changes(store->db);
	if (changes == INSERT_ROWS) {
		for (int j = 0; j < INSERT_ROWS; j++) {
			for (int k = 0; k < INDEX_COUNT; k++)
				pending_add(
				    &store->pending[k], key[j][k], first + j);
		}
		store->next_seq += INSERT_ROWS;
		return 1;
	}
	if (changes > 0) {
		sqlite3_bind_int64(store->delete_seqs, 1, first);
		sqlite3_bind_int64(
		    store->delete_seqs, 2, first + INSERT_ROWS - 1);
		rc = sqlite3_step(store->delete_seqs);
		sqlite3_reset(store->delete_seqs);
		if (rc != SQLITE_DONE)
			return db_error(store, err, "insert");
	}
	return 0;
}

int
ma_store_insert_rows(struct ma_store *store, const struct ma_store_row *rows,
    size_t n, int64_t received_ms, size_t *stored_r, struct ma_error *err)
{
	size_t i = 0, end;
	int64_t seq;
	int r;

	*stored_r = 0;
	if (sqlite3_get_autocommit(store->db))
		return ma_error_set(err, "store: insert outside a batch");
	while (i < n) {
		end = i + 1;
		if (n - i >= INSERT_ROWS) {
			r = insert_chunk(store, &rows[i], received_ms, err);
			if (r < 0)
				return -1;
			end = i + INSERT_ROWS;
			if (r == 1) {
				*stored_r += INSERT_ROWS;
				i = end;
				continue;
			}
		}
		for (; i < end; i++) {
			if (ma_store_insert_row(
				store, &rows[i], received_ms, &seq, err) < 0)
				return -1;
			if (seq != 0)
				(*stored_r)++;
		}
	}
	return 0;
}

int
ma_store_insert(struct ma_store *store, struct ma_record *rec,
    int64_t received_ms, bool *dup_r, struct ma_error *err)
{
	struct ma_store_row row = {
	    .time_ms = rec->time_ms,
	    .operation = rec->operation,
	    .user = rec->user,
	    .mailbox = rec->mailbox,
	    .folder = rec->folder,
	    .dest_folder = rec->dest_folder,
	    .dest_mailbox = rec->dest_mailbox,
	    .session = rec->session,
	    .client_ip = rec->client_ip,
	    .client_info = rec->client_info,
	    .protocol = rec->protocol,
	    .server = rec->server,
	    .result = rec->result,
	    .logon_type = rec->logon_type,
	    .count = rec->count,
	    .item_count = rec->item_count,
	};
	int64_t seq;

	memcpy(row.id, rec->id, sizeof(row.id));
	ma_buf_reset(&store->detail);
	if (ma_proto_encode_detail(rec, &store->detail) < 0)
		return ma_error_set(err, "store: record detail too large");
	row.detail = store->detail.data;
	row.detail_len = store->detail.len;
	if (ma_store_insert_row(store, &row, received_ms, &seq, err) < 0)
		return -1;
	*dup_r = seq == 0;
	if (seq != 0)
		rec->seq = seq;
	return 0;
}

/* Search. */

#define MAX_BINDS 256

struct sql_builder {
	struct ma_buf sql;
	const char *text[MAX_BINDS];
	int64_t num[MAX_BINDS];
	bool is_num[MAX_BINDS];
	int n;
	bool overflow;
};

static void
sb_text(struct sql_builder *b, const char *s)
{
	if (b->n == MAX_BINDS) {
		b->overflow = true;
		return;
	}
	b->is_num[b->n] = false;
	b->text[b->n++] = s;
}

static void
sb_num(struct sql_builder *b, int64_t v)
{
	if (b->n == MAX_BINDS) {
		b->overflow = true;
		return;
	}
	b->is_num[b->n] = true;
	b->num[b->n++] = v;
}

static void
sb_sql(struct sql_builder *b, const char *s)
{
	if (ma_buf_puts(&b->sql, s) < 0)
		b->overflow = true;
}

/*
 * sb_indexed - a name filter through the posting lists of its index
 * table: for every bucket from the first to the last, the rows of the
 * names' ids, expanded with json_each:
 *   AND seq IN (WITH RECURSIVE bk(n) AS (SELECT min(b) FROM <table>
 *   UNION ALL SELECT n + 1 FROM bk WHERE n < (SELECT max(b) FROM
 *   <table>)) SELECT j.value FROM bk, <table> x, json_each(x.seqs) j
 *   WHERE x.b = bk.n AND x.k IN (SELECT id FROM names WHERE name IN
 *   (?,...)))
 * table is one of the fixed index table names, never a value.
 */
static void
sb_indexed(struct sql_builder *b, const char *table, const char *const *vals,
    unsigned int count)
{
	if (count == 0)
		return;
	sb_sql(b, " AND seq IN (WITH RECURSIVE bk(n) AS (SELECT min(b) FROM ");
	sb_sql(b, table);
	sb_sql(b, " UNION ALL SELECT n + 1 FROM bk WHERE n < (SELECT max(b)"
		  " FROM ");
	sb_sql(b, table);
	sb_sql(b, ")) SELECT j.value FROM bk, ");
	sb_sql(b, table);
	sb_sql(b, " x, json_each(x.seqs) j WHERE x.b = bk.n AND x.k IN"
		  " (SELECT id FROM names WHERE name IN (");
	for (unsigned int i = 0; i < count; i++) {
		sb_sql(b, i == 0 ? "?" : ",?");
		sb_text(b, vals[i]);
	}
	sb_sql(b, ")))");
}

static void
build_where(struct sql_builder *b, const struct ma_query *q)
{
	sb_sql(b, " WHERE 1");
	sb_indexed(b, "idx_mailbox", q->mailboxes, q->mailbox_count);
	sb_indexed(b, "idx_user", q->users, q->user_count);
	sb_indexed(b, "idx_operation", q->operations, q->operation_count);
	if (q->logon_mask != 0) {
		sb_sql(b, " AND ((1 << logon_type) & ?) != 0");
		sb_num(b, q->logon_mask);
	}
	if (q->result >= 0) {
		sb_sql(b, " AND result = ?");
		sb_num(b, q->result);
	}
	if (q->start_ms != 0) {
		sb_sql(b, " AND time_ms >= ?");
		sb_num(b, q->start_ms);
	}
	if (q->end_ms != 0) {
		sb_sql(b, " AND time_ms < ?");
		sb_num(b, q->end_ms);
	}
	if (q->client_ip != NULL) {
		sb_sql(b, " AND client_ip = ?");
		sb_text(b, q->client_ip);
	}
	if (q->session != NULL) {
		sb_sql(b, " AND session = ?");
		sb_text(b, q->session);
	}
	if (q->text != NULL) {
		/* instr() is a plain substring test: no LIKE wildcards for a
		   user-supplied string to smuggle in. */
		sb_sql(b, " AND (instr(coalesce(detail,''), ?) > 0"
			  " OR instr(coalesce(folder,''), ?) > 0"
			  " OR instr(coalesce(dest_folder,''), ?) > 0"
			  " OR instr(coalesce(client_info,''), ?) > 0)");
		for (int i = 0; i < 4; i++)
			sb_text(b, q->text);
	}
	if (q->cursor != 0) {
		sb_sql(b, q->newest_first ? " AND seq < ?" : " AND seq > ?");
		sb_num(b, q->cursor);
	}
}

static int
sb_prepare(struct ma_store *store, struct sql_builder *b, sqlite3_stmt **st_r,
    struct ma_error *err)
{
	if (b->overflow)
		return ma_error_set(err, "store: search has too many values");
	if (sqlite3_prepare_v2(store->db, b->sql.data, -1, st_r, NULL) !=
	    SQLITE_OK)
		return db_error(store, err, "prepare search");
	for (int i = 0; i < b->n; i++) {
		if (b->is_num[i])
			sqlite3_bind_int64(*st_r, i + 1, b->num[i]);
		else
			sqlite3_bind_text(
			    *st_r, i + 1, b->text[i], -1, SQLITE_STATIC);
	}
	return 0;
}

static const char *
col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

/*
 * row_to_record - fill rec (reset) from a search row; the operation, user
 * and mailbox columns (3, 6, 7) hold the names, or with store not NULL
 * their ids, looked up with name_of.
 */
static int name_of(struct ma_store *store, sqlite3_stmt *st, int col,
    const char **name_r, struct ma_error *err);

static int
row_to_record(struct ma_store *store, sqlite3_stmt *st, struct ma_record *rec,
    struct ma_error *err)
{
	const void *id = sqlite3_column_blob(st, 1);
	const char *detail, *op, *user, *mailbox;

	if (store == NULL) {
		op = col_text(st, 3);
		user = col_text(st, 6);
		mailbox = col_text(st, 7);
	} else if (name_of(store, st, 3, &op, err) < 0 ||
		   name_of(store, st, 6, &user, err) < 0 ||
		   name_of(store, st, 7, &mailbox, err) < 0) {
		return -1;
	}
	rec->seq = sqlite3_column_int64(st, 0);
	if (id != NULL && sqlite3_column_bytes(st, 1) == 16)
		memcpy(rec->id, id, 16);
	rec->time_ms = sqlite3_column_int64(st, 2);
	ma_record_set(rec, &rec->operation, op);
	rec->result = (enum ma_result)sqlite3_column_int(st, 4);
	rec->logon_type = (enum ma_logon)sqlite3_column_int(st, 5);
	ma_record_set(rec, &rec->user, user);
	ma_record_set(rec, &rec->mailbox, mailbox);
	ma_record_set(rec, &rec->folder, col_text(st, 8));
	ma_record_set(rec, &rec->dest_folder, col_text(st, 9));
	ma_record_set(rec, &rec->dest_mailbox, col_text(st, 10));
	ma_record_set(rec, &rec->session, col_text(st, 11));
	ma_record_set(rec, &rec->client_ip, col_text(st, 12));
	ma_record_set(rec, &rec->client_info, col_text(st, 13));
	ma_record_set(rec, &rec->protocol, col_text(st, 14));
	ma_record_set(rec, &rec->server, col_text(st, 15));
	rec->count = (uint32_t)sqlite3_column_int64(st, 16);
	detail = col_text(st, 17);
	if (detail != NULL &&
	    ma_proto_decode_detail(
		rec, detail, (size_t)sqlite3_column_bytes(st, 17), err) < 0)
		return -1;
	return 0;
}

static int
count_matches(struct ma_store *store, const struct ma_query *q,
    uint64_t *matched_r, struct ma_error *err)
{
	struct sql_builder b = {0};
	sqlite3_stmt *st = NULL;
	int ret = 0;

	ma_buf_init(&b.sql, 64 * 1024);
	sb_sql(&b, "SELECT count(*) FROM records");
	build_where(&b, q);
	if (sb_prepare(store, &b, &st, err) < 0)
		ret = -1;
	else if (sqlite3_step(st) == SQLITE_ROW)
		*matched_r = (uint64_t)sqlite3_column_int64(st, 0);
	else
		ret = db_error(store, err, "count");
	sqlite3_finalize(st);
	ma_buf_deinit(&b.sql);
	return ret;
}

int
ma_store_search(struct ma_store *store, const struct ma_query *q,
    ma_store_row_fn *fn, void *ctx, uint64_t *matched_r, struct ma_error *err)
{
	struct sql_builder b = {0};
	sqlite3_stmt *st = NULL;
	struct ma_record rec;
	int rc, ret = 0;

	if (matched_r != NULL && count_matches(store, q, matched_r, err) < 0)
		return -1;
	ma_buf_init(&b.sql, 64 * 1024);
	sb_sql(&b, "SELECT seq, id, time_ms,"
		   " (SELECT name FROM names WHERE id = operation), result,"
		   " logon_type, (SELECT name FROM names WHERE id = user),"
		   " (SELECT name FROM names WHERE id = mailbox),"
		   " folder, dest_folder, dest_mailbox, session,"
		   " client_ip, client_info, protocol, server, count, detail"
		   " FROM records");
	build_where(&b, q);
	sb_sql(&b, q->newest_first ? " ORDER BY seq DESC" : " ORDER BY seq");
	if (q->limit != 0) {
		sb_sql(&b, " LIMIT ?");
		sb_num(&b, q->limit);
	}
	if (sb_prepare(store, &b, &st, err) < 0) {
		ma_buf_deinit(&b.sql);
		return -1;
	}
	ma_record_init(&rec);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		ma_record_reset(&rec);
		if (row_to_record(NULL, st, &rec, err) < 0) {
			ret = -1;
			break;
		}
		ret = fn(ctx, &rec);
		if (ret != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		ret = db_error(store, err, "search");
	ma_record_deinit(&rec);
	sqlite3_finalize(st);
	ma_buf_deinit(&b.sql);
	return ret;
}

/* name_of - the name whose id is in column col, through the cache */
static int
name_of(struct ma_store *store, sqlite3_stmt *st, int col, const char **name_r,
    struct ma_error *err)
{
	int64_t id = sqlite3_column_int64(st, col);
	struct name_slot *slot =
	    &store->id_cache[(uint64_t)id & (NAME_CACHE - 1)];
	int rc;

	if (slot->name != NULL && slot->id == id) {
		*name_r = slot->name;
		return 0;
	}
	sqlite3_bind_int64(store->name_by_id, 1, id);
	rc = sqlite3_step(store->name_by_id);
	if (rc == SQLITE_ROW) {
		free(slot->name);
		slot->name = ma_xstrdup(col_text(store->name_by_id, 0) != NULL
					    ? col_text(store->name_by_id, 0)
					    : "");
		slot->id = id;
	}
	sqlite3_reset(store->name_by_id);
	if (rc == SQLITE_DONE)
		return ma_error_set(err,
		    "store: record refers to name id %lld, which is not in "
		    "the names table",
		    (long long)id);
	if (rc != SQLITE_ROW)
		return db_error(store, err, "name by id");
	*name_r = slot->name;
	return 0;
}

int
ma_store_read_after(struct ma_store *store, int64_t cursor,
    struct ma_record *recs, size_t max, size_t *n_r, struct ma_error *err)
{
	int rc = SQLITE_DONE;
	size_t n = 0;

	*n_r = 0;
	if (store->read_after == NULL) {
		if (prepare(store,
			"SELECT seq, id, time_ms, operation, result,"
			" logon_type, user, mailbox, folder, dest_folder,"
			" dest_mailbox, session, client_ip, client_info,"
			" protocol, server, count, detail FROM records"
			" WHERE seq > ? ORDER BY seq LIMIT ?",
			&store->read_after, err) < 0 ||
		    prepare(store, "SELECT name FROM names WHERE id = ?",
			&store->name_by_id, err) < 0)
			return -1;
		store->id_cache =
		    ma_xcalloc(NAME_CACHE, sizeof(struct name_slot));
	}
	sqlite3_bind_int64(store->read_after, 1, cursor);
	sqlite3_bind_int64(store->read_after, 2, (sqlite3_int64)max);
	while (
	    n < max && (rc = sqlite3_step(store->read_after)) == SQLITE_ROW) {
		ma_record_reset(&recs[n]);
		if (row_to_record(store, store->read_after, &recs[n], err) <
		    0) {
			/* The statement's read transaction ends with it. */
			sqlite3_reset(store->read_after);
			return -1;
		}
		n++;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		db_error(store, err, "read");
		sqlite3_reset(store->read_after);
		return -1;
	}
	sqlite3_reset(store->read_after);
	*n_r = n;
	return 0;
}

/* Policy. */

static int
setting_get(struct ma_store *store, const char *key, char *out, size_t size,
    struct ma_error *err)
{
	sqlite3_stmt *st;
	int rc, ret = 0;

	if (prepare(store, "SELECT value FROM settings WHERE key = ?", &st,
		err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		snprintf(out, size, "%s", col_text(st, 0));
		ret = 1;
	} else if (rc != SQLITE_DONE) {
		ret = db_error(store, err, "settings");
	}
	sqlite3_finalize(st);
	return ret;
}

static int
setting_put(struct ma_store *store, const char *key, const char *value,
    struct ma_error *err)
{
	sqlite3_stmt *st;
	int rc;

	if (prepare(store,
		"INSERT INTO settings (key, value) VALUES (?, ?)"
		" ON CONFLICT(key) DO UPDATE SET value = excluded.value",
		&st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_error(store, err, "settings");
}

int
ma_store_org_get(
    struct ma_store *store, struct ma_org_policy *org_r, struct ma_error *err)
{
	char v[64];
	int r;

	org_r->audit_disabled = false;
	org_r->preset = MA_PRESET_DEFAULT;
	r = setting_get(store, "audit_disabled", v, sizeof(v), err);
	if (r < 0)
		return -1;
	if (r == 1)
		org_r->audit_disabled = strcmp(v, "yes") == 0;
	r = setting_get(store, "preset", v, sizeof(v), err);
	if (r < 0)
		return -1;
	if (r == 1 && ma_preset_lookup(v, &org_r->preset) != 1)
		return ma_error_set(err, "store: bad preset '%s'", v);
	return 0;
}

int
ma_store_org_put(struct ma_store *store, const struct ma_org_policy *org,
    struct ma_error *err)
{
	if (setting_put(store, "audit_disabled",
		org->audit_disabled ? "yes" : "no", err) < 0)
		return -1;
	return setting_put(store, "preset", ma_preset_name(org->preset), err);
}

/* A NULL set column means "the managed default": follow the preset. */
static int
load_set(sqlite3_stmt *st, int col, enum ma_preset preset,
    struct ma_mailbox_policy *mp, enum ma_policy_set set, struct ma_error *err)
{
	const char *text = col_text(st, col);

	if (text == NULL) {
		mp->sets[set] = ma_preset_actions(preset, mp->type, set);
		mp->set_is_default[set] = true;
		return 0;
	}
	mp->set_is_default[set] = false;
	return ma_action_set_parse(text, &mp->sets[set], err);
}

static int
row_to_mailbox(sqlite3_stmt *st, enum ma_preset preset,
    struct ma_mailbox_policy *mp, struct ma_error *err)
{
	memset(mp, 0, sizeof(*mp));
	if (ma_mailbox_type_lookup(col_text(st, 1), &mp->type) != 1)
		return ma_error_set(err, "store: bad mailbox type");
	mp->audit_enabled = sqlite3_column_int(st, 2) != 0;
	mp->age_limit_days = (uint32_t)sqlite3_column_int64(st, 3);
	for (int s = 0; s < MA_SET_COUNT; s++) {
		if (load_set(st, 4 + s, preset, mp, s, err) < 0)
			return -1;
	}
	return 0;
}

#define MAILBOX_COLS                                                           \
	"name, type, enabled, age_limit_days, owner_set, delegate_set,"        \
	" admin_set"

int
ma_store_mailbox_get(struct ma_store *store, const char *name,
    struct ma_mailbox_policy *mp_r, struct ma_error *err)
{
	struct ma_org_policy org;
	sqlite3_stmt *st;
	int rc, ret = 0;

	if (ma_store_org_get(store, &org, err) < 0 ||
	    prepare(store,
		"SELECT " MAILBOX_COLS " FROM mailboxes WHERE name = ?", &st,
		err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = row_to_mailbox(st, org.preset, mp_r, err) < 0 ? -1 : 1;
	else if (rc != SQLITE_DONE)
		ret = db_error(store, err, "mailbox");
	sqlite3_finalize(st);
	return ret;
}

static int
bind_set(sqlite3_stmt *st, int col, const struct ma_mailbox_policy *mp,
    enum ma_policy_set set, struct ma_buf *tmp)
{
	if (mp->set_is_default[set]) {
		sqlite3_bind_null(st, col);
		return 0;
	}
	ma_buf_reset(tmp);
	if (ma_action_set_format(mp->sets[set], tmp) < 0)
		return -1;
	sqlite3_bind_text(st, col, tmp->data, (int)tmp->len, SQLITE_TRANSIENT);
	return 0;
}

int
ma_store_mailbox_put(struct ma_store *store, const char *name,
    const struct ma_mailbox_policy *mp, struct ma_error *err)
{
	sqlite3_stmt *st;
	struct ma_buf tmp;
	int rc = SQLITE_ERROR;

	if (prepare(store,
		"INSERT INTO mailboxes (" MAILBOX_COLS ") VALUES"
		" (?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET"
		" type = excluded.type, enabled = excluded.enabled,"
		" age_limit_days = excluded.age_limit_days,"
		" owner_set = excluded.owner_set,"
		" delegate_set = excluded.delegate_set,"
		" admin_set = excluded.admin_set",
		&st, err) < 0)
		return -1;
	ma_buf_init(&tmp, 4096);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(
	    st, 2, ma_mailbox_type_name(mp->type), -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, mp->audit_enabled ? 1 : 0);
	sqlite3_bind_int64(st, 4, mp->age_limit_days);
	if (bind_set(st, 5, mp, MA_SET_OWNER, &tmp) == 0 &&
	    bind_set(st, 6, mp, MA_SET_DELEGATE, &tmp) == 0 &&
	    bind_set(st, 7, mp, MA_SET_ADMIN, &tmp) == 0)
		rc = sqlite3_step(st);
	sqlite3_finalize(st);
	ma_buf_deinit(&tmp);
	return rc == SQLITE_DONE ? 0 : db_error(store, err, "mailbox put");
}

int
ma_store_mailbox_remove(
    struct ma_store *store, const char *name, struct ma_error *err)
{
	sqlite3_stmt *st;
	int rc;

	if (prepare(store, "DELETE FROM mailboxes WHERE name = ?", &st, err) <
	    0)
		return -1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_error(store, err, "mailbox remove");
}

int
ma_store_mailbox_foreach(struct ma_store *store, ma_store_mailbox_fn *fn,
    void *ctx, struct ma_error *err)
{
	struct ma_org_policy org;
	struct ma_mailbox_policy mp;
	sqlite3_stmt *st;
	int rc, ret = 0;

	if (ma_store_org_get(store, &org, err) < 0 ||
	    prepare(store,
		"SELECT " MAILBOX_COLS " FROM mailboxes ORDER BY name", &st,
		err) < 0)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (row_to_mailbox(st, org.preset, &mp, err) < 0) {
			ret = -1;
			break;
		}
		ret = fn(ctx, col_text(st, 0), &mp);
		if (ret != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		ret = db_error(store, err, "mailboxes");
	sqlite3_finalize(st);
	return ret;
}

int
ma_store_bypass_has(
    struct ma_store *store, const char *name, struct ma_error *err)
{
	sqlite3_stmt *st;
	int rc;

	if (prepare(store, "SELECT 1 FROM bypass WHERE name = ?", &st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : db_error(store, err, "bypass");
}

int
ma_store_bypass_set(
    struct ma_store *store, const char *name, bool on, struct ma_error *err)
{
	sqlite3_stmt *st;
	int rc;

	if (prepare(store,
		on ? "INSERT OR IGNORE INTO bypass (name) VALUES (?)"
		   : "DELETE FROM bypass WHERE name = ?",
		&st, err) < 0)
		return -1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : db_error(store, err, "bypass");
}

int
ma_store_bypass_foreach(struct ma_store *store, ma_store_name_fn *fn, void *ctx,
    struct ma_error *err)
{
	sqlite3_stmt *st;
	int rc, ret = 0;

	if (prepare(store, "SELECT name FROM bypass ORDER BY name", &st, err) <
	    0)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		ret = fn(ctx, col_text(st, 0));
		if (ret != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		ret = db_error(store, err, "bypass");
	sqlite3_finalize(st);
	return ret;
}

/* Retention. */

/*
 * The posting rows holding the seqs of purge_chunk: for each (k, seq), the
 * row of k in seq's bucket with the largest first seq not above seq.  %s:
 * purge_chunk's column with its key, the table, the column again.
 */
#define PURGE_POSTINGS                                                                  \
	" (b, k, seq) IN (SELECT p.seq >> " MA_STR(                                     \
	    BUCKET_SHIFT) ", p.%s,"                                                     \
			  " (SELECT max(x.seq) FROM %s x WHERE x.b = p.seq >> " MA_STR( \
			      BUCKET_SHIFT) " AND x.k = p.%s AND x.seq <= p.seq) FROM purge_chunk p)"

/*
 * purge_chunk - delete the rows listed in purge_chunk and their index
 * entries (taken out of their posting lists; a list left empty goes);
 * runs inside the caller's transaction
 */
static int
purge_chunk(struct ma_store *store, struct ma_error *err)
{
	static const char *const column[INDEX_COUNT] = {
	    "mailbox", "user", "operation"};
	char sql[1024];

	for (int k = 0; k < INDEX_COUNT; k++) {
		const char *t = index_table[k], *c = column[k];

		snprintf(sql, sizeof(sql),
		    "UPDATE %s SET seqs = (SELECT json_group_array(j.value)"
		    " FROM json_each(%s.seqs) j WHERE j.value NOT IN"
		    " (SELECT seq FROM purge_chunk)) WHERE" PURGE_POSTINGS ";"
		    "DELETE FROM %s WHERE seqs = '[]' AND" PURGE_POSTINGS ";",
		    t, t, c, t, c, t, c, t, c);
		if (exec(store, sql, err) < 0)
			return -1;
	}
	return exec(store,
	    "DELETE FROM records WHERE seq IN (SELECT seq FROM purge_chunk);"
	    "DELETE FROM purge_chunk;",
	    err);
}

/*
 * The retention condition, shared by the purge and its held-back check:
 * a record r is due when older than its mailbox's AuditLogAgeLimit (?5
 * days if the mailbox has none), never younger than ?4 days; ?1 bounds
 * the time index range (no limit is shorter than floor_days), ?2 is now,
 * ?3 a day in ms.  ?6 is the guard's limit.  purge_bind binds them.
 */
#define PURGE_DUE                                                              \
	"r.time_ms < ?1 AND r.time_ms < ?2 - ?3 * max(?4, coalesce((SELECT"    \
	" age_limit_days FROM mailboxes m WHERE m.name = (SELECT name FROM"    \
	" names n WHERE n.id = r.mailbox)), ?5))"

static void
purge_bind(sqlite3_stmt *st, int64_t now_ms, uint32_t min_days,
    int64_t floor_days, int64_t limit)
{
	int64_t day = 86400000;

	sqlite3_bind_int64(st, 1, now_ms - floor_days * day);
	sqlite3_bind_int64(st, 2, now_ms);
	sqlite3_bind_int64(st, 3, day);
	sqlite3_bind_int64(st, 4, min_days);
	sqlite3_bind_int64(st, 5, MA_DEFAULT_AGE_LIMIT_DAYS);
	sqlite3_bind_int64(st, 6, limit);
}

/*
 * purge_due_above - is a record above the guard's limit due for deletion?
 * Then retention is being held back (store->purge_held), which the
 * caller reports.  The oldest such record is enough: one index probe.
 */
static int
purge_due_above(struct ma_store *store, int64_t now_ms, uint32_t min_days,
    int64_t floor_days, int64_t limit, struct ma_error *err)
{
	sqlite3_stmt *st;
	int rc;

	if (prepare(store,
		"SELECT 1 FROM records r WHERE r.seq > ?6 AND " PURGE_DUE
		" LIMIT 1",
		&st, err) < 0)
		return -1;
	purge_bind(st, now_ms, min_days, floor_days, limit);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_error(store, err, "purge");
	store->purge_held = rc == SQLITE_ROW;
	store->purge_held_seq = limit;
	return 0;
}

int
ma_store_purge(struct ma_store *store, int64_t now_ms, uint32_t min_days,
    uint64_t max_rows, uint64_t *deleted_r, struct ma_error *err)
{
	sqlite3_stmt *st;
	int64_t floor_days, limit = INT64_MAX;
	char high[32];
	int rc;

	*deleted_r = 0;
	store->purge_held = false;
	if (store->guard != NULL) {
		struct ma_error gerr = {0};
		int g = store->guard(store->guard_ctx, &limit, &gerr);

		if (g < 0)
			return ma_error_set(
			    err, "retention held back entirely: %s", gerr.msg);
		if (g == 0)
			limit = INT64_MAX;
	}
	/* The youngest record that can be due: bounds the index range so the
	   per-row age lookup runs only on candidates. */
	floor_days = MA_DEFAULT_AGE_LIMIT_DAYS;
	if (prepare(store, "SELECT min(age_limit_days) FROM mailboxes", &st,
		err) < 0)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW &&
	    sqlite3_column_type(st, 0) != SQLITE_NULL &&
	    sqlite3_column_int64(st, 0) < floor_days)
		floor_days = sqlite3_column_int64(st, 0);
	if (floor_days < (int64_t)min_days)
		floor_days = min_days;
	sqlite3_finalize(st);
	if (exec(store,
		"CREATE TEMP TABLE IF NOT EXISTS purge_chunk (seq INTEGER"
		" PRIMARY KEY, mailbox INTEGER, user INTEGER, operation INTEGER)",
		err) < 0 ||
	    prepare(store,
		"INSERT INTO purge_chunk SELECT seq, mailbox, user, operation"
		" FROM records r WHERE " PURGE_DUE " AND r.seq <= ?6"
		" LIMIT 10000",
		&st, err) < 0)
		return -1;
	purge_bind(st, now_ms, min_days, floor_days, limit);
	for (;;) {
		int n;

		if (exec(store, "BEGIN IMMEDIATE", err) < 0)
			break;
		/* Keep the high-water mark: the rows about to go may include
		   the newest, whose numbers must never be handed out again. */
		snprintf(high, sizeof(high), "%lld",
		    (long long)(store->next_seq - 1));
		if (setting_put(store, "seq_high", high, err) < 0) {
			exec(store, "ROLLBACK", NULL);
			rc = SQLITE_ERROR;
			break;
		}
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		n = sqlite3_changes(store->db);
		if (rc != SQLITE_DONE || purge_chunk(store, err) < 0) {
			if (rc != SQLITE_DONE)
				db_error(store, err, "purge");
			exec(store, "ROLLBACK", NULL);
			rc = SQLITE_ERROR;
			break;
		}
		if (exec(store, "COMMIT", err) < 0) {
			exec(store, "ROLLBACK", NULL);
			rc = SQLITE_ERROR;
			break;
		}
		*deleted_r += (uint64_t)n;
		if (n == 0 || (max_rows != 0 && *deleted_r >= max_rows))
			break;
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE && limit != INT64_MAX &&
	    purge_due_above(store, now_ms, min_days, floor_days, limit, err) <
		0)
		return -1;
	return rc == SQLITE_DONE ? 0 : -1;
}

void
ma_store_set_purge_guard(
    struct ma_store *store, ma_store_purge_guard_fn *fn, void *ctx)
{
	store->guard = fn;
	store->guard_ctx = ctx;
}

bool
ma_store_purge_held(const struct ma_store *store, int64_t *limit_r)
{
	if (store->purge_held && limit_r != NULL)
		*limit_r = store->purge_held_seq;
	return store->purge_held;
}

int
ma_store_last_seq(
    struct ma_store *store, int64_t *last_seq_r, struct ma_error *err)
{
	sqlite3_stmt *st;
	int rc;

	/* max() of the rowid: one probe at the end of the table. */
	if (prepare(store, "SELECT coalesce(max(seq), 0) FROM records", &st,
		err) < 0)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*last_seq_r = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : db_error(store, err, "last seq");
}

int
ma_store_stats(struct ma_store *store, uint64_t *count_r, int64_t *last_seq_r,
    struct ma_error *err)
{
	sqlite3_stmt *st;
	int rc;

	if (prepare(store,
		"SELECT count(*), coalesce(max(seq), 0) FROM records", &st,
		err) < 0)
		return -1;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*count_r = (uint64_t)sqlite3_column_int64(st, 0);
		*last_seq_r = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : db_error(store, err, "stats");
}
