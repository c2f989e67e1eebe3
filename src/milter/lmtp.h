/* SPDX-License-Identifier: MIT */
#ifndef LMTP_H
#define LMTP_H

/*
 * A minimal LMTP client (RFC 2033) for handing a journal report to the
 * mail store: one connection, one message, one recipient.  No C library in
 * Debian speaks LMTP (libcurl and libESMTP stop at SMTP's EHLO), and the
 * exchange needed here is six commands.
 */

#include <stddef.h>

enum lmtp_result {
	LMTP_DELIVERED = 0,
	LMTP_TEMPFAIL = 1, /* 4xx, connection or timeout: try again later */
	LMTP_PERMFAIL = 2, /* 5xx: retrying will not help */
};

/*
 * lmtp_deliver - send the message in fd (from its current offset to EOF,
 * CRLF line ends; dot-stuffing is done here) to rcpt with a null envelope
 * sender.  target is "unix:/path" or "inet:host:port"; helo the name we
 * give in LHLO; timeout_ms bounds every read and write.  reply gets the
 * server's last reply or the local error.
 */
enum lmtp_result lmtp_deliver(const char *target, const char *helo,
    const char *rcpt, int fd, unsigned int timeout_ms, char *reply,
    size_t reply_size);

#endif
