/* SPDX-License-Identifier: MIT */
/*
 * ma-siem.c - render audit records for a SIEM: a body (the Management
 * Activity JSON of ma-export, ArcSight CEF 0 or an Elastic Common Schema
 * document) and the envelope a transport sends it in (an RFC 5424 syslog
 * message with its RFC 6587 octet count, a Splunk HEC event object, an
 * Elasticsearch _bulk "create" pair).  docs/SIEM-FORMATS.md has the field
 * mapping of every format and the escaping rules; this file follows it.
 *
 * Model: one record in, text appended to the caller's bounded buffer; on
 * any failure (the buffer's max reached) the buffer is left as it was, so
 * a transport can batch records in one buffer and stop at the first that
 * does not fit.  All text is written straight into that buffer: the
 * Management Activity object by ma_export_json, the ECS document around
 * it and every JSON string by ma-export's 7-bit writer (no raw control
 * byte, ever), CEF and the syslog header here, where every untrusted
 * string goes through one escaper (put_text) that repairs invalid UTF-8,
 * applies the format's escapes and turns the characters the format
 * cannot escape (C0 and C1 controls, DEL, line separators, bidi
 * overrides) into '?'.  The RFC 5424 header fields take only printable
 * US-ASCII; any other byte becomes '_'.
 *
 * Workload: mailaudit-forward renders each record once per destination,
 * tens of thousands a second at most; a call allocates only scratch
 * copies (repaired UTF-8, the CEF msg, the CEF line of a HEC event, a
 * bare Message-ID or recipient).  Pure: no I/O, no global state,
 * thread-safe.  Left out on purpose: the legacy BSD syslog header (RFC
 * 3164), CEF 1, splitting records that are larger than a receiver's
 * message limit (a transport's concern), HEC "fields".
 */

#include "ma-siem.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "ma-config.h"

/* Bound of the scratch buffers; see MA_EXPORT_BUF_MAX. */
#define SIEM_BUF_MAX ((size_t)256 * 1024 * 1024)

#define SIEM_DEFAULT_APP_NAME "mailaudit"
#define SIEM_DEFAULT_SD_ID    "mailaudit@32473"
#define SIEM_DEFAULT_FACILITY 13 /* log audit */
#define SIEM_DEFAULT_INDEX    "logs-mailaudit-default"
#define SIEM_PROVIDER         "Exchange" /* the records' Workload */

/* RFC 5424 section 6 field limits. */
#define SYSLOG_HOSTNAME_MAX 255
#define SYSLOG_APP_NAME_MAX 48
#define SYSLOG_MSGID_MAX    32
#define SYSLOG_SD_NAME_MAX  32
#define SYSLOG_SEV_WARNING  4
#define SYSLOG_SEV_NOTICE   5

/* CEF header limits ("Implementing ArcSight CEF"). */
#define CEF_VENDOR        "mailaudit"
#define CEF_PRODUCT       "mailaudit"
#define CEF_VERSION_MAX   31
#define CEF_SIGNATURE_MAX 1023
#define CEF_NAME_MAX      512
#define CEF_MSG_MAX       1023

#define ECS_VERSION "8.11.0"

/*-------------------------------------------------------------------------
 * What each action is, for CEF's severity and ECS's categorisation
 */

struct siem_action {
	const char *category[2]; /* ECS event.category, NULL-padded */
	const char *type;        /* ECS event.type */
	int severity;            /* CEF 0-10, before a failure's +1 */
};

static const struct siem_action siem_actions[MA_ACTION_COUNT] = {
    [MA_ACTION_APPLY_RECORD] = {{"api"}, "change", 4},
    [MA_ACTION_COPY] = {{"api"}, "creation", 4},
    [MA_ACTION_CREATE] = {{"api"}, "creation", 3},
    [MA_ACTION_FOLDER_BIND] = {{"api"}, "access", 3},
    [MA_ACTION_HARD_DELETE] = {{"api"}, "deletion", 6},
    [MA_ACTION_MAILBOX_LOGIN] = {{"authentication", "session"}, "start", 3},
    [MA_ACTION_MAIL_ITEMS_ACCESSED] = {{"api"}, "access", 3},
    [MA_ACTION_MESSAGE_BIND] = {{"api"}, "access", 3},
    [MA_ACTION_MOVE] = {{"api"}, "change", 4},
    [MA_ACTION_MOVE_TO_DELETED_ITEMS] = {{"api"}, "deletion", 5},
    [MA_ACTION_RECORD_DELETE] = {{"api"}, "deletion", 6},
    [MA_ACTION_SEARCH_QUERY_INITIATED] = {{"api"}, "access", 3},
    [MA_ACTION_SEND] = {{"api"}, "creation", 3},
    [MA_ACTION_SEND_AS] = {{"api"}, "creation", 6},
    [MA_ACTION_SEND_ON_BEHALF] = {{"api"}, "creation", 6},
    [MA_ACTION_SOFT_DELETE] = {{"api"}, "deletion", 5},
    [MA_ACTION_UPDATE] = {{"api"}, "change", 3},
    [MA_ACTION_UPDATE_CALENDAR_DELEGATION] = {{"iam"}, "change", 7},
    [MA_ACTION_UPDATE_COMPLIANCE_TAG] = {{"api"}, "change", 4},
    [MA_ACTION_UPDATE_FOLDER_PERMISSIONS] = {{"iam"}, "change", 7},
    [MA_ACTION_UPDATE_INBOX_RULES] = {{"configuration"}, "change", 7},
    [MA_ACTION_FOLDER_CREATE] = {{"api"}, "creation", 3},
    [MA_ACTION_FOLDER_DELETE] = {{"api"}, "deletion", 5},
    [MA_ACTION_FOLDER_RENAME] = {{"api"}, "change", 4},
};

