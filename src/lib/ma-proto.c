/* SPDX-License-Identifier: MIT */
/*
 * ma-proto.c - decode wire frames (see ma-proto.h and docs/PROTOCOL.md);
 * the encoder is in ma-proto-enc.c.
 *
 * The decoder is the daemon's first contact with bytes from any local
 * process, so it is strict: every line must be key=value, every key known,
 * every escape well-formed, every number in range; invalid UTF-8 in a
 * value is repaired (U+FFFD) so the store and every exporter only ever see
 * valid UTF-8.  It never reads past the frame it is given.
 */

#include "ma-proto.h"

#include <string.h>

long
ma_proto_frame_len(const char *data, size_t len)
{
	size_t limit = len < MA_PROTO_MAX_FRAME ? len : MA_PROTO_MAX_FRAME;
	const char *p;

	/* An empty line at the very start is an empty frame. */
	if (limit >= 1 && data[0] == '\n')
		return 1;
	p = data;
	while ((size_t)(p - data) + 1 < limit) {
		const char *nl =
		    memchr(p, '\n', limit - (size_t)(p - data) - 1);

		if (nl == NULL)
			break;
		if (nl[1] == '\n')
			return (long)(nl - data) + 2;
		p = nl + 1;
	}
	return len >= MA_PROTO_MAX_FRAME ? -1 : 0;
}

/* Decoding. */

/*
 * dec_u64 - ma_parse_u64 without strtoull: only digits (at least one),
 * no overflow, at most max.  Numbers are in every record frame.
 */
static int
dec_u64(const char *s, uint64_t max, uint64_t *val_r)
{
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s != '\0'; s++) {
		unsigned int d = (unsigned int)(*s - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (v > max)
		return -1;
	*val_r = v;
	return 0;
}

static int
dec_i64(const char *s, int64_t *val_r)
{
	uint64_t v;
	bool neg = *s == '-';

	if (dec_u64(neg ? s + 1 : s, INT64_MAX, &v) < 0)
		return -1;
	*val_r = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

/*
 * plain_span - how many bytes from s on are printable ASCII other than
 * '%' (what unescape copies as they are), eight at a time: each test
 * below works on the low seven bits of every byte without carries, so a
 * set bit 7 in a byte of bad means exactly that byte is not plain.
 */
static size_t
plain_span(const char *s, size_t len)
{
	const uint64_t h = 0x8080808080808080ULL, l7 = 0x7f7f7f7f7f7f7f7fULL;
	size_t i = 0;

	while (i + 8 <= len) {
		uint64_t w, w7, bad;

		memcpy(&w, s + i, 8);
		w7 = w & l7;
		bad = (w & h) |                                   /* >= 0x80 */
		      (~(w7 + 0x6060606060606060ULL) & h) |       /* < 0x20 */
		      ((w7 + 0x0101010101010101ULL) & h) |        /* 0x7f */
		      (~((w7 ^ 0x2525252525252525ULL) + l7) & h); /* % */
		if (bad != 0)
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
			return i + (size_t)__builtin_clzll(bad) / 8;
#else
			return i + (size_t)__builtin_ctzll(bad) / 8;
#endif
		i += 8;
	}
	while (i < len && (unsigned char)s[i] >= 0x20 &&
	       (unsigned char)s[i] < 0x7f && s[i] != '%')
		i++;
	return i;
}

/*
 * unescape - decode s[0..len) into a NUL-terminated arena string.  Fails
 * on a malformed escape and on raw control bytes (a sensor must escape
 * them).  Invalid UTF-8 is repaired.
 */
static int
unescape(struct ma_arena *arena, const char *s, size_t len, const char **r,
    struct ma_error *err)
{
	char *out = ma_arena_alloc(arena, len + 1);
	size_t o = 0, i = 0, start;
	bool ascii = true;
	struct ma_buf fix;

	while (i < len) {
		unsigned char c;
		int hi, lo;

		/* Printable ASCII is copied in spans: the common case. */
		start = i;
		i += plain_span(s + i, len - i);
		memcpy(out + o, s + start, i - start);
		o += i - start;
		if (i == len)
			break;
		c = (unsigned char)s[i];
		if (c >= 0x80) {
			ascii = false;
			out[o++] = (char)c;
			i++;
			continue;
		}
		if (c != '%')
			return ma_error_set(
			    err, "unescaped control byte 0x%02x", c);
		if (i + 2 >= len)
			return ma_error_set(err, "truncated %% escape");
		hi = ma_hexval(s[i + 1]);
		lo = ma_hexval(s[i + 2]);
		if (hi < 0 || lo < 0)
			return ma_error_set(err, "bad %% escape");
		out[o] = (char)(hi << 4 | lo);
		ascii = ascii && (unsigned char)out[o] < 0x80;
		o++;
		i += 3;
	}
	out[o] = '\0';
	if (ascii || ma_utf8_valid(out, o)) {
		*r = out;
		return 0;
	}
	ma_buf_init(&fix, o * 3 + 1);
	if (ma_utf8_repair(out, o, &fix) < 0) {
		ma_buf_deinit(&fix);
		return ma_error_set(err, "cannot repair UTF-8");
	}
	*r = ma_arena_strndup(arena, fix.data, fix.len);
	ma_buf_deinit(&fix);
	return 0;
}

/* split_tab - split value at TABs into at most n fields (NULL if empty). */
static int
split_fields(struct ma_arena *arena, const char *s, size_t len,
    const char **fields, unsigned int n, struct ma_error *err)
{
	unsigned int f = 0;
	size_t start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '\t')
			continue;
		if (f == n)
			return ma_error_set(err, "too many fields");
		if (i == start)
			fields[f] = NULL;
		else if (unescape(
			     arena, s + start, i - start, &fields[f], err) < 0)
			return -1;
		f++;
		start = i + 1;
	}
	if (f != n)
		return ma_error_set(err, "expected %u fields, got %u", n, f);
	return 0;
}

