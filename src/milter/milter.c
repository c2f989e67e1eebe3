/* SPDX-License-Identifier: MIT */
/*
 * mailaudit-milter - send auditing and journaling for Postfix.
 *
 * Postfix hands every message to this milter (smtpd_milters for SMTP,
 * non_smtpd_milters for local submission).  Per message we collect the
 * envelope, the SASL login, the few headers that matter (From, Sender,
 * To, Cc, Subject, Message-ID) and, streaming, whether the body carries
 * attachments.  At end of message:
 *   - a SASL-authenticated message is classified Send, SendAs or
 *     SendOnBehalf (ma_send_classify) against the sender login map; if
 *     the principal's audit policy wants it, a record goes to mailauditd
 *     (ma-client: acks, spool fallback).  A From/Sender the login may not
 *     use is refused with 5.7.1 when milter_enforce_from is on, and the
 *     refusal is audited as Failed;
 *   - every journal rule whose scope and mailboxes match journals the
 *     message once: copy rules add the journal address as an envelope
 *     recipient with NOTIFY=NEVER (no bounce can reach the sender; Postfix
 *     queues and retries it), report rules write an Exchange-style
 *     envelope report with the message attached into the journal spool,
 *     durably, before Postfix accepts the message (journal.c delivers it
 *     over LMTP).
 * The header firewall strips journal-report markers from every message so
 * nobody can forge a report, and RCPT TO a journal address is refused, so
 * nothing reaches the journal mailbox except through a rule.
 *
 * Threads: libmilter runs callbacks on a pool of threads; a connection's
 * callbacks are serialised but may run on different threads, so all state
 * hangs off smfi_setpriv.  Shared state is read-only after start-up,
 * except the login map (reloaded under a lock when its file changes) and
 * the client (locked inside ma-client).
 */

#include <errno.h>
#include <getopt.h>
#include <gmime/gmime.h>
#include <grp.h>
#include <libmilter/mfapi.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alias.h"
#include "journal.h"
#include "ma-client.h"
#include "ma-conf.h"
#include "ma-config.h"
#include "ma-journal.h"
#include "ma-log.h"
#include "ma-policy.h"
#include "ma-proto.h"
#include "ma-record.h"
#include "headers.h"
#include "mime-scan.h"

#define MAX_RCPTS        10000 /* per message; Postfix's default is 1000 */
#define RECORD_RCPTS     1000  /* listed in a send record */
#define HEADERS_MAX      (64 * 1024 * 1024)
#define MAX_RULES        64
#define FIREWALL_MAX     32
#define PUMP_INTERVAL_MS 250
#define ALIAS_BUDGET_MS  2000 /* alias lookups per message, at most */

/* Headers nobody outside may set: journal-report markers. */
static const char *const firewall_headers[] = {
    "X-MS-Journal-Report",
    "X-MS-Exchange-Organization-Journal-Report",
    "X-Mailaudit-Journal-Report",
};

static struct {
	struct ma_conf conf;
	struct ma_domains local;
	enum ma_mailbox_names names;
	struct ma_journal_rule rules[MAX_RULES];
	size_t rule_count;
	char **originating;
	size_t originating_count;

	pthread_mutex_t map_lock;
	struct ma_login_map *login_map;
	struct timespec map_mtime;

	struct ma_client *client;
	struct journal *journal;
	struct alias_resolver *aliases;     /* NULL: no journal_alias_maps */
	struct alias_resolver *login_table; /* sender_login_maps via postmap */
	char server[256];
	bool quit;
	bool can_skip; /* the MTA understands SMFIS_SKIP */
	/* journal_store = imap: copy rules spool the message (copy_open)
	   rather than adding a recipient */
	bool store_copies;
	unsigned long noreply; /* SMFIP_NR_* the MTA agreed to */
} milter;

struct msg {
	char env_from[MA_ADDRESS_MAX + 1];
	char login[MA_ADDRESS_MAX + 1]; /* "" = not authenticated */
	char *auth_type;
	char **rcpts; /* normalised, accepted */
	size_t rcpt_count;
	bool too_many_rcpts;
	char *sender_refusal; /* Postfix refused the envelope sender */
	char *from, *sender, *to, *cc, *subject, *message_id, *user_agent;
	unsigned int firewall_count[3];
	struct ma_buf headers; /* the original header block, CRLF */
	uint64_t size;
	struct mime_scan scan;
	unsigned int dir;
	bool spoofed;
	struct journal_file *reports[MAX_RULES];
	bool stored_copy[MAX_RULES]; /* reports[i] is a copy, not a report */
	char boundary[64];           /* of every report of this message */
	bool report_failed;
	struct ma_send_class cls; /* valid once classified */
	char principal[MA_ADDRESS_MAX + 1];
	bool classified, lookup_failed;
	bool skip_body;  /* nothing needs it: no login, no report */
	bool to_journal; /* a local submission addressed a journal */
	bool active;
};

struct conn {
	char *client_addr, *client_name, *daemon_name;
	struct msg msg;
};

static void
usage(void)
{
	fprintf(stderr, "usage: mailaudit-milter [-fdt] [-c config]\n");
	exit(2);
}

/* Small helpers. */

static char *
xstrdup_or_null(const char *s)
{
	return s == NULL ? NULL : ma_xstrdup(s);
}

static void
set_str(char **field, const char *s)
{
	free(*field);
	*field = xstrdup_or_null(s);
}

/* set_reply - smfi_setreply takes non-const strings; give it copies */
static void
set_reply(SMFICTX *ctx, const char *rcode, const char *xcode, const char *text)
{
	char r[4], x[16], t[512];

	snprintf(r, sizeof(r), "%s", rcode);
	snprintf(x, sizeof(x), "%s", xcode);
	snprintf(t, sizeof(t), "%s", text);
	(void)smfi_setreply(ctx, r, x, t);
}

static const char *
macro(SMFICTX *ctx, const char *name)
{
	return smfi_getsymval(ctx, (char *)(uintptr_t)name);
}

static bool
is_journal_address(const char *addr)
{
	for (size_t i = 0; i < milter.rule_count; i++) {
		if (strcmp(milter.rules[i].address, addr) == 0)
			return true;
	}
	return false;
}

static bool
is_originating_daemon(const char *name)
{
	if (name == NULL)
		return false;
	for (size_t i = 0; i < milter.originating_count; i++) {
		if (strcasecmp(milter.originating[i], name) == 0)
			return true;
	}
	return false;
}

/* Message state. */

static void
msg_reset(struct msg *m)
{
	for (size_t i = 0; i < m->rcpt_count; i++)
		free(m->rcpts[i]);
	free(m->rcpts);
	free(m->auth_type);
	free(m->sender_refusal);
	free(m->from);
	free(m->sender);
	free(m->to);
	free(m->cc);
	free(m->subject);
	free(m->message_id);
	free(m->user_agent);
	ma_buf_deinit(&m->headers);
	mime_scan_deinit(&m->scan);
	for (size_t i = 0; i < MAX_RULES; i++)
		journal_file_abort(&m->reports[i]);
	memset(m, 0, sizeof(*m));
	ma_buf_init(&m->headers, HEADERS_MAX);
	mime_scan_init(&m->scan);
}

