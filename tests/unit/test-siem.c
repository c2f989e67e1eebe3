/* SPDX-License-Identifier: MIT */
/*
 * test-siem.c - unit tests for ma-siem: each format's fields, the
 * escaping of hostile strings (CR, LF, other controls, quotes,
 * backslashes, ']', '=', '|', invalid UTF-8, bidi overrides, over-long
 * host names) for every format and framing, the syslog header rules, the
 * octet count, and the "out unchanged on failure" contract.  CEF
 * extensions and SD elements are decoded by small independent parsers
 * here, so a forged key or parameter shows up as a wrong value.  Byte-
 * exact output of whole records is the golden test's job
 * (test-golden-siem.c).
 */

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ma-siem.h"
#include "records.h"
#include "ut.h"

#define ORG_ID   "0b5d1c7e-3a3c-4b0e-8d1e-6f2a9a6b7c01"
#define ORG_NAME "contoso.onmicrosoft.com"
#define GUID     "0195b3c2-7a10-7d4e-9a43-2f0f0d7b9d11"
#define BUF_MAX  (1 << 20)

static const struct ma_siem_ctx base_ctx = {
    .export =
	{
	    .format = MA_EXPORT_JSON,
	    .organization_id = ORG_ID,
	    .organization_name = ORG_NAME,
	},
    .hostname = "fwd.contoso.com",
    .app_name = "mailaudit",
    .sd_id = "mailaudit@32473",
    .facility = 13,
    .product_version = "9.9",
};

/* rec_basic - a plausible record with every common field set. */
static void
rec_basic(struct ma_record *rec, const char *op)
{
	rec_plain(rec, op, MA_LOGON_DELEGATE, "bob@fabrikam.com");
}

/* Hostile strings, one of each kind the brief names. */
#define H_SUBJECT                                                              \
	"a=b\\c\r\nd|e]f\"g\x1b[31m\xff\xfe tail\xe2\x80\xae"                  \
	"fdp.exe\tend"
#define H_FOLDER "Evil]=|\\\"\r\nX cs1=forged act=Fake"
#define H_CLIENT "Client=IMAP\r\n<13>1 - - - - - x [a@1 b=\"c\"] msg"

static void
rec_hostile(struct ma_record *rec)
{
	rec_basic(rec, "MessageBind");
	ma_record_set(rec, &rec->folder, H_FOLDER);
	ma_record_set(rec, &rec->client_info, H_CLIENT);
	ma_record_set(rec, &rec->user, "m\"a]l\\l=o|r\ry\n@evil.example");
	ma_record_set(rec, &rec->session, "s\"] seq=\"1");
	ma_record_set(rec, &rec->client_ip, "198.51.100.1\r\n");
	ma_record_add_item(rec, 7, "<id=1|x\r\n>", H_SUBJECT, 10);
	ma_record_add_prop(rec, "Note=x", NULL, "v\r\n=|]\"\\");
}

/* render - one of the renderers into a fresh buffer; NULL on failure. */
enum kind {
	K_BODY,
	K_MSG,
	K_FRAME,
	K_HEC,
	K_BULK
};

static char *
render(const struct ma_siem_ctx *ctx, enum kind kind, enum ma_siem_format fmt,
    const struct ma_record *rec, size_t *len_r)
{
	struct ma_buf out;
	int ret = -1;
	char *text;

	ma_buf_init(&out, BUF_MAX);
	switch (kind) {
	case K_BODY:
		ret = ma_siem_body(ctx, fmt, rec, &out);
		break;
	case K_MSG:
		ret = ma_siem_syslog_msg(ctx, fmt, rec, &out);
		break;
	case K_FRAME:
		ret = ma_siem_syslog_frame(ctx, fmt, rec, &out);
		break;
	case K_HEC:
		ret = ma_siem_hec_event(ctx, fmt, rec, NULL, NULL, &out);
		break;
	case K_BULK:
		ret = ma_siem_bulk_create(ctx, fmt, rec, NULL, &out);
		break;
	}
	if (ret < 0) {
		ma_buf_deinit(&out);
		return NULL;
	}
	text = ma_xstrndup(out.data != NULL ? out.data : "", out.len);
	if (len_r != NULL)
		*len_r = out.len;
	ma_buf_deinit(&out);
	return text;
}

static json_t *
parse_json(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);

	if (j == NULL)
		ut_fail(__FILE__, __LINE__, "bad JSON: %s", jerr.text);
	return j;
}

/* jpath - obj["a"]["b"]... for a dotted path; NULL if absent. */
static json_t *
jpath(json_t *obj, const char *path)
{
	char key[64];

	while (obj != NULL && *path != '\0') {
		size_t n = strcspn(path, ".");

		MA_ASSERT(n < sizeof(key));
		memcpy(key, path, n);
		key[n] = '\0';
		obj = json_object_get(obj, key);
		path += n + (path[n] == '.');
	}
	return obj;
}

static const char *
jstr(json_t *obj, const char *path)
{
	return json_string_value(jpath(obj, path));
}

/*-------------------------------------------------------------------------
 * Independent decoders
 */

#define CEF_MAX_EXT 64

struct cef {
	char *header[7]; /* CEF:0 Vendor Product Version SigId Name Sev */
	unsigned int n_ext;
	char *key[CEF_MAX_EXT];
	char *value[CEF_MAX_EXT]; /* unescaped */
};

static bool
is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

/*
 * cef_parse - split a CEF line the way a receiver does: seven header
 * fields ended by unescaped '|', then "key=value" pairs where a value
 * runs to the next " key=" with an unescaped '='.  0, or -1 if malformed.
 */
