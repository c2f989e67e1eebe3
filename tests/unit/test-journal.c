/* SPDX-License-Identifier: MIT */
/*
 * test-journal.c - journal rules, addresses, direction, the sender login
 * map and Send/SendAs/SendOnBehalf classification (ma-journal), each with
 * the inputs that must be refused.
 */

#include <stdlib.h>
#include <string.h>

#include "ma-journal.h"
#include "ut.h"

static void
test_address(void)
{
	char out[MA_ADDRESS_MAX + 1], longaddr[400];

	ut_begin("address normalisation");
	ut_assert(ma_address_normalize(" <Alice@Example.TEST> ", out) == 0);
	ut_assert_str(out, "alice@example.test");
	ut_assert(ma_address_normalize("<>", out) == 0);
	ut_assert_str(out, "");
	ut_assert(ma_address_normalize("a b@x", out) < 0);
	ut_assert(ma_address_normalize("a\r\n@x", out) < 0);
	ut_assert(ma_address_normalize("<<a@x>>", out) < 0);
	memset(longaddr, 'a', sizeof(longaddr) - 1);
	longaddr[sizeof(longaddr) - 1] = '\0';
	ut_assert(ma_address_normalize(longaddr, out) < 0);
	ut_assert_str(ma_address_domain("a@b@c.test"), "c.test");
	ut_assert_str(ma_address_domain("nodomain"), "");
	ut_end();
}

static void
test_rules(void)
{
	struct ma_journal_rule r;
	struct ma_error err = {0};
	const char *rcpts[] = {"bob@example.test", "x@remote.test"};

	ut_begin("journal rules");
	ut_assert(ma_journal_rule_parse(
		      "all copy all Journal@Example.test", &r, &err) == 0);
	ut_assert_str(r.name, "all");
	ut_assert(r.mode == MA_JOURNAL_COPY);
	ut_assert(r.scope == MA_DIR_ALL);
	ut_assert_str(r.address, "journal@example.test");
	ut_assert(ma_journal_rule_matches(
	    &r, MA_DIR_INBOUND, "a@remote.test", rcpts, 1, NULL, 0));
	ma_journal_rule_free(&r);

	ut_assert(ma_journal_rule_parse("legal report inbound,outbound "
					"legal@example.test "
					"mailboxes=ceo@example.test,cfo@"
					"example.test",
		      &r, &err) == 0);
	ut_assert(r.mode == MA_JOURNAL_REPORT);
	ut_assert(r.scope == (MA_DIR_INBOUND | MA_DIR_OUTBOUND));
	ut_assert_cmp(r.mailbox_count, ==, 2);
	/* Scope and mailbox limits both have to match. */
	ut_assert(!ma_journal_rule_matches(
	    &r, MA_DIR_INBOUND, "a@remote.test", rcpts, 2, NULL, 0));
	ut_assert(!ma_journal_rule_matches(
	    &r, MA_DIR_INTERNAL, "ceo@example.test", rcpts, 2, NULL, 0));
	ut_assert(ma_journal_rule_matches(
	    &r, MA_DIR_OUTBOUND, "ceo@example.test", rcpts, 2, NULL, 0));
	rcpts[0] = "cfo@example.test";
	ut_assert(ma_journal_rule_matches(
	    &r, MA_DIR_INBOUND, "a@remote.test", rcpts, 2, NULL, 0));
	ma_journal_rule_free(&r);

	/* group=: the group address itself or one of its members. */
	ut_assert(ma_journal_rule_parse(
		      "team copy all j@example.test group=Team@example.test",
		      &r, &err) == 0);
	ut_assert_str(r.group, "team@example.test");
	{
		const char *members[] = {
		    "ann@example.test", "ben@example.test"};
		const char *to_team[] = {"team@example.test"};
		const char *to_ben[] = {"ben@example.test"};
		const char *to_other[] = {"zed@example.test"};

		ut_assert(ma_journal_rule_matches(&r, MA_DIR_INTERNAL,
		    "x@example.test", to_team, 1, members, 2));
		ut_assert(ma_journal_rule_matches(&r, MA_DIR_INTERNAL,
		    "x@example.test", to_ben, 1, members, 2));
		ut_assert(ma_journal_rule_matches(&r, MA_DIR_OUTBOUND,
		    "ann@example.test", to_other, 1, members, 2));
		ut_assert(!ma_journal_rule_matches(&r, MA_DIR_INTERNAL,
		    "x@example.test", to_other, 1, members, 2));
	}
	ma_journal_rule_free(&r);
	ut_assert(
	    ma_journal_rule_parse(
		"team copy all j@example.test group=nobody", &r, &err) < 0);
	ut_assert(strstr(err.msg, "'nobody'") != NULL);

	/* Every refusal names the bad word. */
	ut_assert(
	    ma_journal_rule_parse("x keep all j@example.test", &r, &err) < 0);
	ut_assert(strstr(err.msg, "'keep'") != NULL);
	ut_assert(ma_journal_rule_parse(
		      "x copy sideways j@example.test", &r, &err) < 0);
	ut_assert(strstr(err.msg, "'sideways'") != NULL);
	ut_assert(ma_journal_rule_parse("x copy all nobody", &r, &err) < 0);
	ut_assert(strstr(err.msg, "'nobody'") != NULL);
	ut_assert(ma_journal_rule_parse("x copy all", &r, &err) < 0);
	ut_assert(ma_journal_rule_parse("a/b copy all j@x.test", &r, &err) < 0);
	ut_assert(ma_journal_rule_parse(
		      "x copy all j@x.test mailboxes=", &r, &err) < 0);
	ut_assert(
	    ma_journal_rule_parse(
		"x copy all j@x.test mailboxes=a@x.test extra", &r, &err) < 0);
	ut_assert(strstr(err.msg, "'extra'") != NULL);
	ut_end();
}

