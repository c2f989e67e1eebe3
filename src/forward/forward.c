/* SPDX-License-Identifier: MIT */
/*
 * mailaudit-forward - deliver audit records to SIEMs (docs/FORWARDING.md).
 *
 * The store is the queue: each destination has a cursor, the highest
 * sequence number its receiver has acknowledged, and two threads.  The
 * reader reads the records after the last batch it read (a range scan of
 * the rowid, read-only connection of its own, beside mailauditd's writes
 * in WAL mode) and, for a transport that can, renders them; up to
 * QUEUE_SLOTS - 1 such batches wait for the sender, which hands each to
 * its transport and moves the cursor over the prefix the transport
 * reports as taken.  So reading and rendering the next batch overlap
 * sending and acknowledging this one.  When a batch is not taken whole,
 * the sender drops what was read ahead and the reader starts again after
 * the cursor: batches reach the receiver in order, none is skipped.  The cursor
 * is persisted in forward_state_dir/NAME.state (tmp + fdatasync + rename) at
 * most every forward_state_interval_ms and at exit, so a restart of either side
 * resends at most one interval of records: at least once, in order.
 *
 * A destination that fails (cannot connect, bad certificate, refused
 * batch) backs off, 1 s doubling to forward_backoff_max_ms with jitter,
 * or at least the receiver's Retry-After, and only it waits: the others
 * go on.  Records refused for good are written to NAME.rejected (JSON
 * lines) before the cursor passes them.
 *
 * Workload assumed: a handful of destinations, a store written at up to
 * a few thousand records a second, polled every forward_poll_ms.  Left
 * out: reloading the configuration (restart instead), per-record
 * filtering, more than one connection per destination.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ma-conf.h"
#include "ma-config.h"
#include "ma-export.h"
#include "ma-log.h"
#include "ma-store.h"
#include "transport.h"

/* How long a stop waits for a destination in the middle of a batch. */
#define STOP_WAIT_MS   5000
#define BACKOFF_MIN_MS 1000
/* Batches per destination: one being sent, the rest read ahead. */
#define QUEUE_SLOTS 3

static const struct fwd_transport *const transports[] = {
    &fwd_transport_syslog,
    &fwd_transport_syslog_tls,
    &fwd_transport_relp,
    &fwd_transport_hec,
    &fwd_transport_elastic,
};

struct fwd {
	struct ma_conf conf;
	struct fwd_dest_conf *dests_conf;
	size_t count;
	struct dest *dests;
	struct ma_siem_ctx siem;
	char hostname[256];
	atomic_bool quit;
	pthread_mutex_t lock; /* for cond */
	pthread_cond_t cond;  /* broadcast on quit */
	int pid_fd;
	char *pid_path;
};

/* A batch of records after a cursor, read (and rendered) ahead. */
struct batch {
	struct ma_record *recs;
	const struct ma_record **ptrs;
	size_t n;
	bool failed; /* the store could not be read: err */
	struct ma_error err;
	struct fwd_rendered out;
};

struct dest {
	struct fwd *fwd;
	const struct fwd_dest_conf *conf;
	const struct fwd_transport *tr;
	pthread_t thread;
	bool started;
	atomic_bool done;

	/* st is written by the thread and, at a stop that timed out, by the
	   main thread: both under lock. */
	pthread_mutex_t lock;
	struct ma_fwd_state st;
	bool dirty;
	int64_t next_write_ms;

	/*
	 * The queue between the reader and the sender, under qlock:
	 * slots[q_head] .. q_len of them are ready (the first is the one
	 * being sent); the reader fills the slot after them.  A reset (the
	 * sender after a batch not taken whole) empties the queue, moves
	 * read_cursor back to the cursor and bumps gen, so a batch the
	 * reader was filling meanwhile is dropped.
	 */
	pthread_t reader;
	bool reader_started;
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	struct batch slots[QUEUE_SLOTS];
	size_t q_head, q_len;
	uint64_t gen;
	int64_t read_cursor;

	struct ma_store *store; /* the reader's */
	void *conn;             /* the sender's, from here on */
	int64_t backoff_ms;
	unsigned int seed;
	char logged[256]; /* the last error logged, so an outage logs once */
	bool connected_once;

	/* dead letters of the batch in flight */
	int rejected_fd;
	int64_t reject_failed_seq;
	int64_t *rejected_seqs;
	size_t rejected_count, rejected_cap;
};

