/* SPDX-License-Identifier: MIT */
/*
 * UpdateFolderPermissions: changes to a folder's ACL, whoever makes them
 * (IMAP SETACL/DELETEACL, doveadm acl, dsync is skipped elsewhere).
 *
 * Model: every ACL change of Dovecot's acl plugin ends in the backend's
 * object_update vfunc, so we wrap that function pointer of each backend
 * when its namespace gets its storage (our hooks run after acl's, lib01
 * sorts before lib90).  The wrapper reads the grantee's rights before
 * and after the change and reports both.  The acl plugin is optional:
 * its symbols are weak references, resolved at dlopen() when
 * lib01_acl_plugin.so is loaded and NULL otherwise, so the plugin also
 * loads where acl is not configured.
 */

#include "lib.h"
#include "str.h"
#include "mail-namespace.h"
#include "mailbox-list.h"
#include "acl-api-private.h"
#include "acl-plugin.h"

#include "mailaudit-plugin.h"

#pragma weak acl_mailbox_list_module
#pragma weak acl_mailbox_list_get_backend
#pragma weak acl_object_list_init
#pragma weak acl_object_list_next
#pragma weak acl_object_list_deinit

typedef int mailaudit_acl_update_fn(
    struct acl_object *aclobj, const struct acl_rights_update *update);

/*
 * Original vfuncs by backend.  Backends of one driver share the same
 * function, so after eviction the last one seen is a safe fallback.
 */
#define MAILAUDIT_ACL_SLOTS 16
static struct {
	struct acl_backend *backend;
	mailaudit_acl_update_fn *orig;
} mailaudit_acl_slots[MAILAUDIT_ACL_SLOTS];
static unsigned int mailaudit_acl_next;
static mailaudit_acl_update_fn *mailaudit_acl_last_orig;

static mailaudit_acl_update_fn *
mailaudit_acl_orig(struct acl_backend *backend)
{
	unsigned int i;

	for (i = 0; i < MAILAUDIT_ACL_SLOTS; i++) {
		if (mailaudit_acl_slots[i].backend == backend)
			return mailaudit_acl_slots[i].orig;
	}
	return mailaudit_acl_last_orig;
}