/* Records. */

/*
 * Policy answers are cached per (mailbox, actor): the snapshot is a file
 * scan, and a busy submission service asks for the same few senders over
 * and over.  The cache is emptied when the snapshot's mtime or size
 * changes, checked at most once a second, so a policy change applies
 * within a second.
 */
#define POLICY_CACHE_SIZE 512

struct policy_slot {
	char *key; /* "mailbox\nactor" */
	struct ma_policy_answer answer;
};

static struct {
	pthread_mutex_t lock;
	struct policy_slot slots[POLICY_CACHE_SIZE];
	struct timespec mtime;
	off_t size;
	int64_t checked_ms;
} policy_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
policy_cache_check(void)
{
	struct stat st;
	int64_t now = ma_now_ms();

	if (now - policy_cache.checked_ms < 1000)
		return;
	policy_cache.checked_ms = now;
	if (stat(milter.conf.policy_snapshot_path, &st) < 0)
		memset(&st, 0, sizeof(st));
	if (st.st_mtim.tv_sec == policy_cache.mtime.tv_sec &&
	    st.st_mtim.tv_nsec == policy_cache.mtime.tv_nsec &&
	    st.st_size == policy_cache.size)
		return;
	policy_cache.mtime = st.st_mtim;
	policy_cache.size = st.st_size;
	for (size_t i = 0; i < POLICY_CACHE_SIZE; i++) {
		free(policy_cache.slots[i].key);
		policy_cache.slots[i].key = NULL;
	}
}

static size_t
policy_slot_of(const char *key)
{
	return (size_t)(ma_hash_str(key) % POLICY_CACHE_SIZE);
}

/*
 * policy_wants - does the principal mailbox's policy audit action for
 * this logon type?  Subjects follow the privacy setting.
 */
static bool
policy_wants(const char *mailbox, const char *actor, enum ma_action action,
    enum ma_logon logon, bool *subjects_r)
{
	struct ma_policy_answer answer;
	struct ma_error err = {0};
	char key[2 * MA_ADDRESS_MAX + 2];
	struct policy_slot *slot;
	bool hit = false;

	snprintf(key, sizeof(key), "%s\n%s", mailbox, actor);
	pthread_mutex_lock(&policy_cache.lock);
	policy_cache_check();
	slot = &policy_cache.slots[policy_slot_of(key)];
	if (slot->key != NULL && strcmp(slot->key, key) == 0) {
		answer = slot->answer;
		hit = true;
	}
	pthread_mutex_unlock(&policy_cache.lock);
	if (!hit) {
		if (ma_policy_snapshot_lookup(milter.conf.policy_snapshot_path,
			mailbox, actor, &answer, &err) < 0)
			ma_log_warnx(
			    "policy snapshot: %s (using defaults)", err.msg);
		else {
			pthread_mutex_lock(&policy_cache.lock);
			free(slot->key);
			slot->key = ma_xstrdup(key);
			slot->answer = answer;
			pthread_mutex_unlock(&policy_cache.lock);
		}
	}
	*subjects_r = answer.subjects;
	return (ma_policy_answer_actions(&answer, logon) &
		   MA_ACTION_BIT(action)) != 0;
}

static void
record_send(SMFICTX *ctx, struct conn *c, const struct ma_send_class *cls,
    enum ma_result result, const char *failure)
{
	struct msg *m = &c->msg;
	char user[MA_ADDRESS_MAX + 1], mailbox[MA_ADDRESS_MAX + 1];
	char num[32], info[512];
	struct ma_record rec;
	struct ma_buf frame, list;
	struct ma_error err = {0};
	const char *qid = macro(ctx, "i");
	char *subject = NULL;
	bool subjects;

	ma_mailbox_name(milter.names, &milter.local, m->login, user);
	ma_mailbox_name(milter.names, &milter.local, cls->principal, mailbox);
	if (!policy_wants(mailbox, user, cls->action, cls->logon, &subjects))
		return;

	ma_record_init(&rec);
	ma_uuid7(rec.id, ma_now_ms());
	rec.time_ms = ma_now_ms();
	rec.operation = ma_action_name(cls->action);
	rec.result = result;
	rec.logon_type = cls->logon;
	ma_record_set(&rec, &rec.user, user);
	ma_record_set(&rec, &rec.mailbox, mailbox);
	ma_record_set(&rec, &rec.session, qid);
	ma_record_set(&rec, &rec.client_ip, c->client_addr);
	snprintf(info, sizeof(info),
	    "Client=SMTP-Submission;Protocol=SMTP;AuthType=%.32s%s%.200s",
	    m->auth_type != NULL ? m->auth_type : "-",
	    m->user_agent != NULL ? ";" : "",
	    m->user_agent != NULL ? m->user_agent : "");
	ma_record_set(&rec, &rec.client_info, info);
	ma_record_set(&rec, &rec.protocol, "smtp");
	ma_record_set(&rec, &rec.server, milter.server);
	if (subjects)
		subject = header_decode_text(m->subject);
	if (subject != NULL && strlen(subject) > MA_RECORD_MAX_SUBJECT)
		subject[MA_RECORD_MAX_SUBJECT] = '\0';
	ma_record_add_item(&rec, 0, m->message_id, subject, m->size);
	free(subject);

	if (cls->action == MA_ACTION_SEND_AS)
		ma_record_add_prop(
		    &rec, "SendAsUserSmtp", NULL, cls->principal);
	else if (cls->action == MA_ACTION_SEND_ON_BEHALF)
		ma_record_add_prop(
		    &rec, "SendOnBehalfOfUserSmtp", NULL, cls->principal);
	ma_record_add_prop(&rec, "EnvelopeSender", NULL,
	    m->env_from[0] != '\0' ? m->env_from : "<>");
	snprintf(num, sizeof(num), "%zu", m->rcpt_count);
	ma_record_add_prop(&rec, "RecipientCount", NULL, num);
	/* Exchange lists up to 1000; the count is always exact. */
	ma_buf_init(&list, MA_RECORD_MAX_PROP_VALUE - 1);
	for (size_t i = 0; i < m->rcpt_count && i < RECORD_RCPTS; i++) {
		if ((i > 0 && ma_buf_puts(&list, ", ") < 0) ||
		    ma_buf_puts(&list, m->rcpts[i]) < 0)
			break;
	}
	if (list.len > 0)
		ma_record_add_prop(&rec, "Recipients", NULL, list.data);
	ma_buf_deinit(&list);
	ma_record_add_prop(&rec, "HasAttachments", NULL,
	    m->scan.attachments > 0 ? "true" : "false");
	if (m->scan.name_count > 0) {
		ma_buf_init(&list, MA_RECORD_MAX_STRING - 1);
		for (unsigned int i = 0; i < m->scan.name_count; i++) {
			if ((i > 0 && ma_buf_puts(&list, ", ") < 0) ||
			    ma_buf_puts(&list, m->scan.names[i]) < 0)
				break;
		}
		ma_record_add_prop(&rec, "Attachments", NULL, list.data);
		ma_buf_deinit(&list);
	}
	if (!cls->permitted)
		ma_record_add_prop(&rec, "Permitted", NULL, "false");
	if (failure != NULL)
		ma_record_add_prop(&rec, "FailureReason", NULL, failure);

