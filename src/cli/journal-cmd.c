/* SPDX-License-Identifier: MIT */
/*
 * journal-cmd.c - mailauditctl's journal commands.
 *
 * journal setup USER --group GROUP: make USER's INBOX the restricted
 * journal mailbox.  Dovecot's ACLs (doveadm acl set) give the members of
 * GROUP (userdb field acl_groups) lookup and read rights and nothing
 * else; the owner keeps lookup, read, post (LMTP deliveries) and insert
 * (the milter's IMAP APPENDs, journal_store = imap) but loses write,
 * expunge, delete and admin, so no IMAP client can change or
 * remove a journaled message; removal is retention's job.  The mailbox's
 * audit policy is set so that every read and change by anyone is
 * recorded.
 *
 * journal status: the journal spool (queued in its log and as large
 * items in new/, refused ones, the delivery's last error) from the files
 * mailaudit-milter keeps there, so it works whether or not the
 * milter runs; and, for copy rules, the journal copies Postfix holds
 * (postqueue -j), with the last reason it gave for deferring one.
 */

#include "journal-cmd.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "ma-jlog.h"
#include "ma-journal.h"
#include "ma-log.h"

/* What a group member may do, and what the owner keeps. */
#define GROUP_RIGHTS "lookup read"
#define OWNER_RIGHTS "lookup read post insert"

/* run - argv through fork/exec, echoing it; its exit status */
static int
run(char *const *argv)
{
	pid_t pid;
	int status;

	printf("+");
	for (char *const *a = argv; *a != NULL; a++)
		printf(" %s", *a);
	printf("\n");
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		ma_fatal("fork");
	if (pid == 0) {
		execv(argv[0], argv);
		fprintf(stderr, "mailauditctl: cannot run %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			ma_fatal("waitpid");
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* doveadm - doveadm [-c config] acl ARGS...; fatal on failure */
static void
doveadm(const char *doveadm_path, const char *config, const char *const *args)
{
	char *argv[32];
	size_t n = 0;

	argv[n++] = (char *)(uintptr_t)doveadm_path;
	if (config != NULL) {
		argv[n++] = (char *)(uintptr_t) "-c";
		argv[n++] = (char *)(uintptr_t)config;
	}
	for (; *args != NULL && n < 31; args++)
		argv[n++] = (char *)(uintptr_t)*args;
	argv[n] = NULL;
	if (run(argv) != 0)
		ma_fatalx("%s failed; the journal mailbox is NOT restricted",
		    doveadm_path);
}

static const struct option setup_longopts[] = {
    {"group", required_argument, NULL, 'g'},
    {"dovecot-config", required_argument, NULL, 'c'},
    {"doveadm", required_argument, NULL, 'p'},
    {"mailbox", required_argument, NULL, 'm'},
    {NULL, 0, NULL, 0},
};

int
journal_setup(int argc, char **argv, journal_policy_fn *policy)
{
	const char *group = NULL, *config = NULL, *path = "/usr/bin/doveadm";
	const char *mailbox = "INBOX", *user;
	char group_id[300];
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "", setup_longopts, NULL)) != -1) {
		switch (ch) {
		case 'g':
			group = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case 'p':
			path = optarg;
			break;
		case 'm':
			mailbox = optarg;
			break;
		default:
			ma_fatalx("usage: journal setup USER --group GROUP "
				  "[--mailbox NAME] [--dovecot-config PATH] "
				  "[--doveadm PATH]");
		}
	}
	if (optind != argc - 1 || group == NULL)
		ma_fatalx("journal setup: give the journal user and --group");
	user = argv[optind];
	if (strpbrk(group, " \t\r\n=") != NULL || strlen(group) > 255)
		ma_fatalx("journal setup: '%s' is not a group name", group);
	snprintf(group_id, sizeof(group_id), "group=%s", group);

	/* Members read; the owner only receives (post: LMTP, insert: the
	   milter's APPENDs); nobody else anything. */
	doveadm(path, config,
	    (const char *const[]){"acl", "set", "-u", user, mailbox, group_id,
		"lookup", "read", NULL});
	doveadm(path, config,
	    (const char *const[]){"acl", "set", "-u", user, mailbox, "owner",
		"lookup", "read", "post", "insert", NULL});
	doveadm(path, config,
	    (const char *const[]){"acl", "get", "-u", user, mailbox, NULL});
	if (policy(user) < 0)
		return 1;
	printf("journal mailbox %s of %s: readable by members of %s (%s), "
	       "owner %s; every access audited\n",
	    mailbox, user, group, GROUP_RIGHTS, OWNER_RIGHTS);
	return 0;
}

/* Status. */

static unsigned int
count_dir(const char *dir, const char *sub, char *oldest, size_t size)
{
	char path[4096];
	struct dirent *de;
	unsigned int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (oldest != NULL)
		oldest[0] = '\0';
	d = opendir(path);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		n++;
		if (oldest != NULL &&
		    (oldest[0] == '\0' || strcmp(de->d_name, oldest) < 0))
			snprintf(oldest, size, "%s", de->d_name);
	}
	closedir(d);
	return n;
}

