/* SPDX-License-Identifier: MIT */
/*
 * ma-util.c - errors, assertions, allocation, bounded buffers, arenas,
 * number/time parsing, UTF-8 checks and record ids.
 *
 * Everything here is used on hot paths of the daemon (one arena per
 * record, one buffer per connection) and inside Dovecot mail processes, so
 * it is plain libc with no global state beyond the out-of-memory hook.
 */

#include "ma-util.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int
ma_error_set(struct ma_error *err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (err->code == 0)
		err->code = -1;
	return -1;
}

void
ma_assert_failed(const char *expr, const char *file, int line, const char *func)
{
	fprintf(stderr, "mailaudit: assertion failed: %s (%s:%d %s)\n", expr,
	    file, line, func);
	abort();
}

/* Allocation. */

static void
default_oom(size_t size)
{
	fprintf(
	    stderr, "mailaudit: out of memory allocating %zu bytes\n", size);
	abort();
}

static ma_oom_fn *oom_hook = default_oom;

void
ma_set_oom_hook(ma_oom_fn *fn)
{
	oom_hook = fn != NULL ? fn : default_oom;
}

void *
ma_xmalloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);

	if (p == NULL)
		oom_hook(size);
	return p;
}

void *
ma_xcalloc(size_t count, size_t size)
{
	void *p = calloc(count == 0 ? 1 : count, size == 0 ? 1 : size);

	if (p == NULL)
		oom_hook(count * size);
	return p;
}

void *
ma_xrealloc(void *ptr, size_t count, size_t size)
{
	size_t total;
	void *p;

	if (__builtin_mul_overflow(count, size, &total))
		oom_hook(SIZE_MAX);
	p = realloc(ptr, total == 0 ? 1 : total);
	if (p == NULL)
		oom_hook(total);
	return p;
}

char *
ma_xstrdup(const char *s)
{
	return ma_xstrndup(s, strlen(s));
}