static void
test_direction(void)
{
	struct ma_domains d;
	struct ma_error err = {0};
	const char *local[] = {"bob@example.test"};
	const char *mixed[] = {"bob@example.test", "x@remote.test"};
	char name[32];
	bool spoofed;

	ut_begin("direction");
	ut_assert(ma_domains_parse("Example.test, other.test", &d, &err) == 0);
	ut_assert_cmp(d.count, ==, 2);
	ut_assert(ma_domains_has(&d, "a@example.TEST"));
	ut_assert(!ma_domains_has(&d, "a@sub.example.test"));
	ut_assert(ma_journal_direction(true, &d, "alice@example.test", local, 1,
		      &spoofed) == MA_DIR_INTERNAL);
	ut_assert(ma_journal_direction(true, &d, "alice@example.test", mixed, 2,
		      &spoofed) == (MA_DIR_INTERNAL | MA_DIR_OUTBOUND));
	ma_journal_dir_name(
	    MA_DIR_INTERNAL | MA_DIR_OUTBOUND, name, sizeof(name));
	ut_assert_str(name, "internal,outbound");
	/* Not originated is inbound, whatever the sender domain says. */
	ut_assert(ma_journal_direction(false, &d, "ceo@example.test", local, 1,
		      &spoofed) == MA_DIR_INBOUND);
	ut_assert(spoofed);
	ut_assert(ma_journal_direction(false, &d, "x@remote.test", local, 1,
		      &spoofed) == MA_DIR_INBOUND);
	ut_assert(!spoofed);
	ma_domains_free(&d);
	ut_assert(ma_domains_parse("a@b", &d, &err) < 0);
	ut_end();
}

static void
test_login_map(void)
{
	struct ma_login_map *map;
	struct ma_error err = {0};

	ut_begin("sender login map");
	map = ma_login_map_parse("map",
	    "# who may send as whom\n"
	    "shared@example.test   alice@example.test,\n"
	    "\tbob@example.test\n"
	    "\n"
	    "@sales.test carol@example.test\r\n",
	    &err);
	ut_assert(map != NULL);
	ut_assert(ma_login_map_allows(
	    map, "alice@example.test", "shared@example.test"));
	ut_assert(ma_login_map_allows(
	    map, "bob@example.test", "Shared@Example.test"));
	ut_assert(!ma_login_map_allows(
	    map, "carol@example.test", "shared@example.test"));
	ut_assert(ma_login_map_allows(
	    map, "carol@example.test", "anyone@sales.test"));
	ut_assert(!ma_login_map_allows(map, "alice@example.test", ""));
	ma_login_map_destroy(&map);
	ut_assert(map == NULL);

	map = ma_login_map_parse("m", "shared@example.test\n", &err);
	ut_assert(map == NULL);
	ut_assert(strstr(err.msg, "m:1:") != NULL);
	map = ma_login_map_parse("m", "  bob@example.test\n", &err);
	ut_assert(map == NULL);
	ut_assert(strstr(err.msg, "continuation") != NULL);
	map = ma_login_map_parse("m", "a@x b@x\nbad\x01key c@x\n", &err);
	ut_assert(map == NULL);
	ut_assert(strstr(err.msg, "m:2:") != NULL);
	ut_end();
}