	ma_buf_init(&frame, MA_PROTO_MAX_FRAME);
	if (ma_record_validate(&rec, &err) < 0 ||
	    ma_proto_encode_record(&rec, &frame) < 0)
		ma_log_warnx("send record for %s (queue id %s) LOST: %s", user,
		    qid != NULL ? qid : "-",
		    err.msg[0] != '\0' ? err.msg : "frame too large");
	else
		ma_client_send(milter.client, frame.data, frame.len);
	ma_buf_deinit(&frame);
	ma_record_deinit(&rec);
}

/*
 * The sender login map.  A plain path or "texthash:/path" is read here
 * and reloaded when the file changes; any other Postfix table
 * ("hash:/etc/postfix/sender_login", "ldap:...") is asked through
 * postmap -q, exactly as smtpd asks it.
 */
static const char *
login_map_file(void)
{
	const char *v = milter.conf.sender_login_maps;

	if (strncmp(v, "texthash:", 9) == 0)
		return v + 9;
	return v[0] == '/' ? v : NULL;
}

static void
login_map_refresh(void)
{
	struct ma_login_map *map, *old;
	struct ma_error err = {0};
	const char *path = login_map_file();
	struct stat st;

	if (path == NULL)
		return;
	if (stat(path, &st) < 0) {
		ma_log_warn("%s", path);
		return;
	}
	if (st.st_mtim.tv_sec == milter.map_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == milter.map_mtime.tv_nsec)
		return;
	map = ma_login_map_load(path, &err);
	if (map == NULL) {
		ma_log_warnx("%s (keeping the previous map)", err.msg);
		milter.map_mtime = st.st_mtim;
		return;
	}
	pthread_mutex_lock(&milter.map_lock);
	old = milter.login_map;
	milter.login_map = map;
	milter.map_mtime = st.st_mtim;
	pthread_mutex_unlock(&milter.map_lock);
	if (old != NULL)
		ma_log_info("reloaded %s", path);
	ma_login_map_destroy(&old);
}

/* Set when a table lookup failed during this thread's msg_class(). */
static __thread bool login_lookup_failed;

/* postfix_table_allows - ma_send_allows_fn over a Postfix table */
static bool
postfix_table_allows(void *ctx, const char *login, const char *address)
{
	char *logins = NULL, who[MA_ADDRESS_MAX + 1], norm[MA_ADDRESS_MAX + 1];
	bool found = false;
	int ret = alias_lookup(ctx, address, &logins);

	if (ret < 0)
		login_lookup_failed = true;
	if (ret <= 0 || ma_address_normalize(login, who) < 0) {
		free(logins);
		return false;
	}
	for (const char *p = logins; !found && ma_address_list_next(&p, norm);)
		found = strcmp(norm, who) == 0;
	free(logins);
	return found;
}

/*
 * msg_class - the submission's Send/SendAs/SendOnBehalf class, worked out
 * once per message (at end of headers when a report needs it, else at
 * end of message) and kept in the message.
 */
static const struct ma_send_class *
msg_class(struct msg *m)
{
	char from[MA_ADDRESS_MAX + 1], sender[MA_ADDRESS_MAX + 1];
	struct ma_send_class *cls = &m->cls;

	if (m->classified)
		return cls;
	header_first_address(m->from, from);
	header_first_address(m->sender, sender);
	login_lookup_failed = false;
	if (milter.login_table != NULL) {
		ma_send_classify(postfix_table_allows, milter.login_table,
		    milter.names, &milter.local, m->login, m->env_from, from,
		    sender, cls);
	} else {
		pthread_mutex_lock(&milter.map_lock);
		ma_send_classify(ma_login_map_allows_cb, milter.login_map,
		    milter.names, &milter.local, m->login, m->env_from, from,
		    sender, cls);
		pthread_mutex_unlock(&milter.map_lock);
	}
	/* principal may point into from/sender: keep it in the message. */
	memcpy(m->principal, cls->principal, strlen(cls->principal) + 1);
	cls->principal = m->principal;
	m->lookup_failed = login_lookup_failed;
	m->classified = true;
	return cls;
}

/* audit_sender_refusal - Postfix refused the envelope sender for login */
static void
audit_sender_refusal(SMFICTX *ctx, struct conn *c)
{
	struct msg *m = &c->msg;
	struct ma_send_class cls = {
	    .action = MA_ACTION_SEND_AS,
	    .logon = MA_LOGON_DELEGATE,
	    .principal = m->env_from,
	    .permitted = false,
	};

	if (m->sender_refusal == NULL || m->login[0] == '\0')
		return;
	record_send(ctx, c, &cls, MA_RESULT_FAILED, m->sender_refusal);
	free(m->sender_refusal);
	m->sender_refusal = NULL;
}

/* rule_matches - the rule's scope and limits, expanding a group= */
static bool
rule_matches(const struct ma_journal_rule *r, const struct msg *m)
{
	char **members = NULL;
	size_t n = 0;
	bool match, incomplete = false;

	if (r->group != NULL && milter.aliases != NULL &&
	    (r->scope & m->dir) != 0)
		n = alias_expand(milter.aliases, r->group,
		    ma_now_ms() + ALIAS_BUDGET_MS, &members, &incomplete);
	match = ma_journal_rule_matches(r, m->dir, m->env_from,
	    (const char *const *)m->rcpts, m->rcpt_count,
	    (const char *const *)members, n);
	if (!match && incomplete && (r->scope & m->dir) != 0) {
		/* Members unknown right now: journal rather than miss. */
		ma_log_warnx("journal_rule %s: members of %s unknown (lookup "
			     "failed); journaling the message anyway",
		    r->name, r->group);
		match = true;
	}
	for (size_t i = 0; i < n; i++)
		free(members[i]);
	free(members);
	return match;
}

/* Journal reports. */

static int
put_report_headers(struct ma_buf *b, const struct ma_journal_rule *rule,
    const struct msg *m, const char *qid, const char *boundary)
{
	char date[64], id[37], dir[32];
	uint8_t uuid[16];
	time_t now = time(NULL);
	struct tm tm;
	char *subject = header_decode_text(m->subject), *enc;
	const char *from = milter.conf.journal_report_from;
	int ret;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	ma_uuid7(uuid, ma_now_ms());
	ma_uuid_fmt(uuid, id);
	ma_journal_dir_name(m->dir, dir, sizeof(dir));
	enc = g_mime_utils_header_encode_text(
	    NULL, subject != NULL ? subject : "", "utf-8");
	ret = ma_buf_printf(b,
	    "From: %s%s%s\r\nTo: <%s>\r\nDate: %s\r\n"
	    "Subject: %s\r\nMessage-ID: <%s@%s>\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"%s\"\r\n"
	    "Auto-Submitted: auto-generated\r\n"
	    "X-MS-Journal-Report:\r\n"
	    "X-Mailaudit-Journal-Report: rule=%s; queue-id=%s; "
	    "direction=%s\r\n\r\n",
	    from[0] != '\0' ? "" : "MAILER-DAEMON@",
	    from[0] != '\0' ? from : milter.server, "", rule->address, date,
	    enc, id, milter.server, boundary, rule->name,
	    qid != NULL ? qid : "-", dir);
	g_free(enc);
	free(subject);
	return ret;
}