char *
ma_xstrndup(const char *s, size_t len)
{
	char *p = ma_xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* Bounded buffers. */

void
ma_buf_init(struct ma_buf *buf, size_t max)
{
	memset(buf, 0, sizeof(*buf));
	buf->max = max;
}

void
ma_buf_deinit(struct ma_buf *buf)
{
	free(buf->data);
	memset(buf, 0, sizeof(*buf));
}

void
ma_buf_reset(struct ma_buf *buf)
{
	buf->len = 0;
	if (buf->data != NULL)
		buf->data[0] = '\0';
}

/* buf_reserve - make room for len more bytes plus the NUL. */
static int
buf_reserve(struct ma_buf *buf, size_t len)
{
	size_t need, cap;

	if (__builtin_add_overflow(buf->len, len, &need) || need > buf->max)
		return -1;
	if (need + 1 <= buf->cap)
		return 0;
	cap = buf->cap < 64 ? 64 : buf->cap;
	while (cap < need + 1)
		cap *= 2;
	if (cap > buf->max + 1)
		cap = buf->max + 1;
	buf->data = ma_xrealloc(buf->data, cap, 1);
	buf->cap = cap;
	return 0;
}

int
ma_buf_reserve(struct ma_buf *buf, size_t extra)
{
	return buf_reserve(buf, extra);
}

int
ma_buf_append(struct ma_buf *buf, const void *data, size_t len)
{
	if (buf_reserve(buf, len) < 0)
		return -1;
	if (len > 0)
		memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
	return 0;
}

int
ma_buf_puts(struct ma_buf *buf, const char *s)
{
	return ma_buf_append(buf, s, strlen(s));
}

int
ma_buf_putc(struct ma_buf *buf, char c)
{
	return ma_buf_append(buf, &c, 1);
}

int
ma_buf_put_u64(struct ma_buf *buf, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return ma_buf_append(buf, tmp + sizeof(tmp) - n, n);
}

int
ma_buf_printf(struct ma_buf *buf, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(buf, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf->len += (size_t)n;
	return 0;
}

/* Arenas. */

struct ma_arena_chunk {
	struct ma_arena_chunk *next;
	size_t size, used;
	max_align_t data[];
};

#define ARENA_CHUNK 2048

void
ma_arena_init(struct ma_arena *arena)
{
	memset(arena, 0, sizeof(*arena));
}

void
ma_arena_deinit(struct ma_arena *arena)
{
	struct ma_arena_chunk *c, *next;

	for (c = arena->head; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	memset(arena, 0, sizeof(*arena));
}

void
ma_arena_reset(struct ma_arena *arena)
{
	struct ma_arena_chunk *c, *next, *last = NULL;

	/* Keep the oldest chunk (the end of the list): it is usually the
	   only one a small record needs. */
	for (c = arena->head; c != NULL; c = next) {
		next = c->next;
		if (next == NULL)
			last = c;
		else
			free(c);
	}
	arena->head = last;
	arena->total = 0;
	if (last != NULL)
		last->used = 0;
}

void *
ma_arena_alloc(struct ma_arena *arena, size_t size)
{
	struct ma_arena_chunk *c = arena->head;
	size_t align = sizeof(max_align_t), csize;
	void *p;

	size = (size + align - 1) & ~(align - 1);
	if (c == NULL || c->size - c->used < size) {
		csize = size > ARENA_CHUNK ? size : ARENA_CHUNK;
		c = ma_xmalloc(sizeof(*c) + csize);
		c->size = csize;
		c->used = 0;
		c->next = arena->head;
		arena->head = c;
	}
	p = (char *)c->data + c->used;
	c->used += size;
	arena->total += size;
	return p;
}

char *
ma_arena_strndup(struct ma_arena *arena, const char *s, size_t len)
{
	char *p = ma_arena_alloc(arena, len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *
ma_arena_strdup(struct ma_arena *arena, const char *s)
{
	return ma_arena_strndup(arena, s, strlen(s));
}

/* Parsing. */

int
ma_parse_u64(const char *s, uint64_t max, uint64_t *val_r)
{
	unsigned long long v;
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*val_r = v;
	return 0;
}

int
ma_parse_i64(const char *s, int64_t *val_r)
{
	uint64_t v;
	bool neg = false;

	if (s != NULL && *s == '-') {
		neg = true;
		s++;
	}
	if (ma_parse_u64(s, INT64_MAX, &v) < 0)
		return -1;
	*val_r = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

int64_t
ma_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
ma_deadline(int clock, int64_t ms, struct timespec *ts)
{
	clock_gettime((clockid_t)clock, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* put_num - width decimal digits of v (v >= 0) at out */
static void
put_num(char *out, unsigned int width, int v)
{
	for (unsigned int i = width; i > 0; i--) {
		out[i - 1] = (char)('0' + v % 10);
		v /= 10;
	}
}

void
ma_fmt_time(int64_t ms, bool with_ms, char out[32])
{
	time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	int frac = (int)(ms - (int64_t)secs * 1000);
	struct tm tm;
	int year;

	if (gmtime_r(&secs, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	year = tm.tm_year + 1900;
	if (year < 0 || year > 9999)
		year = 0;
	/* YYYY-MM-DDTHH:MM:SS[.mmm], written by hand: fixed width. */
	memcpy(out, "0000-00-00T00:00:00.000", 24);
	put_num(out, 4, year);
	put_num(out + 5, 2, tm.tm_mon + 1);
	put_num(out + 8, 2, tm.tm_mday);
	put_num(out + 11, 2, tm.tm_hour);
	put_num(out + 14, 2, tm.tm_min);
	put_num(out + 17, 2, tm.tm_sec);
	if (with_ms)
		put_num(out + 20, 3, frac);
	else
		out[19] = '\0';
}

/* parse_digits - exactly n digits at *p into *val; advances *p. */
static int
parse_digits(const char **p, int n, int *val)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*val = v;
	return 0;
}

static int
parse_relative(const char *s, int64_t now_ms, int64_t *ms_r)
{
	uint64_t n;
	int64_t unit;
	size_t len = strlen(s);
	char num[24];

	if (len < 3 || len - 2 >= sizeof(num))
		return -1;
	switch (s[len - 1]) {
	case 'd':
		unit = 86400000;
		break;
	case 'h':
		unit = 3600000;
		break;
	case 'm':
		unit = 60000;
		break;
	default:
		return -1;
	}
	memcpy(num, s + 1, len - 2);
	num[len - 2] = '\0';
	if (ma_parse_u64(num, 36500, &n) < 0)
		return -1;
	*ms_r = now_ms - (int64_t)n * unit;
	return 0;
}

int
ma_parse_time(const char *s, int64_t now_ms, int64_t *ms_r)
{
	struct tm tm;
	int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
	const char *p = s;
	int64_t v;
	time_t t;

	if (*s == '-')
		return parse_relative(s, now_ms, ms_r);
	if (*s == '@') {
		if (ma_parse_i64(s + 1, &v) < 0 || v > INT64_MAX / 1000)
			return -1;
		*ms_r = v * 1000;
		return 0;
	}
	if (parse_digits(&p, 4, &y) < 0 || *p++ != '-' ||
	    parse_digits(&p, 2, &mo) < 0 || *p++ != '-' ||
	    parse_digits(&p, 2, &d) < 0)
		return -1;
	if (*p == 'T' || *p == ' ') {
		p++;
		if (parse_digits(&p, 2, &h) < 0 || *p++ != ':' ||
		    parse_digits(&p, 2, &mi) < 0)
			return -1;
		if (*p == ':') {
			p++;
			if (parse_digits(&p, 2, &sec) < 0)
				return -1;
			if (*p == '.') {
				p++;
				if (parse_digits(&p, 3, &frac) < 0)
					return -1;
			}
		}
	}
	if (*p == 'Z')
		p++;
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || sec > 60)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	*ms_r = (int64_t)t * 1000 + frac;
	return 0;
}

void
ma_sanitize(const char *s, size_t len, char *out, size_t out_size)
{
	size_t i, o = 0;

	MA_ASSERT(out_size >= 8);
	for (i = 0; i < len && o < out_size - 4; i++) {
		unsigned char c = (unsigned char)s[i];

		out[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (i < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/* UTF-8. */

/* utf8_seq_len - length of the valid sequence at s, or 0 if invalid. */
static size_t
utf8_seq_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF. */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

bool
ma_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		n = utf8_seq_len(p + i, len - i);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

int
ma_utf8_repair(const char *s, size_t len, struct ma_buf *out)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	while (i < len) {
		n = utf8_seq_len(p + i, len - i);
		if (n == 0) {
			if (ma_buf_append(out, "\xef\xbf\xbd", 3) < 0)
				return -1;
			i++;
			continue;
		}
		if (ma_buf_append(out, s + i, n) < 0)
			return -1;
		i += n;
	}
	return 0;
}

int
ma_become_user(unsigned int uid, unsigned int gid)
{
	gid_t g = (gid_t)gid;

	if (setgroups(1, &g) < 0 || setresgid(g, g, g) < 0 ||
	    setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)
		return -1;
	return 0;
}

uint64_t
ma_hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

int
ma_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Record ids. */

/*
 * random_bytes - from a per-thread pool refilled by getrandom(): one
 * system call per 25 ids instead of one per id.  The pool is tied to a
 * fork generation that a pthread_atfork() child handler advances, so a
 * child of fork() never repeats its parent's bytes (two records with one
 * id would be de-duplicated into one), without a getpid() per id.
 */
static unsigned int fork_generation = 1;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void
fork_child(void)
{
	__atomic_add_fetch(&fork_generation, 1, __ATOMIC_RELAXED);
}

static void
fork_register(void)
{
	MA_ASSERT(pthread_atfork(NULL, NULL, fork_child) == 0);
}

static void
random_bytes(uint8_t *out, size_t len)
{
	static __thread uint8_t pool[256];
	static __thread size_t avail;
	static __thread unsigned int owner;
	unsigned int gen;

	pthread_once(&fork_once, fork_register);
	gen = __atomic_load_n(&fork_generation, __ATOMIC_RELAXED);
	MA_ASSERT(len <= sizeof(pool));
	if (owner != gen || avail < len) {
		size_t got = 0;

		while (got < sizeof(pool)) {
			ssize_t n =
			    getrandom(pool + got, sizeof(pool) - got, 0);

			if (n < 0 && errno == EINTR)
				continue;
			/* getrandom cannot fail on Linux >= 3.17 once the
			   pool is initialised; a failure is a broken system. */
			MA_ASSERT(n > 0);
			got += (size_t)n;
		}
		avail = sizeof(pool);
		owner = gen;
	}
	avail -= len;
	memcpy(out, pool + avail, len);
	/* Used bytes are not kept around. */
	memset(pool + avail, 0, len);
}

void
ma_uuid7(uint8_t out[16], int64_t ms)
{
	uint64_t t = (uint64_t)ms;

	random_bytes(out + 6, 10);
	for (int i = 0; i < 6; i++)
		out[i] = (uint8_t)(t >> (40 - 8 * i));
	out[6] = (uint8_t)(0x70 | (out[6] & 0x0f));
	out[8] = (uint8_t)(0x80 | (out[8] & 0x3f));
}

void
ma_uuid_fmt(const uint8_t id[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	int o = 0;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[id[i] >> 4];
		out[o++] = hex[id[i] & 15];
	}
	out[o] = '\0';
}

int
ma_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
ma_uuid_parse(const char *s, uint8_t out[16])
{
	int n = 0;

	for (const char *p = s; *p != '\0'; p++) {
		int hi, lo;

		if (*p == '-' &&
		    (p - s == 8 || p - s == 13 || p - s == 18 || p - s == 23))
			continue;
		if (n == 16 || (hi = ma_hexval(p[0])) < 0 || p[1] == '\0' ||
		    (lo = ma_hexval(p[1])) < 0)
			return -1;
		out[n++] = (uint8_t)(hi << 4 | lo);
		p++;
	}
	return n == 16 ? 0 : -1;
}
