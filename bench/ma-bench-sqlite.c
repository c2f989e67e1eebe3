/* SPDX-License-Identifier: MIT */
/*
 * ma-bench-sqlite - the baseline for the ingest benchmark: plain SQLite
 * bulk insert of the same rows mailauditd would store, with no daemon, no
 * socket and no frame decoding.
 *
 * Table and indexes are those of src/lib/ma-store.c (schema version 1),
 * copied here; the same pragmas (WAL, synchronous FULL or NORMAL, 16 MiB
 * page cache); one prepared INSERT ... ON CONFLICT(id) DO NOTHING per row,
 * the detail column encoded as the store does (ma_proto_encode_detail);
 * one transaction per -b rows (default 10,000, the daemon's
 * batch_max_records).  Rows come from the generator the load generator
 * uses (ma-bench-gen.h).
 *
 *   ma-bench-sqlite -f db [-n rows] [-b batch] [-F (synchronous=FULL)]
 *
 * -i id,time,mailbox,user,op (default: all five, as the store) or -i none
 * picks the indexes, to show what each costs.  Without the id index the
 * INSERT has no ON CONFLICT clause (nothing to conflict on).
 *
 * Output: rows=.. seconds=.. rate=.. sync=FULL|NORMAL indexes=..
 */

#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ma-bench-gen.h"
#include "ma-proto.h"

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS records ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id BLOB NOT NULL,"
    " time_ms INTEGER NOT NULL,"
    " received_ms INTEGER NOT NULL,"
    " operation TEXT NOT NULL,"
    " result INTEGER NOT NULL,"
    " logon_type INTEGER NOT NULL,"
    " user TEXT NOT NULL,"
    " mailbox TEXT NOT NULL,"
    " folder TEXT, dest_folder TEXT, dest_mailbox TEXT,"
    " session TEXT, client_ip TEXT, client_info TEXT, protocol TEXT,"
    " server TEXT,"
    " count INTEGER NOT NULL DEFAULT 0,"
    " item_count INTEGER NOT NULL DEFAULT 0,"
    " detail TEXT"
    ") STRICT;";

/* The store's indexes, by the name -i takes. */
static const struct {
	const char *name, *sql;
} indexes[] = {
	{"id", "CREATE UNIQUE INDEX records_id ON records(id)"},
	{"time", "CREATE INDEX records_time ON records(time_ms)"},
	{"mailbox", "CREATE INDEX records_mailbox ON records(mailbox, time_ms)"},
	{"user", "CREATE INDEX records_user ON records(user, time_ms)"},
	{"op", "CREATE INDEX records_op ON records(operation, time_ms)"},
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
check(sqlite3 *db, int rc, const char *what)
{
	if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
		fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
		exit(1);
	}
}

static void
exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, msg);
		exit(1);
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

