/* SPDX-License-Identifier: MIT */
/*
 * ma-export.c - render audit records as Management Activity JSON, as a
 * Purview-style CSV and as a fixed-width terminal table.
 *
 * Model: one record in, one self-contained chunk of text out.  The JSON
 * object is built as a jansson tree in the order of the field tables in
 * docs/SCHEMA.md ("Export formats") and dumped compact, 7-bit clean
 * (JSON_ENSURE_ASCII), with DEL escaped too, so a JSON line holds no
 * control byte, no C1 control and no bidirectional override a pager could
 * act on.  The CSV row wraps that JSON as its AuditData cell; the table
 * row squeezes a summary of the record into fixed columns.
 *
 * Everything in a record may be hostile: subjects, folder names, Message-
 * IDs and client strings are chosen by whoever sends or stores the mail.
 * Invalid UTF-8 is repaired (U+FFFD) before jansson sees it; CSV cells are
 * quoted per RFC 4180, flattened to one physical line and defended
 * against spreadsheet formula injection; table cells show every control
 * character as '?'.  The exact value always survives in the JSON.
 *
 * Workload: the CLI exporting search results and the daemon forwarding
 * records, a few thousand records a second at most, so each call builds
 * and frees its own small tree and buffers rather than caching anything;
 * the functions are therefore thread-safe.  Left out on purpose: pretty-
 * printed JSON, JSON arrays (one object per line is what SIEM collectors
 * take), terminal width detection and East Asian wide characters (table
 * widths count code points).
 */

#include "ma-export.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

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

/* utf8_next - length and code point of the valid UTF-8 sequence at s. */
static size_t
utf8_next(const unsigned char *s, uint32_t *cp_r)
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

/*-------------------------------------------------------------------------
 * JSON
 */

/* Scratch space shared by the helpers while one record is built. */
struct json_build {
	const struct ma_record *rec;
	struct ma_buf str;  /* UTF-8 repair */
	struct ma_buf path; /* folder paths and item ids */
};

/*
 * jcheck - jansson returns NULL only when malloc fails (every string we
 * hand it is valid UTF-8, every key non-NULL), and running out of memory
 * is fatal throughout mailaudit.
 */
static json_t *
jcheck(json_t *j)
{
	MA_ASSERT(j != NULL);
	return j;
}

static void
jset(json_t *obj, const char *key, json_t *val)
{
	MA_ASSERT(json_object_set_new_nocheck(obj, key, jcheck(val)) == 0);
}

static void
jappend(json_t *arr, json_t *val)
{
	MA_ASSERT(json_array_append_new(arr, jcheck(val)) == 0);
}

/* jstr - a JSON string of s, invalid UTF-8 replaced by U+FFFD. */
static json_t *
jstr(struct json_build *b, const char *s)
{
	size_t len = strlen(s);

	if (ma_utf8_valid(s, len))
		return jcheck(json_stringn_nocheck(s, len));
	ma_buf_reset(&b->str);
	MA_ASSERT(ma_utf8_repair(s, len, &b->str) >= 0);
	return jcheck(json_stringn_nocheck(b->str.data, b->str.len));
}

/* jset_str - set key to s; an absent (NULL) s leaves the key out. */
static void
jset_str(struct json_build *b, json_t *obj, const char *key, const char *s)
{
	if (s != NULL)
		jset(obj, key, jstr(b, s));
}

static void
jset_int(json_t *obj, const char *key, int64_t val)
{
	jset(obj, key, json_integer((json_int_t)val));
}

static void
jset_u64(json_t *obj, const char *key, uint64_t val)
{
	/* JSON readers stop at int64 (most at 2^53); clamp, never wrap. */
	jset_int(obj, key, val > INT64_MAX ? INT64_MAX : (int64_t)val);
}

/* jname_value - {"Name": name, "Value": value}. */
static json_t *
jname_value(struct json_build *b, const char *name, const char *value)
{
	json_t *nv = jcheck(json_object());

	jset_str(b, nv, "Name", name != NULL ? name : "");
	jset_str(b, nv, "Value", value != NULL ? value : "");
	return nv;
}

