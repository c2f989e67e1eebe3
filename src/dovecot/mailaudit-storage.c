/* SPDX-License-Identifier: MIT */
/*
 * Mail storage side of the plugin: what notify reports (saves, copies,
 * moves, expunges, flag changes, folder create/delete/rename), folder
 * binds (SELECT/EXAMINE, POP3 sessions) and message reads
 * (MailItemsAccessed, MessageBind).
 *
 * Model, after Dovecot's mail_log: message events are collected per
 * mailbox transaction in a small pool and turned into records on commit
 * (where the UIDs of new messages become known); a rollback drops them.
 * Consecutive events with the same context (action, folder, target,
 * property change) share one record, up to MA_RECORD_MAX_ITEMS items.
 * Folder operations are reported by notify after they succeeded and are
 * emitted at once.
 *
 * A MOVE is a copy followed by an expunge of the source; the copy
 * callback remembers the source mail so that its expunge is not reported
 * as HardDelete.  Reads are seen where the mail file is actually opened
 * (mail_vfuncs.istream_opened): answers from the cache are not reads.
 * Reads are aggregated per folder into one MailItemsAccessed record
 * (MailAccessType=Bind), flushed at the end of the transaction, on a
 * context change, after two minutes or at logout, and de-duplicated per
 * message for an hour.  Nothing is throttled.
 *
 * Every hook checks the policy mask first, so an action that is not
 * audited costs a cached lookup and nothing else: no header reads, no
 * allocation.
 */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "seq-range-array.h"
#include "imap-util.h"
#include "lib-event.h"
#include "mail-namespace.h"
#include "notify-plugin.h"

#include "mailaudit-plugin.h"

#define MAILAUDIT_MAIL_CONTEXT(obj)                                            \
	MODULE_CONTEXT_REQUIRE(obj, mailaudit_mail_module)
static MODULE_CONTEXT_DEFINE_INIT(mailaudit_mail_module, &mail_module_register);

struct mailaudit_dedup_slot {
	uint64_t key; /* 0 = empty */
	int64_t ms;
};

struct mailaudit_event {
	enum ma_action action;
	enum ma_logon logon;
	const char *mbox, *folder, *dest_mbox, *dest_folder;
	uint32_t uid;
	int save_idx; /* index into saved_uids, -1 if the uid is known */
	const char *msgid, *subject;
	const char *prop, *old_value, *new_value;
};

struct mailaudit_txn {
	struct mailaudit_user *muser; /* NULL: nothing to audit */
	pool_t pool;                  /* created with the first event */
	ARRAY(struct mailaudit_event) events;
	unsigned int save_count; /* saves and copies so far */
	unsigned int header_reads;
};

/*
 * Header lookups per transaction that may open mail files.  Past this,
 * only Dovecot's cache is asked: "STORE 1:* +FLAGS" on a large folder
 * must not turn into one file open per message inside the command.  The
 * records still name every UID.
 */
#define MAILAUDIT_TXN_HEADER_READS 64

static struct notify_context *mailaudit_notify_ctx;

static bool
mailaudit_str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static struct mailaudit_event *
mailaudit_txn_add(struct mailaudit_txn *ctx, enum ma_action action,
    const struct mailaudit_box_info *info, uint32_t uid)
{
	struct mailaudit_event *ev;

	if (ctx->pool == NULL) {
		ctx->pool = pool_alloconly_create("mailaudit txn", 1024);
		p_array_init(&ctx->events, ctx->pool, 8);
	}
	ev = array_append_space(&ctx->events);
	ev->action = action;
	ev->logon = info->logon;
	ev->mbox = p_strdup(ctx->pool, info->mbox);
	ev->folder = p_strdup(ctx->pool, info->folder);
	ev->uid = uid;
	ev->save_idx = -1;
	return ev;
}

/* mailaudit_txn_headers - Message-ID and Subject into the event. */
static void
mailaudit_txn_headers(struct mailaudit_txn *ctx, struct mailaudit_event *ev,
    struct mail *mail, bool subjects)
{
	const char *msgid, *subject;

