/* SPDX-License-Identifier: MIT */
/*
 * control.c - the control socket: policy changes and status.
 *
 * Only root and the daemon's own user may connect (SO_PEERCRED).  Every
 * change to a mailbox's policy, to the organisation switch or preset, or
 * to the bypass list is applied together with an admin audit record (who,
 * when, old value, new value) in one transaction, and then the policy
 * snapshot the sensors read is rewritten.  There is no way to make a
 * change without its record.
 *
 * Requests and replies are key/value frames (ma-proto.h): "cmd=<name>"
 * plus arguments; replies carry "status=ok" or "status=error" with
 * "error=<text>".
 */

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon.h"
#include "ma-config.h"
#include "ma-forward-conf.h"
#include "ma-log.h"
#include "ma-proto.h"

#define ORG_OBJECT "(organization)"

struct request {
	struct daemon *d;
	struct conn *c;
	struct ma_kvframe *req;
	struct ma_buf *reply;
	struct ma_error err;
	struct ma_record rec; /* the admin record of this change */
};

/* Snapshot. */

static int
snap_mailbox(void *ctx, const char *name, const struct ma_mailbox_policy *mp)
{
	return ma_policy_snapshot_mailbox(ctx, name, mp);
}

static int
snap_bypass(void *ctx, const char *name)
{
	return ma_policy_snapshot_bypass(ctx, name);
}

int
control_write_snapshot(struct daemon *d)
{
	struct ma_org_policy org;
	struct ma_error err = {0};
	struct ma_buf buf;
	int ret = -1;

	ma_buf_init(&buf, 256 * 1024 * 1024);
	if (ma_store_org_get(d->store, &org, &err) < 0 ||
	    ma_policy_snapshot_header(
		&buf, org.audit_disabled, d->conf.record_subjects) < 0 ||
	    ma_store_bypass_foreach(d->store, snap_bypass, &buf, &err) != 0)
		goto out;
	for (int t = 0; t < MA_MAILBOX_TYPE_COUNT; t++) {
		if (ma_policy_snapshot_default(&buf, org.preset, t) < 0)
			goto out;
	}
	if (ma_store_mailbox_foreach(d->store, snap_mailbox, &buf, &err) != 0 ||
	    ma_policy_snapshot_commit(
		d->conf.policy_snapshot_path, &buf, &err) < 0)
		goto out;
	ret = 0;
out:
	if (ret < 0)
		ma_log_warnx("policy snapshot: %s",
		    err.msg[0] != '\0' ? err.msg : "too large");
	ma_buf_deinit(&buf);
	return ret;
}

/* Admin records. */

static void
admin_record_begin(struct request *r, const char *operation, const char *object)
{
	struct passwd *pw = getpwuid(r->c->uid);
	int64_t now = ma_now_ms();

	ma_record_reset(&r->rec);
	ma_uuid7(r->rec.id, now);
	r->rec.time_ms = now;
	r->rec.operation = operation;
	r->rec.result = MA_RESULT_SUCCEEDED;
	r->rec.logon_type = MA_LOGON_ADMIN;
	ma_record_set(
	    &r->rec, &r->rec.user, pw != NULL ? pw->pw_name : "unknown");
	ma_record_set(&r->rec, &r->rec.mailbox, object);
	r->rec.client_info = "Client=mailauditctl";
	r->rec.protocol = "control";
	if (r->d->conf.server_name[0] != '\0')
		r->rec.server = r->d->conf.server_name;
}

/*
 * admin_record_finish - the socket proves the uid; what sudo or the caller
 * says about the person behind it is kept, labelled as a claim.
 */
static void
admin_record_finish(struct request *r)
{
	const char *claimed = ma_kvframe_get(r->req, "actor");

	if (r->rec.prop_count > 0 && claimed != NULL &&
	    strcmp(claimed, r->rec.user) != 0)
		ma_record_add_prop(&r->rec, "RequestedBy", NULL, claimed);
}

static int
admin_change(struct request *r, const char *name, const char *old_value,
    const char *new_value)
{
	if (old_value != NULL && new_value != NULL &&
	    strcmp(old_value, new_value) == 0)
		return 0;
	return ma_record_add_prop(&r->rec, name, old_value, new_value);
}

/*
 * apply - run the change in a transaction of its own with its admin
 * record, on this thread while the writer is idle; fn does the change and
 * fills the record's properties.
 */
