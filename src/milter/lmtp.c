/* SPDX-License-Identifier: MIT */
/*
 * lmtp.c - journal reports over LMTP (see lmtp.h).
 *
 * A session is the greeting and LHLO, then per message MAIL FROM:<>,
 * RCPT TO, DATA, the message, ".", one reply for the one recipient;
 * QUIT at the end.  Keeping the session saves a connection, a greeting
 * and an LHLO per report.  Every read and write is
 * bounded by a timeout (SO_RCVTIMEO/SO_SNDTIMEO).  Replies are read line
 * by line up to 4 KiB each; longer lines are cut, never overflowed.
 */

#include "lmtp.h"

#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "ma-util.h"

struct lmtp_session {
	int fd;
	bool has_8bit;
	char in[4096];
	size_t in_len, in_pos;
	char out[65536];
	size_t out_len;
	char *reply;
	size_t reply_size;
};

static int
connect_target(
    const char *target, unsigned int timeout_ms, char *err, size_t err_size)
{
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	int fd = -1;

	if (strncmp(target, "unix:", 5) == 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		const char *path = target + 5;

		if (strlen(path) >= sizeof(sa.sun_path)) {
			snprintf(err, err_size, "socket path too long");
			return -1;
		}
		memcpy(sa.sun_path, path, strlen(path));
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 &&
		    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			snprintf(err, err_size, "connect(%.200s): %s", path,
			    strerror(errno));
			close(fd);
			return -1;
		}
	} else if (strncmp(target, "inet:", 5) == 0) {
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
		char host[256];
		const char *colon = strrchr(target + 5, ':');
		size_t hlen;
		int gai;

		if (colon == NULL ||
		    (hlen = (size_t)(colon - (target + 5))) >= sizeof(host)) {
			snprintf(err, err_size, "bad target %.200s", target);
			return -1;
		}
		memcpy(host, target + 5, hlen);
		host[hlen] = '\0';
		gai = getaddrinfo(host, colon + 1, &hints, &ai);
		if (gai != 0) {
			snprintf(err, err_size, "%.200s: %s", host,
			    gai_strerror(gai));
			return -1;
		}
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			snprintf(err, err_size, "connect(%.200s): %s",
			    target + 5, strerror(errno));
			close(fd);
			fd = -1;
			freeaddrinfo(ai);
			return -1;
		}
		freeaddrinfo(ai);
	} else {
		snprintf(err, err_size, "bad target %.200s", target);
		return -1;
	}
	if (fd < 0) {
		snprintf(err, err_size, "socket(): %s", strerror(errno));
		return -1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static int
flush_out(struct lmtp_session *c)
{
	size_t off = 0;

	while (off < c->out_len) {
		ssize_t n =
		    send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(c->reply, c->reply_size, "write: %s",
			    n < 0 ? strerror(errno) : "closed");
			return -1;
		}
		off += (size_t)n;
	}
	c->out_len = 0;
	return 0;
}

static int
put(struct lmtp_session *c, const char *data, size_t len)
{
	while (len > 0) {
		size_t n = sizeof(c->out) - c->out_len;

		if (n == 0) {
			if (flush_out(c) < 0)
				return -1;
			continue;
		}
		if (n > len)
			n = len;
		memcpy(c->out + c->out_len, data, n);
		c->out_len += n;
		data += n;
		len -= n;
	}
	return 0;
}

static int
command(struct lmtp_session *c, const char *line)
{
	return put(c, line, strlen(line)) < 0 || put(c, "\r\n", 2) < 0 ||
		       flush_out(c) < 0
		   ? -1
		   : 0;
}

/* read_line - one reply line into line (cut at size-1), without CRLF */
static int
read_line(struct lmtp_session *c, char *line, size_t size)
{
	size_t len = 0;

	for (;;) {
		char ch;

		if (c->in_pos == c->in_len) {
			ssize_t n = recv(c->fd, c->in, sizeof(c->in), 0);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				snprintf(c->reply, c->reply_size, "read: %s",
				    n < 0 ? strerror(errno)
					  : "connection closed");
				return -1;
			}
			c->in_len = (size_t)n;
			c->in_pos = 0;
		}
		ch = c->in[c->in_pos++];
		if (ch == '\n')
			break;
		if (ch != '\r' && len < size - 1)
			line[len++] = ch;
	}
	line[len] = '\0';
	return 0;
}

