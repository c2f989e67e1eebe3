/* SPDX-License-Identifier: MIT */
/*
 * mailauditctl - search the audit log and manage the audit policy.
 *
 * Searches open the store read-only and never go through the daemon, so
 * an investigator's query cannot slow ingest down and works while the
 * daemon is stopped.  Policy changes go to the daemon's control socket:
 * the daemon is the only writer, and it stores every change together with
 * its own admin audit record.
 *
 * Paging never truncates silently: every search ends with a line on
 * stderr saying how many records matched, how many were shown, and the
 * exact option that fetches the next page.
 */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ma-conf.h"
#include "ma-config.h"
#include "ma-export.h"
#include "forward-cmd.h"
#include "journal-cmd.h"
#include "ma-log.h"
#include "ma-policy.h"
#include "ma-proto.h"
#include "ma-store.h"

#define MAX_LIST 64

static struct ma_conf conf;

static void
usage(void)
{
	fputs("usage: mailauditctl [-c config] command [args]\n"
	      "commands:\n"
	      "  search [filters] [--format table|json|csv]\n"
	      "  get-mailbox [NAME...]      show mailbox audit policy\n"
	      "  set-mailbox NAME [options] change a mailbox's policy\n"
	      "  mailbox add NAME [--type user|shared|group]\n"
	      "  mailbox remove NAME\n"
	      "  get-org / set-org [--audit-disabled yes|no] [--preset P]\n"
	      "  get-bypass / set-bypass ACCOUNT --enabled yes|no\n"
	      "  journal setup USER --group GROUP   restrict the journal "
	      "mailbox\n"
	      "  journal status             the journal report spool\n"
	      "  forward status [--json]    where each SIEM destination "
	      "stands\n"
	      "  presets                    show the preset action sets\n"
	      "  status | purge | flush | config [-n]\n"
	      "see mailauditctl(8)\n",
	    stderr);
	exit(2);
}

static struct ma_store *
open_store(void)
{
	struct ma_store_options so = {.readonly = true, .cache_kib = 8192};
	struct ma_error err = {0};
	struct ma_store *store = ma_store_open(conf.store_path, &so, &err);

	if (store == NULL)
		ma_fatalx("%s", err.msg);
	return store;
}

/* Control socket. */

/*
 * control_try - send one request frame, read the reply; 0, or -1 with
 * the daemon's error in error_r.  Exits when the daemon is unreachable.
 */
static int
control_try(struct ma_buf *req, struct ma_kvframe *reply, char *error_r,
    size_t error_size)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct ma_error err = {0};
	char *buf = ma_xmalloc(MA_PROTO_MAX_FRAME);
	const char *who = getenv("SUDO_USER");
	ssize_t n;
	int fd;

	if (who != NULL)
		ma_proto_put(req, "actor", who);
	ma_proto_end(req);
	if (strlen(conf.control_socket_path) >= sizeof(sun.sun_path))
		ma_fatalx("control socket path too long");
	memcpy(sun.sun_path, conf.control_socket_path,
	    strlen(conf.control_socket_path) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		ma_fatal("socket");
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		ma_fatal(
		    "cannot reach mailauditd at %s", conf.control_socket_path);
	if (send(fd, req->data, req->len, MSG_NOSIGNAL) < 0)
		ma_fatal("send to mailauditd");
	n = recv(fd, buf, MA_PROTO_MAX_FRAME, 0);
	if (n <= 0)
		ma_fatalx("mailauditd closed the connection (only root and "
			  "the daemon's user may change the policy)");
	close(fd);
	if (ma_kvframe_decode(reply, buf, (size_t)n, &err) < 0)
		ma_fatalx("bad reply from mailauditd: %s", err.msg);
	free(buf);
	if (strcmp(ma_kvframe_get(reply, "status") != NULL
		       ? ma_kvframe_get(reply, "status")
		       : "",
		"ok") != 0) {
		const char *e = ma_kvframe_get(reply, "error");

		snprintf(error_r, error_size, "%s",
		    e != NULL ? e : "request failed");
		return -1;
	}
	return 0;
}

