/* SPDX-License-Identifier: MIT */
#ifndef MA_BENCH_GEN_H
#define MA_BENCH_GEN_H

/*
 * Realistic audit records for the benchmarks: the same generator feeds the
 * load generator (ma-bench-send) and the raw SQLite baseline
 * (ma-bench-sqlite), so both store the same kind of rows.
 *
 * A record looks like what the Dovecot plugin sends for one IMAP action:
 * a UUIDv7 id, the time, an operation from a realistic mix, owner or
 * delegate logon, user and mailbox out of 1000 mailboxes, folder (and a
 * destination folder for moves and copies), session, client IP, protocol,
 * server and one item with a Message-ID and a subject.  The encoded frame
 * is about 300 bytes (ma-bench-send prints the mean).
 */

#include <stdint.h>
#include <stdio.h>

#include "ma-action.h"
#include "ma-record.h"
#include "ma-util.h"

/* xorshift64*: fast, deterministic per seed. */
static inline uint64_t
bench_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Operation mix, weights roughly as an IMAP workload with every action
   audited produces them (reads and flag changes dominate). */
static const struct {
	enum ma_action action;
	unsigned int weight;
} bench_ops[] = {
	{MA_ACTION_MAIL_ITEMS_ACCESSED, 30},
	{MA_ACTION_UPDATE, 20},
	{MA_ACTION_CREATE, 12},
	{MA_ACTION_MOVE_TO_DELETED_ITEMS, 8},
	{MA_ACTION_SOFT_DELETE, 8},
	{MA_ACTION_HARD_DELETE, 6},
	{MA_ACTION_MOVE, 6},
	{MA_ACTION_COPY, 5},
	{MA_ACTION_FOLDER_BIND, 4},
	{MA_ACTION_MESSAGE_BIND, 1},
};

static const char *const bench_subjects[] = {
	"Q3 budget review", "Re: board minutes (draft 2)",
	"Payroll changes for October", "Fwd: contract renewal",
	"Lunch on Friday?", "Re: Re: incident 4711 post-mortem",
	"Invoice 2024-0815", "Your password expires in 5 days",
};

static const char *const bench_folders[] = {
	"INBOX", "INBOX", "INBOX", "Sent", "Archive/2024", "Projects",
};

/*
 * bench_make_record - fill rec (reset by the caller) with record number n
 * of a stream seeded by *seed, at time ms.
 */
static inline void
bench_make_record(struct ma_record *rec, uint64_t *seed, uint64_t n,
    int64_t ms)
{
	unsigned int total = 0, pick, i;
	uint64_t r = bench_rand(seed);
	enum ma_action op = MA_ACTION_UPDATE;
	char user[64], mbox[64], msgid[96], sess[32], ip[32];
	unsigned int u = (unsigned int)(r % 1000), m = u;

	for (i = 0; i < sizeof(bench_ops) / sizeof(bench_ops[0]); i++)
		total += bench_ops[i].weight;
	pick = (unsigned int)((r >> 16) % total);
	for (i = 0; i < sizeof(bench_ops) / sizeof(bench_ops[0]); i++) {
		if (pick < bench_ops[i].weight) {
			op = bench_ops[i].action;
			break;
		}
		pick -= bench_ops[i].weight;
	}
	/* one record in ten is a delegate's */
	if (((r >> 32) % 10) == 0) {
		rec->logon_type = MA_LOGON_DELEGATE;
		m = (u + 1) % 1000;
	} else {
		rec->logon_type = MA_LOGON_OWNER;
	}
	ma_uuid7(rec->id, ms);
	rec->time_ms = ms;
	rec->result = MA_RESULT_SUCCEEDED;
	snprintf(user, sizeof(user), "user%03u@example.com", u);
	snprintf(mbox, sizeof(mbox), "user%03u@example.com", m);
	snprintf(sess, sizeof(sess), "%016llx",
	    (unsigned long long)((r >> 8) & 0xffffffffffffULL));
	snprintf(ip, sizeof(ip), "192.0.2.%u", (unsigned int)((r >> 40) % 250));
	snprintf(msgid, sizeof(msgid), "<%llx.%llu@mail.example.com>",
	    (unsigned long long)bench_rand(seed), (unsigned long long)n);
	ma_record_set(rec, &rec->operation, ma_action_name(op));
	ma_record_set(rec, &rec->user, user);
	ma_record_set(rec, &rec->mailbox, mbox);
	ma_record_set(rec, &rec->folder,
	    bench_folders[(r >> 44) % (sizeof(bench_folders) /
					  sizeof(bench_folders[0]))]);
	if (op == MA_ACTION_MOVE || op == MA_ACTION_COPY)
		ma_record_set(rec, &rec->dest_folder, "Projects");
	else if (op == MA_ACTION_MOVE_TO_DELETED_ITEMS)
		ma_record_set(rec, &rec->dest_folder, "Trash");
	ma_record_set(rec, &rec->session, sess);
	ma_record_set(rec, &rec->client_ip, ip);
	ma_record_set(rec, &rec->client_info, "Client=IMAP4;Protocol=IMAP4");
	ma_record_set(rec, &rec->protocol, "imap");
	ma_record_set(rec, &rec->server, "mx1.example.com");
	if (op != MA_ACTION_FOLDER_BIND)
		ma_record_add_item(rec, (uint32_t)(n % 100000) + 1, msgid,
		    bench_subjects[(r >> 50) % (sizeof(bench_subjects) /
						   sizeof(bench_subjects[0]))],
		    2000 + (r >> 20) % 60000);
}

#endif
