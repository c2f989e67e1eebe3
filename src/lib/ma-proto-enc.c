/* SPDX-License-Identifier: MIT */
/*
 * ma-proto-enc.c - encode wire frames (see ma-proto.h and
 * docs/PROTOCOL.md).  This is the sensors' side (plugin, milter); the
 * daemon's strict decoder is in ma-proto.c.
 *
 * Sensors encode a few small records per IMAP command inside the mail
 * process, where call overhead, not bytes, dominated: a checked append
 * per key, '=', value and newline.  So a record is written in two passes:
 * the worst case (every value byte escaped) is summed and reserved once,
 * then everything is written straight into the buffer.  A record whose
 * worst case does not fit the buffer's max (a long item list near the
 * frame limit) takes the checked path, which writes the same bytes.
 */

#include "ma-proto.h"

#include <string.h>

static const char hexdig[] = "0123456789ABCDEF";

/* escape_slow - the same, span by span, for a buffer near its max */
static int
escape_slow(struct ma_buf *out, const char *value, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		char esc[3];

		if (c >= 0x20 && c != 0x7f && c != '%')
			continue;
		if (ma_buf_append(out, value + start, i - start) < 0)
			return -1;
		esc[0] = '%';
		esc[1] = hexdig[c >> 4];
		esc[2] = hexdig[c & 15];
		if (ma_buf_append(out, esc, 3) < 0)
			return -1;
		start = i + 1;
	}
	return ma_buf_append(out, value + start, len - start);
}

int
ma_proto_escape(struct ma_buf *out, const char *value, size_t len)
{
	size_t worst;
	char *o;

	/* Room for the worst case (every byte escaped), then one pass that
	   writes in place: no per-span calls. */
	if (__builtin_mul_overflow(len, 3, &worst) ||
	    ma_buf_reserve(out, worst) < 0)
		return escape_slow(out, value, len);
	o = out->data + out->len;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];

		if (c >= 0x20 && c != 0x7f && c != '%') {
			*o++ = (char)c;
			continue;
		}
		*o++ = '%';
		*o++ = hexdig[c >> 4];
		*o++ = hexdig[c & 15];
	}
	out->len = (size_t)(o - out->data);
	*o = '\0';
	return 0;
}

int
ma_proto_put(struct ma_buf *out, const char *key, const char *value)
{
	if (value == NULL)
		return 0;
	if (ma_buf_puts(out, key) < 0 || ma_buf_putc(out, '=') < 0 ||
	    ma_proto_escape(out, value, strlen(value)) < 0)
		return -1;
	return ma_buf_putc(out, '\n');
}

int
ma_proto_end(struct ma_buf *out)
{
	return ma_buf_putc(out, '\n');
}

static int
put_u64(struct ma_buf *out, const char *key, uint64_t v)
{
	if (ma_buf_puts(out, key) < 0 || ma_buf_putc(out, '=') < 0 ||
	    ma_buf_put_u64(out, v) < 0)
		return -1;
	return ma_buf_putc(out, '\n');
}

/* put_field - escaped value or nothing (NULL), then a TAB if more follow */
static int
put_field(struct ma_buf *out, const char *value, bool tab)
{
	if (value != NULL && ma_proto_escape(out, value, strlen(value)) < 0)
		return -1;
	return tab ? ma_buf_putc(out, '\t') : 0;
}

/* The checked path: every write can fail at the buffer's max. */
static int
encode_detail_checked(const struct ma_record *rec, struct ma_buf *out)
{
	for (uint32_t i = 0; i < rec->item_count; i++) {
		const struct ma_item *it = &rec->items[i];

		if (ma_buf_puts(out, "item=") < 0 ||
		    ma_buf_put_u64(out, it->uid) < 0 ||
		    ma_buf_putc(out, '\t') < 0 ||
		    put_field(out, it->message_id, true) < 0 ||
		    put_field(out, it->subject, true) < 0 ||
		    ma_buf_put_u64(out, it->size) < 0 ||
		    ma_buf_putc(out, '\n') < 0)
			return -1;
	}
	for (uint32_t i = 0; i < rec->prop_count; i++) {
		const struct ma_prop *p = &rec->props[i];

		if (ma_buf_puts(out, "prop=") < 0 ||
		    put_field(out, p->name, true) < 0 ||
		    put_field(out, p->old_value, true) < 0 ||
		    put_field(out, p->new_value, false) < 0 ||
		    ma_buf_putc(out, '\n') < 0)
			return -1;
	}
	return 0;
}