/* control - the same; exits on failure */
static void
control(struct ma_buf *req, struct ma_kvframe *reply)
{
	char error[512];

	if (control_try(req, reply, error, sizeof(error)) < 0) {
		fprintf(stderr, "mailauditctl: %s\n", error);
		exit(1);
	}
}

/* simple_command - cmd plus fixed key/value pairs; prints the reply */
static int
simple_command(const char *cmd, const char *const *kv, bool print)
{
	struct ma_buf req;
	struct ma_kvframe reply;

	ma_buf_init(&req, MA_PROTO_MAX_FRAME);
	ma_kvframe_init(&reply);
	ma_proto_put(&req, "cmd", cmd);
	for (; kv != NULL && kv[0] != NULL; kv += 2)
		ma_proto_put(&req, kv[0], kv[1]);
	control(&req, &reply);
	for (unsigned int i = 0; print && i < reply.count; i++) {
		if (strcmp(reply.kv[i].key, "status") != 0)
			printf("%s: %s\n", reply.kv[i].key, reply.kv[i].value);
	}
	ma_kvframe_deinit(&reply);
	ma_buf_deinit(&req);
	return 0;
}

/* Search. */

struct search_opts {
	struct ma_query q;
	const char *mailboxes[MAX_LIST], *users[MAX_LIST], *ops[MAX_LIST];
	struct ma_export_ctx ex;
	uint64_t shown;
	int64_t last_seq;
};

