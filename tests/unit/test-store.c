/* SPDX-License-Identifier: MIT */
/*
 * test-store.c - the SQLite store: insert and de-duplication, every
 * search filter, paging counts, policy rows, retention, the posting lists
 * of the index tables, refusing a store of an older schema, retention
 * held back by the forward destinations' cursors.
 */

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ma-forward-conf.h"
#include "ma-store.h"
#include "ut.h"

static char dbpath[64];

static struct ma_store *
open_rw(void)
{
	struct ma_store_options o = {.sync_full = false, .cache_kib = 1024};
	struct ma_error err = {0};
	struct ma_store *s = ma_store_open(dbpath, &o, &err);

	if (s == NULL)
		fprintf(stderr, "open: %s\n", err.msg);
	return s;
}

static void
add(struct ma_store *s, int64_t t, const char *op, enum ma_logon logon,
    const char *user, const char *mbox, const char *subject, bool *dup,
    uint8_t id_out[16])
{
	struct ma_record r;
	struct ma_error err = {0};

	ma_record_init(&r);
	ma_uuid7(r.id, t);
	r.time_ms = t;
	r.operation = op;
	r.logon_type = logon;
	r.user = user;
	r.mailbox = mbox;
	r.folder = "INBOX";
	r.client_ip = logon == MA_LOGON_DELEGATE ? "10.0.0.9" : "127.0.0.1";
	r.session = "s1";
	if (subject != NULL)
		ma_record_add_item(&r, 3, "<id@x>", subject, 10);
	if (ma_store_insert(s, &r, t, dup, &err) < 0)
		ut_fail(__FILE__, __LINE__, "insert: %s", err.msg);
	if (id_out != NULL)
		memcpy(id_out, r.id, 16);
	ma_record_deinit(&r);
}

struct collect {
	int n;
	int64_t seqs[64];
	char subjects[64][32];
};

static int
collect_fn(void *ctx, const struct ma_record *rec)
{
	struct collect *c = ctx;

	if (c->n < 64) {
		c->seqs[c->n] = rec->seq;
		snprintf(c->subjects[c->n], sizeof(c->subjects[0]), "%s",
		    rec->item_count > 0 && rec->items[0].subject != NULL
			? rec->items[0].subject
			: "");
	}
	c->n++;
	return 0;
}

static uint64_t
run(struct ma_store *s, struct ma_query *q, struct collect *c)
{
	struct ma_error err = {0};
	uint64_t matched = 0;

	memset(c, 0, sizeof(*c));
	if (ma_store_search(s, q, collect_fn, c, &matched, &err) != 0)
		ut_fail(__FILE__, __LINE__, "search: %s", err.msg);
	return matched;
}