static int
decode_item(
    struct ma_record *rec, const char *v, size_t len, struct ma_error *err)
{
	const char *f[4];
	uint64_t uid = 0, size = 0;

	if (split_fields(&rec->arena, v, len, f, 4, err) < 0)
		return -1;
	if ((f[0] != NULL && dec_u64(f[0], UINT32_MAX, &uid) < 0) ||
	    (f[3] != NULL && dec_u64(f[3], UINT64_MAX, &size) < 0))
		return ma_error_set(err, "bad number in item");
	if (rec->item_count >= MA_RECORD_MAX_ITEMS)
		return ma_error_set(
		    err, "more than %d items", MA_RECORD_MAX_ITEMS);
	return ma_record_add_item(rec, (uint32_t)uid, f[1], f[2], size);
}

static int
decode_prop(
    struct ma_record *rec, const char *v, size_t len, struct ma_error *err)
{
	const char *f[3];

	if (split_fields(&rec->arena, v, len, f, 3, err) < 0)
		return -1;
	if (f[0] == NULL)
		return ma_error_set(err, "property without a name");
	if (rec->prop_count >= MA_RECORD_MAX_PROPS)
		return ma_error_set(
		    err, "more than %d properties", MA_RECORD_MAX_PROPS);
	return ma_record_add_prop(rec, f[0], f[1], f[2]);
}

/* Record keys, looked up once per line by length and bytes. */
enum key_id {
	K_V,
	K_ID,
	K_T,
	K_RES,
	K_LOGON,
	K_COUNT, /* the scalars: at most once each */
	K_OP,
	K_USER,
	K_MBOX,
	K_FOLDER,
	K_DFOLDER,
	K_DMBOX,
	K_SESS,
	K_IP,
	K_CLIENT,
	K_PROTO,
	K_SERVER,
	K_ITEM,
	K_PROP,
	K_UNKNOWN
};

#define KEY(s)                                                                 \
	{                                                                      \
		s, sizeof(s) - 1                                               \
	}
static const struct {
	const char *name;
	size_t len;
} keys[K_UNKNOWN] = {KEY("v"), KEY("id"), KEY("t"), KEY("res"), KEY("logon"),
    KEY("count"), KEY("op"), KEY("user"), KEY("mbox"), KEY("folder"),
    KEY("dfolder"), KEY("dmbox"), KEY("sess"), KEY("ip"), KEY("client"),
    KEY("proto"), KEY("server"), KEY("item"), KEY("prop")};