	mailaudit_mail_headers(ctx->muser, mail, subjects,
	    ctx->header_reads++ >= MAILAUDIT_TXN_HEADER_READS, &msgid,
	    &subject);
	ev->msgid = p_strdup(ctx->pool, msgid);
	ev->subject = p_strdup(ctx->pool, subject);
}

/* mailaudit_box_wants - info for box, and whether the policy audits
   action there; subjects_r gets the privacy setting. */
static bool
mailaudit_box_wants(struct mailaudit_user *muser, struct mailbox *box,
    enum ma_action action, struct mailaudit_box_info *info_r, bool *subjects_r)
{
	mailaudit_box_info_get(muser, box, info_r);
	return mailaudit_wants(mailaudit_policy_mask(muser, info_r->mbox,
				   info_r->logon, subjects_r),
	    action);
}

static void *
mailaudit_txn_begin(struct mailbox_transaction_context *t)
{
	struct mailaudit_txn *ctx = i_new(struct mailaudit_txn, 1);

	ctx->muser = mailaudit_user_get(t->box->storage->user);
	return ctx;
}

static void
mailaudit_mail_save(void *txn, struct mail *mail)
{
	struct mailaudit_txn *ctx = txn;
	struct mailaudit_box_info info;
	struct mailaudit_event *ev;
	unsigned int idx = ctx->save_count++;
	bool subjects;

	/* Delivery (lmtp/lda, POST_SESSION) is not an access. */
	if (ctx->muser == NULL || ctx->muser->delivery ||
	    (mail->box->flags & MAILBOX_FLAG_POST_SESSION) != 0)
		return;
	T_BEGIN
	{
		if (mailaudit_box_wants(ctx->muser, mail->box, MA_ACTION_CREATE,
			&info, &subjects)) {
			ev = mailaudit_txn_add(ctx, MA_ACTION_CREATE, &info, 0);
			ev->save_idx = (int)idx;
			mailaudit_txn_headers(ctx, ev, mail, subjects);
			/* The UID of a new mail is only known at commit. */
			mail->transaction->flags |=
			    MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS;
		}
	}
	T_END;
}

static enum ma_action
mailaudit_copy_action(struct mail *dst, bool moving)
{
	if (mailbox_has_special_use(dst->box, "\\Trash"))
		return MA_ACTION_MOVE_TO_DELETED_ITEMS;
	return moving ? MA_ACTION_MOVE : MA_ACTION_COPY;
}

static void
mailaudit_mail_copy(void *txn, struct mail *src, struct mail *dst)
{
	struct mailaudit_txn *ctx = txn;
	struct mailaudit_box_info info, dinfo;
	struct mailaudit_event *ev;
	struct mail_save_context *save_ctx = dst->transaction->save_ctx;
	bool moving = save_ctx != NULL && save_ctx->moving;
	enum ma_action action;
	bool subjects;

	ctx->save_count++;
	if (ctx->muser == NULL || ctx->muser->delivery)
		return;
	if (moving) {
		/* mailbox_move() expunges src right after this. */
		ctx->muser->move_src = src;
		ctx->muser->move_src_uid = src->uid;
	}
	action = mailaudit_copy_action(dst, moving);
	T_BEGIN
	{
		if (mailaudit_box_wants(
			ctx->muser, src->box, action, &info, &subjects)) {
			mailaudit_box_info_get(ctx->muser, dst->box, &dinfo);
			ev = mailaudit_txn_add(ctx, action, &info, src->uid);
			ev->dest_folder = p_strdup(ctx->pool, dinfo.folder);
			if (strcmp(dinfo.mbox, info.mbox) != 0)
				ev->dest_mbox = p_strdup(ctx->pool, dinfo.mbox);
			mailaudit_txn_headers(ctx, ev, src, subjects);
		}
	}
	T_END;
}

