/* SPDX-License-Identifier: MIT */
/*
 * test-proto.c - wire frames: round trips, escaping, and a table of
 * malformed frames that must each be rejected with a useful reason.
 */

#include <stdlib.h>
#include <string.h>

#include "ma-proto.h"
#include "ut.h"

static void
fill(struct ma_record *rec)
{
	ma_uuid7(rec->id, 1700000000123);
	rec->time_ms = 1700000000123;
	rec->operation = "MoveToDeletedItems";
	rec->logon_type = MA_LOGON_DELEGATE;
	rec->user = "bob";
	rec->mailbox = "alice";
	rec->folder = "INBOX";
	rec->dest_folder = "Trash";
	rec->session = "sess1";
	rec->client_ip = "127.0.0.1";
	rec->client_info = "Client=POP3/IMAP4;Protocol=IMAP4";
	rec->protocol = "imap";
	ma_record_add_item(rec, 7, "<m1@x>", "tab\there, nl\nand %25 \x01", 99);
	ma_record_add_item(rec, 8, NULL, NULL, 0);
	ma_record_add_prop(rec, "Flags", "\\Seen", "\\Seen \\Deleted");
}

static void
test_roundtrip(void)
{
	struct ma_record a, b;
	struct ma_error err = {0};
	struct ma_buf buf;
	long len;

	ut_begin("record round trip with hostile strings");
	ma_record_init(&a);
	ma_record_init(&b);
	fill(&a);
	ma_buf_init(&buf, MA_PROTO_MAX_FRAME);
	ut_assert(ma_proto_encode_record(&a, &buf) == 0);
	/* No raw control byte but the line ends. */
	for (size_t i = 0; i < buf.len; i++)
		ut_assert(buf.data[i] == '\n' || buf.data[i] == '\t' ||
			  (unsigned char)buf.data[i] >= 0x20);
	len = ma_proto_frame_len(buf.data, buf.len);
	ut_assert_cmp(len, ==, (long)buf.len);
	ut_assert_cmp(ma_proto_frame_len(buf.data, buf.len - 1), ==, 0);
	ut_assert(ma_proto_decode_record(buf.data, buf.len, &b, &err) == 0);
	ut_assert(memcmp(a.id, b.id, 16) == 0);
	ut_assert_cmp(b.time_ms, ==, a.time_ms);
	ut_assert_str(b.operation, "MoveToDeletedItems");
	ut_assert_cmp(b.logon_type, ==, MA_LOGON_DELEGATE);
	ut_assert_str(b.dest_folder, "Trash");
	ut_assert_cmp(b.item_count, ==, 2);
	ut_assert_str(b.items[0].subject, "tab\there, nl\nand %25 \x01");
	ut_assert_cmp(b.items[0].uid, ==, 7);
	ut_assert_cmp(b.items[0].size, ==, 99);
	ut_assert(b.items[1].message_id == NULL);
	ut_assert_cmp(b.prop_count, ==, 1);
	ut_assert_str(b.props[0].new_value, "\\Seen \\Deleted");
	ma_buf_deinit(&buf);
	ma_record_deinit(&a);
	ma_record_deinit(&b);
	ut_end();
}

