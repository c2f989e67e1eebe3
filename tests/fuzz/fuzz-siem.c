/* SPDX-License-Identifier: MIT */
/*
 * fuzz-siem.c - libFuzzer target for the SIEM renderers (ma-siem).
 *
 * The input is consumed as a rendering context (host name, APP-NAME,
 * SD-ID, product version, facility, BOM: all arbitrary, hostile bytes
 * included) and a record built as in fuzz-export.c (every string
 * arbitrary bytes, not validated).  The record is rendered in all three
 * formats as a body, a syslog message, a syslog frame, a HEC event and a
 * _bulk pair, and the output is checked against the rules of
 * docs/SIEM-FORMATS.md:
 *  - nothing holds a NUL; no body, message, frame or HEC event holds CR
 *    or LF; a _bulk pair is exactly two LF-terminated lines;
 *  - the JSON body is ma_export_json's output, which jansson parses and
 *    dumps again to the same bytes (DEL as \u007F); the ECS body too;
 *    JSON, ECS, HEC and _bulk lines parse with jansson; the HEC event
 *    and the _bulk document are the body; _bulk refuses CEF and leaves
 *    the buffer alone;
 *  - CEF: seven header fields split at unescaped '|', the extension
 *    splits into known, unique keys, no value holds an unescaped '=',
 *    and the values of suser, duser, act, requestClientApplication,
 *    cs2, cs4 and cs5 decode to the record's strings (invalid UTF-8 as
 *    U+FFFD, unprintable characters as '?', CR and LF kept);
 *  - syslog: "<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID " with PRI in
 *    0..191 and printable US-ASCII fields within RFC 5424's lengths, one
 *    SD element that parses back to the same seven params with the
 *    record's values, then the (BOM and) body; the frame is the message
 *    behind its exact octet count;
 *  - a buffer whose max is chosen by the input either takes the whole
 *    output or is left exactly as it was.
 * A violated invariant aborts.
 *
 * Build with clang -fsanitize=fuzzer (tests/fuzz/run); with
 * -DMA_FUZZ_STANDALONE it gets a main() that runs the files named on the
 * command line, or a deterministic batch of pseudo-random inputs.
 */

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ma-siem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(e) ((e) ? (void)0 : fz_fail(#e, __LINE__))
#define FZ_MAX      (64 * 1024 * 1024)

static void
fz_fail(const char *expr, int line)
{
	fprintf(
	    stderr, "fuzz-siem: invariant failed (line %d): %s\n", line, expr);
	abort();
}

#include "fuzz-record.h"

/* The names the exporters give a meaning to, sends' included. */
static const char *const prop_names[] = {"Member", "Rights", "Identity",
    "MailAccessType", "IsThrottled", "Flags", "Keywords", "SendAsUserSmtp",
    "SendOnBehalfOfUserSmtp", "RecipientCount", "Recipients", "Attachments"};

/* fz_ctx - the rendering context, its strings hostile too. */
static void
fz_ctx(struct fz *f, struct ma_record *rec, struct ma_siem_ctx *ctx)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->export.format = MA_EXPORT_JSON;
	ctx->export.organization_id = fz_str(f, rec);
	ctx->export.organization_name = fz_str(f, rec);
	ctx->hostname = fz_str(f, rec);
	ctx->app_name = fz_str(f, rec);
	ctx->sd_id = fz_str(f, rec);
	ctx->product_version = fz_str(f, rec);
	ctx->utf8_bom = fz_u8(f) & 1;
	ctx->facility = (int)(int8_t)fz_u8(f);
}

/*-------------------------------------------------------------------------
 * What a value must decode to
 */

static size_t
utf8_decode(const unsigned char *s, uint32_t *cp)
{
	if (s[0] < 0x80)
		return *cp = s[0], 1;
	if (s[0] < 0xe0)
		return *cp = (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f), 2;
	if (s[0] < 0xf0)
		return *cp = (uint32_t)(s[0] & 0x0f) << 12 |
			     (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f),
		       3;
	return *cp = (uint32_t)(s[0] & 0x07) << 18 |
		     (uint32_t)(s[1] & 0x3f) << 12 |
		     (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f),
	       4;
}

/*
 * expected - s as CEF (keep_crlf) or an SD value shows it: invalid UTF-8
 * as U+FFFD, C0/DEL/C1 controls, U+2028-U+202E and U+2066-U+2069 as '?'.
 * malloc'd.
 */
static char *
expected(const char *s, bool keep_crlf)
{
	struct ma_buf rep, out;
	const unsigned char *p;
	char *ret;

	ma_buf_init(&rep, FZ_MAX);
	ma_buf_init(&out, FZ_MAX);
	FZ_CHECK(ma_utf8_repair(s, strlen(s), &rep) == 0);
	FZ_CHECK(ma_buf_puts(&out, "") == 0);
	for (p = (const unsigned char *)(rep.data != NULL ? rep.data : "");
	     *p != '\0';) {
		uint32_t cp;
		size_t n = utf8_decode(p, &cp);
		bool bad = cp < 0x20 || (cp >= 0x7f && cp < 0xa0) ||
			   (cp >= 0x2028 && cp <= 0x202e) ||
			   (cp >= 0x2066 && cp <= 0x2069);

		if (keep_crlf && (cp == '\r' || cp == '\n'))
			bad = false;
		FZ_CHECK(bad ? ma_buf_putc(&out, '?') == 0
			     : ma_buf_append(&out, p, n) == 0);
		p += n;
	}
	ret = ma_xstrdup(out.data);
	ma_buf_deinit(&rep);
	ma_buf_deinit(&out);
	return ret;
}

/* check_value - got is what value must decode to; value NULL/"": absent. */
static void
check_value(const char *got, const char *value, bool keep_crlf)
{
	char *exp;

	if (value == NULL || value[0] == '\0') {
		FZ_CHECK(got == NULL || got[0] == '\0');
		return;
	}
	FZ_CHECK(got != NULL);
	exp = expected(value, keep_crlf);
	FZ_CHECK(strcmp(got, exp) == 0);
	free(exp);
}

/* no_breaks - text[0..len) holds no NUL, CR or LF. */
static void
no_breaks(const char *text, size_t len)
{
	FZ_CHECK(strlen(text) == len);
	FZ_CHECK(strchr(text, '\r') == NULL && strchr(text, '\n') == NULL);
}

/*-------------------------------------------------------------------------
 * CEF
 */

static const char *const cef_keys[] = {"rt", "act", "outcome", "suser", "duser",
    "src", "externalId", "dvchost", "app", "requestClientApplication", "cnt",
    "cn1Label", "cn1", "cs1Label", "cs1", "cs2Label", "cs2", "cs3Label", "cs3",
    "cs4Label", "cs4", "cs5Label", "cs5", "cs6Label", "cs6", "flexString1Label",
    "flexString1", "msg", NULL};
#define CEF_NKEYS (sizeof(cef_keys) / sizeof(*cef_keys) - 1)

static bool
is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

/* key_at - p points at a key followed by '=': its length, else 0. */
static size_t
key_at(const char *p)
{
	size_t n = 0;

	while (is_key_char(p[n]))
		n++;
	return n > 0 && p[n] == '=' ? n : 0;
}

static void
check_cef(const char *cef, const struct ma_record *rec)
{
	char *values[CEF_NKEYS] = {NULL};
	const char *p = cef;
	size_t len = strlen(cef);

	FZ_CHECK(strncmp(cef, "CEF:0|", 6) == 0);
	/* Header: six more fields, each ended by an unescaped '|'; only \\
	   and \| escapes; no control byte. */
	for (int f = 0; f < 7; f++) {
		for (; *p != '|'; p++) {
			FZ_CHECK(*p != '\0');
			FZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
			if (*p == '\\') {
				FZ_CHECK(p[1] == '\\' || p[1] == '|');
				p++;
			}
		}
		p++;
	}
	/* Extension: known keys, each once; values to the next " key=". */
	while (*p != '\0') {
		size_t klen = key_at(p), k, o = 0;
		char *val = malloc(len + 1);

		FZ_CHECK(val != NULL && klen > 0);
		for (k = 0; k < CEF_NKEYS; k++) {
			if (strlen(cef_keys[k]) == klen &&
			    strncmp(p, cef_keys[k], klen) == 0)
				break;
		}
		FZ_CHECK(k < CEF_NKEYS && values[k] == NULL);
		for (p += klen + 1; *p != '\0'; p++) {
			FZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
			if (*p == ' ' && key_at(p + 1) > 0)
				break;
			/* The invariant itself: '=' in a value is escaped. */
			FZ_CHECK(*p != '=');
			if (*p == '\\') {
				p++;
				FZ_CHECK(*p == '\\' || *p == '=' || *p == 'r' ||
					 *p == 'n');
				val[o++] = *p == 'r'   ? '\r'
					   : *p == 'n' ? '\n'
						       : *p;
			} else {
				val[o++] = *p;
			}
		}
		val[o] = '\0';
		values[k] = val;
		if (*p == ' ')
			p++;
	}
	FZ_CHECK(values[0] != NULL); /* rt */
	{
		static const char *const keys[] = {"suser", "duser", "act",
		    "requestClientApplication", "cs2", "cs4", "cs5"};
		const char *fields[] = {rec->user, rec->mailbox, rec->operation,
		    rec->client_info, rec->folder,
		    rec->item_count > 0 ? rec->items[0].subject : NULL,
		    rec->session};

		for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++) {
			size_t k = 0;

			while (strcmp(cef_keys[k], keys[i]) != 0)
				k++;
			check_value(values[k], fields[i], true);
		}
	}
	for (size_t k = 0; k < CEF_NKEYS; k++)
		free(values[k]);
}

