/* SPDX-License-Identifier: MIT */
/*
 * journal.c - the report spool and its LMTP delivery thread (see
 * journal.h).
 *
 * File names are UUIDv7s, so a directory listing sorted by name is the
 * order of arrival.  The first line of each file is "rcpt <address>", the
 * rest is the report exactly as delivered.  Writes happen on libmilter's
 * threads (one file each, no shared state); JOURNAL_WORKERS delivery
 * threads read them, each taking the files whose name hashes to it (so no
 * file is ever delivered twice at once), oldest first, over its own LMTP
 * session kept open while there is work.  Only the delivering worker
 * unlinks or moves a file.  Counters, back-off and the last error are
 * shared under the journal's lock; worker 0 writes the status file.
 * Workload: one report (plus the message) per journaled message; a
 * session per worker and several workers keep the journal mailbox's
 * delivery from being the bottleneck.
 */

#include "journal.h"

#include <dirent.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "imap.h"
#include "lmtp.h"
#include "ma-jlog.h"
#include "ma-log.h"

#define BACKOFF_MIN_MS   1000
#define BACKOFF_MAX_MS   (5 * 60 * 1000)
#define LMTP_TIMEOUT_MS  60000
#define WARN_INTERVAL_MS (60 * 1000)
#define IDLE_CLOSE_MS    5000
#define MAX_BATCH        1024
#define JOURNAL_WORKERS  4
/* Items up to this size go through the log (memory while written). */
#define SPILL_AT (1024 * 1024)
/* Bytes of items in one APPEND. */
#define BATCH_BYTES ((uint64_t)32 * 1024 * 1024)

struct journal;

struct worker {
	struct journal *j;
	unsigned int idx;
	pthread_t thread;
	struct lmtp_session *session;
	struct imap_session *imap;
	char imap_user[MA_ADDRESS_MAX +
		       1]; /* the mailbox imap is logged in to */
	int64_t last_used_ms;
};

struct journal {
	char *dir, *lmtp, *helo;
	int new_fd; /* new/, fsync()ed after renames into it */
	/* group commit of new/ (sync_new_dir) */
	pthread_mutex_t sync_lock;
	pthread_cond_t sync_cond;
	uint64_t sync_requested, sync_done, sync_error_gen;
	int sync_errno;
	bool sync_running;
	/* IMAP store (opts->imap): MULTIAPPEND batches instead of LMTP */
	bool imap;
	char *imap_target, *master_user, *password, *mailbox;
	unsigned int batch;
	int64_t batch_delay_ms;
	enum ma_mailbox_names names;
	const struct ma_domains *local;
	const char *target; /* the one in use, for messages */
	struct worker workers[JOURNAL_WORKERS];
	struct ma_jlog *log;      /* items up to SPILL_AT */
	struct worker log_worker; /* delivers the log */
	int64_t log_oldest_ms;    /* under lock: first item waiting in it */
	bool started, stopping;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	uint64_t signals; /* reports committed so far */

	/* under lock */
	int64_t backoff_ms, next_try_ms, last_warn_ms;
	uint64_t delivered, failed;
	int64_t last_success_ms, last_error_ms;
	char last_error[512];
	bool failing;
};

/*
 * An item being written: in memory up to SPILL_AT bytes (then appended to
 * the log in one piece), beyond that in a file of its own.
 */
struct journal_file {
	struct journal *j;
	char rcpt[MA_JLOG_RCPT_MAX + 1];
	struct ma_buf buf;
	bool spilled;
	int fd;
	char tmp[4096];
	char name[40];
};

static int
mkdir_p(const char *path, mode_t mode, struct ma_error *err)
{
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return ma_error_set(
		    err, "mkdir(%.300s): %s", path, strerror(errno));
	return 0;
}

/* read_secret - the first line of path (the IMAP password) */
static char *
read_secret(const char *path, struct ma_error *err)
{
	char buf[1024];
	size_t len;
	FILE *fp = fopen(path, "re");

	if (fp == NULL) {
		ma_error_set(err, "journal_imap_password_file %.300s: %s", path,
		    strerror(errno));
		return NULL;
	}
	if (fgets(buf, sizeof(buf), fp) == NULL)
		buf[0] = '\0';
	fclose(fp);
	len = strcspn(buf, "\r\n");
	buf[len] = '\0';
	if (len == 0) {
		ma_error_set(err,
		    "journal_imap_password_file %.300s: empty first line",
		    path);
		return NULL;
	}
	return ma_xstrdup(buf);
}