/* Any other operation is a change of the audit configuration (admin). */
static const struct siem_action siem_admin = {{"configuration"}, "change", 7};

/* rec_action - rec's action; false for an admin (or unknown) operation. */
static bool
rec_action(const struct ma_record *rec, enum ma_action *action_r)
{
	return rec->operation != NULL &&
	       ma_action_lookup(rec->operation, action_r) == 1;
}

static const struct siem_action *
action_info(const struct ma_record *rec)
{
	enum ma_action action;

	return rec_action(rec, &action) ? &siem_actions[action] : &siem_admin;
}

/* record_type_name - the Management Activity RecordType, by name. */
static const char *
record_type_name(const struct ma_record *rec)
{
	enum ma_action action;

	if (!rec_action(rec, &action))
		return "ExchangeAdmin";
	switch (ma_action_record_type(action)) {
	case 3:
		return "ExchangeItemGroup";
	case 50:
		return "ExchangeItemAggregated";
	default:
		return "ExchangeItem";
	}
}

static bool
is_send(const struct ma_record *rec)
{
	enum ma_action action;

	return rec_action(rec, &action) &&
	       (action == MA_ACTION_SEND || action == MA_ACTION_SEND_AS ||
		   action == MA_ACTION_SEND_ON_BEHALF);
}

/*-------------------------------------------------------------------------
 * Small helpers
 */

/* nonempty - s if it holds something, else NULL. */
static const char *
nonempty(const char *s)
{
	return s != NULL && s[0] != '\0' ? s : NULL;
}

/* origin_host - the server that saw the action, else ours; may be NULL. */
static const char *
origin_host(const struct ma_siem_ctx *ctx, const struct ma_record *rec)
{
	return nonempty(rec->server) != NULL ? rec->server
					     : nonempty(ctx->hostname);
}

/* valid_ip - s is an IPv4 or IPv6 address in text form. */
static bool
valid_ip(const char *s)
{
	unsigned char addr[16];

	return s != NULL && (inet_pton(AF_INET, s, addr) == 1 ||
				inet_pton(AF_INET6, s, addr) == 1);
}

/* op_count - OperationCount as the JSON has it. */
static uint32_t
op_count(const struct ma_record *rec)
{
	return rec->count != 0 ? rec->count : rec->item_count;
}

static const char *
prop_value(const struct ma_prop *p)
{
	return p->new_value != NULL ? p->new_value : p->old_value;
}

/* rec_prop - the value of property name, NULL if absent or empty. */
static const char *
rec_prop(const struct ma_record *rec, const char *name)
{
	const struct ma_prop *p = ma_record_get_prop(rec, name);

	return p != NULL ? nonempty(prop_value(p)) : NULL;
}

/* time_text - "YYYY-MM-DDTHH:MM:SS.mmmZ" (RFC 3339, UTC). */
static void
time_text(int64_t ms, char out[32])
{
	ma_fmt_time(ms, true, out);
	MA_ASSERT(strlen(out) == 23);
	out[23] = 'Z';
	out[24] = '\0';
}

/* utf8_cut - the longest prefix of valid UTF-8 s[0..len) within max bytes. */
static size_t
utf8_cut(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	return max;
}

/*
 * unprintable - characters a CEF or syslog reader must not get raw: C0
 * controls, DEL, C1 controls (U+0085 ends a line for some readers), the
 * Unicode line and paragraph separators, and the bidirectional
 * embeddings, overrides and isolates that make a displayed value read
 * differently from its bytes ("invoice<U+202E>fdp.exe").  The same set
 * as ma-export's table; the JSON formats keep them, \u-escaped.
 */