/* is_copy_address - is addr the journal address of a copy rule? */
static bool
is_copy_address(const struct ma_conf *conf, const char *addr)
{
	const char *p = conf->journal_rules != NULL ? conf->journal_rules : "";
	char norm[MA_ADDRESS_MAX + 1];
	bool found = false;

	if (ma_address_normalize(addr, norm) < 0)
		return false;
	while (*p != '\0' && !found) {
		size_t len = strcspn(p, "\n");
		char *line = ma_xstrndup(p, len);
		struct ma_journal_rule rule;
		struct ma_error err = {0};

		if (ma_journal_rule_parse(line, &rule, &err) == 0) {
			found = rule.mode == MA_JOURNAL_COPY &&
				strcmp(rule.address, norm) == 0;
			ma_journal_rule_free(&rule);
		}
		free(line);
		p += len;
		if (*p == '\n')
			p++;
	}
	return found;
}

/*
 * copies_status - journal copies in Postfix's queue, from postqueue -j
 * (postfix_config_dir, if set, is its -c).  Returns how many wait.
 */
static unsigned int
copies_status(const struct ma_conf *conf)
{
	char *argv[] = {(char *)(uintptr_t) "/usr/sbin/postqueue",
	    (char *)(uintptr_t) "-c", conf->postfix_config_dir,
	    (char *)(uintptr_t) "-j", NULL};
	char line[65536], reason[512] = "";
	unsigned int waiting = 0, deferred = 0;
	int pipefd[2], status;
	pid_t pid;
	FILE *fp;

	if (conf->postfix_config_dir[0] == '\0') {
		argv[1] = argv[3];
		argv[2] = argv[3] = NULL;
	}
	if (pipe(pipefd) < 0)
		ma_fatal("pipe");
	pid = fork();
	if (pid < 0)
		ma_fatal("fork");
	if (pid == 0) {
		dup2(pipefd[1], 1);
		close(pipefd[0]);
		close(pipefd[1]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pipefd[1]);
	fp = fdopen(pipefd[0], "r");
	if (fp == NULL)
		ma_fatal("fdopen");
	while (fgets(line, sizeof(line), fp) != NULL) {
		json_t *msg = json_loads(line, 0, NULL), *rcpts, *r;
		size_t i;

		if (msg == NULL)
			continue;
		rcpts = json_object_get(msg, "recipients");
		json_array_foreach(rcpts, i, r)
		{
			const char *addr =
			    json_string_value(json_object_get(r, "address"));
			const char *why = json_string_value(
			    json_object_get(r, "delay_reason"));

			if (addr == NULL || !is_copy_address(conf, addr))
				continue;
			waiting++;
			if (why != NULL) {
				deferred++;
				snprintf(reason, sizeof(reason), "%s", why);
			}
		}
		json_decref(msg);
	}
	fclose(fp);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("journal copies: postqueue -j failed (exit %d)\n",
		    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return 0;
	}
	printf("journal copies in Postfix's queue: %u (deferred: %u)\n",
	    waiting, deferred);
	if (deferred > 0)
		printf("last deferral reason: %s\n", reason);
	return waiting;
}

int
journal_status(const struct ma_conf *conf)
{
	const char *dir = conf->journal_spool_dir;
	char path[4096], line[1024], oldest[256], when[32];
	unsigned int files, failed;
	uint64_t logged = 0;
	int64_t log_oldest_ms = 0;
	struct ma_error err = {0};
	FILE *fp;

	if (conf->journal_rules != NULL &&
	    strstr(conf->journal_rules, " copy ") != NULL)
		copies_status(conf);
	if (access(dir, F_OK) < 0) {
		printf(
		    "journal spool %s: none (no report rules have run)\n", dir);
		return 0;
	}
	files = count_dir(dir, "new", oldest, sizeof(oldest));
	failed = count_dir(dir, "failed", NULL, 0);
	snprintf(path, sizeof(path), "%s/log", dir);
	if (access(path, F_OK) == 0 &&
	    ma_jlog_scan(path, &logged, &log_oldest_ms, &err) < 0)
		printf("journal log %s: %s\n", path, err.msg);
	printf("spool: %s\nqueued: %llu\n", dir,
	    (unsigned long long)(files + logged));
	if (logged > 0) {
		ma_fmt_time(log_oldest_ms, false, when);
		printf("  in the log: %llu, oldest from %s\n",
		    (unsigned long long)logged, when);
	}
	if (files > 0)
		printf("  large items in new/: %u, oldest %s\n", files, oldest);
	printf("refused (in failed/): %u\n", failed);
	snprintf(path, sizeof(path), "%s/status", dir);
	fp = fopen(path, "re");
	if (fp == NULL) {
		printf("delivery: no status yet (%s: %s)\n", path,
		    strerror(errno));
	} else {
		printf("delivery thread (as of its last pass):\n");
		while (fgets(line, sizeof(line), fp) != NULL)
			printf("  %s", line);
		fclose(fp);
	}
	/* Non-zero when something needs an administrator. */
	return failed > 0 ? 3 : 0;
}