/*
 * clean_tmp - remove what a previous run left in tmp/: reports of messages
 * Postfix never got an answer for (the answer waits until the report is
 * in new/ for good), so their clients send them again.
 */
static void
clean_tmp(struct journal *j)
{
	char path[4096];
	struct dirent *de;
	unsigned int n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/tmp", j->dir);
	if ((d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			n++;
	}
	closedir(d);
	if (n > 0)
		ma_log_info("removed %u unfinished journal item(s) from %s "
			    "(their messages were not accepted)",
		    n, path);
}

struct journal *
journal_create(const struct journal_opts *opts, struct ma_error *err)
{
	const char *spool_dir = opts->spool_dir;
	struct journal *j;
	char path[4096], *password = NULL;

	if (opts->imap) {
		if (opts->password_file == NULL ||
		    opts->password_file[0] == '\0') {
			ma_error_set(err, "journal_store = imap needs "
					  "journal_imap_password_file");
			return NULL;
		}
		if ((password = read_secret(opts->password_file, err)) == NULL)
			return NULL;
	}
	if (mkdir_p(spool_dir, 0700, err) < 0) {
		free(password);
		return NULL;
	}
	for (const char *sub = "tmp"; sub != NULL;
	     sub = strcmp(sub, "tmp") == 0   ? "new"
		   : strcmp(sub, "new") == 0 ? "failed"
					     : NULL) {
		snprintf(path, sizeof(path), "%s/%s", spool_dir, sub);
		if (mkdir_p(path, 0700, err) < 0) {
			free(password);
			return NULL;
		}
	}
	j = ma_xcalloc(1, sizeof(*j));
	MA_ASSERT(pthread_mutex_init(&j->lock, NULL) == 0);
	MA_ASSERT(pthread_cond_init(&j->wake, NULL) == 0);
	MA_ASSERT(pthread_mutex_init(&j->sync_lock, NULL) == 0);
	MA_ASSERT(pthread_cond_init(&j->sync_cond, NULL) == 0);
	j->new_fd = -1;
	j->dir = ma_xstrdup(spool_dir);
	j->lmtp = ma_xstrdup(opts->lmtp);
	j->helo = ma_xstrdup(opts->helo);
	j->imap = opts->imap;
	if (j->imap) {
		j->imap_target = ma_xstrdup(opts->imap_target);
		j->master_user = ma_xstrdup(opts->master_user);
		j->password = password;
		j->mailbox = ma_xstrdup(opts->mailbox);
		j->batch = opts->batch > 0 ? opts->batch : 1;
		if (j->batch > MAX_BATCH)
			j->batch = MAX_BATCH;
		j->batch_delay_ms = opts->batch_delay_ms;
		j->names = opts->names;
		j->local = opts->local;
	}
	j->target = j->imap ? j->imap_target : j->lmtp;
	snprintf(path, sizeof(path), "%s/new", spool_dir);
	j->new_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->new_fd < 0) {
		ma_error_set(err, "open(%.300s): %s", path, strerror(errno));
		journal_destroy(&j);
		return NULL;
	}
	clean_tmp(j);
	snprintf(path, sizeof(path), "%s/log", spool_dir);
	if ((j->log = ma_jlog_open(path, err)) == NULL) {
		journal_destroy(&j);
		return NULL;
	}
	return j;
}

/* Writing. */

static int spill(struct journal_file *f);

struct journal_file *
journal_file_open(struct journal *j, const char *rcpt, struct ma_error *err)
{
	struct journal_file *f;

	if (strlen(rcpt) > MA_JLOG_RCPT_MAX) {
		ma_error_set(err, "journal address too long");
		return NULL;
	}
	f = ma_xcalloc(1, sizeof(*f));
	f->j = j;
	f->fd = -1;
	snprintf(f->rcpt, sizeof(f->rcpt), "%s", rcpt);
	ma_buf_init(&f->buf, SPILL_AT);
	/* Over LMTP each item is a delivery of its own, and the four file
	   workers deliver in parallel where the log's one reader could not:
	   the log (and its batches) is for the IMAP store. */
	if (!j->imap && spill(f) < 0) {
		ma_error_set(
		    err, "cannot create a journal item in %.300s/tmp", j->dir);
		journal_file_abort(&f);
		return NULL;
	}
	return f;
}

/*
 * spill - the item outgrew memory: go on in a file of its own in tmp/,
 * committed into new/ (with its own fdatasync) instead of into the log.
 */