/*
 * put_envelope - the report's first part: Exchange's envelope lines
 * (Sender, Subject, Message-ID, On-Behalf-Of, To/Cc/Bcc or Recipient),
 * then ours (direction, login, client, queue id).
 */
static int
put_envelope(struct ma_buf *b, const struct conn *c, const struct msg *m,
    const char *qid, const struct ma_send_class *cls)
{
	char dir[32];
	char *subject = header_decode_text(m->subject);
	bool split = m->login[0] != '\0', incomplete = false;
	/* Alias lookups run inside the SMTP transaction: bounded. */
	int64_t deadline = ma_now_ms() + ALIAS_BUDGET_MS;
	int ret = 0;

	ma_journal_dir_name(m->dir, dir, sizeof(dir));
	ret |= ma_buf_printf(b,
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n"
	    "Sender: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n",
	    m->env_from[0] != '\0' ? m->env_from : "<>",
	    subject != NULL ? subject : "",
	    m->message_id != NULL ? m->message_id : "");
	free(subject);
	if (cls != NULL && cls->action == MA_ACTION_SEND_ON_BEHALF)
		ret |= ma_buf_printf(b, "On-Behalf-Of: %s\r\n", cls->principal);
	for (size_t i = 0; i < m->rcpt_count; i++) {
		const char *kind = "Recipient";
		char **members = NULL;
		size_t n = 0;
		bool partial = false;

		/* To/Cc/Bcc only where we trust how it was addressed. */
		if (split)
			kind = header_lists(m->to, m->rcpts[i])   ? "To"
			       : header_lists(m->cc, m->rcpts[i]) ? "Cc"
								  : "Bcc";
		if (milter.aliases != NULL &&
		    ma_domains_has(&milter.local, m->rcpts[i]))
			n = alias_expand(milter.aliases, m->rcpts[i], deadline,
			    &members, &partial);
		incomplete |= partial;
		if (n == 0)
			ret |=
			    ma_buf_printf(b, "%s: %s\r\n", kind, m->rcpts[i]);
		for (size_t k = 0; k < n; k++) {
			ret |= ma_buf_printf(b, "%s: %s, Expanded: %s\r\n",
			    kind, members[k], m->rcpts[i]);
			free(members[k]);
		}
		free(members);
	}
	if (incomplete)
		ret |= ma_buf_puts(b, "Expansion: incomplete (alias lookups "
				      "failed or took too long)\r\n");
	ret |= ma_buf_printf(b,
	    "\r\nDirection: %s%s\r\nAuthenticated-User: %s\r\n"
	    "Client-Address: %s\r\nQueue-ID: %s\r\n",
	    dir, m->spoofed ? " (sender claims a local domain)" : "",
	    m->login[0] != '\0' ? m->login : "-",
	    c->client_addr != NULL ? c->client_addr : "-",
	    qid != NULL ? qid : "-");
	return ret < 0 ? -1 : 0;
}

/* is_firewall_header - line starts a field the header firewall removes */
static bool
is_firewall_header(const char *line, size_t len)
{
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(firewall_headers[i]);

		if (len > n && line[n] == ':' &&
		    strncasecmp(line, firewall_headers[i], n) == 0)
			return true;
	}
	return false;
}

/*
 * put_delivered_headers - the header block as recipients get it: without
 * the fields the header firewall deletes at end of message.
 */
static int
put_delivered_headers(struct ma_buf *b, const struct ma_buf *hdrs)
{
	const char *p = hdrs->data, *end = hdrs->data + hdrs->len;
	bool skipping = false;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len =
		    nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p);

		if (*p != ' ' && *p != '\t')
			skipping = is_firewall_header(p, len);
		if (!skipping && ma_buf_append(b, p, len) < 0)
			return -1;
		p += len;
	}
	return 0;
}

/*
 * copy_open - a copy rule when the journal store is the milter's own
 * (journal_store = imap): the message itself goes to the spool, to be
 * stored in APPEND batches, instead of one more recipient for Postfix.
 */
/*
 * put_trace - the Received: line of this hop.  Postfix adds its own only
 * after the milter has seen the headers, so a copy stored by the milter
 * gets one of ours in its place: who handed the message over, which
 * server took it, the queue id and when.
 */
static int
put_trace(struct ma_buf *b, const struct conn *c, const char *qid)
{
	char date[64], name[256], addr[64];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	ma_sanitize(c->client_name != NULL ? c->client_name : "unknown",
	    c->client_name != NULL ? strlen(c->client_name) : 7, name,
	    sizeof(name));
	ma_sanitize(c->client_addr != NULL ? c->client_addr : "",
	    c->client_addr != NULL ? strlen(c->client_addr) : 0, addr,
	    sizeof(addr));
	return ma_buf_printf(b,
	    "Received: from %s [%s]\r\n\tby %s (mailaudit-milter, journal "
	    "copy) id %s;\r\n\t%s\r\n",
	    name, addr[0] != '\0' ? addr : "local", milter.server,
	    qid != NULL ? qid : "-", date);
}

static void
copy_open(struct msg *m, const struct conn *c, const char *qid, size_t i)
{
	const struct ma_journal_rule *r = &milter.rules[i];
	struct ma_error err = {0};
	struct ma_buf b;

	m->reports[i] = journal_file_open(milter.journal, r->address, &err);
	if (m->reports[i] == NULL) {
		ma_log_warnx("journal copy for rule %s: %s", r->name, err.msg);
		m->report_failed = true;
		return;
	}
	m->stored_copy[i] = true;
	ma_buf_init(&b, HEADERS_MAX + 1024);
	if (put_trace(&b, c, qid) < 0 ||
	    put_delivered_headers(&b, &m->headers) < 0 ||
	    ma_buf_puts(&b, "\r\n") < 0 ||
	    journal_file_write(m->reports[i], b.data, b.len) < 0) {
		ma_log_warnx("journal copy for rule %s: write failed", r->name);
		journal_file_abort(&m->reports[i]);
		m->report_failed = true;
	}
	ma_buf_deinit(&b);
}

/*
 * reports_open - at end of headers: one spool file per matching report
 * rule, holding everything up to the original body (and, with the IMAP
 * journal store, one per matching copy rule).
 */