static int
cef_parse(const char *line, struct cef *c)
{
	const char *p = line;
	size_t len = strlen(line);

	memset(c, 0, sizeof(*c));
	for (int f = 0; f < 7; f++) {
		char *h = ma_xmalloc(len + 1);
		size_t o = 0;

		for (; *p != '|'; p++) {
			if (*p == '\0') {
				free(h);
				return -1;
			}
			if (*p == '\\' && (p[1] == '\\' || p[1] == '|'))
				p++;
			h[o++] = *p;
		}
		h[o] = '\0';
		c->header[f] = h;
		p++;
	}
	while (*p != '\0') {
		const char *k = p;
		char *val;
		size_t o = 0;

		while (is_key_char(*p))
			p++;
		if (p == k || *p != '=' || c->n_ext == CEF_MAX_EXT)
			return -1;
		c->key[c->n_ext] = ma_xstrndup(k, (size_t)(p - k));
		p++;
		val = ma_xmalloc(len + 1);
		for (;; p++) {
			if (*p == '\0')
				break;
			if (*p == '\\' && p[1] != '\0') {
				p++;
				val[o++] = *p == 'n'   ? '\n'
					   : *p == 'r' ? '\r'
						       : *p;
				continue;
			}
			if (*p == '=')
				return free(val), -1; /* raw '=' in a value */
			if (*p == ' ') {
				const char *q = p + 1;

				while (is_key_char(*q))
					q++;
				if (q > p + 1 && *q == '=')
					break;
			}
			val[o++] = *p;
		}
		val[o] = '\0';
		c->value[c->n_ext++] = val;
		if (*p == ' ')
			p++;
	}
	return 0;
}

static void
cef_free(struct cef *c)
{
	for (int f = 0; f < 7; f++)
		free(c->header[f]);
	for (unsigned int i = 0; i < c->n_ext; i++) {
		free(c->key[i]);
		free(c->value[i]);
	}
}

/* cef_get - value of key; NULL if absent; fails the test on a duplicate. */
static const char *
cef_get(const struct cef *c, const char *key)
{
	const char *found = NULL;

	for (unsigned int i = 0; i < c->n_ext; i++) {
		if (strcmp(c->key[i], key) != 0)
			continue;
		if (found != NULL)
			ut_fail(__FILE__, __LINE__, "CEF key %s twice", key);
		found = c->value[i];
	}
	return found;
}

#define SD_MAX 16

struct sd {
	char *id;
	unsigned int n;
	char *name[SD_MAX];
	char *value[SD_MAX];
	const char *msg; /* into the parsed text */
};

/*
 * sd_parse - the RFC 5424 header fields are checked for their character
 * set, then the one SD element is split into its params (RFC 5424 6.3.3
 * escapes).  0, or -1 if malformed.
 */
static int
sd_parse(const char *msg, struct sd *sd, char fields[6][300])
{
	const char *p = msg;

	memset(sd, 0, sizeof(*sd));
	for (int f = 0; f < 6; f++) {
		size_t n = 0;

		while (*p != ' ' && *p != '\0') {
			if ((unsigned char)*p < 33 || (unsigned char)*p > 126 ||
			    n == 299)
				return -1;
			fields[f][n++] = *p++;
		}
		fields[f][n] = '\0';
		if (*p++ != ' ')
			return -1;
	}
	if (*p++ != '[')
		return -1;
	{
		const char *id = p;

		while (*p != ' ' && *p != ']' && *p != '\0')
			p++;
		sd->id = ma_xstrndup(id, (size_t)(p - id));
	}
	while (*p == ' ' && sd->n < SD_MAX) {
		const char *name = ++p;
		char *val = ma_xmalloc(strlen(p) + 1);
		size_t o = 0;

		while (*p != '=' && *p != '\0')
			p++;
		if (p[0] != '=' || p[1] != '"')
			return free(val), -1;
		sd->name[sd->n] = ma_xstrndup(name, (size_t)(p - name));
		for (p += 2; *p != '"'; p++) {
			if (*p == '\0')
				return free(val), -1;
			if (*p == '\\' &&
			    (p[1] == '"' || p[1] == '\\' || p[1] == ']'))
				p++;
			else if (*p == ']')
				return free(val), -1; /* unescaped ] */
			val[o++] = *p;
		}
		val[o] = '\0';
		sd->value[sd->n++] = val;
		p++;
	}
	if (p[0] != ']' || p[1] != ' ')
		return -1;
	sd->msg = p + 2;
	return 0;
}

static void
sd_free(struct sd *sd)
{
	free(sd->id);
	for (unsigned int i = 0; i < sd->n; i++) {
		free(sd->name[i]);
		free(sd->value[i]);
	}
}

static const char *
sd_get(const struct sd *sd, const char *name)
{
	for (unsigned int i = 0; i < sd->n; i++) {
		if (strcmp(sd->name[i], name) == 0)
			return sd->value[i];
	}
	return NULL;
}

