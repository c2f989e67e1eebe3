/* SPDX-License-Identifier: MIT */
/*
 * What the plugin learns from outside the mail storage API:
 *
 *  - UpdateInboxRules from Pigeonhole's sieve_* events (ManageSieve
 *    PUTSCRIPT/SETACTIVE/RENAMESCRIPT/DELETESCRIPT, doveadm sieve).
 *    Pigeonhole has no hooks for plugins, but lib-sieve emits debug
 *    events, which reach event_register_callback() listeners when some
 *    stats metric's filter wants them (docs/PLUGIN.md shows the metric).
 *  - In the imap process only: the end of each command (to flush the
 *    MailItemsAccessed aggregate), the IMAP ID a client sends after
 *    login (ClientName/ClientVersion in the client string) and SELECT or
 *    EXAMINE failures, which never reach the storage hooks.  The command
 *    hook API lives in the imap binary, so it is a weak reference and
 *    only used when this process is imap.
 */

#include "lib.h"
#include "imap-utf7.h"
#include "str.h"
#include "lib-event-private.h"
#include "master-service.h"
#include "mail-namespace.h"
#include "imap-client.h"
#include "imap-commands.h"

#include "mailaudit-plugin.h"

#pragma weak command_hook_register
#pragma weak command_hook_unregister

#define MAILAUDIT_ID_VALUE_MAX 64

static bool mailaudit_cmd_hooked = FALSE;
static bool mailaudit_event_hooked = FALSE;

/*
 * mailaudit_args_next - next string of an IMAP/ManageSieve argument
 * list: a quoted string (with \ escapes) or an atom; parentheses are
 * skipped.  Returns NULL at the end.
 */
static const char *
mailaudit_args_next(const char **pp)
{
	const char *p = *pp;
	string_t *str;

	while (*p == ' ' || *p == '(' || *p == ')')
		p++;
	if (*p == '\0')
		return NULL;
	str = t_str_new(32);
	if (*p == '"') {
		for (p++; *p != '\0' && *p != '"'; p++) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			str_append_c(str, *p);
		}
		if (*p == '"')
			p++;
	} else {
		for (; *p != '\0' && *p != ' ' && *p != '(' && *p != ')'; p++)
			str_append_c(str, *p);
	}
	*pp = p;
	return str_c(str);
}

/* mailaudit_id_value - a value fit for the ';'-separated client string. */
static const char *
mailaudit_id_value(const char *value)
{
	string_t *str = t_str_new(32);

	for (; *value != '\0' && str_len(str) < MAILAUDIT_ID_VALUE_MAX;
	     value++) {
		if (*value == ';' || *value == '=')
			str_append_c(str, '_');
		else if ((unsigned char)*value < 0x20 || *value == 0x7f)
			str_append_c(str, '?');
		else
			str_append_c(str, *value);
	}
	return str_c(str);
}

const char *
mailaudit_id_suffix(const char *id_args)
{
	const char *key, *value, *name = NULL, *version = NULL;
	string_t *str;

	while ((key = mailaudit_args_next(&id_args)) != NULL &&
	       (value = mailaudit_args_next(&id_args)) != NULL) {
		if (strcasecmp(value, "NIL") == 0)
			continue;
		if (strcasecmp(key, "name") == 0)
			name = mailaudit_id_value(value);
		else if (strcasecmp(key, "version") == 0)
			version = mailaudit_id_value(value);
	}
	if (name == NULL && version == NULL)
		return NULL;
	str = t_str_new(64);
	if (name != NULL)
		str_printfa(str, ";ClientName=%s", name);
	if (version != NULL)
		str_printfa(str, ";ClientVersion=%s", version);
	return str_c(str);
}

/* Sieve -----------------------------------------------------------------*/

static const struct {
	const char *event, *operation;
} mailaudit_sieve_events[] = {
    {"sieve_storage_save_finished", "Put"},
    {"sieve_script_activated", "Activate"},
    {"sieve_storage_deactivated", "Deactivate"},
    {"sieve_script_renamed", "Rename"},
    {"sieve_script_deleted", "Delete"},
};

static void
mailaudit_sieve_emit(
    struct mailaudit_user *muser, struct event *event, const char *operation)
{
	struct mailaudit_box_info info;
	const char *name, *old_name = NULL, *args, *error;
	struct ma_record *rec;

	if (!mailaudit_session_wants(
		muser, MA_ACTION_UPDATE_INBOX_RULES, &info))
		return;
	name = event_find_field_recursive_str(event, "script_name");
	if (strcmp(operation, "Rename") == 0) {
		name = event_find_field_recursive_str(event, "new_script_name");
		/* Pigeonhole 0.5.19 puts the new name in old_script_name
		   too; the command's own arguments have the real pair. */
		args = event_find_field_recursive_str(event, "cmd_args");
		if (args != NULL)
			old_name = mailaudit_args_next(&args);
		if (old_name == NULL) {
			old_name = event_find_field_recursive_str(
			    event, "old_script_name");
		}
	}
	error = event_find_field_recursive_str(event, "error");
	rec = mailaudit_record_get();
	mailaudit_record_begin(muser, rec, MA_ACTION_UPDATE_INBOX_RULES, &info);
	if (error != NULL && *error != '\0')
		rec->result = MA_RESULT_FAILED;
	(void)ma_record_add_prop_ref(rec, "RuleOperation", NULL, operation);
	(void)ma_record_add_prop_ref(rec, "RuleName", old_name, name);
	mailaudit_record_emit(muser, rec);
	mailaudit_record_put(&rec);
}

