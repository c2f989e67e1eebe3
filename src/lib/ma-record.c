/* SPDX-License-Identifier: MIT */
/*
 * ma-record.c - the audit record and its validation.
 *
 * A record is built once (by a sensor, the wire decoder or the store) and
 * read many times; its strings and arrays live in its arena, so releasing
 * a record is one call.  Validation is the single gate every record passes
 * before the store sees it: whatever a peer sends, the store only ever
 * holds records with an id, a time, a known operation and bounded fields.
 */

#include "ma-record.h"

#include <string.h>

void
ma_record_init(struct ma_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	ma_arena_init(&rec->arena);
}

void
ma_record_deinit(struct ma_record *rec)
{
	ma_arena_deinit(&rec->arena);
	memset(rec, 0, sizeof(*rec));
}

void
ma_record_reset(struct ma_record *rec)
{
	struct ma_arena arena = rec->arena;

	ma_arena_reset(&arena);
	memset(rec, 0, sizeof(*rec));
	rec->arena = arena;
}

void
ma_record_set(struct ma_record *rec, const char **field, const char *s)
{
	*field = s == NULL ? NULL : ma_arena_strdup(&rec->arena, s);
}

static const char *
arena_dup_or_null(struct ma_arena *arena, const char *s)
{
	return s == NULL ? NULL : ma_arena_strdup(arena, s);
}

/* grow - double an arena-held array; old contents are copied. */
static void *
grow(struct ma_arena *arena, void *old, uint32_t count, uint32_t *cap,
    size_t elem)
{
	uint32_t ncap = *cap == 0 ? 4 : *cap * 2;
	void *p = ma_arena_alloc(arena, (size_t)ncap * elem);

	if (count > 0)
		memcpy(p, old, (size_t)count * elem);
	*cap = ncap;
	return p;
}

/* item_slot - room for one more item; NULL when over the limit. */
static struct ma_item *
item_slot(struct ma_record *rec)
{
	if (rec->item_count >= MA_RECORD_MAX_ITEMS)
		return NULL;
	if (rec->item_count == rec->item_cap)
		rec->items = grow(&rec->arena, rec->items, rec->item_count,
		    &rec->item_cap, sizeof(*rec->items));
	return &rec->items[rec->item_count++];
}

static struct ma_prop *
prop_slot(struct ma_record *rec)
{
	if (rec->prop_count >= MA_RECORD_MAX_PROPS)
		return NULL;
	if (rec->prop_count == rec->prop_cap)
		rec->props = grow(&rec->arena, rec->props, rec->prop_count,
		    &rec->prop_cap, sizeof(*rec->props));
	return &rec->props[rec->prop_count++];
}

int
ma_record_add_item(struct ma_record *rec, uint32_t uid, const char *message_id,
    const char *subject, uint64_t size)
{
	struct ma_item *it = item_slot(rec);

	if (it == NULL)
		return -1;
	it->uid = uid;
	it->message_id = arena_dup_or_null(&rec->arena, message_id);
	it->subject = arena_dup_or_null(&rec->arena, subject);
	it->size = size;
	return 0;
}

int
ma_record_add_item_ref(struct ma_record *rec, uint32_t uid,
    const char *message_id, const char *subject, uint64_t size)
{
	struct ma_item *it = item_slot(rec);

	if (it == NULL)
		return -1;
	it->uid = uid;
	it->message_id = message_id;
	it->subject = subject;
	it->size = size;
	return 0;
}

int
ma_record_add_prop(struct ma_record *rec, const char *name,
    const char *old_value, const char *new_value)
{
	struct ma_prop *p = prop_slot(rec);

	if (p == NULL)
		return -1;
	p->name = ma_arena_strdup(&rec->arena, name);
	p->old_value = arena_dup_or_null(&rec->arena, old_value);
	p->new_value = arena_dup_or_null(&rec->arena, new_value);
	return 0;
}

int
ma_record_add_prop_ref(struct ma_record *rec, const char *name,
    const char *old_value, const char *new_value)
{
	struct ma_prop *p = prop_slot(rec);

	if (p == NULL)
		return -1;
	p->name = name;
	p->old_value = old_value;
	p->new_value = new_value;
	return 0;
}

