/* SPDX-License-Identifier: MIT */
/* test-conf.c - the config parser, with the errors it must report. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ma-conf.h"
#include "ma-forward-conf.h"
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

static void
test_forward_lines(void)
{
	struct ma_conf c;
	struct ma_error err = {0};
	struct fwd_dest_conf *d;
	size_t n;
	FILE *fp;
	char *printed = NULL;
	size_t printed_len = 0;

	ut_begin("forward lines parse into destinations");
	ut_assert(ma_conf_parse(&c, "t.conf",
		      "forward = s1 syslog 127.0.0.1:514\n"
		      "forward =  tls1\tsyslog-tls siem.example.org:6514 "
		      "ca=/etc/ca.pem format=cef peer_name=siem.example.org "
		      "cert=/c.pem key=/k.pem batch=50 timeout_ms=2000\n"
		      "forward = r1 relp [::1]:2514 window=16\n"
		      "forward = r2 relp h:1 tls=yes ca=/ca.pem\n"
		      "forward = h1 hec https://splunk:8088/services/collector/"
		      "event token_file=/t index=mail sourcetype=ma:json\n"
		      "forward = e1 elastic http://es:9200 user=u "
		      "password_file=/p\n"
		      "forward_state_dir = /tmp/fs\nforward_poll_ms = 50\n"
		      "syslog_app_name = mx-audit\nsyslog_sd_id = ma@99999\n"
		      "syslog_utf8_bom = yes\n",
		      &err) == 0);
	ut_assert_str(err.msg, "");
	ut_assert_str(c.forward_state_dir, "/tmp/fs");
	ut_assert_cmp(c.forward_poll_ms, ==, 50);
	ut_assert_cmp(c.forward_state_interval_ms, ==, 1000);
	ut_assert_cmp(c.forward_backoff_max_ms, ==, 60000);
	ut_assert_str(c.syslog_app_name, "mx-audit");
	ut_assert_str(c.syslog_sd_id, "ma@99999");
	ut_assert(c.syslog_utf8_bom);
	ut_assert(ma_fwd_dests_parse(c.forwards, &d, &n, &err) == 0);
	ut_assert_cmp(n, ==, 6);
	if (n == 6) {
		ut_assert_str(d[0].name, "s1");
		ut_assert_str(d[0].type, "syslog");
		ut_assert_str(d[0].host, "127.0.0.1");
		ut_assert_cmp(d[0].port, ==, 514);
		ut_assert_cmp(d[0].format, ==, MA_SIEM_JSON);
		ut_assert_cmp(d[0].batch, ==, 500);
		ut_assert_cmp(d[0].timeout_ms, ==, 10000);
		ut_assert_str(d[1].name, "tls1");
		ut_assert_str(d[1].ca, "/etc/ca.pem");
		ut_assert_str(d[1].peer_name, "siem.example.org");
		ut_assert_cmp(d[1].format, ==, MA_SIEM_CEF);
		ut_assert_cmp(d[1].batch, ==, 50);
		ut_assert_cmp(d[1].timeout_ms, ==, 2000);
		ut_assert_str(d[2].host, "::1");
		ut_assert_cmp(d[2].port, ==, 2514);
		ut_assert_cmp(d[2].window, ==, 16);
		ut_assert(!d[2].tls);
		ut_assert(d[3].tls);
		ut_assert_str(d[4].target,
		    "https://splunk:8088/services/collector/event");
		ut_assert(d[4].host == NULL);
		ut_assert_str(d[4].token_file, "/t");
		ut_assert_str(d[4].index, "mail");
		ut_assert_str(d[4].sourcetype, "ma:json");
		ut_assert_cmp(d[5].format, ==, MA_SIEM_ECS);
		ut_assert_str(d[5].index, "logs-mailaudit-default");
		ut_assert_str(d[5].user, "u");
	}
	ma_fwd_dests_free(&d, n);
	ut_assert(d == NULL);

	/* config -n prints every forward line back. */
	fp = open_memstream(&printed, &printed_len);
	ma_conf_print(&c, fp, true);
	fclose(fp);
	ut_assert(
	    strstr(printed, "forward = s1 syslog 127.0.0.1:514\n") != NULL);
	ut_assert(
	    strstr(printed, "forward = e1 elastic http://es:9200") != NULL);
	free(printed);
	ma_conf_free(&c);

	ut_assert(ma_conf_parse(&c, "t.conf", "", &err) == 0);
	ut_assert(ma_fwd_dests_parse(c.forwards, &d, &n, &err) == 0);
	ut_assert_cmp(n, ==, 0);
	ma_conf_free(&c);
	ut_end();
}