static void
reports_open(SMFICTX *ctx, struct conn *c)
{
	struct msg *m = &c->msg;
	const char *qid = macro(ctx, "i");
	const struct ma_send_class *cls = NULL;

	uint8_t uuid[16];
	char id[37];

	if (m->login[0] != '\0') {
		cls = msg_class(m);
	}
	ma_uuid7(uuid, ma_now_ms());
	ma_uuid_fmt(uuid, id);
	snprintf(m->boundary, sizeof(m->boundary), "=_mailaudit_%s", id);
	for (size_t i = 0; i < milter.rule_count; i++) {
		const struct ma_journal_rule *r = &milter.rules[i];
		struct ma_error err = {0};
		const char *boundary = m->boundary;
		struct ma_buf b;
		bool dup = false;

		if (!rule_matches(r, m) ||
		    (r->mode == MA_JOURNAL_COPY && !milter.store_copies))
			continue;
		/* Once per journal address and mode, however many rules
		   match. */
		for (size_t k = 0; k < i; k++)
			dup |= m->reports[k] != NULL &&
			       milter.rules[k].mode == r->mode &&
			       strcmp(milter.rules[k].address, r->address) == 0;
		if (dup)
			continue;
		if (r->mode == MA_JOURNAL_COPY) {
			copy_open(m, c, qid, i);
			continue;
		}
		m->reports[i] =
		    journal_file_open(milter.journal, r->address, &err);
		if (m->reports[i] == NULL) {
			ma_log_warnx(
			    "journal report for rule %s: %s", r->name, err.msg);
			m->report_failed = true;
			continue;
		}
		ma_buf_init(&b, HEADERS_MAX + 1024 * 1024);
		if (put_report_headers(&b, r, m, qid, boundary) < 0 ||
		    ma_buf_printf(&b, "--%s\r\n", boundary) < 0 ||
		    put_envelope(&b, c, m, qid, cls) < 0 ||
		    ma_buf_printf(&b,
			"\r\n--%s\r\nContent-Type: message/rfc822\r\n"
			"Content-Description: original message\r\n\r\n",
			boundary) < 0 ||
		    ma_buf_append(&b, m->headers.data, m->headers.len) < 0 ||
		    ma_buf_puts(&b, "\r\n") < 0 ||
		    journal_file_write(m->reports[i], b.data, b.len) < 0) {
			ma_log_warnx("journal report for rule %s: write failed",
			    r->name);
			journal_file_abort(&m->reports[i]);
			m->report_failed = true;
		}
		ma_buf_deinit(&b);
	}
}

/* reports_commit - close each report's MIME structure; make it durable */
static void
reports_commit(struct msg *m)
{
	char trailer[96];
	int len =
	    snprintf(trailer, sizeof(trailer), "\r\n--%s--\r\n", m->boundary);

	for (size_t i = 0; i < MAX_RULES; i++) {
		struct ma_error err = {0};

		if (m->reports[i] == NULL)
			continue;
		if ((!m->stored_copy[i] && journal_file_write(m->reports[i],
					       trailer, (size_t)len) < 0) ||
		    journal_file_commit(milter.journal, &m->reports[i], &err) <
			0) {
			ma_log_warnx("journal report: %s",
			    err.msg[0] != '\0' ? err.msg : "write failed");
			journal_file_abort(&m->reports[i]);
			m->report_failed = true;
		}
	}
}

/* libmilter callbacks. */

/* go_on - CONTINUE, or NOREPLY where the MTA agreed not to wait */
static sfsistat
go_on(unsigned long step)
{
	return (__atomic_load_n(&milter.noreply, __ATOMIC_RELAXED) & step) != 0
		   ? SMFIS_NOREPLY
		   : SMFIS_CONTINUE;
}

static sfsistat
cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
    unsigned long f3, unsigned long *pf0, unsigned long *pf1,
    unsigned long *pf2, unsigned long *pf3)
{
	unsigned long want = SMFIF_ADDRCPT | SMFIF_ADDRCPT_PAR | SMFIF_CHGHDRS;

	(void)ctx;
	(void)f2;
	(void)f3;
	if ((f0 & want) != want) {
		ma_log_warnx("the MTA does not offer adding recipients and "
			     "changing headers; refusing");
		return SMFIS_REJECT;
	}
	*pf0 = want;
	/* Rejected recipients (refused senders), exact header spacing,
	   and no callbacks we do not use. */
	/* No replies where we never refuse anything: one round trip
	   fewer per header, and for connect, MAIL and end of headers. */
	*pf1 = f1 &
	       (SMFIP_RCPT_REJ | SMFIP_HDR_LEADSPC | SMFIP_NOHELO |
		   SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_SKIP | SMFIP_NR_CONN |
		   SMFIP_NR_MAIL | SMFIP_NR_HDR | SMFIP_NR_EOH);
	__atomic_store_n(&milter.noreply,
	    f1 & (SMFIP_NR_CONN | SMFIP_NR_MAIL | SMFIP_NR_HDR | SMFIP_NR_EOH),
	    __ATOMIC_RELAXED);
	/* Every MTA connection negotiates the same; Postfix offers SKIP. */
	__atomic_store_n(
	    &milter.can_skip, (f1 & SMFIP_SKIP) != 0, __ATOMIC_RELAXED);
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

static sfsistat
cb_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
	struct conn *c = ma_xcalloc(1, sizeof(*c));
	const char *a = macro(ctx, "{client_addr}");
	char buf[64] = "";

	(void)addr;
	if (a == NULL) {
		/* Postfix sends "_" = "name [addr]" by default. */
		const char *u = macro(ctx, "_");
		const char *lb = u != NULL ? strrchr(u, '[') : NULL;
		const char *rb = lb != NULL ? strchr(lb, ']') : NULL;

		if (lb != NULL && rb != NULL &&
		    (size_t)(rb - lb - 1) < sizeof(buf)) {
			memcpy(buf, lb + 1, (size_t)(rb - lb - 1));
			buf[rb - lb - 1] = '\0';
			a = buf;
		}
	}
	c->client_addr = xstrdup_or_null(a);
	c->client_name = xstrdup_or_null(host);
	c->daemon_name = xstrdup_or_null(macro(ctx, "{daemon_name}"));
	ma_buf_init(&c->msg.headers, HEADERS_MAX);
	mime_scan_init(&c->msg.scan);
	smfi_setpriv(ctx, c);
	return go_on(SMFIP_NR_CONN);
}

static sfsistat
cb_envfrom(SMFICTX *ctx, char **argv)
{
	struct conn *c = smfi_getpriv(ctx);
	struct msg *m;
	const char *login;

	if (c == NULL)
		return go_on(SMFIP_NR_MAIL);
	m = &c->msg;
	audit_sender_refusal(ctx, c);
	msg_reset(m);
	m->active = true;
	if (ma_address_normalize(argv[0] != NULL ? argv[0] : "", m->env_from) <
	    0)
		m->env_from[0] = '\0';
	login = macro(ctx, "{auth_authen}");
	if (login != NULL && ma_address_normalize(login, m->login) < 0)
		m->login[0] = '\0';
	m->auth_type = xstrdup_or_null(macro(ctx, "{auth_type}"));
	return go_on(SMFIP_NR_MAIL);
}