/*-------------------------------------------------------------------------
 * Syslog
 */

/* header_field - a field of printable US-ASCII, 1..max; advances *p. */
static void
header_field(const char **p, size_t max)
{
	size_t n = 0;

	for (; **p != ' '; (*p)++, n++)
		FZ_CHECK((unsigned char)**p >= 33 && (unsigned char)**p <= 126);
	FZ_CHECK(n >= 1 && n <= max);
	(*p)++;
}

static void
check_syslog_msg(const char *msg, size_t len, const struct ma_siem_ctx *ctx,
    const struct ma_record *rec, const char *body)
{
	const char *const names[] = {
	    "seq", "id", "op", "mbx", "user", "logon", "result"};
	const char *values[7];
	const char *p = msg;
	char seq[24], id[37];
	long pri;
	char *end;
	int nparams = 0;

	no_breaks(msg, len);
	FZ_CHECK(msg[0] == '<');
	pri = strtol(msg + 1, &end, 10);
	FZ_CHECK(pri >= 0 && pri <= 191 && (pri & 7) >= 4 && (pri & 7) <= 5);
	FZ_CHECK(strncmp(end, ">1 ", 3) == 0);
	p = end + 3;
	/* TIMESTAMP: YYYY-MM-DDTHH:MM:SS.mmmZ */
	FZ_CHECK(strlen(p) > 25 && p[4] == '-' && p[10] == 'T' &&
		 p[19] == '.' && p[23] == 'Z' && p[24] == ' ');
	p += 25;
	header_field(&p, 255); /* HOSTNAME */
	header_field(&p, 48);  /* APP-NAME */
	FZ_CHECK(strncmp(p, "- ", 2) == 0);
	p += 2;
	header_field(&p, 32); /* MSGID */
	FZ_CHECK(*p++ == '[');
	/* SD-ID: SD-NAME characters */
	for (size_t n = 0; *p != ' '; p++, n++) {
		FZ_CHECK((unsigned char)*p >= 33 && (unsigned char)*p <= 126);
		FZ_CHECK(*p != '=' && *p != ']' && *p != '"' && n < 32);
	}
	snprintf(seq, sizeof(seq), "%lld", (long long)rec->seq);
	ma_uuid_fmt(rec->id, id);
	values[0] = seq;
	values[1] = id;
	values[2] = rec->operation;
	values[3] = rec->mailbox;
	values[4] = rec->user;
	values[5] = ma_logon_name(rec->logon_type);
	values[6] = ma_result_name(rec->result);
	while (*p == ' ') {
		char *val = malloc(len + 1);
		size_t o = 0, nlen = strlen(names[nparams]);

		FZ_CHECK(val != NULL && nparams < 7);
		p++;
		FZ_CHECK(strncmp(p, names[nparams], nlen) == 0 &&
			 strncmp(p + nlen, "=\"", 2) == 0);
		for (p += nlen + 2; *p != '"'; p++) {
			FZ_CHECK(*p != '\0' && *p != ']');
			if (*p == '\\') {
				p++;
				FZ_CHECK(*p == '"' || *p == '\\' || *p == ']');
			}
			val[o++] = *p;
		}
		val[o] = '\0';
		p++;
		if (values[nparams] == NULL)
			FZ_CHECK(o == 0);
		else
			check_value(val, values[nparams], false);
		free(val);
		nparams++;
	}
	FZ_CHECK(nparams == 7);
	FZ_CHECK(strncmp(p, "] ", 2) == 0);
	p += 2;
	if (ctx->utf8_bom) {
		FZ_CHECK(strncmp(p, "\xef\xbb\xbf", 3) == 0);
		p += 3;
	}
	FZ_CHECK(strcmp(p, body) == 0);
}