/*
 * read_reply - a (multi-line) reply; returns its code or -1.  *has_8bit
 * is set when a 250 reply lists 8BITMIME (for LHLO).
 */
static int
read_reply(struct lmtp_session *c, bool *has_8bit)
{
	char line[4096];

	for (;;) {
		if (read_line(c, line, sizeof(line)) < 0)
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

/* send_body - the message, dot-stuffed, then the terminating dot */
static int
send_body(struct lmtp_session *c, int fd)
{
	char buf[65536];
	bool at_line_start = true, last_cr = false;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(c->reply, c->reply_size, "reading report: %s",
			    strerror(errno));
			return -1;
		}
		for (ssize_t i = 0; i < n; i++) {
			/* Bare LF becomes CRLF: LMTP requires CRLF. */
			if (buf[i] == '\n' && !last_cr && put(c, "\r", 1) < 0)
				return -1;
			if (at_line_start && buf[i] == '.' &&
			    put(c, ".", 1) < 0)
				return -1;
			if (put(c, &buf[i], 1) < 0)
				return -1;
			at_line_start = buf[i] == '\n';
			last_cr = buf[i] == '\r';
		}
	}
	if (!at_line_start && put(c, "\r\n", 2) < 0)
		return -1;
	return put(c, ".\r\n", 3) < 0 || flush_out(c) < 0 ? -1 : 0;
}

struct lmtp_session *
lmtp_connect(const char *target, const char *helo, unsigned int timeout_ms,
    char *reply, size_t reply_size)
{
	struct lmtp_session *c = ma_xcalloc(1, sizeof(*c));
	char line[1024];

	c->reply = reply;
	c->reply_size = reply_size;
	reply[0] = '\0';
	c->fd = connect_target(target, timeout_ms, reply, reply_size);
	if (c->fd < 0)
		goto fail;
	if (read_reply(c, NULL) != 220)
		goto fail;
	snprintf(line, sizeof(line), "LHLO %.200s", helo);
	if (command(c, line) < 0 || read_reply(c, &c->has_8bit) != 250)
		goto fail;
	return c;
fail:
	if (c->fd >= 0)
		close(c->fd);
	free(c);
	return NULL;
}

enum lmtp_result
lmtp_send(struct lmtp_session *c, const char *rcpt, int fd, char *reply,
    size_t reply_size)
{
	char line[1024];
	int code = -1;

	c->reply = reply;
	c->reply_size = reply_size;
	reply[0] = '\0';
	if (command(c, c->has_8bit ? "MAIL FROM:<> BODY=8BITMIME"
				   : "MAIL FROM:<>") < 0 ||
	    (code = read_reply(c, NULL)) != 250)
		goto fail;
	snprintf(line, sizeof(line), "RCPT TO:<%.400s>", rcpt);
	if (command(c, line) < 0 || (code = read_reply(c, NULL)) / 100 != 2)
		goto fail;
	if (command(c, "DATA") < 0 || (code = read_reply(c, NULL)) != 354)
		goto fail;
	if (send_body(c, fd) < 0)
		return LMTP_TEMPFAIL;
	return verdict(read_reply(c, NULL));
fail:
	/* An unexpected 2xx/3xx where a step failed is not a delivery. */
	return code >= 500 ? LMTP_PERMFAIL : LMTP_TEMPFAIL;
}

void
lmtp_close(struct lmtp_session **sp)
{
	struct lmtp_session *c = *sp;
	char ignored[64];

	if (c == NULL)
		return;
	c->reply = ignored;
	c->reply_size = sizeof(ignored);
	(void)command(c, "QUIT");
	close(c->fd);
	free(c);
	*sp = NULL;
}
