/* SPDX-License-Identifier: MIT */
/*
 * ma-action.c - names and numbers of actions, logon types and results.
 *
 * Names are Exchange's, so analysts' queries and SIEM rules carry over.
 * The folder actions (FolderCreate, FolderDelete, FolderRename) are ours:
 * Exchange does not audit folder creation, deletion or renaming at all.
 */

#include "ma-action.h"

#include <string.h>
#include <strings.h>

#include "ma-util.h"

static const struct {
	const char *name;
	int record_type;
	bool never_emitted;
} actions[MA_ACTION_COUNT] = {
    [MA_ACTION_APPLY_RECORD] = {"ApplyRecord", 2, true},
    [MA_ACTION_COPY] = {"Copy", 3, false},
    [MA_ACTION_CREATE] = {"Create", 2, false},
    [MA_ACTION_FOLDER_BIND] = {"FolderBind", 2, false},
    [MA_ACTION_HARD_DELETE] = {"HardDelete", 3, false},
    [MA_ACTION_MAILBOX_LOGIN] = {"MailboxLogin", 2, false},
    [MA_ACTION_MAIL_ITEMS_ACCESSED] = {"MailItemsAccessed", 50, false},
    [MA_ACTION_MESSAGE_BIND] = {"MessageBind", 2, false},
    [MA_ACTION_MOVE] = {"Move", 3, false},
    [MA_ACTION_MOVE_TO_DELETED_ITEMS] = {"MoveToDeletedItems", 3, false},
    [MA_ACTION_RECORD_DELETE] = {"RecordDelete", 3, true},
    [MA_ACTION_SEARCH_QUERY_INITIATED] = {"SearchQueryInitiated", 2, false},
    [MA_ACTION_SEND] = {"Send", 2, false},
    [MA_ACTION_SEND_AS] = {"SendAs", 2, false},
    [MA_ACTION_SEND_ON_BEHALF] = {"SendOnBehalf", 2, false},
    [MA_ACTION_SOFT_DELETE] = {"SoftDelete", 3, false},
    [MA_ACTION_UPDATE] = {"Update", 2, false},
    [MA_ACTION_UPDATE_CALENDAR_DELEGATION] = {"UpdateCalendarDelegation", 2,
	true},
    [MA_ACTION_UPDATE_COMPLIANCE_TAG] = {"UpdateComplianceTag", 2, true},
    [MA_ACTION_UPDATE_FOLDER_PERMISSIONS] = {"UpdateFolderPermissions", 2,
	false},
    [MA_ACTION_UPDATE_INBOX_RULES] = {"UpdateInboxRules", 2, false},
    [MA_ACTION_FOLDER_CREATE] = {"FolderCreate", 2, false},
    [MA_ACTION_FOLDER_DELETE] = {"FolderDelete", 2, false},
    [MA_ACTION_FOLDER_RENAME] = {"FolderRename", 2, false},
};

static const char *const logon_names[] = {
    [MA_LOGON_OWNER] = "Owner",
    [MA_LOGON_ADMIN] = "Admin",
    [MA_LOGON_DELEGATE] = "Delegate",
    [MA_LOGON_TRANSPORT] = "Transport",
    [MA_LOGON_SYSTEM] = "SystemService",
};

static const char *const result_names[] = {
    [MA_RESULT_SUCCEEDED] = "Succeeded",
    [MA_RESULT_PARTIAL] = "PartiallySucceeded",
    [MA_RESULT_FAILED] = "Failed",
};

const char *
ma_action_name(enum ma_action action)
{
	if ((unsigned int)action >= MA_ACTION_COUNT)
		return NULL;
	return actions[action].name;
}

int
ma_action_lookup(const char *name, enum ma_action *action_r)
{
	for (unsigned int i = 0; i < MA_ACTION_COUNT; i++) {
		if (strcasecmp(name, actions[i].name) == 0) {
			*action_r = (enum ma_action)i;
			return 1;
		}
	}
	return 0;
}

bool
ma_action_never_emitted(enum ma_action action)
{
	return (unsigned int)action < MA_ACTION_COUNT &&
	       actions[action].never_emitted;
}

int
ma_action_record_type(enum ma_action action)
{
	if ((unsigned int)action >= MA_ACTION_COUNT)
		return 1;
	return actions[action].record_type;
}

const char *
ma_logon_name(enum ma_logon logon)
{
	if ((unsigned int)logon > MA_LOGON_MAX)
		return NULL;
	return logon_names[logon];
}

int
ma_logon_lookup(const char *name, enum ma_logon *logon_r)
{
	for (unsigned int i = 0; i <= MA_LOGON_MAX; i++) {
		if (strcasecmp(name, logon_names[i]) == 0 ||
		    (name[0] == (char)('0' + i) && name[1] == '\0')) {
			*logon_r = (enum ma_logon)i;
			return 1;
		}
	}
	/* Exchange's own alternative spelling. */
	if (strcasecmp(name, "Delegated") == 0) {
		*logon_r = MA_LOGON_DELEGATE;
		return 1;
	}
	return 0;
}

const char *
ma_result_name(enum ma_result result)
{
	if ((unsigned int)result > MA_RESULT_FAILED)
		return NULL;
	return result_names[result];
}

int
ma_result_lookup(const char *name, enum ma_result *result_r)
{
	for (unsigned int i = 0; i <= MA_RESULT_FAILED; i++) {
		if (strcasecmp(name, result_names[i]) == 0) {
			*result_r = (enum ma_result)i;
			return 1;
		}
	}
	return 0;
}

int
ma_action_set_parse(
    const char *list, ma_action_set *set_r, struct ma_error *err)
{
	ma_action_set set = 0;
	const char *p = list, *end;
	char word[64];
	enum ma_action action;
	bool none = false;

	for (;;) {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		end = p + strcspn(p, ", \t");
		if ((size_t)(end - p) >= sizeof(word))
			return ma_error_set(
			    err, "unknown action '%.*s...'", 40, p);
		memcpy(word, p, (size_t)(end - p));
		word[end - p] = '\0';
		if (strcasecmp(word, "None") == 0)
			none = true;
		else if (ma_action_lookup(word, &action) == 1)
			set |= MA_ACTION_BIT(action);
		else
			return ma_error_set(err, "unknown action '%s'", word);
		p = end;
	}
	if (none && set != 0)
		return ma_error_set(err, "'None' cannot be combined with "
					 "other actions");
	*set_r = set;
	return 0;
}

int
ma_action_set_format(ma_action_set set, struct ma_buf *out)
{
	bool first = true;

	if (set == 0)
		return ma_buf_puts(out, "None");
	/* The enum is in alphabetical order but for the folder actions,
	   which come last: print by name order anyway for stable output. */
	for (unsigned int i = 0; i < MA_ACTION_COUNT; i++) {
		if ((set & MA_ACTION_BIT(i)) == 0)
			continue;
		if (!first && ma_buf_putc(out, ',') < 0)
			return -1;
		if (ma_buf_puts(out, actions[i].name) < 0)
			return -1;
		first = false;
	}
	return 0;
}