/*-------------------------------------------------------------------------
 * Driver
 */

enum fz_kind {
	FZ_BODY,
	FZ_MSG,
	FZ_FRAME,
	FZ_HEC,
	FZ_BULK
};

static int
fz_render(const struct ma_siem_ctx *ctx, enum fz_kind kind,
    enum ma_siem_format fmt, const struct ma_record *rec, struct ma_buf *out)
{
	switch (kind) {
	case FZ_BODY:
		return ma_siem_body(ctx, fmt, rec, out);
	case FZ_MSG:
		return ma_siem_syslog_msg(ctx, fmt, rec, out);
	case FZ_FRAME:
		return ma_siem_syslog_frame(ctx, fmt, rec, out);
	case FZ_HEC:
		return ma_siem_hec_event(ctx, fmt, rec, "idx\"\n", NULL, out);
	case FZ_BULK:
		return ma_siem_bulk_create(ctx, fmt, rec, NULL, out);
	}
	abort();
}

/* render - a malloc'd copy of the output, NULL if refused. */
static char *
render(const struct ma_siem_ctx *ctx, enum fz_kind kind,
    enum ma_siem_format fmt, const struct ma_record *rec, size_t *len_r)
{
	struct ma_buf out;
	char *text = NULL;

	ma_buf_init(&out, FZ_MAX);
	if (fz_render(ctx, kind, fmt, rec, &out) == 0) {
		text = ma_xstrndup(out.data != NULL ? out.data : "", out.len);
		*len_r = out.len;
	}
	ma_buf_deinit(&out);
	return text;
}

