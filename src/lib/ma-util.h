/* SPDX-License-Identifier: MIT */
#ifndef MA_UTIL_H
#define MA_UTIL_H

/*
 * Small building blocks shared by every mailaudit component: the error
 * struct library functions fill instead of exiting, always-on assertions,
 * allocation wrappers whose out-of-memory path is one fatal hook, bounded
 * growable strings and a bump arena that holds a record with its strings.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Filled by library functions that fail; msg is always NUL-terminated. */
struct ma_error {
	int code;
	char msg[256];
};

/* ma_error_set - format msg into err (err may be NULL); returns -1. */
int ma_error_set(struct ma_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Assertions stay compiled in: a broken invariant aborts with a location. */
#define MA_ASSERT(e)                                                           \
	((e) ? (void)0 : ma_assert_failed(#e, __FILE__, __LINE__, __func__))
void ma_assert_failed(const char *expr, const char *file, int line,
    const char *func) __attribute__((noreturn));

/*
 * Out-of-memory is fatal everywhere.  The hook defaults to printing to
 * stderr and abort(); the Dovecot plugin installs one that calls i_fatal.
 */
typedef void ma_oom_fn(size_t size);
void ma_set_oom_hook(ma_oom_fn *fn);
void *ma_xmalloc(size_t size);
void *ma_xcalloc(size_t count, size_t size);
void *ma_xrealloc(void *ptr, size_t count, size_t size);
char *ma_xstrdup(const char *s);
char *ma_xstrndup(const char *s, size_t len);

/*
 * Bounded growable string.  data is always NUL-terminated; appending past
 * max fails (returns -1) and leaves the buffer unchanged, so a hostile input
 * can never make us allocate without limit.
 */
struct ma_buf {
	char *data;
	size_t len, cap, max;
};
void ma_buf_init(struct ma_buf *buf, size_t max);
void ma_buf_deinit(struct ma_buf *buf);
void ma_buf_reset(struct ma_buf *buf);
/*
 * ma_buf_reserve - room for extra more bytes (plus the NUL) without
 * changing len, for a writer that fills data + len itself and then
 * raises len; -1 if that would pass max.
 */
int ma_buf_reserve(struct ma_buf *buf, size_t extra);
int ma_buf_append(struct ma_buf *buf, const void *data, size_t len);
int ma_buf_puts(struct ma_buf *buf, const char *s);
int ma_buf_putc(struct ma_buf *buf, char c);
/* ma_buf_put_u64 - decimal digits of v, without printf's cost. */
int ma_buf_put_u64(struct ma_buf *buf, uint64_t v);
int ma_buf_printf(struct ma_buf *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * ma_buf_put_fast - ma_buf_append, with the usual case (room already
 * allocated) copied inline, for writers that make hundreds of appends of a
 * few bytes per record.  ma_buf keeps cap <= max + 1, so fitting below cap
 * is within max.
 */
static inline int
ma_buf_put_fast(struct ma_buf *buf, const void *data, size_t len)
{
	if (buf->data != NULL && len < buf->cap - buf->len) {
		memcpy(buf->data + buf->len, data, len);
		buf->len += len;
		buf->data[buf->len] = '\0';
		return 0;
	}
	return ma_buf_append(buf, data, len);
}

/*
 * Bump allocator: many small allocations freed at once.  A record and all
 * its strings live in one arena.
 */
struct ma_arena_chunk;
struct ma_arena {
	struct ma_arena_chunk *head;
	size_t total;
};
void ma_arena_init(struct ma_arena *arena);
void ma_arena_deinit(struct ma_arena *arena);
/* ma_arena_reset - free everything but keep the first chunk for reuse. */
void ma_arena_reset(struct ma_arena *arena);
void *ma_arena_alloc(struct ma_arena *arena, size_t size);
char *ma_arena_strdup(struct ma_arena *arena, const char *s);
char *ma_arena_strndup(struct ma_arena *arena, const char *s, size_t len);

/* Parsing helpers: 0 on success, -1 on any malformed or out-of-range input. */
int ma_parse_u64(const char *s, uint64_t max, uint64_t *val_r);
int ma_parse_i64(const char *s, int64_t *val_r);

/* ma_hexval - value of one hex digit (either case), or -1. */
int ma_hexval(char c);

/*
 * ma_become_user - drop every group but gid and switch real, effective and
 * saved ids to uid/gid for good (a daemon after binding as root).  -1 with
 * errno on failure.
 */
int ma_become_user(unsigned int uid, unsigned int gid);

/* ma_hash_str - FNV-1a of a string, for small in-memory tables. */
uint64_t ma_hash_str(const char *s);

/* ma_write_all - write all of data to fd, retrying on EINTR; -1 (errno). */
int ma_write_all(int fd, const void *data, size_t len);

/* Milliseconds since the Unix epoch, UTC. */
int64_t ma_now_ms(void);

struct timespec;
/*
 * ma_deadline - *ts = now on clock (a clockid_t, e.g. CLOCK_REALTIME for
 * pthread_cond_timedwait's default) plus ms >= 0, normalised.
 */
void ma_deadline(int clock, int64_t ms, struct timespec *ts);

/*
 * ma_fmt_time - "YYYY-MM-DDTHH:MM:SS" (with_ms: ".mmm") in UTC into out,
 * which needs 24 bytes.
 */
void ma_fmt_time(int64_t ms, bool with_ms, char out[32]);

/*
 * ma_parse_time - accept "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS[.mmm]]" with an
 * optional trailing Z (all UTC), or "@<epoch-seconds>", or a relative "-90d",
 * "-12h", "-30m".  Returns 0 and the time in ms, or -1.
 */
int ma_parse_time(const char *s, int64_t now_ms, int64_t *ms_r);

/*
 * ma_sanitize - copy s into out for a log line: control bytes become '?',
 * and the copy is cut at out_size-4 bytes with "..." appended.
 */
void ma_sanitize(const char *s, size_t len, char *out, size_t out_size);

/*
 * ma_utf8_repair - return true if s[0..len) is valid UTF-8.  Otherwise, if
 * out is not NULL, append a copy to out with every invalid sequence replaced
 * by U+FFFD.
 */
bool ma_utf8_valid(const char *s, size_t len);
int ma_utf8_repair(const char *s, size_t len, struct ma_buf *out);

/*
 * ma_utf8_decode - length and code point (*cp_r) of the sequence at s,
 * which must be valid UTF-8 (checked or repaired before).
 */
static inline size_t
ma_utf8_decode(const unsigned char *s, uint32_t *cp_r)
{
	if (s[0] < 0x80) {
		*cp_r = s[0];
		return 1;
	}
	if (s[0] < 0xe0) {
		*cp_r = ((uint32_t)(s[0] & 0x1f) << 6) | (s[1] & 0x3f);
		return 2;
	}
	if (s[0] < 0xf0) {
		*cp_r = ((uint32_t)(s[0] & 0x0f) << 12) |
			((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
		return 3;
	}
	*cp_r = ((uint32_t)(s[0] & 0x07) << 18) |
		((uint32_t)(s[1] & 0x3f) << 12) |
		((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
	return 4;
}

/* 16 random-ish bytes laid out like a UUIDv7 (time-ordered). */
void ma_uuid7(uint8_t out[16], int64_t ms);
void ma_uuid_fmt(const uint8_t id[16], char out[37]);
int ma_uuid_parse(const char *s, uint8_t out[16]);

#endif