static int
spill(struct journal_file *f)
{
	struct journal *j = f->j;
	uint8_t id[16];
	char line[512];
	int len;

	ma_uuid7(id, ma_now_ms());
	ma_uuid_fmt(id, f->name);
	snprintf(f->tmp, sizeof(f->tmp), "%s/tmp/%s", j->dir, f->name);
	f->fd = open(f->tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (f->fd < 0) {
		ma_log_warn("journal item: open %s", f->tmp);
		return -1;
	}
	f->spilled = true;
	len = snprintf(line, sizeof(line), "rcpt %s\r\n", f->rcpt);
	if (ma_write_all(f->fd, line, (size_t)len) < 0 ||
	    ma_write_all(f->fd, f->buf.data, f->buf.len) < 0) {
		ma_log_warn("journal item: write %s", f->tmp);
		return -1;
	}
	ma_buf_deinit(&f->buf);
	return 0;
}

int
journal_file_write(struct journal_file *f, const void *data, size_t len)
{
	if (!f->spilled && ma_buf_append(&f->buf, data, len) == 0)
		return 0;
	if (!f->spilled && spill(f) < 0)
		return -1;
	return ma_write_all(f->fd, data, len);
}

/*
 * sync_new_dir - make every rename into new/ done before the call
 * durable.  Group commit: while one thread runs fsync(new/), the others
 * wait for it; the next fsync then covers all their renames at once, so
 * concurrent messages share one directory sync instead of one each.
 */
static int
sync_new_dir(struct journal *j)
{
	uint64_t need;
	int ret = 0;

	pthread_mutex_lock(&j->sync_lock);
	need = ++j->sync_requested; /* this rename is done: needs a sync */
	for (;;) {
		if (j->sync_done >= need) {
			ret = j->sync_error_gen >= need ? -1 : 0;
			break;
		}
		if (!j->sync_running) {
			uint64_t upto = j->sync_requested;
			int r;

			j->sync_running = true;
			pthread_mutex_unlock(&j->sync_lock);
			r = fsync(j->new_fd);
			pthread_mutex_lock(&j->sync_lock);
			j->sync_running = false;
			j->sync_done = upto;
			if (r < 0) {
				j->sync_errno = errno;
				j->sync_error_gen = upto;
			}
			pthread_cond_broadcast(&j->sync_cond);
			continue;
		}
		pthread_cond_wait(&j->sync_cond, &j->sync_lock);
	}
	if (ret < 0)
		errno = j->sync_errno;
	pthread_mutex_unlock(&j->sync_lock);
	return ret;
}

int
journal_file_commit(
    struct journal *j, struct journal_file **fp, struct ma_error *err)
{
	struct journal_file *f = *fp;
	char path[4096];

	if (!f->spilled) {
		/* The usual case: one write into the log, a shared sync. */
		if (ma_jlog_append(
			j->log, f->rcpt, f->buf.data, f->buf.len, err) < 0) {
			journal_file_abort(fp);
			return -1;
		}
		goto committed;
	}
	if (fdatasync(f->fd) < 0) {
		ma_error_set(
		    err, "fdatasync(%.300s): %s", f->tmp, strerror(errno));
		journal_file_abort(fp);
		return -1;
	}
	if (close(f->fd) < 0) {
		f->fd = -1;
		ma_error_set(err, "close(%.300s): %s", f->tmp, strerror(errno));
		journal_file_abort(fp);
		return -1;
	}
	f->fd = -1;
	snprintf(path, sizeof(path), "%s/new/%s", j->dir, f->name);
	if (rename(f->tmp, path) < 0) {
		ma_error_set(
		    err, "rename(%.300s): %s", f->tmp, strerror(errno));
		journal_file_abort(fp);
		return -1;
	}
	/* The name in new/ must survive a crash too before Postfix hears
	   that the message is accepted. */
	if (sync_new_dir(j) < 0) {
		ma_error_set(
		    err, "fsync(%.300s/new): %s", j->dir, strerror(errno));
		(void)unlink(path);
		journal_file_abort(fp);
		return -1;
	}
committed:
	journal_file_abort(fp); /* frees what is left of it */
	pthread_mutex_lock(&j->lock);
	j->signals++;
	pthread_cond_broadcast(&j->wake);
	pthread_mutex_unlock(&j->lock);
	return 0;
}

void
journal_file_abort(struct journal_file **fp)
{
	struct journal_file *f = *fp;

	if (f == NULL)
		return;
	if (f->fd >= 0)
		close(f->fd);
	if (f->spilled) /* gone already once committed: names are unique */
		(void)unlink(f->tmp);
	ma_buf_deinit(&f->buf);
	free(f);
	*fp = NULL;
}

/* Delivery. */

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static unsigned int
worker_of(const char *name)
{
	return (unsigned int)(ma_hash_str(name) % JOURNAL_WORKERS);
}

/*
 * list_new - up to MAX_BATCH names in new/, oldest first: those of
 * worker idx, or all with idx < 0.
 */
static size_t
list_new(struct journal *j, int idx, char **names, int64_t *oldest_ms_r)
{
	char path[4096];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	*oldest_ms_r = 0;
	snprintf(path, sizeof(path), "%s/new", j->dir);
	d = opendir(path);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL && n < MAX_BATCH) {
		if (de->d_name[0] == '.' || strlen(de->d_name) != 36 ||
		    (idx >= 0 && worker_of(de->d_name) != (unsigned int)idx))
			continue;
		names[n++] = ma_xstrdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), name_cmp);
	if (n > 0) {
		uint8_t id[16];

		/* UUIDv7: the first 48 bits are the creation time in ms. */
		if (ma_uuid_parse(names[0], id) == 0) {
			int64_t ms = 0;

			for (int i = 0; i < 6; i++)
				ms = ms << 8 | id[i];
			*oldest_ms_r = ms;
		}
	}
	return n;
}