static void
mailaudit_mail_expunge(void *txn, struct mail *mail)
{
	struct mailaudit_txn *ctx = txn;
	struct mailaudit_user *muser = ctx->muser;
	struct mailaudit_box_info info;
	struct mailaudit_event *ev;
	bool autoexpunged = ((struct mail_private *)mail)->autoexpunged;
	bool subjects;

	if (muser == NULL)
		return;
	if (muser->move_src == mail && muser->move_src_uid == mail->uid) {
		/* The second half of a MOVE, already reported as Move. */
		muser->move_src = NULL;
		return;
	}
	if (muser->delivery && !autoexpunged)
		return;
	T_BEGIN
	{
		mailaudit_box_info_get(muser, mail->box, &info);
		if (autoexpunged)
			info.logon = MA_LOGON_SYSTEM;
		if (mailaudit_wants(mailaudit_policy_mask(muser, info.mbox,
					info.logon, &subjects),
			MA_ACTION_HARD_DELETE)) {
			ev = mailaudit_txn_add(
			    ctx, MA_ACTION_HARD_DELETE, &info, mail->uid);
			mailaudit_txn_headers(ctx, ev, mail, subjects);
		}
	}
	T_END;
}

/* mailaudit_flags_str - "\Seen \Flagged", NULL when empty. */
static const char *
mailaudit_flags_str(
    pool_t pool, enum mail_flags flags, const char *const *keywords)
{
	string_t *str = t_str_new(64);

	imap_write_flags(str,
	    (enum mail_flags)(flags & ~(unsigned int)MAIL_RECENT), keywords);
	return str_len(str) == 0 ? NULL : p_strdup(pool, str_c(str));
}

static void
mailaudit_flags_event(struct mailaudit_txn *ctx, struct mail *mail,
    enum mail_flags old_flags, enum mail_flags new_flags)
{
	const unsigned int keep = ~(unsigned int)(MAIL_DELETED | MAIL_RECENT);
	struct mailaudit_box_info info;
	struct mailaudit_event *ev;
	ma_action_set mask;
	bool subjects;

	mailaudit_box_info_get(ctx->muser, mail->box, &info);
	mask =
	    mailaudit_policy_mask(ctx->muser, info.mbox, info.logon, &subjects);
	if ((old_flags & MAIL_DELETED) == 0 &&
	    (new_flags & MAIL_DELETED) != 0 &&
	    mailaudit_wants(mask, MA_ACTION_SOFT_DELETE)) {
		ev = mailaudit_txn_add(
		    ctx, MA_ACTION_SOFT_DELETE, &info, mail->uid);
		mailaudit_txn_headers(ctx, ev, mail, subjects);
	}
	if (((old_flags ^ new_flags) & keep) != 0 &&
	    mailaudit_wants(mask, MA_ACTION_UPDATE)) {
		ev = mailaudit_txn_add(ctx, MA_ACTION_UPDATE, &info, mail->uid);
		ev->prop = "Flags";
		ev->old_value = mailaudit_flags_str(
		    ctx->pool, (enum mail_flags)(old_flags & keep), NULL);
		ev->new_value = mailaudit_flags_str(
		    ctx->pool, (enum mail_flags)(new_flags & keep), NULL);
		mailaudit_txn_headers(ctx, ev, mail, subjects);
	}
}

static void
mailaudit_mail_update_flags(
    void *txn, struct mail *mail, enum mail_flags old_flags)
{
	struct mailaudit_txn *ctx = txn;

	if (ctx->muser == NULL || ctx->muser->delivery)
		return;
	T_BEGIN
	{
		mailaudit_flags_event(
		    ctx, mail, old_flags, mail_get_flags(mail));
	}
	T_END;
}

static const char *
mailaudit_keywords_str(pool_t pool, const char *const *keywords)
{
	if (keywords == NULL || keywords[0] == NULL)
		return NULL;
	return p_strdup(pool, t_strarray_join(keywords, " "));
}