static void
add_list(const char **list, unsigned int *count, char *value, const char *what)
{
	char *save, *t;

	for (t = strtok_r(value, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		if (*count == MAX_LIST)
			ma_fatalx("too many %s (at most %d)", what, MAX_LIST);
		list[(*count)++] = t;
	}
}

static void
parse_logon_types(struct search_opts *so, char *value)
{
	char *save, *t;
	enum ma_logon l;

	for (t = strtok_r(value, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		if (ma_logon_lookup(t, &l) != 1)
			ma_fatalx("--logon-types: unknown logon type '%s' "
				  "(use Owner, Delegate, Admin, Transport, "
				  "SystemService)",
			    t);
		so->q.logon_mask |= 1U << l;
	}
}

static void
check_operations(struct search_opts *so)
{
	static const char *const admin_ops[] = {"Set-Mailbox",
	    "Set-OrganizationConfig", "Set-MailboxAuditBypassAssociation",
	    "New-Mailbox", "Remove-Mailbox", NULL};
	enum ma_action a;

	for (unsigned int i = 0; i < so->q.operation_count; i++) {
		bool ok = false;

		if (ma_action_lookup(so->ops[i], &a) == 1) {
			/* Canonical spelling, whatever case was typed. */
			so->ops[i] = ma_action_name(a);
			ok = true;
		}
		for (int j = 0; !ok && admin_ops[j] != NULL; j++) {
			if (strcasecmp(so->ops[i], admin_ops[j]) == 0) {
				so->ops[i] = admin_ops[j];
				ok = true;
			}
		}
		if (!ok)
			ma_fatalx(
			    "--operations: unknown operation '%s'", so->ops[i]);
	}
}

static int64_t
parse_time_opt(const char *name, const char *value)
{
	int64_t ms;

	if (ma_parse_time(value, ma_now_ms(), &ms) < 0)
		ma_fatalx("%s: cannot parse '%s' (use YYYY-MM-DD, "
			  "YYYY-MM-DDTHH:MM[:SS] UTC, @epoch or -7d/-12h/-30m)",
		    name, value);
	return ms;
}

static int
print_row(void *ctx, const struct ma_record *rec)
{
	struct search_opts *so = ctx;

	if (ma_export_record(&so->ex, rec, stdout) < 0)
		return -1;
	so->shown++;
	so->last_seq = rec->seq;
	return 0;
}

enum {
	OPT_FORMAT = 256,
	OPT_MAILBOXES,
	OPT_USERS,
	OPT_LOGON,
	OPT_OPS,
	OPT_START,
	OPT_END,
	OPT_IP,
	OPT_SESSION,
	OPT_TEXT,
	OPT_SIZE,
	OPT_AFTER,
	OPT_BEFORE,
	OPT_OLDEST,
	OPT_RESULT,
};

static const struct option search_longopts[] = {
    {"format", required_argument, NULL, OPT_FORMAT},
    {"mailboxes", required_argument, NULL, OPT_MAILBOXES},
    {"mailbox", required_argument, NULL, OPT_MAILBOXES},
    {"identity", required_argument, NULL, OPT_MAILBOXES},
    {"user-ids", required_argument, NULL, OPT_USERS},
    {"user", required_argument, NULL, OPT_USERS},
    {"logon-types", required_argument, NULL, OPT_LOGON},
    {"operations", required_argument, NULL, OPT_OPS},
    {"start", required_argument, NULL, OPT_START},
    {"end", required_argument, NULL, OPT_END},
    {"ip", required_argument, NULL, OPT_IP},
    {"session", required_argument, NULL, OPT_SESSION},
    {"free-text", required_argument, NULL, OPT_TEXT},
    {"text", required_argument, NULL, OPT_TEXT},
    {"result-size", required_argument, NULL, OPT_SIZE},
    {"after", required_argument, NULL, OPT_AFTER},
    {"before", required_argument, NULL, OPT_BEFORE},
    {"oldest-first", no_argument, NULL, OPT_OLDEST},
    {"result", required_argument, NULL, OPT_RESULT},
    {NULL, 0, NULL, 0},
};

static void
search_option(struct search_opts *so, int ch, char *arg)
{
	uint64_t v;
	enum ma_result res;

	switch (ch) {
	case OPT_FORMAT:
		if (ma_export_format_lookup(arg, &so->ex.format) != 1)
			ma_fatalx("--format: unknown format '%s' (use table, "
				  "json, csv)",
			    arg);
		break;
	case OPT_MAILBOXES:
		add_list(so->mailboxes, &so->q.mailbox_count, arg, "mailboxes");
		break;
	case OPT_USERS:
		add_list(so->users, &so->q.user_count, arg, "users");
		break;
	case OPT_LOGON:
		parse_logon_types(so, arg);
		break;
	case OPT_OPS:
		add_list(so->ops, &so->q.operation_count, arg, "operations");
		break;
	case OPT_START:
		so->q.start_ms = parse_time_opt("--start", arg);
		break;
	case OPT_END:
		so->q.end_ms = parse_time_opt("--end", arg);
		break;
	case OPT_IP:
		so->q.client_ip = arg;
		break;
	case OPT_SESSION:
		so->q.session = arg;
		break;
	case OPT_TEXT:
		so->q.text = arg;
		break;
	case OPT_SIZE:
		if (ma_parse_u64(arg, 1000000, &v) < 0 || v == 0)
			ma_fatalx("--result-size: '%s' is not a number from 1 "
				  "to 1000000",
			    arg);
		so->q.limit = (uint32_t)v;
		break;
	case OPT_AFTER:
	case OPT_BEFORE:
		if (ma_parse_u64(arg, INT64_MAX, &v) < 0)
			ma_fatalx("%s: '%s' is not a sequence number",
			    ch == OPT_AFTER ? "--after" : "--before", arg);
		so->q.cursor = (int64_t)v;
		so->q.newest_first = ch == OPT_BEFORE;
		break;
	case OPT_OLDEST:
		so->q.newest_first = false;
		break;
	case OPT_RESULT:
		if (ma_result_lookup(arg, &res) != 1)
			ma_fatalx("--result: unknown result '%s' (use "
				  "Succeeded, PartiallySucceeded, Failed)",
			    arg);
		so->q.result = (int)res;
		break;
	default:
		usage();
	}
}

static int
cmd_search(int argc, char **argv)
{
	static struct search_opts so;
	struct ma_error err = {0};
	struct ma_store *store;
	uint64_t matched = 0;
	int ch;

	so.q.limit = 1000; /* Search-MailboxAuditLog's default ResultSize */
	so.q.newest_first = true;
	so.q.result = -1;
	so.ex.format = MA_EXPORT_TABLE;
	so.ex.organization_id =
	    conf.organization_id[0] != '\0' ? conf.organization_id : NULL;
	so.ex.organization_name =
	    conf.organization_name[0] != '\0' ? conf.organization_name : NULL;
	optind = 0; /* glibc: reinitialise (main used "+c:") */
	while ((ch = getopt_long(argc, argv, "", search_longopts, NULL)) != -1)
		search_option(&so, ch, optarg);
	if (optind != argc)
		ma_fatalx("search: unexpected argument '%s'", argv[optind]);
	check_operations(&so);
	so.q.mailboxes = so.mailboxes;
	so.q.users = so.users;
	so.q.operations = so.ops;

	store = open_store();
	if (ma_store_search(store, &so.q, print_row, &so, &matched, &err) != 0)
		ma_fatalx(
		    "search: %s", err.msg[0] != '\0' ? err.msg : "write error");
	ma_store_destroy(&store);
	if (fflush(stdout) != 0)
		ma_fatal("stdout");
	fprintf(stderr, "%llu record(s) matched; %llu shown.",
	    (unsigned long long)matched, (unsigned long long)so.shown);
	if (matched > so.shown)
		fprintf(stderr, " Next page: add %s %lld\n",
		    so.q.newest_first ? "--before" : "--after",
		    (long long)so.last_seq);
	else
		fputc('\n', stderr);
	return 0;
}

/* Policy display. */

static void
print_set(const char *label, ma_action_set set)
{
	struct ma_buf b;

	ma_buf_init(&b, 4096);
	ma_action_set_format(set, &b);
	printf("  %-18s %s\n", label, b.data);
	ma_buf_deinit(&b);
}

static void
print_mailbox(const char *name, const struct ma_mailbox_policy *mp)
{
	struct ma_buf dflt;

	ma_buf_init(&dflt, 256);
	for (int s = 0; s < MA_SET_COUNT; s++) {
		if (!mp->set_is_default[s])
			continue;
		if (dflt.len > 0)
			ma_buf_putc(&dflt, ',');
		ma_buf_puts(&dflt, ma_policy_set_name(s));
	}
	printf("Identity:            %s\n", name);
	printf("  %-18s %s\n", "MailboxType", ma_mailbox_type_name(mp->type));
	printf("  %-18s %s\n", "AuditEnabled",
	    mp->audit_enabled ? "True" : "False");
	printf("  %-18s %u.00:00:00\n", "AuditLogAgeLimit", mp->age_limit_days);
	print_set("AuditAdmin", mp->sets[MA_SET_ADMIN]);
	print_set("AuditDelegate", mp->sets[MA_SET_DELEGATE]);
	print_set("AuditOwner", mp->sets[MA_SET_OWNER]);
	printf(
	    "  %-18s %s\n", "DefaultAuditSet", dflt.len > 0 ? dflt.data : "");
	ma_buf_deinit(&dflt);
}

static int
print_mailbox_cb(
    void *ctx, const char *name, const struct ma_mailbox_policy *mp)
{
	(void)ctx;
	print_mailbox(name, mp);
	return 0;
}

static int
cmd_get_mailbox(int count, const char *const *names)
{
	struct ma_store *store = open_store();
	struct ma_mailbox_policy mp;
	struct ma_error err = {0};
	int ret = 0;

	if (count == 0) {
		if (ma_store_mailbox_foreach(
			store, print_mailbox_cb, NULL, &err) != 0)
			ma_fatalx("%s", err.msg);
	}
	for (int i = 0; i < count; i++) {
		int r = ma_store_mailbox_get(store, names[i], &mp, &err);

		if (r < 0)
			ma_fatalx("%s", err.msg);
		if (r == 0) {
			fprintf(stderr, "mailauditctl: unknown mailbox '%s'\n",
			    names[i]);
			ret = 1;
			continue;
		}
		print_mailbox(names[i], &mp);
	}
	ma_store_destroy(&store);
	return ret;
}

static const struct option set_mailbox_longopts[] = {
    {"audit-enabled", required_argument, NULL, 'e'},
    {"audit-owner", required_argument, NULL, 'o'},
    {"audit-delegate", required_argument, NULL, 'd'},
    {"audit-admin", required_argument, NULL, 'a'},
    {"audit-owner-add", required_argument, NULL, 'O'},
    {"audit-delegate-add", required_argument, NULL, 'D'},
    {"audit-admin-add", required_argument, NULL, 'A'},
    {"audit-owner-remove", required_argument, NULL, 1},
    {"audit-delegate-remove", required_argument, NULL, 2},
    {"audit-admin-remove", required_argument, NULL, 3},
    {"audit-log-age-limit", required_argument, NULL, 'l'},
    {"default-audit-set", required_argument, NULL, 's'},
    {"type", required_argument, NULL, 't'},
    {NULL, 0, NULL, 0},
};

static const char *
set_mailbox_key(int ch)
{
	switch (ch) {
	case 'e':
		return "audit_enabled";
	case 'o':
		return "audit_owner";
	case 'd':
		return "audit_delegate";
	case 'a':
		return "audit_admin";
	case 'O':
		return "audit_owner_add";
	case 'D':
		return "audit_delegate_add";
	case 'A':
		return "audit_admin_add";
	case 1:
		return "audit_owner_remove";
	case 2:
		return "audit_delegate_remove";
	case 3:
		return "audit_admin_remove";
	case 'l':
		return "age_limit_days";
	case 's':
		return "default_audit_set";
	case 't':
		return "type";
	default:
		usage();
	}
	return NULL;
}

/* yes_no - accept yes/no/true/false ($true as in PowerShell, too) */
static const char *
yes_no(const char *opt, const char *v)
{
	if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 ||
	    strcasecmp(v, "$true") == 0)
		return "yes";
	if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 ||
	    strcasecmp(v, "$false") == 0)
		return "no";
	ma_fatalx("%s: '%s' is not yes or no", opt, v);
}

