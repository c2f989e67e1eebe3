/* SPDX-License-Identifier: MIT */
/*
 * ma-bench-siem - render throughput of the SIEM formats (ma-siem), one
 * thread, no I/O: how many records a second mailaudit-forward can format
 * before any transport cost.
 *
 * A pool of POOL_RECORDS realistic records (ma-bench-gen.h: the IMAP mix
 * with one item each, plus one record in eight a MailItemsAccessed of
 * three items and one in sixteen a SendAs with five recipients) is
 * rendered round-robin -n times (default 200000) for each output: the
 * body in json, cef and ecs, the RFC 6587 syslog frame, the HEC event and
 * the _bulk pair.  Each render appends to one buffer that is reset after
 * 1 MiB, as a transport batching records would.
 *
 * Output, one line per output on stdout:
 *   output=<kind>-<format> records=N seconds=S rate=R cpu_seconds=C
 *   cpu_rate=R bytes_mean=B
 * rate is by the wall clock, cpu_rate by the process's CPU time (the
 * figure to trust on a machine that other work keeps busy).
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ma-bench-gen.h"
#include "ma-siem.h"

#define POOL_RECORDS 1024
#define BATCH_BYTES  (1024 * 1024)

enum bench_kind {
	BK_BODY,
	BK_FRAME,
	BK_HEC,
	BK_BULK
};

static const struct {
	const char *name;
	enum bench_kind kind;
	enum ma_siem_format format;
} outputs[] = {
    {"body-json", BK_BODY, MA_SIEM_JSON},
    {"body-cef", BK_BODY, MA_SIEM_CEF},
    {"body-ecs", BK_BODY, MA_SIEM_ECS},
    {"syslog-json", BK_FRAME, MA_SIEM_JSON},
    {"syslog-cef", BK_FRAME, MA_SIEM_CEF},
    {"syslog-ecs", BK_FRAME, MA_SIEM_ECS},
    {"hec-json", BK_HEC, MA_SIEM_JSON},
    {"hec-cef", BK_HEC, MA_SIEM_CEF},
    {"hec-ecs", BK_HEC, MA_SIEM_ECS},
    {"bulk-json", BK_BULK, MA_SIEM_JSON},
    {"bulk-ecs", BK_BULK, MA_SIEM_ECS},
};

static const struct ma_siem_ctx bench_ctx = {
    .export =
	{
	    .format = MA_EXPORT_JSON,
	    .organization_id = "0b5d1c7e-3a3c-4b0e-8d1e-6f2a9a6b7c01",
	    .organization_name = "example.onmicrosoft.com",
	},
    .hostname = "fwd.example.com",
    .app_name = "mailaudit",
    .sd_id = "mailaudit@32473",
    .facility = 13,
    .product_version = "0.1.0",
};

static double
clock_s(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* make_pool - the records, with a few larger kinds mixed in. */
static void
make_pool(struct ma_record *pool)
{
	uint64_t seed = 0x5eed5eedULL;
	int64_t ms = 1741082561123LL;

	for (uint64_t n = 0; n < POOL_RECORDS; n++) {
		struct ma_record *rec = &pool[n];

		ma_record_init(rec);
		bench_make_record(rec, &seed, n, ms + (int64_t)n);
		rec->seq = (int64_t)n + 1;
		if (n % 8 == 3) {
			ma_record_set(
			    rec, &rec->operation, "MailItemsAccessed");
			ma_record_add_item(rec, 7001,
			    "<a7001@mail.example.com>", "Re: quarterly numbers",
			    12000);
			ma_record_add_item(
			    rec, 7002, "<a7002@mail.example.com>", NULL, 0);
			ma_record_add_prop(rec, "MailAccessType", NULL, "Bind");
		} else if (n % 16 == 5) {
			ma_record_set(rec, &rec->operation, "SendAs");
			ma_record_set(rec, &rec->protocol, "smtp");
			ma_record_add_prop(
			    rec, "SendAsUserSmtp", NULL, "sales@example.com");
			ma_record_add_prop(rec, "RecipientCount", NULL, "5");
			ma_record_add_prop(rec, "Recipients", NULL,
			    "a@example.net, b@example.net, c@example.org, "
			    "d@example.org, e@example.com");
		}
	}
}

static int
render(unsigned int o, const struct ma_record *rec, struct ma_buf *out)
{
	switch (outputs[o].kind) {
	case BK_BODY:
		return ma_siem_body(&bench_ctx, outputs[o].format, rec, out);
	case BK_FRAME:
		return ma_siem_syslog_frame(
		    &bench_ctx, outputs[o].format, rec, out);
	case BK_HEC:
		return ma_siem_hec_event(&bench_ctx, outputs[o].format, rec,
		    "mail_audit", NULL, out);
	case BK_BULK:
		return ma_siem_bulk_create(
		    &bench_ctx, outputs[o].format, rec, NULL, out);
	}
	return -1;
}

int
main(int argc, char **argv)
{
	static struct ma_record pool[POOL_RECORDS];
	unsigned long long count = 200000;
	struct ma_buf out;
	int opt;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		char *end;

		if (opt != 'n') {
			fprintf(stderr, "usage: ma-bench-siem [-n records]\n");
			return 2;
		}
		count = strtoull(optarg, &end, 10);
		if (*end != '\0' || count == 0) {
			fprintf(stderr, "ma-bench-siem: bad -n: %s\n", optarg);
			return 2;
		}
	}
	make_pool(pool);
	ma_buf_init(&out, 4 * BATCH_BYTES);
	for (unsigned int o = 0; o < sizeof(outputs) / sizeof(*outputs); o++) {
		unsigned long long bytes = 0;
		double t0 = clock_s(CLOCK_MONOTONIC), secs;
		double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), cpu;

		for (unsigned long long n = 0; n < count; n++) {
			size_t before = out.len;

			if (render(o, &pool[n % POOL_RECORDS], &out) < 0) {
				fprintf(stderr,
				    "ma-bench-siem: %s: render "
				    "failed\n",
				    outputs[o].name);
				return 1;
			}
			bytes += out.len - before;
			if (out.len >= BATCH_BYTES)
				ma_buf_reset(&out);
		}
		secs = clock_s(CLOCK_MONOTONIC) - t0;
		cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
		printf("output=%s records=%llu seconds=%.3f rate=%.0f "
		       "cpu_seconds=%.3f cpu_rate=%.0f bytes_mean=%.0f\n",
		    outputs[o].name, count, secs, (double)count / secs, cpu,
		    (double)count / cpu, (double)bytes / (double)count);
		ma_buf_reset(&out);
	}
	ma_buf_deinit(&out);
	for (unsigned int n = 0; n < POOL_RECORDS; n++)
		ma_record_deinit(&pool[n]);
	return 0;
}
