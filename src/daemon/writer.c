/* SPDX-License-Identifier: MIT */
/*
 * writer.c - batches, the SQLite writer thread and the sync thread.
 *
 * The event thread receives and decodes frames and copies each record
 * into the filling batch: its strings into the batch's blocks, its items
 * and properties already encoded as the store keeps them.  A batch is
 * sealed when the writer is free and the batch is batch_min_delay_ms
 * old, or when it is full (batch_max_records, BATCH_MAX_BYTES); sealing
 * notes for each connection how many of its records the batch completes.
 * The writer thread inserts the sealed batch in one transaction and
 * commits it without waiting for the disk; the sync thread then makes
 * every batch committed so far durable with one fdatasync of the WAL
 * (ma_store_sync) while the writer goes on with the next batch.  Then
 * the eventfd wakes the event thread, which sends the acks and unlinks
 * the batch's spool files.  So one batch fills while one is written and
 * others wait for their sync (at most BATCHES_MAX in all).  A full batch
 * with the writer still busy makes the event thread wait: that is the
 * back pressure that fills the sensors' sockets.
 *
 * The writer takes one batch at a time, and batches are finished in the
 * order they were filled, so sequence numbers stay in arrival order and
 * an ack (cumulative) never covers a record of a later batch.  If a
 * batch fails (insert, commit or sync), every connection with records in
 * it is closed (its sensor spools what is unacknowledged), and spool
 * files read since are kept for a retry.
 *
 * The writer thread touches the store only while it holds a batch, the
 * sync thread only its WAL descriptor, and the event thread the store
 * only when no batch is in flight (daemon_writer_idle), which is how
 * control commands, retention and status reach it.  One mutex orders
 * every hand-over.
 */

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "daemon.h"
#include "ma-log.h"
#include "ma-proto.h"

#define BLOCK_SIZE      (256 * 1024)
#define BATCH_MAX_BYTES (6 * 1024 * 1024)
#define DETAIL_MAX      (4 * 1024 * 1024)

struct batch_block {
	struct batch_block *next;
	size_t size, used;
	char data[];
};

/* Filling plus in flight (with the writer or waiting for a sync). */
#define BATCHES_MAX 4

struct writer {
	pthread_t thread, syncer;
	pthread_mutex_t lock;
	pthread_cond_t wake;      /* writer: todo or stop */
	pthread_cond_t sync_wake; /* sync thread: unsynced or stop */
	struct ma_store *store;
	bool sync; /* sync_full: ma_store_sync before a batch is done */
	int fd;    /* eventfd to the event thread */
	struct batch *todo;     /* sealed, for the writer */
	bool writing;           /* the writer holds a batch */
	struct batch *unsynced; /* committed, waiting for the sync */
	struct batch *done;     /* finished, for the event thread */
	bool stop;
};

/* Batches. */

/* batch_alloc - size bytes in b's blocks, which are reused batch to batch */
static char *
batch_alloc(struct batch *b, size_t size)
{
	struct batch_block *k = b->block;
	char *p;

	if (k == NULL || k->size - k->used < size) {
		struct batch_block *next = k != NULL ? k->next : b->blocks;

		if (next == NULL || next->size < size) {
			size_t bsize = size > BLOCK_SIZE ? size : BLOCK_SIZE;

			next = ma_xmalloc(sizeof(*next) + bsize);
			next->size = bsize;
			next->used = 0;
			if (k != NULL) {
				next->next = k->next;
				k->next = next;
			} else {
				next->next = b->blocks;
				b->blocks = next;
			}
		}
		k = b->block = next;
	}
	p = k->data + k->used;
	k->used += size;
	b->bytes += size;
	return p;
}

static const char *
batch_keep(struct batch *b, const char *s)
{
	size_t len;
	char *p;

	if (s == NULL)
		return NULL;
	len = strlen(s) + 1;
	p = batch_alloc(b, len);
	memcpy(p, s, len);
	return p;
}

