/* SPDX-License-Identifier: MIT */
/*
 * ma-conf.c - the configuration table and its parser.
 *
 * Like Postfix's main.cf tables, each option appears once below with its
 * type, default and bounds; defaults go through the same parser as the
 * file, so a bad default is caught by the unit tests.  The parser is a
 * pure function from text to struct (plus an error) and is fuzzed.
 */

#include "ma-conf.h"
#include "ma-forward-conf.h"
#include "ma-journal.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum opt_type {
	OPT_STR,
	OPT_PATH,
	OPT_UINT,
	OPT_MODE,
	OPT_BOOL,
	OPT_RULE,    /* repeatable; each value a journal rule, '\n'-joined */
	OPT_FORWARD, /* repeatable; each value a destination, '\n'-joined */
};

struct opt {
	const char *name;
	enum opt_type type;
	const char *def;
	size_t offset;
	uint64_t min, max;
	int (*check)(const char *value, struct ma_error *err); /* or NULL */
};

#define O(f) offsetof(struct ma_conf, f)

static int
check_mailbox_names(const char *value, struct ma_error *err)
{
	enum ma_mailbox_names names;

	if (ma_mailbox_names_parse(value, &names) < 0)
		return ma_error_set(
		    err, "'%.64s' is not address or localpart", value);
	return 0;
}

static int
check_domains(const char *value, struct ma_error *err)
{
	struct ma_domains domains;

	if (ma_domains_parse(value, &domains, err) < 0)
		return -1;
	ma_domains_free(&domains);
	return 0;
}

static int
check_milter_socket(const char *value, struct ma_error *err)
{
	if (strncmp(value, "unix:", 5) != 0 &&
	    strncmp(value, "local:", 6) != 0 &&
	    strncmp(value, "inet:", 5) != 0 && strncmp(value, "inet6:", 6) != 0)
		return ma_error_set(err,
		    "'%.64s' is not unix:/path, inet:port@host or "
		    "inet6:port@host",
		    value);
	return 0;
}

static int
check_lmtp(const char *value, struct ma_error *err)
{
	if (strncmp(value, "unix:/", 6) != 0 && strncmp(value, "inet:", 5) != 0)
		return ma_error_set(
		    err, "'%.64s' is not unix:/path or inet:host:port", value);
	return 0;
}

static int
check_journal_store(const char *value, struct ma_error *err)
{
	if (strcmp(value, "lmtp") != 0 && strcmp(value, "imap") != 0)
		return ma_error_set(err, "'%.64s' is not lmtp or imap", value);
	return 0;
}

/* RFC 5424 APP-NAME: 1 to 48 printable US-ASCII characters. */
static int
check_app_name(const char *value, struct ma_error *err)
{
	size_t n = strlen(value);

	for (size_t i = 0; i < n; i++) {
		if (value[i] < 33 || value[i] > 126)
			n = 0;
	}
	if (n == 0 || n > 48)
		return ma_error_set(err,
		    "'%.64s' is not 1 to 48 printable ASCII characters", value);
	return 0;
}

/* RFC 5424 SD-ID: 1 to 32 printable US-ASCII, no '=', ' ', ']' or '"'. */
static int
check_sd_id(const char *value, struct ma_error *err)
{
	size_t n = strlen(value);

	for (size_t i = 0; i < n; i++) {
		if (value[i] < 33 || value[i] > 126 || value[i] == '=' ||
		    value[i] == ']' || value[i] == '"')
			n = 0;
	}
	if (n == 0 || n > 32)
		return ma_error_set(err,
		    "'%.64s' is not an SD-ID (1 to 32 printable ASCII "
		    "characters, no = ] \")",
		    value);
	return 0;
}