static const struct fwd_transport *
transport_lookup(const char *type)
{
	for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]);
	     i++) {
		if (strcmp(transports[i]->type, type) == 0)
			return transports[i];
	}
	return NULL;
}

/* Waiting. */

/* fwd_sleep - wait ms, or less when told to quit; false once quitting */
static bool
fwd_sleep(struct fwd *f, int64_t ms)
{
	struct timespec ts;

	ma_deadline(CLOCK_MONOTONIC, ms, &ts);
	pthread_mutex_lock(&f->lock);
	while (!atomic_load(&f->quit) &&
	       pthread_cond_timedwait(&f->cond, &f->lock, &ts) == 0)
		;
	pthread_mutex_unlock(&f->lock);
	return !atomic_load(&f->quit);
}

/* State. */

static void
state_write_locked(struct dest *d, bool log_failure)
{
	struct ma_error err = {0};

	d->st.updated_ms = ma_now_ms();
	d->st.pid = (long)getpid();
	if (ma_fwd_state_write(d->fwd->conf.forward_state_dir, d->conf->name,
		&d->st, &err) < 0) {
		/* Delivery goes on; only the restart point ages. */
		if (log_failure)
			ma_log_warnx("%s: cannot save the cursor (%lld): %s",
			    d->conf->name, (long long)d->st.cursor, err.msg);
		return;
	}
	d->dirty = false;
}

/* state_flush - write the state if it changed and is due (or forced) */
static void
state_flush(struct dest *d, bool force)
{
	int64_t now = ma_now_ms();

	pthread_mutex_lock(&d->lock);
	if (d->dirty && (force || now >= d->next_write_ms)) {
		state_write_locked(d, true);
		d->next_write_ms =
		    now + (int64_t)d->fwd->conf.forward_state_interval_ms;
	}
	pthread_mutex_unlock(&d->lock);
}

/* dest_error - note an error in the state; logged when it is new */
static void
dest_error(struct dest *d, const char *what, const char *msg, int64_t wait_ms)
{
	char line[256];

	snprintf(line, sizeof(line), "%s%s%s", what,
	    what[0] != '\0' ? ": " : "", msg);
	pthread_mutex_lock(&d->lock);
	ma_sanitize(
	    line, strlen(line), d->st.last_error, sizeof(d->st.last_error));
	d->st.last_error_ms = ma_now_ms();
	d->dirty = true;
	pthread_mutex_unlock(&d->lock);
	if (strcmp(d->logged, d->st.last_error) != 0) {
		ma_log_warnx("destination %s (%s %s): %s; retrying in %lld ms "
			     "(and with back-off while it lasts)",
		    d->conf->name, d->conf->type, d->conf->target,
		    d->st.last_error, (long long)wait_ms);
		memcpy(d->logged, d->st.last_error, sizeof(d->logged));
	}
}

/* backoff - the next wait: 1 s doubling to the maximum, +-20 % jitter */
static int64_t
backoff_next(struct dest *d, int64_t retry_after_ms)
{
	int64_t max = (int64_t)d->fwd->conf.forward_backoff_max_ms;
	int64_t base = d->backoff_ms, wait;

	d->backoff_ms = base * 2 > max ? max : base * 2;
	wait =
	    base - base / 5 + (int64_t)(rand_r(&d->seed) % (2 * base / 5 + 1));
	if (wait < retry_after_ms)
		wait = retry_after_ms;
	return wait > max ? max : wait;
}

/* Dead letters. */

static void
json_str(struct ma_buf *b, const char *s)
{
	struct ma_buf fixed;

	ma_buf_init(&fixed, 64 * 1024);
	if (!ma_utf8_valid(s, strlen(s)) &&
	    ma_utf8_repair(s, strlen(s), &fixed) == 0)
		s = fixed.data;
	ma_buf_putc(b, '"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			ma_buf_putc(b, '\\');
			ma_buf_putc(b, (char)c);
		} else if (c < 0x20 || c == 0x7f) {
			ma_buf_printf(b, "\\u%04x", c);
		} else {
			ma_buf_putc(b, (char)c);
		}
	}
	ma_buf_putc(b, '"');
	ma_buf_deinit(&fixed);
}

/*
 * reject_record - the transport's reject_fn: append one JSON line to
 * NAME.rejected and make it durable; the cursor may pass the record only
 * if that worked (else it is sent again, and refused again, later).
 */
