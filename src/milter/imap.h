/* SPDX-License-Identifier: MIT */
#ifndef IMAP_H
#define IMAP_H

/*
 * A minimal IMAP client for storing journal reports in batches: one
 * APPEND with many messages (MULTIAPPEND, RFC 3502) saves them all or
 * none in one mailbox transaction, so the mail store pays for opening the
 * mailbox, updating its index and syncing to disk once per batch instead
 * of once per report as with LMTP.  Literals are non-synchronising
 * (LITERAL+, RFC 7888) when the server offers it.  It speaks only what
 * that needs: greeting, AUTHENTICATE PLAIN, CAPABILITY, APPEND, LOGOUT.
 * Debian has no C IMAP library that does MULTIAPPEND.
 */

#include <stddef.h>
#include "lmtp.h" /* enum lmtp_result and struct store_item */

struct imap_session;

/*
 * imap_connect - connect to target (unix:/path or inet:host:port) and
 * authenticate with SASL PLAIN as authc/password, acting for authz (a
 * Dovecot master user logging in as the mailbox; "" to log in as authc
 * itself).  NULL with the reason in reply.
 */
struct imap_session *imap_connect(const char *target, const char *authz,
    const char *authc, const char *password, unsigned int timeout_ms,
    char *reply, size_t reply_size);

/*
 * imap_append - store the n messages of items (bare LF is sent as CRLF)
 * in mailbox with one APPEND.
 * LMTP_DELIVERED: all were saved; LMTP_TEMPFAIL: none, try again later
 * (connection trouble, quota, a busy mailbox...); LMTP_PERMFAIL: the
 * server refused the message itself (only meaningful for n == 1).  After
 * anything but LMTP_DELIVERED with a connection error the session is
 * closed: imap_ok() says whether it is still usable.
 */
enum lmtp_result imap_append(struct imap_session *s, const char *mailbox,
    const struct store_item *items, size_t n, char *reply, size_t reply_size);
/* imap_ok - the session can take another command */
int imap_ok(const struct imap_session *s);
/* imap_multiappend - the server takes several messages in one APPEND */
int imap_multiappend(const struct imap_session *s);

/* LOGOUT (best effort) and free; accepts NULL. */
void imap_close(struct imap_session **s);

#endif
