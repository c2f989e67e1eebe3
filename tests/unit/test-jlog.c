/* SPDX-License-Identifier: MIT */
/*
 * test-jlog.c - the journal log (ma-jlog): items from several threads,
 * all durable and read back whole and in each writer's order; the cursor
 * across a reopen; a torn tail from a "crash" skipped, never delivered;
 * the status scan agreeing with the log.
 */

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ma-jlog.h"
#include "ut.h"

#define THREADS    4
#define PER_THREAD 200

static char dir[256];

static void
make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/mailaudit-jlog-XXXXXX");
	ut_assert(mkdtemp(dir) != NULL);
}

static void
remove_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	ut_assert(d != NULL);
	while (d != NULL && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			ut_assert(unlinkat(dirfd(d), de->d_name, 0) == 0);
	}
	if (d != NULL)
		closedir(d);
	ut_assert(rmdir(dir) == 0);
}

struct writer {
	struct ma_jlog *log;
	int id;
	int failures;
};

static void *
write_items(void *arg)
{
	struct writer *w = arg;

	for (int i = 0; i < PER_THREAD; i++) {
		char rcpt[64], data[128];
		struct ma_error err = {0};
		int len;

		snprintf(
		    rcpt, sizeof(rcpt), "journal%d@example.test", w->id % 2);
		len = snprintf(
		    data, sizeof(data), "writer %d item %d\r\n\r\n", w->id, i);
		if (ma_jlog_append(w->log, rcpt, data, (size_t)len, &err) < 0)
			w->failures++;
	}
	return NULL;
}

/* item_text - the bytes of it as a string (short test items only) */
static void
item_text(const struct ma_jlog_item *it, char *out, size_t size)
{
	ssize_t n = pread(it->fd, out, it->len < size - 1 ? it->len : size - 1,
	    (off_t)it->off);

	out[n < 0 ? 0 : n] = '\0';
}

static void
test_threads_in_order(void)
{
	struct ma_error err = {0};
	struct ma_jlog *log;
	struct writer w[THREADS];
	pthread_t th[THREADS];
	struct ma_jlog_item items[64];
	int next[THREADS] = {0}, total = 0, bad = 0;
	uint64_t pending;
	int64_t oldest;

	ut_begin("jlog: threads append, reader gets every item in order");
	make_dir();
	log = ma_jlog_open(dir, &err);
	ut_assert(log != NULL);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct writer){log, i, 0};
		ut_assert(
		    pthread_create(&th[i], NULL, write_items, &w[i]) == 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		ut_assert_cmp(w[i].failures, ==, 0);
	}
	ut_assert_cmp(ma_jlog_pending(log), ==, THREADS * PER_THREAD);
	ut_assert(ma_jlog_scan(dir, &pending, &oldest, &err) == 0);
	ut_assert_cmp(pending, ==, THREADS * PER_THREAD);
	ut_assert(oldest > 0);
	for (;;) {
		size_t n = ma_jlog_peek(log, items, 64, 1 << 20);

		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			char text[128];
			int wid, idx;

			/* a batch is one recipient's */
			ut_assert_str(items[i].rcpt, items[0].rcpt);
			item_text(&items[i], text, sizeof(text));
			if (sscanf(text, "writer %d item %d", &wid, &idx) !=
				2 ||
			    wid < 0 || wid >= THREADS || idx != next[wid]) {
				bad++;
				continue;
			}
			next[wid]++;
			total++;
		}
		ma_jlog_consume(log, &items[n - 1], n);
	}
	ut_assert_cmp(bad, ==, 0);
	ut_assert_cmp(total, ==, THREADS * PER_THREAD);
	ut_assert_cmp(ma_jlog_pending(log), ==, 0);
	ma_jlog_close(&log);
	ut_assert(ma_jlog_scan(dir, &pending, &oldest, &err) == 0);
	ut_assert_cmp(pending, ==, 0);
	remove_dir();
	ut_end();
}

static void
append_n(struct ma_jlog *log, int from, int n)
{
	for (int i = from; i < from + n; i++) {
		char data[32];
		struct ma_error err = {0};
		int len = snprintf(data, sizeof(data), "item %d", i);

		ut_assert(ma_jlog_append(log, "j@example.test", data,
			      (size_t)len, &err) == 0);
	}
}

