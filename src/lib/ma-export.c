/* SPDX-License-Identifier: MIT */
/*
 * ma-export.c - render audit records as Management Activity JSON, as a
 * Purview-style CSV and as a fixed-width terminal table.
 *
 * Model: one record in, one self-contained chunk of text out.  The JSON
 * object is written straight into the output in the order of the field
 * tables in docs/SCHEMA.md ("Export formats"), compact and 7-bit clean:
 * the bytes jansson's json_dumps(JSON_COMPACT | JSON_ENSURE_ASCII) gives
 * for the same object (tests parse it back with jansson and compare),
 * with DEL escaped too, so a JSON line holds no control byte, no C1
 * control and no bidirectional override a pager could act on.  (It used
 * to be a jansson tree; building and dumping one took three quarters of
 * the time of forwarding a record: docs/SIEM-FORMATS.md, "Throughput".)
 * The CSV row wraps that JSON as its AuditData cell; the table row
 * squeezes a summary of the record into fixed columns.
 *
 * Everything in a record may be hostile: subjects, folder names, Message-
 * IDs and client strings are chosen by whoever sends or stores the mail.
 * Invalid UTF-8 is repaired (U+FFFD) before it is written; CSV cells are
 * quoted per RFC 4180, flattened to one physical line and defended
 * against spreadsheet formula injection; table cells show every control
 * character as '?'.  The exact value always survives in the JSON.
 *
 * Workload: the CLI exporting search results and mailaudit-forward
 * rendering every record for every destination (tens of thousands a
 * second); each call uses its own scratch buffers and caches nothing, so
 * the functions are thread-safe.  Left out on purpose: pretty-
 * printed JSON, JSON arrays (one object per line is what SIEM collectors
 * take), terminal width detection and East Asian wide characters (table
 * widths count code points).
 */

#include "ma-export.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ma-action.h"

/*
 * Bound for the buffers one record is rendered into.  A validated record
 * (1000 items, 64 properties, 4 KiB per string) stays far below it even
 * after the 6x growth of \u escapes; it only stops a corrupt one.
 */
#define MA_EXPORT_BUF_MAX ((size_t)256 * 1024 * 1024)

#define CSV_HEADER "CreationDate,UserIds,Operations,AuditData\r\n"

static const char *const format_names[] = {
    [MA_EXPORT_TABLE] = "table",
    [MA_EXPORT_JSON] = "json",
    [MA_EXPORT_CSV] = "csv",
};

int
ma_export_format_lookup(const char *name, enum ma_export_format *fmt_r)
{
	for (size_t i = 0; i < sizeof(format_names) / sizeof(*format_names);
	     i++) {
		if (strcasecmp(name, format_names[i]) == 0) {
			*fmt_r = (enum ma_export_format)i;
			return 1;
		}
	}
	return 0;
}

/* buf_truncate - drop everything after the first len bytes of buf. */
static void
buf_truncate(struct ma_buf *buf, size_t len)
{
	MA_ASSERT(len <= buf->len);
	buf->len = len;
	if (buf->data != NULL)
		buf->data[len] = '\0';
}

/*-------------------------------------------------------------------------
 * JSON
 */

static inline int
buf_putc(struct ma_buf *out, char c)
{
	return ma_buf_put_fast(out, &c, 1);
}

/*
 * put_json_string - s[0..len) (valid UTF-8) as a JSON string literal, in
 * jansson's 7-bit form (JSON_ENSURE_ASCII): \" \\ \b \f \n \r \t, other
 * controls and every non-ASCII character as \uXXXX (a surrogate pair
 * above U+FFFF), upper-case hex.  DEL, which JSON may carry raw but a
 * terminal should not get, is written \u007F too.
 */
static int
put_json_string(struct ma_buf *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	if (buf_putc(out, '"') < 0)
		return -1;
	while (p < end) {
		const unsigned char *run = p;
		char esc[16];
		size_t n = 0;
		uint32_t cp;

		/* Plain ASCII runs go in one piece. */
		while (p < end && *p >= 0x20 && *p < 0x7f && *p != '"' &&
		       *p != '\\')
			p++;
		if (ma_buf_put_fast(out, run, (size_t)(p - run)) < 0)
			return -1;
		if (p >= end)
			break;
		p += ma_utf8_decode(p, &cp);
		esc[n++] = '\\';
		switch (cp) {
		case '"':
		case '\\':
			esc[n++] = (char)cp;
			break;
		case '\b':
			esc[n++] = 'b';
			break;
		case '\f':
			esc[n++] = 'f';
			break;
		case '\n':
			esc[n++] = 'n';
			break;
		case '\r':
			esc[n++] = 'r';
			break;
		case '\t':
			esc[n++] = 't';
			break;
		default:
			if (cp >= 0x10000) {
				uint32_t v = cp - 0x10000;
				uint32_t hi = 0xd800 | (v >> 10);

				esc[n++] = 'u';
				for (int shift = 12; shift >= 0; shift -= 4)
					esc[n++] = hex[(hi >> shift) & 0xf];
				esc[n++] = '\\';
				cp = 0xdc00 | (v & 0x3ff);
			}
			esc[n++] = 'u';
			for (int shift = 12; shift >= 0; shift -= 4)
				esc[n++] = hex[(cp >> shift) & 0xf];
			break;
		}
		if (ma_buf_put_fast(out, esc, n) < 0)
			return -1;
	}
	return buf_putc(out, '"');
}

