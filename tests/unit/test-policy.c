/* SPDX-License-Identifier: MIT */
/*
 * test-policy.c - presets against the seed document, set parsing, and the
 * snapshot file a sensor reads.
 *
 * The seed comparison parses the "Mailbox Auditing configuration" table of
 * the ASD Blueprint page itself (tests/data holds a copy; the project's
 * shared/seeds copy is checked too when it is beside the repository), so a
 * change to either the document or the preset shows up here.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ma-policy.h"
#include "ut.h"

/* seed_row - the set on the table row labelled label, after section */
static int
seed_row(const char *text, const char *section, const char *label,
    ma_action_set *set_r)
{
	const char *p = strstr(text, section), *row, *cell, *end;
	char list[2048], *o = list;
	struct ma_error err = {0};

	if (p == NULL || (row = strstr(p, label)) == NULL)
		return -1;
	/* | Label | A<br>B<br>C | justification | */
	cell = strchr(row, '|');
	if (cell == NULL)
		return -1;
	cell++;
	end = strchr(cell, '|');
	if (end == NULL || (size_t)(end - cell) >= sizeof(list))
		return -1;
	for (const char *c = cell; c < end; c++) {
		if (strncmp(c, "<br>", 4) == 0) {
			*o++ = ',';
			c += 3;
		} else {
			*o++ = *c;
		}
	}
	*o = '\0';
	return ma_action_set_parse(list, set_r, &err);
}

static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	long n;

	if (fp == NULL)
		return NULL;
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(fp);
	return buf;
}

static void
check_seed_file(const char *path)
{
	static const struct {
		const char *section;
		enum ma_mailbox_type types[2];
		int ntypes;
	} sections[] = {
	    {"User Mailbox and Shared Mailbox Audit Configuration",
		{MA_MAILBOX_USER, MA_MAILBOX_SHARED}, 2},
	    {"Office 365 Group Mailbox Audit Configuration", {MA_MAILBOX_GROUP},
		1},
	};
	static const struct {
		const char *label;
		enum ma_policy_set set;
	} rows[] = {
	    {"Admin Audited Actions", MA_SET_ADMIN},
	    {"Delegate Audited Actions", MA_SET_DELEGATE},
	    {"Owner Audited Actions", MA_SET_OWNER},
	};
	char *text = slurp(path);

	ut_assert(text != NULL);
	if (text == NULL)
		return;
	for (size_t s = 0; s < 2; s++) {
		for (size_t r = 0; r < 3; r++) {
			ma_action_set seed = 0;

			ut_assert(seed_row(text, sections[s].section,
				      rows[r].label, &seed) == 0);
			ut_assert(seed != 0);
			for (int t = 0; t < sections[s].ntypes; t++)
				ut_assert_cmp(
				    ma_preset_actions(MA_PRESET_DEFAULT,
					sections[s].types[t], rows[r].set),
				    ==, seed);
		}
	}
	free(text);
}

static void
test_default_preset_is_seed(void)
{
	const char *root = getenv("MA_SOURCE_ROOT");
	char path[4096];

	ut_begin("default preset equals the seed's tables");
	snprintf(path, sizeof(path), "%s/tests/data/seed-mailbox-auditing.txt",
	    root != NULL ? root : ".");
	check_seed_file(path);
	snprintf(path, sizeof(path),
	    "%s/../shared/seeds/000_efbc3ee8bdd8c9b0.txt",
	    root != NULL ? root : ".");
	if (access(path, R_OK) == 0)
		check_seed_file(path);
	ut_end();
}

static void
test_other_presets(void)
{
	ma_action_set mia = MA_ACTION_BIT(MA_ACTION_MAIL_ITEMS_ACCESSED);

	ut_begin("exchange and strict presets");
	for (int s = 0; s < MA_SET_COUNT; s++) {
		ma_action_set def =
		    ma_preset_actions(MA_PRESET_DEFAULT, MA_MAILBOX_USER, s);
		ma_action_set strict =
		    ma_preset_actions(MA_PRESET_STRICT, MA_MAILBOX_USER, s);

		/* strict = the seed plus reads (and folder actions) */
		ut_assert((strict & def) == def);
		ut_assert((strict & mia) != 0);
		ut_assert((def & mia) == 0);
		ut_assert(
		    (ma_preset_actions(MA_PRESET_EXCHANGE, MA_MAILBOX_USER, s) &
			mia) != 0);
	}
	/* Exchange Online: owner MailboxLogin is not a default, Send is. */
	ut_assert((ma_preset_actions(
		       MA_PRESET_EXCHANGE, MA_MAILBOX_USER, MA_SET_OWNER) &
		      MA_ACTION_BIT(MA_ACTION_MAILBOX_LOGIN)) == 0);
	ut_assert((ma_preset_actions(
		       MA_PRESET_EXCHANGE, MA_MAILBOX_USER, MA_SET_OWNER) &
		      MA_ACTION_BIT(MA_ACTION_SEND)) != 0);
	ut_end();
}

