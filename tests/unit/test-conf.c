/* SPDX-License-Identifier: MIT */
/* test-conf.c - the config parser, with the errors it must report. */

#include <string.h>

#include "ma-conf.h"
#include "ut.h"

static void
test_defaults_and_values(void)
{
	struct ma_conf c;
	struct ma_error err = {0};

	ut_begin("defaults and overrides");
	ut_assert(ma_conf_parse(&c, "t.conf",
		      "# comment\n\n store_path = /x/a.db \n"
		      "batch_max_records=5\nsocket_mode = 0660\n"
		      "record_subjects = no\n",
		      &err) == 0);
	ut_assert_str(c.store_path, "/x/a.db");
	ut_assert_cmp(c.batch_max_records, ==, 5);
	ut_assert_cmp(c.socket_mode, ==, 0660);
	ut_assert(!c.record_subjects);
	ut_assert_str(c.spool_dir, "/var/spool/mailaudit");
	ma_conf_free(&c);
	ut_end();
}

static void
test_errors(void)
{
	static const struct {
		const char *text, *msg;
	} cases[] = {
	    {"bogus = 1\n", "t.conf:1: unknown key 'bogus'"},
	    {"\nstore_path\n", "t.conf:2: expected 'name = value'"},
	    {"store_path = rel\n", "t.conf:1: store_path: not an absolute"},
	    {"batch_max_records = 0\n", "t.conf:1: batch_max_records: '0'"},
	    {"batch_max_records = 1x\n", "batch_max_records: '1x'"},
	    {"socket_mode = 666\n", "socket_mode: '666' is not an octal"},
	    {"record_subjects = maybe\n", "record_subjects: 'maybe'"},
	    {"user = a\nuser = b\n", "t.conf:2: user: set twice"},
	};
	struct ma_conf c;

	ut_begin("bad config names file, line and key");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ma_error err = {0};

		ut_assert(ma_conf_parse(&c, "t.conf", cases[i].text, &err) < 0);
		if (strstr(err.msg, cases[i].msg) == NULL)
			ut_fail(__FILE__, __LINE__, "case %zu: '%s' lacks '%s'",
			    i, err.msg, cases[i].msg);
		/* Defaults after an error. */
		ut_assert_str(c.store_path, "/var/lib/mailaudit/audit.db");
		ma_conf_free(&c);
	}
	ut_end();
}

UT_MAIN(test_defaults_and_values, test_errors)