int
ma_export_json_put_string(struct ma_buf *out, const char *s)
{
	size_t start = out->len, len = strlen(s);
	int ret;

	if (ma_utf8_valid(s, len)) {
		ret = put_json_string(out, s, len);
	} else {
		struct ma_buf tmp;

		ma_buf_init(&tmp, MA_EXPORT_BUF_MAX);
		MA_ASSERT(ma_utf8_repair(s, len, &tmp) == 0);
		ret = put_json_string(out, tmp.data, tmp.len);
		ma_buf_deinit(&tmp);
	}
	if (ret < 0)
		buf_truncate(out, start);
	return ret;
}

#define JW_DEPTH 8

/*
 * The writer one record is built with: text goes straight into the
 * output, members in the order of docs/SCHEMA.md.  An object or array
 * opened "lazy" appears only once a member is written into it (the
 * schema leaves out empty lists); any other is written at once.  The
 * first failure (out full) sticks, and the caller truncates.
 */
struct json_build {
	const struct ma_record *rec;
	struct ma_buf *out;
	bool failed;
	int depth; /* the level being filled; 0 is the record object */
	struct {
		const char *key;
		char open, close;
		bool emitted;
		unsigned int members;
	} lv[JW_DEPTH];
	struct ma_buf str;  /* UTF-8 repair */
	struct ma_buf path; /* folder paths and item ids */
};

static void
jput(struct json_build *b, const char *s, size_t len)
{
	if (!b->failed && ma_buf_put_fast(b->out, s, len) < 0)
		b->failed = true;
}

static void
jputc(struct json_build *b, char c)
{
	jput(b, &c, 1);
}

/* jmember - the separator and key of a new member at level d. */
static void
jmember(struct json_build *b, int d, const char *key)
{
	if (b->lv[d].members++ > 0)
		jputc(b, ',');
	if (key != NULL) {
		jputc(b, '"');
		jput(b, key, strlen(key));
		jput(b, "\":", 2);
	}
}

/* jemit - write the opening of level d and of every pending parent. */
static void
jemit(struct json_build *b, int d)
{
	if (b->lv[d].emitted)
		return;
	if (d > 0) {
		jemit(b, d - 1);
		jmember(b, d - 1, b->lv[d].key);
	}
	jputc(b, b->lv[d].open);
	b->lv[d].emitted = true;
}

/* jbegin - an object ('{') or array ('[') at key (NULL in an array). */
static void
jbegin(struct json_build *b, const char *key, char open, bool lazy)
{
	MA_ASSERT(b->depth + 1 < JW_DEPTH);
	b->depth++;
	b->lv[b->depth].key = key;
	b->lv[b->depth].open = open;
	b->lv[b->depth].close = open == '{' ? '}' : ']';
	b->lv[b->depth].emitted = false;
	b->lv[b->depth].members = 0;
	if (!lazy)
		jemit(b, b->depth);
}

static void
jend(struct json_build *b)
{
	MA_ASSERT(b->depth >= 0);
	if (b->lv[b->depth].emitted)
		jputc(b, b->lv[b->depth].close);
	b->depth--;
}

/* jkey - start a member of the current level. */
static void
jkey(struct json_build *b, const char *key)
{
	jemit(b, b->depth);
	jmember(b, b->depth, key);
}

/* jset_str - key: s, invalid UTF-8 as U+FFFD; a NULL s leaves it out. */
static void
jset_str(struct json_build *b, const char *key, const char *s)
{
	size_t len;

	if (s == NULL)
		return;
	jkey(b, key);
	len = strlen(s);
	if (!ma_utf8_valid(s, len)) {
		ma_buf_reset(&b->str);
		MA_ASSERT(ma_utf8_repair(s, len, &b->str) >= 0);
		s = b->str.data;
		len = b->str.len;
	}
	if (!b->failed && put_json_string(b->out, s, len) < 0)
		b->failed = true;
}

static void
jset_int(struct json_build *b, const char *key, int64_t val)
{
	jkey(b, key);
	if (val < 0)
		jputc(b, '-');
	/* -(val + 1) + 1: INT64_MIN has no positive twin in int64_t. */
	if (!b->failed &&
	    ma_buf_put_u64(b->out,
		val < 0 ? (uint64_t)(-(val + 1)) + 1 : (uint64_t)val) < 0)
		b->failed = true;
}

static void
jset_u64(struct json_build *b, const char *key, uint64_t val)
{
	/* JSON readers stop at int64 (most at 2^53); clamp, never wrap. */
	jset_int(b, key, val > INT64_MAX ? INT64_MAX : (int64_t)val);
}