static void
test_forward_errors(void)
{
	static const struct {
		const char *text, *msg;
	} cases[] = {
	    {"forward = a syslog\n", "t.conf:1: forward: a: no TARGET"},
	    {"forward = a\n", "forward: a: no TYPE"},
	    {"forward = a kafka h:1\n", "a: unknown type 'kafka'"},
	    {"forward = a/b syslog h:1\n", "name 'a/b' is not"},
	    {"forward = abcdefghijabcdefghijabcdefghijabc syslog h:1\n",
		"is not 1 to 32"},
	    {"forward = a syslog h\n", "target 'h' is not host:port"},
	    {"forward = a syslog h:0\n", "target 'h:0' is not host:port"},
	    {"forward = a syslog h:65536\n", "is not host:port"},
	    {"forward = a syslog h:x\n", "is not host:port"},
	    {"forward = a syslog :514\n", "is not host:port"},
	    {"forward = a syslog bad..host:514\n", "is not host:port"},
	    {"forward = a syslog [::1:514\n", "is not host:port"},
	    {"forward = a syslog h:1 ca=/x\n",
		"type syslog has no option 'ca'"},
	    {"forward = a syslog h:1 bogus=1\n", "has no option 'bogus'"},
	    {"forward = a syslog h:1 format\n", "'format' is not option=value"},
	    {"forward = a syslog h:1 format=xml\n", "format=xml: not json"},
	    {"forward = a syslog h:1 batch=0\n", "batch=0: not a number"},
	    {"forward = a syslog h:1 batch=1 batch=2\n", "batch given twice"},
	    {"forward = a syslog-tls h:6514\n", "type syslog-tls needs ca="},
	    {"forward = a syslog-tls h:6514 ca=rel.pem\n",
		"ca=rel.pem: not an absolute path"},
	    {"forward = a syslog-tls h:6514 ca=/c cert=/x\n",
		"cert= and key= go together"},
	    {"forward = a syslog-tls h:1 ca=/c peer_name=a\"b\n",
		"peer_name=a\"b: not a host name"},
	    {"forward = a relp h:1 ca=/c\n", "need tls=yes"},
	    {"forward = a relp h:1 tls=yes\n", "tls=yes needs ca="},
	    {"forward = a relp h:1 tls=maybe\n", "tls=maybe: not yes or no"},
	    {"forward = a relp h:1 window=0\n", "window=0: not a number"},
	    {"forward = a hec h:8088 token_file=/t\n",
		"is not an http:// or https:// URL"},
	    {"forward = a hec https://h:8088/x\n",
		"type hec needs token_file="},
	    {"forward = a hec https://h:99999/x token_file=/t\n",
		"bad host or port"},
	    {"forward = a hec https://h x/ token_file=/t\n",
		"'x/' is not option=value"},
	    {"forward = a hec http://h:8088/x token_file=/t ca=/c\n",
		"ca= needs an https:// target"},
	    {"forward = a elastic https://h:9200 format=cef\n",
		"does not take format=cef"},
	    {"forward = a elastic https://h:9200 user=u\n",
		"user= and password_file= go together"},
	    {"forward = a elastic https://h:9200 user=u password_file=/p "
	     "api_key_file=/k\n",
		"not both"},
	    {"forward = a syslog h:1\nforward = b syslog h:2\n"
	     "forward = a relp h:3\n",
		"t.conf:3: forward: destination name a used twice"},
	    {"forward_poll_ms = 0\n", "forward_poll_ms: '0'"},
	    {"forward_state_dir = rel\n", "forward_state_dir: not an absolute"},
	    {"syslog_app_name = a b\n", "syslog_app_name: 'a b' is not"},
	    {"syslog_sd_id = a=b\n", "syslog_sd_id: 'a=b' is not an SD-ID"},
	    {"syslog_utf8_bom = 1\n", "syslog_utf8_bom: '1' is not yes"},
	};
	struct ma_conf c;

	ut_begin("bad forward lines name file, line and word");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ma_error err = {0};

		ut_assert(ma_conf_parse(&c, "t.conf", cases[i].text, &err) < 0);
		if (strstr(err.msg, cases[i].msg) == NULL)
			ut_fail(__FILE__, __LINE__, "case %zu: '%s' lacks '%s'",
			    i, err.msg, cases[i].msg);
		ut_assert(c.forwards == NULL);
		ma_conf_free(&c);
	}
	ut_end();
}

