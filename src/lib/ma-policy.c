/* SPDX-License-Identifier: MIT */
/*
 * ma-policy.c - presets, the policy model and the snapshot file sensors
 * read.
 *
 * The preset tables are the product's defaults.  MA_PRESET_DEFAULT is the
 * ASD Blueprint's "Mailbox Auditing" table exactly (tests/unit compares it
 * with the seed document); MA_PRESET_EXCHANGE is Exchange Online's
 * on-by-default set; MA_PRESET_STRICT is the Blueprint plus read auditing
 * (MailItemsAccessed) and the folder actions for every logon type.
 *
 * A snapshot lookup scans the file once for one mailbox and one actor:
 * a sensor does it at most once per mailbox per process (and again only
 * when the file changes), so a linear scan of even 100,000 lines is cheap
 * next to a login, and the sensor never holds the whole policy in memory.
 */

#include "ma-policy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ma-proto.h"

#define B(a) MA_ACTION_BIT(MA_ACTION_##a)

/* The Blueprint, user and shared mailboxes. */
#define SEED_ADMIN                                                             \
	(B(APPLY_RECORD) | B(COPY) | B(CREATE) | B(FOLDER_BIND) |              \
	    B(HARD_DELETE) | B(MESSAGE_BIND) | B(MOVE) |                       \
	    B(MOVE_TO_DELETED_ITEMS) | B(RECORD_DELETE) | B(SEND_AS) |         \
	    B(SEND_ON_BEHALF) | B(SOFT_DELETE) | B(UPDATE) |                   \
	    B(UPDATE_CALENDAR_DELEGATION) | B(UPDATE_FOLDER_PERMISSIONS) |     \
	    B(UPDATE_INBOX_RULES))
#define SEED_DELEGATE                                                          \
	(B(APPLY_RECORD) | B(CREATE) | B(FOLDER_BIND) | B(HARD_DELETE) |       \
	    B(MOVE) | B(MOVE_TO_DELETED_ITEMS) | B(RECORD_DELETE) |            \
	    B(SEND_AS) | B(SEND_ON_BEHALF) | B(SOFT_DELETE) | B(UPDATE) |      \
	    B(UPDATE_FOLDER_PERMISSIONS) | B(UPDATE_INBOX_RULES))
#define SEED_OWNER                                                             \
	(B(APPLY_RECORD) | B(CREATE) | B(HARD_DELETE) | B(MAILBOX_LOGIN) |     \
	    B(MOVE) | B(MOVE_TO_DELETED_ITEMS) | B(RECORD_DELETE) |            \
	    B(SOFT_DELETE) | B(UPDATE) | B(UPDATE_CALENDAR_DELEGATION) |       \
	    B(UPDATE_FOLDER_PERMISSIONS) | B(UPDATE_INBOX_RULES))
/* The Blueprint, Office 365 group mailboxes (also Exchange's fixed set). */
#define SEED_GROUP_ADMIN                                                       \
	(B(CREATE) | B(HARD_DELETE) | B(MOVE_TO_DELETED_ITEMS) | B(SEND_AS) |  \
	    B(SEND_ON_BEHALF) | B(SOFT_DELETE) | B(UPDATE))
#define SEED_GROUP_DELEGATE SEED_GROUP_ADMIN
#define SEED_GROUP_OWNER                                                       \
	(B(HARD_DELETE) | B(MOVE_TO_DELETED_ITEMS) | B(SOFT_DELETE) | B(UPDATE))

/* Exchange Online's defaults (audit-mailboxes, actions marked default). */
#define EXO_ADMIN                                                              \
	(B(APPLY_RECORD) | B(CREATE) | B(HARD_DELETE) |                        \
	    B(MAIL_ITEMS_ACCESSED) | B(MOVE_TO_DELETED_ITEMS) | B(SEND) |      \
	    B(SEND_AS) | B(SEND_ON_BEHALF) | B(SOFT_DELETE) | B(UPDATE) |      \
	    B(UPDATE_CALENDAR_DELEGATION) | B(UPDATE_FOLDER_PERMISSIONS) |     \
	    B(UPDATE_INBOX_RULES))
#define EXO_DELEGATE                                                           \
	(B(APPLY_RECORD) | B(CREATE) | B(HARD_DELETE) |                        \
	    B(MAIL_ITEMS_ACCESSED) | B(MOVE_TO_DELETED_ITEMS) | B(SEND_AS) |   \
	    B(SEND_ON_BEHALF) | B(SOFT_DELETE) | B(UPDATE) |                   \
	    B(UPDATE_FOLDER_PERMISSIONS) | B(UPDATE_INBOX_RULES))
