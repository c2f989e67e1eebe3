/* SPDX-License-Identifier: MIT */
/*
 * mailaudit Dovecot plugin: entry points, per-user state, logon-type
 * classification, the per-process policy cache and record building.
 *
 * Model: the plugin is a thin sensor.  It observes mail storage hooks
 * (notify, mailbox/mail vfunc wrappers, the ACL backend, Sieve events),
 * turns what it sees into struct ma_record, encodes each record as one
 * wire frame and hands it to the sender (mailaudit-send.c), which never
 * blocks the mail process for more than a few milliseconds and spools to
 * disk when the daemon cannot take the frame.  The workload is one IMAP,
 * POP3 or ManageSieve session per process, or many short users in
 * lmtp/doveadm processes, so all caches here are small and per process.
 *
 * Deliberately left out: anything the daemon does (storage, retention,
 * policy editing).  Delivery (lmtp/lda) is not audited, and dsync is
 * skipped, because neither is an access by a person.
 */

#include "lib.h"
#include "hostpid.h"
#include "net.h"
#include "str.h"
#include "failures.h"
#include "mail-namespace.h"
#include "mail-storage-hooks.h"
#include "mail-cache.h"
#include "message-header-decode.h"
#include "strnum.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ma-proto.h"
#include "mailaudit-plugin.h"

static void mailaudit_doveadm_operator(struct mailaudit_user *muser);

struct mailaudit_user_module mailaudit_user_module =
    MODULE_CONTEXT_INIT(&mail_user_module_register);

MAILAUDIT_EXPORT const char *mailaudit_plugin_version = DOVECOT_ABI_VERSION;
MAILAUDIT_EXPORT const char *mailaudit_plugin_dependencies[] = {"notify", NULL};
MAILAUDIT_EXPORT void mailaudit_plugin_init(struct module *module);
MAILAUDIT_EXPORT void mailaudit_plugin_deinit(void);

bool mailaudit_reading = FALSE;

static struct mailaudit_user *mailaudit_session_user = NULL;

/*
 * Policy cache.  A process sees few mailboxes (one session, or one user
 * at a time in lmtp/doveadm), so a small array beats a hash; it is
 * emptied when the snapshot changes, and the file is stat()ed at most
 * once a second.
 */
#define MAILAUDIT_POLICY_SLOTS 32
struct mailaudit_policy_slot {
	char *mbox, *actor;
	struct ma_policy_answer answer;
};
static struct {
	char *path;
	int64_t checked_ms;
	bool have_file;
	struct stat st;
	unsigned int count;
	struct mailaudit_policy_slot slots[MAILAUDIT_POLICY_SLOTS];
} mailaudit_policy;

/* The frame buffer is reused: one allocation for the process lifetime. */
static struct ma_buf mailaudit_frame;
static bool mailaudit_frame_ready = FALSE;

/* So is the record most actions are built in: after the first use its
   arena keeps one chunk, so building a record allocates nothing. */
static struct ma_record mailaudit_scratch;
static bool mailaudit_scratch_ready = FALSE, mailaudit_scratch_busy = FALSE;

static void
mailaudit_oom(size_t size)
{
	i_fatal_status(
	    FATAL_OUTOFMEM, "mailaudit: out of memory (%zu bytes)", size);
}

struct mailaudit_user *
mailaudit_user_get(struct mail_user *user)
{
	struct mailaudit_user *muser = MAILAUDIT_USER_CONTEXT(user);

	/* dsync replays changes made elsewhere: auditing them would record
	   the replication, not the person, and double every record. */
	if (muser == NULL || !muser->session || user->dsyncing)
		return NULL;
	return muser;
}

struct mailaudit_user *
mailaudit_current_user(void)
{
	return mailaudit_session_user;
}