static bool
mailaudit_event_callback(struct event *event, enum event_callback_type type,
    struct failure_context *ctx ATTR_UNUSED, const char *fmt ATTR_UNUSED,
    va_list args ATTR_UNUSED)
{
	struct mailaudit_user *muser;
	const char *name = event->sending_name;
	unsigned int i;

	if (type != EVENT_CALLBACK_TYPE_SEND || name == NULL ||
	    strncmp(name, "sieve_", 6) != 0)
		return TRUE;
	muser = mailaudit_current_user();
	if (muser == NULL || mailaudit_user_get(muser->user) == NULL)
		return TRUE;
	for (i = 0; i < N_ELEMENTS(mailaudit_sieve_events); i++) {
		if (strcmp(name, mailaudit_sieve_events[i].event) == 0) {
			T_BEGIN
			{
				mailaudit_sieve_emit(muser, event,
				    mailaudit_sieve_events[i].operation);
			}
			T_END;
			break;
		}
	}
	/* Never suppress the event for others. */
	return TRUE;
}

/* IMAP commands ----------------------------------------------------------*/

static void
mailaudit_bind_failed(struct mailaudit_user *muser, const char *args)
{
	struct mailaudit_box_info info;
	struct ma_record *rec;
	const char *vname = mailaudit_args_next(&args);
	string_t *utf8;

	if (vname == NULL)
		return;
	/* The argument is the client's modified UTF-7; successful binds
	   record the UTF-8 name, so must this one, or a search misses it. */
	utf8 = t_str_new(64);
	if (imap_utf7_to_utf8(vname, utf8) == 0)
		vname = str_c(utf8);
	mailaudit_ns_info_get(muser,
	    mail_namespace_find(muser->user->namespaces, vname), vname, &info);
	if (!mailaudit_wants(
		mailaudit_policy_mask(muser, info.mbox, info.logon, NULL),
		MA_ACTION_FOLDER_BIND))
		return;
	rec = mailaudit_record_get();
	mailaudit_record_begin(muser, rec, MA_ACTION_FOLDER_BIND, &info);
	rec->result = MA_RESULT_FAILED;
	mailaudit_record_emit(muser, rec);
	mailaudit_record_put(&rec);
}

static void
mailaudit_cmd_pre(struct client_command_context *cmd ATTR_UNUSED)
{
}

static void
mailaudit_cmd_post(struct client_command_context *cmd)
{
	struct mailaudit_user *muser;
	const char *reply = cmd->tagline_reply;
	bool ok;

	/* post also runs after partial executions of long commands (no
	   tagged reply yet); state is not DONE yet even when finished. */
	if (reply == NULL || cmd->name == NULL || cmd->client->user == NULL)
		return;
	muser = mailaudit_user_get(cmd->client->user);
	if (muser == NULL)
		return;
	mailaudit_access_flush(muser);
	ok = strncmp(reply, "OK", 2) == 0;
	T_BEGIN
	{
		if (strcasecmp(cmd->name, "ID") == 0 && ok &&
		    cmd->args != NULL) {
			mailaudit_client_info_set(
			    muser, mailaudit_id_suffix(cmd->args));
		} else if ((strcasecmp(cmd->name, "SELECT") == 0 ||
			       strcasecmp(cmd->name, "EXAMINE") == 0) &&
			   strncmp(reply, "NO", 2) == 0 && cmd->args != NULL) {
			mailaudit_bind_failed(muser, cmd->args);
		}
	}
	T_END;
}

void
mailaudit_events_init(void)
{
	const char *service = master_service == NULL
				  ? ""
				  : master_service_get_name(master_service);

	/* Sieve scripts are managed by ManageSieve and doveadm, never from
	   an imap or pop3 session; there every event the process sends
	   would pass through the callback for nothing. */
	if (strcmp(service, "imap") != 0 && strcmp(service, "pop3") != 0) {
		event_register_callback(mailaudit_event_callback);
		mailaudit_event_hooked = TRUE;
	}
	if (command_hook_register != NULL && strcmp(service, "imap") == 0) {
		command_hook_register(mailaudit_cmd_pre, mailaudit_cmd_post);
		mailaudit_cmd_hooked = TRUE;
	}
}

void
mailaudit_events_deinit(void)
{
	if (mailaudit_cmd_hooked) {
		command_hook_unregister(mailaudit_cmd_pre, mailaudit_cmd_post);
		mailaudit_cmd_hooked = FALSE;
	}
	if (mailaudit_event_hooked) {
		event_unregister_callback(mailaudit_event_callback);
		mailaudit_event_hooked = FALSE;
	}
}