/* read_rcpt - a spool file's "rcpt <address>" line; *off_r after it */
static int
read_rcpt(int fd, char *rcpt, size_t size, uint64_t *off_r)
{
	char buf[512];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	char *nl;

	if (n <= 5)
		return -1;
	buf[n] = '\0';
	nl = strstr(buf, "\r\n");
	if (strncmp(buf, "rcpt ", 5) != 0 || nl == NULL ||
	    (size_t)(nl - buf - 5) >= size)
		return -1;
	memcpy(rcpt, buf + 5, (size_t)(nl - buf - 5));
	rcpt[nl - buf - 5] = '\0';
	*off_r = (uint64_t)(nl + 2 - buf);
	return 0;
}

static void
write_status(struct journal *j, size_t queued, int64_t oldest_ms)
{
	char tmp[4096], path[4096], when_ok[32] = "-", when_err[32] = "-";
	FILE *fp;

	/* Items in the log wait too (the lock is held: no jlog call here
	   takes it, and the log's own lock is a different one). */
	queued += (size_t)ma_jlog_pending(j->log);
	if (j->log_oldest_ms != 0 &&
	    (oldest_ms == 0 || j->log_oldest_ms < oldest_ms))
		oldest_ms = j->log_oldest_ms;
	if (j->last_success_ms != 0)
		ma_fmt_time(j->last_success_ms, false, when_ok);
	if (j->last_error_ms != 0)
		ma_fmt_time(j->last_error_ms, false, when_err);
	snprintf(tmp, sizeof(tmp), "%s/.status.tmp", j->dir);
	snprintf(path, sizeof(path), "%s/status", j->dir);
	fp = fopen(tmp, "we");
	if (fp == NULL)
		return;
	fprintf(fp,
	    "queued = %zu%s\noldest_queued_s = %lld\ndelivered = %llu\n"
	    "failed = %llu\nlast_success = %s\nlast_error_time = %s\n"
	    "last_error = %s\ntarget = %s\nstate = %s\n",
	    queued, queued >= MAX_BATCH ? "+" : "",
	    oldest_ms != 0 ? (long long)((ma_now_ms() - oldest_ms) / 1000) : 0,
	    (unsigned long long)j->delivered, (unsigned long long)j->failed,
	    when_ok, when_err, j->last_error[0] != '\0' ? j->last_error : "-",
	    j->target, j->failing ? "retrying" : "ok");
	if (fclose(fp) == 0)
		(void)rename(tmp, path);
}

/* finish - unlink a delivered file, keep a refused one in failed/ */
static void
finish(struct journal *j, const char *name, enum lmtp_result res)
{
	char path[4096], dest[4096];

	snprintf(path, sizeof(path), "%s/new/%s", j->dir, name);
	if (res == LMTP_DELIVERED && unlink(path) < 0)
		ma_log_warn("unlink(%s)", path);
	if (res == LMTP_PERMFAIL) {
		snprintf(dest, sizeof(dest), "%s/failed/%s", j->dir, name);
		(void)rename(path, dest);
	}
}

/*
 * account - counters, back-off and log lines for count reports that
 * ended in res (name/rcpt: the report, for a refusal).
 */