static void
reject_record(void *ctx, const struct ma_record *rec, const char *why)
{
	struct dest *d = ctx;
	struct ma_export_ctx ectx = d->fwd->siem.export;
	struct ma_buf line;
	char id[37], when[32];
	int64_t now = ma_now_ms();

	ma_buf_init(&line, 16 * 1024 * 1024);
	ma_uuid_fmt(rec->id, id);
	ma_fmt_time(now, true, when);
	ma_buf_printf(&line, "{\"rejected_at\":\"%sZ\",\"destination\":", when);
	json_str(&line, d->conf->name);
	ma_buf_printf(&line,
	    ",\"seq\":%lld,\"id\":\"%s\",\"reason\":", (long long)rec->seq, id);
	json_str(&line, why != NULL ? why : "");
	ma_buf_puts(&line, ",\"record\":");
	if (ma_export_json(&ectx, rec, &line) < 0 ||
	    ma_buf_puts(&line, "}\n") < 0)
		goto fail_nomem;
	if (d->rejected_fd < 0) {
		char *path = ma_fwd_state_path(
		    d->fwd->conf.forward_state_dir, d->conf->name, ".rejected");

		d->rejected_fd = open(path,
		    O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		    0640);
		free(path);
		if (d->rejected_fd < 0)
			goto fail;
	}
	if (ma_write_all(d->rejected_fd, line.data, line.len) < 0 ||
	    fdatasync(d->rejected_fd) < 0)
		goto fail;
	if (d->rejected_count == d->rejected_cap) {
		d->rejected_cap =
		    d->rejected_cap == 0 ? 16 : d->rejected_cap * 2;
		d->rejected_seqs = ma_xrealloc(
		    d->rejected_seqs, d->rejected_cap, sizeof(int64_t));
	}
	d->rejected_seqs[d->rejected_count++] = rec->seq;
	ma_log_warnx("destination %s: record seq %lld (Id %s) refused for "
		     "good: %s; kept in %s/%s.rejected",
	    d->conf->name, (long long)rec->seq, id, why != NULL ? why : "",
	    d->fwd->conf.forward_state_dir, d->conf->name);
	ma_buf_deinit(&line);
	return;
fail:
	ma_log_warn("destination %s: cannot write %s/%s.rejected",
	    d->conf->name, d->fwd->conf.forward_state_dir, d->conf->name);
fail_nomem:
	if (d->reject_failed_seq == 0 || rec->seq < d->reject_failed_seq)
		d->reject_failed_seq = rec->seq;
	ma_buf_deinit(&line);
}

/* Reading the store. */

/* read_batch - up to batch records after cursor into b; -1 with b->err */
static int
read_batch(struct dest *d, int64_t cursor, struct batch *b)
{
	struct ma_store_options so = {.readonly = true, .cache_kib = 4096};

	b->n = 0;
	if (d->store == NULL) {
		d->store = ma_store_open(d->fwd->conf.store_path, &so, &b->err);
		if (d->store == NULL)
			return -1;
	}
	if (ma_store_read_after(d->store, cursor, b->recs, d->conf->batch,
		&b->n, &b->err) < 0) {
		/* Reopen next time: the file may have been replaced. */
		ma_store_destroy(&d->store);
		b->n = 0;
		return -1;
	}
	for (size_t i = 0; i < b->n; i++)
		b->ptrs[i] = &b->recs[i];
	return 0;
}

/* The queue. */

static void
q_wait(struct dest *d, int64_t ms)
{
	struct timespec ts;

	ma_deadline(CLOCK_MONOTONIC, ms, &ts);
	(void)pthread_cond_timedwait(&d->qcond, &d->qlock, &ts);
}

static void
q_wake(struct dest *d)
{
	pthread_mutex_lock(&d->qlock);
	pthread_cond_broadcast(&d->qcond);
	pthread_mutex_unlock(&d->qlock);
}

/*
 * reader_thread - fill the queue with the batches after read_cursor.
 * A short batch means the store has no more for now: poll after
 * forward_poll_ms.  A store error is queued for the sender (it logs and
 * backs off) and the reader waits for its reset before trying again.
 */
