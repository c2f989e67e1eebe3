/* SPDX-License-Identifier: MIT */
/*
 * test-export.c - unit tests for ma-export: the Management Activity JSON
 * mapping field by field (parsed back with jansson, so the tests do not
 * depend on key order or spacing), CSV quoting and formula defence, the
 * table's sanitising and cutting, headers written once, and the error
 * returns.  Byte-exact output is the golden test's job
 * (test-golden-export.c); these tests pin the rules behind it.
 */

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ma-export.h"
#include "records.h"
#include "ut.h"

#define ORG_ID   "0b5d1c7e-3a3c-4b0e-8d1e-6f2a9a6b7c01"
#define ORG_NAME "contoso.onmicrosoft.com"

static const struct ma_export_ctx base_ctx = {
    .format = MA_EXPORT_JSON,
    .organization_id = ORG_ID,
    .organization_name = ORG_NAME,
};

/* rec_basic - a plausible record with every common field set. */
static void
rec_basic(struct ma_record *rec, const char *op)
{
	rec_plain(rec, op, MA_LOGON_OWNER, "alice@contoso.com");
}

/* to_json - export rec and parse it back; NULL (and a failure) if invalid. */
static json_t *
to_json(const struct ma_export_ctx *ctx, const struct ma_record *rec)
{
	struct ma_buf out;
	json_error_t jerr;
	json_t *j = NULL;

	ma_buf_init(&out, 1 << 20);
	ut_assert(ma_export_json(ctx, rec, &out) == 0);
	if (out.data != NULL) {
		ut_assert(strchr(out.data, '\n') == NULL);
		j = json_loads(out.data, JSON_REJECT_DUPLICATES, &jerr);
		if (j == NULL)
			ut_fail(__FILE__, __LINE__, "bad JSON: %s", jerr.text);
	}
	ma_buf_deinit(&out);
	return j;
}

/* render - export rec in fmt with a fresh ctx; returns malloc'd text. */
static char *
render(
    enum ma_export_format fmt, const struct ma_record *rec, unsigned int times)
{
	struct ma_export_ctx ctx = base_ctx;
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);

	ut_assert(fp != NULL);
	ctx.format = fmt;
	for (unsigned int i = 0; i < times; i++)
		ut_assert(ma_export_record(&ctx, rec, fp) == 0);
	fclose(fp);
	return text;
}

static const char *
jget_str(const json_t *obj, const char *path)
{
	return json_string_value(json_object_get(obj, path));
}

static long long
jget_int(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	return json_is_integer(v) ? (long long)json_integer_value(v) : -999;
}

static void
test_format_lookup(void)
{
	enum ma_export_format fmt = MA_EXPORT_TABLE;

	ut_begin("export format lookup");
	ut_assert(ma_export_format_lookup("json", &fmt) == 1);
	ut_assert(fmt == MA_EXPORT_JSON);
	ut_assert(ma_export_format_lookup("CSV", &fmt) == 1);
	ut_assert(fmt == MA_EXPORT_CSV);
	ut_assert(ma_export_format_lookup("Table", &fmt) == 1);
	ut_assert(fmt == MA_EXPORT_TABLE);
	ut_assert(ma_export_format_lookup("xml", &fmt) == 0);
	ut_assert(ma_export_format_lookup("", &fmt) == 0);
	ut_assert(fmt == MA_EXPORT_TABLE);
	ut_end();
}