int
main(int argc, char **argv)
{
	const char *path = NULL, *which = "id,time,mailbox,user,op";
	bool have_id = false;
	uint64_t rows = 1000000, batch = 10000, seed = 0x9e3779b97f4a7c15ULL;
	bool full = false;
	sqlite3 *db;
	sqlite3_stmt *st;
	struct ma_record rec;
	struct ma_buf detail;
	double t0, secs;
	int ch;

	while ((ch = getopt(argc, argv, "f:n:b:Fi:")) != -1) {
		switch (ch) {
		case 'f':
			path = optarg;
			break;
		case 'n':
			rows = strtoull(optarg, NULL, 10);
			break;
		case 'b':
			batch = strtoull(optarg, NULL, 10);
			break;
		case 'F':
			full = true;
			break;
		case 'i':
			which = optarg;
			break;
		default:
			fprintf(stderr, "usage: ma-bench-sqlite -f db [-n rows] "
					"[-b batch] [-F] [-i indexes]\n");
			return 2;
		}
	}
	if (path == NULL || batch == 0)
		return 2;
	check(NULL, sqlite3_open_v2(path, &db,
			SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			    SQLITE_OPEN_NOMUTEX,
			NULL),
	    "open");
	exec(db, "PRAGMA cache_size = -16384");
	exec(db, "PRAGMA journal_mode = WAL");
	exec(db, full ? "PRAGMA synchronous = FULL"
		      : "PRAGMA synchronous = NORMAL");
	exec(db, schema_sql);
	for (size_t i = 0; i < sizeof(indexes) / sizeof(indexes[0]); i++) {
		size_t len = strlen(indexes[i].name);
		const char *p = which;

		/* a whole word of the comma-separated list */
		while ((p = strstr(p, indexes[i].name)) != NULL) {
			if ((p == which || p[-1] == ',') &&
			    (p[len] == ',' || p[len] == '\0'))
				break;
			p += len;
		}
		if (p == NULL)
			continue;
		exec(db, indexes[i].sql);
		if (i == 0)
			have_id = true;
	}
	check(db, sqlite3_prepare_v3(db,
		      have_id ? "INSERT INTO records (id, time_ms, received_ms,"
		      " operation, result, logon_type, user, mailbox, folder,"
		      " dest_folder, dest_mailbox, session, client_ip,"
		      " client_info, protocol, server, count, item_count, detail)"
		      " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
		      " ON CONFLICT(id) DO NOTHING"
		      : "INSERT INTO records (id, time_ms, received_ms, operation,"
		      " result, logon_type, user, mailbox, folder, dest_folder,"
		      " dest_mailbox, session, client_ip, client_info, protocol,"
		      " server, count, item_count, detail) VALUES"
		      " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
		      -1, SQLITE_PREPARE_PERSISTENT, &st, NULL),
	    "prepare");
	ma_record_init(&rec);
	ma_buf_init(&detail, 4 * 1024 * 1024);

	t0 = now_s();
	for (uint64_t n = 0; n < rows; n++) {
		int64_t ms = ma_now_ms();

		if (n % batch == 0)
			exec(db, "BEGIN IMMEDIATE");
		ma_record_reset(&rec);
		bench_make_record(&rec, &seed, n, ms);
		ma_buf_reset(&detail);
		ma_proto_encode_detail(&rec, &detail);
		sqlite3_bind_blob(st, 1, rec.id, 16, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, rec.time_ms);
		sqlite3_bind_int64(st, 3, ms);
		bind_text(st, 4, rec.operation);
		sqlite3_bind_int(st, 5, (int)rec.result);
		sqlite3_bind_int(st, 6, (int)rec.logon_type);
		bind_text(st, 7, rec.user);
		bind_text(st, 8, rec.mailbox);
		bind_text(st, 9, rec.folder);
		bind_text(st, 10, rec.dest_folder);
		bind_text(st, 11, rec.dest_mailbox);
		bind_text(st, 12, rec.session);
		bind_text(st, 13, rec.client_ip);
		bind_text(st, 14, rec.client_info);
		bind_text(st, 15, rec.protocol);
		bind_text(st, 16, rec.server);
		sqlite3_bind_int64(st, 17, rec.count);
		sqlite3_bind_int64(st, 18, rec.item_count);
		if (detail.len == 0)
			sqlite3_bind_null(st, 19);
		else
			sqlite3_bind_text(st, 19, detail.data, (int)detail.len,
			    SQLITE_STATIC);
		check(db, sqlite3_step(st), "insert");
		sqlite3_reset(st);
		if ((n + 1) % batch == 0 || n + 1 == rows)
			exec(db, "COMMIT");
	}
	secs = now_s() - t0;
	printf("rows=%llu seconds=%.3f rate=%.0f sync=%s indexes=%s\n",
	    (unsigned long long)rows, secs, secs > 0 ? rows / secs : 0,
	    full ? "FULL" : "NORMAL", which);
	sqlite3_finalize(st);
	sqlite3_close(db);
	ma_record_deinit(&rec);
	ma_buf_deinit(&detail);
	return 0;
}