static void *
reader_thread(void *arg)
{
	struct dest *d = arg;
	struct fwd *f = d->fwd;
	int64_t poll_ms = (int64_t)f->conf.forward_poll_ms;

	pthread_mutex_lock(&d->qlock);
	while (!atomic_load(&f->quit)) {
		struct batch *b;
		uint64_t gen;
		int64_t cursor;
		bool failed;

		if (d->q_len == QUEUE_SLOTS) {
			q_wait(d, 1000);
			continue;
		}
		b = &d->slots[(d->q_head + d->q_len) % QUEUE_SLOTS];
		gen = d->gen;
		cursor = d->read_cursor;
		pthread_mutex_unlock(&d->qlock);

		failed = read_batch(d, cursor, b) < 0;
		if (!failed && b->n > 0 && d->tr->render != NULL)
			d->tr->render(
			    d->conf, &f->siem, b->ptrs, b->n, &b->out);
		b->failed = failed;

		pthread_mutex_lock(&d->qlock);
		if (gen != d->gen)
			continue; /* reset meanwhile: read again after it */
		if (failed || b->n > 0) {
			d->q_len++;
			pthread_cond_broadcast(&d->qcond);
		}
		if (failed) {
			while (gen == d->gen && !atomic_load(&f->quit))
				q_wait(d, 1000);
			continue;
		}
		if (b->n > 0)
			d->read_cursor = b->recs[b->n - 1].seq;
		if (b->n < d->conf->batch) {
			int64_t until = ma_now_ms() + poll_ms;

			while (gen == d->gen && !atomic_load(&f->quit) &&
			       ma_now_ms() < until)
				q_wait(d, until - ma_now_ms());
		}
	}
	pthread_mutex_unlock(&d->qlock);
	ma_store_destroy(&d->store);
	return NULL;
}

/*
 * q_next - the batch to send next, waiting up to ms for one; NULL if
 * there is none yet or when quitting.
 */
static struct batch *
q_next(struct dest *d, int64_t ms)
{
	struct batch *b = NULL;

	pthread_mutex_lock(&d->qlock);
	if (d->q_len == 0 && !atomic_load(&d->fwd->quit))
		q_wait(d, ms);
	if (d->q_len > 0 && !atomic_load(&d->fwd->quit))
		b = &d->slots[d->q_head];
	pthread_mutex_unlock(&d->qlock);
	return b;
}

/* q_done - the batch at the head is through: its slot is free again */
static void
q_done(struct dest *d)
{
	pthread_mutex_lock(&d->qlock);
	d->q_head = (d->q_head + 1) % QUEUE_SLOTS;
	d->q_len--;
	pthread_cond_broadcast(&d->qcond);
	pthread_mutex_unlock(&d->qlock);
}

/* q_reset - drop what was read ahead; read again after the cursor */
static void
q_reset(struct dest *d)
{
	int64_t cursor;

	pthread_mutex_lock(&d->lock);
	cursor = d->st.cursor;
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_lock(&d->qlock);
	d->q_len = 0;
	d->gen++;
	d->read_cursor = cursor;
	pthread_cond_broadcast(&d->qcond);
	pthread_mutex_unlock(&d->qlock);
}

/* Sending. */

/*
 * account - move the cursor over the first accepted records of the batch,
 * except past a record whose dead letter could not be written.
 */
static size_t
account(struct dest *d, const struct batch *b, size_t accepted)
{
	size_t rejected = 0;

	if (d->reject_failed_seq != 0) {
		for (size_t i = 0; i < accepted; i++) {
			if (b->ptrs[i]->seq >= d->reject_failed_seq) {
				accepted = i;
				break;
			}
		}
	}
	if (accepted == 0)
		return 0;
	for (size_t i = 0; i < d->rejected_count; i++)
		rejected += d->rejected_seqs[i] <= b->ptrs[accepted - 1]->seq;
	pthread_mutex_lock(&d->lock);
	d->st.cursor = b->ptrs[accepted - 1]->seq;
	d->st.delivered += accepted - rejected;
	d->st.rejected += rejected;
	d->st.last_success_ms = ma_now_ms();
	d->dirty = true;
	pthread_mutex_unlock(&d->lock);
	return accepted;
}

static void
disconnect(struct dest *d)
{
	if (d->conn != NULL) {
		d->tr->close(d->conn);
		d->conn = NULL;
	}
}

/*
 * send_batch - hand b to the transport and account for it.  Returns how
 * long to back off (0: the batch was taken whole).
 */