static void
account(struct journal *j, enum lmtp_result res, size_t count, const char *name,
    const char *rcpt, const char *reply)
{
	pthread_mutex_lock(&j->lock);
	switch (res) {
	case LMTP_DELIVERED:
		j->delivered += count;
		j->last_success_ms = ma_now_ms();
		if (j->failing)
			ma_log_info(
			    "journal delivery to %s works again", j->target);
		j->failing = false;
		j->backoff_ms = 0;
		break;
	case LMTP_PERMFAIL:
		j->failed += count;
		j->last_error_ms = ma_now_ms();
		snprintf(j->last_error, sizeof(j->last_error), "%s: %.400s",
		    name, reply);
		ma_log_warnx("journal report %s for %s REFUSED by %s: %s; "
			     "kept in %s/failed",
		    name, rcpt, j->target, reply, j->dir);
		break;
	case LMTP_TEMPFAIL:
		j->last_error_ms = ma_now_ms();
		snprintf(j->last_error, sizeof(j->last_error), "%s", reply);
		j->backoff_ms =
		    j->backoff_ms == 0 ? BACKOFF_MIN_MS : j->backoff_ms * 2;
		if (j->backoff_ms > BACKOFF_MAX_MS)
			j->backoff_ms = BACKOFF_MAX_MS;
		j->next_try_ms = ma_now_ms() + j->backoff_ms;
		if (!j->failing ||
		    ma_now_ms() - j->last_warn_ms > WARN_INTERVAL_MS) {
			ma_log_warnx("journal delivery to %s failed: %s; "
				     "reports kept in %s/new, retrying in "
				     "%lld s",
			    j->target, reply, j->dir,
			    (long long)j->backoff_ms / 1000);
			j->last_warn_ms = ma_now_ms();
		}
		j->failing = true;
		break;
	}
	pthread_mutex_unlock(&j->lock);
}

/*
 * open_file_item - the file name in new/ as an item: 0, -1 if it is gone,
 * -2 if it is not a spool file.
 */
static int
open_file_item(struct journal *j, const char *name, char *rcpt, size_t size,
    struct store_item *it)
{
	char path[4096];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/new/%s", j->dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1; /* gone meanwhile */
	if (read_rcpt(fd, rcpt, size, &it->off) < 0 || fstat(fd, &st) < 0 ||
	    (uint64_t)st.st_size < it->off) {
		close(fd);
		return -2;
	}
	it->fd = fd;
	it->len = (uint64_t)st.st_size - it->off;
	return 0;
}

/* imap_login - log w in to the mailbox of rcpt unless it already is */
static bool
imap_login(struct worker *w, const char *rcpt, char *reply, size_t size)
{
	struct journal *j = w->j;
	char user[MA_ADDRESS_MAX + 1];

	ma_mailbox_name(j->names, j->local, rcpt, user);
	if (imap_ok(w->imap) && strcmp(user, w->imap_user) == 0)
		return true;
	imap_close(&w->imap);
	if (j->master_user[0] != '\0')
		w->imap = imap_connect(j->imap_target, user, j->master_user,
		    j->password, LMTP_TIMEOUT_MS, reply, size);
	else
		w->imap = imap_connect(j->imap_target, "", user, j->password,
		    LMTP_TIMEOUT_MS, reply, size);
	if (w->imap == NULL)
		return false;
	snprintf(w->imap_user, sizeof(w->imap_user), "%s", user);
	return true;
}

/*
 * store_items - the n items for rcpt into the store, in order: over IMAP
 * all in one APPEND, then one by one if the store refuses the batch (all
 * or nothing) to find the item it refuses; over LMTP one transaction
 * each.  res[i] says how each ended; the first LMTP_TEMPFAIL ends the run
 * (the rest stay TEMPFAIL).  reply: the last answer or error.
 */