static void
mailaudit_mail_update_keywords(
    void *txn, struct mail *mail, const char *const *old_keywords)
{
	struct mailaudit_txn *ctx = txn;
	struct mailaudit_box_info info;
	struct mailaudit_event *ev;
	bool subjects;

	if (ctx->muser == NULL || ctx->muser->delivery)
		return;
	T_BEGIN
	{
		if (mailaudit_box_wants(ctx->muser, mail->box, MA_ACTION_UPDATE,
			&info, &subjects)) {
			ev = mailaudit_txn_add(
			    ctx, MA_ACTION_UPDATE, &info, mail->uid);
			ev->prop = "Keywords";
			ev->old_value =
			    mailaudit_keywords_str(ctx->pool, old_keywords);
			ev->new_value = mailaudit_keywords_str(
			    ctx->pool, mail_get_keywords(mail));
			mailaudit_txn_headers(ctx, ev, mail, subjects);
		}
	}
	T_END;
}

/* mailaudit_event_same - may ev share the record started for prev? */
static bool
mailaudit_event_same(
    const struct mailaudit_event *a, const struct mailaudit_event *b)
{
	return a->action == b->action && a->logon == b->logon &&
	       mailaudit_str_eq(a->mbox, b->mbox) &&
	       mailaudit_str_eq(a->folder, b->folder) &&
	       mailaudit_str_eq(a->dest_mbox, b->dest_mbox) &&
	       mailaudit_str_eq(a->dest_folder, b->dest_folder) &&
	       mailaudit_str_eq(a->prop, b->prop) &&
	       mailaudit_str_eq(a->old_value, b->old_value) &&
	       mailaudit_str_eq(a->new_value, b->new_value);
}

static void
mailaudit_event_record(struct mailaudit_user *muser,
    const struct mailaudit_event *ev, struct ma_record *rec)
{
	struct mailaudit_box_info info;

	info.mbox = ev->mbox;
	info.folder = ev->folder;
	info.logon = ev->logon;
	mailaudit_record_begin(muser, rec, ev->action, &info);
	/* The events' strings live in the transaction's pool until the
	   records are emitted. */
	rec->dest_folder = ev->dest_folder;
	rec->dest_mailbox = ev->dest_mbox;
	if (ev->prop != NULL) {
		(void)ma_record_add_prop_ref(
		    rec, ev->prop, ev->old_value, ev->new_value);
	}
}

static void
mailaudit_txn_emit(
    struct mailaudit_txn *ctx, struct mail_transaction_commit_changes *changes)
{
	const struct mailaudit_event *ev, *prev = NULL;
	struct seq_range_iter iter;
	struct ma_record *rec = mailaudit_record_get();
	uint32_t uid;

	seq_range_array_iter_init(&iter, &changes->saved_uids);
	array_foreach(&ctx->events, ev) {
		if (prev != NULL &&
		    (!mailaudit_event_same(prev, ev) ||
			rec->item_count >= MA_RECORD_MAX_ITEMS)) {
			mailaudit_record_emit(ctx->muser, rec);
			prev = NULL;
		}
		if (prev == NULL)
			mailaudit_event_record(ctx->muser, ev, rec);
		uid = ev->uid;
		if (ev->save_idx >= 0 &&
		    (changes->no_read_perm ||
			!seq_range_array_iter_nth(
			    &iter, (unsigned int)ev->save_idx, &uid)))
			uid = 0;
		(void)ma_record_add_item_ref(
		    rec, uid, ev->msgid, ev->subject, 0);
		prev = ev;
	}
	if (prev != NULL)
		mailaudit_record_emit(ctx->muser, rec);
	mailaudit_record_put(&rec);
}

static void
mailaudit_txn_free(struct mailaudit_txn *ctx)
{
	pool_unref(&ctx->pool);
	i_free(ctx);
}