#define EXO_OWNER                                                              \
	(B(APPLY_RECORD) | B(HARD_DELETE) | B(MAIL_ITEMS_ACCESSED) |           \
	    B(MOVE_TO_DELETED_ITEMS) | B(SEND) | B(SOFT_DELETE) | B(UPDATE) |  \
	    B(UPDATE_CALENDAR_DELEGATION) | B(UPDATE_FOLDER_PERMISSIONS) |     \
	    B(UPDATE_INBOX_RULES))

#define STRICT_EXTRA                                                           \
	(B(MAIL_ITEMS_ACCESSED) | B(FOLDER_CREATE) | B(FOLDER_DELETE) |        \
	    B(FOLDER_RENAME))

/* [preset][mailbox type][set] */
static const ma_action_set
    presets[MA_PRESET_COUNT][MA_MAILBOX_TYPE_COUNT][MA_SET_COUNT] = {
	[MA_PRESET_DEFAULT] =
	    {
		[MA_MAILBOX_USER] = {SEED_OWNER, SEED_DELEGATE, SEED_ADMIN},
		[MA_MAILBOX_SHARED] = {SEED_OWNER, SEED_DELEGATE, SEED_ADMIN},
		[MA_MAILBOX_GROUP] = {SEED_GROUP_OWNER, SEED_GROUP_DELEGATE,
		    SEED_GROUP_ADMIN},
	    },
	[MA_PRESET_EXCHANGE] =
	    {
		[MA_MAILBOX_USER] = {EXO_OWNER, EXO_DELEGATE, EXO_ADMIN},
		[MA_MAILBOX_SHARED] = {EXO_OWNER, EXO_DELEGATE, EXO_ADMIN},
		[MA_MAILBOX_GROUP] = {SEED_GROUP_OWNER, SEED_GROUP_DELEGATE,
		    SEED_GROUP_ADMIN},
	    },
	[MA_PRESET_STRICT] =
	    {
		[MA_MAILBOX_USER] = {SEED_OWNER | STRICT_EXTRA,
		    SEED_DELEGATE | STRICT_EXTRA, SEED_ADMIN | STRICT_EXTRA},
		[MA_MAILBOX_SHARED] = {SEED_OWNER | STRICT_EXTRA,
		    SEED_DELEGATE | STRICT_EXTRA, SEED_ADMIN | STRICT_EXTRA},
		[MA_MAILBOX_GROUP] = {SEED_GROUP_OWNER | STRICT_EXTRA,
		    SEED_GROUP_DELEGATE | STRICT_EXTRA,
		    SEED_GROUP_ADMIN | STRICT_EXTRA},
	    },
};

static const char *const type_names[] = {"user", "shared", "group"};
static const char *const preset_names[] = {"default", "exchange", "strict"};
static const char *const set_names[] = {"Owner", "Delegate", "Admin"};

static int
name_lookup(const char *const *names, unsigned int count, const char *name)
{
	for (unsigned int i = 0; i < count; i++) {
		if (strcasecmp(name, names[i]) == 0)
			return (int)i;
	}
	return -1;
}

const char *
ma_mailbox_type_name(enum ma_mailbox_type type)
{
	return (unsigned int)type < MA_MAILBOX_TYPE_COUNT ? type_names[type]
							  : NULL;
}

int
ma_mailbox_type_lookup(const char *name, enum ma_mailbox_type *type_r)
{
	int i = name_lookup(type_names, MA_MAILBOX_TYPE_COUNT, name);

	if (i < 0)
		return 0;
	*type_r = (enum ma_mailbox_type)i;
	return 1;
}

const char *
ma_preset_name(enum ma_preset preset)
{
	return (unsigned int)preset < MA_PRESET_COUNT ? preset_names[preset]
						      : NULL;
}

int
ma_preset_lookup(const char *name, enum ma_preset *preset_r)
{
	int i = name_lookup(preset_names, MA_PRESET_COUNT, name);

	if (i < 0)
		return 0;
	*preset_r = (enum ma_preset)i;
	return 1;
}

const char *
ma_policy_set_name(enum ma_policy_set set)
{
	return (unsigned int)set < MA_SET_COUNT ? set_names[set] : NULL;
}

int
ma_policy_set_lookup(const char *name, enum ma_policy_set *set_r)
{
	int i = name_lookup(set_names, MA_SET_COUNT, name);

	if (i < 0)
		return 0;
	*set_r = (enum ma_policy_set)i;
	return 1;
}

ma_action_set
ma_preset_actions(
    enum ma_preset preset, enum ma_mailbox_type type, enum ma_policy_set set)
{
	MA_ASSERT((unsigned int)preset < MA_PRESET_COUNT);
	MA_ASSERT((unsigned int)type < MA_MAILBOX_TYPE_COUNT);
	MA_ASSERT((unsigned int)set < MA_SET_COUNT);
	return presets[preset][type][set];
}