static void
batch_reset(struct batch *b)
{
	struct batch_block *k, *next, **pp = &b->blocks;
	size_t kept = 0;

	/* Keep the blocks a typical batch needs; give back the rest (a spool
	   drain or huge records can leave many). */
	while ((k = *pp) != NULL) {
		if (kept + k->size <= BATCH_MAX_BYTES &&
		    k->size == BLOCK_SIZE) {
			k->used = 0;
			kept += k->size;
			pp = &k->next;
			continue;
		}
		next = k->next;
		free(k);
		*pp = next;
	}
	b->block = NULL;
	b->count = 0;
	b->bytes = 0;
	b->ack_count = 0;
	b->spooled = NULL;
	b->failed = false;
	b->stored = b->duplicates = 0;
	b->error[0] = '\0';
}

static void
batch_free(struct batch *b)
{
	struct batch_block *k, *next;

	for (k = b->blocks; k != NULL; k = next) {
		next = k->next;
		free(k);
	}
	free(b->rows);
	free(b->acks);
	memset(b, 0, sizeof(*b));
}

bool
daemon_batch_has_work(const struct daemon *d)
{
	return d->filling->count > 0 || d->filling->spooled != NULL;
}

/* batch_touch - the filling batch gets its first content now */
static void
batch_touch(struct daemon *d)
{
	if (!daemon_batch_has_work(d))
		d->filling->start_ms = ma_now_ms();
}

int
daemon_batch_add(
    struct daemon *d, const struct ma_record *rec, struct conn *from)
{
	struct batch *b = d->filling;
	struct ma_store_row *row;

	ma_buf_reset(&d->detail);
	if (ma_proto_encode_detail(rec, &d->detail) < 0)
		return -1;
	batch_touch(d);
	if (b->count == b->cap) {
		b->cap = b->cap == 0 ? 1024 : b->cap * 2;
		b->rows = ma_xrealloc(b->rows, b->cap, sizeof(*b->rows));
	}
	row = &b->rows[b->count++];
	memcpy(row->id, rec->id, sizeof(row->id));
	row->time_ms = rec->time_ms;
	row->operation = batch_keep(b, rec->operation);
	row->user = batch_keep(b, rec->user);
	row->mailbox = batch_keep(b, rec->mailbox);
	row->folder = batch_keep(b, rec->folder);
	row->dest_folder = batch_keep(b, rec->dest_folder);
	row->dest_mailbox = batch_keep(b, rec->dest_mailbox);
	row->session = batch_keep(b, rec->session);
	row->client_ip = batch_keep(b, rec->client_ip);
	row->client_info = batch_keep(b, rec->client_info);
	row->protocol = batch_keep(b, rec->protocol);
	row->server = batch_keep(b, rec->server);
	row->result = rec->result;
	row->logon_type = rec->logon_type;
	row->count = rec->count;
	row->item_count = rec->item_count;
	row->detail = NULL;
	row->detail_len = d->detail.len;
	if (d->detail.len > 0) {
		char *p = batch_alloc(b, d->detail.len);

		memcpy(p, d->detail.data, d->detail.len);
		row->detail = p;
	}
	b->bytes += sizeof(*row);
	if (from != NULL) {
		from->received++;
		if (!from->in_batch) {
			from->in_batch = true;
			from->next_dirty = d->dirty;
			d->dirty = from;
		}
	}
	if (b->count >= d->conf.batch_max_records ||
	    b->bytes >= BATCH_MAX_BYTES)
		daemon_batch_submit(d, true);
	return 0;
}

/* daemon_batch_spooled - path's records are all added: unlink on commit */
void
daemon_batch_spooled(struct daemon *d, const char *path, uint64_t fail_epoch)
{
	struct spooled *sp = ma_xcalloc(1, sizeof(*sp));

	batch_touch(d);
	sp->path = ma_xstrdup(path);
	sp->fail_epoch = fail_epoch;
	sp->next = d->filling->spooled;
	d->filling->spooled = sp;
	d->spool_pending++;
}

/* seal - note what each connection with records in b is owed */
static void
seal(struct daemon *d, struct batch *b)
{
	struct conn *c, *next;

	for (c = d->dirty; c != NULL; c = next) {
		next = c->next_dirty;
		c->next_dirty = NULL;
		c->in_batch = false;
		if (c->closing)
			continue; /* no ack to send: reap() may free it */
		if (b->ack_count == b->ack_cap) {
			b->ack_cap = b->ack_cap == 0 ? 64 : b->ack_cap * 2;
			b->acks =
			    ma_xrealloc(b->acks, b->ack_cap, sizeof(*b->acks));
		}
		b->acks[b->ack_count].c = c;
		b->acks[b->ack_count].received = c->received;
		b->ack_count++;
		c->sealed++;
	}
	d->dirty = NULL;
}