static sfsistat
cb_envrcpt(SMFICTX *ctx, char **argv)
{
	struct conn *c = smfi_getpriv(ctx);
	const char *mailer = macro(ctx, "{rcpt_mailer}");
	char rcpt[MA_ADDRESS_MAX + 1];
	struct msg *m;

	if (c == NULL || !c->msg.active)
		return SMFIS_CONTINUE;
	m = &c->msg;
	if (mailer != NULL && strcmp(mailer, "error") == 0) {
		/* Postfix refused this recipient; remember a refused sender
		   (reject_sender_login_mismatch) for the audit. */
		const char *why = macro(ctx, "{rcpt_addr}");

		if (m->login[0] != '\0' && why != NULL &&
		    strstr(why, "Sender address rejected") != NULL &&
		    m->sender_refusal == NULL)
			m->sender_refusal = ma_xstrdup(why);
		return SMFIS_CONTINUE;
	}
	if (ma_address_normalize(argv[0] != NULL ? argv[0] : "", rcpt) < 0)
		return SMFIS_CONTINUE;
	if (is_journal_address(rcpt)) {
		/* Postfix cannot refuse one recipient of a local (sendmail)
		   submission ({rcpt_mailer} is only set by smtpd): refuse the
		   whole message at its end instead, so it bounces rather than
		   stays in the queue. */
		if (mailer == NULL) {
			m->to_journal = true;
			return SMFIS_CONTINUE;
		}
		set_reply(ctx, "550", "5.1.1",
		    "Recipient address rejected: mailbox not available");
		return SMFIS_REJECT;
	}
	if (m->rcpt_count >= MAX_RCPTS) {
		m->too_many_rcpts = true;
		return SMFIS_CONTINUE;
	}
	m->rcpts = ma_xrealloc(m->rcpts, m->rcpt_count + 1, sizeof(char *));
	m->rcpts[m->rcpt_count++] = ma_xstrdup(rcpt);
	return SMFIS_CONTINUE;
}

static sfsistat
cb_header(SMFICTX *ctx, char *name, char *value)
{
	struct conn *c = smfi_getpriv(ctx);
	struct msg *m;
	size_t vlen;

	if (c == NULL || !c->msg.active)
		return go_on(SMFIP_NR_HDR);
	m = &c->msg;
	vlen = strlen(value);
	m->size += strlen(name) + 1 + vlen + 2;
	/* The original header block, with CRLF line ends. */
	if (ma_buf_puts(&m->headers, name) == 0 &&
	    ma_buf_putc(&m->headers, ':') == 0) {
		const char *p = value, *nl;

		/* Span by span; a bare LF of a folded line becomes CRLF. */
		while ((nl = memchr(p, '\n', vlen - (size_t)(p - value))) !=
		       NULL) {
			bool bare = nl == value || nl[-1] != '\r';

			(void)ma_buf_append(&m->headers, p, (size_t)(nl - p));
			(void)ma_buf_puts(&m->headers, bare ? "\r\n" : "\n");
			p = nl + 1;
		}
		(void)ma_buf_append(&m->headers, p, vlen - (size_t)(p - value));
		(void)ma_buf_puts(&m->headers, "\r\n");
	}
	for (size_t i = 0; i < 3; i++) {
		if (strcasecmp(name, firewall_headers[i]) == 0 &&
		    m->firewall_count[i] < FIREWALL_MAX)
			m->firewall_count[i]++;
	}
	/* Values without the leading space SMFIP_HDR_LEADSPC keeps. */
	while (*value == ' ' || *value == '\t')
		value++;
	if (strcasecmp(name, "From") == 0 && m->from == NULL)
		set_str(&m->from, value);
	else if (strcasecmp(name, "Sender") == 0 && m->sender == NULL)
		set_str(&m->sender, value);
	else if (strcasecmp(name, "Subject") == 0 && m->subject == NULL)
		set_str(&m->subject, value);
	else if (strcasecmp(name, "Message-ID") == 0 && m->message_id == NULL)
		set_str(&m->message_id, value);
	else if ((strcasecmp(name, "User-Agent") == 0 ||
		     strcasecmp(name, "X-Mailer") == 0) &&
		 m->user_agent == NULL) {
		char clean[201];

		ma_sanitize(value, strlen(value), clean, sizeof(clean));
		for (char *p = clean; *p != '\0'; p++) {
			if (*p == ';')
				*p = ',';
		}
		set_str(&m->user_agent, clean);
	} else if (strcasecmp(name, "To") == 0 || strcasecmp(name, "Cc") == 0) {
		char **field = strcasecmp(name, "To") == 0 ? &m->to : &m->cc;
		/* Several To: headers are joined into one list. */
		size_t old = *field == NULL ? 0 : strlen(*field);

		if (old + vlen < 1024 * 1024) {
			*field =
			    ma_xrealloc(*field, old + strlen(value) + 3, 1);
			if (old > 0) {
				memcpy(*field + old, ", ", 2);
				old += 2;
			}
			memcpy(*field + old, value, strlen(value) + 1);
		}
	}
	mime_scan_top_header(&m->scan, name, value);
	return go_on(SMFIP_NR_HDR);
}

static sfsistat
cb_eoh(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);
	struct msg *m;
	bool originated;

	if (c == NULL || !c->msg.active)
		return go_on(SMFIP_NR_EOH);
	m = &c->msg;
	m->size += 2;
	originated =
	    m->login[0] != '\0' || is_originating_daemon(c->daemon_name);
	m->dir = ma_journal_direction(originated, &milter.local, m->env_from,
	    (const char *const *)m->rcpts, m->rcpt_count, &m->spoofed);
	if (milter.journal != NULL)
		reports_open(ctx, c);
	/* The body matters for a send record (size, attachments) and for
	   reports; without either, let Postfix stop sending it. */
	m->skip_body = m->login[0] == '\0';
	for (size_t i = 0; i < MAX_RULES && m->skip_body; i++)
		m->skip_body = m->reports[i] == NULL;
	return go_on(SMFIP_NR_EOH);
}

static sfsistat
cb_body(SMFICTX *ctx, unsigned char *data, size_t len)
{
	struct conn *c = smfi_getpriv(ctx);
	struct msg *m;

	if (c == NULL || !c->msg.active)
		return SMFIS_CONTINUE;
	m = &c->msg;
	if (m->skip_body)
		return __atomic_load_n(&milter.can_skip, __ATOMIC_RELAXED)
			   ? SMFIS_SKIP
			   : SMFIS_CONTINUE;
	m->size += len;
	mime_scan_body(&m->scan, (const char *)data, len);
	for (size_t i = 0; i < MAX_RULES; i++) {
		if (m->reports[i] != NULL &&
		    journal_file_write(m->reports[i], data, len) < 0) {
			ma_log_warn("journal report: write");
			journal_file_abort(&m->reports[i]);
			m->report_failed = true;
		}
	}
	return SMFIS_CONTINUE;
}

/* defer - answer 451 4.3.0 (the client retries; nothing is lost) */
static sfsistat
defer(SMFICTX *ctx, struct msg *m, const char *text)
{
	set_reply(ctx, "451", "4.3.0", text);
	msg_reset(m);
	return SMFIS_TEMPFAIL;
}

/* firewall - delete forged journal-report markers (last first) */
static void
firewall(SMFICTX *ctx, struct msg *m)
{
	for (size_t i = 0; i < 3; i++) {
		for (unsigned int k = m->firewall_count[i]; k > 0; k--)
			smfi_chgheader(ctx,
			    (char *)(uintptr_t)firewall_headers[i], (int)k,
			    NULL);
	}
}