static json_t *
parse(const char *text)
{
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);

	FZ_CHECK(j != NULL);
	return j;
}

/*
 * check_writer - ma-export writes its JSON itself, for speed: parsed and
 * dumped again by jansson (json_dumps(JSON_COMPACT | JSON_ENSURE_ASCII),
 * DEL as \u007F) the text must come back byte for byte.
 */
static void
check_writer(const char *body)
{
	json_t *j = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
	char *text;
	struct ma_buf exp;

	FZ_CHECK(j != NULL);
	text = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
	FZ_CHECK(text != NULL);
	ma_buf_init(&exp, FZ_MAX);
	for (const char *p = text; *p != '\0'; p++)
		FZ_CHECK(*p == 0x7f ? ma_buf_puts(&exp, "\\u007F") == 0
				    : ma_buf_putc(&exp, *p) == 0);
	FZ_CHECK(strcmp(exp.data, body) == 0);
	ma_buf_deinit(&exp);
	free(text);
	json_decref(j);
}

/* check_small - with max chosen by the input: all of it, or unchanged. */
static void
check_small(const struct ma_siem_ctx *ctx, enum fz_kind kind,
    enum ma_siem_format fmt, const struct ma_record *rec, const char *full,
    size_t full_len, size_t max)
{
	struct ma_buf out;

	ma_buf_init(&out, max + 3);
	FZ_CHECK(ma_buf_puts(&out, "pre") == 0);
	if (fz_render(ctx, kind, fmt, rec, &out) == 0) {
		FZ_CHECK(full != NULL && out.len == 3 + full_len &&
			 memcmp(out.data + 3, full, full_len) == 0);
	} else {
		FZ_CHECK(out.len == 3 && strcmp(out.data, "pre") == 0);
		FZ_CHECK(full == NULL || full_len > max);
	}
	ma_buf_deinit(&out);
}