static void
mailaudit_txn_commit(void *txn, struct mail_transaction_commit_changes *changes)
{
	struct mailaudit_txn *ctx = txn;

	if (ctx->muser != NULL) {
		/* Reads done inside this transaction end with it. */
		mailaudit_access_flush(ctx->muser);
		if (ctx->pool != NULL) {
			T_BEGIN
			{
				mailaudit_txn_emit(ctx, changes);
			}
			T_END;
		}
	}
	mailaudit_txn_free(ctx);
}

static void
mailaudit_txn_rollback(void *txn)
{
	struct mailaudit_txn *ctx = txn;

	/* Reads happened even if the changes did not. */
	if (ctx->muser != NULL)
		mailaudit_access_flush(ctx->muser);
	mailaudit_txn_free(ctx);
}

/* mailaudit_folder_emit - a folder operation that already succeeded. */
static void
mailaudit_folder_emit(struct mailbox *box, enum ma_action action,
    struct mailbox *dest, bool system)
{
	struct mailaudit_user *muser = mailaudit_user_get(box->storage->user);
	struct mailaudit_box_info info, dinfo;
	struct ma_record *rec;

	if (muser == NULL || muser->delivery)
		return;
	T_BEGIN
	{
		mailaudit_box_info_get(muser, box, &info);
		if (system)
			info.logon = MA_LOGON_SYSTEM;
		if (mailaudit_wants(mailaudit_policy_mask(
					muser, info.mbox, info.logon, NULL),
			action)) {
			rec = mailaudit_record_get();
			mailaudit_record_begin(muser, rec, action, &info);
			if (dest != NULL) {
				mailaudit_box_info_get(muser, dest, &dinfo);
				rec->dest_folder = dinfo.folder;
				if (strcmp(dinfo.mbox, info.mbox) != 0)
					rec->dest_mailbox = dinfo.mbox;
			}
			mailaudit_record_emit(muser, rec);
			mailaudit_record_put(&rec);
		}
	}
	T_END;
}

static const char *
mailaudit_global_cmd(void)
{
	struct event *ev = event_get_global();

	return ev == NULL ? NULL
			  : event_find_field_recursive_str(ev, "cmd_name");
}

static void
mailaudit_mailbox_create(struct mailbox *box)
{
	const char *cmd = mailaudit_global_cmd();
	/* Folders created by auto=create are the server's doing. */
	bool system = mailbox_is_autocreated(box) &&
		      (cmd == NULL || strcasecmp(cmd, "CREATE") != 0);

	mailaudit_folder_emit(box, MA_ACTION_FOLDER_CREATE, NULL, system);
}

static void *
mailaudit_mailbox_delete_begin(struct mailbox *box)
{
	return box;
}

static void
mailaudit_mailbox_delete_commit(void *txn ATTR_UNUSED, struct mailbox *box)
{
	mailaudit_folder_emit(box, MA_ACTION_FOLDER_DELETE, NULL, FALSE);
}

static void
mailaudit_mailbox_delete_rollback(void *txn ATTR_UNUSED)
{
}

static void
mailaudit_mailbox_rename(struct mailbox *src, struct mailbox *dest)
{
	mailaudit_folder_emit(src, MA_ACTION_FOLDER_RENAME, dest, FALSE);
}

static const struct notify_vfuncs mailaudit_notify_vfuncs = {
    .mail_transaction_begin = mailaudit_txn_begin,
    .mail_save = mailaudit_mail_save,
    .mail_copy = mailaudit_mail_copy,
    .mail_expunge = mailaudit_mail_expunge,
    .mail_update_flags = mailaudit_mail_update_flags,
    .mail_update_keywords = mailaudit_mail_update_keywords,
    .mail_transaction_commit = mailaudit_txn_commit,
    .mail_transaction_rollback = mailaudit_txn_rollback,
    .mailbox_create = mailaudit_mailbox_create,
    .mailbox_delete_begin = mailaudit_mailbox_delete_begin,
    .mailbox_delete_commit = mailaudit_mailbox_delete_commit,
    .mailbox_delete_rollback = mailaudit_mailbox_delete_rollback,
    .mailbox_rename = mailaudit_mailbox_rename,
};