static int64_t
send_batch(struct dest *d, const struct batch *b)
{
	struct fwd_send_result res = {0};
	struct ma_error err = {0};
	int64_t wait;
	size_t taken;
	int rc;

	if (b->failed) {
		wait = backoff_next(d, 0);
		dest_error(d, "store", b->err.msg, wait);
		return wait;
	}
	d->reject_failed_seq = 0;
	d->rejected_count = 0;
	if (d->tr->send_rendered != NULL)
		rc = d->tr->send_rendered(d->conn, b->ptrs, b->n, &b->out,
		    reject_record, d, &res, &err);
	else
		rc = d->tr->send(
		    d->conn, b->ptrs, b->n, reject_record, d, &res, &err);
	if (res.accepted > b->n)
		res.accepted = b->n;
	taken = account(d, b, res.accepted);
	ma_log_debug("destination %s: %zu of %zu records taken, cursor %lld",
	    d->conf->name, taken, b->n, (long long)d->st.cursor);
	if (rc < 0) {
		disconnect(d);
		wait = backoff_next(d, res.retry_after_ms);
		dest_error(d, "send", err.msg, wait);
		return wait;
	}
	if (taken < b->n) {
		char why[sizeof(err.msg) + 128];

		wait = backoff_next(d, res.retry_after_ms);
		if (d->reject_failed_seq != 0)
			snprintf(why, sizeof(why),
			    "record seq %lld was refused for good but could "
			    "not be written to %s.rejected",
			    (long long)d->reject_failed_seq, d->conf->name);
		else
			snprintf(why, sizeof(why),
			    "receiver took %zu of %zu records%s%s", taken, b->n,
			    err.msg[0] != '\0' ? ": " : "", err.msg);
		dest_error(d, "send", why, wait);
		return wait;
	}
	d->backoff_ms = BACKOFF_MIN_MS;
	if (d->logged[0] != '\0') {
		ma_log_info("destination %s: delivering again (cursor %lld)",
		    d->conf->name, (long long)d->st.cursor);
		d->logged[0] = '\0';
	}
	return 0;
}

/*
 * step - one round of the sender: connect if needed, send the next batch
 * if one is ready.  Returns how long to back off (0: go on at once).
 */
static int64_t
step(struct dest *d)
{
	struct ma_error err = {0};
	struct batch *b;
	int64_t wait;

	if (d->conn == NULL) {
		d->conn = d->tr->open(d->conf, &d->fwd->siem, &err);
		if (d->conn == NULL) {
			wait = backoff_next(d, 0);
			dest_error(d, "connect", err.msg, wait);
			return wait;
		}
		/* Once; a recovery is logged when records flow again. */
		if (!d->connected_once)
			ma_log_info("destination %s: connected to %s (%s)",
			    d->conf->name, d->conf->target, d->conf->type);
		d->connected_once = true;
	}
	/* Not longer than the state interval: the state is flushed between
	   steps. */
	b = q_next(d, (int64_t)d->fwd->conf.forward_state_interval_ms);
	if (b == NULL) {
		/* Connected, nothing to send: a clean slate. */
		d->backoff_ms = BACKOFF_MIN_MS;
		return 0;
	}
	wait = send_batch(d, b);
	if (wait == 0)
		q_done(d);
	return wait;
}

static void *
dest_thread(void *arg)
{
	struct dest *d = arg;
	struct fwd *f = d->fwd;

	if (pthread_create(&d->reader, NULL, reader_thread, d) != 0)
		ma_fatalx(
		    "cannot start the reader thread of %s", d->conf->name);
	d->reader_started = true;
	while (!atomic_load(&f->quit)) {
		int64_t wait = step(d);

		/* Before a long wait the state must be on disk: status shows
		   the error now, not after the back-off. */
		state_flush(
		    d, wait > (int64_t)f->conf.forward_state_interval_ms);
		if (wait == 0)
			continue;
		if (!fwd_sleep(f, wait))
			break;
		/* After the back-off, everything after the cursor anew (a
		   batch not taken whole, or a store error). */
		q_reset(d);
	}
	q_wake(d);
	pthread_join(d->reader, NULL);
	d->reader_started = false;
	disconnect(d);
	state_flush(d, true);
	atomic_store(&d->done, true);
	return NULL;
}

/* Start-up. */

static void
usage(void)
{
	fprintf(stderr, "usage: mailaudit-forward [-c config] [--foreground] "
			"[--check] [--debug]\n");
	exit(2);
}

