/* SPDX-License-Identifier: MIT */
#ifndef MA_CLIENT_H
#define MA_CLIENT_H

/*
 * A sensor's connection to mailauditd for programs outside Dovecot (the
 * milter): frames go over one SOCK_SEQPACKET connection and stay queued
 * until the daemon's "ack=<n>" covers them; when the daemon is down, slow
 * or the connection breaks, the queued frames are written to a new file
 * in the spool directory (fdatasync, then renamed to *.spool without
 * replacing anything), which the daemon imports.  A frame can thus arrive
 * twice; the daemon de-duplicates by record id.  Thread-safe: one mutex
 * guards everything, and no call blocks except ma_client_flush (bounded)
 * and the spool write.  See docs/PROTOCOL.md.
 */

#include <stddef.h>

/* Called for warnings (rate-limited) and errors (lost records). */
typedef void ma_client_log_fn(int is_error, const char *msg);

struct ma_client;

struct ma_client *ma_client_create(
    const char *socket_path, const char *spool_dir, ma_client_log_fn *log);
/* Flush for up to 100 ms, spool what is left, close. Accepts NULL. */
void ma_client_destroy(struct ma_client **client);

/* Queue one encoded frame and try to send it now. */
void ma_client_send(struct ma_client *client, const char *frame, size_t len);
/*
 * ma_client_pump - read acks, retry sending, and spool frames that have
 * waited too long.  Call it every few hundred milliseconds.
 */
void ma_client_pump(struct ma_client *client);
/* Wait up to wait_ms for every queued frame's ack, then spool the rest. */
void ma_client_flush(struct ma_client *client, unsigned int wait_ms);
/* Frames waiting for an ack right now. */
unsigned int ma_client_pending(struct ma_client *client);

#endif