static int
cmd_set_mailbox(int argc, char **argv)
{
	struct ma_buf req;
	struct ma_kvframe reply;
	int ch, n = 0;

	ma_buf_init(&req, MA_PROTO_MAX_FRAME);
	ma_kvframe_init(&reply);
	ma_proto_put(&req, "cmd", "set-mailbox");
	optind = 0; /* glibc: reinitialise (main used "+c:") */
	while ((ch = getopt_long(argc, argv, "", set_mailbox_longopts, NULL)) !=
	       -1) {
		const char *key = set_mailbox_key(ch), *v = optarg;

		if (ch == 'e')
			v = yes_no("--audit-enabled", v);
		ma_proto_put(&req, key, v);
		n++;
	}
	if (optind != argc - 1)
		ma_fatalx("set-mailbox: give exactly one mailbox name");
	if (n == 0)
		ma_fatalx("set-mailbox: nothing to change (see "
			  "mailauditctl(8))");
	ma_proto_put(&req, "mailbox", argv[optind]);
	control(&req, &reply);
	ma_kvframe_deinit(&reply);
	ma_buf_deinit(&req);
	return cmd_get_mailbox(1, (const char *const *)&argv[optind]);
}

static int
cmd_mailbox(int argc, char **argv)
{
	const char *type = NULL;

	if (argc >= 3 && strcmp(argv[1], "add") == 0) {
		if (argc == 5 && strcmp(argv[3], "--type") == 0)
			type = argv[4];
		else if (argc != 3)
			usage();
		simple_command("mailbox-add",
		    (const char *const[]){"mailbox", argv[2],
			type != NULL ? "type" : NULL, type, NULL},
		    false);
		return cmd_get_mailbox(1, (const char *const *)&argv[2]);
	}
	if (argc == 3 && strcmp(argv[1], "remove") == 0)
		return simple_command("mailbox-remove",
		    (const char *const[]){"mailbox", argv[2], NULL}, false);
	if (argc == 2 && strcmp(argv[1], "list") == 0)
		return cmd_get_mailbox(0, NULL);
	usage();
	return 2;
}

