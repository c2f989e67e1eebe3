/* SPDX-License-Identifier: MIT */
/*
 * imap.c - journal reports into the mail store by IMAP APPEND (imap.h).
 *
 * A session: greeting, AUTHENTICATE PLAIN (the credentials are sent as a
 * continuation, never on the command line of a log), CAPABILITY, then
 * any number of APPENDs, LOGOUT.  An APPEND carries up to the batch of
 * messages as literals; each literal's size is counted first (a bare LF
 * becomes CRLF, as LMTP would have delivered it), then the file is
 * streamed.  Only the tagged reply decides the outcome; untagged data
 * (EXISTS, CAPABILITY...) is skipped, a BYE ends the session.
 */

#include "imap.h"

#include <errno.h>
#include <glib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <unistd.h>

#include "conn.h"
#include "ma-util.h"

struct imap_session {
	struct conn c;
	bool literal_plus, multiappend, ok;
	unsigned int tag;
};

enum reply_kind {
	REPLY_OK,
	REPLY_NO,
	REPLY_BAD,
	REPLY_CONT, /* "+ ": the server waits for a continuation */
	REPLY_ERROR /* connection trouble or BYE; reason in c->reply */
};

static void
caps_from(struct imap_session *s, const char *line)
{
	/* A capability list, untagged or as an OK response code. */
	if (strstr(line, "CAPABILITY") == NULL)
		return;
	s->literal_plus = strstr(line, " LITERAL+") != NULL;
	s->multiappend = strstr(line, " MULTIAPPEND") != NULL;
}

/*
 * read_reply - lines up to the tagged reply of tag (or, with cont, a
 * continuation request); the tagged line, sanitised, goes to c->reply.
 */
static enum reply_kind
read_reply(struct imap_session *s, const char *tag, bool cont)
{
	struct conn *c = &s->c;
	size_t tlen = strlen(tag);
	char line[4096];

	for (;;) {
		const char *rest;

		if (conn_read_line(c, line, sizeof(line)) < 0)
			return REPLY_ERROR;
		if (cont && line[0] == '+')
			return REPLY_CONT;
		if (strncmp(line, "* ", 2) == 0) {
			caps_from(s, line);
			if (strncasecmp(line + 2, "BYE", 3) == 0) {
				ma_sanitize(line, strlen(line), c->reply,
				    c->reply_size);
				return REPLY_ERROR;
			}
			continue;
		}
		if (strncmp(line, tag, tlen) != 0 || line[tlen] != ' ')
			continue; /* not ours: cannot happen, ignore */
		rest = line + tlen + 1;
		caps_from(s, rest);
		ma_sanitize(rest, strlen(rest), c->reply, c->reply_size);
		if (strncasecmp(rest, "OK", 2) == 0)
			return REPLY_OK;
		return strncasecmp(rest, "NO", 2) == 0 ? REPLY_NO : REPLY_BAD;
	}
}

static void
next_tag(struct imap_session *s, char tag[16])
{
	snprintf(tag, 16, "m%u", ++s->tag);
}

static enum reply_kind
simple_command(struct imap_session *s, const char *cmd)
{
	char tag[16];

	next_tag(s, tag);
	if (conn_puts(&s->c, tag) < 0 || conn_put(&s->c, " ", 1) < 0 ||
	    conn_puts(&s->c, cmd) < 0 || conn_put(&s->c, "\r\n", 2) < 0 ||
	    conn_flush(&s->c) < 0)
		return REPLY_ERROR;
	return read_reply(s, tag, false);
}