static void
siem_setup(struct fwd *f)
{
	const struct ma_conf *c = &f->conf;

	if (c->server_name[0] != '\0')
		snprintf(
		    f->hostname, sizeof(f->hostname), "%s", c->server_name);
	else if (gethostname(f->hostname, sizeof(f->hostname) - 1) < 0)
		snprintf(f->hostname, sizeof(f->hostname), "-");
	f->siem.export.format = MA_EXPORT_JSON;
	f->siem.export.organization_id =
	    c->organization_id[0] != '\0' ? c->organization_id : NULL;
	f->siem.export.organization_name =
	    c->organization_name[0] != '\0' ? c->organization_name : NULL;
	f->siem.hostname = f->hostname;
	f->siem.app_name = c->syslog_app_name;
	f->siem.sd_id = c->syslog_sd_id;
	f->siem.utf8_bom = c->syslog_utf8_bom;
	f->siem.facility = 13;
	f->siem.product_version = MA_VERSION;
}

/* load - configuration and destinations; exits on an error */
static void
load(struct fwd *f, const char *config, bool config_given)
{
	struct ma_error err = {0};

	if (ma_conf_load(&f->conf, config, &err) < 0 &&
	    (config_given || access(config, F_OK) == 0))
		ma_fatalx("%s", err.msg);
	if (ma_fwd_dests_parse(
		f->conf.forwards, &f->dests_conf, &f->count, &err) < 0)
		ma_fatalx("%s: forward: %s", config, err.msg);
	if (f->count == 0)
		ma_fatalx("%s: no forward destination configured (forward = "
			  "NAME TYPE TARGET ...; see mailaudit-forward(8))",
		    config);
	f->dests = ma_xcalloc(f->count, sizeof(*f->dests));
	for (size_t i = 0; i < f->count; i++) {
		struct dest *d = &f->dests[i];

		d->fwd = f;
		d->conf = &f->dests_conf[i];
		d->tr = transport_lookup(d->conf->type);
		if (d->tr == NULL)
			ma_fatalx("%s: forward %s: type %s is not built into "
				  "this mailaudit-forward",
			    config, d->conf->name, d->conf->type);
		if (d->tr->check != NULL && d->tr->check(d->conf, &err) < 0)
			ma_fatalx("%s: forward %s: %s", config, d->conf->name,
			    err.msg);
	}
	siem_setup(f);
}

static void
mkdir_p(const char *path, mode_t mode)
{
	char *p = ma_xstrdup(path);

	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;

		*s = '\0';
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			ma_fatal("mkdir %s", p);
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
}

static struct passwd *
service_user(const struct fwd *f)
{
	struct passwd *pw;

	if (f->conf.user[0] == '\0')
		return NULL;
	pw = getpwnam(f->conf.user);
	if (pw == NULL)
		ma_fatalx(
		    "user '%s' (config key user) does not exist", f->conf.user);
	return pw;
}

static void
drop_privileges(const struct passwd *pw)
{
	if (pw == NULL)
		return;
	if (geteuid() != 0) {
		if (geteuid() != pw->pw_uid)
			ma_fatalx("running as uid %ld, cannot switch to %s",
			    (long)geteuid(), pw->pw_name);
		return;
	}
	if (ma_become_user(pw->pw_uid, pw->pw_gid) < 0)
		ma_fatal("cannot drop privileges to %s", pw->pw_name);
}

/*
 * pidfile - forward_state_dir/mailaudit-forward.pid, locked (flock) for
 * as long as we run: a second instance is refused, and mailauditctl
 * forward status tells a live pid from a stale file by the lock.
 */
static void
pidfile(struct fwd *f)
{
	char buf[32];
	int fd;

	f->pid_path =
	    ma_fwd_state_path(f->conf.forward_state_dir, FWD_PID_NAME, "");
	fd = open(f->pid_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		ma_fatal("pid file %s", f->pid_path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);

		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		ma_fatalx("another mailaudit-forward is running (pid %s, %s)",
		    buf, f->pid_path);
	}
	snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || ma_write_all(fd, buf, strlen(buf)) < 0)
		ma_fatal("pid file %s", f->pid_path);
	f->pid_fd = fd;
}

static void
setup_state_dir(struct fwd *f, const struct passwd *pw)
{
	const char *dir = f->conf.forward_state_dir;
	struct stat st;

	if (stat(dir, &st) < 0) {
		mkdir_p(dir, 0750);
		if (pw != NULL && geteuid() == 0 &&
		    chown(dir, pw->pw_uid, pw->pw_gid) < 0)
			ma_fatal("chown %s to %s", dir, pw->pw_name);
	}
	pidfile(f);
	if (pw != NULL && geteuid() == 0 &&
	    fchown(f->pid_fd, pw->pw_uid, pw->pw_gid) < 0)
		ma_fatal("chown %s", f->pid_path);
}