static int
apply(struct request *r, int (*fn)(struct request *))
{
	struct daemon *d = r->d;
	struct ma_error err = {0};
	bool dup = false, synced;

	daemon_writer_idle(d);
	if (ma_store_begin(d->store, &err) < 0) {
		ma_log_warnx("control: %s", err.msg);
		return ma_error_set(&r->err, "store unavailable");
	}
	if (fn(r) < 0) {
		ma_store_rollback(d->store);
		return -1;
	}
	admin_record_finish(r);
	if ((r->rec.prop_count > 0 && ma_store_insert(d->store, &r->rec,
					  ma_now_ms(), &dup, &err) < 0) ||
	    ma_store_commit(d->store, &err) < 0) {
		ma_log_warnx("control: %s", err.msg);
		ma_store_rollback(d->store);
		return ma_error_set(&r->err, "store failure: nothing changed");
	}
	if (r->rec.prop_count > 0) {
		if (dup)
			d->duplicates_total++;
		else
			d->stored_total++;
	}
	/* Durable before the caller hears "ok" (the sync thread does this
	   for batches; this transaction is the event thread's own). */
	synced = !d->conf.sync_full || ma_store_sync(d->store, &err) == 0;
	if (!synced)
		ma_log_warnx("control: %s", err.msg);
	if (control_write_snapshot(d) < 0)
		return ma_error_set(&r->err, "change stored, but the policy "
					     "snapshot could not be written");
	if (!synced)
		return ma_error_set(&r->err,
		    "change stored and in effect, but not yet synced to disk: "
		    "%s",
		    err.msg);
	return 0;
}

static const char *
arg(struct request *r, const char *key)
{
	return ma_kvframe_get(r->req, key);
}

static int
need_mailbox(struct request *r, struct ma_mailbox_policy *mp)
{
	const char *name = arg(r, "mailbox");
	int ret;

	if (name == NULL || name[0] == '\0')
		return ma_error_set(&r->err, "missing mailbox");
	ret = ma_store_mailbox_get(r->d->store, name, mp, &r->err);
	if (ret == 0)
		return ma_error_set(&r->err,
		    "unknown mailbox '%.200s' (add it first: mailauditctl "
		    "mailbox add %.200s)",
		    name, name);
	return ret < 0 ? -1 : 0;
}

/* Mailbox commands. */

static const char *const set_keys[MA_SET_COUNT] = {
    "audit_owner", "audit_delegate", "audit_admin"};
static const char *const set_props[MA_SET_COUNT] = {
    "AuditOwner", "AuditDelegate", "AuditAdmin"};

static int
set_to_text(ma_action_set set, char *out, size_t size)
{
	struct ma_buf b;

	ma_buf_init(&b, size - 1);
	if (ma_action_set_format(set, &b) < 0) {
		ma_buf_deinit(&b);
		return -1;
	}
	memcpy(out, b.data, b.len + 1);
	ma_buf_deinit(&b);
	return 0;
}

/* edit_set - replace (key=), add (key_add=) or remove (key_remove=) */
static int
edit_set(struct request *r, struct ma_mailbox_policy *mp, enum ma_policy_set s)
{
	char key[64];
	const char *v;
	ma_action_set parsed;

	for (int op = 0; op < 3; op++) {
		snprintf(key, sizeof(key), "%s%s", set_keys[s],
		    op == 0   ? ""
		    : op == 1 ? "_add"
			      : "_remove");
		v = arg(r, key);
		if (v == NULL)
			continue;
		if (ma_action_set_parse(v, &parsed, &r->err) < 0) {
			char why[sizeof(r->err.msg)];

			memcpy(why, r->err.msg, sizeof(why));
			return ma_error_set(
			    &r->err, "%s: %s", set_props[s], why);
		}
		if (op == 0)
			mp->sets[s] = parsed;
		else if (op == 1)
			mp->sets[s] |= parsed;
		else
			mp->sets[s] &= ~parsed;
		/* Customising a set takes it off the managed default. */
		mp->set_is_default[s] = false;
	}
	return 0;
}

/* restore_defaults - DefaultAuditSet=Owner,Admin puts sets back */
static int
restore_defaults(
    struct request *r, struct ma_mailbox_policy *mp, enum ma_preset preset)
{
	const char *v = arg(r, "default_audit_set");
	char word[32];
	enum ma_policy_set s;

	if (v == NULL)
		return 0;
	while (*v != '\0') {
		size_t n = strcspn(v, ", ");

		if (n == 0) {
			v++;
			continue;
		}
		if (n >= sizeof(word))
			n = sizeof(word) - 1;
		memcpy(word, v, n);
		word[n] = '\0';
		if (ma_policy_set_lookup(word, &s) != 1)
			return ma_error_set(&r->err,
			    "DefaultAuditSet: unknown logon type '%s' (use "
			    "Owner, Delegate, Admin)",
			    word);
		mp->sets[s] = ma_preset_actions(preset, mp->type, s);
		mp->set_is_default[s] = true;
		v += strcspn(v, ", ");
	}
	return 0;
}