static const struct opt opts[] = {
    {"store_path", OPT_PATH, "/var/lib/mailaudit/audit.db", O(store_path), 0, 0,
	NULL},
    {"socket_path", OPT_PATH, "/run/mailaudit/ingest.sock", O(socket_path), 0,
	0, NULL},
    {"control_socket_path", OPT_PATH, "/run/mailaudit/control.sock",
	O(control_socket_path), 0, 0, NULL},
    {"spool_dir", OPT_PATH, "/var/spool/mailaudit", O(spool_dir), 0, 0, NULL},
    {"policy_snapshot_path", OPT_PATH, "/var/lib/mailaudit/policy.snapshot",
	O(policy_snapshot_path), 0, 0, NULL},
    {"user", OPT_STR, "", O(user), 0, 0, NULL},
    {"organization_name", OPT_STR, "", O(organization_name), 0, 0, NULL},
    {"organization_id", OPT_STR, "", O(organization_id), 0, 0, NULL},
    {"server_name", OPT_STR, "", O(server_name), 0, 0, NULL},
    {"socket_mode", OPT_MODE, "0666", O(socket_mode), 0, 0777, NULL},
    {"batch_max_records", OPT_UINT, "10000", O(batch_max_records), 1, 1000000,
	NULL},
    {"batch_max_delay_ms", OPT_UINT, "50", O(batch_max_delay_ms), 1, 900, NULL},
    {"batch_min_delay_ms", OPT_UINT, "5", O(batch_min_delay_ms), 0, 900, NULL},
    {"retention_min_days", OPT_UINT, "90", O(retention_min_days), 0, 36500,
	NULL},
    {"purge_interval_s", OPT_UINT, "3600", O(purge_interval_s), 1, 604800,
	NULL},
    {"spool_scan_interval_ms", OPT_UINT, "1000", O(spool_scan_interval_ms), 10,
	3600000, NULL},
    {"max_connections", OPT_UINT, "4096", O(max_connections), 1, 65536, NULL},
    {"cache_size_kib", OPT_UINT, "16384", O(cache_size_kib), 256, 4194304,
	NULL},
    {"record_subjects", OPT_BOOL, "yes", O(record_subjects), 0, 0, NULL},
    {"sync_full", OPT_BOOL, "yes", O(sync_full), 0, 0, NULL},
    {"milter_socket", OPT_STR, "unix:/run/mailaudit/milter.sock",
	O(milter_socket), 0, 0, check_milter_socket},
    {"milter_socket_group", OPT_STR, "postfix", O(milter_socket_group), 0, 0,
	NULL},
    {"milter_socket_mode", OPT_MODE, "0660", O(milter_socket_mode), 0, 0777,
	NULL},
    {"local_domains", OPT_STR, "", O(local_domains), 0, 0, check_domains},
    {"sender_login_maps", OPT_STR, "", O(sender_login_maps), 0, 0, NULL},
    {"mailbox_names", OPT_STR, "address", O(mailbox_names), 0, 0,
	check_mailbox_names},
    {"originating_daemons", OPT_STR, "ORIGINATING SUBMISSION LOCAL",
	O(originating_daemons), 0, 0, NULL},
    {"milter_enforce_from", OPT_BOOL, "yes", O(milter_enforce_from), 0, 0,
	NULL},
    {"journal_rule", OPT_RULE, "", O(journal_rules), 0, 0, NULL},
    {"journal_spool_dir", OPT_PATH, "/var/spool/mailaudit/journal",
	O(journal_spool_dir), 0, 0, NULL},
    {"journal_lmtp", OPT_STR, "unix:/run/dovecot/lmtp", O(journal_lmtp), 0, 0,
	check_lmtp},
    {"journal_store", OPT_STR, "lmtp", O(journal_store), 0, 0,
	check_journal_store},
    {"journal_imap", OPT_STR, "inet:127.0.0.1:143", O(journal_imap), 0, 0,
	check_lmtp},
    {"journal_imap_master_user", OPT_STR, "", O(journal_imap_master_user), 0, 0,
	NULL},
    {"journal_imap_password_file", OPT_STR, "", O(journal_imap_password_file),
	0, 0, NULL},
    {"journal_imap_mailbox", OPT_STR, "INBOX", O(journal_imap_mailbox), 0, 0,
	NULL},
    {"journal_batch", OPT_UINT, "64", O(journal_batch), 1, 1000, NULL},
    {"journal_batch_delay_ms", OPT_UINT, "500", O(journal_batch_delay_ms), 0,
	60000, NULL},
    {"journal_report_from", OPT_STR, "", O(journal_report_from), 0, 0, NULL},
    {"journal_alias_maps", OPT_STR, "", O(journal_alias_maps), 0, 0, NULL},
    {"postfix_config_dir", OPT_STR, "", O(postfix_config_dir), 0, 0, NULL},
    {"forward", OPT_FORWARD, "", O(forwards), 0, 0, NULL},
    {"forward_state_dir", OPT_PATH, "/var/lib/mailaudit/forward",
	O(forward_state_dir), 0, 0, NULL},
    {"forward_poll_ms", OPT_UINT, "100", O(forward_poll_ms), 10, 60000, NULL},
    {"forward_state_interval_ms", OPT_UINT, "1000",
	O(forward_state_interval_ms), 10, 3600000, NULL},
    {"forward_backoff_max_ms", OPT_UINT, "60000", O(forward_backoff_max_ms),
	1000, 86400000, NULL},
    {"syslog_app_name", OPT_STR, "mailaudit", O(syslog_app_name), 0, 0,
	check_app_name},
    {"syslog_sd_id", OPT_STR, "mailaudit@32473", O(syslog_sd_id), 0, 0,
	check_sd_id},
    {"syslog_utf8_bom", OPT_BOOL, "no", O(syslog_utf8_bom), 0, 0, NULL},
};
#define OPT_COUNT (sizeof(opts) / sizeof(opts[0]))