static void
jset_bool(struct json_build *b, const char *key, bool val)
{
	jkey(b, key);
	jput(b, val ? "true" : "false", val ? 4 : 5);
}

/* jname_value - {"Name": name, "Value": value}, absent values as "". */
static void
jname_value(struct json_build *b, const char *name, const char *value)
{
	jbegin(b, NULL, '{', false);
	jset_str(b, "Name", name != NULL ? name : "");
	jset_str(b, "Value", value != NULL ? value : "");
	jend(b);
}

/* jmodified - {Name, NewValue, OldValue}; an absent value is "". */
static void
jmodified(struct json_build *b, const struct ma_prop *p)
{
	jbegin(b, NULL, '{', false);
	jset_str(b, "Name", p->name != NULL ? p->name : "");
	jset_str(b, "NewValue", p->new_value != NULL ? p->new_value : "");
	jset_str(b, "OldValue", p->old_value != NULL ? p->old_value : "");
	jend(b);
}

/* folder_path - "\" + folder with the '/' separators turned into '\'. */
static const char *
folder_path(struct json_build *b, const char *folder)
{
	ma_buf_reset(&b->path);
	MA_ASSERT(ma_buf_putc(&b->path, '\\') == 0);
	for (const char *p = folder; *p != '\0'; p++)
		MA_ASSERT(ma_buf_putc(&b->path, *p == '/' ? '\\' : *p) == 0);
	return b->path.data;
}

/* folder_name - the last component of an IMAP folder name. */
static const char *
folder_name(const char *folder)
{
	const char *slash = strrchr(folder, '/');

	return slash != NULL ? slash + 1 : folder;
}

/*
 * jfolder_begin - open the ExchangeFolder object key {Path[, Name]}; the
 * caller may add members and then calls jend.
 */
static void
jfolder_begin(
    struct json_build *b, const char *key, const char *folder, bool with_name)
{
	jbegin(b, key, '{', false);
	jset_str(b, "Path", folder_path(b, folder));
	if (with_name)
		jset_str(b, "Name", folder_name(folder));
}

static void
jfolder(
    struct json_build *b, const char *key, const char *folder, bool with_name)
{
	jfolder_begin(b, key, folder, with_name);
	jend(b);
}

/* item_id - stable store id of an item: "<folder>/<uid>", NULL if no uid. */
static const char *
item_id(struct json_build *b, const struct ma_item *item)
{
	const char *folder = b->rec->folder != NULL ? b->rec->folder : "";

	if (item->uid == 0)
		return NULL;
	ma_buf_reset(&b->path);
	MA_ASSERT(
	    ma_buf_printf(&b->path, "%s/%" PRIu32, folder, item->uid) == 0);
	return b->path.data;
}

/* item_fields - the Id, InternetMessageId, Subject and SizeInBytes known. */
static void
item_fields(struct json_build *b, const struct ma_item *item)
{
	jset_str(b, "Id", item_id(b, item));
	jset_str(b, "InternetMessageId", item->message_id);
	jset_str(b, "Subject", item->subject);
	if (item->size != 0)
		jset_u64(b, "SizeInBytes", item->size);
}

/* prop_value - what a property is now: its new value, else its old one. */
static const char *
prop_value(const struct ma_prop *p)
{
	return p->new_value != NULL ? p->new_value : p->old_value;
}

/*
 * op_props - OperationProperties members [{Name, Value}] (the new value,
 * else the old one) into the open array, leaving out the names in skip
 * (NULL-ended).
 */
static void
op_props(struct json_build *b, const char *const *skip)
{
	const struct ma_record *rec = b->rec;

	for (uint32_t i = 0; i < rec->prop_count; i++) {
		const struct ma_prop *p = &rec->props[i];
		bool skipped = false;

		for (size_t k = 0; skip != NULL && skip[k] != NULL; k++)
			skipped |=
			    p->name != NULL && strcmp(p->name, skip[k]) == 0;
		if (!skipped)
			jname_value(b, p->name, prop_value(p));
	}
}

/* jop_props - key: [op_props], left out if empty (lazy). */
static void
jop_props(struct json_build *b, const char *const *skip, bool lazy)
{
	jbegin(b, "OperationProperties", '[', lazy);
	op_props(b, skip);
	jend(b);
}

static const char *
domain_of(const char *addr)
{
	const char *at = addr != NULL ? strrchr(addr, '@') : NULL;

	return at != NULL && at[1] != '\0' ? at + 1 : NULL;
}

/* external_access - the actor's domain differs from the mailbox owner's. */
static bool
external_access(const struct ma_record *rec)
{
	const char *ud = domain_of(rec->user), *md = domain_of(rec->mailbox);

	return ud != NULL && md != NULL && strcasecmp(ud, md) != 0;
}

static int
user_type(enum ma_logon logon)
{
	switch (logon) {
	case MA_LOGON_ADMIN:
		return 2; /* Admin */
	case MA_LOGON_TRANSPORT:
	case MA_LOGON_SYSTEM:
		return 4; /* System */
	default:
		return 0; /* Regular */
	}
}