static int
parse_scalars(struct request *r, struct ma_mailbox_policy *mp)
{
	const char *v;
	uint64_t days;

	v = arg(r, "audit_enabled");
	if (v != NULL) {
		if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0)
			return ma_error_set(&r->err,
			    "AuditEnabled: '%.64s' is not yes or no", v);
		mp->audit_enabled = strcmp(v, "yes") == 0;
	}
	v = arg(r, "age_limit_days");
	if (v != NULL) {
		if (ma_parse_u64(v, 36500, &days) < 0)
			return ma_error_set(&r->err,
			    "AuditLogAgeLimit: '%.64s' is not a number of "
			    "days from 0 to 36500",
			    v);
		mp->age_limit_days = (uint32_t)days;
	}
	return 0;
}

/* default_sets_text - "Owner,Delegate,Admin" for the managed sets */
static void
default_sets_text(const struct ma_mailbox_policy *mp, char *out, size_t size)
{
	struct ma_buf b;

	ma_buf_init(&b, size - 1);
	for (int s = 0; s < MA_SET_COUNT; s++) {
		if (!mp->set_is_default[s])
			continue;
		if (b.len > 0)
			ma_buf_putc(&b, ',');
		ma_buf_puts(&b, ma_policy_set_name(s));
	}
	memcpy(out, b.len > 0 ? b.data : "", b.len + 1);
	ma_buf_deinit(&b);
}

static void
record_mailbox_changes(struct request *r, const struct ma_mailbox_policy *a,
    const struct ma_mailbox_policy *b)
{
	char o[1024], n[1024];

	if (a->audit_enabled != b->audit_enabled)
		admin_change(r, "AuditEnabled",
		    a->audit_enabled ? "True" : "False",
		    b->audit_enabled ? "True" : "False");
	if (a->age_limit_days != b->age_limit_days) {
		snprintf(o, sizeof(o), "%u.00:00:00", a->age_limit_days);
		snprintf(n, sizeof(n), "%u.00:00:00", b->age_limit_days);
		admin_change(r, "AuditLogAgeLimit", o, n);
	}
	if (a->type != b->type)
		admin_change(r, "MailboxType", ma_mailbox_type_name(a->type),
		    ma_mailbox_type_name(b->type));
	for (int s = 0; s < MA_SET_COUNT; s++) {
		if (a->sets[s] != b->sets[s] &&
		    set_to_text(a->sets[s], o, sizeof(o)) == 0 &&
		    set_to_text(b->sets[s], n, sizeof(n)) == 0)
			admin_change(r, set_props[s], o, n);
	}
	if (memcmp(a->set_is_default, b->set_is_default,
		sizeof(a->set_is_default)) != 0) {
		default_sets_text(a, o, sizeof(o));
		default_sets_text(b, n, sizeof(n));
		admin_change(r, "DefaultAuditSet", o, n);
	}
}

static int
do_set_mailbox(struct request *r)
{
	struct ma_mailbox_policy old, mp;
	struct ma_org_policy org;
	const char *type = arg(r, "type");

	if (need_mailbox(r, &old) < 0 ||
	    ma_store_org_get(r->d->store, &org, &r->err) < 0)
		return -1;
	mp = old;
	if (type != NULL && ma_mailbox_type_lookup(type, &mp.type) != 1)
		return ma_error_set(&r->err,
		    "unknown mailbox type '%.64s' "
		    "(use user, shared, group)",
		    type);
	if (mp.type != old.type) {
		/* Sets still on the managed default follow the new type. */
		for (int s = 0; s < MA_SET_COUNT; s++) {
			if (mp.set_is_default[s])
				mp.sets[s] =
				    ma_preset_actions(org.preset, mp.type, s);
		}
	}
	if (parse_scalars(r, &mp) < 0)
		return -1;
	for (int s = 0; s < MA_SET_COUNT; s++) {
		if (edit_set(r, &mp, s) < 0)
			return -1;
	}
	if (restore_defaults(r, &mp, org.preset) < 0)
		return -1;
	admin_record_begin(r, "Set-Mailbox", arg(r, "mailbox"));
	record_mailbox_changes(r, &old, &mp);
	return ma_store_mailbox_put(
	    r->d->store, arg(r, "mailbox"), &mp, &r->err);
}