/* key_lookup - by length and first byte, then one comparison */
static enum key_id
key_lookup(const char *key, size_t klen)
{
	enum key_id k = K_UNKNOWN;

	switch (klen) {
	case 1:
		k = key[0] == 'v' ? K_V : K_T;
		break;
	case 2:
		k = key[0] == 'o' ? K_OP : key[1] == 'd' ? K_ID : K_IP;
		break;
	case 3:
		k = K_RES;
		break;
	case 4:
		k = key[0] == 'u'   ? K_USER
		    : key[0] == 'm' ? K_MBOX
		    : key[0] == 's' ? K_SESS
		    : key[0] == 'i' ? K_ITEM
				    : K_PROP;
		break;
	case 5:
		k = key[0] == 'l'   ? K_LOGON
		    : key[0] == 'c' ? K_COUNT
		    : key[0] == 'd' ? K_DMBOX
				    : K_PROTO;
		break;
	case 6:
		k = key[0] == 'f'   ? K_FOLDER
		    : key[0] == 'c' ? K_CLIENT
				    : K_SERVER;
		break;
	case 7:
		k = K_DFOLDER;
		break;
	default:
		return K_UNKNOWN;
	}
	/* The guess above is the only key of that length and first byte
	   that can match; confirm it. */
	return memcmp(keys[k].name, key, klen) == 0 ? k : K_UNKNOWN;
}

/* string_field - the record's string field for a key, or NULL */
static const char **
string_field(struct ma_record *rec, enum key_id k)
{
	switch (k) {
	case K_OP:
		return &rec->operation;
	case K_USER:
		return &rec->user;
	case K_MBOX:
		return &rec->mailbox;
	case K_FOLDER:
		return &rec->folder;
	case K_DFOLDER:
		return &rec->dest_folder;
	case K_DMBOX:
		return &rec->dest_mailbox;
	case K_SESS:
		return &rec->session;
	case K_IP:
		return &rec->client_ip;
	case K_CLIENT:
		return &rec->client_info;
	case K_PROTO:
		return &rec->protocol;
	case K_SERVER:
		return &rec->server;
	default:
		return NULL;
	}
}

static int
decode_scalar(struct ma_record *rec, enum key_id k, const char *val,
    unsigned int *seen, struct ma_error *err)
{
	uint64_t u;

	if ((*seen & (1U << k)) != 0)
		return ma_error_set(err, "duplicate key");
	*seen |= 1U << k;
	switch (k) {
	case K_V:
		if (dec_u64(val, 1000, &u) < 0 || u != MA_PROTO_VERSION)
			return ma_error_set(err, "unsupported version");
		return 0;
	case K_ID:
		return ma_uuid_parse(val, rec->id) < 0
			   ? ma_error_set(err, "bad id")
			   : 0;
	case K_T:
		return dec_i64(val, &rec->time_ms) < 0
			   ? ma_error_set(err, "bad time")
			   : 0;
	case K_RES:
		return ma_result_lookup(val, &rec->result) != 1
			   ? ma_error_set(err, "bad result")
			   : 0;
	case K_LOGON:
		return ma_logon_lookup(val, &rec->logon_type) != 1
			   ? ma_error_set(err, "bad logon type")
			   : 0;
	case K_COUNT:
		if (dec_u64(val, UINT32_MAX, &u) < 0)
			return ma_error_set(err, "bad count");
		rec->count = (uint32_t)u;
		return 0;
	default:
		return ma_error_set(err, "unknown key");
	}
}

static int
decode_line(struct ma_record *rec, const char *line, size_t len,
    unsigned int *seen, struct ma_error *err)
{
	const char *eq = memchr(line, '=', len), *val;
	const char **field;
	enum key_id k;
	size_t klen, vlen;

	if (eq == NULL)
		return ma_error_set(err, "line without '='");
	klen = (size_t)(eq - line);
	vlen = len - klen - 1;
	k = key_lookup(line, klen);
	if (k == K_UNKNOWN)
		return ma_error_set(err, "unknown key");
	if (k == K_ITEM)
		return decode_item(rec, eq + 1, vlen, err);
	if (k == K_PROP)
		return decode_prop(rec, eq + 1, vlen, err);
	if (unescape(&rec->arena, eq + 1, vlen, &val, err) < 0)
		return -1;
	field = string_field(rec, k);
	if (field == NULL)
		return decode_scalar(rec, k, val, seen, err);
	if (*field != NULL)
		return ma_error_set(err, "duplicate key");
	*field = val[0] == '\0' ? NULL : val;
	return 0;
}

/* line_error - prefix err with the line number and a sanitised excerpt */
static int
line_error(
    struct ma_error *err, unsigned int lineno, const char *line, size_t len)
{
	char why[sizeof(err->msg)], excerpt[48];