/* add_common - the AuditRecord fields every record starts with. */
static void
add_common(
    struct json_build *b, const struct ma_export_ctx *ctx, int record_type)
{
	const struct ma_record *rec = b->rec;
	char time[32], id[37];

	ma_fmt_time(rec->time_ms, false, time);
	ma_uuid_fmt(rec->id, id);
	jset_str(b, "CreationTime", time);
	jset_str(b, "Id", id);
	jset_str(b, "Operation", rec->operation);
	jset_str(b, "OrganizationId", ctx->organization_id);
	jset_int(b, "RecordType", record_type);
	if (record_type == 1) {
		/* Exchange admin records say whether the cmdlet succeeded. */
		jset_str(b, "ResultStatus",
		    rec->result == MA_RESULT_SUCCEEDED ? "True" : "False");
	} else {
		jset_str(b, "ResultStatus", ma_result_name(rec->result));
	}
	jset_str(b, "UserKey", rec->user);
	jset_int(b, "UserType", user_type(rec->logon_type));
	jset_int(b, "Version", 1);
	jset_str(b, "Workload", "Exchange");
	jset_str(b, "ClientIP", rec->client_ip);
}

/* add_server_session - OriginatingServer (with Exchange's CRLF), SessionId. */
static void
add_server_session(struct json_build *b)
{
	const struct ma_record *rec = b->rec;

	if (rec->server != NULL) {
		ma_buf_reset(&b->path);
		MA_ASSERT(ma_buf_puts(&b->path, rec->server) == 0);
		MA_ASSERT(ma_buf_puts(&b->path, "\r\n") == 0);
		jset_str(b, "OriginatingServer", b->path.data);
	}
	jset_str(b, "SessionId", rec->session);
}

/* add_mailbox_common - the Exchange mailbox schema fields (types 2/3/50). */
static void
add_mailbox_common(struct json_build *b, const struct ma_export_ctx *ctx)
{
	const struct ma_record *rec = b->rec;

	jset_str(b, "UserId", rec->user);
	jset_str(b, "ClientIPAddress", rec->client_ip);
	jset_str(b, "ClientInfoString", rec->client_info);
	jset_bool(b, "ExternalAccess", external_access(rec));
	jset_int(b, "InternalLogonType", rec->logon_type);
	jset_int(b, "LogonType", rec->logon_type);
	jset_str(b, "MailboxOwnerUPN", rec->mailbox);
	jset_str(b, "OrganizationName", ctx->organization_name);
	add_server_session(b);
}

/* The properties an Update changes; anything else (who impersonated whom,
   who ran doveadm) is context and goes to OperationProperties. */
static const char *const update_props[] = {"Flags", "Keywords", NULL};

static bool
is_update_prop(const char *name)
{
	for (size_t k = 0; name != NULL && update_props[k] != NULL; k++) {
		if (strcmp(name, update_props[k]) == 0)
			return true;
	}
	return false;
}

/* add_update_props - Update: ModifiedProperties names, values as extension. */
static void
add_update_props(struct json_build *b)
{
	const struct ma_record *rec = b->rec;

	jbegin(b, "ModifiedProperties", '[', true);
	for (uint32_t i = 0; i < rec->prop_count; i++) {
		if (is_update_prop(rec->props[i].name))
			jset_str(b, NULL, rec->props[i].name);
	}
	jend(b);
	/* Exchange lists only names; keep what the flags were. */
	jbegin(b, "MailAuditModifiedValues", '[', true);
	for (uint32_t i = 0; i < rec->prop_count; i++) {
		const struct ma_prop *p = &rec->props[i];

		if (is_update_prop(p->name) &&
		    (p->old_value != NULL || p->new_value != NULL))
			jmodified(b, p);
	}
	jend(b);
	jop_props(b, update_props, true);
}

/* jitems - every item of the record, as AffectedItems entries */
static void
jitems(struct json_build *b)
{
	const struct ma_record *rec = b->rec;

	jbegin(b, "AffectedItems", '[', false);
	for (uint32_t i = 0; i < rec->item_count; i++) {
		jbegin(b, NULL, '{', false);
		item_fields(b, &rec->items[i]);
		if (rec->folder != NULL)
			jfolder(b, "ParentFolder", rec->folder, false);
		jend(b);
	}
	jend(b);
}

static bool
is_send_action(enum ma_action action)
{
	return action == MA_ACTION_SEND || action == MA_ACTION_SEND_AS ||
	       action == MA_ACTION_SEND_ON_BEHALF;
}

/*
 * add_send_fields - the send properties the milter records, under the
 * schema's names: SendAsUserSmtp, SendOnBehalfOfUserSmtp, recipientCount,
 * recipientList [{Address}] (Item.Attachments is written with the Item);
 * the rest (EnvelopeSender, HasAttachments, Permitted, FailureReason) as
 * OperationProperties.
 */