/* mailaudit_ns_info_get - owner, folder and logon type for a vname. */
void
mailaudit_ns_info_get(struct mailaudit_user *muser, struct mail_namespace *ns,
    const char *vname, struct mailaudit_box_info *info_r)
{
	const char *mbox = muser->user->username;
	enum ma_logon logon = MA_LOGON_OWNER;

	info_r->folder = vname;
	if (ns != NULL && ns->type != MAIL_NAMESPACE_TYPE_PRIVATE) {
		/* Folder names are recorded as the owner sees them. */
		if (ns->prefix_len > 0 &&
		    strncmp(vname, ns->prefix, ns->prefix_len) == 0)
			info_r->folder = vname + ns->prefix_len;
		if (ns->owner != NULL) {
			mbox = ns->owner->username;
			if (strcmp(mbox, muser->user->username) != 0)
				logon = MA_LOGON_DELEGATE;
		} else {
			/* Public namespace: the namespace is the mailbox. */
			mbox = t_strdup_printf("public:%s",
			    t_strcut(ns->prefix, mail_namespace_get_sep(ns)));
			logon = MA_LOGON_DELEGATE;
		}
	}
	if (muser->admin)
		logon = MA_LOGON_ADMIN;
	info_r->mbox = mbox;
	info_r->logon = logon;
}

void
mailaudit_box_info_get(struct mailaudit_user *muser, struct mailbox *box,
    struct mailaudit_box_info *info_r)
{
	mailaudit_ns_info_get(
	    muser, mailbox_get_namespace(box), mailbox_get_vname(box), info_r);
}

/* mailaudit_policy_refresh - drop the cache if the snapshot changed. */
static void
mailaudit_policy_refresh(const char *path)
{
	struct stat st;
	int64_t now = ma_now_ms();
	bool have, changed;
	unsigned int i;

	if (mailaudit_policy.path != NULL &&
	    strcmp(mailaudit_policy.path, path) == 0 &&
	    now - mailaudit_policy.checked_ms < 1000)
		return;
	mailaudit_policy.checked_ms = now;
	have = stat(path, &st) == 0;
	changed =
	    mailaudit_policy.path == NULL ||
	    strcmp(mailaudit_policy.path, path) != 0 ||
	    have != mailaudit_policy.have_file ||
	    (have &&
		(st.st_mtim.tv_sec != mailaudit_policy.st.st_mtim.tv_sec ||
		    st.st_mtim.tv_nsec != mailaudit_policy.st.st_mtim.tv_nsec ||
		    st.st_ino != mailaudit_policy.st.st_ino ||
		    st.st_size != mailaudit_policy.st.st_size));
	if (!changed)
		return;
	for (i = 0; i < mailaudit_policy.count; i++) {
		i_free(mailaudit_policy.slots[i].mbox);
		i_free(mailaudit_policy.slots[i].actor);
	}
	mailaudit_policy.count = 0;
	i_free(mailaudit_policy.path);
	mailaudit_policy.path = i_strdup(path);
	mailaudit_policy.have_file = have;
	if (have)
		mailaudit_policy.st = st;
}

static const struct ma_policy_answer *
mailaudit_policy_answer(const char *path, const char *mbox, const char *actor)
{
	struct mailaudit_policy_slot *slot;
	struct ma_error err;
	unsigned int i;

	mailaudit_policy_refresh(path);
	for (i = 0; i < mailaudit_policy.count; i++) {
		slot = &mailaudit_policy.slots[i];
		if (strcmp(slot->mbox, mbox) == 0 &&
		    strcmp(slot->actor, actor) == 0)
			return &slot->answer;
	}
	if (mailaudit_policy.count == MAILAUDIT_POLICY_SLOTS) {
		/* Many mailboxes (doveadm -A): start over rather than grow. */
		for (i = 0; i < mailaudit_policy.count; i++) {
			i_free(mailaudit_policy.slots[i].mbox);
			i_free(mailaudit_policy.slots[i].actor);
		}
		mailaudit_policy.count = 0;
	}
	slot = &mailaudit_policy.slots[mailaudit_policy.count++];
	slot->mbox = i_strdup(mbox);
	slot->actor = i_strdup(actor);
	memset(&err, 0, sizeof(err));
	if (ma_policy_snapshot_lookup(path, mbox, actor, &slot->answer, &err) <
	    0) {
		/* The answer is still filled with the default sets, so we
		   keep auditing; say once per mailbox why. */
		i_error("mailaudit: policy snapshot %s: %s (using defaults)",
		    path, err.msg);
	}
	return &slot->answer;
}

ma_action_set
mailaudit_policy_mask(struct mailaudit_user *muser, const char *mbox,
    enum ma_logon logon, bool *subjects_r)
{
	const struct ma_policy_answer *answer;

	answer =
	    mailaudit_policy_answer(muser->policy_path, mbox, muser->actor);
	if (subjects_r != NULL)
		*subjects_r = answer->subjects;
	return ma_policy_answer_actions(answer, logon);
}