const struct ma_prop *
ma_record_get_prop(const struct ma_record *rec, const char *name)
{
	for (uint32_t i = 0; i < rec->prop_count; i++) {
		if (strcmp(rec->props[i].name, name) == 0)
			return &rec->props[i];
	}
	return NULL;
}

/* Admin operations: changes to the audit configuration itself. */
static const char *const admin_operations[] = {
    "Set-Mailbox",
    "Set-OrganizationConfig",
    "Set-MailboxAuditBypassAssociation",
    "New-Mailbox",
    "Remove-Mailbox",
    NULL,
};

static bool
operation_known(const char *op)
{
	/* Exact, canonical spelling only: this runs for every record. */
	for (unsigned int i = 0; i < MA_ACTION_COUNT; i++) {
		if (strcmp(op, ma_action_name((enum ma_action)i)) == 0)
			return true;
	}
	for (unsigned int i = 0; admin_operations[i] != NULL; i++) {
		if (strcmp(op, admin_operations[i]) == 0)
			return true;
	}
	return false;
}

static int
check_len_max(const char *name, const char *s, size_t max, struct ma_error *err)
{
	if (s != NULL && strlen(s) > max)
		return ma_error_set(
		    err, "field %s longer than %zu bytes", name, max);
	return 0;
}

static int
check_len(const char *name, const char *s, struct ma_error *err)
{
	return check_len_max(name, s, MA_RECORD_MAX_STRING, err);
}

static int
check_strings(const struct ma_record *rec, struct ma_error *err)
{
	const struct {
		const char *name, *value;
	} fields[] = {
	    {"op", rec->operation},
	    {"user", rec->user},
	    {"mbox", rec->mailbox},
	    {"folder", rec->folder},
	    {"dfolder", rec->dest_folder},
	    {"dmbox", rec->dest_mailbox},
	    {"sess", rec->session},
	    {"ip", rec->client_ip},
	    {"client", rec->client_info},
	    {"proto", rec->protocol},
	    {"server", rec->server},
	};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (check_len(fields[i].name, fields[i].value, err) < 0)
			return -1;
	}
	for (uint32_t i = 0; i < rec->item_count; i++) {
		if (check_len("item", rec->items[i].message_id, err) < 0 ||
		    check_len("item", rec->items[i].subject, err) < 0)
			return -1;
	}
	for (uint32_t i = 0; i < rec->prop_count; i++) {
		if (check_len("prop", rec->props[i].name, err) < 0 ||
		    check_len_max("prop", rec->props[i].old_value,
			MA_RECORD_MAX_PROP_VALUE, err) < 0 ||
		    check_len_max("prop", rec->props[i].new_value,
			MA_RECORD_MAX_PROP_VALUE, err) < 0)
			return -1;
	}
	return 0;
}

int
ma_record_validate(const struct ma_record *rec, struct ma_error *err)
{
	static const uint8_t zero[16];

	if (memcmp(rec->id, zero, sizeof(zero)) == 0)
		return ma_error_set(err, "record has no id");
	if (rec->time_ms <= 0)
		return ma_error_set(err, "record has no time");
	if (rec->operation == NULL)
		return ma_error_set(err, "record has no operation");
	if (!operation_known(rec->operation))
		return ma_error_set(
		    err, "unknown operation '%.64s'", rec->operation);
	if (rec->user == NULL || rec->user[0] == '\0')
		return ma_error_set(err, "record has no user");
	if (rec->mailbox == NULL || rec->mailbox[0] == '\0')
		return ma_error_set(err, "record has no mailbox");
	if ((unsigned int)rec->logon_type > MA_LOGON_MAX)
		return ma_error_set(err, "bad logon type");
	if ((unsigned int)rec->result > MA_RESULT_FAILED)
		return ma_error_set(err, "bad result");
	if (rec->item_count > MA_RECORD_MAX_ITEMS)
		return ma_error_set(
		    err, "more than %d items", MA_RECORD_MAX_ITEMS);
	if (rec->prop_count > MA_RECORD_MAX_PROPS)
		return ma_error_set(
		    err, "more than %d properties", MA_RECORD_MAX_PROPS);
	return check_strings(rec, err);
}