static int
encode_record_checked(const struct ma_record *rec, struct ma_buf *out)
{
	size_t start = out->len;
	char id[37];

	ma_uuid_fmt(rec->id, id);
	if (put_u64(out, "v", MA_PROTO_VERSION) < 0 ||
	    ma_proto_put(out, "id", id) < 0 ||
	    (rec->time_ms >= 0 ? put_u64(out, "t", (uint64_t)rec->time_ms)
			       : ma_buf_printf(out, "t=%lld\n",
				     (long long)rec->time_ms)) < 0 ||
	    ma_proto_put(out, "op", rec->operation) < 0 ||
	    ma_proto_put(out, "res", ma_result_name(rec->result)) < 0 ||
	    ma_proto_put(out, "logon", ma_logon_name(rec->logon_type)) < 0 ||
	    ma_proto_put(out, "user", rec->user) < 0 ||
	    ma_proto_put(out, "mbox", rec->mailbox) < 0 ||
	    ma_proto_put(out, "folder", rec->folder) < 0 ||
	    ma_proto_put(out, "dfolder", rec->dest_folder) < 0 ||
	    ma_proto_put(out, "dmbox", rec->dest_mailbox) < 0 ||
	    ma_proto_put(out, "sess", rec->session) < 0 ||
	    ma_proto_put(out, "ip", rec->client_ip) < 0 ||
	    ma_proto_put(out, "client", rec->client_info) < 0 ||
	    ma_proto_put(out, "proto", rec->protocol) < 0 ||
	    ma_proto_put(out, "server", rec->server) < 0 ||
	    (rec->count != 0 && put_u64(out, "count", rec->count) < 0) ||
	    encode_detail_checked(rec, out) < 0 || ma_proto_end(out) < 0 ||
	    out->len - start > MA_PROTO_MAX_FRAME) {
		/* Leave the buffer as it was: the caller splits and retries. */
		out->len = start;
		if (out->data != NULL)
			out->data[start] = '\0';
		return -1;
	}
	return 0;
}

/* The fast path ----------------------------------------------------------*/

#define U64_DIGITS 20

static inline bool
needs_escape(unsigned char c)
{
	return c < 0x20 || c == 0x7f || c == '%';
}

/* bound_add - *total += 3 * len + extra; false on overflow. */
static bool
bound_add(size_t *total, size_t len, size_t extra)
{
	size_t worst;

	return !__builtin_mul_overflow(len, 3, &worst) &&
	       !__builtin_add_overflow(*total, worst, total) &&
	       !__builtin_add_overflow(*total, extra, total);
}

static size_t
len_or_0(const char *s)
{
	return s == NULL ? 0 : strlen(s);
}

/*
 * clean8 - true if none of the 8 bytes at p needs escaping.  Word-at-a-
 * time tests (exact for "is there such a byte", which is all we ask):
 * a byte below 0x20, a byte equal to '%' and one equal to 0x7f.  Values
 * rarely need escaping, so most of a value is skipped 8 bytes a step.
 */
static inline bool
clean8(const char *p)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t highs = 0x8080808080808080ULL;
	uint64_t x, lt, pct, del;

	memcpy(&x, p, sizeof(x));
	lt = (x - ones * 0x20) & ~x;
	pct = x ^ (ones * '%');
	pct = (pct - ones) & ~pct;
	del = x ^ (ones * 0x7f);
	del = (del - ones) & ~del;
	return ((lt | pct | del) & highs) == 0;
}

/* write_escaped - value as %XX-escaped spans; o has room for 3 * len. */
static char *
write_escaped(char *o, const char *value, size_t len)
{
	const char *p = value, *start = value, *end = value + len;
	unsigned char c;

	while (p < end) {
		if (end - p >= 8 && clean8(p)) {
			p += 8;
			continue;
		}
		c = (unsigned char)*p;
		if (needs_escape(c)) {
			memcpy(o, start, (size_t)(p - start));
			o += p - start;
			*o++ = '%';
			*o++ = hexdig[c >> 4];
			*o++ = hexdig[c & 15];
			start = p + 1;
		}
		p++;
	}
	memcpy(o, start, (size_t)(end - start));
	return o + (end - start);
}

