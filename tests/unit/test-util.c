/* SPDX-License-Identifier: MIT */
/* test-util.c - buffers, arenas, parsing, time, UTF-8, ids. */

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ma-util.h"
#include "ut.h"

static void
test_buf(void)
{
	struct ma_buf b;

	ut_begin("bounded buffer refuses to grow past max");
	ma_buf_init(&b, 10);
	ut_assert(ma_buf_puts(&b, "0123456789") == 0);
	ut_assert(ma_buf_putc(&b, 'x') < 0);
	ut_assert_cmp(b.len, ==, 10);
	ut_assert_str(b.data, "0123456789");
	ma_buf_reset(&b);
	ut_assert(ma_buf_printf(&b, "%d", 12345678) == 0);
	ut_assert(ma_buf_printf(&b, "%d", 123) < 0);
	ut_assert_str(b.data, "12345678");
	ma_buf_deinit(&b);
	ma_buf_init(&b, 64);
	ut_assert(ma_buf_put_u64(&b, 0) == 0);
	ut_assert(ma_buf_put_u64(&b, 18446744073709551615ULL) == 0);
	ut_assert_str(b.data, "018446744073709551615");
	ma_buf_deinit(&b);
	ut_end();
}

static void
test_arena(void)
{
	struct ma_arena a;
	char *big, *s;

	ut_begin("arena allocations, reset and large blocks");
	ma_arena_init(&a);
	for (int i = 0; i < 1000; i++) {
		s = ma_arena_strdup(&a, "hello");
		ut_assert_str(s, "hello");
	}
	big = ma_arena_alloc(&a, 100000);
	memset(big, 1, 100000);
	ma_arena_reset(&a);
	ut_assert_cmp(a.total, ==, 0);
	s = ma_arena_strndup(&a, "abcdef", 3);
	ut_assert_str(s, "abc");
	ma_arena_deinit(&a);
	ut_end();
}

static void
test_numbers(void)
{
	uint64_t v;
	int64_t i;

	ut_begin("number parsing rejects junk and overflow");
	ut_assert(ma_parse_u64("42", 100, &v) == 0 && v == 42);
	ut_assert(ma_parse_u64("101", 100, &v) < 0);
	ut_assert(ma_parse_u64("-1", 100, &v) < 0);
	ut_assert(ma_parse_u64(" 1", 100, &v) < 0);
	ut_assert(ma_parse_u64("1x", 100, &v) < 0);
	ut_assert(ma_parse_u64("", 100, &v) < 0);
	ut_assert(ma_parse_u64("99999999999999999999999", UINT64_MAX, &v) < 0);
	ut_assert(ma_parse_i64("-5", &i) == 0 && i == -5);
	ut_end();
}

static void
test_time(void)
{
	char out[32];
	int64_t ms;

	ut_begin("time formatting and parsing (UTC)");
	ma_fmt_time(1700000000123, true, out);
	ut_assert_str(out, "2023-11-14T22:13:20.123");
	ma_fmt_time(1700000000123, false, out);
	ut_assert_str(out, "2023-11-14T22:13:20");
	ut_assert(ma_parse_time("2023-11-14T22:13:20.123Z", 0, &ms) == 0);
	ut_assert_cmp(ms, ==, 1700000000123);
	ut_assert(ma_parse_time("2023-11-14", 0, &ms) == 0);
	ut_assert_cmp(ms, ==, 1699920000000);
	ut_assert(ma_parse_time("-2d", 1700000000000, &ms) == 0);
	ut_assert_cmp(ms, ==, 1700000000000 - 2 * 86400000LL);
	ut_assert(ma_parse_time("@1700000000", 0, &ms) == 0);
	ut_assert_cmp(ms, ==, 1700000000000);
	ut_assert(ma_parse_time("2023-13-01", 0, &ms) < 0);
	ut_assert(ma_parse_time("yesterday", 0, &ms) < 0);
	ut_assert(ma_parse_time("2023-11-14T22", 0, &ms) < 0);
	ut_end();
}

static void
test_utf8(void)
{
	struct ma_buf b;

	ut_begin("UTF-8 validation and repair");
	ut_assert(ma_utf8_valid("h\xc3\xa9llo", 6));
	ut_assert(!ma_utf8_valid("\xc3", 1));
	ut_assert(!ma_utf8_valid("\xc0\x80", 2));         /* overlong */
	ut_assert(!ma_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
	ut_assert(!ma_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	ma_buf_init(&b, 100);
	ut_assert(ma_utf8_repair("a\xff"
				 "b",
		      3, &b) == 0);
	ut_assert_str(b.data, "a\xef\xbf\xbd"
			      "b");
	ma_buf_deinit(&b);
	ut_end();
}

static void
test_uuid(void)
{
	uint8_t a[16], b[16], c[16];
	char s[37];

	ut_begin("UUIDv7 ids are time-ordered and round-trip");
	ma_uuid7(a, 1700000000000);
	ma_uuid7(b, 1700000000001);
	ut_assert(memcmp(a, b, 16) < 0);
	ut_assert((a[6] >> 4) == 7 && (a[8] & 0xc0) == 0x80);
	ma_uuid_fmt(a, s);
	ut_assert_cmp(strlen(s), ==, 36);
	ut_assert(ma_uuid_parse(s, c) == 0 && memcmp(a, c, 16) == 0);
	ut_assert(ma_uuid_parse("1234", c) < 0);
	/* The pooled random part never repeats within a process. */
	for (int i = 0; i < 1000; i++) {
		ma_uuid7(b, 1700000000000);
		ut_assert(memcmp(a, b, 16) != 0);
		memcpy(c, b, 16);
		ma_uuid7(b, 1700000000000);
		ut_assert(memcmp(c, b, 16) != 0);
	}
	ut_assert(ma_uuid_parse("0189d6a4-1111-7000-8000-00000000000g", c) < 0);
	ut_end();
}

static void
test_uuid_after_fork(void)
{
	uint8_t a[16], b[16];
	int fds[2];
	pid_t pid;

	ut_begin("a forked child never repeats its parent's ids");
	ma_uuid7(a, 1700000000000); /* fill the parent's pool */
	ut_assert(pipe(fds) == 0);
	pid = fork();
	if (pid == 0) {
		ma_uuid7(b, 1700000000000);
		_exit(write(fds[1], b, 16) == 16 ? 0 : 1);
	}
	ut_assert(pid > 0);
	ma_uuid7(a, 1700000000000);
	ut_assert(read(fds[0], b, 16) == 16);
	waitpid(pid, NULL, 0);
	ut_assert(memcmp(a, b, 16) != 0);
	close(fds[0]);
	close(fds[1]);
	ut_end();
}

static void
test_sanitize(void)
{
	char out[16];

	ut_begin("sanitize for log lines");
	ma_sanitize("a\nb\x1b[31m", 8, out, sizeof(out));
	ut_assert_str(out, "a?b?[31m");
	ma_sanitize("0123456789abcdefghij", 20, out, sizeof(out));
	ut_assert_str(out, "0123456789ab...");
	ut_end();
}

UT_MAIN(test_buf, test_arena, test_numbers, test_time, test_utf8, test_uuid,
    test_uuid_after_fork, test_sanitize)
