/* SPDX-License-Identifier: MIT */
#ifndef MAILAUDIT_PLUGIN_H
#define MAILAUDIT_PLUGIN_H

/*
 * Internal interface between the files of the Dovecot plugin.  Nothing
 * here is exported from the .so: the build uses -fvisibility=hidden and
 * only the four symbols module-dir looks up are marked visible
 * (MAILAUDIT_EXPORT).  Our own symbols use the mailaudit_ prefix, never
 * one of Dovecot's.
 */

#include "lib.h"
#include "module-context.h"
#include "mail-user.h"
#include "mail-storage-private.h"

#include "ma-action.h"
#include "ma-policy.h"
#include "ma-record.h"

#define MAILAUDIT_EXPORT __attribute__((visibility("default")))

#define MAILAUDIT_DEFAULT_SOCKET "/run/mailaudit/ingest.sock"
#define MAILAUDIT_DEFAULT_SPOOL  "/var/spool/mailaudit"
#define MAILAUDIT_DEFAULT_POLICY "/var/lib/mailaudit/policy.snapshot"

/* MailItemsAccessed de-duplication window and aggregation window. */
#define MAILAUDIT_DEDUP_MS          (60 * 60 * 1000)
#define MAILAUDIT_AGG_WINDOW_MS     (2 * 60 * 1000)
#define MAILAUDIT_DEDUP_SLOTS       2048 /* power of two, 16 bytes each */
#define MAILAUDIT_MAX_BOUND_FOLDERS 256

/* Where a mailbox lives and how the acting session reaches it. */
struct mailaudit_box_info {
	const char *mbox;   /* mailbox owner */
	const char *folder; /* folder name inside the owner's mailbox */
	enum ma_logon logon;
};

/* Per mail_user state; also attached to autocreated users (unused). */
struct mailaudit_user {
	union mail_user_module_context module_ctx;
	struct mail_user *user;

	const char *socket_path, *spool_dir, *policy_path, *server;
	const char *actor;        /* who acts: login user or master user */
	const char *impersonated; /* master logins: the login user */
	const char *login_user;   /* doveadm: the kernel's audit login uid */
	const char *client_ip, *proto;
	char *client_info; /* changes when the client sends IMAP ID */
	bool admin;        /* master login or doveadm */
	bool delivery;     /* lmtp/lda: only autoexpunge is audited */
	bool session;      /* a real login (not autocreated) */
	bool cached_only;  /* header lookups never open mail files */

	/* The last mail copied by a MOVE: its expunge is part of the move. */
	struct mail *move_src;
	uint32_t move_src_uid;

	/* FolderBind: folders already bound in this session. */
	ARRAY_TYPE(const_string) bound_folders;

	/* MailItemsAccessed: the open aggregate and the per-hour dedup. */
	struct ma_record agg;
	bool agg_active;
	int64_t agg_start_ms;
	struct mailaudit_dedup_slot *dedup;
	unsigned int dedup_used;
};

#define MAILAUDIT_USER_CONTEXT(obj) MODULE_CONTEXT(obj, mailaudit_user_module)
extern MODULE_CONTEXT_DEFINE(mailaudit_user_module, &mail_user_module_register);

/* mailaudit-plugin.c */
struct mailaudit_user *mailaudit_user_get(struct mail_user *user);
/* The session user of this process (ManageSieve, doveadm): may be NULL. */
struct mailaudit_user *mailaudit_current_user(void);
void mailaudit_box_info_get(struct mailaudit_user *muser, struct mailbox *box,
    struct mailaudit_box_info *info_r);
void mailaudit_ns_info_get(struct mailaudit_user *muser,
    struct mail_namespace *ns, const char *vname,
    struct mailaudit_box_info *info_r);
/* Audited actions for this mailbox owner / logon type (cached). */
ma_action_set mailaudit_policy_mask(struct mailaudit_user *muser,
    const char *mbox, enum ma_logon logon, bool *subjects_r);
static inline bool
mailaudit_wants(ma_action_set mask, enum ma_action action)
{
	return (mask & MA_ACTION_BIT(action)) != 0;
}
/* The process's record for building one action (reset, no allocation);
   put it back once emitted.  Only one is out at a time. */
struct ma_record *mailaudit_record_get(void);
void mailaudit_record_put(struct ma_record **rec);
/* Fill the session fields (user, sess, ip, client, proto, server, time,
   logon, mbox, folder) of a fresh record.  The record points at the
   strings of muser and info; it must be emitted while they exist. */
void mailaudit_record_begin(struct mailaudit_user *muser, struct ma_record *rec,
    enum ma_action action, const struct mailaudit_box_info *info);
/* Encode rec (splitting its items when a frame would be too big) and hand
   the frames to the sender.  rec is left untouched. */
void mailaudit_record_emit(
    struct mailaudit_user *muser, const struct ma_record *rec);
/* mailaudit_session_wants - fill info for an action on the session's own
   mailbox (no folder: logins, Sieve rules) and say whether the policy
   audits action there. */
bool mailaudit_session_wants(struct mailaudit_user *muser,
    enum ma_action action, struct mailaudit_box_info *info_r);
/* Message-ID and (if subjects) Subject of mail, with our own reads
   hidden from the access hook; cached_only: never open the mail file for
   them.  Strings are data-stack allocated. */
void mailaudit_mail_headers(struct mailaudit_user *muser, struct mail *mail,
    bool subjects, bool cached_only, const char **msgid_r,
    const char **subject_r);
/* True while the plugin itself reads a mail (access hook ignores it). */
extern bool mailaudit_reading;

/* mailaudit-send.c: one sender per process, shared by its users. */
void mailaudit_send_configure(const char *socket_path, const char *spool_dir);
void mailaudit_send_frame(const char *frame, size_t len);
/* Wait briefly for acks, spool anything unacknowledged. */
void mailaudit_send_flush(unsigned int wait_msecs);
void mailaudit_send_deinit(void);

/* mailaudit-storage.c */
void mailaudit_storage_init(struct module *module);
void mailaudit_storage_deinit(void);
void mailaudit_user_storage_init(struct mailaudit_user *muser);
void mailaudit_user_storage_deinit(struct mailaudit_user *muser);
/* Emit the pending MailItemsAccessed aggregate, if any. */
void mailaudit_access_flush(struct mailaudit_user *muser);
void mailaudit_mailbox_opened(struct mailbox *box);
void mailaudit_mail_allocated(struct mail *mail);

/* mailaudit-acl.c */
void mailaudit_acl_namespace_added(struct mail_namespace *ns);
void mailaudit_acl_deinit(void);

/* mailaudit-events.c */
void mailaudit_events_init(void);
void mailaudit_events_deinit(void);
/* Replace the client string's suffix (";ClientName=...", or NULL). */
void mailaudit_client_info_set(struct mailaudit_user *muser, const char *extra);
/* ";ClientName=x;ClientVersion=y" from an IMAP ID argument list such as
   ("name" "x" "version" "y"), or NULL if it names neither. */
const char *mailaudit_id_suffix(const char *id_args);

#endif
