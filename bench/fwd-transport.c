/* SPDX-License-Identifier: MIT */
/*
 * fwd-transport - drive one mailaudit-forward transport (relp, hec,
 * elastic, ...) without the store: generate N realistic records (the
 * generator of the ingest benchmarks, seq 1..N) and deliver them the way
 * a destination thread does, with a cursor that advances only over what
 * the transport reports accepted, a reconnect with back-off after an
 * error, and Retry-After honoured.  For the transport tests
 * (tests/integration/test_forward_transports.py) and for measuring
 * records/s.
 *
 *   fwd-transport [-n N] [-r RATE] [-d DEADLINE_S] [--ids FILE]
 *                 [--rejects FILE] [--big SEQ] "NAME TYPE TARGET opt=val..."
 *
 * --ids writes "seq id" for every record generated, --rejects "seq id
 * why" for every record the transport refused for good, --big SEQ makes
 * that record too large to render (a 2 MiB subject).  The last stdout
 * line is a JSON summary; errors go to stderr as they happen.  Exit 0
 * when all N records were accepted, 1 otherwise.
 */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/forward/transport.h"
#include "ma-bench-gen.h"
#include "ma-forward-conf.h"

static const struct fwd_transport *const transports[] = {
    &fwd_transport_relp,
    &fwd_transport_hec,
    &fwd_transport_elastic,
};

struct reject_log {
	FILE *fp;
	uint64_t count;
};

static void
on_reject(void *ctx, const struct ma_record *rec, const char *why)
{
	struct reject_log *log = ctx;
	char id[37];

	log->count++;
	if (log->fp == NULL)
		return;
	ma_uuid_fmt(rec->id, id);
	fprintf(log->fp, "%" PRId64 " %s %s\n", rec->seq, id, why);
	fflush(log->fp);
}