void
ma_mailbox_policy_default(struct ma_mailbox_policy *mp, enum ma_preset preset,
    enum ma_mailbox_type type)
{
	memset(mp, 0, sizeof(*mp));
	mp->type = type;
	mp->audit_enabled = true;
	mp->age_limit_days = MA_DEFAULT_AGE_LIMIT_DAYS;
	for (unsigned int s = 0; s < MA_SET_COUNT; s++) {
		mp->sets[s] = ma_preset_actions(preset, type, s);
		mp->set_is_default[s] = true;
	}
}

enum ma_policy_set
ma_logon_policy_set(enum ma_logon logon)
{
	switch (logon) {
	case MA_LOGON_OWNER:
		return MA_SET_OWNER;
	case MA_LOGON_DELEGATE:
		return MA_SET_DELEGATE;
	case MA_LOGON_ADMIN:
	case MA_LOGON_TRANSPORT:
	case MA_LOGON_SYSTEM:
		break;
	}
	return MA_SET_ADMIN;
}

ma_action_set
ma_policy_answer_actions(const struct ma_policy_answer *a, enum ma_logon logon)
{
	if (a->audit_disabled || a->bypassed || !a->mailbox_enabled)
		return 0;
	return a->sets[ma_logon_policy_set(logon)];
}

/* Writing the snapshot. */

static int
put_sets(struct ma_buf *buf, const ma_action_set sets[MA_SET_COUNT])
{
	for (unsigned int s = 0; s < MA_SET_COUNT; s++) {
		if (ma_buf_putc(buf, ' ') < 0 ||
		    ma_action_set_format(sets[s], buf) < 0)
			return -1;
	}
	return ma_buf_putc(buf, '\n');
}

int
ma_policy_snapshot_header(
    struct ma_buf *buf, bool audit_disabled, bool subjects)
{
	return ma_buf_printf(buf,
	    "mailaudit-policy 1\n"
	    "# written by mailauditd; changes here are overwritten\n"
	    "audit_disabled %s\nsubjects %s\n",
	    audit_disabled ? "yes" : "no", subjects ? "yes" : "no");
}

/* put_word - a %-escaped token that cannot contain a space either */
static int
put_word(struct ma_buf *buf, const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c == 0x7f || c == '%') {
			if (ma_buf_printf(buf, "%%%02X", c) < 0)
				return -1;
		} else if (ma_buf_putc(buf, (char)c) < 0) {
			return -1;
		}
	}
	return 0;
}

int
ma_policy_snapshot_bypass(struct ma_buf *buf, const char *user)
{
	if (ma_buf_puts(buf, "bypass ") < 0 || put_word(buf, user) < 0)
		return -1;
	return ma_buf_putc(buf, '\n');
}

int
ma_policy_snapshot_default(
    struct ma_buf *buf, enum ma_preset preset, enum ma_mailbox_type type)
{
	ma_action_set sets[MA_SET_COUNT];

	for (unsigned int s = 0; s < MA_SET_COUNT; s++)
		sets[s] = ma_preset_actions(preset, type, s);
	if (ma_buf_printf(buf, "default %s", ma_mailbox_type_name(type)) < 0)
		return -1;
	return put_sets(buf, sets);
}

int
ma_policy_snapshot_mailbox(
    struct ma_buf *buf, const char *name, const struct ma_mailbox_policy *mp)
{
	if (ma_buf_puts(buf, "mailbox ") < 0 || put_word(buf, name) < 0 ||
	    ma_buf_printf(buf, " %s %s", ma_mailbox_type_name(mp->type),
		mp->audit_enabled ? "yes" : "no") < 0)
		return -1;
	return put_sets(buf, mp->sets);
}