	if (err == NULL)
		return -1;
	memcpy(why, err->msg, sizeof(why));
	ma_sanitize(line, len, excerpt, sizeof(excerpt));
	return ma_error_set(err, "line %u (%s): %s", lineno, excerpt, why);
}

int
ma_proto_decode_record(
    const char *frame, size_t len, struct ma_record *rec, struct ma_error *err)
{
	const char *p = frame, *end = frame + len, *nl;
	unsigned int lineno = 0, seen = 0;

	if (len > MA_PROTO_MAX_FRAME)
		return ma_error_set(err, "frame too large");
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			return ma_error_set(err, "frame not terminated");
		lineno++;
		if (nl == p)
			break; /* the empty line ends the frame */
		if (lineno > MA_PROTO_MAX_LINES)
			return ma_error_set(err, "too many lines");
		if (decode_line(rec, p, (size_t)(nl - p), &seen, err) < 0)
			return line_error(err, lineno, p, (size_t)(nl - p));
		p = nl + 1;
	}
	return ma_record_validate(rec, err);
}

int
ma_proto_decode_detail(
    struct ma_record *rec, const char *text, size_t len, struct ma_error *err)
{
	const char *p = text, *end = text + len, *nl;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		if (nl - p > 5 && memcmp(p, "item=", 5) == 0) {
			if (decode_item(rec, p + 5, (size_t)(nl - p - 5), err) <
			    0)
				return -1;
		} else if (nl - p > 5 && memcmp(p, "prop=", 5) == 0) {
			if (decode_prop(rec, p + 5, (size_t)(nl - p - 5), err) <
			    0)
				return -1;
		} else if (nl != p) {
			return ma_error_set(err, "bad detail line");
		}
		p = nl + 1;
	}
	return 0;
}

/* Generic key/value frames. */

void
ma_kvframe_init(struct ma_kvframe *f)
{
	memset(f, 0, sizeof(*f));
	ma_arena_init(&f->arena);
}

void
ma_kvframe_deinit(struct ma_kvframe *f)
{
	ma_arena_deinit(&f->arena);
	memset(f, 0, sizeof(*f));
}

void
ma_kvframe_reset(struct ma_kvframe *f)
{
	ma_arena_reset(&f->arena);
	f->kv = NULL;
	f->count = f->cap = 0;
}

static int
kv_add(struct ma_kvframe *f, const char *line, size_t len, struct ma_error *err)
{
	const char *eq = memchr(line, '=', len);
	struct ma_kv *kv;

	if (eq == NULL || eq == line)
		return ma_error_set(err, "line without key=");
	if (f->count == f->cap) {
		unsigned int ncap = f->cap == 0 ? 8 : f->cap * 2;
		struct ma_kv *n = ma_arena_alloc(&f->arena, ncap * sizeof(*n));

		if (f->count > 0)
			memcpy(n, f->kv, f->count * sizeof(*n));
		f->kv = n;
		f->cap = ncap;
	}
	kv = &f->kv[f->count];
	kv->key = ma_arena_strndup(&f->arena, line, (size_t)(eq - line));
	if (unescape(&f->arena, eq + 1, len - (size_t)(eq - line) - 1,
		&kv->value, err) < 0)
		return -1;
	f->count++;
	return 0;
}

int
ma_kvframe_decode(
    struct ma_kvframe *f, const char *frame, size_t len, struct ma_error *err)
{
	const char *p = frame, *end = frame + len, *nl;
	unsigned int lineno = 0;

	if (len > MA_PROTO_MAX_FRAME)
		return ma_error_set(err, "frame too large");
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			return ma_error_set(err, "frame not terminated");
		if (nl == p)
			return 0;
		if (++lineno > MA_PROTO_MAX_LINES)
			return ma_error_set(err, "too many lines");
		if (kv_add(f, p, (size_t)(nl - p), err) < 0)
			return line_error(err, lineno, p, (size_t)(nl - p));
		p = nl + 1;
	}
	return ma_error_set(err, "frame not terminated");
}

const char *
ma_kvframe_get(const struct ma_kvframe *f, const char *key)
{
	for (unsigned int i = 0; i < f->count; i++) {
		if (strcmp(f->kv[i].key, key) == 0)
			return f->kv[i].value;
	}
	return NULL;
}