static sfsistat
cb_eom(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);
	struct msg *m;
	bool only_journal = true;

	if (c == NULL || !c->msg.active)
		return SMFIS_CONTINUE;
	m = &c->msg;
	if (m->to_journal) {
		ma_log_warnx("local submission from <%s> to a journal address "
			     "refused",
		    m->env_from);
		set_reply(ctx, "550", "5.1.1",
		    "Recipient address rejected: journal mailbox not "
		    "available");
		msg_reset(m);
		return SMFIS_REJECT;
	}
	mime_scan_finish(&m->scan);
	firewall(ctx, m);

	if (m->login[0] != '\0') {
		const struct ma_send_class *cls = msg_class(m);

		if (m->lookup_failed) {
			/* As smtpd does when its own table lookup fails. */
			ma_log_warnx("sender_login_maps lookup failed; message "
				     "from %s deferred",
			    m->login);
			return defer(ctx, m,
			    "Temporary lookup failure, please try again later");
		}
		if (!cls->permitted && milter.conf.milter_enforce_from) {
			char why[800];

			snprintf(why, sizeof(why),
			    "Sender address rejected: %s may not send as %s",
			    m->login, cls->principal);
			record_send(ctx, c, cls, MA_RESULT_FAILED, why);
			set_reply(ctx, "550", "5.7.1", why);
			msg_reset(m);
			return SMFIS_REJECT;
		}
		record_send(ctx, c, cls, MA_RESULT_SUCCEEDED, NULL);
	}

	/* Reports: every byte of the message is in the spool file now. */
	reports_commit(m);
	if (m->report_failed) {
		/* Nothing is lost: the client retries, we journal then. */
		ma_log_warnx("journal report could not be written; "
			     "message deferred");
		return defer(
		    ctx, m, "Temporary local problem, please try again later");
	}

	for (size_t i = 0; i < m->rcpt_count && only_journal; i++)
		only_journal = is_journal_address(m->rcpts[i]);
	for (size_t i = 0; i < milter.rule_count && !only_journal; i++) {
		const struct ma_journal_rule *r = &milter.rules[i];
		char rcpt[MA_ADDRESS_MAX + 3], notify_never[] = "NOTIFY=NEVER";
		bool dup = false;

		if (r->mode != MA_JOURNAL_COPY || !rule_matches(r, m) ||
		    milter.store_copies)
			continue;
		for (size_t k = 0; k < i; k++)
			dup |=
			    milter.rules[k].mode == MA_JOURNAL_COPY &&
			    strcmp(milter.rules[k].address, r->address) == 0 &&
			    rule_matches(&milter.rules[k], m);
		if (dup)
			continue;
		snprintf(rcpt, sizeof(rcpt), "<%s>", r->address);
		if (smfi_addrcpt_par(ctx, rcpt, notify_never) != MI_SUCCESS) {
			ma_log_warnx("could not add journal recipient %s; "
				     "message deferred",
			    r->address);
			return defer(ctx, m,
			    "Temporary local problem, please try again later");
		}
	}
	msg_reset(m);
	return SMFIS_CONTINUE;
}

static sfsistat
cb_abort(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);

	if (c != NULL) {
		audit_sender_refusal(ctx, c);
		msg_reset(&c->msg);
	}
	return SMFIS_CONTINUE;
}

static sfsistat
cb_close(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);

	if (c == NULL)
		return SMFIS_CONTINUE;
	audit_sender_refusal(ctx, c);
	msg_reset(&c->msg);
	ma_buf_deinit(&c->msg.headers);
	mime_scan_deinit(&c->msg.scan);
	free(c->client_addr);
	free(c->client_name);
	free(c->daemon_name);
	free(c);
	smfi_setpriv(ctx, NULL);
	return SMFIS_CONTINUE;
}

/* Start-up. */

static void
client_log(int is_error, const char *msg)
{
	if (is_error)
		ma_log_warnx("ERROR: %s", msg);
	else
		ma_log_warnx("%s", msg);
}

static int
add_originating(void *ctx, const char *word, size_t len)
{
	(void)ctx;
	milter.originating = ma_xrealloc(
	    milter.originating, milter.originating_count + 1, sizeof(char *));
	milter.originating[milter.originating_count++] = ma_xstrndup(word, len);
	return 0;
}

static void
load_config(const char *path)
{
	struct ma_error err = {0};
	const char *p;

	if (ma_conf_load(&milter.conf, path, &err) < 0)
		ma_fatalx("%s", err.msg);
	if (ma_domains_parse(milter.conf.local_domains, &milter.local, &err) <
	    0)
		ma_fatalx("local_domains: %s", err.msg);
	MA_ASSERT(ma_mailbox_names_parse(
		      milter.conf.mailbox_names, &milter.names) == 0);
	for (p = milter.conf.originating_daemons; *p != '\0';) {
		size_t len;

		p += strspn(p, ", \t");
		len = strcspn(p, ", \t");
		if (len > 0)
			add_originating(NULL, p, len);
		p += len;
	}
	p = milter.conf.journal_rules != NULL ? milter.conf.journal_rules : "";
	while (*p != '\0') {
		size_t len = strcspn(p, "\n");
		char *line = ma_xstrndup(p, len);

		if (milter.rule_count == MAX_RULES)
			ma_fatalx("more than %d journal_rule lines", MAX_RULES);
		if (ma_journal_rule_parse(
			line, &milter.rules[milter.rule_count], &err) < 0)
			ma_fatalx("journal_rule: %s", err.msg);
		milter.rule_count++;
		free(line);
		p += len;
		if (*p == '\n')
			p++;
	}
	for (size_t i = 0; i < milter.rule_count; i++) {
		if (milter.rules[i].group != NULL &&
		    milter.conf.journal_alias_maps[0] == '\0')
			ma_fatalx("journal_rule %s: group= needs "
				  "journal_alias_maps (where the group's "
				  "members are listed)",
			    milter.rules[i].name);
		if (milter.rules[i].scope != MA_DIR_INBOUND &&
		    milter.local.count == 0)
			ma_fatalx("journal_rule %s: internal and outbound "
				  "scopes need local_domains",
			    milter.rules[i].name);
	}
	if (milter.conf.server_name[0] != '\0')
		snprintf(milter.server, sizeof(milter.server), "%s",
		    milter.conf.server_name);
	else if (gethostname(milter.server, sizeof(milter.server) - 1) < 0)
		snprintf(milter.server, sizeof(milter.server), "localhost");
}