static void
check_format(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, size_t small)
{
	char *body, *msg, *frame, *hec, *bulk, *nl;
	size_t body_len, msg_len, frame_len, hec_len, bulk_len;
	char *end;
	json_t *j, *b;

	body = render(ctx, FZ_BODY, fmt, rec, &body_len);
	FZ_CHECK(body != NULL);
	no_breaks(body, body_len);
	if (fmt == MA_SIEM_JSON) {
		struct ma_buf exp;

		ma_buf_init(&exp, FZ_MAX);
		FZ_CHECK(ma_export_json(&ctx->export, rec, &exp) == 0);
		FZ_CHECK(exp.len == body_len && strcmp(exp.data, body) == 0);
		ma_buf_deinit(&exp);
		check_writer(body);
	}
	if (fmt == MA_SIEM_CEF)
		check_cef(body, rec);
	else
		check_writer(body);

	msg = render(ctx, FZ_MSG, fmt, rec, &msg_len);
	FZ_CHECK(msg != NULL);
	check_syslog_msg(msg, msg_len, ctx, rec, body);

	frame = render(ctx, FZ_FRAME, fmt, rec, &frame_len);
	FZ_CHECK(frame != NULL);
	no_breaks(frame, frame_len);
	FZ_CHECK(frame[0] >= '1' && frame[0] <= '9');
	FZ_CHECK(strtoull(frame, &end, 10) == msg_len && *end == ' ');
	FZ_CHECK((size_t)(end + 1 - frame) + msg_len == frame_len &&
		 strcmp(end + 1, msg) == 0);

	hec = render(ctx, FZ_HEC, fmt, rec, &hec_len);
	FZ_CHECK(hec != NULL);
	no_breaks(hec, hec_len);
	j = parse(hec);
	FZ_CHECK(json_is_number(json_object_get(j, "time")));
	if (fmt == MA_SIEM_CEF) {
		FZ_CHECK(strcmp(json_string_value(json_object_get(j, "event")),
			     body) == 0);
	} else {
		b = parse(body);
		FZ_CHECK(json_equal(json_object_get(j, "event"), b));
		json_decref(b);
	}
	json_decref(j);

	bulk = render(ctx, FZ_BULK, fmt, rec, &bulk_len);
	if (fmt == MA_SIEM_CEF) {
		FZ_CHECK(bulk == NULL);
	} else {
		FZ_CHECK(bulk != NULL && strlen(bulk) == bulk_len);
		FZ_CHECK(bulk_len > 0 && bulk[bulk_len - 1] == '\n');
		nl = strchr(bulk, '\n');
		FZ_CHECK(strchr(nl + 1, '\n') == bulk + bulk_len - 1);
		FZ_CHECK(strchr(bulk, '\r') == NULL);
		*nl = '\0';
		bulk[bulk_len - 1] = '\0';
		j = parse(bulk);
		{
			char id[37];

			ma_uuid_fmt(rec->id, id);
			FZ_CHECK(
			    strcmp(json_string_value(json_object_get(
				       json_object_get(j, "create"), "_id")),
				id) == 0);
		}
		json_decref(j);
		FZ_CHECK(strcmp(nl + 1, body) == 0);
	}

	check_small(ctx, FZ_BODY, fmt, rec, body, body_len, small);
	check_small(ctx, FZ_FRAME, fmt, rec, frame, frame_len, small);
	check_small(ctx, FZ_HEC, fmt, rec, hec, hec_len, small);
	if (fmt != MA_SIEM_CEF) {
		/* the pair as rendered (the copy's newlines were cut above) */
		size_t len;
		char *whole = render(ctx, FZ_BULK, fmt, rec, &len);

		check_small(ctx, FZ_BULK, fmt, rec, whole, len, small);
		free(whole);
	}
	free(body);
	free(msg);
	free(frame);
	free(hec);
	free(bulk);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = {data, size};
	struct ma_siem_ctx ctx;
	struct ma_record rec;
	size_t small;

	ma_record_init(&rec);
	small = (size_t)fz_u64(&f, 2);
	fz_ctx(&f, &rec, &ctx);
	fz_record(&f, &rec, prop_names,
	    sizeof(prop_names) / sizeof(*prop_names), 0xc0);
	check_format(&ctx, MA_SIEM_JSON, &rec, small);
	check_format(&ctx, MA_SIEM_CEF, &rec, small);
	check_format(&ctx, MA_SIEM_ECS, &rec, small);
	ma_record_deinit(&rec);
	return 0;
}

#ifdef MA_FUZZ_STANDALONE
/* run_file - one input file through the target; -1 if unreadable. */
static int
run_file(const char *path)
{
	static uint8_t buf[1 << 20];
	FILE *fp = fopen(path, "rb");
	size_t n;

	if (fp == NULL) {
		perror(path);
		return -1;
	}
	n = fread(buf, 1, sizeof(buf), fp);
	fclose(fp);
	return LLVMFuzzerTestOneInput(buf, n);
}

int
main(int argc, char **argv)
{
	static const char hostile[] = "\r\n\t\"\\]=|\x1b\x7f\xc2\x85\xe2\x80"
				      "\xae\xff -";
	static uint8_t buf[4096];
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	unsigned int runs = 0, failed = 0;

	for (int i = 1; i < argc; i++, runs++)
		failed += run_file(argv[i]) < 0;
	/* No files: a fixed batch of xorshift inputs, one byte in 4 hostile. */
	for (unsigned int r = 0; argc == 1 && r < 3000; r++, runs++) {
		size_t n = (size_t)(r * 7 % sizeof(buf));

		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (uint8_t)x;
			if ((x & 0x300) == 0)
				buf[i] = (uint8_t)
				    hostile[(x >> 12) % (sizeof(hostile) - 1)];
		}
		LLVMFuzzerTestOneInput(buf, n);
	}
	/* One test for the harness; a broken invariant has aborted. */
	printf("fuzz-siem: %u inputs, %u unreadable\n", runs, failed);
	printf("%d passed, %d failed\n", failed == 0, failed != 0);
	return failed == 0 ? 0 : 1;
}
#endif