static bool
starts_with(const char *s, const char *prefix)
{
	return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* no_line_breaks - no CR, LF or NUL in text[0..len). */
static bool
no_line_breaks(const char *text, size_t len)
{
	return strlen(text) == len && strchr(text, '\r') == NULL &&
	       strchr(text, '\n') == NULL;
}

/*-------------------------------------------------------------------------
 * Tests
 */

static void
test_format_lookup(void)
{
	enum ma_siem_format fmt = MA_SIEM_JSON;

	ut_begin("siem format lookup");
	ut_assert(
	    ma_siem_format_lookup("cef", &fmt) == 1 && fmt == MA_SIEM_CEF);
	ut_assert(
	    ma_siem_format_lookup("ecs", &fmt) == 1 && fmt == MA_SIEM_ECS);
	ut_assert(
	    ma_siem_format_lookup("json", &fmt) == 1 && fmt == MA_SIEM_JSON);
	ut_assert(ma_siem_format_lookup("leef", &fmt) == 0);
	ut_assert(ma_siem_format_lookup("", &fmt) == 0 && fmt == MA_SIEM_JSON);
	ut_end();
}

static void
test_json_is_export(void)
{
	struct ma_record rec;
	struct ma_buf exp;
	char *got;
	size_t len;

	ut_begin("siem json body = ma_export_json");
	rec_hostile(&rec);
	ma_buf_init(&exp, BUF_MAX);
	ut_assert(ma_export_json(&base_ctx.export, &rec, &exp) == 0);
	got = render(&base_ctx, K_BODY, MA_SIEM_JSON, &rec, &len);
	ut_assert(got != NULL && len == exp.len && strcmp(got, exp.data) == 0);
	free(got);
	ma_buf_deinit(&exp);
	ma_record_deinit(&rec);
	ut_end();
}

/*
 * redumped - text parsed with jansson and dumped again as
 * json_dumps(JSON_COMPACT | JSON_ENSURE_ASCII) writes it, DEL as \u007F:
 * what ma-export's own writer must produce.  malloc'd; NULL if the text
 * does not parse.
 */
static char *
redumped(const char *text)
{
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	struct ma_buf out;
	char *dump, *ret;

	if (j == NULL)
		return NULL;
	dump = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
	MA_ASSERT(dump != NULL);
	ma_buf_init(&out, BUF_MAX);
	for (const char *p = dump; *p != '\0'; p++)
		MA_ASSERT((*p == 0x7f ? ma_buf_puts(&out, "\\u007F")
				      : ma_buf_putc(&out, *p)) == 0);
	ret = ma_xstrdup(out.data);
	ma_buf_deinit(&out);
	free(dump);
	json_decref(j);
	return ret;
}

/* test_json_writer - ma-export writes JSON itself, as jansson would. */
static void
test_json_writer(void)
{
	struct ma_record rec;
	struct ma_buf got;
	char *exp;

	ut_begin("json writer = jansson's dumper");
	rec_hostile(&rec);
	/* U+1F600 (a surrogate pair), U+00E9, U+FFFF, U+10FFFF, controls
	   with short escapes and without, '/', and the int64 extremes. */
	ma_record_add_item(&rec, 8, "<\xf0\x9f\x98\x80@x>",
	    "\xc3\xa9\xef\xbf\xbf\xf4\x8f\xbf\xbf\x01\x1f\b\f/\x7f",
	    UINT64_MAX);
	ma_record_add_prop(&rec, "Big", "x", "\xf0\x90\x80\x80");
	rec.seq = INT64_MAX;
	for (int op = 0; op < 4; op++) {
		static const char *const ops[] = {
		    "MessageBind", "MailItemsAccessed", "Copy", "Set-Mailbox"};

		ma_record_set(&rec, &rec.operation, ops[op]);
		ma_buf_init(&got, BUF_MAX);
		ut_assert(ma_export_json(&base_ctx.export, &rec, &got) == 0);
		exp = redumped(got.data);
		ut_assert_str(got.data, exp);
		free(exp);
		ma_buf_deinit(&got);
	}
	ma_buf_init(&got, BUF_MAX);
	ut_assert(ma_export_json_put_string(
		      &got, "a\x7f\xf0\x9f\x98\x80\xff\n\"\\") == 0);
	ut_assert_str(got.data, "\"a\\u007F\\uD83D\\uDE00\\uFFFD\\n\\\"\\\\\"");
	ma_buf_deinit(&got);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_cef_fields(void)
{
	struct ma_record rec;
	struct cef c;
	char *text;

	ut_begin("cef header and extension fields");
	rec_basic(&rec, "MailItemsAccessed");
	ma_record_add_item(&rec, 4711, "<m1@x>", "Q1 invoice", 100);
	ma_record_add_item(&rec, 4712, "<m2@x>", NULL, 0);
	ma_record_set(&rec, &rec.dest_folder, "Archive");
	text = render(&base_ctx, K_BODY, MA_SIEM_CEF, &rec, NULL);
	ut_assert(text != NULL && cef_parse(text, &c) == 0);
	ut_assert_str(c.header[0], "CEF:0");
	ut_assert_str(c.header[1], "mailaudit");
	ut_assert_str(c.header[3], "9.9");
	ut_assert_str(c.header[4], "MailItemsAccessed");
	ut_assert_str(c.header[5], "Mail items accessed");
	ut_assert_str(c.header[6], "3");
	ut_assert_str(cef_get(&c, "rt"), "1741082561123");
	ut_assert_str(cef_get(&c, "act"), "MailItemsAccessed");
	ut_assert_str(cef_get(&c, "outcome"), "success");
	ut_assert_str(cef_get(&c, "suser"), "bob@fabrikam.com");
	ut_assert_str(cef_get(&c, "duser"), "alice@contoso.com");
	ut_assert_str(cef_get(&c, "src"), "203.0.113.24");
	ut_assert_str(cef_get(&c, "externalId"), GUID);
	ut_assert_str(cef_get(&c, "dvchost"), "mx1.contoso.com");
	ut_assert_str(cef_get(&c, "app"), "imap");
	ut_assert_str(cef_get(&c, "requestClientApplication"),
	    "Client=POP3/IMAP4;Protocol=IMAP4");
	ut_assert_str(cef_get(&c, "cnt"), "2");
	ut_assert_str(cef_get(&c, "cn1Label"), "Sequence");
	ut_assert_str(cef_get(&c, "cn1"), "42");
	ut_assert_str(cef_get(&c, "cs1Label"), "LogonType");
	ut_assert_str(cef_get(&c, "cs1"), "Delegate");
	ut_assert_str(cef_get(&c, "cs2Label"), "Folder");
	ut_assert_str(cef_get(&c, "cs2"), "INBOX");
	ut_assert_str(cef_get(&c, "cs3Label"), "InternetMessageId");
	ut_assert_str(cef_get(&c, "cs3"), "<m1@x>");
	ut_assert_str(cef_get(&c, "cs4Label"), "Subject");
	ut_assert_str(cef_get(&c, "cs4"), "Q1 invoice");
	ut_assert_str(cef_get(&c, "cs5Label"), "Session");
	ut_assert_str(cef_get(&c, "cs5"), "sess-1");
	ut_assert_str(cef_get(&c, "cs6Label"), "DestFolder");
	ut_assert_str(cef_get(&c, "cs6"), "Archive");
	ut_assert(cef_get(&c, "flexString1") == NULL);
	ut_assert(cef_get(&c, "msg") == NULL);
	cef_free(&c);
	free(text);

	/* A failure: outcome, severity one up; no server: the ctx host;
	   not an IP: no src; IPv6 is one. */
	rec.result = MA_RESULT_FAILED;
	rec.server = NULL;
	ma_record_set(&rec, &rec.client_ip, "not-an-ip");
	text = render(&base_ctx, K_BODY, MA_SIEM_CEF, &rec, NULL);
	ut_assert(text != NULL && cef_parse(text, &c) == 0);
	ut_assert_str(c.header[6], "4");
	ut_assert_str(cef_get(&c, "outcome"), "failure");
	ut_assert_str(cef_get(&c, "dvchost"), "fwd.contoso.com");
	ut_assert(cef_get(&c, "src") == NULL);
	cef_free(&c);
	free(text);
	ma_record_set(&rec, &rec.client_ip, "2001:db8::1");
	rec.result = MA_RESULT_PARTIAL;
	text = render(&base_ctx, K_BODY, MA_SIEM_CEF, &rec, NULL);
	ut_assert(text != NULL && cef_parse(text, &c) == 0);
	ut_assert_str(cef_get(&c, "src"), "2001:db8::1");
	ut_assert_str(cef_get(&c, "outcome"), "partial");
	cef_free(&c);
	free(text);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_cef_escaping(void)
{
	struct ma_record rec;
	struct cef c;
	char *text;
	size_t len;

	ut_begin("cef escaping of hostile strings");
	rec_hostile(&rec);
	text = render(&base_ctx, K_BODY, MA_SIEM_CEF, &rec, &len);
	ut_assert(text != NULL && no_line_breaks(text, len));
	ut_assert(text != NULL && cef_parse(text, &c) == 0);
	/* \ = CR LF come back exactly; other controls, invalid UTF-8 and the
	   bidi override are replaced; | and ] and " need nothing. */
	ut_assert_str(cef_get(&c, "cs4"),
	    "a=b\\c\r\nd|e]f\"g?[31m\xef\xbf\xbd\xef\xbf\xbd tail?fdp.exe?end");
	ut_assert_str(cef_get(&c, "cs2"), H_FOLDER);
	ut_assert_str(cef_get(&c, "requestClientApplication"), H_CLIENT);
	ut_assert_str(cef_get(&c, "suser"), "m\"a]l\\l=o|r\ry\n@evil.example");
	ut_assert_str(cef_get(&c, "cs3"), "<id=1|x\r\n>");
	ut_assert_str(cef_get(&c, "msg"), "Note=x: v\r\n=|]\"\\");
	/* The forged keys stayed inside their values. */
	ut_assert(cef_get(&c, "act") != NULL &&
		  strcmp(cef_get(&c, "act"), "MessageBind") == 0);
	ut_assert_str(cef_get(&c, "cs1"), "Delegate");
	ut_assert(cef_get(&c, "src") == NULL); /* "…\r\n" is no address */
	ut_assert(strstr(text, "cs4=a\\=b\\\\c\\r\\nd|e]f\"g?[31m") != NULL);
	cef_free(&c);
	free(text);

	/* The header escapes \ and | instead, and has no CR/LF escape. */
	ma_record_set(&rec, &rec.operation, "Set-X|Y\\Z\r\n");
	text = render(&base_ctx, K_BODY, MA_SIEM_CEF, &rec, &len);
	ut_assert(text != NULL && no_line_breaks(text, len));
	ut_assert(starts_with(text, "CEF:0|mailaudit|mailaudit|9.9|"
				    "Set-X\\|Y\\\\Z??|Set-X\\|Y\\\\Z??|7|"));
	ut_assert(text != NULL && cef_parse(text, &c) == 0);
	ut_assert_str(c.header[4], "Set-X|Y\\Z??");
	ut_assert_str(cef_get(&c, "act"), "Set-X|Y\\Z\r\n");
	cef_free(&c);
	free(text);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_cef_msg_cut(void)
{
	struct ma_record rec;
	struct ma_buf list;
	struct cef c;
	char *text;

	ut_begin("cef msg cut at 1023 bytes on a character boundary");
	rec_basic(&rec, "SendAs");
	ma_buf_init(&list, BUF_MAX);
	for (int i = 0; i < 200; i++)
		MA_ASSERT(ma_buf_printf(&list, "%sr\xc3\xa9%d@fabrikam.com",
			      i > 0 ? ", " : "", i) == 0);
	ma_record_add_prop(&rec, "Recipients", NULL, list.data);
	text = render(&base_ctx, K_BODY, MA_SIEM_CEF, &rec, NULL);
	ut_assert(text != NULL && cef_parse(text, &c) == 0);
	ut_assert(cef_get(&c, "msg") != NULL);
	if (cef_get(&c, "msg") != NULL) {
		const char *msg = cef_get(&c, "msg");

		ut_assert_cmp(strlen(msg), <=, 1023);
		ut_assert_cmp(strlen(msg), >=, 1020);
		ut_assert(ma_utf8_valid(msg, strlen(msg)));
		ut_assert(starts_with(msg, "Recipients: r\xc3\xa9"
					   "0@fabrikam.com, "));
	}
	cef_free(&c);
	free(text);
	ma_buf_deinit(&list);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_ecs_fields(void)
{
	struct ma_record rec;
	struct ma_buf exp;
	json_t *j, *raw;
	char *text;

	ut_begin("ecs fields");
	rec_basic(&rec, "SendAs");
	ma_record_add_item(&rec, 0, "<a1@contoso.com>", "Your quote", 10);
	ma_record_add_prop(&rec, "SendAsUserSmtp", NULL, "sales@contoso.com");
	ma_record_add_prop(&rec, "Recipients", NULL,
	    "ann@fabrikam.com, \"q,uoted\"@fabrikam.com");
	ma_record_set(&rec, &rec.dest_mailbox, "bob@fabrikam.com");
	text = render(&base_ctx, K_BODY, MA_SIEM_ECS, &rec, NULL);
	j = text != NULL ? parse_json(text) : NULL;
	ut_assert(j != NULL);
	ut_assert_str(jstr(j, "@timestamp"), "2025-03-04T10:02:41.123Z");
	ut_assert_str(jstr(j, "event.kind"), "event");
	ut_assert_str(
	    json_string_value(json_array_get(jpath(j, "event.category"), 0)),
	    "api");
	ut_assert_str(
	    json_string_value(json_array_get(jpath(j, "event.type"), 0)),
	    "creation");
	ut_assert_str(jstr(j, "event.action"), "SendAs");
	ut_assert_str(jstr(j, "event.outcome"), "success");
	ut_assert_str(jstr(j, "event.id"), GUID);
	ut_assert_cmp(json_integer_value(jpath(j, "event.sequence")), ==, 42);
	ut_assert_str(jstr(j, "event.provider"), "Exchange");
	ut_assert_str(jstr(j, "event.code"), "ExchangeItem");
	ut_assert_str(jstr(j, "user.name"), "bob@fabrikam.com");
	ut_assert_str(jstr(j, "user.email"), "bob@fabrikam.com");
	ut_assert_str(jstr(j, "user.domain"), "fabrikam.com");
	ut_assert_str(jstr(j, "user.target.name"), "alice@contoso.com");
	ut_assert_str(jstr(j, "user.target.email"), "alice@contoso.com");
	ut_assert_str(jstr(j, "source.ip"), "203.0.113.24");
	ut_assert_str(jstr(j, "source.address"), "203.0.113.24");
	ut_assert_str(
	    jstr(j, "user_agent.original"), "Client=POP3/IMAP4;Protocol=IMAP4");
	ut_assert_str(jstr(j, "email.message_id"), "a1@contoso.com");
	ut_assert_str(jstr(j, "email.subject"), "Your quote");
	ut_assert_str(jstr(j, "email.direction"), "outbound");
	ut_assert_str(json_string_value(
			  json_array_get(jpath(j, "email.from.address"), 0)),
	    "sales@contoso.com");
	ut_assert_str(jstr(j, "email.sender.address"), "bob@fabrikam.com");
	ut_assert_cmp(json_array_size(jpath(j, "email.to.address")), ==, 2);
	ut_assert_str(
	    json_string_value(json_array_get(jpath(j, "email.to.address"), 1)),
	    "\"q,uoted\"@fabrikam.com");
	ut_assert_str(jstr(j, "host.name"), "mx1.contoso.com");
	ut_assert_str(jstr(j, "observer.hostname"), "mx1.contoso.com");
	ut_assert_str(jstr(j, "observer.version"), "9.9");
	ut_assert_str(jstr(j, "network.protocol"), "imap");
	ut_assert_str(jstr(j, "organization.id"), ORG_ID);
	/* related.user: actor, owner, dest owner, each once. */
	ut_assert_cmp(json_array_size(jpath(j, "related.user")), ==, 2);
	ut_assert_str(
	    json_string_value(json_array_get(jpath(j, "related.ip"), 0)),
	    "203.0.113.24");
	/* The raw record is ma_export_json's object. */
	ma_buf_init(&exp, BUF_MAX);
	ut_assert(ma_export_json(&base_ctx.export, &rec, &exp) == 0);
	raw = parse_json(exp.data);
	ut_assert(raw != NULL && json_equal(jpath(j, "mailaudit.record"), raw));
	json_decref(raw);
	ma_buf_deinit(&exp);
	json_decref(j);
	free(text);

	/* A bad address stays out of the ip-typed fields; a read. */
	ma_record_set(&rec, &rec.client_ip, "198.51.100.7:993");
	ma_record_set(&rec, &rec.operation, "MailItemsAccessed");
	rec.result = MA_RESULT_PARTIAL;
	text = render(&base_ctx, K_BODY, MA_SIEM_ECS, &rec, NULL);
	j = text != NULL ? parse_json(text) : NULL;
	ut_assert(j != NULL);
	ut_assert(jpath(j, "source.ip") == NULL);
	ut_assert(jpath(j, "related.ip") == NULL);
	ut_assert_str(jstr(j, "source.address"), "198.51.100.7:993");
	ut_assert_str(
	    json_string_value(json_array_get(jpath(j, "event.type"), 0)),
	    "access");
	ut_assert_str(jstr(j, "event.outcome"), "unknown");
	ut_assert_str(jstr(j, "event.code"), "ExchangeItemAggregated");
	ut_assert(jpath(j, "email.direction") == NULL);
	json_decref(j);
	free(text);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_ecs_hostile(void)
{
	struct ma_record rec;
	json_t *j;
	char *text;
	size_t len;

	ut_begin("ecs with hostile strings");
	rec_hostile(&rec);
	text = render(&base_ctx, K_BODY, MA_SIEM_ECS, &rec, &len);
	ut_assert(text != NULL && no_line_breaks(text, len));
	for (size_t i = 0; text != NULL && i < len; i++)
		ut_assert((unsigned char)text[i] >= 0x20 &&
			  (unsigned char)text[i] < 0x7f);
	j = text != NULL ? parse_json(text) : NULL;
	ut_assert(j != NULL);
	ut_assert_str(jstr(j, "user_agent.original"), H_CLIENT);
	ut_assert_str(jstr(j, "email.message_id"), "id=1|x\r\n");
	ut_assert_str(jstr(j, "email.subject"),
	    "a=b\\c\r\nd|e]f\"g\x1b[31m\xef\xbf\xbd\xef\xbf\xbd "
	    "tail\xe2\x80\xae"
	    "fdp.exe\tend");
	ut_assert(jpath(j, "source.ip") == NULL);
	json_decref(j);
	free(text);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_syslog_exact(void)
{
	struct ma_record rec;
	char *text, *cef, *sd_end;

	ut_begin("syslog message header and SD");
	rec_basic(&rec, "MailboxLogin");
	text = render(&base_ctx, K_MSG, MA_SIEM_CEF, &rec, NULL);
	cef = render(&base_ctx, K_BODY, MA_SIEM_CEF, &rec, NULL);
	sd_end = text != NULL ? strstr(text, "] CEF:0|") : NULL;
	ut_assert(sd_end != NULL && cef != NULL);
	if (sd_end != NULL && cef != NULL) {
		ut_assert_str(sd_end + 2, cef);
		*sd_end = '\0';
		ut_assert_str(text,
		    "<109>1 2025-03-04T10:02:41.123Z mx1.contoso.com mailaudit "
		    "- MailboxLogin [mailaudit@32473 seq=\"42\" id=\"" GUID
		    "\" op=\"MailboxLogin\" mbx=\"alice@contoso.com\" "
		    "user=\"bob@fabrikam.com\" logon=\"Delegate\" "
		    "result=\"Succeeded\"");
	}
	free(text);
	free(cef);
	ma_record_deinit(&rec);
	ut_end();
}

/* pri_of - the PRI of rec rendered with ctx. */
static int
pri_of(const struct ma_siem_ctx *ctx, const struct ma_record *rec)
{
	char *text = render(ctx, K_MSG, MA_SIEM_JSON, rec, NULL);
	int pri = -1;

	if (text != NULL && text[0] == '<')
		pri = (int)strtol(text + 1, NULL, 10);
	free(text);
	return pri;
}

static void
test_syslog_pri(void)
{
	struct ma_siem_ctx ctx = base_ctx;
	struct ma_record rec;

	ut_begin("syslog PRI: facility and severity");
	rec_basic(&rec, "SoftDelete");
	ut_assert_cmp(pri_of(&ctx, &rec), ==, 13 * 8 + 5);
	rec.result = MA_RESULT_FAILED;
	ut_assert_cmp(pri_of(&ctx, &rec), ==, 13 * 8 + 4);
	rec.result = MA_RESULT_PARTIAL;
	ut_assert_cmp(pri_of(&ctx, &rec), ==, 13 * 8 + 4);
	ctx.facility = 16; /* local0 */
	ut_assert_cmp(pri_of(&ctx, &rec), ==, 16 * 8 + 4);
	ctx.facility = 23;
	ut_assert_cmp(pri_of(&ctx, &rec), ==, 23 * 8 + 4);
	ctx.facility = 0;
	ut_assert_cmp(pri_of(&ctx, &rec), ==, 4);
	ctx.facility = 24;
	ut_assert_cmp(pri_of(&ctx, &rec), ==, 13 * 8 + 4);
	ctx.facility = -1;
	ut_assert_cmp(pri_of(&ctx, &rec), ==, 13 * 8 + 4);
	ma_record_deinit(&rec);
	ut_end();
}

/* header_fields - the six header fields of rec's syslog message. */
static bool
header_fields(const struct ma_siem_ctx *ctx, const struct ma_record *rec,
    char fields[6][300], struct sd *sd)
{
	char *text = render(ctx, K_MSG, MA_SIEM_JSON, rec, NULL);
	bool ok = text != NULL && sd_parse(text, sd, fields) == 0;

	free(text);
	sd->msg = NULL;
	return ok;
}

static void
test_syslog_header_fields(void)
{
	struct ma_siem_ctx ctx = base_ctx;
	struct ma_record rec;
	char fields[6][300], long_host[301];
	struct sd sd;

	ut_begin("syslog HOSTNAME, APP-NAME, MSGID, SD-ID rules");
	rec_basic(&rec, "Set-MailboxAuditBypassAssociation");
	memset(long_host, 'h', 300);
	long_host[300] = '\0';
	ma_record_set(&rec, &rec.server, long_host);
	ut_assert(header_fields(&ctx, &rec, fields, &sd));
	ut_assert_cmp(strlen(fields[2]), ==, 255);
	ut_assert(strspn(fields[2], "h") == 255);
	/* 33 characters: MSGID stops at 32 */
	ut_assert_str(fields[5], "Set-MailboxAuditBypassAssociatio");
	sd_free(&sd);

	ma_record_set(&rec, &rec.server, "mx 1.b\xc3\xbc\x7f\tx\"]=");
	ma_record_set(&rec, &rec.operation, "Op With Space\r\n");
	ctx.app_name = "app name with spaces and more than forty-eight chars";
	ctx.sd_id = "my id=\"x\"]@1";
	ut_assert(header_fields(&ctx, &rec, fields, &sd));
	ut_assert_str(fields[2], "mx_1.b____x\"]=");
	ut_assert_str(fields[3], "app_name_with_spaces_and_more_than_forty-"
				 "eight_c");
	ut_assert_str(fields[4], "-");
	ut_assert_str(fields[5], "Op_With_Space__");
	ut_assert_str(sd.id, "my_id__x__@1");
	ut_assert_str(sd_get(&sd, "op"), "Op With Space??");
	sd_free(&sd);

	/* No server: the ctx host name; neither: NILVALUE; "-": not NIL. */
	ctx = base_ctx;
	rec.server = NULL;
	ut_assert(header_fields(&ctx, &rec, fields, &sd));
	ut_assert_str(fields[2], "fwd.contoso.com");
	sd_free(&sd);
	ma_record_set(&rec, &rec.server, "");
	ctx.hostname = NULL;
	ctx.app_name = NULL;
	ctx.sd_id = "";
	ut_assert(header_fields(&ctx, &rec, fields, &sd));
	ut_assert_str(fields[2], "-");
	ut_assert_str(fields[3], "mailaudit");
	ut_assert_str(sd.id, "mailaudit@32473");
	sd_free(&sd);
	ma_record_set(&rec, &rec.server, "-");
	ma_record_set(&rec, &rec.operation, "-");
	ut_assert(header_fields(&ctx, &rec, fields, &sd));
	ut_assert_str(fields[2], "_");
	ut_assert_str(fields[5], "_");
	sd_free(&sd);
	rec.operation = NULL;
	ut_assert(header_fields(&ctx, &rec, fields, &sd));
	ut_assert_str(fields[5], "-");
	sd_free(&sd);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_syslog_sd_escaping(void)
{
	struct ma_record rec;
	char fields[6][300];
	struct sd sd;
	char *text;
	size_t len;

	ut_begin("syslog SD param escaping");
	rec_hostile(&rec);
	ma_record_set(&rec, &rec.mailbox, "a\"b\\c]d\xff\xc3");
	text = render(&base_ctx, K_MSG, MA_SIEM_CEF, &rec, &len);
	ut_assert(text != NULL && no_line_breaks(text, len));
	ut_assert(text != NULL && ma_utf8_valid(text, len));
	ut_assert(text != NULL && sd_parse(text, &sd, fields) == 0);
	ut_assert_cmp(sd.n, ==, 7);
	ut_assert_str(sd_get(&sd, "seq"), "42");
	ut_assert_str(sd_get(&sd, "id"), GUID);
	ut_assert_str(sd_get(&sd, "op"), "MessageBind");
	ut_assert_str(sd_get(&sd, "mbx"), "a\"b\\c]d\xef\xbf\xbd\xef\xbf\xbd");
	ut_assert_str(sd_get(&sd, "user"), "m\"a]l\\l=o|r?y?@evil.example");
	ut_assert_str(sd_get(&sd, "logon"), "Delegate");
	ut_assert_str(sd_get(&sd, "result"), "Succeeded");
	ut_assert(text != NULL &&
		  strstr(text, "mbx=\"a\\\"b\\\\c\\]d\xef\xbf\xbd") != NULL);
	ut_assert(sd.msg != NULL && strncmp(sd.msg, "CEF:0|", 6) == 0);
	sd_free(&sd);
	free(text);

	/* Absent values are empty, never left out: always seven params. */
	rec.mailbox = NULL;
	rec.user = NULL;
	rec.operation = NULL;
	text = render(&base_ctx, K_MSG, MA_SIEM_JSON, &rec, NULL);
	ut_assert(text != NULL && sd_parse(text, &sd, fields) == 0);
	ut_assert_cmp(sd.n, ==, 7);
	ut_assert_str(sd_get(&sd, "mbx"), "");
	sd_free(&sd);
	free(text);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_syslog_bom(void)
{
	struct ma_siem_ctx ctx = base_ctx;
	struct ma_record rec;
	char *text;

	ut_begin("syslog MSG with and without the BOM");
	rec_basic(&rec, "Create");
	text = render(&ctx, K_MSG, MA_SIEM_JSON, &rec, NULL);
	ut_assert(
	    text != NULL && strstr(text, "\"] {\"CreationTime\"") != NULL);
	ut_assert(text != NULL && strstr(text, "\xef\xbb\xbf") == NULL);
	free(text);
	ctx.utf8_bom = true;
	text = render(&ctx, K_MSG, MA_SIEM_JSON, &rec, NULL);
	ut_assert(text != NULL &&
		  strstr(text, "\"] \xef\xbb\xbf{\"CreationTime\"") != NULL);
	free(text);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_frame(void)
{
	struct ma_record rec;
	struct ma_buf out;
	char *msg;
	size_t msg_len;
	char prefix[32];

	ut_begin("syslog frame: octet count, appended after other frames");
	rec_hostile(&rec);
	msg = render(&base_ctx, K_MSG, MA_SIEM_CEF, &rec, &msg_len);
	ut_assert(msg != NULL);
	ma_buf_init(&out, BUF_MAX);
	MA_ASSERT(ma_buf_puts(&out, "earlier frame|") == 0);
	ut_assert(
	    ma_siem_syslog_frame(&base_ctx, MA_SIEM_CEF, &rec, &out) == 0);
	snprintf(prefix, sizeof(prefix), "%zu ", msg_len);
	ut_assert(strncmp(out.data, "earlier frame|", 14) == 0);
	ut_assert(strncmp(out.data + 14, prefix, strlen(prefix)) == 0);
	ut_assert(out.len == 14 + strlen(prefix) + msg_len);
	ut_assert(msg != NULL &&
		  memcmp(out.data + 14 + strlen(prefix), msg, msg_len) == 0);
	ut_assert(strlen(out.data) == out.len);
	/* The count is in octets: multi-byte characters count each byte. */
	ut_assert(msg != NULL && msg_len > 0 && strlen(msg) == msg_len);
	free(msg);
	ma_buf_deinit(&out);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_hec(void)
{
	struct ma_record rec;
	struct ma_buf out;
	json_t *j;
	char *text, *cef;

	ut_begin("hec event");
	rec_basic(&rec, "HardDelete");
	ma_buf_init(&out, BUF_MAX);
	ut_assert(ma_siem_hec_event(&base_ctx, MA_SIEM_ECS, &rec, "mail_audit",
		      "custom:st", &out) == 0);
	ut_assert(starts_with(out.data,
	    "{\"time\":1741082561.123,\"host\":\"mx1.contoso.com\","
	    "\"source\":\"mailaudit\",\"sourcetype\":\"custom:st\","
	    "\"index\":\"mail_audit\",\"event\":{\"@timestamp\":"));
	j = parse_json(out.data);
	ut_assert(j != NULL);
	ut_assert_str(jstr(j, "event.event.action"), "HardDelete");
	json_decref(j);

	/* Defaults, and CEF as a string holding exactly the CEF body. */
	ma_buf_reset(&out);
	rec.server = NULL;
	ut_assert(ma_siem_hec_event(
		      &base_ctx, MA_SIEM_CEF, &rec, NULL, "", &out) == 0);
	j = parse_json(out.data);
	cef = render(&base_ctx, K_BODY, MA_SIEM_CEF, &rec, NULL);
	ut_assert(j != NULL && cef != NULL);
	ut_assert_str(jstr(j, "sourcetype"), "mailaudit:cef");
	ut_assert_str(jstr(j, "host"), "fwd.contoso.com");
	ut_assert(jpath(j, "index") == NULL);
	ut_assert_str(jstr(j, "event"), cef);
	json_decref(j);
	free(cef);

	/* time: epoch seconds, three decimals, also below a second and
	   before 1970. */
	rec.time_ms = 5;
	text = render(&base_ctx, K_HEC, MA_SIEM_JSON, &rec, NULL);
	ut_assert(starts_with(text, "{\"time\":0.005,"));
	free(text);
	rec.time_ms = -1500;
	text = render(&base_ctx, K_HEC, MA_SIEM_JSON, &rec, NULL);
	ut_assert(starts_with(text, "{\"time\":-1.500,"));
	j = text != NULL ? parse_json(text) : NULL;
	ut_assert(j != NULL && json_real_value(jpath(j, "time")) == -1.5);
	ut_assert_str(jstr(j, "sourcetype"), "mailaudit:json");
	json_decref(j);
	free(text);
	ma_buf_deinit(&out);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_bulk(void)
{
	struct ma_record rec;
	struct ma_buf out;
	char *body, *nl;

	ut_begin("bulk create pair");
	rec_hostile(&rec);
	ma_buf_init(&out, BUF_MAX);
	MA_ASSERT(ma_buf_puts(&out, "x\n") == 0);
	ut_assert(ma_siem_bulk_create(
		      &base_ctx, MA_SIEM_CEF, &rec, NULL, &out) == -1);
	ut_assert(out.len == 2 && strcmp(out.data, "x\n") == 0);
	ut_assert(ma_siem_bulk_create(&base_ctx, MA_SIEM_ECS, &rec,
		      "logs-mail-x\"y", &out) == 0);
	nl = strchr(out.data + 2, '\n');
	ut_assert(nl != NULL);
	if (nl != NULL) {
		*nl = '\0';
		ut_assert_str(out.data + 2,
		    "{\"create\":{\"_index\":\"logs-mail-x\\\"y\",\"_id\":"
		    "\"" GUID "\"}}");
		body = render(&base_ctx, K_BODY, MA_SIEM_ECS, &rec, NULL);
		ut_assert(body != NULL && starts_with(nl + 1, body));
		ut_assert(
		    body != NULL &&
		    out.len == (size_t)(nl + 1 - out.data) + strlen(body) + 1);
		ut_assert(out.data[out.len - 1] == '\n');
		ut_assert(strchr(nl + 1, '\n') == out.data + out.len - 1);
		free(body);
	}
	ma_buf_reset(&out);
	ut_assert(ma_siem_bulk_create(
		      &base_ctx, MA_SIEM_JSON, &rec, NULL, &out) == 0);
	ut_assert(starts_with(
	    out.data, "{\"create\":{\"_index\":\"logs-mailaudit-default\","));
	ma_buf_deinit(&out);
	ma_record_deinit(&rec);
	ut_end();
}

/*
 * try_max - render kind (as render does) into a buffer holding "prefix"
 * with the given max; the result, checking the buffer is unchanged on -1.
 */
static int
try_max(enum kind kind, enum ma_siem_format fmt, const struct ma_record *rec,
    size_t max)
{
	struct ma_buf out;
	int ret = -1;

	ma_buf_init(&out, max);
	MA_ASSERT(ma_buf_puts(&out, "prefix") == 0);
	switch (kind) {
	case K_BODY:
		ret = ma_siem_body(&base_ctx, fmt, rec, &out);
		break;
	case K_MSG:
		ret = ma_siem_syslog_msg(&base_ctx, fmt, rec, &out);
		break;
	case K_FRAME:
		ret = ma_siem_syslog_frame(&base_ctx, fmt, rec, &out);
		break;
	case K_HEC:
		ret = ma_siem_hec_event(&base_ctx, fmt, rec, NULL, NULL, &out);
		break;
	case K_BULK:
		ret = ma_siem_bulk_create(&base_ctx, fmt, rec, NULL, &out);
		break;
	}
	if (ret < 0)
		ut_assert(out.len == 6 && strcmp(out.data, "prefix") == 0);
	ma_buf_deinit(&out);
	return ret;
}

static void
test_out_full(void)
{
	static const enum ma_siem_format fmts[] = {
	    MA_SIEM_JSON, MA_SIEM_CEF, MA_SIEM_ECS};
	struct ma_record rec;

	ut_begin("a full buffer: -1 and nothing appended, at every size");
	rec_hostile(&rec);
	for (int kind = K_BODY; kind <= K_BULK; kind++) {
		for (size_t f = 0; f < 3; f++) {
			size_t len;
			char *text;

			if (kind == K_BULK && fmts[f] == MA_SIEM_CEF)
				continue;
			text = render(
			    &base_ctx, (enum kind)kind, fmts[f], &rec, &len);
			ut_assert(text != NULL);
			free(text);
			/* Exactly enough fits, any byte less does not. */
			ut_assert(try_max((enum kind)kind, fmts[f], &rec,
				      6 + len) == 0);
			for (size_t cut = 1; cut <= len; cut += 1 + cut / 4)
				ut_assert(try_max((enum kind)kind, fmts[f],
					      &rec, 6 + len - cut) == -1);
		}
	}
	ma_record_deinit(&rec);
	ut_end();
}

/* test_no_line_breaks - every output of a hostile record, every format. */
static void
test_no_line_breaks(void)
{
	static const enum ma_siem_format fmts[] = {
	    MA_SIEM_JSON, MA_SIEM_CEF, MA_SIEM_ECS};
	struct ma_record rec;

	ut_begin("no CR, LF or NUL in any output line");
	rec_hostile(&rec);
	ma_record_set(&rec, &rec.server, "mx\r\n1");
	ma_record_set(&rec, &rec.operation, "Op\r\nx");
	for (int kind = K_BODY; kind <= K_HEC; kind++) {
		for (size_t f = 0; f < 3; f++) {
			size_t len;
			char *text = render(
			    &base_ctx, (enum kind)kind, fmts[f], &rec, &len);

			ut_assert(text != NULL && no_line_breaks(text, len));
			free(text);
		}
	}
	ma_record_deinit(&rec);
	ut_end();
}

UT_MAIN(test_format_lookup, test_json_is_export, test_json_writer,
    test_cef_fields, test_cef_escaping, test_cef_msg_cut, test_ecs_fields,
    test_ecs_hostile, test_syslog_exact, test_syslog_pri,
    test_syslog_header_fields, test_syslog_sd_escaping, test_syslog_bom,
    test_frame, test_hec, test_bulk, test_out_full, test_no_line_breaks)