static int
authenticate(struct imap_session *s, const char *authz, const char *authc,
    const char *password)
{
	size_t za = strlen(authz), ca = strlen(authc), pa = strlen(password);
	char *plain = ma_xmalloc(za + ca + pa + 2), *b64;
	char tag[16];
	int ret = -1;

	memcpy(plain, authz, za);
	plain[za] = '\0';
	memcpy(plain + za + 1, authc, ca);
	plain[za + 1 + ca] = '\0';
	memcpy(plain + za + ca + 2, password, pa);
	b64 = g_base64_encode((const guchar *)plain, za + ca + pa + 2);
	memset(plain, 0, za + ca + pa + 2);
	free(plain);

	next_tag(s, tag);
	if (conn_puts(&s->c, tag) < 0 ||
	    conn_puts(&s->c, " AUTHENTICATE PLAIN\r\n") < 0 ||
	    conn_flush(&s->c) < 0)
		goto out;
	if (read_reply(s, tag, true) != REPLY_CONT)
		goto out; /* refused (or gone) before the credentials */
	if (conn_puts(&s->c, b64) < 0 || conn_put(&s->c, "\r\n", 2) < 0 ||
	    conn_flush(&s->c) < 0)
		goto out;
	ret = read_reply(s, tag, false) == REPLY_OK ? 0 : -1;
out:
	memset(b64, 0, strlen(b64));
	g_free(b64);
	return ret;
}

struct imap_session *
imap_connect(const char *target, const char *authz, const char *authc,
    const char *password, unsigned int timeout_ms, char *reply,
    size_t reply_size)
{
	struct imap_session *s = ma_xcalloc(1, sizeof(*s));
	struct conn *c = &s->c;
	char line[4096];

	c->reply = reply;
	c->reply_size = reply_size;
	reply[0] = '\0';
	if (conn_open(c, target, timeout_ms) < 0)
		goto fail;
	if (conn_read_line(c, line, sizeof(line)) < 0)
		goto fail;
	if (strncasecmp(line, "* OK", 4) != 0) {
		snprintf(reply, reply_size, "greeting: ");
		ma_sanitize(line, strlen(line), reply + strlen(reply),
		    reply_size - strlen(reply));
		goto fail;
	}
	if (authenticate(s, authz, authc, password) < 0) {
		char why[512];

		snprintf(why, sizeof(why), "%s", reply);
		snprintf(reply, reply_size, "login as %.100s%s%.100s: %s",
		    authc, authz[0] != '\0' ? " for " : "", authz, why);
		goto fail;
	}
	/* The capabilities after login are the ones that count. */
	s->literal_plus = s->multiappend = false;
	if (simple_command(s, "CAPABILITY") != REPLY_OK)
		goto fail;
	s->ok = true;
	return s;
fail:
	conn_close(c);
	free(s);
	return NULL;
}