static bool
mailaudit_str_eq_id(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static const char *
mailaudit_acl_id(const struct acl_rights *rights)
{
	switch (rights->id_type) {
	case ACL_ID_ANYONE:
		return ACL_ID_NAME_ANYONE;
	case ACL_ID_AUTHENTICATED:
		return ACL_ID_NAME_AUTHENTICATED;
	case ACL_ID_OWNER:
		return ACL_ID_NAME_OWNER;
	case ACL_ID_USER:
		return t_strconcat(
		    ACL_ID_NAME_USER_PREFIX, rights->identifier, NULL);
	case ACL_ID_GROUP:
		return t_strconcat(
		    ACL_ID_NAME_GROUP_PREFIX, rights->identifier, NULL);
	case ACL_ID_GROUP_OVERRIDE:
		return t_strconcat(ACL_ID_NAME_GROUP_OVERRIDE_PREFIX,
		    rights->identifier, NULL);
	case ACL_ID_TYPE_COUNT:
		break;
	}
	return "unknown";
}

static const char *
mailaudit_acl_mode(enum acl_modify_mode mode)
{
	switch (mode) {
	case ACL_MODIFY_MODE_REMOVE:
		return "Remove";
	case ACL_MODIFY_MODE_ADD:
		return "Add";
	case ACL_MODIFY_MODE_REPLACE:
		return "Replace";
	case ACL_MODIFY_MODE_CLEAR:
		return "Clear";
	}
	return "Unknown";
}

static const char *
mailaudit_acl_names(const char *const *names)
{
	string_t *str = t_str_new(64);

	for (; names != NULL && *names != NULL; names++) {
		if (str_len(str) > 0)
			str_append_c(str, ' ');
		str_append(str, *names);
	}
	return str_len(str) == 0 ? NULL : str_c(str);
}

/* mailaudit_acl_current - the grantee's rights now, "" if it has none. */
static const char *
mailaudit_acl_current(struct acl_object *aclobj, const struct acl_rights *want)
{
	struct acl_object_list_iter *iter;
	struct acl_rights rights;
	const char *result = NULL, *names;

	iter = acl_object_list_init(aclobj);
	while (acl_object_list_next(iter, &rights)) {
		if (rights.id_type != want->id_type || rights.global ||
		    !mailaudit_str_eq_id(rights.identifier, want->identifier))
			continue;
		names = mailaudit_acl_names(rights.rights);
		result = names == NULL ? "" : names;
		names = mailaudit_acl_names(rights.neg_rights);
		if (names != NULL)
			result = t_strdup_printf("%s -%s", result, names);
	}
	(void)acl_object_list_deinit(&iter);
	return result;
}

static void
mailaudit_acl_emit(struct mailaudit_user *muser,
    const struct mailaudit_box_info *info,
    const struct acl_rights_update *update, const char *old_rights,
    const char *new_rights, bool failed)
{
	struct ma_record rec;

	ma_record_init(&rec);
	mailaudit_record_begin(
	    muser, &rec, MA_ACTION_UPDATE_FOLDER_PERMISSIONS, info);
	if (failed)
		rec.result = MA_RESULT_FAILED;
	(void)ma_record_add_prop(
	    &rec, "Member", NULL, mailaudit_acl_id(&update->rights));
	(void)ma_record_add_prop(&rec, "Rights", old_rights, new_rights);
	(void)ma_record_add_prop(
	    &rec, "ModifyMode", NULL, mailaudit_acl_mode(update->modify_mode));
	mailaudit_record_emit(muser, &rec);
	ma_record_deinit(&rec);
}

static int
mailaudit_acl_object_update(
    struct acl_object *aclobj, const struct acl_rights_update *update)
{
	mailaudit_acl_update_fn *orig = mailaudit_acl_orig(aclobj->backend);
	struct mailbox_list *list = aclobj->backend->list;
	struct mailaudit_user *muser;
	struct mailaudit_box_info info;
	const char *old_rights, *new_rights = NULL;
	int ret;

	muser = mailaudit_user_get(mailbox_list_get_user(list));
	if (muser == NULL)
		return orig(aclobj, update);
	T_BEGIN
	{
		mailaudit_ns_info_get(muser, mailbox_list_get_namespace(list),
		    mailbox_list_get_vname(list, aclobj->name), &info);
		if (!mailaudit_wants(mailaudit_policy_mask(
					 muser, info.mbox, info.logon, NULL),
			MA_ACTION_UPDATE_FOLDER_PERMISSIONS)) {
			ret = orig(aclobj, update);
		} else {
			old_rights =
			    mailaudit_acl_current(aclobj, &update->rights);
			ret = orig(aclobj, update);
			if (ret == 0) {
				new_rights = mailaudit_acl_current(
				    aclobj, &update->rights);
			}
			mailaudit_acl_emit(muser, &info, update, old_rights,
			    new_rights, ret < 0);
		}
	}
	T_END;
	return ret;
}

void
mailaudit_acl_namespace_added(struct mail_namespace *ns)
{
	struct acl_backend *backend;
	unsigned int i;

	if (&acl_mailbox_list_module == NULL ||
	    acl_mailbox_list_get_backend == NULL ||
	    acl_object_list_init == NULL || ACL_LIST_CONTEXT(ns->list) == NULL)
		return;
	backend = acl_mailbox_list_get_backend(ns->list);
	if (backend == NULL ||
	    backend->v.object_update == mailaudit_acl_object_update)
		return;
	for (i = 0; i < MAILAUDIT_ACL_SLOTS; i++) {
		if (mailaudit_acl_slots[i].backend == backend)
			break;
	}
	if (i == MAILAUDIT_ACL_SLOTS) {
		i = mailaudit_acl_next;
		mailaudit_acl_next =
		    (mailaudit_acl_next + 1) % MAILAUDIT_ACL_SLOTS;
	}
	mailaudit_acl_slots[i].backend = backend;
	mailaudit_acl_slots[i].orig = backend->v.object_update;
	mailaudit_acl_last_orig = backend->v.object_update;
	backend->v.object_update = mailaudit_acl_object_update;
}

void
mailaudit_acl_deinit(void)
{
	memset(mailaudit_acl_slots, 0, sizeof(mailaudit_acl_slots));
	mailaudit_acl_last_orig = NULL;
}