static char *
write_u64(char *o, uint64_t v)
{
	char tmp[U64_DIGITS];
	size_t n = 0;

	do {
		tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	memcpy(o, tmp + sizeof(tmp) - n, n);
	return o + n;
}

/* write_line - "key=value\n" (key_eq includes the '='), or nothing. */
static char *
write_line(
    char *o, const char *key_eq, size_t key_len, const char *value, size_t len)
{
	if (value == NULL)
		return o;
	memcpy(o, key_eq, key_len);
	o += key_len;
	o = write_escaped(o, value, len);
	*o++ = '\n';
	return o;
}

/* write_field - escaped value or nothing (NULL), then a TAB if more follow */
static char *
write_field(char *o, const char *value, bool tab)
{
	if (value != NULL)
		o = write_escaped(o, value, strlen(value));
	if (tab)
		*o++ = '\t';
	return o;
}

/* detail_bound - worst-case bytes of the item= and prop= lines. */
static bool
detail_bound(const struct ma_record *rec, size_t *total)
{
	for (uint32_t i = 0; i < rec->item_count; i++) {
		const struct ma_item *it = &rec->items[i];
		size_t len = len_or_0(it->message_id) + len_or_0(it->subject);

		/* item=<uid>\t<msgid>\t<subject>\t<size>\n */
		if (!bound_add(total, len, 5 + 2 * U64_DIGITS + 4))
			return false;
	}
	for (uint32_t i = 0; i < rec->prop_count; i++) {
		const struct ma_prop *p = &rec->props[i];
		size_t len = len_or_0(p->name) + len_or_0(p->old_value) +
			     len_or_0(p->new_value);

		/* prop=<name>\t<old>\t<new>\n */
		if (!bound_add(total, len, 5 + 3))
			return false;
	}
	return true;
}

static char *
write_detail(char *o, const struct ma_record *rec)
{
	for (uint32_t i = 0; i < rec->item_count; i++) {
		const struct ma_item *it = &rec->items[i];

		memcpy(o, "item=", 5);
		o = write_u64(o + 5, it->uid);
		*o++ = '\t';
		o = write_field(o, it->message_id, true);
		o = write_field(o, it->subject, true);
		o = write_u64(o, it->size);
		*o++ = '\n';
	}
	for (uint32_t i = 0; i < rec->prop_count; i++) {
		const struct ma_prop *p = &rec->props[i];

		memcpy(o, "prop=", 5);
		o = write_field(o + 5, p->name, true);
		o = write_field(o, p->old_value, true);
		o = write_field(o, p->new_value, false);
		*o++ = '\n';
	}
	return o;
}

int
ma_proto_encode_detail(const struct ma_record *rec, struct ma_buf *out)
{
	size_t bound = 0;

	if (!detail_bound(rec, &bound) || ma_buf_reserve(out, bound) < 0)
		return encode_detail_checked(rec, out);
	out->len =
	    (size_t)(write_detail(out->data + out->len, rec) - out->data);
	out->data[out->len] = '\0';
	return 0;
}

/* The single-valued string keys after t=, in frame order. */
#define RECORD_STRINGS 13

static void
record_strings(const struct ma_record *rec, const char *values[RECORD_STRINGS])
{
	values[0] = rec->operation;
	values[1] = ma_result_name(rec->result);
	values[2] = ma_logon_name(rec->logon_type);
	values[3] = rec->user;
	values[4] = rec->mailbox;
	values[5] = rec->folder;
	values[6] = rec->dest_folder;
	values[7] = rec->dest_mailbox;
	values[8] = rec->session;
	values[9] = rec->client_ip;
	values[10] = rec->client_info;
	values[11] = rec->protocol;
	values[12] = rec->server;
}

/* "key=" and its length, in the order of record_strings(). */
static const struct {
	const char *key_eq;
	size_t len;
} record_keys[RECORD_STRINGS] = {
    {"op=", 3},
    {"res=", 4},
    {"logon=", 6},
    {"user=", 5},
    {"mbox=", 5},
    {"folder=", 7},
    {"dfolder=", 8},
    {"dmbox=", 6},
    {"sess=", 5},
    {"ip=", 3},
    {"client=", 7},
    {"proto=", 6},
    {"server=", 7},
};

int
ma_proto_encode_record(const struct ma_record *rec, struct ma_buf *out)
{
	const char *values[RECORD_STRINGS];
	size_t lens[RECORD_STRINGS], start = out->len, bound;
	char *o;

	if (rec->time_ms < 0)
		return encode_record_checked(rec, out);
	record_strings(rec, values);
	/* v=1, id=<36>, t=<ms>, count=<n>, the closing empty line */
	bound = 4 + 40 + 3 + U64_DIGITS + 7 + U64_DIGITS + 1;
	for (unsigned int i = 0; i < RECORD_STRINGS; i++) {
		lens[i] = len_or_0(values[i]);
		if (values[i] != NULL &&
		    !bound_add(&bound, lens[i], record_keys[i].len + 1))
			return encode_record_checked(rec, out);
	}
	if (!detail_bound(rec, &bound) || ma_buf_reserve(out, bound) < 0)
		return encode_record_checked(rec, out);

	o = out->data + start;
	memcpy(o, "v=", 2);
	o = write_u64(o + 2, MA_PROTO_VERSION);
	memcpy(o, "\nid=", 4);
	ma_uuid_fmt(rec->id, o + 4); /* 36 characters and a NUL */
	o += 4 + 36;
	memcpy(o, "\nt=", 3);
	o = write_u64(o + 3, (uint64_t)rec->time_ms);
	*o++ = '\n';
	for (unsigned int i = 0; i < RECORD_STRINGS; i++) {
		o = write_line(o, record_keys[i].key_eq, record_keys[i].len,
		    values[i], lens[i]);
	}
	if (rec->count != 0) {
		memcpy(o, "count=", 6);
		o = write_u64(o + 6, rec->count);
		*o++ = '\n';
	}
	o = write_detail(o, rec);
	*o++ = '\n';
	if ((size_t)(o - out->data) - start > MA_PROTO_MAX_FRAME) {
		/* Leave the buffer as it was: the caller splits and retries. */
		out->data[start] = '\0';
		return -1;
	}
	out->len = (size_t)(o - out->data);
	*o = '\0';
	return 0;
}
