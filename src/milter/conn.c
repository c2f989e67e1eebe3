/* SPDX-License-Identifier: MIT */
/*
 * conn.c - buffered client connections for lmtp.c and imap.c (conn.h).
 *
 * Timeouts are SO_RCVTIMEO/SO_SNDTIMEO on the socket; lines are read up
 * to the buffer given and cut beyond it, never overflowed.
 */

#include "conn.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static int
fail(struct conn *c, const char *what, const char *arg, int errnum)
{
	snprintf(c->reply, c->reply_size, "%s(%.200s): %s", what, arg,
	    strerror(errnum));
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	return -1;
}

static int
open_unix(struct conn *c, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(c->reply, c->reply_size, "socket path too long");
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path));
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return fail(c, "socket", path, errno);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return fail(c, "connect", path, errno);
	return 0;
}

static int
open_inet(struct conn *c, const char *hostport)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	const char *colon = strrchr(hostport, ':');
	char host[256];
	size_t hlen;
	int gai, ret = 0;

	if (colon == NULL ||
	    (hlen = (size_t)(colon - hostport)) >= sizeof(host)) {
		snprintf(c->reply, c->reply_size, "bad target inet:%.200s",
		    hostport);
		return -1;
	}
	memcpy(host, hostport, hlen);
	host[hlen] = '\0';
	gai = getaddrinfo(host, colon + 1, &hints, &ai);
	if (gai != 0) {
		snprintf(c->reply, c->reply_size, "%.200s: %s", host,
		    gai_strerror(gai));
		return -1;
	}
	c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		ret = fail(c, "socket", hostport, errno);
	else if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0)
		ret = fail(c, "connect", hostport, errno);
	freeaddrinfo(ai);
	return ret;
}

int
conn_open(struct conn *c, const char *target, unsigned int timeout_ms)
{
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

	c->fd = -1;
	c->in_len = c->in_pos = c->out_len = 0;
	if (strncmp(target, "unix:", 5) == 0) {
		if (open_unix(c, target + 5) < 0)
			return -1;
	} else if (strncmp(target, "inet:", 5) == 0) {
		if (open_inet(c, target + 5) < 0)
			return -1;
	} else {
		snprintf(c->reply, c->reply_size, "bad target %.200s", target);
		return -1;
	}
	(void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return 0;
}

void
conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

int
conn_flush(struct conn *c)
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

int
conn_put(struct conn *c, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		size_t n = sizeof(c->out) - c->out_len;

		if (n == 0) {
			if (conn_flush(c) < 0)
				return -1;
			continue;
		}
		if (n > len)
			n = len;
		memcpy(c->out + c->out_len, p, n);
		c->out_len += n;
		p += n;
		len -= n;
	}
	return 0;
}

int
conn_puts(struct conn *c, const char *s)
{
	return conn_put(c, s, strlen(s));
}

int
conn_read_line(struct conn *c, char *line, size_t size)
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