static void
test_insert_search(void)
{
	struct ma_store *s = open_rw();
	struct ma_error err = {0};
	struct collect c;
	struct ma_query q = {.result = -1};
	const char *mb[] = {"alice"}, *ops[] = {"SoftDelete", "HardDelete"};
	bool dup = true;
	uint8_t id[16];
	int64_t t0 = 1700000000000;

	ut_begin("insert, de-duplicate and search with every filter");
	ut_assert(s != NULL);
	if (s == NULL) {
		ut_end();
		return;
	}
	ut_assert(ma_store_begin(s, &err) == 0);
	add(s, t0, "Update", MA_LOGON_OWNER, "alice", "alice", "Quarterly %",
	    &dup, id);
	ut_assert(!dup);
	add(s, t0 + 1, "SoftDelete", MA_LOGON_DELEGATE, "bob", "alice", "x_y",
	    &dup, NULL);
	add(s, t0 + 2, "HardDelete", MA_LOGON_ADMIN, "admin", "bob", NULL, &dup,
	    NULL);
	for (int i = 0; i < 10; i++)
		add(s, t0 + 10 + i, "MailboxLogin", MA_LOGON_OWNER, "carol",
		    "carol", NULL, &dup, NULL);
	ut_assert(ma_store_commit(s, &err) == 0);

	/* Same id again: stored once. */
	{
		struct ma_record r;

		ma_record_init(&r);
		memcpy(r.id, id, 16);
		r.time_ms = t0;
		r.operation = "Update";
		r.user = r.mailbox = "alice";
		ut_assert(ma_store_insert(s, &r, t0, &dup, &err) < 0);
		ut_assert(strstr(err.msg, "outside a batch") != NULL);
		ut_assert(ma_store_begin(s, &err) == 0);
		ut_assert(ma_store_insert(s, &r, t0, &dup, &err) == 0);
		ut_assert(ma_store_commit(s, &err) == 0);
		ut_assert(dup);
		ma_record_deinit(&r);
	}

	ut_assert_cmp(run(s, &q, &c), ==, 13);
	q.mailboxes = mb;
	q.mailbox_count = 1;
	ut_assert_cmp(run(s, &q, &c), ==, 2);
	q.logon_mask = 1U << MA_LOGON_DELEGATE;
	ut_assert_cmp(run(s, &q, &c), ==, 1);
	ut_assert_str(c.subjects[0], "x_y");
	memset(&q, 0, sizeof(q));
	q.result = -1;
	q.operations = ops;
	q.operation_count = 2;
	ut_assert_cmp(run(s, &q, &c), ==, 2);
	memset(&q, 0, sizeof(q));
	q.result = -1;
	q.start_ms = t0 + 1;
	q.end_ms = t0 + 3;
	ut_assert_cmp(run(s, &q, &c), ==, 2);
	memset(&q, 0, sizeof(q));
	q.result = -1;
	q.client_ip = "10.0.0.9";
	ut_assert_cmp(run(s, &q, &c), ==, 1);
	/* Free text is a literal substring: % and _ are not wildcards. */
	memset(&q, 0, sizeof(q));
	q.result = -1;
	q.text = "y %";
	ut_assert_cmp(run(s, &q, &c), ==, 1);
	q.text = "x_y";
	ut_assert_cmp(run(s, &q, &c), ==, 1);
	q.text = "x%y";
	ut_assert_cmp(run(s, &q, &c), ==, 0);

	/* Paging: 13 records, pages of 5, newest first, nothing lost. */
	memset(&q, 0, sizeof(q));
	q.result = -1;
	q.newest_first = true;
	q.limit = 5;
	{
		int total = 0;
		int64_t prev = INT64_MAX;

		for (int page = 0; page < 4; page++) {
			uint64_t m = run(s, &q, &c);

			ut_assert_cmp(m, ==, 13 - total);
			for (int i = 0; i < c.n; i++) {
				ut_assert(c.seqs[i] < prev);
				prev = c.seqs[i];
			}
			total += c.n;
			if (c.n == 0)
				break;
			q.cursor = c.seqs[c.n - 1];
		}
		ut_assert_cmp(total, ==, 13);
	}
	ma_store_destroy(&s);
	ut_assert(s == NULL);
	ut_end();
}

static void
test_policy_rows(void)
{
	struct ma_store *s = open_rw();
	struct ma_error err = {0};
	struct ma_mailbox_policy mp, got;
	struct ma_org_policy org;

	ut_begin("policy rows: managed defaults follow the preset");
	ut_assert(s != NULL);
	if (s == NULL) {
		ut_end();
		return;
	}
	ut_assert(ma_store_mailbox_get(s, "nobody", &got, &err) == 0);
	ma_mailbox_policy_default(&mp, MA_PRESET_DEFAULT, MA_MAILBOX_SHARED);
	mp.sets[MA_SET_OWNER] = MA_ACTION_BIT(MA_ACTION_UPDATE);
	mp.set_is_default[MA_SET_OWNER] = false;
	mp.age_limit_days = 365;
	ut_assert(ma_store_mailbox_put(s, "finance", &mp, &err) == 0);
	ut_assert(ma_store_mailbox_get(s, "finance", &got, &err) == 1);
	ut_assert_cmp(got.type, ==, MA_MAILBOX_SHARED);
	ut_assert_cmp(got.age_limit_days, ==, 365);
	ut_assert_cmp(
	    got.sets[MA_SET_OWNER], ==, MA_ACTION_BIT(MA_ACTION_UPDATE));
	ut_assert(!got.set_is_default[MA_SET_OWNER]);
	ut_assert(got.set_is_default[MA_SET_ADMIN]);
	/* Changing the preset changes managed sets only. */
	org.audit_disabled = false;
	org.preset = MA_PRESET_STRICT;
	ut_assert(ma_store_org_put(s, &org, &err) == 0);
	ut_assert(ma_store_mailbox_get(s, "finance", &got, &err) == 1);
	ut_assert_cmp(got.sets[MA_SET_ADMIN], ==,
	    ma_preset_actions(
		MA_PRESET_STRICT, MA_MAILBOX_SHARED, MA_SET_ADMIN));
	ut_assert_cmp(
	    got.sets[MA_SET_OWNER], ==, MA_ACTION_BIT(MA_ACTION_UPDATE));
	ut_assert(ma_store_bypass_set(s, "svc", true, &err) == 0);
	ut_assert(ma_store_bypass_has(s, "svc", &err) == 1);
	ut_assert(ma_store_bypass_set(s, "svc", false, &err) == 0);
	ut_assert(ma_store_bypass_has(s, "svc", &err) == 0);
	ma_store_destroy(&s);
	ut_end();
}