static int
set_value(struct ma_conf *conf, const struct opt *o, const char *value,
    struct ma_error *err)
{
	void *field = (char *)conf + o->offset;
	uint64_t v;
	char *end;

	switch (o->type) {
	case OPT_PATH:
		if (value[0] != '/')
			return ma_error_set(err, "not an absolute path");
		__attribute__((fallthrough));
	case OPT_STR:
		if (o->check != NULL && o->check(value, err) < 0)
			return -1;
		free(*(char **)field);
		*(char **)field = ma_xstrdup(value);
		return 0;
	case OPT_UINT:
		if (ma_parse_u64(value, UINT64_MAX, &v) < 0 || v < o->min ||
		    v > o->max)
			return ma_error_set(err,
			    "'%.64s' is not a number from %llu to %llu", value,
			    (unsigned long long)o->min,
			    (unsigned long long)o->max);
		*(uint64_t *)field = v;
		return 0;
	case OPT_MODE:
		errno = 0;
		v = strtoull(value, &end, 8);
		if (value[0] != '0' || errno != 0 || *end != '\0' || v > o->max)
			return ma_error_set(err,
			    "'%.64s' is not an octal mode like 0660", value);
		*(uint64_t *)field = v;
		return 0;
	case OPT_RULE:
	case OPT_FORWARD: {
		struct ma_journal_rule rule;
		char **list = (char **)field;
		size_t old;

		if (value[0] == '\0') /* the default: none */
			return 0;
		if (o->type == OPT_FORWARD) {
			if (ma_fwd_dest_check_new(*list, value, err) < 0)
				return -1;
		} else {
			if (ma_journal_rule_parse(value, &rule, err) < 0)
				return -1;
			ma_journal_rule_free(&rule);
		}
		old = *list == NULL ? 0 : strlen(*list);
		*list = ma_xrealloc(*list, old + strlen(value) + 2, 1);
		if (old > 0)
			(*list)[old++] = '\n';
		memcpy(*list + old, value, strlen(value) + 1);
		return 0;
	}
	case OPT_BOOL:
		if (strcmp(value, "yes") == 0)
			*(bool *)field = true;
		else if (strcmp(value, "no") == 0)
			*(bool *)field = false;
		else
			return ma_error_set(
			    err, "'%.64s' is not yes or no", value);
		return 0;
	}
	return ma_error_set(err, "bad option type");
}