struct ma_record *
mailaudit_record_get(void)
{
	/* Records are built and emitted one at a time; nothing that runs
	   while one is built (encoding, sending, logging) builds another. */
	i_assert(!mailaudit_scratch_busy);
	if (!mailaudit_scratch_ready) {
		ma_record_init(&mailaudit_scratch);
		mailaudit_scratch_ready = TRUE;
	}
	mailaudit_scratch_busy = TRUE;
	return &mailaudit_scratch;
}

void
mailaudit_record_put(struct ma_record **_rec)
{
	i_assert(*_rec == &mailaudit_scratch);
	/* Drop pointers into memory that is about to go away; a record
	   that grew (a long item list) gives its extra chunks back. */
	ma_record_reset(&mailaudit_scratch);
	mailaudit_scratch_busy = FALSE;
	*_rec = NULL;
}

void
mailaudit_record_begin(struct mailaudit_user *muser, struct ma_record *rec,
    enum ma_action action, const struct mailaudit_box_info *info)
{
	ma_record_reset(rec);
	rec->time_ms = ma_now_ms();
	ma_uuid7(rec->id, rec->time_ms);
	/* Nothing is copied: session strings live as long as the user, and
	   the caller keeps info's strings until the record is emitted.  A
	   record that outlives them (the MailItemsAccessed aggregate) copies
	   what it must. */
	rec->operation = ma_action_name(action);
	rec->result = MA_RESULT_SUCCEEDED;
	rec->logon_type = info->logon;
	rec->user = muser->actor;
	rec->mailbox = info->mbox;
	rec->folder = info->folder;
	rec->session = muser->user->session_id;
	rec->client_ip = muser->client_ip;
	rec->client_info = muser->client_info;
	rec->protocol = muser->proto;
	rec->server = muser->server;
	if (muser->impersonated != NULL) {
		(void)ma_record_add_prop_ref(
		    rec, "ImpersonatedUser", NULL, muser->impersonated);
	}
	if (muser->login_user != NULL) {
		(void)ma_record_add_prop_ref(
		    rec, "LoginUser", NULL, muser->login_user);
	}
}

/* mailaudit_record_part - rec's header and props with items [from,to). */
static void
mailaudit_record_part(const struct ma_record *rec, unsigned int from,
    unsigned int to, struct ma_record *part)
{
	unsigned int i;

	ma_record_reset(part);
	part->time_ms = rec->time_ms;
	ma_uuid7(part->id, rec->time_ms);
	part->result = rec->result;
	part->logon_type = rec->logon_type;
	ma_record_set(part, &part->operation, rec->operation);
	ma_record_set(part, &part->user, rec->user);
	ma_record_set(part, &part->mailbox, rec->mailbox);
	ma_record_set(part, &part->folder, rec->folder);
	ma_record_set(part, &part->dest_folder, rec->dest_folder);
	ma_record_set(part, &part->dest_mailbox, rec->dest_mailbox);
	ma_record_set(part, &part->session, rec->session);
	ma_record_set(part, &part->client_ip, rec->client_ip);
	ma_record_set(part, &part->client_info, rec->client_info);
	ma_record_set(part, &part->protocol, rec->protocol);
	ma_record_set(part, &part->server, rec->server);
	for (i = 0; i < rec->prop_count; i++) {
		(void)ma_record_add_prop(part, rec->props[i].name,
		    rec->props[i].old_value, rec->props[i].new_value);
	}
	for (i = from; i < to; i++) {
		(void)ma_record_add_item(part, rec->items[i].uid,
		    rec->items[i].message_id, rec->items[i].subject,
		    rec->items[i].size);
	}
	if (rec->count != 0)
		part->count = to - from;
}

static void
mailaudit_record_emit_split(
    struct mailaudit_user *muser, const struct ma_record *rec)
{
	struct ma_record part;
	unsigned int half = rec->item_count / 2;

	if (rec->item_count < 2) {
		i_error("mailaudit: %s record for %s does not fit in a frame, "
			"1 record lost",
		    rec->operation, rec->mailbox);
		return;
	}
	ma_record_init(&part);
	mailaudit_record_part(rec, 0, half, &part);
	mailaudit_record_emit(muser, &part);
	mailaudit_record_part(rec, half, rec->item_count, &part);
	mailaudit_record_emit(muser, &part);
	ma_record_deinit(&part);
}