static void
test_purge(void)
{
	struct ma_store *s = open_rw();
	struct ma_error err = {0};
	struct ma_mailbox_policy mp;
	struct ma_query q = {.result = -1};
	struct collect c;
	int64_t day = 86400000, now = 1800000000000;
	uint64_t deleted = 0, before;
	int64_t last_before, last_after;
	bool dup;

	ut_begin("retention: per-mailbox age limit and global minimum");
	ut_assert(s != NULL);
	if (s == NULL) {
		ut_end();
		return;
	}
	ut_assert(ma_store_stats(s, &before, &last_before, &err) == 0);
	ma_mailbox_policy_default(&mp, MA_PRESET_DEFAULT, MA_MAILBOX_USER);
	mp.age_limit_days = 10;
	ut_assert(ma_store_mailbox_put(s, "short", &mp, &err) == 0);
	ut_assert(ma_store_begin(s, &err) == 0);
	add(s, now - 20 * day, "Update", MA_LOGON_OWNER, "short", "short", NULL,
	    &dup, NULL);
	add(s, now - 5 * day, "Update", MA_LOGON_OWNER, "short", "short", NULL,
	    &dup, NULL);
	add(s, now - 50 * day, "Update", MA_LOGON_OWNER, "dflt", "dflt", NULL,
	    &dup, NULL);
	add(s, now - 100 * day, "Update", MA_LOGON_OWNER, "dflt", "dflt", NULL,
	    &dup, NULL);
	ut_assert(ma_store_commit(s, &err) == 0);
	/* Global minimum 30 days protects the 20-day-old record. */
	ut_assert(ma_store_purge(s, now, 30, 0, &deleted, &err) == 0);
	/* The 100-day default record, and the old test records. */
	ut_assert_cmp(deleted, ==, before + 1);
	ut_assert(ma_store_purge(s, now, 0, 0, &deleted, &err) == 0);
	ut_assert_cmp(deleted, ==, 1);
	ut_assert_cmp(run(s, &q, &c), ==, 2);
	/* Sequence numbers never go back after a purge. */
	{
		const char *mb[] = {"short"};

		q.mailboxes = mb;
		q.mailbox_count = 1;
		ut_assert_cmp(run(s, &q, &c), ==, 1);
		q.mailbox_count = 0;
	}
	ut_assert(ma_store_stats(s, &before, &last_after, &err) == 0);
	ut_assert(ma_store_begin(s, &err) == 0);
	add(s, now, "Update", MA_LOGON_OWNER, "x", "x", NULL, &dup, NULL);
	ut_assert(ma_store_commit(s, &err) == 0);
	ut_assert(ma_store_stats(s, &before, &last_before, &err) == 0);
	ut_assert(last_before > last_after);
	/* Everything purged, store reopened: numbering still goes on. */
	ut_assert(
	    ma_store_purge(s, now + 100000 * day, 0, 0, &deleted, &err) == 0);
	ut_assert(ma_store_stats(s, &before, &last_after, &err) == 0);
	ut_assert_cmp(before, ==, 0);
	ma_store_destroy(&s);
	s = open_rw();
	ut_assert(s != NULL);
	if (s != NULL) {
		struct ma_record r;

		ma_record_init(&r);
		ma_uuid7(r.id, now);
		r.time_ms = now;
		r.operation = "Update";
		r.user = r.mailbox = "x";
		ut_assert(ma_store_begin(s, &err) == 0);
		ut_assert(ma_store_insert(s, &r, now, &dup, &err) == 0);
		ut_assert(ma_store_commit(s, &err) == 0);
		ut_assert_cmp(r.seq, >, last_before);
		ma_record_deinit(&r);
	}
	ma_store_destroy(&s);
	ut_end();
}