/* finish - the writer is done with b: acks, spool files, counters */
static void
finish(struct daemon *d, struct batch *b)
{
	struct spooled *sp, *next;

	if (b->failed) {
		ma_log_warnx("%s (batch of %zu records rolled back; sensors "
			     "resend)",
		    b->error, b->count);
		d->fail_epoch++;
	} else {
		d->stored_total += b->stored;
		d->duplicates_total += b->duplicates;
	}
	for (size_t i = 0; i < b->ack_count; i++) {
		struct conn *c = b->acks[i].c;

		c->sealed--;
		if (c->closing)
			continue;
		/* Sensors still hold failed records unacknowledged; closing
		   their connections makes them spool the records for a later
		   retry, and no later ack can cover the lost ones. */
		if (b->failed)
			daemon_conn_close(
			    d, c, "store failure, records not committed");
		else
			ingest_ack(c, b->acks[i].received);
	}
	for (sp = b->spooled; sp != NULL; sp = next) {
		next = sp->next;
		/* A failure since the file was read may have lost some of its
		   records (they can span batches): keep it, read it again. */
		if (!b->failed && sp->fail_epoch == d->fail_epoch &&
		    unlink(sp->path) < 0)
			ma_log_warn("spool: unlink %s (its records are stored; "
				    "they will be de-duplicated)",
			    sp->path);
		free(sp->path);
		free(sp);
		d->spool_pending--;
	}
	batch_reset(b);
}

/* The writer and sync threads. */

static void
writer_commit(struct ma_store *store, struct batch *b)
{
	struct ma_error err = {0};
	size_t stored;

	if (b->count == 0)
		return; /* spool files without records */
	if (ma_store_begin(store, &err) < 0)
		goto fail;
	if (ma_store_insert_rows(
		store, b->rows, b->count, ma_now_ms(), &stored, &err) < 0)
		goto rollback;
	b->stored = stored;
	b->duplicates = b->count - stored;
	if (ma_store_commit(store, &err) == 0)
		return;
rollback:
	ma_store_rollback(store);
fail:
	b->failed = true;
	snprintf(b->error, sizeof(b->error), "%s", err.msg);
}