void
mailaudit_record_emit(struct mailaudit_user *muser, const struct ma_record *rec)
{
	if (!mailaudit_frame_ready) {
		ma_buf_init(&mailaudit_frame, MA_PROTO_MAX_FRAME);
		mailaudit_frame_ready = TRUE;
	}
	ma_buf_reset(&mailaudit_frame);
	if (ma_proto_encode_record(rec, &mailaudit_frame) < 0) {
		mailaudit_record_emit_split(muser, rec);
		return;
	}
	mailaudit_send_frame(mailaudit_frame.data, mailaudit_frame.len);
	if (mailaudit_frame.cap > 16 * 1024) {
		/* Keep the idle footprint small after a huge record. */
		ma_buf_deinit(&mailaudit_frame);
		mailaudit_frame_ready = FALSE;
	}
}

static const char *
mailaudit_trim(const char *value)
{
	size_t len;

	while (*value == ' ' || *value == '\t')
		value++;
	len = strlen(value);
	while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t' ||
			      value[len - 1] == '\r' || value[len - 1] == '\n'))
		len--;
	return len == 0 ? NULL : t_strndup(value, len);
}

/* mailaudit_cut_utf8 - cut at max bytes without splitting a character. */
static const char *
mailaudit_cut_utf8(const char *value, size_t max)
{
	size_t len = strlen(value);

	if (len <= max)
		return value;
	len = max;
	while (len > 0 && ((unsigned char)value[len] & 0xc0) == 0x80)
		len--;
	return t_strndup(value, len);
}

/*
 * Reading Message-ID and Subject from Dovecot's cache in one lookup.
 *
 * mail_get_first_header() registers the field by name and asks the cache
 * once per header; the two headers are normally cached together, so one
 * mail_cache_lookup_headers() for both costs half as much.  The values
 * must be exactly what mail_get_first_header() and
 * mail_get_first_header_utf8() return for cached headers (Dovecot
 * 2.3.19's index-mail-headers.c): the first occurrence, blanks after the
 * colon skipped, NUL bytes as U+FFFD; the Subject also unfolded, MIME
 * words decoded to UTF-8 and NULs that decoding produced as spaces.
 * Anything else (a field not cached or not registered yet, a line this
 * code does not recognise, a fold Dovecot would call corrupted) makes it
 * give up, and the caller asks Dovecot header by header as before.
 */
#define MAILAUDIT_HDR_MSGID   0
#define MAILAUDIT_HDR_SUBJECT 1

static const char *const mailaudit_hdr_names[] = {"Message-ID", "Subject"};
static const char *const mailaudit_hdr_fields[] = {
    "hdr.Message-ID", "hdr.Subject"};

/* mailaudit_hdr_end - end of the (folded) header line starting at p. */
static const unsigned char *
mailaudit_hdr_end(const unsigned char *p, const unsigned char *end)
{
	for (; p < end; p++) {
		if (*p == '\n' &&
		    (p + 1 == end || (p[1] != ' ' && p[1] != '\t')))
			return p + 1;
	}
	return end;
}

/* mailaudit_hdr_which - the header a line belongs to, or -1. */
static int
mailaudit_hdr_which(const unsigned char *name, size_t len)
{
	unsigned int i;

	while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t'))
		len--;
	for (i = 0; i < N_ELEMENTS(mailaudit_hdr_names); i++) {
		if (strlen(mailaudit_hdr_names[i]) == len &&
		    strncasecmp(
			(const char *)name, mailaudit_hdr_names[i], len) == 0)
			return (int)i;
	}
	return -1;
}

/* mailaudit_hdr_value - the value as a string, NULs as U+FFFD. */
static const char *
mailaudit_hdr_value(const unsigned char *p, size_t len)
{
	string_t *str;
	size_t i;

	if (memchr(p, '\0', len) == NULL)
		return t_strndup(p, len);
	str = t_str_new(len + 8);
	for (i = 0; i < len; i++) {
		if (p[i] != '\0')
			str_append_c(str, (char)p[i]);
		else
			str_append(str, "\xEF\xBF\xBD");
	}
	return str_c(str);
}

/* mailaudit_hdr_utf8 - unfold and decode a Subject; FALSE if a line
   break is not followed by a blank (Dovecot re-reads the mail then). */