static void
dest_init(struct dest *d, size_t index)
{
	struct ma_error err = {0};
	struct fwd *f = d->fwd;

	pthread_mutex_init(&d->lock, NULL);
	d->rejected_fd = -1;
	d->backoff_ms = BACKOFF_MIN_MS;
	d->seed = (unsigned int)(ma_now_ms() ^ getpid() ^ (long)index * 7919);
	pthread_mutex_init(&d->qlock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&d->qcond, &ca);
		pthread_condattr_destroy(&ca);
	}
	for (size_t s = 0; s < QUEUE_SLOTS; s++) {
		struct batch *b = &d->slots[s];

		b->recs = ma_xcalloc(d->conf->batch, sizeof(*b->recs));
		b->ptrs = ma_xcalloc(d->conf->batch, sizeof(*b->ptrs));
		for (uint32_t i = 0; i < d->conf->batch; i++)
			ma_record_init(&b->recs[i]);
		ma_buf_init(&b->out.data, FWD_RENDER_MAX);
	}
	if (ma_fwd_state_read(
		f->conf.forward_state_dir, d->conf->name, &d->st, &err) < 0)
		/* Never guess a cursor: resending everything would flood
		   the SIEM, skipping would lose records. */
		ma_fatalx("destination %s: %s (fix or remove the file; "
			  "without it delivery starts from the first record)",
		    d->conf->name, err.msg);
	if (d->st.type[0] != '\0' &&
	    (strcmp(d->st.type, d->conf->type) != 0 ||
		strcmp(d->st.target, d->conf->target) != 0))
		ma_log_info("destination %s: was %s %s, now %s %s; going on "
			    "after seq %lld (remove %s/%s.state to send "
			    "everything again)",
		    d->conf->name, d->st.type, d->st.target, d->conf->type,
		    d->conf->target, (long long)d->st.cursor,
		    f->conf.forward_state_dir, d->conf->name);
	snprintf(d->st.type, sizeof(d->st.type), "%s", d->conf->type);
	snprintf(d->st.target, sizeof(d->st.target), "%s", d->conf->target);
	d->read_cursor = d->st.cursor;
	d->dirty = true; /* status shows the destination from the start */
}

static void
dest_deinit(struct dest *d)
{
	for (size_t s = 0; s < QUEUE_SLOTS; s++) {
		struct batch *b = &d->slots[s];

		for (uint32_t i = 0; i < d->conf->batch; i++)
			ma_record_deinit(&b->recs[i]);
		free(b->recs);
		free(b->ptrs);
		ma_buf_deinit(&b->out.data);
		free(b->out.bad);
	}
	pthread_cond_destroy(&d->qcond);
	pthread_mutex_destroy(&d->qlock);
	free(d->rejected_seqs);
	if (d->rejected_fd >= 0)
		close(d->rejected_fd);
	pthread_mutex_destroy(&d->lock);
}

/* --check: each destination once, a line each; 1 if any failed. */
static int
check(struct fwd *f, const char *config)
{
	struct ma_store_options so = {.readonly = true, .cache_kib = 1024};
	struct ma_error err = {0};
	struct ma_store *store;
	int64_t last = 0;
	int failed = 0;

	printf("config %s: ok, %zu destination%s\n", config, f->count,
	    f->count == 1 ? "" : "s");
	store = ma_store_open(f->conf.store_path, &so, &err);
	if (store == NULL || ma_store_last_seq(store, &last, &err) < 0) {
		printf("store %s: error: %s\n", f->conf.store_path, err.msg);
		failed = 1;
	} else {
		printf("store %s: ok, last seq %lld\n", f->conf.store_path,
		    (long long)last);
	}
	ma_store_destroy(&store);
	if (access(f->conf.forward_state_dir, W_OK | X_OK) < 0 &&
	    errno != ENOENT) {
		printf("state dir %s: error: %s\n", f->conf.forward_state_dir,
		    strerror(errno));
		failed = 1;
	} else {
		printf("state dir %s: ok\n", f->conf.forward_state_dir);
	}
	for (size_t i = 0; i < f->count; i++) {
		struct dest *d = &f->dests[i];
		void *conn;

		fflush(stdout);
		conn = d->tr->open(d->conf, &f->siem, &err);
		if (conn == NULL) {
			printf("%s %s %s: error: %s\n", d->conf->name,
			    d->conf->type, d->conf->target, err.msg);
			failed = 1;
			continue;
		}
		d->tr->close(conn);
		printf("%s %s %s: ok\n", d->conf->name, d->conf->type,
		    d->conf->target);
	}
	fflush(stdout);
	return failed;
}