static void
drop_privileges(const char *socket_path)
{
	struct passwd *pw;
	struct group *gr;

	if (milter.conf.milter_socket_group[0] != '\0' && socket_path != NULL) {
		gr = getgrnam(milter.conf.milter_socket_group);
		if (gr == NULL)
			ma_fatalx("group '%s' (milter_socket_group) does not "
				  "exist",
			    milter.conf.milter_socket_group);
		if (chown(socket_path, (uid_t)-1, gr->gr_gid) < 0)
			ma_fatal("chown %s", socket_path);
	}
	if (socket_path != NULL &&
	    chmod(socket_path, (mode_t)milter.conf.milter_socket_mode) < 0)
		ma_fatal("chmod %s", socket_path);
	if (milter.conf.user[0] == '\0')
		return;
	pw = getpwnam(milter.conf.user);
	if (pw == NULL)
		ma_fatalx("user '%s' (config key user) does not exist",
		    milter.conf.user);
	if (geteuid() != 0) {
		if (geteuid() != pw->pw_uid)
			ma_fatalx("running as uid %ld, cannot switch to %s",
			    (long)geteuid(), milter.conf.user);
		return;
	}
	if (socket_path != NULL &&
	    chown(socket_path, pw->pw_uid, (gid_t)-1) < 0)
		ma_fatal("chown %s", socket_path);
	if (chown(milter.conf.journal_spool_dir, pw->pw_uid, pw->pw_gid) < 0 &&
	    errno != ENOENT)
		ma_fatal("chown %s", milter.conf.journal_spool_dir);
	if (ma_become_user(pw->pw_uid, pw->pw_gid) < 0)
		ma_fatal("cannot drop privileges to %s", milter.conf.user);
}

/* pump_thread - acks and spool for the client, login map reloads */
static void *
pump_thread(void *arg)
{
	(void)arg;
	for (;;) {
		struct timespec ts = {0, PUMP_INTERVAL_MS * 1000000L};

		nanosleep(&ts, NULL);
		if (__atomic_load_n(&milter.quit, __ATOMIC_RELAXED))
			break;
		ma_client_pump(milter.client);
		login_map_refresh();
	}
	return NULL;
}

static char milter_name[] = "mailaudit";

static struct smfiDesc desc = {
    .xxfi_name = milter_name,
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDRCPT | SMFIF_ADDRCPT_PAR | SMFIF_CHGHDRS,
    .xxfi_connect = cb_connect,
    .xxfi_envfrom = cb_envfrom,
    .xxfi_envrcpt = cb_envrcpt,
    .xxfi_header = cb_header,
    .xxfi_eoh = cb_eoh,
    .xxfi_body = cb_body,
    .xxfi_eom = cb_eom,
    .xxfi_abort = cb_abort,
    .xxfi_close = cb_close,
    .xxfi_negotiate = cb_negotiate,
};

int
main(int argc, char **argv)
{
	const char *config = MA_SYSCONFDIR "/mailaudit/mailaudit.conf";
	bool foreground = false, debug = false, test_only = false;
	const char *socket_path = NULL;
	struct ma_error err = {0};
	pthread_t pump;
	sigset_t sigs;
	int ch, ret;

	while ((ch = getopt(argc, argv, "c:dft")) != -1) {
		switch (ch) {
		case 'c':
			config = optarg;
			break;
		case 'd':
			debug = true;
			break;
		case 'f':
			foreground = true;
			break;
		case 't':
			test_only = true;
			foreground = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	ma_log_init("mailaudit-milter", foreground, debug);
	umask(077);
	/* libmilter's own thread takes SIGTERM, SIGINT and SIGHUP (sigwait)
	   and makes smfi_main() return; threads we start before it must not
	   take them instead, or the default action would kill us without
	   flushing the records in flight. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	load_config(config);
	if (test_only) {
		printf(
		    "%s: ok, %zu journal rules\n", config, milter.rule_count);
		return 0;
	}
	MA_ASSERT(pthread_mutex_init(&milter.map_lock, NULL) == 0);
	if (milter.conf.sender_login_maps[0] != '\0' &&
	    login_map_file() == NULL)
		milter.login_table = alias_create(milter.conf.sender_login_maps,
		    milter.conf.postfix_config_dir);
	login_map_refresh();
	if (login_map_file() != NULL && milter.login_map == NULL)
		ma_fatalx("sender_login_maps %s could not be loaded",
		    milter.conf.sender_login_maps);
	g_mime_init();

	milter.store_copies = strcmp(milter.conf.journal_store, "imap") == 0;
	for (size_t i = 0; i < milter.rule_count; i++) {
		if ((milter.rules[i].mode == MA_JOURNAL_REPORT ||
			milter.store_copies) &&
		    milter.journal == NULL) {
			struct journal_opts jo = {
			    .spool_dir = milter.conf.journal_spool_dir,
			    .lmtp = milter.conf.journal_lmtp,
			    .helo = milter.server,
			    .imap =
				strcmp(milter.conf.journal_store, "imap") == 0,
			    .imap_target = milter.conf.journal_imap,
			    .master_user = milter.conf.journal_imap_master_user,
			    .password_file =
				milter.conf.journal_imap_password_file,
			    .mailbox = milter.conf.journal_imap_mailbox,
			    .batch = (unsigned int)milter.conf.journal_batch,
			    .batch_delay_ms = (unsigned int)milter.conf
						  .journal_batch_delay_ms,
			    .names = milter.names,
			    .local = &milter.local,
			};

			milter.journal = journal_create(&jo, &err);
			if (milter.journal == NULL)
				ma_fatalx("journal spool: %s", err.msg);
		}
	}

	if (milter.conf.journal_alias_maps[0] != '\0')
		milter.aliases = alias_create(milter.conf.journal_alias_maps,
		    milter.conf.postfix_config_dir);

	if (smfi_setconn(milter.conf.milter_socket) != MI_SUCCESS)
		ma_fatalx(
		    "milter_socket %s: not usable", milter.conf.milter_socket);
	if (smfi_register(desc) != MI_SUCCESS)
		ma_fatalx("smfi_register failed");
	if (smfi_opensocket(true) != MI_SUCCESS)
		ma_fatalx("cannot listen on %s", milter.conf.milter_socket);
	if (strncmp(milter.conf.milter_socket, "unix:", 5) == 0)
		socket_path = milter.conf.milter_socket + 5;
	else if (strncmp(milter.conf.milter_socket, "local:", 6) == 0)
		socket_path = milter.conf.milter_socket + 6;
	drop_privileges(socket_path);

	milter.client = ma_client_create(
	    milter.conf.socket_path, milter.conf.spool_dir, client_log);
	if (milter.journal != NULL)
		journal_start(milter.journal);
	MA_ASSERT(pthread_create(&pump, NULL, pump_thread, NULL) == 0);
	ma_log_info("listening on %s, %zu journal rules",
	    milter.conf.milter_socket, milter.rule_count);

	ret = smfi_main();

	ma_log_info("stopping");
	__atomic_store_n(&milter.quit, true, __ATOMIC_RELAXED);
	pthread_join(pump, NULL);
	journal_destroy(&milter.journal);
	alias_destroy(&milter.aliases);
	alias_destroy(&milter.login_table);
	ma_client_destroy(&milter.client);
	for (size_t i = 0; i < milter.rule_count; i++)
		ma_journal_rule_free(&milter.rules[i]);
	ma_login_map_destroy(&milter.login_map);
	ma_domains_free(&milter.local);
	ma_conf_free(&milter.conf);
	g_mime_shutdown();
	return ret == MI_SUCCESS ? 0 : 1;
}
