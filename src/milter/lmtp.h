/* SPDX-License-Identifier: MIT */
#ifndef LMTP_H
#define LMTP_H

/*
 * A minimal LMTP client (RFC 2033) for handing journal reports to the
 * mail store: one session carries many transactions, each one message to
 * one recipient.  No C library in Debian speaks LMTP (libcurl and
 * libESMTP stop at SMTP's EHLO), and the exchange needed here is a
 * handful of commands.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum lmtp_result {
	LMTP_DELIVERED = 0,
	LMTP_TEMPFAIL = 1, /* 4xx, connection or timeout: try again later */
	LMTP_PERMFAIL = 2, /* 5xx: retrying will not help */
};

struct lmtp_session;

/* A journal item's bytes: len bytes of fd from off (read with pread). */
struct store_item {
	int fd;
	uint64_t off, len;
};

/*
 * store_item_read - the item's next chunk from *pos (start at item->off)
 * into buf: its length, 0 at the item's end, -1 on a read error or a file
 * shorter than the item (errno set).
 */
ssize_t store_item_read(
    const struct store_item *item, uint64_t *pos, char *buf, size_t size);

/*
 * lmtp_connect - connect to target ("unix:/path" or "inet:host:port"),
 * read the greeting, LHLO helo.  timeout_ms bounds every read and write
 * of the session.  NULL on failure, with the reason in reply.
 */
struct lmtp_session *lmtp_connect(const char *target, const char *helo,
    unsigned int timeout_ms, char *reply, size_t reply_size);

/*
 * lmtp_send - one transaction: the message of item (CRLF line ends;
 * dot-stuffing is done here) to rcpt with a null envelope sender.  reply gets
 * the server's last reply or the local error.  After anything but
 * LMTP_DELIVERED the session may be unusable: close it.
 */
enum lmtp_result lmtp_send(struct lmtp_session *s, const char *rcpt,
    const struct store_item *item, char *reply, size_t reply_size);

/* QUIT (best effort) and free; accepts NULL. */
void lmtp_close(struct lmtp_session **s);

#endif