static int
print_bypass_cb(void *ctx, const char *name)
{
	(void)ctx;
	printf("%s\n", name);
	return 0;
}

static int
cmd_get_org(void)
{
	struct ma_store *store = open_store();
	struct ma_org_policy org;
	struct ma_error err = {0};

	if (ma_store_org_get(store, &org, &err) < 0)
		ma_fatalx("%s", err.msg);
	printf("AuditDisabled:   %s\n", org.audit_disabled ? "True" : "False");
	printf("AuditPreset:     %s\n", ma_preset_name(org.preset));
	printf(
	    "RecordSubjects:  %s\n", conf.record_subjects ? "True" : "False");
	printf("BypassedAccounts:\n");
	if (ma_store_bypass_foreach(store, print_bypass_cb, NULL, &err) != 0)
		ma_fatalx("%s", err.msg);
	ma_store_destroy(&store);
	return 0;
}

static int
cmd_set_org(int argc, char **argv)
{
	const char *kv[5] = {NULL};
	int n = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--audit-disabled") == 0 && i + 1 < argc) {
			kv[n++] = "audit_disabled";
			kv[n++] = yes_no("--audit-disabled", argv[++i]);
		} else if (strcmp(argv[i], "--preset") == 0 && i + 1 < argc) {
			kv[n++] = "preset";
			kv[n++] = argv[++i];
		} else {
			usage();
		}
		if (n > 4)
			usage();
	}
	if (n == 0)
		usage();
	simple_command("set-org", kv, false);
	return cmd_get_org();
}