static void
sleep_ms(int64_t ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void
usage(void)
{
	fprintf(stderr, "usage: fwd-transport [-n N] [-r RATE] [-d SECONDS] "
			"[--ids FILE] [--rejects FILE] [--big SEQ] "
			"\"NAME TYPE TARGET opt=val ...\"\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"ids", required_argument, NULL, 'i'},
	    {"rejects", required_argument, NULL, 'j'},
	    {"big", required_argument, NULL, 'B'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t total = 10000, rate = 0, deadline_s = 120, big = 0;
	const char *ids_path = NULL, *rej_path = NULL;
	struct fwd_dest_conf conf;
	struct ma_siem_ctx siem = {
	    .export = {.format = MA_EXPORT_JSON},
	    .hostname = "drv.example.test",
	    .app_name = "mailaudit",
	    .sd_id = "mailaudit@32473",
	    .facility = 13,
	    .product_version = "test",
	};
	const struct fwd_transport *t = NULL;
	struct reject_log rejects = {NULL, 0};
	struct ma_error err = {0};
	FILE *ids = NULL;
	int opt;

	while ((opt = getopt_long(argc, argv, "n:r:d:", longopts, NULL)) != -1) {
		uint64_t *dst = opt == 'n'   ? &total
				: opt == 'r' ? &rate
				: opt == 'd' ? &deadline_s
				: opt == 'B' ? &big
					     : NULL;

		if (dst != NULL) {
			if (ma_parse_u64(optarg, UINT32_MAX, dst) < 0)
				usage();
		} else if (opt == 'i') {
			ids_path = optarg;
		} else if (opt == 'j') {
			rej_path = optarg;
		} else {
			usage();
		}
	}
	if (optind != argc - 1)
		usage();
	signal(SIGPIPE, SIG_IGN); /* librelp writes without MSG_NOSIGNAL */
	if (ma_fwd_dest_parse(argv[optind], &conf, &err) < 0) {
		fprintf(stderr, "fwd-transport: %s\n", err.msg);
		return 2;
	}
	for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++)
		if (strcmp(transports[i]->type, conf.type) == 0)
			t = transports[i];
	if (t == NULL) {
		fprintf(stderr, "fwd-transport: type %s not built in\n",
		    conf.type);
		return 2;
	}
	if (t->check(&conf, &err) < 0) {
		fprintf(stderr, "fwd-transport: %s\n", err.msg);
		return 2;
	}
	if ((ids_path != NULL && (ids = fopen(ids_path, "w")) == NULL) ||
	    (rej_path != NULL && (rejects.fp = fopen(rej_path, "w")) == NULL)) {
		fprintf(stderr, "fwd-transport: %s: %s\n",
		    ids == NULL && ids_path != NULL ? ids_path : rej_path,
		    strerror(errno));
		return 2;
	}

	/* the records after the cursor, oldest first */
	size_t cap = conf.batch, have = 0;
	struct ma_record *pool = ma_xcalloc(cap, sizeof(*pool));
	const struct ma_record **recs = ma_xcalloc(cap, sizeof(*recs));
	uint64_t seed = 0x9e3779b97f4a7c15ULL, next_seq = 1, cursor = 0;
	uint64_t errors = 0, opens = 0;
	int64_t start = ma_now_ms(), backoff = 0, give_up;
	void *conn = NULL;
	char *huge = NULL;

	give_up = start + (int64_t)deadline_s * 1000;
	for (size_t i = 0; i < cap; i++)
		ma_record_init(&pool[i]);
	while (cursor < total && ma_now_ms() < give_up) {
		struct fwd_send_result res;

		/* top up: records are generated once, in seq order */
		while (have < cap && next_seq <= total) {
			struct ma_record *rec = &pool[(cursor + have) % cap];
			char id[37];

			ma_record_reset(rec);
			bench_make_record(rec, &seed, next_seq, ma_now_ms());
			rec->seq = (int64_t)next_seq;
			if (next_seq == big) {
				huge = ma_xmalloc(2u << 20);
				memset(huge, 'x', (2u << 20) - 1);
				huge[(2u << 20) - 1] = '\0';
				ma_record_add_item(rec, 1, "<big@x>", huge, 1);
				free(huge);
			}
			if (ids != NULL) {
				ma_uuid_fmt(rec->id, id);
				fprintf(ids, "%" PRIu64 " %s\n", next_seq, id);
			}
			next_seq++;
			have++;
		}
		for (size_t i = 0; i < have; i++)
			recs[i] = &pool[(cursor + i) % cap];
		if (conn == NULL) {
			opens++;
			if ((conn = t->open(&conf, &siem, &err)) == NULL)
				goto failed;
		}
		size_t n = have;
		int r = t->send(conn, recs, n, on_reject, &rejects, &res, &err);

		MA_ASSERT(res.accepted <= n);
		cursor += res.accepted;
		have -= res.accepted;
		if (r == 0 && res.accepted < n) {
			snprintf(err.msg, sizeof(err.msg),
			    "send took %zu of %zu without an error",
			    res.accepted, n);
			r = -1;
		}
		if (r == 0) {
			backoff = 0;
			if (rate > 0) {
				int64_t due = start +
					      (int64_t)(cursor * 1000 / rate);
				int64_t now = ma_now_ms();

				if (due > now)
					sleep_ms(due - now);
			}
			continue;
		}
		t->close(conn);
		conn = NULL;
		if (res.retry_after_ms > backoff)
			backoff = res.retry_after_ms;
	failed:
		errors++;
		fprintf(stderr,
		    "fwd-transport: +%" PRId64 " ms cursor %" PRIu64 ": %s\n",
		    ma_now_ms() - start, cursor, err.msg);
		backoff = backoff == 0 ? 100 : backoff * 2;
		if (backoff > 2000)
			backoff = 2000;
		sleep_ms(backoff);
	}
	if (conn != NULL)
		t->close(conn);
	double secs = (double)(ma_now_ms() - start) / 1000.0;

	printf("{\"type\":\"%s\",\"records\":%" PRIu64 ",\"accepted\":%" PRIu64
	       ",\"rejected\":%" PRIu64 ",\"errors\":%" PRIu64
	       ",\"opens\":%" PRIu64 ",\"seconds\":%.3f,\"per_second\":%.0f}\n",
	    conf.type, total, cursor, rejects.count, errors, opens, secs,
	    secs > 0 ? (double)cursor / secs : 0.0);
	for (size_t i = 0; i < cap; i++)
		ma_record_deinit(&pool[i]);
	free(pool);
	free(recs);
	if (ids != NULL)
		fclose(ids);
	if (rejects.fp != NULL)
		fclose(rejects.fp);
	ma_fwd_dest_free(&conf);
	return cursor == total ? 0 : 1;
}