/* jmodified - {Name, NewValue, OldValue}; an absent value is "". */
static json_t *
jmodified(struct json_build *b, const struct ma_prop *p)
{
	json_t *m = jcheck(json_object());

	jset_str(b, m, "Name", p->name != NULL ? p->name : "");
	jset_str(b, m, "NewValue", p->new_value != NULL ? p->new_value : "");
	jset_str(b, m, "OldValue", p->old_value != NULL ? p->old_value : "");
	return m;
}

/* jset_nonempty - set key to the array arr, or drop arr if it is empty. */
static void
jset_nonempty(json_t *obj, const char *key, json_t *arr)
{
	if (json_array_size(arr) > 0)
		jset(obj, key, arr);
	else
		json_decref(arr);
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

/* jfolder - ExchangeFolder {Path, Name}; with_name false gives {Path}. */
static json_t *
jfolder(struct json_build *b, const char *folder, bool with_name)
{
	json_t *f = jcheck(json_object());

	jset_str(b, f, "Path", folder_path(b, folder));
	if (with_name)
		jset_str(b, f, "Name", folder_name(folder));
	return f;
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
item_fields(struct json_build *b, json_t *obj, const struct ma_item *item)
{
	jset_str(b, obj, "Id", item_id(b, item));
	jset_str(b, obj, "InternetMessageId", item->message_id);
	jset_str(b, obj, "Subject", item->subject);
	if (item->size != 0)
		jset_u64(obj, "SizeInBytes", item->size);
}

/*
 * op_props - append OperationProperties [{Name, Value}] (the new value,
 * else the old one) to arr, leaving out the names in skip (NULL-ended).
 */
static json_t *
op_props(struct json_build *b, json_t *arr, const char *const *skip)
{
	const struct ma_record *rec = b->rec;

	for (uint32_t i = 0; i < rec->prop_count; i++) {
		const struct ma_prop *p = &rec->props[i];
		bool skipped = false;

		for (size_t k = 0; skip != NULL && skip[k] != NULL; k++)
			skipped |=
			    p->name != NULL && strcmp(p->name, skip[k]) == 0;
		if (!skipped)
			jappend(arr, jname_value(b, p->name,
					 p->new_value != NULL ? p->new_value
							      : p->old_value));
	}
	return arr;
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

/* prop_value - what a property is now: its new value, else its old one. */
static const char *
prop_value(const struct ma_prop *p)
{
	return p->new_value != NULL ? p->new_value : p->old_value;
}

/* add_common - the AuditRecord fields every record starts with. */
static void
add_common(struct json_build *b, const struct ma_export_ctx *ctx, json_t *obj,
    int record_type)
{
	const struct ma_record *rec = b->rec;
	char time[32], id[37];

	ma_fmt_time(rec->time_ms, false, time);
	ma_uuid_fmt(rec->id, id);
	jset_str(b, obj, "CreationTime", time);
	jset_str(b, obj, "Id", id);
	jset_str(b, obj, "Operation", rec->operation);
	jset_str(b, obj, "OrganizationId", ctx->organization_id);
	jset_int(obj, "RecordType", record_type);
	if (record_type == 1) {
		/* Exchange admin records say whether the cmdlet succeeded. */
		jset_str(b, obj, "ResultStatus",
		    rec->result == MA_RESULT_SUCCEEDED ? "True" : "False");
	} else {
		jset_str(b, obj, "ResultStatus", ma_result_name(rec->result));
	}
	jset_str(b, obj, "UserKey", rec->user);
	jset_int(obj, "UserType", user_type(rec->logon_type));
	jset_int(obj, "Version", 1);
	jset_str(b, obj, "Workload", "Exchange");
	jset_str(b, obj, "ClientIP", rec->client_ip);
}

/* add_server_session - OriginatingServer (with Exchange's CRLF), SessionId. */
static void
add_server_session(struct json_build *b, json_t *obj)
{
	const struct ma_record *rec = b->rec;

	if (rec->server != NULL) {
		ma_buf_reset(&b->path);
		MA_ASSERT(ma_buf_puts(&b->path, rec->server) == 0);
		MA_ASSERT(ma_buf_puts(&b->path, "\r\n") == 0);
		jset_str(b, obj, "OriginatingServer", b->path.data);
	}
	jset_str(b, obj, "SessionId", rec->session);
}

/* add_mailbox_common - the Exchange mailbox schema fields (types 2/3/50). */
static void
add_mailbox_common(
    struct json_build *b, const struct ma_export_ctx *ctx, json_t *obj)
{
	const struct ma_record *rec = b->rec;

	jset_str(b, obj, "UserId", rec->user);
	jset_str(b, obj, "ClientIPAddress", rec->client_ip);
	jset_str(b, obj, "ClientInfoString", rec->client_info);
	jset(obj, "ExternalAccess", json_boolean(external_access(rec)));
	jset_int(obj, "InternalLogonType", rec->logon_type);
	jset_int(obj, "LogonType", rec->logon_type);
	jset_str(b, obj, "MailboxOwnerUPN", rec->mailbox);
	jset_str(b, obj, "OrganizationName", ctx->organization_name);
	add_server_session(b, obj);
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
add_update_props(struct json_build *b, json_t *obj)
{
	const struct ma_record *rec = b->rec;
	json_t *names = jcheck(json_array());
	json_t *values = jcheck(json_array());
	json_t *context;

	for (uint32_t i = 0; i < rec->prop_count; i++) {
		const struct ma_prop *p = &rec->props[i];

		if (!is_update_prop(p->name))
			continue;
		jappend(names, jstr(b, p->name));
		/* Exchange lists only names; keep what the flags were. */
		if (p->old_value != NULL || p->new_value != NULL)
			jappend(values, jmodified(b, p));
	}
	jset_nonempty(obj, "ModifiedProperties", names);
	jset_nonempty(obj, "MailAuditModifiedValues", values);
	context = op_props(b, jcheck(json_array()), update_props);
	jset_nonempty(obj, "OperationProperties", context);
}

/* jitems - every item of the record, as AffectedItems entries */
static json_t *
jitems(struct json_build *b)
{
	const struct ma_record *rec = b->rec;
	json_t *items = jcheck(json_array());

	for (uint32_t i = 0; i < rec->item_count; i++) {
		json_t *item = jcheck(json_object());

		item_fields(b, item, &rec->items[i]);
		if (rec->folder != NULL)
			jset(item, "ParentFolder",
			    jfolder(b, rec->folder, false));
		jappend(items, item);
	}
	return items;
}

/*
 * add_send_fields - the send properties the milter records, under the
 * schema's names: SendAsUserSmtp, SendOnBehalfOfUserSmtp, recipientCount,
 * recipientList [{Address}], Item.Attachments; the rest (EnvelopeSender,
 * HasAttachments, Permitted, FailureReason) as OperationProperties.
 */
static void
add_send_fields(struct json_build *b, json_t *obj)
{
	static const char *const mapped[] = {"SendAsUserSmtp",
	    "SendOnBehalfOfUserSmtp", "RecipientCount", "Recipients",
	    "Attachments", NULL};
	const struct ma_record *rec = b->rec;
	const struct ma_prop *p;
	json_t *rest;
	uint64_t count;

	if ((p = ma_record_get_prop(rec, "SendAsUserSmtp")) != NULL)
		jset_str(b, obj, "SendAsUserSmtp", prop_value(p));
	if ((p = ma_record_get_prop(rec, "SendOnBehalfOfUserSmtp")) != NULL)
		jset_str(b, obj, "SendOnBehalfOfUserSmtp", prop_value(p));
	if ((p = ma_record_get_prop(rec, "RecipientCount")) != NULL &&
	    ma_parse_u64(prop_value(p), INT64_MAX, &count) == 0)
		jset_int(obj, "recipientCount", (int64_t)count);
	if ((p = ma_record_get_prop(rec, "Recipients")) != NULL) {
		json_t *list = jcheck(json_array());
		const char *s = prop_value(p);

		while (s != NULL && *s != '\0') {
			const char *end = strstr(s, ", ");
			size_t len =
			    end != NULL ? (size_t)(end - s) : strlen(s);
			char *addr = ma_xstrndup(s, len);
			json_t *e = jcheck(json_object());

			jset_str(b, e, "Address", addr);
			jappend(list, e);
			free(addr);
			s = end != NULL ? end + 2 : NULL;
		}
		jset(obj, "recipientList", list);
	}
	if ((p = ma_record_get_prop(rec, "Attachments")) != NULL) {
		json_t *item = json_object_get(obj, "Item");

		if (item != NULL)
			jset_str(b, item, "Attachments", prop_value(p));
	}
	rest = op_props(b, jcheck(json_array()), mapped);
	jset_nonempty(obj, "OperationProperties", rest);
}

/* add_item_record - ExchangeMailboxAuditRecord (RecordType 2). */
static void
add_item_record(struct json_build *b, json_t *obj, enum ma_action action)
{
	const struct ma_record *rec = b->rec;

	if (rec->folder != NULL) {
		json_t *f = jfolder(b, rec->folder, true);

		if (action == MA_ACTION_UPDATE_FOLDER_PERMISSIONS) {
			const struct ma_prop *m, *r;

			m = ma_record_get_prop(rec, "Member");
			r = ma_record_get_prop(rec, "Rights");
			if (m != NULL)
				jset_str(b, f, "MemberUpn", prop_value(m));
			if (r != NULL)
				jset_str(b, f, "MemberRights", prop_value(r));
		}
		jset(obj, "Folder", f);
	}
	if (rec->dest_folder != NULL)
		jset(obj, "DestFolder", jfolder(b, rec->dest_folder, true));
	if (rec->item_count > 0) {
		json_t *item = jcheck(json_object());

		item_fields(b, item, &rec->items[0]);
		if (rec->folder != NULL)
			jset(item, "ParentFolder",
			    jfolder(b, rec->folder, true));
		jset(obj, "Item", item);
	}
	/* Exchange's single-item record has room for one Item; one of ours
	   may cover many messages (STORE 1:100): keep them all. */
	if (rec->item_count > 1)
		jset(obj, "AffectedItems", jitems(b));
	if (rec->prop_count == 0)
		return;
	if (action == MA_ACTION_UPDATE)
		add_update_props(b, obj);
	else if (action == MA_ACTION_SEND || action == MA_ACTION_SEND_AS ||
		 action == MA_ACTION_SEND_ON_BEHALF)
		add_send_fields(b, obj);
	else
		jset(obj, "OperationProperties",
		    op_props(b, jcheck(json_array()), NULL));
}

/* add_group_record - ExchangeMailboxAuditGroupRecord (RecordType 3). */
static void
add_group_record(struct json_build *b, json_t *obj)
{
	const struct ma_record *rec = b->rec;
	bool cross = rec->dest_mailbox != NULL &&
		     (rec->mailbox == NULL ||
			 strcmp(rec->dest_mailbox, rec->mailbox) != 0);

	jset(obj, "CrossMailboxOperation", json_boolean(cross));
	if (rec->folder != NULL)
		jset(obj, "Folder", jfolder(b, rec->folder, true));
	if (rec->dest_folder != NULL)
		jset(obj, "DestFolder", jfolder(b, rec->dest_folder, true));
	if (cross)
		jset_str(b, obj, "DestMailboxOwnerUPN", rec->dest_mailbox);
	if (rec->prop_count > 0)
		jset(obj, "OperationProperties",
		    op_props(b, jcheck(json_array()), NULL));
	if (rec->item_count > 0)
		jset(obj, "AffectedItems", jitems(b));
}

/* add_aggregated_record - MailItemsAccessed (RecordType 50). */
static void
add_aggregated_record(struct json_build *b, json_t *obj)
{
	const struct ma_record *rec = b->rec;
	static const char *const fixed[][2] = {
	    {"MailAccessType", "Bind"}, /* all a sensor can see */
	    {"IsThrottled", "False"},   /* we never throttle */
	};
	static const char *const fixed_names[] = {
	    "MailAccessType", "IsThrottled", NULL};
	json_t *props = jcheck(json_array());

	jset_int(obj, "OperationCount",
	    rec->count != 0 ? rec->count : rec->item_count);
	/* Exchange's two properties first, whether the sensor set them or not.
	 */
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		const struct ma_prop *p = ma_record_get_prop(rec, fixed[i][0]);

		jappend(props,
		    jname_value(b, fixed[i][0],
			p != NULL && prop_value(p) != NULL ? prop_value(p)
							   : fixed[i][1]));
	}
	jset(obj, "OperationProperties", op_props(b, props, fixed_names));

	if (rec->folder != NULL || rec->item_count > 0) {
		json_t *folders = jcheck(json_array());
		json_t *folder = jcheck(json_object());
		json_t *items = jcheck(json_array());

		if (rec->folder != NULL)
			jset_str(
			    b, folder, "Path", folder_path(b, rec->folder));
		for (uint32_t i = 0; i < rec->item_count; i++) {
			json_t *item = jcheck(json_object());

			item_fields(b, item, &rec->items[i]);
			jappend(items, item);
		}
		jset(folder, "FolderItems", items);
		jappend(folders, folder);
		jset(obj, "Folders", folders);
	}
}

/* add_admin_record - ExchangeAdmin (RecordType 1): a configuration change. */
static void
add_admin_record(
    struct json_build *b, const struct ma_export_ctx *ctx, json_t *obj)
{
	const struct ma_record *rec = b->rec;
	const struct ma_prop *identity = ma_record_get_prop(rec, "Identity");
	json_t *params = jcheck(json_array());
	json_t *modified = jcheck(json_array());

	jset_str(b, obj, "ObjectId",
	    identity != NULL && prop_value(identity) != NULL
		? prop_value(identity)
		: rec->mailbox);
	jset_str(b, obj, "UserId", rec->user);
	jset_str(b, obj, "ClientInfoString", rec->client_info);
	/* For admin records this means Microsoft staff; never the case here. */
	jset(obj, "ExternalAccess", json_false());
	jset_int(obj, "InternalLogonType", rec->logon_type);
	jset_int(obj, "LogonType", rec->logon_type);
	jset_str(b, obj, "OrganizationName", ctx->organization_name);
	add_server_session(b, obj);

	for (uint32_t i = 0; i < rec->prop_count; i++) {
		const struct ma_prop *p = &rec->props[i];

		if (p->new_value != NULL)
			jappend(params, jname_value(b, p->name, p->new_value));
		/* The target of the cmdlet is not one of its changes. */
		if ((p->old_value != NULL || p->new_value != NULL) &&
		    p != identity)
			jappend(modified, jmodified(b, p));
	}
	jset(obj, "Parameters", params);
	jset_nonempty(obj, "ModifiedProperties", modified);
}

/* add_extensions - our own fields, outside Microsoft's schema. */
static void
add_extensions(struct json_build *b, json_t *obj)
{
	const struct ma_record *rec = b->rec;
	char time[32];

	if (rec->seq > 0)
		jset_int(obj, "MailAuditSequence", rec->seq);
	ma_fmt_time(rec->time_ms, true, time);
	ma_buf_reset(&b->path);
	MA_ASSERT(ma_buf_puts(&b->path, time) == 0);
	MA_ASSERT(ma_buf_putc(&b->path, 'Z') == 0);
	jset_str(b, obj, "MailAuditTime", b->path.data);
	jset_str(b, obj, "MailAuditProtocol", rec->protocol);
}

/* build_json - the whole Management Activity object for b->rec. */
static json_t *
build_json(struct json_build *b, const struct ma_export_ctx *ctx)
{
	const struct ma_record *rec = b->rec;
	json_t *obj = jcheck(json_object());
	enum ma_action action = MA_ACTION_COUNT;
	int record_type = 1;

	if (rec->operation != NULL &&
	    ma_action_lookup(rec->operation, &action) == 1)
		record_type = ma_action_record_type(action);

	add_common(b, ctx, obj, record_type);
	switch (record_type) {
	case 1:
		add_admin_record(b, ctx, obj);
		break;
	case 3:
		add_mailbox_common(b, ctx, obj);
		add_group_record(b, obj);
		break;
	case 50:
		add_mailbox_common(b, ctx, obj);
		add_aggregated_record(b, obj);
		break;
	default:
		add_mailbox_common(b, ctx, obj);
		add_item_record(b, obj, action);
		break;
	}
	add_extensions(b, obj);
	return obj;
}

/*
 * buf_put - ma_buf_append, with the usual case (room already allocated)
 * copied inline: a JSON object is a few hundred appends of a few bytes.
 * ma_buf keeps cap <= max + 1, so fitting below cap is within max.
 */
static inline int
buf_put(struct ma_buf *out, const void *data, size_t len)
{
	if (out->data != NULL && len < out->cap - out->len) {
		memcpy(out->data + out->len, data, len);
		out->len += len;
		out->data[out->len] = '\0';
		return 0;
	}
	return ma_buf_append(out, data, len);
}

static inline int
buf_putc(struct ma_buf *out, char c)
{
	return buf_put(out, &c, 1);
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
		if (buf_put(out, run, (size_t)(p - run)) < 0)
			return -1;
		if (p >= end)
			break;
		p += utf8_next(p, &cp);
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
		if (buf_put(out, esc, n) < 0)
			return -1;
	}
	return buf_putc(out, '"');
}

/*
 * put_json - j as json_dumps(JSON_COMPACT | JSON_ENSURE_ASCII) writes it,
 * keys in insertion order (jansson keeps it), DEL escaped.  Written here
 * because jansson's dumper, a callback per fragment, took twice as long
 * as building the tree (docs/SIEM-FORMATS.md, "Throughput").
 */
static int
put_json(struct ma_buf *out, json_t *j)
{
	const char *key;
	json_t *v;
	size_t i;
	int first = 1;

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		if (buf_putc(out, '{') < 0)
			return -1;
		json_object_foreach(j, key, v)
		{
			if ((!first && buf_putc(out, ',') < 0) ||
			    put_json_string(out, key, strlen(key)) < 0 ||
			    buf_putc(out, ':') < 0 || put_json(out, v) < 0)
				return -1;
			first = 0;
		}
		return buf_putc(out, '}');
	case JSON_ARRAY:
		if (buf_putc(out, '[') < 0)
			return -1;
		json_array_foreach(j, i, v)
		{
			if ((i > 0 && buf_putc(out, ',') < 0) ||
			    put_json(out, v) < 0)
				return -1;
		}
		return buf_putc(out, ']');
	case JSON_STRING:
		return put_json_string(
		    out, json_string_value(j), json_string_length(j));
	case JSON_INTEGER: {
		json_int_t n = json_integer_value(j);

		if (n < 0 && buf_putc(out, '-') < 0)
			return -1;
		/* -(n + 1) + 1: the most negative value has no positive twin.
		 */
		return ma_buf_put_u64(
		    out, n < 0 ? (uint64_t)(-(n + 1)) + 1 : (uint64_t)n);
	}
	case JSON_TRUE:
		return buf_put(out, "true", 4);
	case JSON_FALSE:
		return buf_put(out, "false", 5);
	case JSON_NULL:
		return buf_put(out, "null", 4);
	case JSON_REAL:
		break;
	}
	/* No renderer here builds reals; jansson formats them if one does. */
	{
		char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
		int ret;

		MA_ASSERT(text != NULL);
		ret = ma_buf_puts(out, text);
		free(text);
		return ret;
	}
}

struct json_t *
ma_export_json_tree(
    const struct ma_export_ctx *ctx, const struct ma_record *rec)
{
	struct json_build b = {.rec = rec};
	json_t *obj;

	ma_buf_init(&b.str, MA_EXPORT_BUF_MAX);
	ma_buf_init(&b.path, MA_EXPORT_BUF_MAX);
	obj = build_json(&b, ctx);
	ma_buf_deinit(&b.str);
	ma_buf_deinit(&b.path);
	return obj;
}

int
ma_export_json_dump(struct json_t *j, struct ma_buf *out)
{
	size_t start = out->len;

	if (put_json(out, j) < 0) {
		buf_truncate(out, start);
		return -1;
	}
	return 0;
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

int
ma_export_json(const struct ma_export_ctx *ctx, const struct ma_record *rec,
    struct ma_buf *out)
{
	json_t *obj = ma_export_json_tree(ctx, rec);
	int ret = ma_export_json_dump(obj, out);

	json_decref(obj);
	return ret;
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
		size_t n = utf8_next(p, &cp);

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