static int
do_mailbox_add(struct request *r)
{
	const char *name = arg(r, "mailbox"), *type = arg(r, "type");
	struct ma_mailbox_policy mp;
	struct ma_org_policy org;
	enum ma_mailbox_type t = MA_MAILBOX_USER;
	int ret;

	if (name == NULL || name[0] == '\0' || strlen(name) > 320)
		return ma_error_set(&r->err, "missing or overlong mailbox");
	if (type != NULL && ma_mailbox_type_lookup(type, &t) != 1)
		return ma_error_set(&r->err,
		    "unknown mailbox type '%.64s' "
		    "(use user, shared, group)",
		    type);
	ret = ma_store_mailbox_get(r->d->store, name, &mp, &r->err);
	if (ret < 0)
		return -1;
	if (ret == 1)
		return ma_error_set(
		    &r->err, "mailbox '%.200s' already exists", name);
	if (ma_store_org_get(r->d->store, &org, &r->err) < 0)
		return -1;
	ma_mailbox_policy_default(&mp, org.preset, t);
	admin_record_begin(r, "New-Mailbox", name);
	admin_change(r, "MailboxType", NULL, ma_mailbox_type_name(t));
	return ma_store_mailbox_put(r->d->store, name, &mp, &r->err);
}

static int
do_mailbox_remove(struct request *r)
{
	struct ma_mailbox_policy mp;

	if (need_mailbox(r, &mp) < 0)
		return -1;
	admin_record_begin(r, "Remove-Mailbox", arg(r, "mailbox"));
	admin_change(r, "MailboxType", ma_mailbox_type_name(mp.type), NULL);
	return ma_store_mailbox_remove(r->d->store, arg(r, "mailbox"), &r->err);
}

static int
do_set_org(struct request *r)
{
	struct ma_org_policy old, org;
	const char *v;

	if (ma_store_org_get(r->d->store, &old, &r->err) < 0)
		return -1;
	org = old;
	v = arg(r, "audit_disabled");
	if (v != NULL) {
		if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0)
			return ma_error_set(&r->err,
			    "AuditDisabled: '%.64s' is not yes or no", v);
		org.audit_disabled = strcmp(v, "yes") == 0;
	}
	v = arg(r, "preset");
	if (v != NULL && ma_preset_lookup(v, &org.preset) != 1)
		return ma_error_set(&r->err,
		    "unknown preset '%.64s' (use "
		    "default, exchange, strict)",
		    v);
	admin_record_begin(r, "Set-OrganizationConfig", ORG_OBJECT);
	if (old.audit_disabled != org.audit_disabled)
		admin_change(r, "AuditDisabled",
		    old.audit_disabled ? "True" : "False",
		    org.audit_disabled ? "True" : "False");
	admin_change(r, "AuditPreset", ma_preset_name(old.preset),
	    ma_preset_name(org.preset));
	return ma_store_org_put(r->d->store, &org, &r->err);
}

static int
do_bypass(struct request *r)
{
	const char *name = arg(r, "account"), *v = arg(r, "enabled");
	bool on;
	int had;

	if (name == NULL || name[0] == '\0' || strlen(name) > 320)
		return ma_error_set(&r->err, "missing or overlong account");
	if (v == NULL || (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0))
		return ma_error_set(
		    &r->err, "AuditBypassEnabled: give yes or no");
	on = strcmp(v, "yes") == 0;
	had = ma_store_bypass_has(r->d->store, name, &r->err);
	if (had < 0)
		return -1;
	admin_record_begin(r, "Set-MailboxAuditBypassAssociation", name);
	admin_change(r, "AuditBypassEnabled", had == 1 ? "True" : "False",
	    on ? "True" : "False");
	ma_record_add_prop(&r->rec, "Identity", NULL, name);
	if (r->rec.prop_count == 1)
		r->rec.prop_count = 0; /* nothing changed: no record */
	return ma_store_bypass_set(r->d->store, name, on, &r->err);
}

static int
do_status(struct request *r)
{
	uint64_t count;
	int64_t last;
	unsigned int pending, bad;

	daemon_writer_idle(r->d);
	if (ma_store_stats(r->d->store, &count, &last, &r->err) < 0)
		return -1;
	spool_count(r->d, &pending, &bad);
	ma_buf_printf(
	    r->reply, "spool_pending=%u\nspool_quarantined=%u\n", pending, bad);
	ma_buf_printf(r->reply,
	    "version=%s\nrecords=%llu\nlast_seq=%lld\nconnections=%u\n"
	    "stored_since_start=%llu\nduplicates_since_start=%llu\n"
	    "rejected_since_start=%llu\nspool_files_since_start=%llu\n",
	    MA_VERSION, (unsigned long long)count, (long long)last,
	    r->d->conn_count, (unsigned long long)r->d->stored_total,
	    (unsigned long long)r->d->duplicates_total,
	    (unsigned long long)r->d->rejected_total,
	    (unsigned long long)r->d->spool_files_total);
	return 0;
}