static void
add_send_fields(struct json_build *b)
{
	static const char *const mapped[] = {"SendAsUserSmtp",
	    "SendOnBehalfOfUserSmtp", "RecipientCount", "Recipients",
	    "Attachments", NULL};
	const struct ma_record *rec = b->rec;
	const struct ma_prop *p;
	uint64_t count;

	if ((p = ma_record_get_prop(rec, "SendAsUserSmtp")) != NULL)
		jset_str(b, "SendAsUserSmtp", prop_value(p));
	if ((p = ma_record_get_prop(rec, "SendOnBehalfOfUserSmtp")) != NULL)
		jset_str(b, "SendOnBehalfOfUserSmtp", prop_value(p));
	if ((p = ma_record_get_prop(rec, "RecipientCount")) != NULL &&
	    ma_parse_u64(prop_value(p), INT64_MAX, &count) == 0)
		jset_int(b, "recipientCount", (int64_t)count);
	if ((p = ma_record_get_prop(rec, "Recipients")) != NULL) {
		const char *s = prop_value(p);

		jbegin(b, "recipientList", '[', false);
		while (s != NULL && *s != '\0') {
			const char *end = strstr(s, ", ");
			size_t len =
			    end != NULL ? (size_t)(end - s) : strlen(s);
			char *addr = ma_xstrndup(s, len);

			jbegin(b, NULL, '{', false);
			jset_str(b, "Address", addr);
			jend(b);
			free(addr);
			s = end != NULL ? end + 2 : NULL;
		}
		jend(b);
	}
	jop_props(b, mapped, true);
}

/* add_item_record - ExchangeMailboxAuditRecord (RecordType 2). */
static void
add_item_record(struct json_build *b, enum ma_action action)
{
	const struct ma_record *rec = b->rec;
	bool send = rec->prop_count > 0 && is_send_action(action);

	if (rec->folder != NULL) {
		jfolder_begin(b, "Folder", rec->folder, true);
		if (action == MA_ACTION_UPDATE_FOLDER_PERMISSIONS) {
			const struct ma_prop *m, *r;

			m = ma_record_get_prop(rec, "Member");
			r = ma_record_get_prop(rec, "Rights");
			if (m != NULL)
				jset_str(b, "MemberUpn", prop_value(m));
			if (r != NULL)
				jset_str(b, "MemberRights", prop_value(r));
		}
		jend(b);
	}
	if (rec->dest_folder != NULL)
		jfolder(b, "DestFolder", rec->dest_folder, true);
	if (rec->item_count > 0) {
		const struct ma_prop *att;

		jbegin(b, "Item", '{', false);
		item_fields(b, &rec->items[0]);
		if (rec->folder != NULL)
			jfolder(b, "ParentFolder", rec->folder, true);
		if (send &&
		    (att = ma_record_get_prop(rec, "Attachments")) != NULL)
			jset_str(b, "Attachments", prop_value(att));
		jend(b);
	}
	/* Exchange's single-item record has room for one Item; one of ours
	   may cover many messages (STORE 1:100): keep them all. */
	if (rec->item_count > 1)
		jitems(b);
	if (rec->prop_count == 0)
		return;
	if (action == MA_ACTION_UPDATE)
		add_update_props(b);
	else if (send)
		add_send_fields(b);
	else
		jop_props(b, NULL, false);
}

/* add_group_record - ExchangeMailboxAuditGroupRecord (RecordType 3). */
static void
add_group_record(struct json_build *b)
{
	const struct ma_record *rec = b->rec;
	bool cross = rec->dest_mailbox != NULL &&
		     (rec->mailbox == NULL ||
			 strcmp(rec->dest_mailbox, rec->mailbox) != 0);

	jset_bool(b, "CrossMailboxOperation", cross);
	if (rec->folder != NULL)
		jfolder(b, "Folder", rec->folder, true);
	if (rec->dest_folder != NULL)
		jfolder(b, "DestFolder", rec->dest_folder, true);
	if (cross)
		jset_str(b, "DestMailboxOwnerUPN", rec->dest_mailbox);
	if (rec->prop_count > 0)
		jop_props(b, NULL, false);
	if (rec->item_count > 0)
		jitems(b);
}

/* add_aggregated_record - MailItemsAccessed (RecordType 50). */
static void
add_aggregated_record(struct json_build *b)
{
	const struct ma_record *rec = b->rec;
	static const char *const fixed[][2] = {
	    {"MailAccessType", "Bind"}, /* all a sensor can see */
	    {"IsThrottled", "False"},   /* we never throttle */
	};
	static const char *const fixed_names[] = {
	    "MailAccessType", "IsThrottled", NULL};

	jset_int(b, "OperationCount",
	    rec->count != 0 ? rec->count : rec->item_count);
	/* Exchange's two properties first, whether the sensor set them or not.
	 */
	jbegin(b, "OperationProperties", '[', false);
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		const struct ma_prop *p = ma_record_get_prop(rec, fixed[i][0]);

		jname_value(b, fixed[i][0],
		    p != NULL && prop_value(p) != NULL ? prop_value(p)
						       : fixed[i][1]);
	}
	op_props(b, fixed_names);
	jend(b);

	if (rec->folder != NULL || rec->item_count > 0) {
		jbegin(b, "Folders", '[', false);
		jbegin(b, NULL, '{', false);
		if (rec->folder != NULL)
			jset_str(b, "Path", folder_path(b, rec->folder));
		jbegin(b, "FolderItems", '[', false);
		for (uint32_t i = 0; i < rec->item_count; i++) {
			jbegin(b, NULL, '{', false);
			item_fields(b, &rec->items[i]);
			jend(b);
		}
		jend(b);
		jend(b);
		jend(b);
	}
}

