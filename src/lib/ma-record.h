/* SPDX-License-Identifier: MIT */
#ifndef MA_RECORD_H
#define MA_RECORD_H

/*
 * One audit record, as the sensors build it, the wire carries it, the
 * store holds it and the exporters render it.  Every string lives in the
 * record's arena; a NULL string means "not present".  operation is a name:
 * one of enum ma_action's for mailbox records, or an admin operation
 * ("Set-Mailbox", ...) for records of changes to the audit configuration.
 */

#include <stdint.h>
#include "ma-action.h"
#include "ma-util.h"

/* Limits every sensor and the daemon enforce. */
#define MA_RECORD_MAX_ITEMS  1000
#define MA_RECORD_MAX_PROPS  64
#define MA_RECORD_MAX_STRING 4096 /* any one field, in bytes */
/* A property value may hold a list (a send's recipients, up to 1000). */
#define MA_RECORD_MAX_PROP_VALUE (64 * 1024)
#define MA_RECORD_MAX_SUBJECT    255 /* sensors cut subjects here */

/* A message the action touched. */
struct ma_item {
	uint32_t uid;           /* 0 = unknown */
	const char *message_id; /* Message-ID header, with <> */
	const char *subject;
	uint64_t size; /* bytes, 0 = unknown */
};

/*
 * A name with an optional old and new value: ModifiedProperties for
 * Update (flags), OperationProperties for other actions (ACL rights,
 * Sieve script name, MailAccessType ...).
 */
struct ma_prop {
	const char *name;
	const char *old_value;
	const char *new_value;
};

struct ma_record {
	struct ma_arena arena;

	int64_t seq;     /* assigned by the store; 0 before */
	uint8_t id[16];  /* sensor-chosen unique id (UUIDv7) */
	int64_t time_ms; /* when the action happened, UTC */
	const char *operation;
	enum ma_result result;
	enum ma_logon logon_type;
	const char *user;    /* acting user */
	const char *mailbox; /* mailbox owner */
	const char *folder;
	const char *dest_folder;  /* copy/move/rename target */
	const char *dest_mailbox; /* target owner, cross-mailbox only */
	const char *session;
	const char *client_ip;
	const char *client_info; /* "Client=POP3/IMAP4;Protocol=IMAP4;..." */
	const char *protocol;    /* imap, pop3, lmtp, sieve, doveadm, ... */
	const char *server;      /* originating server */
	uint32_t count;          /* OperationCount (aggregated records) */

	struct ma_item *items;
	uint32_t item_count, item_cap;
	struct ma_prop *props;
	uint32_t prop_count, prop_cap;
};

void ma_record_init(struct ma_record *rec);
void ma_record_deinit(struct ma_record *rec);
/* ma_record_reset - empty the record for reuse (keeps arena memory). */
void ma_record_reset(struct ma_record *rec);

/* Copy s into the arena and store it in *field (s NULL clears it). */
void ma_record_set(struct ma_record *rec, const char **field, const char *s);
/* Append an item / property; strings are copied. -1 when over the limit. */
int ma_record_add_item(struct ma_record *rec, uint32_t uid,
    const char *message_id, const char *subject, uint64_t size);
int ma_record_add_prop(struct ma_record *rec, const char *name,
    const char *old_value, const char *new_value);
/*
 * The same without copying: the strings are only pointed at and must
 * outlive the record.  For a sensor's short-lived record that is encoded
 * while the strings it names still exist.
 */
int ma_record_add_item_ref(struct ma_record *rec, uint32_t uid,
    const char *message_id, const char *subject, uint64_t size);
int ma_record_add_prop_ref(struct ma_record *rec, const char *name,
    const char *old_value, const char *new_value);
/* Look up a property by name; NULL if absent. */
const struct ma_prop *ma_record_get_prop(
    const struct ma_record *rec, const char *name);

/*
 * ma_record_validate - check what every consumer relies on: an id, a time,
 * a known operation name, user and mailbox present, field lengths and
 * counts within the limits above.  -1 with the reason in err.
 */
int ma_record_validate(const struct ma_record *rec, struct ma_error *err);

#endif