static void
test_forward_state_file(void)
{
	char dir[] = "/tmp/ma-test-fwd-XXXXXX";
	struct ma_fwd_state st = {0}, back;
	struct ma_error err = {0};
	int64_t low = -1;
	char name[FWD_NAME_MAX + 1], *path;
	FILE *fp;

	ut_begin("state files: write, read back, lowest cursor");
	ut_assert(mkdtemp(dir) != NULL);
	ut_assert(ma_fwd_state_read(dir, "a", &back, &err) == 0);
	ut_assert_cmp(back.cursor, ==, 0);
	snprintf(st.type, sizeof(st.type), "syslog");
	snprintf(st.target, sizeof(st.target), "h:1");
	st.cursor = 42;
	st.delivered = 40;
	st.rejected = 2;
	st.last_success_ms = 1700000000123;
	st.last_error_ms = 1700000000456;
	snprintf(st.last_error, sizeof(st.last_error), "line1\nline2=x");
	st.pid = 77;
	ut_assert(ma_fwd_state_write(dir, "a", &st, &err) == 0);
	ut_assert(ma_fwd_state_read(dir, "a", &back, &err) == 1);
	ut_assert_cmp(back.cursor, ==, 42);
	ut_assert_cmp(back.delivered, ==, 40);
	ut_assert_cmp(back.rejected, ==, 2);
	ut_assert_cmp(back.last_success_ms, ==, 1700000000123);
	ut_assert_cmp(back.last_error_ms, ==, 1700000000456);
	ut_assert_str(back.last_error, "line1?line2=x");
	ut_assert_str(back.type, "syslog");
	ut_assert_str(back.target, "h:1");
	ut_assert_cmp(back.pid, ==, 77);

	/* Lowest cursor: b has no state file yet, so it is 0. */
	ut_assert(
	    ma_fwd_lowest_cursor("a syslog h:1", dir, &low, name, &err) == 1);
	ut_assert_cmp(low, ==, 42);
	ut_assert_str(name, "a");
	ut_assert(ma_fwd_lowest_cursor("a syslog h:1\nb syslog h:2", dir, &low,
		      name, &err) == 1);
	ut_assert_cmp(low, ==, 0);
	ut_assert_str(name, "b");
	ut_assert(ma_fwd_lowest_cursor("", dir, &low, name, &err) == 0);

	/* A damaged file is an error, never cursor 0 or a guess. */
	path = ma_fwd_state_path(dir, "a", ".state");
	fp = fopen(path, "w");
	fputs("cursor=12x\n", fp);
	fclose(fp);
	ut_assert(ma_fwd_state_read(dir, "a", &back, &err) < 0);
	ut_assert(strstr(err.msg, "a.state:1: malformed") != NULL);
	ut_assert(
	    ma_fwd_lowest_cursor("a syslog h:1", dir, &low, name, &err) < 0);
	fp = fopen(path, "w");
	fputs("delivered=1\n", fp);
	fclose(fp);
	ut_assert(ma_fwd_state_read(dir, "a", &back, &err) < 0);
	ut_assert(strstr(err.msg, "no cursor") != NULL);
	unlink(path);
	free(path);
	ut_assert(rmdir(dir) == 0);
	ut_end();
}

UT_MAIN(test_defaults_and_values, test_errors, test_forward_lines,
    test_forward_errors, test_forward_state_file)