static void
set_defaults(struct ma_conf *conf)
{
	memset(conf, 0, sizeof(*conf));
	for (size_t i = 0; i < OPT_COUNT; i++)
		MA_ASSERT(set_value(conf, &opts[i], opts[i].def, NULL) == 0);
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* parse_line - one non-comment line; seen[] catches duplicates */
static int
parse_line(struct ma_conf *conf, char *line, bool *seen, struct ma_error *err)
{
	char *eq = strchr(line, '='), *key, *value;

	if (eq == NULL)
		return ma_error_set(err, "expected 'name = value'");
	*eq = '\0';
	key = trim(line);
	value = trim(eq + 1);
	for (size_t i = 0; i < OPT_COUNT; i++) {
		if (strcmp(key, opts[i].name) != 0)
			continue;
		if (seen[i] && opts[i].type != OPT_RULE &&
		    opts[i].type != OPT_FORWARD)
			return ma_error_set(err, "%s: set twice", key);
		seen[i] = true;
		if (set_value(conf, &opts[i], value, err) < 0) {
			char why[sizeof(err->msg)];

			memcpy(why, err->msg, sizeof(why));
			return ma_error_set(err, "%s: %s", key, why);
		}
		return 0;
	}
	return ma_error_set(err, "unknown key '%.64s'", key);
}

int
ma_conf_parse(struct ma_conf *conf, const char *name, const char *text,
    struct ma_error *err)
{
	bool seen[OPT_COUNT] = {false};
	const char *p = text;
	unsigned int lineno = 0;
	struct ma_error lerr = {0};

	set_defaults(conf);
	while (*p != '\0') {
		size_t len = strcspn(p, "\n");
		char *line = ma_xstrndup(p, len), *s;
		int ret = 0;

		lineno++;
		s = trim(line);
		if (*s != '\0' && *s != '#')
			ret = parse_line(conf, s, seen, &lerr);
		free(line);
		if (ret < 0) {
			ma_conf_free(conf);
			set_defaults(conf);
			return ma_error_set(
			    err, "%s:%u: %s", name, lineno, lerr.msg);
		}
		p += len;
		if (*p == '\n')
			p++;
	}
	return 0;
}

int
ma_conf_load(struct ma_conf *conf, const char *path, struct ma_error *err)
{
	struct ma_buf text;
	char chunk[4096];
	FILE *fp;
	size_t n;
	int ret;

	if (path == NULL) {
		set_defaults(conf);
		return 0;
	}
	fp = fopen(path, "re");
	if (fp == NULL) {
		set_defaults(conf);
		return ma_error_set(err, "%s: %s", path, strerror(errno));
	}
	ma_buf_init(&text, 1024 * 1024);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		if (ma_buf_append(&text, chunk, n) < 0) {
			fclose(fp);
			ma_buf_deinit(&text);
			set_defaults(conf);
			return ma_error_set(err, "%s: larger than 1 MiB", path);
		}
	}
	fclose(fp);
	if (text.data != NULL && memchr(text.data, '\0', text.len) != NULL) {
		const char *nul = memchr(text.data, '\0', text.len);
		unsigned int line = 1;

		for (const char *c = text.data; c < nul; c++)
			line += *c == '\n';
		ma_buf_deinit(&text);
		set_defaults(conf);
		return ma_error_set(err, "%s:%u: NUL byte", path, line);
	}
	ret =
	    ma_conf_parse(conf, path, text.data != NULL ? text.data : "", err);
	ma_buf_deinit(&text);
	return ret;
}

void
ma_conf_free(struct ma_conf *conf)
{
	for (size_t i = 0; i < OPT_COUNT; i++) {
		if (opts[i].type == OPT_STR || opts[i].type == OPT_PATH ||
		    opts[i].type == OPT_RULE || opts[i].type == OPT_FORWARD) {
			char **f = (char **)((char *)conf + opts[i].offset);

			free(*f);
			*f = NULL;
		}
	}
}

static void
format_value(
    const struct ma_conf *conf, const struct opt *o, char *out, size_t size)
{
	const void *field = (const char *)conf + o->offset;

	switch (o->type) {
	case OPT_STR:
	case OPT_PATH:
		snprintf(out, size, "%s", *(char *const *)field);
		break;
	case OPT_RULE:
	case OPT_FORWARD: {
		const char *v = *(char *const *)field;

		snprintf(out, size, "%s", v != NULL ? v : "");
		break;
	}
	case OPT_UINT:
		snprintf(out, size, "%llu",
		    (unsigned long long)*(const uint64_t *)field);
		break;
	case OPT_MODE:
		snprintf(out, size, "0%03llo",
		    (unsigned long long)*(const uint64_t *)field);
		break;
	case OPT_BOOL:
		snprintf(out, size, "%s", *(const bool *)field ? "yes" : "no");
		break;
	}
}

void
ma_conf_print(const struct ma_conf *conf, FILE *fp, bool non_default)
{
	struct ma_conf def;
	char v[4096], d[4096];

	set_defaults(&def);
	for (size_t i = 0; i < OPT_COUNT; i++) {
		format_value(conf, &opts[i], v, sizeof(v));
		format_value(&def, &opts[i], d, sizeof(d));
		if (non_default && strcmp(v, d) == 0)
			continue;
		if (opts[i].type != OPT_RULE && opts[i].type != OPT_FORWARD) {
			fprintf(fp, "%s = %s\n", opts[i].name, v);
			continue;
		}
		/* One line per rule, as they were given; from the field itself,
		   which may be longer than v. */
		for (const char *line =
			 *(char *const *)((const char *)conf + opts[i].offset);
		     line != NULL && *line != '\0';) {
			size_t len = strcspn(line, "\n");

			fprintf(
			    fp, "%s = %.*s\n", opts[i].name, (int)len, line);
			line += len;
			if (*line == '\n')
				line++;
		}
	}
	ma_conf_free(&def);
}
