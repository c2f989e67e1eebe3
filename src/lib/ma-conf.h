/* SPDX-License-Identifier: MIT */
#ifndef MA_CONF_H
#define MA_CONF_H

/*
 * mailaudit.conf: one "name = value" per line, '#' comments.  Every option
 * is declared once, in a typed table with its default and bounds
 * (ma-conf.c); unknown and duplicate keys and bad values are errors that
 * name the file, the line and the key.  See mailaudit.conf(5).
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "ma-util.h"

#define MA_CONF_DEFAULT_PATH "/etc/mailaudit/mailaudit.conf"

struct ma_conf {
	char *store_path;
	char *socket_path;
	char *control_socket_path;
	char *spool_dir;
	char *policy_snapshot_path;
	char *user;
	char *organization_name;
	char *organization_id;
	char *server_name;
	uint64_t socket_mode;
	uint64_t batch_max_records;
	uint64_t batch_max_delay_ms;
	uint64_t batch_min_delay_ms;
	uint64_t retention_min_days;
	uint64_t purge_interval_s;
	uint64_t spool_scan_interval_ms;
	uint64_t max_connections;
	uint64_t cache_size_kib;
	bool record_subjects;
	bool sync_full;

	/* mailaudit-milter (see mailaudit.conf(5), "MILTER") */
	char *milter_socket; /* libmilter syntax: unix:/path, inet:port@host */
	char *milter_socket_group; /* group given the socket, "" = keep */
	uint64_t milter_socket_mode;
	char *local_domains; /* comma/space separated */
	char *
	    sender_login_maps; /* texthash-format file, "" = own address only */
	char *mailbox_names;   /* "address" or "localpart" */
	char *originating_daemons; /* {daemon_name}s of our own submissions */
	bool milter_enforce_from;
	char *journal_rules; /* journal_rule lines, '\n'-separated */
	char *journal_spool_dir;
	char *journal_lmtp;  /* unix:/path or inet:host:port */
	char *journal_store; /* "lmtp" or "imap" (MULTIAPPEND batches) */
	char *journal_imap;  /* unix:/path or inet:host:port */
	char *journal_imap_master_user; /* "" = log in as the mailbox */
	char *journal_imap_password_file;
	char *journal_imap_mailbox;
	uint64_t journal_batch; /* reports per IMAP APPEND */
	/* how long a partial batch may wait for more items */
	uint64_t journal_batch_delay_ms;
	char *journal_report_from;
	char *journal_alias_maps; /* Postfix map specs, for Expanded: lines */
	char *postfix_config_dir; /* postmap -c, "" = Postfix's default */

	/* mailaudit-forward (see mailaudit.conf(5), "FORWARDING") */
	char *forwards; /* forward lines, '\n'-separated (ma_fwd_dests_parse) */
	char *forward_state_dir;
	uint64_t forward_poll_ms;
	uint64_t forward_state_interval_ms;
	uint64_t forward_backoff_max_ms;
	char *syslog_app_name;
	char *syslog_sd_id;
	bool syslog_utf8_bom;
};

/*
 * ma_conf_load - defaults, then path (NULL: defaults only).  On error
 * returns -1 with "file:line: key: reason" in err; conf then holds
 * defaults and must still be freed.
 */
int ma_conf_load(struct ma_conf *conf, const char *path, struct ma_error *err);
/* ma_conf_parse - the same from a string (name is used in messages). */
int ma_conf_parse(struct ma_conf *conf, const char *name, const char *text,
    struct ma_error *err);
void ma_conf_free(struct ma_conf *conf);
/* Print "name = value" for every option (non_default: only changed ones). */
void ma_conf_print(const struct ma_conf *conf, FILE *fp, bool non_default);

#endif