/* add_admin_record - ExchangeAdmin (RecordType 1): a configuration change. */
static void
add_admin_record(struct json_build *b, const struct ma_export_ctx *ctx)
{
	const struct ma_record *rec = b->rec;
	const struct ma_prop *identity = ma_record_get_prop(rec, "Identity");

	jset_str(b, "ObjectId",
	    identity != NULL && prop_value(identity) != NULL
		? prop_value(identity)
		: rec->mailbox);
	jset_str(b, "UserId", rec->user);
	jset_str(b, "ClientInfoString", rec->client_info);
	/* For admin records this means Microsoft staff; never the case here. */
	jset_bool(b, "ExternalAccess", false);
	jset_int(b, "InternalLogonType", rec->logon_type);
	jset_int(b, "LogonType", rec->logon_type);
	jset_str(b, "OrganizationName", ctx->organization_name);
	add_server_session(b);

	jbegin(b, "Parameters", '[', false);
	for (uint32_t i = 0; i < rec->prop_count; i++) {
		const struct ma_prop *p = &rec->props[i];

		if (p->new_value != NULL)
			jname_value(b, p->name, p->new_value);
	}
	jend(b);
	jbegin(b, "ModifiedProperties", '[', true);
	for (uint32_t i = 0; i < rec->prop_count; i++) {
		const struct ma_prop *p = &rec->props[i];

		/* The target of the cmdlet is not one of its changes. */
		if ((p->old_value != NULL || p->new_value != NULL) &&
		    p != identity)
			jmodified(b, p);
	}
	jend(b);
}

/* add_extensions - our own fields, outside Microsoft's schema. */
static void
add_extensions(struct json_build *b)
{
	const struct ma_record *rec = b->rec;
	char time[32];

	if (rec->seq > 0)
		jset_int(b, "MailAuditSequence", rec->seq);
	ma_fmt_time(rec->time_ms, true, time);
	ma_buf_reset(&b->path);
	MA_ASSERT(ma_buf_puts(&b->path, time) == 0);
	MA_ASSERT(ma_buf_putc(&b->path, 'Z') == 0);
	jset_str(b, "MailAuditTime", b->path.data);
	jset_str(b, "MailAuditProtocol", rec->protocol);
}

/* build_json - the whole Management Activity object for b->rec. */
static void
build_json(struct json_build *b, const struct ma_export_ctx *ctx)
{
	const struct ma_record *rec = b->rec;
	enum ma_action action = MA_ACTION_COUNT;
	int record_type = 1;

	if (rec->operation != NULL &&
	    ma_action_lookup(rec->operation, &action) == 1)
		record_type = ma_action_record_type(action);

	b->lv[0].open = '{';
	b->lv[0].close = '}';
	jemit(b, 0);
	add_common(b, ctx, record_type);
	switch (record_type) {
	case 1:
		add_admin_record(b, ctx);
		break;
	case 3:
		add_mailbox_common(b, ctx);
		add_group_record(b);
		break;
	case 50:
		add_mailbox_common(b, ctx);
		add_aggregated_record(b);
		break;
	default:
		add_mailbox_common(b, ctx);
		add_item_record(b, action);
		break;
	}
	add_extensions(b);
	jend(b);
	MA_ASSERT(b->depth == -1);
}

int
ma_export_json(const struct ma_export_ctx *ctx, const struct ma_record *rec,
    struct ma_buf *out)
{
	struct json_build b = {.rec = rec, .out = out};
	size_t start = out->len;

	ma_buf_init(&b.str, MA_EXPORT_BUF_MAX);
	ma_buf_init(&b.path, MA_EXPORT_BUF_MAX);
	build_json(&b, ctx);
	ma_buf_deinit(&b.str);
	ma_buf_deinit(&b.path);
	if (b.failed) {
		buf_truncate(out, start);
		return -1;
	}
	return 0;
}

/*-------------------------------------------------------------------------
 * CSV
 */

/*
 * csv_cell - append s (NULL: empty) as one RFC 4180 cell.  Control bytes
 * become '?' so that a record is always one physical line; a leading
 * = + - @ TAB or CR gets an apostrophe so a spreadsheet shows the value
 * instead of evaluating it; a cell holding , " CR or LF is quoted.
 */
