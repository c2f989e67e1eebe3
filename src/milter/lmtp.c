/* SPDX-License-Identifier: MIT */
/*
 * lmtp.c - journal reports over LMTP (see lmtp.h).
 *
 * A session is the greeting and LHLO, then per message MAIL FROM:<>,
 * RCPT TO, DATA, the message, ".", one reply for the one recipient;
 * QUIT at the end.  Keeping the session saves a connection, a greeting
 * and an LHLO per report.  Reads and writes go through conn.c (timeouts,
 * lines cut at 4 KiB, never overflowed).
 */

#include "lmtp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conn.h"
#include "ma-util.h"

struct lmtp_session {
	struct conn c;
	bool has_8bit;
};

static int
command(struct conn *c, const char *line)
{
	return conn_puts(c, line) < 0 || conn_put(c, "\r\n", 2) < 0 ||
		       conn_flush(c) < 0
		   ? -1
		   : 0;
}

/*
 * read_reply - a (multi-line) reply; returns its code or -1.  *has_8bit
 * is set when a 250 reply lists 8BITMIME (for LHLO).
 */
static int
read_reply(struct conn *c, bool *has_8bit)
{
	char line[4096];

	for (;;) {
		if (conn_read_line(c, line, sizeof(line)) < 0)
			return -1;
		if (strlen(line) < 3 || line[0] < '1' || line[0] > '5') {
			snprintf(c->reply, c->reply_size,
			    "malformed reply: %.200s", line);
			return -1;
		}
		if (has_8bit != NULL &&
		    strncasecmp(line + 4, "8BITMIME", 8) == 0)
			*has_8bit = true;
		if (line[3] != '-') {
			ma_sanitize(
			    line, strlen(line), c->reply, c->reply_size);
			return (line[0] - '0') * 100 + (line[1] - '0') * 10 +
			       (line[2] - '0');
		}
	}
}

static enum lmtp_result
verdict(int code)
{
	if (code < 0 || (code >= 400 && code < 500))
		return LMTP_TEMPFAIL;
	return code >= 500 ? LMTP_PERMFAIL : LMTP_DELIVERED;
}

ssize_t
store_item_read(
    const struct store_item *item, uint64_t *pos, char *buf, size_t size)
{
	uint64_t end = item->off + item->len;

	for (;;) {
		size_t want = end - *pos < size ? (size_t)(end - *pos) : size;
		ssize_t n;

		if (want == 0)
			return 0;
		n = pread(item->fd, buf, want, (off_t)*pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = EIO; /* the file is shorter than the item */
		if (n <= 0)
			return -1;
		*pos += (uint64_t)n;
		return n;
	}
}

/* send_body - the message, dot-stuffed, then the terminating dot */
static int
send_body(struct conn *c, const struct store_item *item)
{
	char buf[65536];
	bool at_line_start = true, last_cr = false;
	uint64_t pos = item->off;
	ssize_t n;

	while ((n = store_item_read(item, &pos, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			/* Bare LF becomes CRLF: LMTP requires CRLF. */
			if (buf[i] == '\n' && !last_cr &&
			    conn_put(c, "\r", 1) < 0)
				return -1;
			if (at_line_start && buf[i] == '.' &&
			    conn_put(c, ".", 1) < 0)
				return -1;
			if (conn_put(c, &buf[i], 1) < 0)
				return -1;
			at_line_start = buf[i] == '\n';
			last_cr = buf[i] == '\r';
		}
	}
	if (n < 0) {
		snprintf(c->reply, c->reply_size, "reading item: %s",
		    strerror(errno));
		return -1;
	}
	if (!at_line_start && conn_put(c, "\r\n", 2) < 0)
		return -1;
	return conn_put(c, ".\r\n", 3) < 0 || conn_flush(c) < 0 ? -1 : 0;
}

struct lmtp_session *
lmtp_connect(const char *target, const char *helo, unsigned int timeout_ms,
    char *reply, size_t reply_size)
{
	struct lmtp_session *s = ma_xcalloc(1, sizeof(*s));
	struct conn *c = &s->c;
	char line[1024];

	c->reply = reply;
	c->reply_size = reply_size;
	reply[0] = '\0';
	if (conn_open(c, target, timeout_ms) < 0)
		goto fail;
	if (read_reply(c, NULL) != 220)
		goto fail;
	snprintf(line, sizeof(line), "LHLO %.200s", helo);
	if (command(c, line) < 0 || read_reply(c, &s->has_8bit) != 250)
		goto fail;
	return s;
fail:
	conn_close(c);
	free(s);
	return NULL;
}

enum lmtp_result
lmtp_send(struct lmtp_session *s, const char *rcpt,
    const struct store_item *item, char *reply, size_t reply_size)
{
	struct conn *c = &s->c;
	char line[1024];
	int code = -1;

	c->reply = reply;
	c->reply_size = reply_size;
	reply[0] = '\0';
	if (command(c, s->has_8bit ? "MAIL FROM:<> BODY=8BITMIME"
				   : "MAIL FROM:<>") < 0 ||
	    (code = read_reply(c, NULL)) != 250)
		goto fail;
	snprintf(line, sizeof(line), "RCPT TO:<%.400s>", rcpt);
	if (command(c, line) < 0 || (code = read_reply(c, NULL)) / 100 != 2)
		goto fail;
	if (command(c, "DATA") < 0 || (code = read_reply(c, NULL)) != 354)
		goto fail;
	if (send_body(c, item) < 0)
		return LMTP_TEMPFAIL;
	return verdict(read_reply(c, NULL));
fail:
	/* An unexpected 2xx/3xx where a step failed is not a delivery. */
	return code >= 500 ? LMTP_PERMFAIL : LMTP_TEMPFAIL;
}

void
lmtp_close(struct lmtp_session **sp)
{
	struct lmtp_session *s = *sp;
	char ignored[64];

	if (s == NULL)
		return;
	s->c.reply = ignored;
	s->c.reply_size = sizeof(ignored);
	(void)command(&s->c, "QUIT");
	conn_close(&s->c);
	free(s);
	*sp = NULL;
}