/* FolderBind -------------------------------------------------------------*/

/* mailaudit_bound_before - remember the folder; TRUE if it already was. */
static bool
mailaudit_bound_before(
    struct mailaudit_user *muser, const struct mailaudit_box_info *info)
{
	const char *key = t_strconcat(info->mbox, "\t", info->folder, NULL);
	const char *const *k;

	array_foreach(&muser->bound_folders, k) {
		if (strcmp(*k, key) == 0)
			return TRUE;
	}
	/* Past the cap we report again rather than grow: never lose. */
	if (array_count(&muser->bound_folders) < MAILAUDIT_MAX_BOUND_FOLDERS) {
		key = p_strdup(muser->user->pool, key);
		array_push_back(&muser->bound_folders, &key);
	}
	return FALSE;
}

void
mailaudit_mailbox_opened(struct mailbox *box)
{
	struct mailaudit_user *muser = mailaudit_user_get(box->storage->user);
	struct mailaudit_box_info info;
	struct ma_record *rec;
	const char *cmd;

	if (muser == NULL || muser->delivery)
		return;
	if ((box->flags & MAILBOX_FLAG_POP3_SESSION) == 0) {
		/* Opens happen for STATUS, APPEND, COPY targets ...; only a
		   client's SELECT/EXAMINE is a bind. */
		cmd = mailaudit_global_cmd();
		if (cmd == NULL || (strcasecmp(cmd, "SELECT") != 0 &&
				       strcasecmp(cmd, "EXAMINE") != 0))
			return;
	}
	T_BEGIN
	{
		mailaudit_box_info_get(muser, box, &info);
		if (mailaudit_wants(mailaudit_policy_mask(
					muser, info.mbox, info.logon, NULL),
			MA_ACTION_FOLDER_BIND) &&
		    !mailaudit_bound_before(muser, &info)) {
			rec = mailaudit_record_get();
			mailaudit_record_begin(
			    muser, rec, MA_ACTION_FOLDER_BIND, &info);
			mailaudit_record_emit(muser, rec);
			mailaudit_record_put(&rec);
		}
	}
	T_END;
}

/* MailItemsAccessed ------------------------------------------------------*/