static int
csv_cell(struct ma_buf *out, struct ma_buf *tmp, const char *s)
{
	const char *text;
	size_t len;
	bool quote = false;

	if (s == NULL || s[0] == '\0')
		return 0;
	len = strlen(s);
	ma_buf_reset(tmp);
	if (s[0] != '\0' && strchr("=+-@\t\r", s[0]) != NULL &&
	    ma_buf_putc(tmp, '\'') < 0)
		return -1;
	if (ma_utf8_valid(s, len)) {
		if (ma_buf_append(tmp, s, len) < 0)
			return -1;
	} else if (ma_utf8_repair(s, len, tmp) < 0) {
		return -1;
	}
	text = tmp->data;
	for (size_t i = 0; i < tmp->len; i++) {
		unsigned char c = (unsigned char)tmp->data[i];

		if (c < 0x20 || c == 0x7f)
			tmp->data[i] = '?';
		if (strchr(",\"\r\n", tmp->data[i]) != NULL)
			quote = true;
	}
	if (!quote)
		return ma_buf_append(out, text, tmp->len);
	if (ma_buf_putc(out, '"') < 0)
		return -1;
	for (size_t i = 0; i < tmp->len; i++) {
		if (text[i] == '"' && ma_buf_putc(out, '"') < 0)
			return -1;
		if (ma_buf_putc(out, text[i]) < 0)
			return -1;
	}
	return ma_buf_putc(out, '"');
}

/* csv_row - CreationDate,UserIds,Operations,AuditData and CRLF. */
static int
csv_row(const struct ma_export_ctx *ctx, const struct ma_record *rec,
    struct ma_buf *out)
{
	struct ma_buf json, tmp;
	char time[32];
	int ret = -1;

	ma_buf_init(&json, MA_EXPORT_BUF_MAX);
	ma_buf_init(&tmp, MA_EXPORT_BUF_MAX);
	ma_fmt_time(rec->time_ms, true, time);
	if (ma_export_json(ctx, rec, &json) == 0 &&
	    ma_buf_puts(out, time) == 0 && ma_buf_puts(out, "Z,") == 0 &&
	    csv_cell(out, &tmp, rec->user) == 0 && ma_buf_putc(out, ',') == 0 &&
	    csv_cell(out, &tmp, rec->operation) == 0 &&
	    ma_buf_putc(out, ',') == 0 && csv_cell(out, &tmp, json.data) == 0 &&
	    ma_buf_puts(out, "\r\n") == 0)
		ret = 0;
	ma_buf_deinit(&json);
	ma_buf_deinit(&tmp);
	return ret;
}

/*-------------------------------------------------------------------------
 * Table
 */

struct table_col {
	const char *title;
	unsigned int width; /* code points; 0: last column, not padded */
};

enum {
	COL_TIME,
	COL_OPERATION,
	COL_RESULT,
	COL_LOGON,
	COL_USER,
	COL_MAILBOX,
	COL_FOLDER,
	COL_ITEMS,
	COL_CLIENT_IP,
	COL_COUNT
};

static const struct table_col table_cols[COL_COUNT] = {
    [COL_TIME] = {"Time", 19},
    [COL_OPERATION] = {"Operation", 23}, /* UpdateFolderPermissions */
    [COL_RESULT] = {"Result", 9},
    [COL_LOGON] = {"LogonType", 13}, /* SystemService */
    [COL_USER] = {"User", 22},
    [COL_MAILBOX] = {"Mailbox", 22},
    [COL_FOLDER] = {"Folder", 30},
    [COL_ITEMS] = {"Items", 28},
    [COL_CLIENT_IP] = {"ClientIP", 0},
};

/* The last column is cut here: a bracketed IPv6 address with a port. */
#define TABLE_LAST_MAX 47

/*
 * unsafe_for_terminal - C0, DEL and C1 controls drive terminals; line and
 * paragraph separators and bidi embeddings/overrides/isolates can make a
 * displayed line say something other than its bytes.
 */