static void
store_items(struct worker *w, const char *rcpt, const struct store_item *items,
    size_t n, enum lmtp_result *res, char *reply, size_t size)
{
	struct journal *j = w->j;
	enum lmtp_result r;

	for (size_t i = 0; i < n; i++)
		res[i] = LMTP_TEMPFAIL;
	snprintf(reply, size, "not tried");
	if (!j->imap) {
		for (size_t i = 0; i < n; i++) {
			if (w->session == NULL)
				w->session = lmtp_connect(j->lmtp, j->helo,
				    LMTP_TIMEOUT_MS, reply, size);
			res[i] = w->session == NULL
				     ? LMTP_TEMPFAIL
				     : lmtp_send(w->session, rcpt, &items[i],
					   reply, size);
			if (res[i] != LMTP_DELIVERED)
				lmtp_close(&w->session);
			if (res[i] == LMTP_TEMPFAIL)
				break;
		}
		w->last_used_ms = ma_now_ms();
		return;
	}
	if (!imap_login(w, rcpt, reply, size))
		r = LMTP_TEMPFAIL;
	else if (n > 1 && !imap_multiappend(w->imap))
		r = LMTP_PERMFAIL; /* one by one below */
	else
		r = imap_append(w->imap, j->mailbox, items, n, reply, size);
	if (r != LMTP_PERMFAIL || n == 1) {
		for (size_t i = 0; i < n; i++)
			res[i] = r;
	} else {
		for (size_t i = 0; i < n; i++) {
			res[i] = imap_login(w, rcpt, reply, size)
				     ? imap_append(w->imap, j->mailbox,
					   &items[i], 1, reply, size)
				     : LMTP_TEMPFAIL;
			if (res[i] == LMTP_TEMPFAIL)
				break;
		}
	}
	if (!imap_ok(w->imap))
		imap_close(&w->imap);
	w->last_used_ms = ma_now_ms();
}

/*
 * account_results - the counters and log lines for n stored items;
 * names[i] names item i in messages.  Returns false if a temporary
 * failure means delivery should pause.
 */
static bool
account_results(struct journal *j, const enum lmtp_result *res, size_t n,
    const char *const *names, const char *rcpt, const char *reply)
{
	size_t delivered = 0;
	bool pause = false;

	for (size_t i = 0; i < n; i++) {
		if (res[i] == LMTP_DELIVERED)
			delivered++;
		else if (res[i] == LMTP_PERMFAIL)
			account(j, LMTP_PERMFAIL, 1, names[i], rcpt, reply);
		else
			pause = true;
	}
	if (delivered > 0)
		account(j, LMTP_DELIVERED, delivered, NULL, rcpt, reply);
	if (pause)
		account(j, LMTP_TEMPFAIL, 1, NULL, rcpt, reply);
	return !pause;
}

/*
 * deliver_files - the first files of names (n > 0) that go to the same
 * journal address, up to the batch, into the store.  *done_r counts the
 * names dealt with; false when delivery should pause.
 */
static bool
deliver_files(struct worker *w, char **names, size_t n, size_t *done_r)
{
	struct journal *j = w->j;
	struct store_item items[MAX_BATCH];
	enum lmtp_result res[MAX_BATCH];
	char rcpt[MA_JLOG_RCPT_MAX + 1], next[MA_JLOG_RCPT_MAX + 1];
	char reply[512];
	size_t k = 0, taken = 0, max = j->imap ? j->batch : 1;

	*done_r = 0;
	while (taken < n && k < max) {
		int r = open_file_item(j, names[taken], k == 0 ? rcpt : next,
		    sizeof(rcpt), &items[k]);

		if (r == -2) {
			finish(j, names[taken], LMTP_PERMFAIL);
			account(j, LMTP_PERMFAIL, 1, names[taken], "?",
			    "not a journal spool file");
		}
		if (r < 0) {
			if (k > 0)
				break; /* keep the batch's names contiguous */
			*done_r = ++taken;
			continue;
		}
		if (k > 0 && strcmp(next, rcpt) != 0) {
			close(items[k].fd);
			break; /* another journal mailbox: next batch */
		}
		k++;
		taken++;
	}
	if (k == 0)
		return true;
	names += *done_r;
	store_items(w, rcpt, items, k, res, reply, sizeof(reply));
	for (size_t i = 0; i < k; i++) {
		close(items[i].fd);
		if (res[i] != LMTP_TEMPFAIL) {
			finish(j, names[i], res[i]);
			(*done_r)++;
		}
	}
	return account_results(
	    j, res, k, (const char *const *)names, rcpt, reply);
}

/*
 * save_failed - a log item the store refuses, into failed/ as a spool
 * file of its own (never deleted); -1 if it could not be written (then
 * it stays in the log).
 */