static void
wake_event_thread(struct writer *w)
{
	const uint64_t one = 1;

	while (write(w->fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* append - b (and what follows it) to the end of a list */
static void
append(struct batch **head, struct batch *b)
{
	while (*head != NULL)
		head = &(*head)->next;
	*head = b;
}

static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	struct batch *b;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->todo == NULL && !w->stop)
			pthread_cond_wait(&w->wake, &w->lock);
		if (w->todo == NULL)
			break;
		b = w->todo;
		w->todo = NULL;
		w->writing = true;
		pthread_mutex_unlock(&w->lock);
		writer_commit(w->store, b);
		pthread_mutex_lock(&w->lock);
		w->writing = false;
		b->next = NULL;
		append(&w->unsynced, b);
		pthread_cond_signal(&w->sync_wake);
		pthread_mutex_unlock(&w->lock);
		/* The event thread may hand over the next batch now. */
		wake_event_thread(w);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/*
 * sync_main - make committed batches durable, all that are waiting with
 * one fdatasync, while the writer writes the next one; then they are
 * done.  Without sync_full they are done at once.
 */
static void *
sync_main(void *arg)
{
	struct writer *w = arg;
	struct batch *list, *b;
	struct ma_error err = {0};
	bool need;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->unsynced == NULL && !w->stop)
			pthread_cond_wait(&w->sync_wake, &w->lock);
		if (w->unsynced == NULL)
			break;
		list = w->unsynced;
		w->unsynced = NULL;
		pthread_mutex_unlock(&w->lock);
		need = false;
		for (b = list; b != NULL; b = b->next)
			need = need || (!b->failed && b->count > 0);
		if (w->sync && need && ma_store_sync(w->store, &err) < 0) {
			for (b = list; b != NULL; b = b->next) {
				if (b->failed || b->count == 0)
					continue;
				b->failed = true;
				snprintf(
				    b->error, sizeof(b->error), "%s", err.msg);
			}
		}
		pthread_mutex_lock(&w->lock);
		append(&w->done, list);
		pthread_mutex_unlock(&w->lock);
		wake_event_thread(w);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static pthread_t
start_thread(void *(*fn)(void *), void *arg, const char *what)
{
	sigset_t all, old;
	pthread_t t;
	int rc;

	/* Signals are the event thread's (signalfd): none for these. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		ma_fatalx("cannot start the %s thread", what);
	return t;
}

void
daemon_writer_start(struct daemon *d)
{
	struct writer *w = ma_xcalloc(1, sizeof(*w));

	d->filling = ma_xcalloc(1, sizeof(*d->filling));
	d->free = NULL;
	d->batch_count = 1;
	d->inflight = 0;
	d->writer_busy = false;
	ma_buf_init(&d->detail, DETAIL_MAX);
	d->writer_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->writer_fd < 0)
		ma_fatal("eventfd");
	w->fd = d->writer_fd;
	w->store = d->store;
	w->sync = d->conf.sync_full;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	pthread_cond_init(&w->sync_wake, NULL);
	w->thread = start_thread(writer_main, w, "writer");
	w->syncer = start_thread(sync_main, w, "sync");
	d->writer = w;
}

void
daemon_writer_done(struct daemon *d)
{
	struct writer *w = d->writer;
	struct batch *list, *b;
	uint64_t n;

	if (read(d->writer_fd, &n, sizeof(n)) < 0 && errno != EAGAIN &&
	    errno != EINTR)
		ma_log_warn("writer eventfd");
	pthread_mutex_lock(&w->lock);
	d->writer_busy = w->todo != NULL || w->writing;
	list = w->done;
	w->done = NULL;
	pthread_mutex_unlock(&w->lock);
	/* In the order they were filled: acks are cumulative. */
	while ((b = list) != NULL) {
		list = b->next;
		MA_ASSERT(d->inflight > 0);
		d->inflight--;
		finish(d, b);
		b->next = d->free;
		d->free = b;
	}
}

/* writer_wait - block until the writer or the sync thread reports */
static void
writer_wait(struct daemon *d)
{
	struct pollfd pfd = {.fd = d->writer_fd, .events = POLLIN};

	if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
		ma_fatal("poll");
	daemon_writer_done(d);
}

void
daemon_batch_submit(struct daemon *d, bool wait)
{
	struct writer *w = d->writer;
	struct batch *b;

	if (!daemon_batch_has_work(d))
		return;
	/* The writer takes one batch at a time; batches it committed wait
	   for their sync in the meantime, up to BATCHES_MAX in all. */
	while (d->writer_busy ||
	       (d->free == NULL && d->batch_count == BATCHES_MAX)) {
		if (!wait)
			return;
		writer_wait(d);
	}
	b = d->filling;
	seal(d, b);
	if (d->free != NULL) {
		d->filling = d->free;
		d->free = d->free->next;
	} else {
		d->filling = ma_xcalloc(1, sizeof(*d->filling));
		d->batch_count++;
	}
	d->filling->next = NULL;
	d->inflight++;
	d->writer_busy = true;
	pthread_mutex_lock(&w->lock);
	w->todo = b;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
}

bool
daemon_writer_busy(const struct daemon *d)
{
	return d->writer_busy;
}

int
daemon_writer_idle(struct daemon *d)
{
	uint64_t epoch = d->fail_epoch;

	if (d->writer == NULL)
		return 0; /* not started yet: the store is ours */
	daemon_batch_submit(d, true);
	while (d->inflight > 0)
		writer_wait(d);
	return d->fail_epoch == epoch ? 0 : -1;
}

void
daemon_writer_stop(struct daemon *d)
{
	struct writer *w = d->writer;
	struct batch *b;

	if (w == NULL)
		return;
	daemon_writer_idle(d);
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->wake);
	pthread_cond_signal(&w->sync_wake);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_join(w->syncer, NULL);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->wake);
	pthread_cond_destroy(&w->sync_wake);
	free(w);
	d->writer = NULL;
	close(d->writer_fd);
	d->writer_fd = -1;
	batch_free(d->filling);
	free(d->filling);
	while ((b = d->free) != NULL) {
		d->free = b->next;
		batch_free(b);
		free(b);
	}
	d->filling = NULL;
	ma_buf_deinit(&d->detail);
}