static void
test_utf8_repair(void)
{
	const char *frame = "v=1\nid=0189d6a4-1111-7000-8000-000000000001\n"
			    "t=5\nop=Update\nuser=a\nmbox=a\nfolder=bad\xff"
			    "x\n\n";
	struct ma_record rec;
	struct ma_error err = {0};

	ut_begin("invalid UTF-8 is repaired on decode");
	ma_record_init(&rec);
	ut_assert(
	    ma_proto_decode_record(frame, strlen(frame), &rec, &err) == 0);
	ut_assert_str(rec.folder, "bad\xef\xbf\xbdx");
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_malformed(void)
{
	static const struct {
		const char *frame, *why;
	} cases[] = {
	    {"garbage\n\n", "without '='"},
	    {"v=1\n\n", "no id"},
	    {"v=2\nid=0189d6a4-1111-7000-8000-000000000001\n\n", "version"},
	    {"id=zz\n\n", "bad id"},
	    {"id=0189d6a4-1111-7000-8000-000000000001\nt=5\nop=Nope\n"
	     "user=a\nmbox=a\n\n",
		"unknown operation"},
	    {"id=0189d6a4-1111-7000-8000-000000000001\nt=5\nop=Update\n"
	     "mbox=a\n\n",
		"no user"},
	    {"id=0189d6a4-1111-7000-8000-000000000001\nt=5\nop=Update\n"
	     "user=a\nuser=b\nmbox=a\n\n",
		"duplicate"},
	    {"id=0189d6a4-1111-7000-8000-000000000001\nt=5\nop=Update\n"
	     "user=a%2\nmbox=a\n\n",
		"escape"},
	    {"id=0189d6a4-1111-7000-8000-000000000001\nt=5\nop=Update\n"
	     "user=a%zz\nmbox=a\n\n",
		"escape"},
	    {"id=0189d6a4-1111-7000-8000-000000000001\nt=x\n\n", "time"},
	    {"id=0189d6a4-1111-7000-8000-000000000001\nlogon=Root\n\n",
		"logon"},
	    {"item=1\tx\n\n", "fields"},
	    {"item=abc\t\t\t\n\n", "number"},
	    {"prop=\tx\ty\n\n", "without a name"},
	    {"zzz=1\n\n", "unknown key"},
	    {"user=a\rb\n\n", "control byte"},
	    {"user=a", "not terminated"},
	};
	struct ma_record rec;

	ut_begin("malformed frames are rejected with a reason");
	ma_record_init(&rec);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ma_error err = {0};

		ma_record_reset(&rec);
		ut_assert(ma_proto_decode_record(cases[i].frame,
			      strlen(cases[i].frame), &rec, &err) < 0);
		if (strstr(err.msg, cases[i].why) == NULL)
			ut_fail(__FILE__, __LINE__, "case %zu: '%s' lacks '%s'",
			    i, err.msg, cases[i].why);
	}
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_limits(void)
{
	struct ma_record rec;
	struct ma_buf buf;
	char big[MA_RECORD_MAX_STRING + 2];

	ut_begin("limits: items, string length, frame size");
	ma_record_init(&rec);
	fill(&rec);
	for (int i = 2; i < MA_RECORD_MAX_ITEMS; i++)
		ut_assert(ma_record_add_item(
			      &rec, (uint32_t)i, "<x@y>", "s", 1) == 0);
	ut_assert(ma_record_add_item(&rec, 1, NULL, NULL, 0) < 0);
	ma_buf_init(&buf, MA_PROTO_MAX_FRAME);
	/* 1000 small items fit in one frame. */
	ut_assert(ma_proto_encode_record(&rec, &buf) == 0);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	rec.folder = big;
	{
		struct ma_error err = {0};

		ut_assert(ma_record_validate(&rec, &err) < 0);
		ut_assert(strstr(err.msg, "folder") != NULL);
	}
	/* An oversized frame is refused and leaves the buffer as it was. */
	ma_buf_reset(&buf);
	ma_buf_puts(&buf, "keep");
	for (int i = 0; i < 40; i++)
		ma_record_add_prop(&rec, "p", big, big);
	ut_assert(ma_proto_encode_record(&rec, &buf) < 0);
	ut_assert_str(buf.data, "keep");
	{
		/* A property value may be a list up to 64 KiB, no more. */
		struct ma_record r2;
		struct ma_error err = {0};
		char *list = malloc(MA_RECORD_MAX_PROP_VALUE + 2);

		ma_record_init(&r2);
		fill(&r2);
		memset(list, 'r', MA_RECORD_MAX_PROP_VALUE);
		list[MA_RECORD_MAX_PROP_VALUE] = '\0';
		ut_assert(
		    ma_record_add_prop(&r2, "Recipients", NULL, list) == 0);
		ut_assert(ma_record_validate(&r2, &err) == 0);
		ma_record_reset(&r2);
		fill(&r2);
		list[MA_RECORD_MAX_PROP_VALUE] = 'r';
		list[MA_RECORD_MAX_PROP_VALUE + 1] = '\0';
		ut_assert(
		    ma_record_add_prop(&r2, "Recipients", NULL, list) == 0);
		ut_assert(ma_record_validate(&r2, &err) < 0);
		ma_record_deinit(&r2);
		free(list);
	}
	ma_buf_deinit(&buf);
	ma_record_deinit(&rec);
	ut_end();
}

static void
test_kvframe(void)
{
	struct ma_kvframe f;
	struct ma_error err = {0};
	struct ma_buf b;

	ut_begin("key/value frames");
	ma_kvframe_init(&f);
	ma_buf_init(&b, 1024);
	ma_proto_put(&b, "cmd", "set-mailbox");
	ma_proto_put(&b, "mailbox", "a\nb");
	ma_proto_end(&b);
	ut_assert(ma_kvframe_decode(&f, b.data, b.len, &err) == 0);
	ut_assert_str(ma_kvframe_get(&f, "mailbox"), "a\nb");
	ut_assert(ma_kvframe_get(&f, "nope") == NULL);
	ma_kvframe_reset(&f);
	ut_assert(ma_kvframe_decode(&f, "x\n\n", 3, &err) < 0);
	ma_buf_deinit(&b);
	ma_kvframe_deinit(&f);
	ut_end();
}

UT_MAIN(
    test_roundtrip, test_utf8_repair, test_malformed, test_limits, test_kvframe)