static int
save_failed(struct journal *j, const struct ma_jlog_item *it, char name[64])
{
	char tmp[4096], path[4096], line[512], buf[65536];
	struct store_item item = {it->fd, it->off, it->len};
	uint64_t pos = it->off;
	uint8_t id[16];
	int fd, len;
	ssize_t n;

	ma_uuid7(id, ma_now_ms());
	ma_uuid_fmt(id, name);
	snprintf(tmp, sizeof(tmp), "%.3000s/tmp/%.40s", j->dir, name);
	snprintf(path, sizeof(path), "%.3000s/failed/%.40s", j->dir, name);
	fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail;
	len = snprintf(line, sizeof(line), "rcpt %s\r\n", it->rcpt);
	if (ma_write_all(fd, line, (size_t)len) < 0)
		goto fail;
	while ((n = store_item_read(&item, &pos, buf, sizeof(buf))) > 0) {
		if (ma_write_all(fd, buf, (size_t)n) < 0)
			goto fail;
	}
	if (n < 0 || fdatasync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	return 0;
fail:
	ma_log_warn("journal: could not keep refused item in %s", path);
	if (fd >= 0)
		close(fd);
	(void)unlink(tmp);
	return -1;
}

/*
 * deliver_log - the next items of the log (one journal address, up to the
 * batch) into the store.  *taken_r: items dealt with; false when delivery
 * should pause.  With *hold_ms_r 0 a partial batch may be held back: then
 * *hold_ms_r says until when, *wanted_r how many more items would fill
 * it; a caller that calls again with *hold_ms_r set gets it delivered.
 */
static bool
deliver_log(struct worker *w, struct ma_jlog_item *items, size_t *taken_r,
    int64_t *hold_ms_r, size_t *wanted_r)
{
	struct journal *j = w->j;
	struct store_item sitems[MAX_BATCH];
	enum lmtp_result res[MAX_BATCH];
	char names[MAX_BATCH][64];
	const char *name_ptrs[MAX_BATCH];
	char reply[512];
	size_t n, done = 0;

	*taken_r = 0;
	n = ma_jlog_peek(j->log, items, j->imap ? j->batch : 1, BATCH_BYTES);
	pthread_mutex_lock(&j->lock);
	j->log_oldest_ms = n > 0 ? items[0].time_ms : 0;
	pthread_mutex_unlock(&j->lock);
	if (n == 0)
		return true;
	/* A batch costs the store about as much as one item: let a partial
	   one wait a moment for more, unless stopping. */
	if (n < j->batch && *hold_ms_r == 0 &&
	    ma_now_ms() - items[0].time_ms < j->batch_delay_ms) {
		*hold_ms_r = items[0].time_ms + j->batch_delay_ms;
		*wanted_r = j->batch - n;
		return true;
	}
	for (size_t i = 0; i < n; i++)
		sitems[i] = (struct store_item){
		    items[i].fd, items[i].off, items[i].len};
	store_items(w, items[0].rcpt, sitems, n, res, reply, sizeof(reply));
	/* Names only for the messages about refused items. */
	for (size_t i = 0; i < n; i++) {
		names[i][0] = '\0';
		if (res[i] == LMTP_PERMFAIL)
			snprintf(names[i], sizeof(names[i]),
			    "log item %" PRIx64 ":%" PRIu64, items[i].seg,
			    items[i].off);
		name_ptrs[i] = names[i];
	}
	for (; done < n && res[done] != LMTP_TEMPFAIL; done++) {
		if (res[done] == LMTP_PERMFAIL &&
		    save_failed(j, &items[done], names[done]) < 0) {
			res[done] = LMTP_TEMPFAIL; /* keep it in the log */
			break;
		}
	}
	for (size_t i = done; i < n; i++)
		res[i] = LMTP_TEMPFAIL;
	if (done > 0)
		ma_jlog_consume(j->log, &items[done - 1], done);
	*taken_r = done;
	return account_results(j, res, n, name_ptrs, items[0].rcpt, reply);
}

static bool
stopping(struct journal *j)
{
	bool stop;

	pthread_mutex_lock(&j->lock);
	stop = j->stopping;
	pthread_mutex_unlock(&j->lock);
	return stop;
}

/*
 * wait_for_work - sleep up to a second unless items came in since seen
 * (or the last round did not finish its work).
 */
static void
wait_for_work(struct journal *j, uint64_t seen, bool more)
{
	struct timespec ts;

	pthread_mutex_lock(&j->lock);
	if (!j->stopping && j->signals == seen && !more) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&j->wake, &j->lock, &ts);
	}
	pthread_mutex_unlock(&j->lock);
}

/*
 * hold_batch - wait until until_ms, or until wanted more items came in
 * since seen, or the journal stops.
 */
static void
hold_batch(struct journal *j, uint64_t seen, int64_t until_ms, size_t wanted)
{
	pthread_mutex_lock(&j->lock);
	while (!j->stopping && j->signals - seen < wanted &&
	       ma_now_ms() < until_ms) {
		struct timespec ts;

		ma_deadline(CLOCK_REALTIME, until_ms - ma_now_ms(), &ts);
		pthread_cond_timedwait(&j->wake, &j->lock, &ts);
	}
	pthread_mutex_unlock(&j->lock);
}

