/* SPDX-License-Identifier: MIT */
#ifndef MAILAUDITD_H
#define MAILAUDITD_H

/*
 * mailauditd's parts: the event loop (mailauditd.c), sensor connections
 * and the spool (ingest.c), the control socket with policy changes
 * (control.c), and the batches with the SQLite writer thread (writer.c).
 *
 * Threads: the event thread owns every connection, receives and decodes
 * frames into the filling batch, sends acks and runs control commands;
 * the writer thread inserts and commits one sealed batch at a time; the
 * sync thread makes committed batches durable (fdatasync of the WAL)
 * while the writer goes on; the store's own thread checkpoints.  The
 * store belongs to the writer while batches are in flight and to the
 * event thread only when all are done (daemon_writer_idle).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ma-conf.h"
#include "ma-store.h"

#define INGEST_RECV_BATCH 32

enum conn_kind {
	CONN_INGEST,
	CONN_CONTROL,
};

struct conn {
	int fd;
	enum conn_kind kind;
	pid_t pid;
	uid_t uid;
	uint64_t received;   /* record frames taken into a batch so far */
	uint64_t acked;      /* last count acknowledged */
	bool in_batch;       /* has records in the filling batch */
	unsigned int sealed; /* sealed batches (in flight) with its records */
	bool closing;
	struct conn *next_dirty;
	struct conn *prev, *next;
};

/* A spool file whose records are in a batch: unlinked once committed. */
struct spooled {
	char *path;
	uint64_t fail_epoch; /* d->fail_epoch when its records were read */
	struct spooled *next;
};

/* What a connection is owed once a sealed batch commits. */
struct batch_ack {
	struct conn *c;
	uint64_t received;
};

struct batch_block; /* string storage, see writer.c */

/*
 * A batch: decoded rows and their strings, filled by the event thread;
 * once sealed, read only by the writer thread until it reports back.
 */
struct batch {
	struct ma_store_row *rows;
	size_t count, cap;
	struct batch_block *blocks, *block; /* all blocks, the one in use */
	size_t bytes;
	int64_t start_ms;
	struct batch_ack *acks;
	size_t ack_count, ack_cap;
	struct spooled *spooled;
	struct batch *next;
	/* Written by the writer and sync threads. */
	bool failed;
	uint64_t stored, duplicates;
	char error[256];
};

struct writer;

struct daemon {
	struct ma_conf conf;
	struct ma_store *store;
	int epfd;
	int ingest_fd, control_fd, signal_fd;
	struct conn *conns;
	struct conn *dead; /* closed, freed by reap() */
	unsigned int conn_count, control_count;
	int64_t accept_resume_ms; /* 0: accepting */

	/* The event thread fills one batch while the writer commits the
	   previous one and the sync thread makes the one before durable. */
	struct batch *filling, *free;
	unsigned int batch_count; /* allocated */
	unsigned int inflight;    /* handed to the writer, not yet done */
	bool writer_busy;         /* the writer has a batch */
	struct conn *dirty;       /* connections with records in filling */
	struct writer *writer;
	int writer_fd;              /* eventfd: the writer finished a batch */
	uint64_t fail_epoch;        /* batches that failed so far */
	unsigned int spool_pending; /* spool files in batches */

	int64_t next_spool_scan_ms;
	int64_t next_purge_ms;
	bool quit;

	/* Counters for status. */
	uint64_t stored_total, duplicates_total, rejected_total;
	uint64_t spool_files_total;

	char *recvbuf;
	/* recvmmsg buffers: INGEST_RECV_BATCH frames of the maximum size */
	char *recvbufs[INGEST_RECV_BATCH];
	struct ma_buf detail; /* scratch for encoding a row's detail */
};

/* writer.c */
void daemon_writer_start(struct daemon *d);
/* daemon_writer_stop - commit what is left, then end the thread. */
void daemon_writer_stop(struct daemon *d);
/*
 * daemon_batch_add - copy rec into the filling batch; from (NULL for
 * spool and admin records) is acknowledged once it commits.  Seals a full
 * batch, waiting for the writer if it is still busy.  -1 if the record
 * cannot be stored (too large): nothing was added.
 */
int daemon_batch_add(
    struct daemon *d, const struct ma_record *rec, struct conn *from);
/*
 * daemon_batch_spooled - every record of the spool file path is added
 * (fail_epoch: d->fail_epoch before the first was read): unlink it once
 * the filling batch commits, unless a batch failed in between.
 */
void daemon_batch_spooled(
    struct daemon *d, const char *path, uint64_t fail_epoch);
/* daemon_batch_has_work - something in the filling batch to commit */
bool daemon_batch_has_work(const struct daemon *d);
/*
 * daemon_batch_submit - hand the filling batch to the writer if it is
 * idle; with wait, first wait for it to finish the batch in flight.
 */
void daemon_batch_submit(struct daemon *d, bool wait);
/* daemon_writer_busy - the writer has a batch: the next one must wait */
bool daemon_writer_busy(const struct daemon *d);
/* daemon_writer_done - the eventfd fired: finish what the writer did. */
void daemon_writer_done(struct daemon *d);
/*
 * daemon_writer_idle - commit everything received so far and wait until
 * it is durable and acknowledged and the writer is idle: then (until the
 * next submit) the event thread may use d->store.  -1 if any of those
 * batches failed.
 */
int daemon_writer_idle(struct daemon *d);
void daemon_conn_close(struct daemon *d, struct conn *c, const char *why);

/* ingest.c */
void ingest_accept(struct daemon *d, int listen_fd, enum conn_kind kind);
void ingest_accept_resume(struct daemon *d);
void ingest_readable(struct daemon *d, struct conn *c);
/* ingest_ack - tell c that its first n records are durable */
void ingest_ack(struct conn *c, uint64_t n);
void spool_scan(struct daemon *d);
/* spool_count - files waiting to be drained, and quarantined ones. */
void spool_count(
    struct daemon *d, unsigned int *pending_r, unsigned int *bad_r);

/* control.c */
void control_readable(struct daemon *d, struct conn *c);
int control_write_snapshot(struct daemon *d);

#endif