static bool
unsafe_for_terminal(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp < 0xa0) ||
	       (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* table_cell - s sanitised, cut to width with "…", padded unless last. */
static int
table_cell(
    struct ma_buf *out, struct ma_buf *tmp, const char *s, unsigned int width)
{
	const unsigned char *p;
	size_t len, count = 0, limit, shown = 0;
	bool last = width == 0;

	if (s == NULL || s[0] == '\0')
		s = "-";
	len = strlen(s);
	ma_buf_reset(tmp);
	if (!ma_utf8_valid(s, len)) {
		if (ma_utf8_repair(s, len, tmp) < 0)
			return -1;
		s = tmp->data;
		len = tmp->len;
	}
	if (last)
		width = TABLE_LAST_MAX;
	for (size_t i = 0; i < len; i++)
		count += ((unsigned char)s[i] & 0xc0) != 0x80;
	limit = count > width ? width - 1 : count;

	p = (const unsigned char *)s;
	for (; shown < limit; shown++) {
		uint32_t cp;
		size_t n = ma_utf8_decode(p, &cp);

		if (unsafe_for_terminal(cp)) {
			if (ma_buf_putc(out, '?') < 0)
				return -1;
		} else if (ma_buf_append(out, p, n) < 0) {
			return -1;
		}
		p += n;
	}
	if (count > width) {
		if (ma_buf_puts(out, "\xe2\x80\xa6") /* U+2026 … */ < 0)
			return -1;
		shown++;
	}
	for (; !last && shown < width; shown++) {
		if (ma_buf_putc(out, ' ') < 0)
			return -1;
	}
	return 0;
}

/* table_line - one line of COL_COUNT cells, separated by a space. */
static int
table_line(struct ma_buf *out, const char *const cells[COL_COUNT])
{
	struct ma_buf tmp;
	int ret = 0;

	ma_buf_init(&tmp, MA_EXPORT_BUF_MAX);
	for (unsigned int i = 0; i < COL_COUNT && ret == 0; i++) {
		if (i > 0)
			ret = ma_buf_putc(out, ' ');
		if (ret == 0)
			ret = table_cell(
			    out, &tmp, cells[i], table_cols[i].width);
	}
	if (ret == 0)
		ret = ma_buf_putc(out, '\n');
	ma_buf_deinit(&tmp);
	return ret;
}

static int
table_header(struct ma_buf *out)
{
	const char *cells[COL_COUNT];

	for (unsigned int i = 0; i < COL_COUNT; i++)
		cells[i] = table_cols[i].title;
	return table_line(out, cells);
}

/* table_result - ma_result_name, short enough for the Result column. */
static const char *
table_result(enum ma_result result)
{
	return result == MA_RESULT_PARTIAL ? "Partial" : ma_result_name(result);
}

static int
table_row(const struct ma_record *rec, struct ma_buf *out)
{
	const char *cells[COL_COUNT];
	struct ma_buf folder, items;
	uint32_t n = rec->count != 0 ? rec->count : rec->item_count;
	char time[32];
	int ret = 0;

	ma_buf_init(&folder, MA_EXPORT_BUF_MAX);
	ma_buf_init(&items, MA_EXPORT_BUF_MAX);
	ma_fmt_time(rec->time_ms, false, time);
	if (time[10] == 'T')
		time[10] = ' ';

	cells[COL_FOLDER] = rec->folder;
	if (rec->dest_folder != NULL) {
		ret = ma_buf_printf(&folder, "%s -> %s",
		    rec->folder != NULL ? rec->folder : "-", rec->dest_folder);
		cells[COL_FOLDER] = folder.data;
	}
	cells[COL_ITEMS] = NULL;
	if (n > 0 && ret == 0) {
		const struct ma_item *first =
		    rec->item_count > 0 ? &rec->items[0] : NULL;
		const char *what = NULL;

		if (first != NULL)
			what = first->subject != NULL ? first->subject
						      : first->message_id;
		ret = ma_buf_printf(&items, "%" PRIu32 "%s%s", n,
		    what != NULL ? " " : "", what != NULL ? what : "");
		cells[COL_ITEMS] = items.data;
	}
	cells[COL_TIME] = time;
	cells[COL_OPERATION] = rec->operation;
	cells[COL_RESULT] = table_result(rec->result);
	cells[COL_LOGON] = ma_logon_name(rec->logon_type);
	cells[COL_USER] = rec->user;
	cells[COL_MAILBOX] = rec->mailbox;
	cells[COL_CLIENT_IP] = rec->client_ip;
	if (ret == 0)
		ret = table_line(out, cells);
	ma_buf_deinit(&folder);
	ma_buf_deinit(&items);
	return ret;
}

/*-------------------------------------------------------------------------
 * Records to a stream
 */

/* render - rec in ctx->format into out, the header first if still due. */
static int
render(const struct ma_export_ctx *ctx, const struct ma_record *rec,
    struct ma_buf *out)
{
	switch (ctx->format) {
	case MA_EXPORT_JSON:
		if (ma_export_json(ctx, rec, out) < 0)
			return -1;
		return ma_buf_putc(out, '\n');
	case MA_EXPORT_CSV:
		if (!ctx->header_done && ma_buf_puts(out, CSV_HEADER) < 0)
			return -1;
		return csv_row(ctx, rec, out);
	case MA_EXPORT_TABLE:
		if (!ctx->header_done && table_header(out) < 0)
			return -1;
		return table_row(rec, out);
	}
	MA_ASSERT(!"unknown export format");
	return -1;
}

int
ma_export_record(
    struct ma_export_ctx *ctx, const struct ma_record *rec, FILE *fp)
{
	struct ma_buf out;
	int ret;

	ma_buf_init(&out, MA_EXPORT_BUF_MAX);
	ret = render(ctx, rec, &out);
	if (ret < 0) {
		/* Cannot happen for a validated record; see MA_EXPORT_BUF_MAX.
		 */
		errno = EMSGSIZE;
	} else if (fwrite(out.data, 1, out.len, fp) != out.len) {
		ret = -1;
	} else {
		ctx->header_done = true;
	}
	ma_buf_deinit(&out);
	return ret;
}