/* sql_text - the first column of the first row of sql, or "" */
static void
sql_text(const char *sql, char *out, size_t size)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	out[0] = '\0';
	if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL) ==
		SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW &&
	    sqlite3_column_text(st, 0) != NULL)
		snprintf(out, size, "%s", sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void
test_postings(void)
{
	struct ma_store *s = open_rw();
	struct ma_error err = {0};
	struct ma_query q = {.result = -1};
	struct collect c;
	const char *m1[] = {"m1"}, *both[] = {"m1", "m2"}, *u2[] = {"u2"};
	const char *op[] = {"Create"};
	int64_t day = 86400000, now = 1900000000000, old = now - 200 * day;
	uint64_t deleted = 0;
	char text[4096];
	bool dup;

	ut_begin("index tables: one posting list per key and batch; retention "
		 "takes entries out");
	ut_assert(s != NULL);
	if (s == NULL) {
		ut_end();
		return;
	}
	ut_assert(
	    ma_store_purge(s, now + 1000 * day, 0, 0, &deleted, &err) == 0);
	/* Batch 1: m1 three times (two of them old), m2 once. */
	ut_assert(ma_store_begin(s, &err) == 0);
	add(s, old, "Update", MA_LOGON_OWNER, "u1", "m1", NULL, &dup, NULL);
	add(s, now, "Create", MA_LOGON_OWNER, "u2", "m2", NULL, &dup, NULL);
	add(s, old + 1, "Update", MA_LOGON_OWNER, "u1", "m1", NULL, &dup, NULL);
	add(s, now + 1, "Create", MA_LOGON_DELEGATE, "u2", "m1", NULL, &dup,
	    NULL);
	ut_assert(ma_store_commit(s, &err) == 0);
	/* Batch 2: m1 and m2 once each. */
	ut_assert(ma_store_begin(s, &err) == 0);
	add(s, now + 2, "Update", MA_LOGON_OWNER, "u1", "m1", NULL, &dup, NULL);
	add(s, now + 3, "Update", MA_LOGON_OWNER, "u2", "m2", NULL, &dup, NULL);
	ut_assert(ma_store_commit(s, &err) == 0);

	sql_text("SELECT count(*) || ' ' || group_concat(seqs, ' ') FROM"
		 " (SELECT seqs FROM idx_mailbox WHERE k = (SELECT id FROM"
		 " names WHERE name = 'm1') ORDER BY seq)",
	    text, sizeof(text));
	ut_assert(strncmp(text, "2 [", 3) == 0); /* two batches, two rows */
	q.mailboxes = m1;
	q.mailbox_count = 1;
	ut_assert_cmp(run(s, &q, &c), ==, 4);
	ut_assert_cmp(c.n, ==, 4);
	ut_assert(c.seqs[0] < c.seqs[1] && c.seqs[2] < c.seqs[3]);
	q.mailboxes = both;
	q.mailbox_count = 2;
	ut_assert_cmp(run(s, &q, &c), ==, 6);
	q.users = u2;
	q.user_count = 1;
	ut_assert_cmp(run(s, &q, &c), ==, 3);
	q.operations = op;
	q.operation_count = 1;
	ut_assert_cmp(run(s, &q, &c), ==, 2);
	q.mailboxes = m1;
	q.mailbox_count = 1;
	ut_assert_cmp(run(s, &q, &c), ==, 1);

	/* Retention removes the two old m1 records from batch 1's list,
	   keeps the list (one record left in it), and leaves batch 2's. */
	ut_assert(ma_store_purge(s, now, 30, 0, &deleted, &err) == 0);
	ut_assert_cmp(deleted, ==, 2);
	sql_text("SELECT count(*) || ' ' || sum(json_array_length(seqs)) FROM"
		 " idx_mailbox WHERE k = (SELECT id FROM names WHERE name ="
		 " 'm1')",
	    text, sizeof(text));
	ut_assert(strcmp(text, "2 2") == 0);
	sql_text("SELECT count(*) || ' ' || sum(json_array_length(seqs)) FROM"
		 " idx_user WHERE k = (SELECT id FROM names WHERE name = 'u1')",
	    text, sizeof(text));
	ut_assert(strcmp(text, "1 1") == 0); /* batch 1's list of u1 is gone */
	sql_text("SELECT count(*) FROM idx_operation WHERE seqs = '[]'", text,
	    sizeof(text));
	ut_assert(strcmp(text, "0") == 0);
	memset(&q, 0, sizeof(q));
	q.result = -1;
	q.mailboxes = m1;
	q.mailbox_count = 1;
	ut_assert_cmp(run(s, &q, &c), ==, 2);
	ma_store_destroy(&s);
	ut_end();
}

static void
test_insert_rows(void)
{
	struct ma_store *s = open_rw();
	struct ma_error err = {0};
	struct ma_store_row rows[80];
	struct ma_query q = {.result = -1};
	struct collect c;
	const char *mb[] = {"rows-b"};
	int64_t t = 1950000000000, last0, last1;
	uint64_t count0, count1;
	size_t stored = 0;

	ut_begin("multi-row insert: duplicates leave no gap in the sequence");
	ut_assert(s != NULL);
	if (s == NULL) {
		ut_end();
		return;
	}
	memset(rows, 0, sizeof(rows));
	for (int i = 0; i < 80; i++) {
		ma_uuid7(rows[i].id, t + i);
		rows[i].time_ms = t + i;
		rows[i].operation = "Update";
		rows[i].user = "rows-u";
		rows[i].mailbox = i % 2 == 0 ? "rows-a" : "rows-b";
		rows[i].folder = "INBOX";
		rows[i].detail = "item=1\t<m@x>\tsubject\t10\n";
		rows[i].detail_len = strlen(rows[i].detail);
	}
	/* Row 40 was stored before; row 70 repeats row 65 (same batch). */
	ut_assert(ma_store_begin(s, &err) == 0);
	ut_assert(ma_store_insert_rows(s, &rows[40], 1, t, &stored, &err) == 0);
	ut_assert(ma_store_commit(s, &err) == 0);
	ut_assert_cmp(stored, ==, 1);
	memcpy(rows[70].id, rows[65].id, 16);
	ut_assert(ma_store_stats(s, &count0, &last0, &err) == 0);
	ut_assert(ma_store_begin(s, &err) == 0);
	ut_assert(ma_store_insert_rows(s, rows, 80, t, &stored, &err) == 0);
	ut_assert(ma_store_commit(s, &err) == 0);
	ut_assert_cmp(stored, ==, 78);
	ut_assert(ma_store_stats(s, &count1, &last1, &err) == 0);
	ut_assert_cmp(count1 - count0, ==, 78);
	ut_assert_cmp(last1 - last0, ==, 78); /* no gaps */
	/* Every stored row is indexed once: 40 odd rows minus row 65's twin
	   (row 70 is even) ... b has rows 1, 3, ..., 79. */
	q.mailboxes = mb;
	q.mailbox_count = 1;
	ut_assert_cmp(run(s, &q, &c), ==, 40);
	ma_store_destroy(&s);
	ut_end();
}

static void
test_buckets(void)
{
	struct ma_store *s = open_rw();
	struct ma_error err = {0};
	struct ma_query q = {.result = -1};
	struct collect c;
	const char *mb[] = {"bucket-m"};
	int64_t day = 86400000, now = 1960000000000;
	uint64_t deleted;
	char text[256];
	bool dup;

	ut_begin("posting lists split where seq crosses into a new bucket");
	ut_assert(s != NULL);
	if (s == NULL) {
		ut_end();
		return;
	}
	ut_assert(
	    ma_store_purge(s, now + 1000 * day, 0, 0, &deleted, &err) == 0);
	ma_store_destroy(&s);
	/* Numbering goes on above seq_high: 65531 ... crosses 65536. */
	sql_text("UPDATE settings SET value = '65530' WHERE key = 'seq_high'",
	    text, sizeof(text));
	s = open_rw();
	ut_assert(s != NULL);
	if (s == NULL) {
		ut_end();
		return;
	}
	ut_assert(ma_store_begin(s, &err) == 0);
	for (int i = 0; i < 12; i++)
		add(s, i < 3 ? now - 400 * day : now + i, "Update",
		    MA_LOGON_OWNER, "bucket-u", "bucket-m", NULL, &dup, NULL);
	ut_assert(ma_store_commit(s, &err) == 0);
	sql_text("SELECT group_concat(b || ':' || seq || ':' || seqs, ' ') FROM"
		 " (SELECT * FROM idx_mailbox WHERE k = (SELECT id FROM names"
		 " WHERE name = 'bucket-m') ORDER BY b, seq)",
	    text, sizeof(text));
	ut_assert(strcmp(text, "0:65531:[65531,65532,65533,65534,65535] "
			       "1:65536:[65536,65537,65538,65539,65540,65541,"
			       "65542]") == 0);
	q.mailboxes = mb;
	q.mailbox_count = 1;
	ut_assert_cmp(run(s, &q, &c), ==, 12);
	ut_assert_cmp(c.seqs[0], ==, 65531);
	ut_assert_cmp(c.seqs[11], ==, 65542);
	/* The three old ones go from bucket 0's list. */
	ut_assert(ma_store_purge(s, now, 30, 0, &deleted, &err) == 0);
	ut_assert_cmp(deleted, ==, 3);
	sql_text("SELECT group_concat(b || ':' || seqs, ' ') FROM (SELECT *"
		 " FROM idx_mailbox WHERE k = (SELECT id FROM names WHERE"
		 " name = 'bucket-m') ORDER BY b, seq)",
	    text, sizeof(text));
	ut_assert(strcmp(text, "0:[65534,65535] "
			       "1:[65536,65537,65538,65539,65540,65541,"
			       "65542]") == 0);
	ut_assert_cmp(run(s, &q, &c), ==, 9);
	ma_store_destroy(&s);
	ut_end();
}

static void
test_old_schema(void)
{
	struct ma_store *s;
	struct ma_error err = {0};
	char text[64];

	ut_begin(
	    "a store of schema version 1 or 2 is refused, with what to do");
	s = open_rw();
	ut_assert(s != NULL);
	ma_store_destroy(&s);
	sql_text("PRAGMA user_version = 1", text, sizeof(text));
	s = open_rw();
	ut_assert(s == NULL);
	{
		struct ma_store_options o = {.sync_full = false};

		s = ma_store_open(dbpath, &o, &err);
		ut_assert(s == NULL);
		ut_assert(strstr(err.msg, "schema version 1") != NULL);
		ut_assert(strstr(err.msg, "new store") != NULL);
	}
	sql_text("PRAGMA user_version = 2", text, sizeof(text));
	s = open_rw();
	ut_assert(s == NULL); /* version 2 had unbucketed posting lists */
	sql_text("PRAGMA user_version = 3", text, sizeof(text));
	s = open_rw();
	ut_assert(s != NULL);
	ma_store_destroy(&s);
	ut_end();
}

static void
test_readonly(void)
{
	struct ma_store_options o = {.readonly = true};
	struct ma_error err = {0};
	struct ma_store *s = ma_store_open("/nonexistent/x.db", &o, &err);

	ut_begin("opening a missing store read-only fails clearly");
	ut_assert(s == NULL);
	ut_assert(strstr(err.msg, "/nonexistent/x.db") != NULL);
	ut_end();
}

static void
cleanup(void)
{
	char p[96];

	unlink(dbpath);
	snprintf(p, sizeof(p), "%s-wal", dbpath);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", dbpath);
	unlink(p);
}

/* The guard mailauditd installs: the lowest cursor of the state files. */
struct guard_ctx {
	const char *lines, *dir;
	int calls;
	bool fail;
};

static int
guard_fn(void *ctx, int64_t *max_seq_r, struct ma_error *err)
{
	struct guard_ctx *g = ctx;
	char name[FWD_NAME_MAX + 1];

	g->calls++;
	if (g->fail)
		return ma_error_set(err, "state file unreadable");
	return ma_fwd_lowest_cursor(g->lines, g->dir, max_seq_r, name, err);
}

static int
seq_fn(void *ctx, const struct ma_record *rec)
{
	int64_t *seqs = ctx;

	seqs[++seqs[0]] = rec->seq;
	return 0;
}

static void
test_purge_guard(void)
{
	struct ma_store *s = open_rw();
	struct ma_error err = {0};
	int64_t now = ma_now_ms(), day = 86400000, seqs[16], limit = 0, last;
	uint64_t deleted;
	struct ma_query q = {.result = -1, .limit = 10};
	char dir[] = "/tmp/ma-test-guard-XXXXXX";
	struct guard_ctx g = {.lines = "a syslog h:1\nb relp h:2", .dir = dir};
	struct ma_fwd_state st = {0};
	bool dup;

	ut_begin("retention never passes the lowest forward cursor");
	ut_assert(s != NULL && mkdtemp(dir) != NULL);
	if (s == NULL) {
		ut_end();
		return;
	}
	/* A clean slate, then five records due for deletion. */
	ut_assert(
	    ma_store_purge(s, now + 1000000 * day, 0, 0, &deleted, &err) == 0);
	ut_assert(ma_store_begin(s, &err) == 0);
	for (int i = 0; i < 5; i++)
		add(s, now - 200 * day + i, "Update", MA_LOGON_OWNER, "g", "g",
		    NULL, &dup, NULL);
	ut_assert(ma_store_commit(s, &err) == 0);
	seqs[0] = 0;
	ut_assert(ma_store_search(s, &q, seq_fn, seqs, NULL, &err) == 0);
	ut_assert_cmp(seqs[0], ==, 5);
	ut_assert(ma_store_last_seq(s, &last, &err) == 0);
	ut_assert_cmp(last, ==, seqs[5]);
	ma_store_set_purge_guard(s, guard_fn, &g);

	/* No state file yet for either destination: cursor 0, nothing goes. */
	ut_assert(ma_store_purge(s, now, 0, 0, &deleted, &err) == 0);
	ut_assert_cmp(deleted, ==, 0);
	ut_assert(ma_store_purge_held(s, &limit));
	ut_assert_cmp(limit, ==, 0);

	/* a at the 4th record, b at the 2nd: the first two go. */
	snprintf(st.type, sizeof(st.type), "syslog");
	st.cursor = seqs[4];
	ut_assert(ma_fwd_state_write(dir, "a", &st, &err) == 0);
	st.cursor = seqs[2];
	ut_assert(ma_fwd_state_write(dir, "b", &st, &err) == 0);
	ut_assert(ma_store_purge(s, now, 0, 0, &deleted, &err) == 0);
	ut_assert_cmp(deleted, ==, 2);
	ut_assert(ma_store_purge_held(s, &limit));
	ut_assert_cmp(limit, ==, seqs[2]);
	q.cursor = 0;
	seqs[0] = 0;
	ut_assert(ma_store_search(s, &q, seq_fn, seqs, NULL, &err) == 0);
	ut_assert_cmp(seqs[0], ==, 3);

	/* A guard that cannot read the state keeps everything. */
	g.fail = true;
	ut_assert(ma_store_purge(s, now, 0, 0, &deleted, &err) < 0);
	ut_assert(strstr(err.msg, "state file unreadable") != NULL);
	ut_assert_cmp(deleted, ==, 0);
	g.fail = false;

	/* Both caught up: the rest goes, and nothing is held back. */
	st.cursor = last;
	ut_assert(ma_fwd_state_write(dir, "a", &st, &err) == 0);
	ut_assert(ma_fwd_state_write(dir, "b", &st, &err) == 0);
	ut_assert(ma_store_purge(s, now, 0, 0, &deleted, &err) == 0);
	ut_assert_cmp(deleted, ==, 3);
	ut_assert(!ma_store_purge_held(s, NULL));

	/* No destination configured: no limit. */
	g.lines = "";
	ut_assert(ma_store_begin(s, &err) == 0);
	add(s, now - 200 * day, "Update", MA_LOGON_OWNER, "g", "g", NULL, &dup,
	    NULL);
	ut_assert(ma_store_commit(s, &err) == 0);
	ut_assert(ma_store_purge(s, now, 0, 0, &deleted, &err) == 0);
	ut_assert_cmp(deleted, ==, 1);
	ut_assert(!ma_store_purge_held(s, NULL));
	ut_assert_cmp(g.calls, ==, 5);
	ma_store_destroy(&s);
	{
		char *p = ma_fwd_state_path(dir, "a", ".state");

		unlink(p);
		free(p);
		p = ma_fwd_state_path(dir, "b", ".state");
		unlink(p);
		free(p);
	}
	ut_assert(rmdir(dir) == 0);
	ut_end();
}

int
main(void)
{
	static void (*const tests[])(void) = {test_insert_search,
	    test_policy_rows, test_purge, test_postings, test_insert_rows,
	    test_buckets, test_old_schema, test_readonly, test_purge_guard};
	int fd, ret;

	snprintf(dbpath, sizeof(dbpath), "/tmp/ma-test-store-XXXXXX");
	fd = mkstemp(dbpath);
	if (fd < 0)
		return 1;
	close(fd);
	unlink(dbpath);
	ret = ut_run(tests, sizeof(tests) / sizeof(tests[0]));
	cleanup();
	return ret;
}