/* take - consume up to n items, checking they are from, from+1, ... */
static int
take(struct ma_jlog *log, int from, int n)
{
	struct ma_jlog_item items[8];
	int got = 0;

	while (got < n) {
		size_t k = ma_jlog_peek(log, items, 1, 1 << 20);
		char text[64], want[32];

		if (k == 0)
			break;
		item_text(&items[0], text, sizeof(text));
		snprintf(want, sizeof(want), "item %d", from + got);
		ut_assert_str(text, want);
		ma_jlog_consume(log, &items[0], 1);
		got++;
	}
	return got;
}

static void
test_cursor_and_torn_tail(void)
{
	struct ma_error err = {0};
	struct ma_jlog *log;
	char path[400];
	uint64_t pending;
	int64_t oldest;
	int fd;

	ut_begin("jlog: cursor kept across a reopen, torn tail skipped");
	make_dir();
	log = ma_jlog_open(dir, &err);
	ut_assert(log != NULL);
	append_n(log, 0, 5);
	ut_assert_cmp(take(log, 0, 2), ==, 2);
	ma_jlog_close(&log);

	/* A crash in the middle of an item: its bytes are there, partly. */
	snprintf(path, sizeof(path), "%s/%016x.log", dir, 1);
	fd = open(path, O_WRONLY | O_APPEND);
	ut_assert(fd >= 0);
	ut_assert(
	    write(fd, "MAJ1 100 00000000 1 j@example.test\r\nhalf", 40) == 40);
	close(fd);

	log = ma_jlog_open(dir, &err);
	ut_assert(log != NULL);
	ut_assert_cmp(ma_jlog_pending(log), ==, 3);
	ut_assert(ma_jlog_scan(dir, &pending, &oldest, &err) == 0);
	ut_assert_cmp(pending, ==, 3);
	append_n(log, 5, 2); /* a new segment after the torn one */
	ut_assert_cmp(take(log, 2, 10), ==, 5); /* 2..4, then 5..6 */
	ut_assert_cmp(ma_jlog_pending(log), ==, 0);
	/* The finished segment is gone. */
	ut_assert(access(path, F_OK) < 0);
	ma_jlog_close(&log);

	/* Everything consumed: a reopen finds nothing to do. */
	log = ma_jlog_open(dir, &err);
	ut_assert(log != NULL);
	ut_assert_cmp(ma_jlog_pending(log), ==, 0);
	ut_assert_cmp(take(log, 0, 1), ==, 0);
	append_n(log, 7, 1);
	ut_assert_cmp(take(log, 7, 1), ==, 1);
	ma_jlog_close(&log);
	remove_dir();
	ut_end();
}

static void
test_bad_input(void)
{
	struct ma_error err = {0};
	struct ma_jlog *log;
	char rcpt[600];

	ut_begin("jlog: bad recipients refused");
	make_dir();
	log = ma_jlog_open(dir, &err);
	ut_assert(log != NULL);
	ut_assert(ma_jlog_append(log, "a\r\nMAJ1 b", "x", 1, &err) < 0);
	memset(rcpt, 'a', sizeof(rcpt) - 1);
	rcpt[sizeof(rcpt) - 1] = '\0';
	ut_assert(ma_jlog_append(log, rcpt, "x", 1, &err) < 0);
	ut_assert_cmp(ma_jlog_pending(log), ==, 0);
	/* binary content, CRLF and the magic inside an item are data */
	ut_assert(
	    ma_jlog_append(log, "j@x", "\r\nMAJ1 5 x\0y\r\n", 15, &err) == 0);
	{
		struct ma_jlog_item it;

		ut_assert_cmp(ma_jlog_peek(log, &it, 1, 100), ==, 1);
		ut_assert_cmp(it.len, ==, 15);
	}
	ma_jlog_close(&log);
	remove_dir();
	ut_end();
}

UT_MAIN(test_threads_in_order, test_cursor_and_torn_tail, test_bad_input)