static uint64_t
mailaudit_dedup_key(const struct mailaudit_box_info *info, uint32_t uid)
{
	/* FNV-1a over "mbox\0folder"; uid in the low half is never 0. */
	uint32_t h = 2166136261u;
	const char *p;

	for (p = info->mbox; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h *= 16777619u;
	for (p = info->folder; p != NULL && *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return ((uint64_t)h << 32) | uid;
}

static struct mailaudit_dedup_slot *
mailaudit_dedup_find(struct mailaudit_dedup_slot *table, uint64_t key)
{
	unsigned int i = (unsigned int)((key * 0x9e3779b97f4a7c15ULL) >> 40);

	for (;; i++) {
		i &= MAILAUDIT_DEDUP_SLOTS - 1;
		if (table[i].key == key || table[i].key == 0)
			return &table[i];
	}
}

/* mailaudit_dedup_purge - drop expired entries; all if still too full. */
static void
mailaudit_dedup_purge(struct mailaudit_user *muser, int64_t now)
{
	struct mailaudit_dedup_slot *old = muser->dedup, *slot;
	unsigned int i;

	muser->dedup =
	    i_new(struct mailaudit_dedup_slot, MAILAUDIT_DEDUP_SLOTS);
	muser->dedup_used = 0;
	for (i = 0; i < MAILAUDIT_DEDUP_SLOTS; i++) {
		if (old[i].key == 0 || now - old[i].ms >= MAILAUDIT_DEDUP_MS)
			continue;
		slot = mailaudit_dedup_find(muser->dedup, old[i].key);
		*slot = old[i];
		muser->dedup_used++;
	}
	i_free(old);
	if (muser->dedup_used >= MAILAUDIT_DEDUP_SLOTS / 2) {
		/* Forgetting only means reporting a read twice. */
		memset(muser->dedup, 0,
		    sizeof(*muser->dedup) * MAILAUDIT_DEDUP_SLOTS);
		muser->dedup_used = 0;
	}
}

/* mailaudit_dedup_seen - TRUE if this message was read within the hour. */
static bool
mailaudit_dedup_seen(struct mailaudit_user *muser, uint64_t key, int64_t now)
{
	struct mailaudit_dedup_slot *slot;

	if (muser->dedup == NULL) {
		muser->dedup =
		    i_new(struct mailaudit_dedup_slot, MAILAUDIT_DEDUP_SLOTS);
	}
	if (muser->dedup_used >= MAILAUDIT_DEDUP_SLOTS * 3 / 4)
		mailaudit_dedup_purge(muser, now);
	slot = mailaudit_dedup_find(muser->dedup, key);
	if (slot->key == key && now - slot->ms < MAILAUDIT_DEDUP_MS)
		return TRUE;
	if (slot->key == 0)
		muser->dedup_used++;
	slot->key = key;
	slot->ms = now;
	return FALSE;
}

void
mailaudit_access_flush(struct mailaudit_user *muser)
{
	if (!muser->agg_active)
		return;
	T_BEGIN
	{
		mailaudit_record_emit(muser, &muser->agg);
	}
	T_END;
	ma_record_reset(&muser->agg);
	muser->agg_active = FALSE;
}

static bool
mailaudit_agg_matches(struct mailaudit_user *muser,
    const struct mailaudit_box_info *info, int64_t now)
{
	const struct ma_record *agg = &muser->agg;

	return agg->logon_type == info->logon &&
	       mailaudit_str_eq(agg->mailbox, info->mbox) &&
	       mailaudit_str_eq(agg->folder, info->folder) &&
	       mailaudit_str_eq(agg->client_info, muser->client_info) &&
	       agg->item_count < MA_RECORD_MAX_ITEMS &&
	       now - muser->agg_start_ms < MAILAUDIT_AGG_WINDOW_MS;
}

static void
mailaudit_access_add(struct mailaudit_user *muser,
    const struct mailaudit_box_info *info, uint32_t uid, const char *msgid,
    const char *subject)
{
	int64_t now = ma_now_ms();

	if (muser->agg_active && !mailaudit_agg_matches(muser, info, now))
		mailaudit_access_flush(muser);
	if (!muser->agg_active) {
		mailaudit_record_begin(
		    muser, &muser->agg, MA_ACTION_MAIL_ITEMS_ACCESSED, info);
		/* The aggregate outlives the command, and with it the
		   folder's name; the client string changes on IMAP ID. */
		ma_record_set(&muser->agg, &muser->agg.mailbox, info->mbox);
		ma_record_set(&muser->agg, &muser->agg.folder, info->folder);
		ma_record_set(
		    &muser->agg, &muser->agg.client_info, muser->client_info);
		(void)ma_record_add_prop_ref(
		    &muser->agg, "MailAccessType", NULL, "Bind");
		muser->agg_active = TRUE;
		muser->agg_start_ms = now;
	}
	(void)ma_record_add_item(&muser->agg, uid, msgid, subject, 0);
	muser->agg.count = muser->agg.item_count;
}

static void
mailaudit_message_bind(struct mailaudit_user *muser,
    const struct mailaudit_box_info *info, uint32_t uid, const char *msgid,
    const char *subject)
{
	struct ma_record *rec = mailaudit_record_get();

	mailaudit_record_begin(muser, rec, MA_ACTION_MESSAGE_BIND, info);
	(void)ma_record_add_item_ref(rec, uid, msgid, subject, 0);
	mailaudit_record_emit(muser, rec);
	mailaudit_record_put(&rec);
}

/* mailaudit_internal_read - reasons that are not the client reading. */
static bool
mailaudit_internal_read(const char *reason)
{
	static const char *const internal[] = {
	    "search", "copying", "fts indexing", "pop3-migration", NULL};
	unsigned int i;

	if (reason == NULL)
		return FALSE;
	for (i = 0; internal[i] != NULL; i++) {
		if (strncmp(reason, internal[i], strlen(internal[i])) == 0)
			return TRUE;
	}
	return FALSE;
}

static void
mailaudit_access_note(struct mailaudit_user *muser, struct mail *mail)
{
	struct mailaudit_box_info info;
	const char *msgid, *subject;
	ma_action_set mask;
	bool subjects;

	mailaudit_box_info_get(muser, mail->box, &info);
	mask = mailaudit_policy_mask(muser, info.mbox, info.logon, &subjects);
	if (!mailaudit_wants(mask, MA_ACTION_MAIL_ITEMS_ACCESSED) &&
	    !mailaudit_wants(mask, MA_ACTION_MESSAGE_BIND))
		return;
	if (mailaudit_dedup_seen(
		muser, mailaudit_dedup_key(&info, mail->uid), ma_now_ms()))
		return;
	/* The client's read has the message open already. */
	mailaudit_mail_headers(muser, mail, subjects, FALSE, &msgid, &subject);
	if (mailaudit_wants(mask, MA_ACTION_MESSAGE_BIND))
		mailaudit_message_bind(muser, &info, mail->uid, msgid, subject);
	if (mailaudit_wants(mask, MA_ACTION_MAIL_ITEMS_ACCESSED))
		mailaudit_access_add(muser, &info, mail->uid, msgid, subject);
}

static int
mailaudit_istream_opened(struct mail *_mail, struct istream **stream)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	union mail_module_context *mmail = MAILAUDIT_MAIL_CONTEXT(mail);
	struct mailaudit_user *muser;
	int ret = 0;

	if (mmail->super.istream_opened != NULL)
		ret = mmail->super.istream_opened(_mail, stream);
	if (ret < 0 || mailaudit_reading || _mail->saving ||
	    mailaudit_internal_read(mail->get_stream_reason))
		return ret;
	muser = mailaudit_user_get(_mail->box->storage->user);
	if (muser != NULL) {
		T_BEGIN
		{
			mailaudit_access_note(muser, _mail);
		}
		T_END;
	}
	return ret;
}

void
mailaudit_mail_allocated(struct mail *_mail)
{
	struct mail_private *mail = (struct mail_private *)_mail;
	struct mailaudit_user *muser;
	struct mail_vfuncs *v = mail->vlast;
	union mail_module_context *mmail;

	/* Deliveries and unaudited users get no wrapper at all. */
	muser = MAILAUDIT_USER_CONTEXT(_mail->box->storage->user);
	if (muser == NULL || !muser->session || muser->delivery ||
	    (_mail->box->flags & MAILBOX_FLAG_POST_SESSION) != 0)
		return;
	mmail = p_new(mail->pool, union mail_module_context, 1);
	mmail->super = *v;
	mail->vlast = &mmail->super;
	v->istream_opened = mailaudit_istream_opened;
	MODULE_CONTEXT_SET_SELF(mail, mailaudit_mail_module, mmail);
}

/* Setup ------------------------------------------------------------------*/

void
mailaudit_user_storage_init(struct mailaudit_user *muser)
{
	ma_record_init(&muser->agg);
	p_array_init(&muser->bound_folders, muser->user->pool, 8);
}

void
mailaudit_user_storage_deinit(struct mailaudit_user *muser)
{
	ma_record_deinit(&muser->agg);
	i_free(muser->dedup);
	muser->dedup_used = 0;
}

void
mailaudit_storage_init(struct module *module ATTR_UNUSED)
{
	mailaudit_notify_ctx = notify_register(&mailaudit_notify_vfuncs);
}

void
mailaudit_storage_deinit(void)
{
	notify_unregister(mailaudit_notify_ctx);
}