/* round_start - the signal count now, and whether back-off allows work */
static bool
round_start(struct journal *j, uint64_t *seen_r)
{
	bool go;

	pthread_mutex_lock(&j->lock);
	*seen_r = j->signals;
	go = ma_now_ms() >= j->next_try_ms;
	pthread_mutex_unlock(&j->lock);
	return go;
}

static void
close_idle(struct worker *w, bool idle)
{
	/* Keep the session while items come; not forever. */
	if (idle && ma_now_ms() - w->last_used_ms > IDLE_CLOSE_MS) {
		lmtp_close(&w->session);
		imap_close(&w->imap);
	}
}

/* log_thread - the journal log's items, in order, into the store */
static void *
log_thread(void *arg)
{
	struct worker *w = arg;
	struct journal *j = w->j;
	struct ma_jlog_item *items = ma_xcalloc(MAX_BATCH, sizeof(*items));

	while (!stopping(j)) {
		uint64_t seen;
		size_t taken = 0, wanted = 0;
		int64_t hold_ms = 0;
		bool ok = true;

		if (round_start(j, &seen))
			ok = deliver_log(w, items, &taken, &hold_ms, &wanted);
		if (hold_ms != 0) {
			hold_batch(j, seen, hold_ms, wanted);
			if (!stopping(j) && round_start(j, &seen))
				ok = deliver_log(
				    w, items, &taken, &hold_ms, &wanted);
		}
		close_idle(w, taken == 0);
		wait_for_work(j, seen, ok && taken > 0);
	}
	lmtp_close(&w->session);
	imap_close(&w->imap);
	free(items);
	return NULL;
}

/*
 * delivery_thread - items too big for the log, files in new/ (those whose
 * names hash to this worker); worker 0 also writes the status file.
 */
static void *
delivery_thread(void *arg)
{
	struct worker *w = arg;
	struct journal *j = w->j;
	char **names = ma_xcalloc(MAX_BATCH, sizeof(*names));

	while (!stopping(j)) {
		int64_t oldest_ms;
		size_t n = 0, done = 0;
		uint64_t seen;
		bool go = round_start(j, &seen);

		if (go)
			n = list_new(j, (int)w->idx, names, &oldest_ms);
		while (done < n && !stopping(j)) {
			size_t step = 1;

			if (!deliver_files(w, names + done, n - done, &step))
				break;
			done += step;
		}
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		if (w->idx == 0) {
			size_t all = list_new(j, -1, names, &oldest_ms);

			pthread_mutex_lock(&j->lock);
			write_status(j, all, oldest_ms);
			pthread_mutex_unlock(&j->lock);
			for (size_t i = 0; i < all; i++)
				free(names[i]);
		}
		close_idle(w, done == 0);
		wait_for_work(j, seen, done > 0 && done == n);
	}
	lmtp_close(&w->session);
	imap_close(&w->imap);
	free(names);
	return NULL;
}

void
journal_start(struct journal *j)
{
	for (unsigned int i = 0; i < JOURNAL_WORKERS; i++) {
		j->workers[i].j = j;
		j->workers[i].idx = i;
		MA_ASSERT(pthread_create(&j->workers[i].thread, NULL,
			      delivery_thread, &j->workers[i]) == 0);
	}
	j->log_worker.j = j;
	j->log_worker.idx = JOURNAL_WORKERS;
	MA_ASSERT(pthread_create(&j->log_worker.thread, NULL, log_thread,
		      &j->log_worker) == 0);
	j->started = true;
}

void
journal_destroy(struct journal **jp)
{
	struct journal *j = *jp;

	if (j == NULL)
		return;
	if (j->started) {
		pthread_mutex_lock(&j->lock);
		j->stopping = true;
		pthread_cond_broadcast(&j->wake);
		pthread_mutex_unlock(&j->lock);
		for (unsigned int i = 0; i < JOURNAL_WORKERS; i++)
			pthread_join(j->workers[i].thread, NULL);
		pthread_join(j->log_worker.thread, NULL);
	}
	if (j->new_fd >= 0)
		close(j->new_fd);
	ma_jlog_close(&j->log);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->wake);
	pthread_mutex_destroy(&j->sync_lock);
	pthread_cond_destroy(&j->sync_cond);
	free(j->dir);
	free(j->lmtp);
	free(j->helo);
	free(j->imap_target);
	free(j->master_user);
	if (j->password != NULL)
		memset(j->password, 0, strlen(j->password));
	free(j->password);
	free(j->mailbox);
	free(j);
	*jp = NULL;
}