static bool
mailaudit_hdr_utf8(const char *value, const char **utf8_r)
{
	string_t *unfolded = NULL, *decoded;
	const char *p;
	size_t i;

	if (strchr(value, '\n') != NULL) {
		unfolded = t_str_new(strlen(value));
		for (p = value; *p != '\0'; p++) {
			if (*p != '\n') {
				str_append_c(unfolded, *p);
				continue;
			}
			/* the break and the blank after it become a space */
			str_append_c(unfolded, ' ');
			if (p[1] == '\0')
				break;
			if (p[1] != ' ' && p[1] != '\t')
				return FALSE;
			p++;
		}
		value = str_c(unfolded);
	}
	decoded = t_str_new(strlen(value) + 16);
	message_header_decode_utf8(
	    (const unsigned char *)value, strlen(value), decoded, NULL);
	if (strcmp(str_c(decoded), value) == 0) {
		*utf8_r = value;
		return TRUE;
	}
	/* decoding may produce NULs: they become spaces */
	for (i = 0; i < str_len(decoded); i++) {
		if (str_c(decoded)[i] == '\0')
			str_c_modifiable(decoded)[i] = ' ';
	}
	*utf8_r = str_c(decoded);
	return TRUE;
}

static bool
mailaudit_cached_headers(struct mail *mail, bool subjects, const char **msgid_r,
    const char **subject_r)
{
	const char *values[N_ELEMENTS(mailaudit_hdr_names)] = {NULL, NULL};
	unsigned int idx[N_ELEMENTS(mailaudit_hdr_fields)];
	unsigned int i, count = subjects ? 2 : 1;
	const unsigned char *p, *end, *line_end, *colon;
	string_t *dest;
	int which;

	if (mail->box->cache == NULL || mail->transaction->cache_view == NULL)
		return FALSE;
	for (i = 0; i < count; i++) {
		idx[i] = mail_cache_register_lookup(
		    mail->box->cache, mailaudit_hdr_fields[i]);
		if (idx[i] == UINT_MAX)
			return FALSE;
	}
	dest = t_str_new(256);
	if (mail_cache_lookup_headers(mail->transaction->cache_view, dest,
		mail->seq, idx, count) <= 0)
		return FALSE;
	/* header lines, each "Name: value\n" with its folds, in the order
	   of the message */
	p = str_data(dest);
	end = p + str_len(dest);
	for (; p < end; p = line_end) {
		line_end = mailaudit_hdr_end(p, end);
		colon = memchr(p, ':', (size_t)(line_end - p));
		if (colon == NULL)
			return FALSE;
		which = mailaudit_hdr_which(p, (size_t)(colon - p));
		if (which < 0 || (unsigned int)which >= count)
			return FALSE;
		if (values[which] != NULL)
			continue;
		for (p = colon + 1; p < line_end && (*p == ' ' || *p == '\t');
		     p++)
			;
		values[which] = mailaudit_hdr_value(
		    p, (size_t)(line_end - p) -
			   (line_end > p && line_end[-1] == '\n' ? 1 : 0));
	}
	if (values[MAILAUDIT_HDR_SUBJECT] != NULL &&
	    !mailaudit_hdr_utf8(
		values[MAILAUDIT_HDR_SUBJECT], &values[MAILAUDIT_HDR_SUBJECT]))
		return FALSE;
	/* Dovecot counts one cache hit per header it was asked for. */
	mail->transaction->stats.cache_hit_count += count;
	*msgid_r = values[MAILAUDIT_HDR_MSGID];
	*subject_r = values[MAILAUDIT_HDR_SUBJECT];
	return TRUE;
}