static bool
unprintable(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp < 0xa0) ||
	       (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/*-------------------------------------------------------------------------
 * Output with one error flag, so that writers read as a list of fields
 */

struct siem_out {
	struct ma_buf *buf;
	struct ma_buf tmp; /* UTF-8 repair */
	size_t start;      /* buf->len on entry: restored on failure */
	bool failed;
	bool cef_sep; /* a CEF extension was written: next needs a space */
};

static void
out_init(struct siem_out *o, struct ma_buf *buf)
{
	memset(o, 0, sizeof(*o));
	o->buf = buf;
	o->start = buf->len;
	ma_buf_init(&o->tmp, SIEM_BUF_MAX);
}

/* out_finish - 0, or -1 with buf back as it was on entry. */
static int
out_finish(struct siem_out *o)
{
	ma_buf_deinit(&o->tmp);
	if (!o->failed)
		return 0;
	o->buf->len = o->start;
	if (o->buf->data != NULL)
		o->buf->data[o->start] = '\0';
	return -1;
}

/*
 * out_append - the one place output goes through (ma_buf_put_fast: most
 * appends are a few bytes into room already allocated).
 */
static inline void
out_append(struct siem_out *o, const char *s, size_t len)
{
	if (!o->failed && ma_buf_put_fast(o->buf, s, len) < 0)
		o->failed = true;
}

static void
out_puts(struct siem_out *o, const char *s)
{
	out_append(o, s, strlen(s));
}

static void
out_putc(struct siem_out *o, char c)
{
	out_append(o, &c, 1);
}

static void
out_i64(struct siem_out *o, int64_t v)
{
	if (v < 0) {
		out_putc(o, '-');
		/* -(v + 1) + 1: INT64_MIN has no positive twin in int64_t. */
		if (!o->failed &&
		    ma_buf_put_u64(o->buf, (uint64_t)(-(v + 1)) + 1) < 0)
			o->failed = true;
	} else if (!o->failed && ma_buf_put_u64(o->buf, (uint64_t)v) < 0) {
		o->failed = true;
	}
}

/* out_json_str - s as a JSON string literal (invalid UTF-8 repaired). */
static void
out_json_str(struct siem_out *o, const char *s)
{
	if (!o->failed && ma_export_json_put_string(o->buf, s) < 0)
		o->failed = true;
}

/* out_export_json - the Management Activity object (ma_export_json). */
static void
out_export_json(struct siem_out *o, const struct ma_siem_ctx *ctx,
    const struct ma_record *rec)
{
	if (!o->failed && ma_export_json(&ctx->export, rec, o->buf) < 0)
		o->failed = true;
}

/* The escaping contexts of put_text. */
enum siem_esc {
	ESC_CEF_HEADER, /* \ and | escaped */
	ESC_CEF_VALUE,  /* \ and = escaped, CR LF as \r \n */
	ESC_SD_VALUE,   /* " \ and ] escaped */
};

/*
 * put_text - s (at most max bytes of it, cut on a character boundary)
 * escaped for esc: invalid UTF-8 becomes U+FFFD, what the context cannot
 * escape (see unprintable) becomes '?'.
 */
static void
put_text(struct siem_out *o, const char *s, size_t max, enum siem_esc esc)
{
	const unsigned char *p, *end;
	size_t len = strlen(s);

	if (!ma_utf8_valid(s, len)) {
		ma_buf_reset(&o->tmp);
		MA_ASSERT(ma_utf8_repair(s, len, &o->tmp) == 0);
		s = o->tmp.data;
		len = o->tmp.len;
	}
	p = (const unsigned char *)s;
	end = p + utf8_cut(s, len, max);
	while (p < end && !o->failed) {
		const unsigned char *run = p;
		uint32_t cp = 0;
		size_t n = 0;

		/* Copy plain runs in one piece: most text needs no escape. */
		for (; p < end; p += n) {
			n = ma_utf8_decode(p, &cp);
			if (unprintable(cp) || cp == '\\' ||
			    (esc == ESC_CEF_HEADER && cp == '|') ||
			    (esc == ESC_CEF_VALUE && cp == '=') ||
			    (esc == ESC_SD_VALUE && (cp == '"' || cp == ']')))
				break;
		}
		out_append(o, (const char *)run, (size_t)(p - run));
		if (p >= end)
			break;
		if (esc == ESC_CEF_VALUE && cp == '\r')
			out_puts(o, "\\r");
		else if (esc == ESC_CEF_VALUE && cp == '\n')
			out_puts(o, "\\n");
		else if (unprintable(cp))
			out_putc(o, '?');
		else {
			out_putc(o, '\\');
			out_putc(o, (char)cp);
		}
		p += n;
	}
}

/*
 * put_header_field - an RFC 5424 header field (or SD-ID): printable
 * US-ASCII only, any other byte as '_', at most max bytes; absent or
 * empty gives the NILVALUE "-", and a value of exactly "-" (which would
 * read as NILVALUE) becomes "_".
 */
static void
put_header_field(struct siem_out *o, const char *s, size_t max, bool sd_name)
{
	size_t len;

	if (s == NULL || s[0] == '\0') {
		out_putc(o, '-');
		return;
	}
	if (strcmp(s, "-") == 0) {
		out_putc(o, '_');
		return;
	}
	len = strlen(s);
	for (size_t i = 0; i < len && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		bool ok = c >= 33 && c <= 126 &&
			  !(sd_name && (c == '=' || c == ']' || c == '"'));

		out_putc(o, ok ? (char)c : '_');
	}
}

/*-------------------------------------------------------------------------
 * CEF
 */

/* cef_name - "Mail items accessed" for MailItemsAccessed; else the op. */
static void
cef_name(struct siem_out *o, const struct ma_record *rec)
{
	enum ma_action action;
	const char *name;

	if (!rec_action(rec, &action)) {
		put_text(o, rec->operation != NULL ? rec->operation : "",
		    CEF_NAME_MAX, ESC_CEF_HEADER);
		return;
	}
	/* Canonical action names are plain ASCII camel case. */
	name = ma_action_name(action);
	for (size_t i = 0; name[i] != '\0'; i++) {
		char c = name[i];

		if (i > 0 && c >= 'A' && c <= 'Z') {
			out_putc(o, ' ');
			c = (char)(c - 'A' + 'a');
		}
		out_putc(o, c);
	}
}

static int
cef_severity(const struct ma_record *rec)
{
	int sev = action_info(rec)->severity;

	if (rec->result == MA_RESULT_FAILED && sev < 10)
		sev++;
	return sev;
}

static const char *
cef_outcome(enum ma_result result)
{
	switch (result) {
	case MA_RESULT_SUCCEEDED:
		return "success";
	case MA_RESULT_FAILED:
		return "failure";
	default:
		return "partial";
	}
}

/* cef_key - " key=" (no space before the first extension). */
static void
cef_key(struct siem_out *o, const char *key)
{
	if (o->cef_sep)
		out_putc(o, ' ');
	o->cef_sep = true;
	out_puts(o, key);
	out_putc(o, '=');
}

/* cef_ext - key=value, value escaped; an absent or empty value is left out. */
static void
cef_ext(struct siem_out *o, const char *key, const char *value, size_t max)
{
	if (nonempty(value) == NULL)
		return;
	cef_key(o, key);
	put_text(o, value, max, ESC_CEF_VALUE);
}

/* cef_custom - "csNLabel=label csN=value", both only if value is there. */
static void
cef_custom(
    struct siem_out *o, const char *key, const char *label, const char *value)
{
	char label_key[32];
	int n;

	if (nonempty(value) == NULL)
		return;
	n = snprintf(label_key, sizeof(label_key), "%sLabel", key);
	MA_ASSERT(n > 0 && (size_t)n < sizeof(label_key));
	cef_ext(o, label_key, label, SIZE_MAX);
	cef_ext(o, key, value, SIZE_MAX);
}

/*
 * cef_msg - the properties as "Name: value; ..." (msg), cut at CEF's
 * 1023 bytes.  The full list stays in the JSON formats.
 */
static void
cef_msg(struct siem_out *o, const struct ma_record *rec)
{
	struct ma_buf text;

	if (rec->prop_count == 0)
		return;
	ma_buf_init(&text, SIEM_BUF_MAX);
	for (uint32_t i = 0; i < rec->prop_count; i++) {
		const struct ma_prop *p = &rec->props[i];
		const char *v = prop_value(p);

		if (p->name == NULL || v == NULL)
			continue;
		/* Far below SIEM_BUF_MAX: a record's props are bounded. */
		MA_ASSERT(ma_buf_printf(&text, "%s%s: %s",
			      text.len > 0 ? "; " : "", p->name, v) == 0);
		if (text.len > CEF_MSG_MAX)
			break;
	}
	if (text.len > 0)
		cef_ext(o, "msg", text.data, CEF_MSG_MAX);
	ma_buf_deinit(&text);
}

static void
cef_body(const struct ma_siem_ctx *ctx, const struct ma_record *rec,
    struct siem_out *o)
{
	const struct ma_item *first =
	    rec->item_count > 0 ? &rec->items[0] : NULL;
	const char *version = nonempty(ctx->product_version) != NULL
				  ? ctx->product_version
				  : MA_VERSION;
	char id[37];

	ma_uuid_fmt(rec->id, id);
	out_puts(o, "CEF:0|" CEF_VENDOR "|" CEF_PRODUCT "|");
	put_text(o, version, CEF_VERSION_MAX, ESC_CEF_HEADER);
	out_putc(o, '|');
	put_text(o, rec->operation != NULL ? rec->operation : "",
	    CEF_SIGNATURE_MAX, ESC_CEF_HEADER);
	out_putc(o, '|');
	cef_name(o, rec);
	out_putc(o, '|');
	out_i64(o, cef_severity(rec));
	out_putc(o, '|');

	cef_key(o, "rt");
	out_i64(o, rec->time_ms);
	cef_ext(o, "act", rec->operation, SIZE_MAX);
	cef_ext(o, "outcome", cef_outcome(rec->result), SIZE_MAX);
	cef_ext(o, "suser", rec->user, SIZE_MAX);
	cef_ext(o, "duser", rec->mailbox, SIZE_MAX);
	if (valid_ip(rec->client_ip))
		cef_ext(o, "src", rec->client_ip, SIZE_MAX);
	cef_ext(o, "externalId", id, SIZE_MAX);
	cef_ext(o, "dvchost", origin_host(ctx, rec), SIZE_MAX);
	cef_ext(o, "app", rec->protocol, SIZE_MAX);
	cef_ext(o, "requestClientApplication", rec->client_info, SIZE_MAX);
	if (op_count(rec) > 0) {
		cef_key(o, "cnt");
		out_i64(o, op_count(rec));
	}
	if (rec->seq > 0) {
		cef_ext(o, "cn1Label", "Sequence", SIZE_MAX);
		cef_key(o, "cn1");
		out_i64(o, rec->seq);
	}
	cef_custom(o, "cs1", "LogonType", ma_logon_name(rec->logon_type));
	cef_custom(o, "cs2", "Folder", rec->folder);
	cef_custom(o, "cs3", "InternetMessageId",
	    first != NULL ? first->message_id : NULL);
	cef_custom(o, "cs4", "Subject", first != NULL ? first->subject : NULL);
	cef_custom(o, "cs5", "Session", rec->session);
	cef_custom(o, "cs6", "DestFolder", rec->dest_folder);
	cef_custom(o, "flexString1", "DestMailbox", rec->dest_mailbox);
	cef_msg(o, rec);
}

/*-------------------------------------------------------------------------
 * ECS, written as text like ma-export's JSON: a jansson tree cost more
 * than writing the document (docs/SIEM-FORMATS.md, "Throughput")
 */

#define JW_DEPTH 6

/*
 * A JSON writer whose objects and arrays appear only once a member is
 * written into them, so that optional groups (user, email, related ...)
 * never show up empty.  Keys are constants of this file: plain ASCII.
 */
struct jw {
	struct siem_out *o;
	int depth; /* the level being filled; 0 is the document */
	struct {
		const char *key;
		char open, close;
		bool emitted;
		unsigned int members;
	} lv[JW_DEPTH];
};

/* jw_member - the separator and key of a new member at level d. */
static void
jw_member(struct jw *w, int d, const char *key)
{
	if (w->lv[d].members++ > 0)
		out_putc(w->o, ',');
	if (key != NULL) {
		out_putc(w->o, '"');
		out_puts(w->o, key);
		out_puts(w->o, "\":");
	}
}

/* jw_emit - write the opening of level d and of every pending parent. */
static void
jw_emit(struct jw *w, int d)
{
	if (w->lv[d].emitted)
		return;
	if (d > 0) {
		jw_emit(w, d - 1);
		jw_member(w, d - 1, w->lv[d].key);
	}
	out_putc(w->o, w->lv[d].open);
	w->lv[d].emitted = true;
}

/* jw_begin - an object ('{') or array ('[') at key, written on demand. */
static void
jw_begin(struct jw *w, const char *key, char open)
{
	MA_ASSERT(w->depth + 1 < JW_DEPTH);
	w->depth++;
	w->lv[w->depth].key = key;
	w->lv[w->depth].open = open;
	w->lv[w->depth].close = open == '{' ? '}' : ']';
	w->lv[w->depth].emitted = false;
	w->lv[w->depth].members = 0;
}

static void
jw_end(struct jw *w)
{
	MA_ASSERT(w->depth >= 0);
	if (w->lv[w->depth].emitted)
		out_putc(w->o, w->lv[w->depth].close);
	w->depth--;
}

/* jw_key - start a member of the current level (key NULL in arrays). */
static void
jw_key(struct jw *w, const char *key)
{
	jw_emit(w, w->depth);
	jw_member(w, w->depth, key);
}

/* jw_str - key: s; an absent or empty s writes nothing. */
static void
jw_str(struct jw *w, const char *key, const char *s)
{
	if (nonempty(s) == NULL)
		return;
	jw_key(w, key);
	out_json_str(w->o, s);
}

/* jw_strn - key: s[0..len). */
static void
jw_strn(struct jw *w, const char *key, const char *s, size_t len)
{
	char *copy = ma_xstrndup(s, len);

	jw_str(w, key, copy);
	free(copy);
}

static void
jw_i64(struct jw *w, const char *key, int64_t v)
{
	jw_key(w, key);
	out_i64(w->o, v);
}

/* jw_user - {name, email, domain} of an address-like user name. */
static void
jw_user(struct jw *w, const char *user)
{
	const char *at = strrchr(user, '@');

	jw_str(w, "name", user);
	if (at != NULL && at != user && at[1] != '\0') {
		jw_str(w, "email", user);
		jw_str(w, "domain", at + 1);
	}
}

/* ecs_message_id - a Message-ID without its angle brackets, as ECS has it. */
static void
ecs_message_id(struct jw *w, const char *msgid)
{
	size_t len;

	if (nonempty(msgid) == NULL)
		return;
	len = strlen(msgid);
	if (len >= 3 && msgid[0] == '<' && msgid[len - 1] == '>')
		jw_strn(w, "message_id", msgid + 1, len - 2);
	else
		jw_str(w, "message_id", msgid);
}

/*
 * ecs_recipients - the Recipients property ("a, b, c") as array members,
 * each address once.
 */
static void
ecs_recipients(struct jw *w, const char *list)
{
	for (const char *s = list; s != NULL && *s != '\0';) {
		const char *end = strstr(s, ", ");
		size_t len = end != NULL ? (size_t)(end - s) : strlen(s);
		bool seen = false;

		/* Lists are short (the milter caps them at 1000): no index. */
		for (const char *t = list; t < s && !seen;) {
			const char *tend = strstr(t, ", ");
			size_t tlen =
			    (size_t)(tend - t); /* t < s: tend is set */

			seen = tlen == len && memcmp(t, s, len) == 0;
			t = tend + 2;
		}
		if (!seen && len > 0)
			jw_strn(w, NULL, s, len);
		s = end != NULL ? end + 2 : NULL;
	}
}

/* ecs_email - email.*: the first item, and for a send its addresses. */
static void
ecs_email(struct jw *w, const struct ma_record *rec)
{
	jw_begin(w, "email", '{');
	if (rec->item_count > 0) {
		ecs_message_id(w, rec->items[0].message_id);
		jw_str(w, "subject", rec->items[0].subject);
	}
	if (is_send(rec)) {
		const char *from = rec_prop(rec, "SendAsUserSmtp");

		/* Sent as someone else: from is them, sender the actor. */
		if (from == NULL)
			from = rec_prop(rec, "SendOnBehalfOfUserSmtp");
		if (from == NULL)
			from = rec->mailbox;
		jw_str(w, "direction", "outbound");
		jw_begin(w, "from", '{');
		jw_begin(w, "address", '[');
		jw_str(w, NULL, from);
		jw_end(w);
		jw_end(w);
		jw_begin(w, "sender", '{');
		jw_str(w, "address", rec->user);
		jw_end(w);
		jw_begin(w, "to", '{');
		jw_begin(w, "address", '[');
		ecs_recipients(w, rec_prop(rec, "Recipients"));
		jw_end(w);
		jw_end(w);
	}
	jw_end(w);
}

static const char *
ecs_outcome(enum ma_result result)
{
	switch (result) {
	case MA_RESULT_SUCCEEDED:
		return "success";
	case MA_RESULT_FAILED:
		return "failure";
	default:
		return "unknown";
	}
}

/* ecs_event - event.*: what happened, categorised. */
static void
ecs_event(struct jw *w, const struct ma_record *rec)
{
	const struct siem_action *info = action_info(rec);
	char id[37];

	ma_uuid_fmt(rec->id, id);
	jw_begin(w, "event", '{');
	jw_str(w, "kind", "event");
	jw_begin(w, "category", '[');
	for (size_t i = 0; i < 2 && info->category[i] != NULL; i++)
		jw_str(w, NULL, info->category[i]);
	jw_end(w);
	jw_begin(w, "type", '[');
	jw_str(w, NULL, info->type);
	jw_end(w);
	jw_str(w, "action", rec->operation);
	jw_str(w, "outcome", ecs_outcome(rec->result));
	jw_str(w, "id", id);
	if (rec->seq > 0)
		jw_i64(w, "sequence", rec->seq);
	jw_str(w, "provider", SIEM_PROVIDER);
	jw_str(w, "code", record_type_name(rec));
	jw_str(w, "module", "mailaudit");
	jw_end(w);
}

/* ecs_related - related.user and related.ip, each value once. */
static void
ecs_related(struct jw *w, const struct ma_record *rec)
{
	const char *users[3] = {rec->user, rec->mailbox, rec->dest_mailbox};

	jw_begin(w, "related", '{');
	jw_begin(w, "user", '[');
	for (int i = 0; i < 3; i++) {
		bool seen = nonempty(users[i]) == NULL;

		for (int k = 0; k < i && !seen; k++)
			seen =
			    users[k] != NULL && strcmp(users[k], users[i]) == 0;
		if (!seen)
			jw_str(w, NULL, users[i]);
	}
	jw_end(w);
	jw_begin(w, "ip", '[');
	if (valid_ip(rec->client_ip))
		jw_str(w, NULL, rec->client_ip);
	jw_end(w);
	jw_end(w);
}

static void
ecs_body(const struct ma_siem_ctx *ctx, const struct ma_record *rec,
    struct siem_out *o)
{
	const char *host = origin_host(ctx, rec);
	struct jw w = {.o = o};
	char time[32];

	w.lv[0].open = '{';
	w.lv[0].close = '}';
	time_text(rec->time_ms, time);
	jw_str(&w, "@timestamp", time);
	jw_begin(&w, "ecs", '{');
	jw_str(&w, "version", ECS_VERSION);
	jw_end(&w);
	ecs_event(&w, rec);
	jw_begin(&w, "user", '{');
	if (nonempty(rec->user) != NULL)
		jw_user(&w, rec->user);
	jw_begin(&w, "target", '{');
	if (nonempty(rec->mailbox) != NULL)
		jw_user(&w, rec->mailbox);
	jw_end(&w);
	jw_end(&w);
	jw_begin(&w, "source", '{');
	jw_str(&w, "address", rec->client_ip);
	/* An ip-typed field refuses anything else: keep it out. */
	if (valid_ip(rec->client_ip))
		jw_str(&w, "ip", rec->client_ip);
	jw_end(&w);
	jw_begin(&w, "user_agent", '{');
	jw_str(&w, "original", rec->client_info);
	jw_end(&w);
	ecs_email(&w, rec);
	jw_begin(&w, "network", '{');
	jw_str(&w, "protocol", rec->protocol);
	jw_end(&w);
	jw_begin(&w, "host", '{');
	jw_str(&w, "name", host);
	jw_end(&w);
	jw_begin(&w, "observer", '{');
	jw_str(&w, "hostname", host);
	jw_str(&w, "product", CEF_PRODUCT);
	jw_str(&w, "vendor", CEF_VENDOR);
	jw_str(&w, "version",
	    nonempty(ctx->product_version) != NULL ? ctx->product_version
						   : MA_VERSION);
	jw_end(&w);
	jw_begin(&w, "organization", '{');
	jw_str(&w, "id", ctx->export.organization_id);
	jw_str(&w, "name", ctx->export.organization_name);
	jw_end(&w);
	ecs_related(&w, rec);
	jw_begin(&w, "mailaudit", '{');
	jw_key(&w, "record");
	out_export_json(o, ctx, rec);
	jw_end(&w);
	jw_end(&w);
	MA_ASSERT(w.depth == -1);
}

/*-------------------------------------------------------------------------
 * Bodies
 */

static void
body(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, struct siem_out *o)
{
	switch (fmt) {
	case MA_SIEM_JSON:
		out_export_json(o, ctx, rec);
		return;
	case MA_SIEM_CEF:
		cef_body(ctx, rec, o);
		return;
	case MA_SIEM_ECS:
		ecs_body(ctx, rec, o);
		return;
	}
	MA_ASSERT(!"unknown SIEM format");
}

int
ma_siem_body(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, struct ma_buf *out)
{
	struct siem_out o;

	out_init(&o, out);
	body(ctx, fmt, rec, &o);
	return out_finish(&o);
}

/*-------------------------------------------------------------------------
 * Syslog
 */

/* sd_param - ' name="value"', value escaped (absent: empty). */
static void
sd_param(struct siem_out *o, const char *name, const char *value)
{
	out_putc(o, ' ');
	out_puts(o, name);
	out_puts(o, "=\"");
	if (value != NULL)
		put_text(o, value, SIZE_MAX, ESC_SD_VALUE);
	out_putc(o, '"');
}

static void
syslog_msg(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, struct siem_out *o)
{
	int facility = ctx->facility >= 0 && ctx->facility <= 23
			   ? ctx->facility
			   : SIEM_DEFAULT_FACILITY;
	int severity = rec->result == MA_RESULT_SUCCEEDED ? SYSLOG_SEV_NOTICE
							  : SYSLOG_SEV_WARNING;
	char time[32], id[37], seq[24];
	int n;

	time_text(rec->time_ms, time);
	ma_uuid_fmt(rec->id, id);
	n = snprintf(seq, sizeof(seq), "%" PRId64, rec->seq);
	MA_ASSERT(n > 0 && (size_t)n < sizeof(seq));

	out_putc(o, '<');
	out_i64(o, facility * 8 + severity);
	out_puts(o, ">1 ");
	out_puts(o, time);
	out_putc(o, ' ');
	put_header_field(o, origin_host(ctx, rec), SYSLOG_HOSTNAME_MAX, false);
	out_putc(o, ' ');
	put_header_field(o,
	    nonempty(ctx->app_name) != NULL ? ctx->app_name
					    : SIEM_DEFAULT_APP_NAME,
	    SYSLOG_APP_NAME_MAX, false);
	out_puts(o, " - "); /* PROCID */
	put_header_field(o, rec->operation, SYSLOG_MSGID_MAX, false);
	out_puts(o, " [");
	put_header_field(o,
	    nonempty(ctx->sd_id) != NULL ? ctx->sd_id : SIEM_DEFAULT_SD_ID,
	    SYSLOG_SD_NAME_MAX, true);
	sd_param(o, "seq", seq);
	sd_param(o, "id", id);
	sd_param(o, "op", rec->operation);
	sd_param(o, "mbx", rec->mailbox);
	sd_param(o, "user", rec->user);
	sd_param(o, "logon", ma_logon_name(rec->logon_type));
	sd_param(o, "result", ma_result_name(rec->result));
	out_puts(o, "] ");
	if (ctx->utf8_bom)
		out_puts(o, "\xef\xbb\xbf");
	body(ctx, fmt, rec, o);
}

int
ma_siem_syslog_msg(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, struct ma_buf *out)
{
	struct siem_out o;

	out_init(&o, out);
	syslog_msg(ctx, fmt, rec, &o);
	return out_finish(&o);
}

int
ma_siem_syslog_frame(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, struct ma_buf *out)
{
	struct siem_out o;
	char prefix[24];
	size_t msg_len;
	int n;

	/* Render the message, then slide it right to make room for its
	   length: cheaper than rendering into a second buffer and copying. */
	out_init(&o, out);
	syslog_msg(ctx, fmt, rec, &o);
	if (!o.failed) {
		msg_len = out->len - o.start;
		n = snprintf(prefix, sizeof(prefix), "%zu ", msg_len);
		MA_ASSERT(n > 0 && (size_t)n < sizeof(prefix));
		if (ma_buf_reserve(out, (size_t)n) < 0) {
			o.failed = true;
		} else {
			memmove(out->data + o.start + n, out->data + o.start,
			    msg_len);
			memcpy(out->data + o.start, prefix, (size_t)n);
			out->len += (size_t)n;
			out->data[out->len] = '\0';
		}
	}
	return out_finish(&o);
}

/*-------------------------------------------------------------------------
 * Splunk HEC and Elasticsearch _bulk
 */

int
ma_siem_hec_event(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, const char *index, const char *sourcetype,
    struct ma_buf *out)
{
	static const char *const default_sourcetypes[] = {
	    [MA_SIEM_JSON] = "mailaudit:json",
	    [MA_SIEM_CEF] = "mailaudit:cef",
	    [MA_SIEM_ECS] = "mailaudit:ecs",
	};
	const char *host = origin_host(ctx, rec);
	uint64_t abs_ms;
	struct siem_out o;
	char frac[8];
	int n;

	MA_ASSERT(
	    fmt == MA_SIEM_JSON || fmt == MA_SIEM_CEF || fmt == MA_SIEM_ECS);
	out_init(&o, out);
	/* Epoch seconds with the milliseconds as decimals, written by hand:
	   a double would print 1741082561.1229999. */
	out_puts(&o, "{\"time\":");
	if (rec->time_ms < 0)
		out_putc(&o, '-');
	abs_ms = rec->time_ms < 0 ? (uint64_t)(-(rec->time_ms + 1)) + 1
				  : (uint64_t)rec->time_ms;
	out_i64(&o, (int64_t)(abs_ms / 1000));
	n = snprintf(
	    frac, sizeof(frac), ".%03u", (unsigned int)(abs_ms % 1000));
	MA_ASSERT(n == 4);
	out_puts(&o, frac);
	if (host != NULL) {
		out_puts(&o, ",\"host\":");
		out_json_str(&o, host);
	}
	out_puts(&o, ",\"source\":");
	out_json_str(&o, nonempty(ctx->app_name) != NULL
			     ? ctx->app_name
			     : SIEM_DEFAULT_APP_NAME);
	out_puts(&o, ",\"sourcetype\":");
	out_json_str(&o, nonempty(sourcetype) != NULL
			     ? sourcetype
			     : default_sourcetypes[fmt]);
	if (nonempty(index) != NULL) {
		out_puts(&o, ",\"index\":");
		out_json_str(&o, index);
	}
	out_puts(&o, ",\"event\":");
	if (fmt == MA_SIEM_CEF) {
		struct ma_buf cef;
		struct siem_out c;

		ma_buf_init(&cef, SIEM_BUF_MAX);
		out_init(&c, &cef);
		cef_body(ctx, rec, &c);
		if (out_finish(&c) < 0)
			o.failed = true;
		else
			out_json_str(&o, cef.data);
		ma_buf_deinit(&cef);
	} else {
		body(ctx, fmt, rec, &o);
	}
	out_putc(&o, '}');
	return out_finish(&o);
}

int
ma_siem_bulk_create(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, const char *index, struct ma_buf *out)
{
	struct siem_out o;
	char id[37];

	if (fmt != MA_SIEM_JSON && fmt != MA_SIEM_ECS)
		return -1;
	ma_uuid_fmt(rec->id, id);
	out_init(&o, out);
	out_puts(&o, "{\"create\":{\"_index\":");
	out_json_str(&o, nonempty(index) != NULL ? index : SIEM_DEFAULT_INDEX);
	out_puts(&o, ",\"_id\":\"");
	out_puts(&o, id);
	out_puts(&o, "\"}}\n");
	body(ctx, fmt, rec, &o);
	out_putc(&o, '\n');
	return out_finish(&o);
}