static void
test_classify(void)
{
	struct ma_login_map *map;
	struct ma_domains d;
	struct ma_error err = {0};
	struct ma_send_class c;
	char name[MA_ADDRESS_MAX + 1];

	ut_begin("Send, SendAs, SendOnBehalf");
	ut_assert(ma_domains_parse("example.test", &d, &err) == 0);
	map = ma_login_map_parse(
	    "m", "shared@example.test alice@example.test\n", &err);
	ut_assert(map != NULL);

	ma_send_classify(ma_login_map_allows_cb, map, MA_NAMES_ADDRESS, &d,
	    "alice@example.test", "alice@example.test", "alice@example.test",
	    "", &c);
	ut_assert(c.action == MA_ACTION_SEND);
	ut_assert(c.logon == MA_LOGON_OWNER);
	ut_assert(c.permitted);

	ma_send_classify(ma_login_map_allows_cb, map, MA_NAMES_ADDRESS, &d,
	    "alice@example.test", "alice@example.test", "shared@example.test",
	    "", &c);
	ut_assert(c.action == MA_ACTION_SEND_AS);
	ut_assert(c.logon == MA_LOGON_DELEGATE);
	ut_assert_str(c.principal, "shared@example.test");
	ut_assert(c.permitted);

	/* An envelope sender of another mailbox is SendAs too. */
	ma_send_classify(ma_login_map_allows_cb, map, MA_NAMES_ADDRESS, &d,
	    "alice@example.test", "shared@example.test", "", "", &c);
	ut_assert(c.action == MA_ACTION_SEND_AS);
	ut_assert(c.permitted);

	ma_send_classify(ma_login_map_allows_cb, map, MA_NAMES_ADDRESS, &d,
	    "alice@example.test", "alice@example.test", "shared@example.test",
	    "alice@example.test", &c);
	ut_assert(c.action == MA_ACTION_SEND_ON_BEHALF);
	ut_assert(c.logon == MA_LOGON_DELEGATE);
	ut_assert_str(c.principal, "shared@example.test");
	ut_assert(c.permitted);

	/* Not in the map: classified, but not permitted. */
	ma_send_classify(ma_login_map_allows_cb, map, MA_NAMES_ADDRESS, &d,
	    "bob@example.test", "bob@example.test", "ceo@example.test", "", &c);
	ut_assert(c.action == MA_ACTION_SEND_AS);
	ut_assert(!c.permitted);
	ma_send_classify(ma_login_map_allows_cb, NULL, MA_NAMES_ADDRESS, &d,
	    "bob@example.test", "bob@example.test", "ceo@example.test",
	    "bob@example.test", &c);
	ut_assert(c.action == MA_ACTION_SEND_ON_BEHALF);
	ut_assert(!c.permitted);

	/* Logins without a domain own their local-part addresses. */
	ma_send_classify(ma_login_map_allows_cb, NULL, MA_NAMES_LOCALPART, &d,
	    "alice", "alice@example.test", "alice@example.test", "", &c);
	ut_assert(c.action == MA_ACTION_SEND);
	ma_mailbox_name(MA_NAMES_LOCALPART, &d, "alice@example.test", name);
	ut_assert_str(name, "alice");
	ma_mailbox_name(MA_NAMES_LOCALPART, &d, "x@remote.test", name);
	ut_assert_str(name, "x@remote.test");
	ma_mailbox_name(MA_NAMES_ADDRESS, &d, "alice@example.test", name);
	ut_assert_str(name, "alice@example.test");

	ma_login_map_destroy(&map);
	ma_domains_free(&d);
	ut_end();
}

UT_MAIN(test_address, test_rules, test_direction, test_login_map, test_classify)