int
ma_policy_snapshot_commit(
    const char *path, const struct ma_buf *buf, struct ma_error *err)
{
	char tmp[4096];
	int fd, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return ma_error_set(err, "snapshot path too long");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return ma_error_set(err, "open %s: %s", tmp, strerror(errno));
	if (fchmod(fd, 0644) < 0 ||
	    write(fd, buf->data, buf->len) != (ssize_t)buf->len ||
	    fsync(fd) < 0) {
		ma_error_set(err, "write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		ma_error_set(err, "rename %s: %s", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Reading the snapshot. */

/* unescape_word - decode %XX in place; -1 on a malformed escape */
static int
unescape_word(char *s)
{
	char *o = s;
	unsigned int v;

	for (; *s != '\0'; s++) {
		if (*s != '%') {
			*o++ = *s;
			continue;
		}
		if (sscanf(s + 1, "%2X", &v) != 1 || s[1] == '\0' ||
		    s[2] == '\0')
			return -1;
		*o++ = (char)v;
		s += 2;
	}
	*o = '\0';
	return 0;
}

static int
parse_sets(char **tok, ma_action_set sets[MA_SET_COUNT])
{
	for (unsigned int s = 0; s < MA_SET_COUNT; s++) {
		if (tok[s] == NULL ||
		    ma_action_set_parse(tok[s], &sets[s], NULL) < 0)
			return -1;
	}
	return 0;
}

static bool
parse_bool(const char *s, bool *v)
{
	if (s != NULL && strcmp(s, "yes") == 0)
		*v = true;
	else if (s != NULL && strcmp(s, "no") == 0)
		*v = false;
	else
		return false;
	return true;
}

struct lookup {
	const char *mailbox, *actor;
	struct ma_policy_answer *answer;
	bool have_default;
	ma_action_set user_default[MA_SET_COUNT];
};

/* parse_line - one snapshot line, split into at most 8 tokens */
static int
parse_line(struct lookup *lk, char **tok, unsigned int ntok)
{
	struct ma_policy_answer *a = lk->answer;
	enum ma_mailbox_type type;

	if (strcmp(tok[0], "audit_disabled") == 0)
		return ntok == 2 && parse_bool(tok[1], &a->audit_disabled) ? 0
									   : -1;
	if (strcmp(tok[0], "subjects") == 0)
		return ntok == 2 && parse_bool(tok[1], &a->subjects) ? 0 : -1;
	if (strcmp(tok[0], "bypass") == 0) {
		if (ntok != 2 || unescape_word(tok[1]) < 0)
			return -1;
		if (lk->actor != NULL && strcmp(tok[1], lk->actor) == 0)
			a->bypassed = true;
		return 0;
	}
	if (strcmp(tok[0], "default") == 0) {
		if (ntok != 5 || ma_mailbox_type_lookup(tok[1], &type) != 1)
			return -1;
		if (type != MA_MAILBOX_USER)
			return 0;
		lk->have_default = true;
		return parse_sets(tok + 2, lk->user_default);
	}
	if (strcmp(tok[0], "mailbox") == 0) {
		if (ntok != 7 || unescape_word(tok[1]) < 0 ||
		    ma_mailbox_type_lookup(tok[2], &type) != 1)
			return -1;
		if (strcmp(tok[1], lk->mailbox) != 0)
			return 0;
		a->known = true;
		if (!parse_bool(tok[3], &a->mailbox_enabled))
			return -1;
		return parse_sets(tok + 4, a->sets);
	}
	return -1;
}

static void
answer_defaults(struct ma_policy_answer *a)
{
	memset(a, 0, sizeof(*a));
	a->mailbox_enabled = true;
	a->subjects = true;
	for (unsigned int s = 0; s < MA_SET_COUNT; s++)
		a->sets[s] =
		    ma_preset_actions(MA_PRESET_DEFAULT, MA_MAILBOX_USER, s);
}

static int
scan(FILE *fp, struct lookup *lk, struct ma_error *err)
{
	char *line = NULL, *tok[8], *save, *t;
	size_t cap = 0;
	ssize_t len;
	unsigned int lineno = 0, ntok;
	int ret = 0;

	while ((len = getline(&line, &cap, fp)) > 0) {
		lineno++;
		if (line[len - 1] == '\n')
			line[len - 1] = '\0';
		if (lineno == 1) {
			if (strcmp(line, "mailaudit-policy 1") != 0) {
				ret = ma_error_set(err, "line 1: not a "
							"mailaudit policy "
							"snapshot");
				break;
			}
			continue;
		}
		if (line[0] == '#' || line[0] == '\0')
			continue;
		ntok = 0;
		for (t = strtok_r(line, " ", &save); t != NULL && ntok < 8;
		     t = strtok_r(NULL, " ", &save))
			tok[ntok++] = t;
		if (ntok == 0 || parse_line(lk, tok, ntok) < 0) {
			ret = ma_error_set(err, "line %u: malformed", lineno);
			break;
		}
	}
	free(line);
	return ret;
}

int
ma_policy_snapshot_lookup(const char *path, const char *mailbox,
    const char *actor, struct ma_policy_answer *answer_r, struct ma_error *err)
{
	struct lookup lk = {
	    .mailbox = mailbox, .actor = actor, .answer = answer_r};
	FILE *fp;
	int ret;

	answer_defaults(answer_r);
	fp = fopen(path, "re");
	if (fp == NULL) {
		if (errno == ENOENT)
			return 0;
		return ma_error_set(err, "open %s: %s", path, strerror(errno));
	}
	ret = scan(fp, &lk, err);
	fclose(fp);
	if (ret < 0) {
		answer_defaults(answer_r);
		return -1;
	}
	if (!answer_r->known && lk.have_default)
		memcpy(
		    answer_r->sets, lk.user_default, sizeof(lk.user_default));
	return 1;
}