/* literal_size - the item's bytes, bare LF counted as CRLF */
static int
literal_size(const struct store_item *item, uint64_t *size_r)
{
	char buf[65536];
	uint64_t pos = item->off, size = 0;
	bool last_cr = false;
	ssize_t n;

	while ((n = store_item_read(item, &pos, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' && !last_cr)
				size++;
			last_cr = buf[i] == '\r';
		}
		size += (uint64_t)n;
	}
	*size_r = size;
	return n < 0 ? -1 : 0;
}

static int
send_literal(struct conn *c, const struct store_item *item)
{
	char buf[65536];
	uint64_t pos = item->off;
	bool last_cr = false;
	ssize_t n;

	while ((n = store_item_read(item, &pos, buf, sizeof(buf))) > 0) {
		size_t from = 0;

		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n' && !last_cr) {
				if (conn_put(c, buf + from, (size_t)i - from) <
					0 ||
				    conn_put(c, "\r", 1) < 0)
					return -1;
				from = (size_t)i;
			}
			last_cr = buf[i] == '\r';
		}
		if (conn_put(c, buf + from, (size_t)n - from) < 0)
			return -1;
	}
	if (n < 0) {
		snprintf(c->reply, c->reply_size, "reading item: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* quoted - mailbox as an IMAP quoted string; -1 if it cannot be one */
static int
quoted(const char *mailbox, char *out, size_t size)
{
	size_t o = 0;

	if (o + 1 >= size)
		return -1;
	out[o++] = '"';
	for (const char *p = mailbox; *p != '\0'; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch < 0x20 || ch >= 0x7f || o + 4 >= size)
			return -1;
		if (ch == '"' || ch == '\\')
			out[o++] = '\\';
		out[o++] = (char)ch;
	}
	out[o++] = '"';
	out[o] = '\0';
	return 0;
}

/* Response codes after which the same APPEND may well work later. */
static bool
temporary_no(const char *reply)
{
	static const char *const codes[] = {"[OVERQUOTA]", "[UNAVAILABLE]",
	    "[SERVERBUG]", "[INUSE]", "[NOPERM]", "[TRYCREATE]",
	    "[CONTACTADMIN]", "[EXPUNGEISSUED]", "[LIMIT]"};
	const char *p = reply + 2; /* after "NO" */

	while (*p == ' ')
		p++;
	if (*p != '[')
		return true; /* no code: nothing says it is the message */
	for (size_t i = 0; i < sizeof(codes) / sizeof(*codes); i++) {
		if (strncasecmp(p, codes[i], strlen(codes[i])) == 0)
			return true;
	}
	return false;
}

enum lmtp_result
imap_append(struct imap_session *s, const char *mailbox,
    const struct store_item *items, size_t n, char *reply, size_t reply_size)
{
	struct conn *c = &s->c;
	char tag[16], mbox[1024], head[64];
	enum reply_kind kind;

	c->reply = reply;
	c->reply_size = reply_size;
	reply[0] = '\0';
	if (quoted(mailbox, mbox, sizeof(mbox)) < 0) {
		snprintf(reply, reply_size,
		    "mailbox name %.100s: only printable ASCII", mailbox);
		return LMTP_TEMPFAIL;
	}
	next_tag(s, tag);
	if (conn_puts(c, tag) < 0 || conn_puts(c, " APPEND ") < 0 ||
	    conn_puts(c, mbox) < 0)
		goto broken;
	for (size_t i = 0; i < n; i++) {
		uint64_t size;

		if (literal_size(&items[i], &size) < 0) {
			snprintf(reply, reply_size, "reading report: %s",
			    strerror(errno));
			goto broken;
		}
		snprintf(head, sizeof(head), " {%llu%s}\r\n",
		    (unsigned long long)size, s->literal_plus ? "+" : "");
		if (conn_puts(c, head) < 0)
			goto broken;
		if (!s->literal_plus) {
			if (conn_flush(c) < 0)
				goto broken;
			kind = read_reply(s, tag, true);
			if (kind != REPLY_CONT) {
				if (kind == REPLY_ERROR)
					goto broken;
				return kind == REPLY_NO && temporary_no(reply)
					   ? LMTP_TEMPFAIL
					   : LMTP_PERMFAIL;
			}
		}
		if (send_literal(c, &items[i]) < 0)
			goto broken;
	}
	if (conn_put(c, "\r\n", 2) < 0 || conn_flush(c) < 0)
		goto broken;
	kind = read_reply(s, tag, false);
	switch (kind) {
	case REPLY_OK:
		return LMTP_DELIVERED;
	case REPLY_NO:
		return temporary_no(reply) ? LMTP_TEMPFAIL : LMTP_PERMFAIL;
	case REPLY_BAD:
		/* The server may have read the rest of the batch as
		   commands: no more on this session. */
		s->ok = false;
		conn_close(c);
		return LMTP_PERMFAIL;
	case REPLY_CONT:
	case REPLY_ERROR:
		break;
	}
broken:
	/* Mid-command: the session's state is unknown, so it ends here. */
	s->ok = false;
	conn_close(c);
	return LMTP_TEMPFAIL;
}

int
imap_ok(const struct imap_session *s)
{
	return s != NULL && s->ok;
}

int
imap_multiappend(const struct imap_session *s)
{
	return s->multiappend;
}

void
imap_close(struct imap_session **sp)
{
	struct imap_session *s = *sp;
	char ignored[64];

	if (s == NULL)
		return;
	if (s->ok) {
		s->c.reply = ignored;
		s->c.reply_size = sizeof(ignored);
		(void)simple_command(s, "LOGOUT");
	}
	conn_close(&s->c);
	free(s);
	*sp = NULL;
}