/* stop - ask every thread to stop; save the state of those that do not */
static void
stop(struct fwd *f)
{
	struct timespec ts;
	bool all = true;

	atomic_store(&f->quit, true);
	pthread_mutex_lock(&f->lock);
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	for (size_t i = 0; i < f->count; i++)
		if (f->dests[i].started)
			q_wake(&f->dests[i]);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += STOP_WAIT_MS / 1000;
	for (size_t i = 0; i < f->count; i++) {
		struct dest *d = &f->dests[i];

		if (!d->started)
			continue;
		if (pthread_timedjoin_np(d->thread, NULL, &ts) == 0) {
			d->started = false;
			continue;
		}
		/* Still in a batch after STOP_WAIT_MS: its cursor stands for
		   what was acknowledged; the batch is sent again next time. */
		ma_log_warnx("destination %s: still busy after %d ms; saving "
			     "its cursor and stopping anyway",
		    d->conf->name, STOP_WAIT_MS);
		pthread_mutex_lock(&d->lock);
		state_write_locked(d, true);
		pthread_mutex_unlock(&d->lock);
		all = false;
	}
	unlink(f->pid_path);
	if (!all) {
		ma_log_info("stopped");
		_exit(0);
	}
}

static void
run(struct fwd *f)
{
	sigset_t mask;
	int sig;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	/* Threads inherit the mask: only this thread takes the signals. */
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
		ma_fatalx("pthread_sigmask failed");
	for (size_t i = 0; i < f->count; i++) {
		struct dest *d = &f->dests[i];

		if (pthread_create(&d->thread, NULL, dest_thread, d) != 0)
			ma_fatalx(
			    "cannot start the thread of %s", d->conf->name);
		d->started = true;
	}
	ma_log_info("started (version %s): %zu destination%s, store %s, "
		    "state in %s",
	    MA_VERSION, f->count, f->count == 1 ? "" : "s", f->conf.store_path,
	    f->conf.forward_state_dir);
	for (;;) {
		if (sigwait(&mask, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			ma_log_info("SIGHUP ignored: restart to reload the "
				    "configuration");
			continue;
		}
		break;
	}
	ma_log_info("stopping (signal %d)", sig);
	stop(f);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"foreground", no_argument, NULL, 'f'},
	    {"check", no_argument, NULL, 'k'},
	    {"debug", no_argument, NULL, 'd'},
	    {NULL, 0, NULL, 0},
	};
	static struct fwd f;
	const char *config = MA_CONF_DEFAULT_PATH;
	bool foreground = false, debug = false, do_check = false;
	bool config_given = false;
	struct passwd *pw;
	int ch, ret;

	while ((ch = getopt_long(argc, argv, "c:fd", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			config = optarg;
			config_given = true;
			break;
		case 'f':
			foreground = true;
			break;
		case 'k':
			do_check = true;
			break;
		case 'd':
			debug = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	ma_log_init("mailaudit-forward", true, debug);
	signal(SIGPIPE, SIG_IGN);
	pthread_mutex_init(&f.lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&f.cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	load(&f, config, config_given);
	pw = service_user(&f);
	if (do_check) {
		/* As the service user: a key only root can read fails here
		   too, not only in the running daemon. */
		drop_privileges(pw);
		ret = check(&f, config);
		ma_fwd_dests_free(&f.dests_conf, f.count);
		free(f.dests);
		ma_conf_free(&f.conf);
		return ret;
	}
	if (!foreground && daemon(0, 0) < 0)
		ma_fatal("daemon");
	ma_log_init("mailaudit-forward", foreground, debug);
	setup_state_dir(&f, pw);
	drop_privileges(pw);
	for (size_t i = 0; i < f.count; i++)
		dest_init(&f.dests[i], i);
	run(&f);
	for (size_t i = 0; i < f.count; i++)
		dest_deinit(&f.dests[i]);
	close(f.pid_fd);
	free(f.pid_path);
	free(f.dests);
	ma_fwd_dests_free(&f.dests_conf, f.count);
	ma_conf_free(&f.conf);
	ma_log_info("stopped");
	return 0;
}