static int
cmd_get_bypass(void)
{
	struct ma_store *store = open_store();
	struct ma_error err = {0};

	if (ma_store_bypass_foreach(store, print_bypass_cb, NULL, &err) != 0)
		ma_fatalx("%s", err.msg);
	ma_store_destroy(&store);
	return 0;
}

static int
cmd_set_bypass(int argc, char **argv)
{
	if (argc != 4 || strcmp(argv[2], "--enabled") != 0)
		ma_fatalx("usage: set-bypass ACCOUNT --enabled yes|no");
	return simple_command("bypass",
	    (const char *const[]){"account", argv[1], "enabled",
		yes_no("--enabled", argv[3]), NULL},
	    false);
}

static int
cmd_presets(void)
{
	for (int p = 0; p < MA_PRESET_COUNT; p++) {
		for (int t = 0; t < MA_MAILBOX_TYPE_COUNT; t++) {
			printf("%s preset, %s mailboxes:\n", ma_preset_name(p),
			    ma_mailbox_type_name(t));
			print_set("AuditAdmin",
			    ma_preset_actions(p, t, MA_SET_ADMIN));
			print_set("AuditDelegate",
			    ma_preset_actions(p, t, MA_SET_DELEGATE));
			print_set("AuditOwner",
			    ma_preset_actions(p, t, MA_SET_OWNER));
		}
	}
	return 0;
}

/*
 * journal_policy - the journal mailbox is shared and every access to it,
 * by anyone, is audited.
 */