void
mailaudit_mail_headers(struct mailaudit_user *muser, struct mail *mail,
    bool subjects, bool cached_only, const char **msgid_r,
    const char **subject_r)
{
	enum mail_lookup_abort old_abort = mail->lookup_abort;
	bool old_reading = mailaudit_reading;
	const char *msgid = NULL, *subject = NULL;

	*msgid_r = NULL;
	*subject_r = NULL;
	if (mail->expunged)
		return;
	mailaudit_reading = TRUE;
	if (!mailaudit_cached_headers(mail, subjects, &msgid, &subject)) {
		msgid = subject = NULL;
		if ((muser->cached_only || cached_only) && !mail->saving)
			mail->lookup_abort = MAIL_LOOKUP_ABORT_NOT_IN_CACHE;
		if (mail_get_first_header(mail, "Message-ID", &msgid) <= 0)
			msgid = NULL;
		if (subjects &&
		    mail_get_first_header_utf8(mail, "Subject", &subject) <= 0)
			subject = NULL;
		mail->lookup_abort = old_abort;
	}
	mailaudit_reading = old_reading;
	if (msgid != NULL)
		*msgid_r = mailaudit_trim(msgid);
	if (subject != NULL) {
		subject = mailaudit_trim(subject);
		if (subject != NULL)
			subject =
			    mailaudit_cut_utf8(subject, MA_RECORD_MAX_SUBJECT);
		*subject_r = subject;
	}
}

static const char *
mailaudit_client_protocol(const char *service)
{
	if (strcmp(service, "imap") == 0)
		return "Client=POP3/IMAP4;Protocol=IMAP4";
	if (strcmp(service, "pop3") == 0)
		return "Client=POP3/IMAP4;Protocol=POP3";
	if (strcmp(service, "managesieve") == 0 ||
	    strcmp(service, "sieve") == 0)
		return "Client=ManageSieve;Protocol=ManageSieve";
	return t_strdup_printf("Client=%s;Protocol=%s", service, service);
}

static const char *
mailaudit_setting(struct mail_user *user, const char *name, const char *def)
{
	const char *value = mail_user_plugin_getenv(user, name);

	return value == NULL || *value == '\0' ? def : value;
}

static void
mailaudit_user_settings(struct mailaudit_user *muser)
{
	struct mail_user *user = muser->user;
	const char *master;

	muser->socket_path = mailaudit_setting(
	    user, "mailaudit_socket", MAILAUDIT_DEFAULT_SOCKET);
	muser->spool_dir = mailaudit_setting(
	    user, "mailaudit_spool_dir", MAILAUDIT_DEFAULT_SPOOL);
	muser->policy_path = mailaudit_setting(
	    user, "mailaudit_policy", MAILAUDIT_DEFAULT_POLICY);
	muser->server =
	    mailaudit_setting(user, "mailaudit_server", my_hostname);
	muser->cached_only =
	    mail_user_plugin_getenv_bool(user, "mailaudit_cached_only");
	muser->proto = user->service;
	muser->actor = user->username;

	master = mail_user_plugin_getenv(user, "master_user");
	if (master != NULL && *master != '\0') {
		/* The master user acts; the login user is who it poses as. */
		muser->admin = TRUE;
		muser->actor = p_strdup(user->pool, master);
		muser->impersonated = user->username;
	} else if (strcmp(user->service, "doveadm") == 0) {
		/* doveadm runs under the mail uid by now: the administrator is
		   named only by what the environment and the kernel say. */
		muser->admin = TRUE;
		muser->actor = "doveadm";
		mailaudit_doveadm_operator(muser);
	}
	muser->delivery = strcmp(user->service, "lmtp") == 0 ||
			  strcmp(user->service, "lda") == 0;
	if (user->conn.remote_ip != NULL && user->conn.remote_ip->family != 0) {
		muser->client_ip =
		    p_strdup(user->pool, net_ip2addr(user->conn.remote_ip));
	}
}

/*
 * mailaudit_doveadm_operator - who ran doveadm.  By now the process runs
 * under the mail uid and Dovecot has reset USER and HOME, so the only
 * trustworthy trace of the administrator is the audit login uid the
 * kernel keeps across su, sudo and privilege drops (set at login by
 * pam_loginuid); when it is set, record whose it is.
 */
