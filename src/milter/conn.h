/* SPDX-License-Identifier: MIT */
#ifndef CONN_H
#define CONN_H

/*
 * A buffered, line-oriented client connection with timeouts, shared by
 * the LMTP and IMAP clients that hand journal reports to the mail store.
 * Every call that fails writes why into the connection's reply buffer
 * (set by the caller per operation), so the caller can log it.
 */

#include <stddef.h>

struct conn {
	int fd;
	char in[4096];
	size_t in_len, in_pos;
	char out[65536];
	size_t out_len;
	char *reply; /* where errors go; set per operation */
	size_t reply_size;
};

/*
 * conn_open - connect c to target ("unix:/path" or "inet:host:port");
 * timeout_ms bounds every later read and write.  -1 with the reason in
 * c->reply.
 */
int conn_open(struct conn *c, const char *target, unsigned int timeout_ms);
void conn_close(struct conn *c);
/* Buffer data (flushing when the buffer fills). */
int conn_put(struct conn *c, const void *data, size_t len);
int conn_puts(struct conn *c, const char *s);
int conn_flush(struct conn *c);
/* conn_read_line - one line into line (cut at size-1), without CRLF */
int conn_read_line(struct conn *c, char *line, size_t size);

#endif