static int
journal_policy(const char *user)
{
	static const char *const actions =
	    "MailboxLogin,FolderBind,MessageBind,MailItemsAccessed,Create,"
	    "Update,Copy,Move,MoveToDeletedItems,SoftDelete,HardDelete,"
	    "UpdateFolderPermissions";
	struct ma_buf req;
	struct ma_kvframe reply;
	char error[512];
	int ret;

	ma_buf_init(&req, MA_PROTO_MAX_FRAME);
	ma_kvframe_init(&reply);
	ma_proto_put(&req, "cmd", "mailbox-add");
	ma_proto_put(&req, "mailbox", user);
	ma_proto_put(&req, "type", "shared");
	if (control_try(&req, &reply, error, sizeof(error)) < 0 &&
	    strstr(error, "already exists") == NULL) {
		fprintf(stderr, "mailauditctl: %s\n", error);
		ma_kvframe_deinit(&reply);
		ma_buf_deinit(&req);
		return -1;
	}
	ma_kvframe_deinit(&reply);
	ma_buf_reset(&req);
	ma_kvframe_init(&reply);
	ma_proto_put(&req, "cmd", "set-mailbox");
	ma_proto_put(&req, "mailbox", user);
	ma_proto_put(&req, "type", "shared");
	ma_proto_put(&req, "audit_enabled", "yes");
	ma_proto_put(&req, "audit_owner_add", actions);
	ma_proto_put(&req, "audit_delegate_add", actions);
	ma_proto_put(&req, "audit_admin_add", actions);
	ret = control_try(&req, &reply, error, sizeof(error));
	if (ret < 0)
		fprintf(stderr, "mailauditctl: %s\n", error);
	ma_kvframe_deinit(&reply);
	ma_buf_deinit(&req);
	return ret < 0 ? -1 : cmd_get_mailbox(1, &user);
}

int
main(int argc, char **argv)
{
	const char *config = MA_CONF_DEFAULT_PATH;
	struct ma_error err = {0};
	bool config_given = false;
	int ch;

	ma_log_init("mailauditctl", true, false);
	while ((ch = getopt(argc, argv, "+c:")) != -1) {
		if (ch != 'c')
			usage();
		config = optarg;
		config_given = true;
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	if (ma_conf_load(&conf, config, &err) < 0 &&
	    (config_given || access(config, F_OK) == 0))
		ma_fatalx("%s", err.msg);

	if (strcmp(argv[0], "search") == 0)
		return cmd_search(argc, argv);
	if (strcmp(argv[0], "get-mailbox") == 0)
		return cmd_get_mailbox(argc - 1, (const char *const *)argv + 1);
	if (strcmp(argv[0], "set-mailbox") == 0)
		return cmd_set_mailbox(argc, argv);
	if (strcmp(argv[0], "mailbox") == 0)
		return cmd_mailbox(argc, argv);
	if (strcmp(argv[0], "get-org") == 0 && argc == 1)
		return cmd_get_org();
	if (strcmp(argv[0], "set-org") == 0)
		return cmd_set_org(argc, argv);
	if (strcmp(argv[0], "get-bypass") == 0 && argc == 1)
		return cmd_get_bypass();
	if (strcmp(argv[0], "set-bypass") == 0)
		return cmd_set_bypass(argc, argv);
	if (strcmp(argv[0], "journal") == 0 && argc >= 2 &&
	    strcmp(argv[1], "setup") == 0)
		return journal_setup(argc - 1, argv + 1, journal_policy);
	if (strcmp(argv[0], "journal") == 0 && argc == 2 &&
	    strcmp(argv[1], "status") == 0)
		return journal_status(&conf);
	if (strcmp(argv[0], "forward") == 0 && argc >= 2 &&
	    strcmp(argv[1], "status") == 0)
		return forward_status(&conf, argc - 1, argv + 1);
	if (strcmp(argv[0], "presets") == 0 && argc == 1)
		return cmd_presets();
	if (strcmp(argv[0], "status") == 0 && argc == 1)
		return simple_command("status", NULL, true);
	if (strcmp(argv[0], "purge") == 0 && argc == 1)
		return simple_command("purge", NULL, true);
	if (strcmp(argv[0], "flush") == 0 && argc == 1)
		return simple_command("flush", NULL, false);
	if (strcmp(argv[0], "config") == 0 && argc <= 2) {
		ma_conf_print(
		    &conf, stdout, argc == 2 && strcmp(argv[1], "-n") == 0);
		return 0;
	}
	usage();
	return 2;
}