static void
mailaudit_doveadm_operator(struct mailaudit_user *muser)
{
	char buf[32];
	unsigned long uid;
	struct passwd *pw;
	ssize_t n;
	int fd;

	fd = open("/proc/self/loginuid", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	i_close_fd(&fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	if (str_to_ulong(buf, &uid) < 0 || uid == (unsigned long)(uid_t)-1)
		return;
	pw = getpwuid((uid_t)uid);
	muser->login_user =
	    pw != NULL ? p_strdup(muser->user->pool, pw->pw_name)
		       : p_strdup_printf(muser->user->pool, "%lu", uid);
}

void
mailaudit_client_info_set(struct mailaudit_user *muser, const char *extra)
{
	const char *base = mailaudit_client_protocol(muser->user->service);

	i_free(muser->client_info);
	muser->client_info = extra == NULL || *extra == '\0'
				 ? i_strdup(base)
				 : i_strconcat(base, extra, NULL);
}

bool
mailaudit_session_wants(struct mailaudit_user *muser, enum ma_action action,
    struct mailaudit_box_info *info_r)
{
	info_r->mbox = muser->user->username;
	info_r->folder = NULL;
	info_r->logon = muser->admin ? MA_LOGON_ADMIN : MA_LOGON_OWNER;
	return mailaudit_wants(
	    mailaudit_policy_mask(muser, info_r->mbox, info_r->logon, NULL),
	    action);
}

static void
mailaudit_login_emit(struct mailaudit_user *muser)
{
	struct mailaudit_box_info info;
	struct ma_record *rec;

	if (!mailaudit_session_wants(muser, MA_ACTION_MAILBOX_LOGIN, &info))
		return;
	rec = mailaudit_record_get();
	mailaudit_record_begin(muser, rec, MA_ACTION_MAILBOX_LOGIN, &info);
	mailaudit_record_emit(muser, rec);
	mailaudit_record_put(&rec);
}

static void
mailaudit_user_deinit(struct mail_user *user)
{
	struct mailaudit_user *muser = MAILAUDIT_USER_CONTEXT(user);

	i_assert(muser != NULL);
	if (muser->session) {
		mailaudit_access_flush(muser);
		mailaudit_user_storage_deinit(muser);
		/* Logout: give the daemon a moment to confirm, then spool. */
		mailaudit_send_flush(20);
	}
	if (mailaudit_session_user == muser)
		mailaudit_session_user = NULL;
	i_free(muser->client_info);
	muser->module_ctx.super.deinit(user);
}

static void
mailaudit_mail_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct mailaudit_user *muser;
	const char *id;

	muser = p_new(user->pool, struct mailaudit_user, 1);
	muser->module_ctx.super = *v;
	user->vlast = &muser->module_ctx.super;
	v->deinit = mailaudit_user_deinit;
	MODULE_CONTEXT_SET(user, mailaudit_user_module, muser);
	muser->user = user;

	/* Autocreated users (shared-namespace owners, lmtp's raw user) are
	   never the actor: the session user's storage is. */
	if (user->autocreated || user->creator != NULL)
		return;
	muser->session = TRUE;
	mailaudit_user_settings(muser);
	id = mail_user_plugin_getenv(user, "mailaudit_client_id");
	mailaudit_client_info_set(
	    muser, id == NULL ? NULL : mailaudit_id_suffix(id));
	mailaudit_send_configure(muser->socket_path, muser->spool_dir);
	mailaudit_user_storage_init(muser);
	mailaudit_session_user = muser;
	if (!muser->delivery && !user->session_restored)
		mailaudit_login_emit(muser);
}

static struct mail_storage_hooks mailaudit_mail_storage_hooks = {
    .mail_user_created = mailaudit_mail_user_created,
    .mail_namespace_storage_added = mailaudit_acl_namespace_added,
    .mailbox_opened = mailaudit_mailbox_opened,
    .mail_allocated = mailaudit_mail_allocated,
};

void
mailaudit_plugin_init(struct module *module)
{
	ma_set_oom_hook(mailaudit_oom);
	mail_storage_hooks_add(module, &mailaudit_mail_storage_hooks);
	mailaudit_storage_init(module);
	mailaudit_events_init();
}

void
mailaudit_plugin_deinit(void)
{
	unsigned int i;

	mailaudit_events_deinit();
	mailaudit_storage_deinit();
	mailaudit_acl_deinit();
	mail_storage_hooks_remove(&mailaudit_mail_storage_hooks);
	mailaudit_send_deinit();
	for (i = 0; i < mailaudit_policy.count; i++) {
		i_free(mailaudit_policy.slots[i].mbox);
		i_free(mailaudit_policy.slots[i].actor);
	}
	mailaudit_policy.count = 0;
	i_free(mailaudit_policy.path);
	if (mailaudit_frame_ready) {
		ma_buf_deinit(&mailaudit_frame);
		mailaudit_frame_ready = FALSE;
	}
	if (mailaudit_scratch_ready) {
		ma_record_deinit(&mailaudit_scratch);
		mailaudit_scratch_ready = FALSE;
	}
}
