/* SPDX-License-Identifier: MIT */
#ifndef MA_ACTION_H
#define MA_ACTION_H

/*
 * The vocabulary: Exchange's mailbox audit actions (plus the folder
 * actions Exchange misses), logon types with Exchange's numbers, result
 * states and the Management Activity RecordType of each action.
 */

#include <stdbool.h>
#include <stdint.h>

enum ma_action {
	MA_ACTION_APPLY_RECORD,
	MA_ACTION_COPY,
	MA_ACTION_CREATE,
	MA_ACTION_FOLDER_BIND,
	MA_ACTION_HARD_DELETE,
	MA_ACTION_MAILBOX_LOGIN,
	MA_ACTION_MAIL_ITEMS_ACCESSED,
	MA_ACTION_MESSAGE_BIND,
	MA_ACTION_MOVE,
	MA_ACTION_MOVE_TO_DELETED_ITEMS,
	MA_ACTION_RECORD_DELETE,
	MA_ACTION_SEARCH_QUERY_INITIATED,
	MA_ACTION_SEND,
	MA_ACTION_SEND_AS,
	MA_ACTION_SEND_ON_BEHALF,
	MA_ACTION_SOFT_DELETE,
	MA_ACTION_UPDATE,
	MA_ACTION_UPDATE_CALENDAR_DELEGATION,
	MA_ACTION_UPDATE_COMPLIANCE_TAG,
	MA_ACTION_UPDATE_FOLDER_PERMISSIONS,
	MA_ACTION_UPDATE_INBOX_RULES,
	MA_ACTION_FOLDER_CREATE,
	MA_ACTION_FOLDER_DELETE,
	MA_ACTION_FOLDER_RENAME,

	MA_ACTION_COUNT
};

/* A set of actions; bit n is enum ma_action n. */
typedef uint32_t ma_action_set;
#define MA_ACTION_BIT(a) ((ma_action_set)1 << (a))
#define MA_ACTION_ALL    ((ma_action_set)((1UL << MA_ACTION_COUNT) - 1))

/* Exchange LogonType numbers (Management Activity API). */
enum ma_logon {
	MA_LOGON_OWNER = 0,
	MA_LOGON_ADMIN = 1,
	MA_LOGON_DELEGATE = 2,
	MA_LOGON_TRANSPORT = 3,
	MA_LOGON_SYSTEM = 4,
};
#define MA_LOGON_MAX MA_LOGON_SYSTEM

enum ma_result {
	MA_RESULT_SUCCEEDED,
	MA_RESULT_PARTIAL,
	MA_RESULT_FAILED,
};

/* Canonical name ("MoveToDeletedItems"), or NULL for an invalid value. */
const char *ma_action_name(enum ma_action action);
/* Case-insensitive lookup; returns 1 and the action, or 0 if unknown. */
int ma_action_lookup(const char *name, enum ma_action *action_r);
/*
 * true for actions this server accepts in policy but can never observe
 * (ApplyRecord, RecordDelete, UpdateCalendarDelegation, UpdateComplianceTag).
 */
bool ma_action_never_emitted(enum ma_action action);
/* Management Activity RecordType: 2 ExchangeItem, 3 ExchangeItemGroup, 50. */
int ma_action_record_type(enum ma_action action);

/* "Owner", "Admin", "Delegate", "Transport", "SystemService". */
const char *ma_logon_name(enum ma_logon logon);
/* Accepts the names (case-insensitive) and the numbers 0-4. */
int ma_logon_lookup(const char *name, enum ma_logon *logon_r);

/* "Succeeded", "PartiallySucceeded", "Failed". */
const char *ma_result_name(enum ma_result result);
int ma_result_lookup(const char *name, enum ma_result *result_r);

/*
 * ma_action_set_parse - parse a comma- or space-separated list of action
 * names ("None" is the empty set).  On an unknown name returns -1 and names
 * it in err.
 */
struct ma_error;
int ma_action_set_parse(
    const char *list, ma_action_set *set_r, struct ma_error *err);
/* ma_action_set_format - "Copy,Create,..." (alphabetical) or "None". */
struct ma_buf;
int ma_action_set_format(ma_action_set set, struct ma_buf *out);

#endif