static void
test_json_common(void)
{
	struct ma_record rec;
	json_t *j;

	ut_begin("json common fields");
	rec_basic(&rec, "MailboxLogin");
	j = to_json(&base_ctx, &rec);
	ut_assert(j != NULL);
	ut_assert_str(jget_str(j, "CreationTime"), "2025-03-04T10:02:41");
	ut_assert_str(
	    jget_str(j, "Id"), "0195b3c2-7a10-7d4e-9a43-2f0f0d7b9d11");
	ut_assert_str(jget_str(j, "Operation"), "MailboxLogin");
	ut_assert_str(jget_str(j, "OrganizationId"), ORG_ID);
	ut_assert_cmp(jget_int(j, "RecordType"), ==, 2);
	ut_assert_str(jget_str(j, "ResultStatus"), "Succeeded");
	ut_assert_str(jget_str(j, "UserKey"), "alice@contoso.com");
	ut_assert_cmp(jget_int(j, "UserType"), ==, 0);
	ut_assert_cmp(jget_int(j, "Version"), ==, 1);
	ut_assert_str(jget_str(j, "Workload"), "Exchange");
	ut_assert_str(jget_str(j, "UserId"), "alice@contoso.com");
	ut_assert_str(jget_str(j, "ClientIP"), "203.0.113.24");
	ut_assert_str(jget_str(j, "ClientIPAddress"), "203.0.113.24");
	ut_assert_str(jget_str(j, "ClientInfoString"),
	    "Client=POP3/IMAP4;Protocol=IMAP4");
	ut_assert(json_is_false(json_object_get(j, "ExternalAccess")));
	ut_assert_cmp(jget_int(j, "LogonType"), ==, 0);
	ut_assert_cmp(jget_int(j, "InternalLogonType"), ==, 0);
	ut_assert_str(jget_str(j, "MailboxOwnerUPN"), "alice@contoso.com");
	ut_assert_str(jget_str(j, "OrganizationName"), ORG_NAME);
	ut_assert_str(jget_str(j, "OriginatingServer"), "mx1.contoso.com\r\n");
	ut_assert_str(jget_str(j, "SessionId"), "sess-1");
	ut_assert_cmp(jget_int(j, "MailAuditSequence"), ==, 42);
	ut_assert_str(jget_str(j, "MailAuditTime"), "2025-03-04T10:02:41.123Z");
	ut_assert_str(jget_str(j, "MailAuditProtocol"), "imap");
	/* A login touches no item and has no properties. */
	ut_assert(json_object_get(j, "Item") == NULL);
	ut_assert(json_object_get(j, "OperationProperties") == NULL);
	json_decref(j);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_json_absent(void)
{
	struct ma_export_ctx ctx = base_ctx;
	struct ma_record rec;
	json_t *j;

	ut_begin("json leaves absent fields out");
	rec_basic(&rec, "MailboxLogin");
	rec.seq = 0;
	rec.client_ip = NULL;
	rec.client_info = NULL;
	rec.server = NULL;
	rec.session = NULL;
	rec.protocol = NULL;
	ctx.organization_id = NULL;
	ctx.organization_name = NULL;
	j = to_json(&ctx, &rec);
	ut_assert(j != NULL);
	ut_assert(json_object_get(j, "OrganizationId") == NULL);
	ut_assert(json_object_get(j, "OrganizationName") == NULL);
	ut_assert(json_object_get(j, "ClientIP") == NULL);
	ut_assert(json_object_get(j, "ClientIPAddress") == NULL);
	ut_assert(json_object_get(j, "ClientInfoString") == NULL);
	ut_assert(json_object_get(j, "OriginatingServer") == NULL);
	ut_assert(json_object_get(j, "SessionId") == NULL);
	ut_assert(json_object_get(j, "MailAuditSequence") == NULL);
	ut_assert(json_object_get(j, "MailAuditProtocol") == NULL);
	ut_assert(json_object_get(j, "MailAuditTime") != NULL);
	json_decref(j);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_json_user_type_external(void)
{
	static const struct {
		enum ma_logon logon;
		const char *user, *mailbox;
		int user_type;
		bool external;
	} cases[] = {
	    {MA_LOGON_OWNER, "a@contoso.com", "a@contoso.com", 0, false},
	    {MA_LOGON_DELEGATE, "b@Contoso.COM", "a@contoso.com", 0, false},
	    {MA_LOGON_DELEGATE, "b@fabrikam.com", "a@contoso.com", 0, true},
	    {MA_LOGON_ADMIN, "admin", "a@contoso.com", 2, false},
	    {MA_LOGON_ADMIN, "root@", "a@contoso.com", 2, false},
	    {MA_LOGON_TRANSPORT, "postfix", "a@contoso.com", 4, false},
	    {MA_LOGON_SYSTEM, "b@x.org", "a", 4, false},
	};

	ut_begin("json UserType and ExternalAccess");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ma_record rec;
		json_t *j;

		rec_basic(&rec, "FolderBind");
		rec.logon_type = cases[i].logon;
		ma_record_set(&rec, &rec.user, cases[i].user);
		ma_record_set(&rec, &rec.mailbox, cases[i].mailbox);
		j = to_json(&base_ctx, &rec);
		ut_assert(j != NULL);
		ut_assert_cmp(jget_int(j, "UserType"), ==, cases[i].user_type);
		ut_assert_cmp(jget_int(j, "LogonType"), ==, cases[i].logon);
		ut_assert(
		    json_is_boolean(json_object_get(j, "ExternalAccess")));
		ut_assert(json_is_true(json_object_get(j, "ExternalAccess")) ==
			  cases[i].external);
		json_decref(j);
		ma_record_deinit(&rec);
	}
	ut_end();
}

static void
test_json_item_update(void)
{
	struct ma_record rec;
	json_t *j, *item, *mod, *vals;

	ut_begin("json RecordType 2: Update with flags");
	rec_basic(&rec, "Update");
	ma_record_set(&rec, &rec.folder, "Archive/2024");
	ut_assert(ma_record_add_item(&rec, 4711, "<a@b>", "Hi", 1234) == 0);
	ut_assert(ma_record_add_prop(&rec, "Flags", NULL, "\\Seen") == 0);
	ut_assert(ma_record_add_prop(&rec, "Keywords", NULL, NULL) == 0);
	ut_assert(ma_record_add_prop(&rec, "LoginUser", NULL, "ops") == 0);
	j = to_json(&base_ctx, &rec);
	ut_assert(j != NULL);
	ut_assert_cmp(jget_int(j, "RecordType"), ==, 2);
	item = json_object_get(j, "Item");
	ut_assert_str(jget_str(item, "Id"), "Archive/2024/4711");
	ut_assert_str(jget_str(item, "InternetMessageId"), "<a@b>");
	ut_assert_str(jget_str(item, "Subject"), "Hi");
	ut_assert_cmp(jget_int(item, "SizeInBytes"), ==, 1234);
	ut_assert_str(jget_str(json_object_get(item, "ParentFolder"), "Path"),
	    "\\Archive\\2024");
	ut_assert_str(
	    jget_str(json_object_get(item, "ParentFolder"), "Name"), "2024");
	ut_assert_str(
	    jget_str(json_object_get(j, "Folder"), "Path"), "\\Archive\\2024");
	mod = json_object_get(j, "ModifiedProperties");
	ut_assert(json_array_size(mod) == 2);
	ut_assert_str(json_string_value(json_array_get(mod, 0)), "Flags");
	ut_assert_str(json_string_value(json_array_get(mod, 1)), "Keywords");
	/* Only the property with values shows up with them. */
	vals = json_object_get(j, "MailAuditModifiedValues");
	ut_assert(json_array_size(vals) == 1);
	ut_assert_str(jget_str(json_array_get(vals, 0), "OldValue"), "");
	ut_assert_str(jget_str(json_array_get(vals, 0), "NewValue"), "\\Seen");
	/* Context is not a modified property. */
	{
		json_t *ops = json_object_get(j, "OperationProperties");

		ut_assert(json_array_size(ops) == 1);
		ut_assert_str(
		    jget_str(json_array_get(ops, 0), "Name"), "LoginUser");
		ut_assert_str(jget_str(json_array_get(ops, 0), "Value"), "ops");
	}
	json_decref(j);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_json_item_unknown(void)
{
	struct ma_record rec;
	json_t *j, *item;

	ut_begin("json RecordType 2: unknown uid and size");
	rec_basic(&rec, "SendAs");
	rec.folder = NULL;
	ut_assert(ma_record_add_item(&rec, 0, "<m@x>", NULL, 0) == 0);
	j = to_json(&base_ctx, &rec);
	item = json_object_get(j, "Item");
	ut_assert(json_object_size(item) == 1);
	ut_assert_str(jget_str(item, "InternetMessageId"), "<m@x>");
	ut_assert(json_object_get(j, "Folder") == NULL);
	json_decref(j);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_json_folder_permissions(void)
{
	struct ma_record rec;
	json_t *j, *folder, *ops;

	ut_begin("json UpdateFolderPermissions");
	rec_basic(&rec, "UpdateFolderPermissions");
	ma_record_set(&rec, &rec.folder, "Shared/Team");
	ut_assert(
	    ma_record_add_prop(&rec, "Member", NULL, "bob@contoso.com") == 0);
	ut_assert(ma_record_add_prop(&rec, "Rights", "lr", "lrswi") == 0);
	j = to_json(&base_ctx, &rec);
	folder = json_object_get(j, "Folder");
	ut_assert_str(jget_str(folder, "Path"), "\\Shared\\Team");
	ut_assert_str(jget_str(folder, "Name"), "Team");
	ut_assert_str(jget_str(folder, "MemberUpn"), "bob@contoso.com");
	ut_assert_str(jget_str(folder, "MemberRights"), "lrswi");
	ops = json_object_get(j, "OperationProperties");
	ut_assert(json_array_size(ops) == 2);
	ut_assert_str(jget_str(json_array_get(ops, 1), "Name"), "Rights");
	ut_assert_str(jget_str(json_array_get(ops, 1), "Value"), "lrswi");
	json_decref(j);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_json_group(void)
{
	struct ma_record rec;
	json_t *j, *items, *first;

	ut_begin("json RecordType 3: cross-mailbox Move");
	rec_basic(&rec, "Move");
	rec.logon_type = MA_LOGON_DELEGATE;
	ma_record_set(&rec, &rec.user, "bob@contoso.com");
	ma_record_set(&rec, &rec.dest_folder, "Projects/Old");
	ma_record_set(&rec, &rec.dest_mailbox, "bob@contoso.com");
	ut_assert(ma_record_add_item(&rec, 1, "<1@x>", "One", 10) == 0);
	ut_assert(ma_record_add_item(&rec, 2, NULL, NULL, 0) == 0);
	j = to_json(&base_ctx, &rec);
	ut_assert_cmp(jget_int(j, "RecordType"), ==, 3);
	ut_assert_cmp(jget_int(j, "LogonType"), ==, 2);
	ut_assert(json_is_true(json_object_get(j, "CrossMailboxOperation")));
	ut_assert_str(jget_str(j, "DestMailboxOwnerUPN"), "bob@contoso.com");
	ut_assert_str(
	    jget_str(json_object_get(j, "Folder"), "Path"), "\\INBOX");
	ut_assert_str(jget_str(json_object_get(j, "DestFolder"), "Path"),
	    "\\Projects\\Old");
	ut_assert_str(
	    jget_str(json_object_get(j, "DestFolder"), "Name"), "Old");
	items = json_object_get(j, "AffectedItems");
	ut_assert(json_array_size(items) == 2);
	first = json_array_get(items, 0);
	ut_assert_str(jget_str(first, "Id"), "INBOX/1");
	ut_assert_str(jget_str(first, "Subject"), "One");
	ut_assert_str(jget_str(json_object_get(first, "ParentFolder"), "Path"),
	    "\\INBOX");
	ut_assert(json_object_get(json_array_get(items, 1), "Subject") == NULL);
	json_decref(j);

	/* Same mailbox: no cross-mailbox operation, no destination owner. */
	ma_record_set(&rec, &rec.dest_mailbox, "alice@contoso.com");
	j = to_json(&base_ctx, &rec);
	ut_assert(json_is_false(json_object_get(j, "CrossMailboxOperation")));
	ut_assert(json_object_get(j, "DestMailboxOwnerUPN") == NULL);
	json_decref(j);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_json_mail_items_accessed(void)
{
	struct ma_record rec;
	json_t *j, *ops, *folders, *fitems;

	ut_begin("json RecordType 50: MailItemsAccessed");
	rec_basic(&rec, "MailItemsAccessed");
	ut_assert(ma_record_add_item(&rec, 7, "<7@x>", NULL, 0) == 0);
	ut_assert(ma_record_add_item(&rec, 8, "<8@x>", "Eight", 88) == 0);
	j = to_json(&base_ctx, &rec);
	ut_assert_cmp(jget_int(j, "RecordType"), ==, 50);
	/* count 0: the number of items listed. */
	ut_assert_cmp(jget_int(j, "OperationCount"), ==, 2);
	ops = json_object_get(j, "OperationProperties");
	ut_assert(json_array_size(ops) == 2);
	ut_assert_str(
	    jget_str(json_array_get(ops, 0), "Name"), "MailAccessType");
	ut_assert_str(jget_str(json_array_get(ops, 0), "Value"), "Bind");
	ut_assert_str(jget_str(json_array_get(ops, 1), "Name"), "IsThrottled");
	ut_assert_str(jget_str(json_array_get(ops, 1), "Value"), "False");
	folders = json_object_get(j, "Folders");
	ut_assert(json_array_size(folders) == 1);
	ut_assert_str(jget_str(json_array_get(folders, 0), "Path"), "\\INBOX");
	fitems = json_object_get(json_array_get(folders, 0), "FolderItems");
	ut_assert(json_array_size(fitems) == 2);
	ut_assert_str(
	    jget_str(json_array_get(fitems, 0), "InternetMessageId"), "<7@x>");
	ut_assert(
	    json_object_get(json_array_get(fitems, 0), "Subject") == NULL);
	ut_assert(
	    json_object_get(json_array_get(fitems, 0), "SizeInBytes") == NULL);
	ut_assert_cmp(
	    jget_int(json_array_get(fitems, 1), "SizeInBytes"), ==, 88);
	json_decref(j);

	/* An explicit count wins; a record's own MailAccessType too, in place.
	 */
	rec.count = 9;
	ut_assert(
	    ma_record_add_prop(&rec, "MailAccessType", NULL, "Sync") == 0);
	ut_assert(ma_record_add_prop(&rec, "Extra", "1", NULL) == 0);
	j = to_json(&base_ctx, &rec);
	ut_assert_cmp(jget_int(j, "OperationCount"), ==, 9);
	ops = json_object_get(j, "OperationProperties");
	ut_assert(json_array_size(ops) == 3);
	ut_assert_str(
	    jget_str(json_array_get(ops, 0), "Name"), "MailAccessType");
	ut_assert_str(jget_str(json_array_get(ops, 0), "Value"), "Sync");
	ut_assert_str(jget_str(json_array_get(ops, 1), "Name"), "IsThrottled");
	ut_assert_str(jget_str(json_array_get(ops, 2), "Name"), "Extra");
	ut_assert_str(jget_str(json_array_get(ops, 2), "Value"), "1");
	json_decref(j);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_json_admin(void)
{
	struct ma_record rec;
	json_t *j, *params, *mod;

	ut_begin("json RecordType 1: admin operation");
	rec_basic(&rec, "Set-MailboxAuditBypassAssociation");
	rec.logon_type = MA_LOGON_ADMIN;
	ma_record_set(&rec, &rec.user, "root");
	ut_assert(
	    ma_record_add_prop(&rec, "Identity", NULL, "svc@contoso.com") == 0);
	ut_assert(ma_record_add_prop(
		      &rec, "AuditBypassEnabled", "False", "True") == 0);
	ut_assert(ma_record_add_prop(&rec, "Removed", "x", NULL) == 0);
	j = to_json(&base_ctx, &rec);
	ut_assert_cmp(jget_int(j, "RecordType"), ==, 1);
	ut_assert_str(jget_str(j, "ResultStatus"), "True");
	ut_assert_cmp(jget_int(j, "UserType"), ==, 2);
	ut_assert_str(jget_str(j, "ObjectId"), "svc@contoso.com");
	ut_assert_str(jget_str(j, "UserId"), "root");
	ut_assert(json_is_false(json_object_get(j, "ExternalAccess")));
	ut_assert(json_object_get(j, "MailboxOwnerUPN") == NULL);
	ut_assert(json_object_get(j, "ClientIPAddress") == NULL);
	params = json_object_get(j, "Parameters");
	ut_assert(json_array_size(params) == 2);
	ut_assert_str(jget_str(json_array_get(params, 0), "Name"), "Identity");
	ut_assert_str(jget_str(json_array_get(params, 1), "Value"), "True");
	mod = json_object_get(j, "ModifiedProperties");
	ut_assert(json_array_size(mod) == 2);
	ut_assert_str(
	    jget_str(json_array_get(mod, 0), "Name"), "AuditBypassEnabled");
	ut_assert_str(jget_str(json_array_get(mod, 0), "OldValue"), "False");
	ut_assert_str(jget_str(json_array_get(mod, 0), "NewValue"), "True");
	ut_assert_str(jget_str(json_array_get(mod, 1), "NewValue"), "");
	json_decref(j);

	/* Without Identity the object is the mailbox; failure is "False". */
	ma_record_deinit(&rec);
	rec_basic(&rec, "Set-Mailbox");
	rec.result = MA_RESULT_PARTIAL;
	j = to_json(&base_ctx, &rec);
	ut_assert_str(jget_str(j, "ObjectId"), "alice@contoso.com");
	ut_assert_str(jget_str(j, "ResultStatus"), "False");
	ut_assert(json_array_size(json_object_get(j, "Parameters")) == 0);
	ut_assert(json_object_get(j, "ModifiedProperties") == NULL);
	json_decref(j);
	ma_record_deinit(&rec);
	ut_end();
}

/* all_printable_ascii - no byte outside 0x20..0x7e. */
static bool
all_printable_ascii(const char *s)
{
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	}
	return true;
}

static void
test_json_hostile(void)
{
	struct ma_record rec;
	struct ma_buf out;
	json_t *j;

	ut_begin("json hostile strings");
	rec_basic(&rec, "Create");
	ma_record_set(&rec, &rec.folder, "Tab\there/\x1b[31mred");
	ut_assert(
	    ma_record_add_item(&rec, 1, "<\"q\"@x>",
		"a\r\nb\"c\\d,=cmd|\x7f\xc2\x9b\xe2\x80\xae\xff\xc3", 1) == 0);
	ma_buf_init(&out, 1 << 20);
	ut_assert(ma_export_json(&base_ctx, &rec, &out) == 0);
	ut_assert(all_printable_ascii(out.data));
	ut_assert(strstr(out.data, "\\u007F") != NULL);
	j = json_loads(out.data, 0, NULL);
	ut_assert(j != NULL);
	/* Bytes survive exactly, except invalid UTF-8 which becomes U+FFFD. */
	ut_assert_str(jget_str(json_object_get(j, "Item"), "Subject"),
	    "a\r\nb\"c\\d,=cmd|\x7f\xc2\x9b\xe2\x80\xae\xef\xbf\xbd\xef\xbf\xbd");
	ut_assert_str(jget_str(json_object_get(j, "Folder"), "Path"),
	    "\\Tab\there\\\x1b[31mred");
	json_decref(j);
	ma_buf_deinit(&out);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_json_limit(void)
{
	struct ma_record rec;
	struct ma_buf out;

	ut_begin("json over the buffer's max");
	rec_basic(&rec, "MailboxLogin");
	ma_buf_init(&out, 64);
	ut_assert(ma_buf_puts(&out, "keep") == 0);
	ut_assert(ma_export_json(&base_ctx, &rec, &out) == -1);
	ut_assert_str(out.data, "keep");
	ut_assert(out.len == 4);
	ma_buf_deinit(&out);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_json_line(void)
{
	struct ma_record rec;
	char *text;
	size_t len;

	ut_begin("json format: one object per line, no header");
	rec_basic(&rec, "MailboxLogin");
	text = render(MA_EXPORT_JSON, &rec, 2);
	ut_assert(text != NULL && text[0] == '{');
	len = strlen(text);
	ut_assert(len > 2 && text[len - 1] == '\n' && text[len - 2] == '}');
	ut_assert(strchr(text, '\n') == text + len / 2 - 1);
	free(text);
	ma_record_deinit(&rec);
	ut_end();
}

/* csv_fields - split an RFC 4180 line into cells; -1 if malformed. */
static int
csv_fields(const char *line, char cells[][4096], int max)
{
	int n = 0;

	for (;;) {
		size_t o = 0;

		if (n == max)
			return -1;
		if (*line == '"') {
			line++;
			for (;;) {
				if (*line == '\0')
					return -1;
				if (*line == '"' && line[1] != '"')
					break;
				if (*line == '"')
					line++;
				if (o < 4095)
					cells[n][o++] = *line;
				line++;
			}
			line++;
		} else {
			while (*line != ',' && *line != '\r' && *line != '\0') {
				if (*line == '"')
					return -1;
				if (o < 4095)
					cells[n][o++] = *line;
				line++;
			}
		}
		cells[n++][o] = '\0';
		if (*line == ',') {
			line++;
			continue;
		}
		return strcmp(line, "\r\n") == 0 ? n : -1;
	}
}

static void
test_csv(void)
{
	struct ma_record rec;
	char *text, *row;

	ut_begin("csv header, row, CRLF");
	rec_basic(&rec, "MailboxLogin");
	text = render(MA_EXPORT_CSV, &rec, 2);
	ut_assert(strncmp(text, "CreationDate,UserIds,Operations,AuditData\r\n",
		      43) == 0);
	/* The header only once: two records, three lines. */
	ut_assert(strstr(text + 1, "CreationDate") == NULL);
	row = strstr(text, "\r\n") + 2;
	ut_assert(
	    strncmp(row,
		"2025-03-04T10:02:41.123Z,alice@contoso.com,MailboxLogin,\"{",
		56) == 0);
	*strstr(row, "\r\n") = '\0';
	ut_assert(strchr(row, '\n') == NULL && strchr(row, '\r') == NULL);
	free(text);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_csv_hostile(void)
{
	static const struct {
		const char *user, *cell;
	} cases[] = {
	    {"=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"},
	    {"+1", "'+1"},
	    {"-2+3", "'-2+3"},
	    {"@SUM(A1)", "'@SUM(A1)"},
	    {"\tx", "'?x"},
	    {"\r=1", "'?=1"},
	    {"a,b", "a,b"},
	    {"say \"hi\"", "say \"hi\""},
	    {"line\r\nbreak", "line??break"},
	    {"esc\x1b[31m\x7f", "esc?[31m?"},
	    {"bad\xff", "bad\xef\xbf\xbd"},
	    {"a=b", "a=b"},
	};

	ut_begin("csv quoting and formula injection");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ma_record rec;
		char cells[4][4096];
		char *text, *row;
		json_t *j;

		rec_basic(&rec, "MailboxLogin");
		ma_record_set(&rec, &rec.user, cases[i].user);
		text = render(MA_EXPORT_CSV, &rec, 1);
		row = strstr(text, "\r\n") + 2;
		/* Exactly one physical line per record. */
		ut_assert(strstr(row, "\r\n") == row + strlen(row) - 2);
		ut_assert(strchr(row, '\n') == row + strlen(row) - 1);
		ut_assert(csv_fields(row, cells, 4) == 4);
		ut_assert_str(cells[1], cases[i].cell);
		/* The exact (repaired) value is still in AuditData. */
		j = json_loads(cells[3], 0, NULL);
		ut_assert(j != NULL);
		if (ma_utf8_valid(cases[i].user, strlen(cases[i].user)))
			ut_assert_str(jget_str(j, "UserId"), cases[i].user);
		json_decref(j);
		free(text);
		ma_record_deinit(&rec);
	}
	ut_end();
}

/* table_lines_safe - no control byte but the '\n' ending each line. */
static bool
table_lines_safe(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || s[len - 1] != '\n' || strstr(s, "\n\n") != NULL)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\n') || c == 0x7f)
			return false;
	}
	return true;
}

static void
test_table(void)
{
	struct ma_record rec;
	char *text, *row;

	ut_begin("table header and columns");
	rec_basic(&rec, "MoveToDeletedItems");
	ma_record_set(&rec, &rec.dest_folder, "Trash");
	ut_assert(ma_record_add_item(&rec, 1, "<1@x>", "Q1 invoice", 0) == 0);
	ut_assert(ma_record_add_item(&rec, 2, "<2@x>", NULL, 0) == 0);
	text = render(MA_EXPORT_TABLE, &rec, 2);
	ut_assert(strncmp(text, "Time ", 5) == 0);
	ut_assert(strstr(text + 1, "Time") == NULL);
	row = strchr(text, '\n') + 1;
	ut_assert(
	    strncmp(row, "2025-03-04 10:02:41 MoveToDeletedItems ", 39) == 0);
	ut_assert(strstr(row, " INBOX -> Trash ") != NULL);
	ut_assert(strstr(row, " 2 Q1 invoice ") != NULL);
	ut_assert(strstr(row, " 203.0.113.24\n") != NULL);
	/* Fixed widths: lines differ only by their last cell. */
	ut_assert(strchr(text, '\n') - text - (long)strlen("ClientIP") ==
		  strchr(row, '\n') - row - (long)strlen("203.0.113.24"));
	ut_assert(table_lines_safe(text));
	free(text);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_table_hostile(void)
{
	struct ma_record rec;
	char *text, *row;

	ut_begin("table sanitises and cuts");
	rec_basic(&rec, "Create");
	ma_record_set(&rec, &rec.user, "\x1b]0;pwned\x07\x1b[2J");
	ma_record_set(&rec, &rec.mailbox,
	    "m\xc2\x9b"
	    "31m\xe2\x80\xae"
	    "evil\xff");
	ma_record_set(
	    &rec, &rec.folder, "a-very-long-folder-name-that-does-not-fit");
	ma_record_set(&rec, &rec.client_ip, "\r\n\t");
	ut_assert(
	    ma_record_add_item(&rec, 5, NULL, "\xc3\xa9t\xc3\xa9\x7f", 0) == 0);
	text = render(MA_EXPORT_TABLE, &rec, 1);
	ut_assert(table_lines_safe(text));
	ut_assert(strchr(text, 0x1b) == NULL);
	row = strchr(text, '\n') + 1;
	ut_assert(strstr(row, " ?]0;pwned??[2J ") != NULL);
	/* C1 CSI and a bidi override are '?'; invalid UTF-8 is U+FFFD. */
	ut_assert(strstr(row, " m?31m?evil\xef\xbf\xbd ") != NULL);
	/* 30 columns: 29 characters and the ellipsis. */
	ut_assert(
	    strstr(row, " a-very-long-folder-name-that-\xe2\x80\xa6 ") != NULL);
	ut_assert(strstr(row, " 1 \xc3\xa9t\xc3\xa9? ") != NULL);
	ut_assert(strstr(row, " ???\n") != NULL);
	free(text);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_write_error(void)
{
	struct ma_export_ctx ctx = base_ctx;
	struct ma_record rec;
	FILE *fp = fopen("/dev/null", "r");

	ut_begin("write error");
	ut_assert(fp != NULL);
	rec_basic(&rec, "MailboxLogin");
	ctx.format = MA_EXPORT_CSV;
	ut_assert(ma_export_record(&ctx, &rec, fp) == -1);
	/* The header was not written, so it is still due. */
	ut_assert(!ctx.header_done);
	fclose(fp);
	ma_record_deinit(&rec);
	ut_end();
}

UT_MAIN(test_format_lookup, test_json_common, test_json_absent,
    test_json_user_type_external, test_json_item_update, test_json_item_unknown,
    test_json_folder_permissions, test_json_group,
    test_json_mail_items_accessed, test_json_admin, test_json_hostile,
    test_json_limit, test_json_line, test_csv, test_csv_hostile, test_table,
    test_table_hostile, test_write_error)