static void
test_set_parse(void)
{
	struct ma_error err = {0};
	struct ma_buf b;
	ma_action_set set;

	ut_begin("action set parse and format");
	ut_assert(ma_action_set_parse(
		      "Update, softdelete,HardDelete", &set, &err) == 0);
	ut_assert_cmp(set, ==,
	    MA_ACTION_BIT(MA_ACTION_UPDATE) |
		MA_ACTION_BIT(MA_ACTION_SOFT_DELETE) |
		MA_ACTION_BIT(MA_ACTION_HARD_DELETE));
	ma_buf_init(&b, 1024);
	ut_assert(ma_action_set_format(set, &b) == 0);
	ut_assert_str(b.data, "HardDelete,SoftDelete,Update");
	ut_assert(ma_action_set_parse("None", &set, &err) == 0 && set == 0);
	ut_assert(ma_action_set_parse("Update,Bogus", &set, &err) < 0);
	ut_assert(strstr(err.msg, "Bogus") != NULL);
	ut_assert(ma_action_set_parse("None,Update", &set, &err) < 0);
	ma_buf_deinit(&b);
	ut_end();
}

static void
test_snapshot(void)
{
	char path[] = "/tmp/ma-test-snapshot-XXXXXX";
	struct ma_policy_answer a;
	struct ma_mailbox_policy mp;
	struct ma_error err = {0};
	struct ma_buf b;
	int fd = mkstemp(path);

	ut_begin("snapshot write and lookup");
	ut_assert(fd >= 0);
	close(fd);
	ma_buf_init(&b, 1 << 20);
	ut_assert(ma_policy_snapshot_header(&b, false, false) == 0);
	ut_assert(ma_policy_snapshot_bypass(&b, "svc backup") == 0);
	for (int t = 0; t < MA_MAILBOX_TYPE_COUNT; t++)
		ut_assert(
		    ma_policy_snapshot_default(&b, MA_PRESET_STRICT, t) == 0);
	ma_mailbox_policy_default(&mp, MA_PRESET_DEFAULT, MA_MAILBOX_SHARED);
	mp.sets[MA_SET_DELEGATE] = MA_ACTION_BIT(MA_ACTION_UPDATE);
	ut_assert(
	    ma_policy_snapshot_mailbox(&b, "finance@example.com", &mp) == 0);
	mp.audit_enabled = false;
	ut_assert(ma_policy_snapshot_mailbox(&b, "off", &mp) == 0);
	ut_assert(ma_policy_snapshot_commit(path, &b, &err) == 0);

	ut_assert(ma_policy_snapshot_lookup(
		      path, "finance@example.com", "bob", &a, &err) == 1);
	ut_assert(a.known && !a.subjects && !a.bypassed);
	ut_assert_cmp(ma_policy_answer_actions(&a, MA_LOGON_DELEGATE), ==,
	    MA_ACTION_BIT(MA_ACTION_UPDATE));
	ut_assert_cmp(ma_policy_answer_actions(&a, MA_LOGON_SYSTEM), ==,
	    ma_preset_actions(
		MA_PRESET_DEFAULT, MA_MAILBOX_SHARED, MA_SET_ADMIN));
	/* Unknown mailbox: the user default of the preset in the file. */
	ut_assert(
	    ma_policy_snapshot_lookup(path, "carol", "carol", &a, &err) == 1);
	ut_assert(!a.known);
	ut_assert_cmp(ma_policy_answer_actions(&a, MA_LOGON_OWNER), ==,
	    ma_preset_actions(MA_PRESET_STRICT, MA_MAILBOX_USER, MA_SET_OWNER));
	/* A name with a space survives escaping; bypass silences all. */
	ut_assert(ma_policy_snapshot_lookup(
		      path, "carol", "svc backup", &a, &err) == 1);
	ut_assert(a.bypassed);
	ut_assert_cmp(ma_policy_answer_actions(&a, MA_LOGON_ADMIN), ==, 0);
	ut_assert(ma_policy_snapshot_lookup(path, "off", "x", &a, &err) == 1);
	ut_assert_cmp(ma_policy_answer_actions(&a, MA_LOGON_OWNER), ==, 0);

	/* Missing file: the seed's user sets. */
	unlink(path);
	ut_assert(
	    ma_policy_snapshot_lookup(path, "carol", "carol", &a, &err) == 0);
	ut_assert_cmp(ma_policy_answer_actions(&a, MA_LOGON_OWNER), ==,
	    ma_preset_actions(
		MA_PRESET_DEFAULT, MA_MAILBOX_USER, MA_SET_OWNER));
	/* Malformed file: error naming the line, seed defaults. */
	ma_buf_reset(&b);
	ma_buf_puts(&b, "mailaudit-policy 1\naudit_disabled maybe\n");
	ut_assert(ma_policy_snapshot_commit(path, &b, &err) == 0);
	ut_assert(
	    ma_policy_snapshot_lookup(path, "carol", "carol", &a, &err) == -1);
	ut_assert(strstr(err.msg, "line 2") != NULL);
	ut_assert(!a.audit_disabled);
	unlink(path);
	ma_buf_deinit(&b);
	ut_end();
}

UT_MAIN(test_default_preset_is_seed, test_other_presets, test_set_parse,
    test_snapshot)