/*
 * purge: like the timed purge, and it says (in the answer and the log)
 * when forwarding held retention back.  The destination named is the one
 * with the lowest cursor when the answer is written, read afresh: the
 * store's guard, which set the limit, read the same state files a moment
 * before.
 */
static int
do_purge(struct request *r)
{
	const struct ma_conf *conf = &r->d->conf;
	uint64_t deleted;
	int64_t limit, cursor;
	char name[FWD_NAME_MAX + 1], held[512];
	struct ma_error err = {0};

	daemon_writer_idle(r->d);
	if (ma_store_purge(r->d->store, ma_now_ms(),
		(uint32_t)conf->retention_min_days, 0, &deleted, &r->err) < 0) {
		ma_log_warnx("retention (mailauditctl purge): %s", r->err.msg);
		return -1;
	}
	ma_buf_printf(r->reply, "purged=%llu\n", (unsigned long long)deleted);
	if (deleted > 0)
		ma_log_info("retention (mailauditctl purge): purged %llu "
			    "records",
		    (unsigned long long)deleted);
	if (ma_store_purge_held(r->d->store, &limit)) {
		int found = ma_fwd_lowest_cursor(conf->forwards,
		    conf->forward_state_dir, &cursor, name, &err);

		ma_fwd_held_text(conf->forward_state_dir,
		    found == 1 ? name : NULL, limit, held, sizeof(held));
		ma_proto_put(r->reply, "held_back", held);
		ma_log_info(
		    "retention (mailauditctl purge): held back: %s", held);
	}
	return 0;
}

static int
do_flush(struct request *r)
{
	/* Commit what was received, then drain the spool and commit that. */
	if (daemon_writer_idle(r->d) < 0)
		return ma_error_set(&r->err, "commit failed");
	spool_scan(r->d);
	return daemon_writer_idle(r->d) < 0
		   ? ma_error_set(&r->err, "commit failed")
		   : 0;
}

static const struct {
	const char *name;
	int (*fn)(struct request *);
	bool change;
} commands[] = {
    {"set-mailbox", do_set_mailbox, true},
    {"mailbox-add", do_mailbox_add, true},
    {"mailbox-remove", do_mailbox_remove, true},
    {"set-org", do_set_org, true},
    {"bypass", do_bypass, true},
    {"status", do_status, false},
    {"purge", do_purge, false},
    {"flush", do_flush, false},
};

static void
handle(struct request *r)
{
	const char *cmd = arg(r, "cmd");
	int ret = ma_error_set(
	    &r->err, "unknown command '%.64s'", cmd != NULL ? cmd : "");

	for (size_t i = 0;
	     cmd != NULL && i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(cmd, commands[i].name) != 0)
			continue;
		memset(&r->err, 0, sizeof(r->err));
		ret = commands[i].change ? apply(r, commands[i].fn)
					 : commands[i].fn(r);
		break;
	}
	if (ret < 0) {
		ma_buf_reset(r->reply);
		ma_proto_put(r->reply, "status", "error");
		ma_proto_put(r->reply, "error", r->err.msg);
	} else {
		ma_proto_put(r->reply, "status", "ok");
	}
	ma_proto_end(r->reply);
}

void
control_readable(struct daemon *d, struct conn *c)
{
	struct ma_kvframe req;
	struct ma_buf reply;
	struct request r = {.d = d, .c = c, .req = &req, .reply = &reply};
	ssize_t n;

	if (c->uid != 0 && c->uid != geteuid()) {
		daemon_conn_close(d, c, "control: permission denied");
		return;
	}
	n = recv(c->fd, d->recvbuf, MA_PROTO_MAX_FRAME, 0);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			daemon_conn_close(d, c, NULL);
		return;
	}
	ma_kvframe_init(&req);
	ma_buf_init(&reply, MA_PROTO_MAX_FRAME);
	ma_record_init(&r.rec);
	if (ma_kvframe_decode(&req, d->recvbuf, (size_t)n, &r.err) < 0) {
		ma_proto_put(&reply, "status", "error");
		ma_proto_put(&reply, "error", r.err.msg);
		ma_proto_end(&reply);
	} else {
		handle(&r);
	}
	if (send(c->fd, reply.data, reply.len, MSG_NOSIGNAL) < 0)
		ma_log_warn("control: reply");
	ma_record_deinit(&r.rec);
	ma_buf_deinit(&reply);
	ma_kvframe_deinit(&req);
}
