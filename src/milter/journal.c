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

#include "lmtp.h"
#include "ma-log.h"

#define BACKOFF_MIN_MS   1000
#define BACKOFF_MAX_MS   (5 * 60 * 1000)
#define LMTP_TIMEOUT_MS  60000
#define WARN_INTERVAL_MS (60 * 1000)
#define IDLE_CLOSE_MS    5000
#define MAX_BATCH        1024
#define JOURNAL_WORKERS  4

struct journal;

struct worker {
	struct journal *j;
	unsigned int idx;
	pthread_t thread;
	struct lmtp_session *session;
	int64_t last_used_ms;
};

struct journal {
	char *dir, *lmtp, *helo;
	struct worker workers[JOURNAL_WORKERS];
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

struct journal_file {
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

struct journal *
journal_create(const char *spool_dir, const char *lmtp, const char *helo,
    struct ma_error *err)
{
	struct journal *j;
	char path[4096];

	if (mkdir_p(spool_dir, 0700, err) < 0)
		return NULL;
	for (const char *sub = "tmp"; sub != NULL;
	     sub = strcmp(sub, "tmp") == 0   ? "new"
		   : strcmp(sub, "new") == 0 ? "failed"
					     : NULL) {
		snprintf(path, sizeof(path), "%s/%s", spool_dir, sub);
		if (mkdir_p(path, 0700, err) < 0)
			return NULL;
	}
	j = ma_xcalloc(1, sizeof(*j));
	j->dir = ma_xstrdup(spool_dir);
	j->lmtp = ma_xstrdup(lmtp);
	j->helo = ma_xstrdup(helo);
	MA_ASSERT(pthread_mutex_init(&j->lock, NULL) == 0);
	MA_ASSERT(pthread_cond_init(&j->wake, NULL) == 0);
	return j;
}

/* Writing. */

struct journal_file *
journal_file_open(struct journal *j, const char *rcpt, struct ma_error *err)
{
	struct journal_file *f = ma_xcalloc(1, sizeof(*f));
	uint8_t id[16];
	char line[512];
	int len;

	ma_uuid7(id, ma_now_ms());
	ma_uuid_fmt(id, f->name);
	snprintf(f->tmp, sizeof(f->tmp), "%s/tmp/%s", j->dir, f->name);
	f->fd = open(f->tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (f->fd < 0) {
		ma_error_set(err, "open(%.300s): %s", f->tmp, strerror(errno));
		free(f);
		return NULL;
	}
	len = snprintf(line, sizeof(line), "rcpt %.400s\r\n", rcpt);
	if (journal_file_write(f, line, (size_t)len) < 0) {
		ma_error_set(err, "write(%.300s): %s", f->tmp, strerror(errno));
		journal_file_abort(&f);
		return NULL;
	}
	return f;
}

int
journal_file_write(struct journal_file *f, const void *data, size_t len)
{
	return ma_write_all(f->fd, data, len);
}

int
journal_file_commit(
    struct journal *j, struct journal_file **fp, struct ma_error *err)
{
	struct journal_file *f = *fp;
	char path[4096];

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
	free(f);
	*fp = NULL;
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
	(void)unlink(f->tmp);
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

/* read_rcpt - the "rcpt <address>" line; leaves fd just after it */
static int
read_rcpt(int fd, char *rcpt, size_t size)
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
	return lseek(fd, nl + 2 - buf, SEEK_SET) < 0 ? -1 : 0;
}

static void
write_status(struct journal *j, size_t queued, int64_t oldest_ms)
{
	char tmp[4096], path[4096], when_ok[32] = "-", when_err[32] = "-";
	FILE *fp;

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
	    j->lmtp, j->failing ? "retrying" : "ok");
	if (fclose(fp) == 0)
		(void)rename(tmp, path);
}

/* deliver_one - returns false when delivery should pause (tempfail) */
static bool
deliver_one(struct worker *w, const char *name)
{
	struct journal *j = w->j;
	char path[4096], dest[4096], rcpt[400], reply[512];
	enum lmtp_result res;
	int fd;

	snprintf(path, sizeof(path), "%s/new/%s", j->dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return true; /* gone meanwhile */
	if (read_rcpt(fd, rcpt, sizeof(rcpt)) < 0) {
		snprintf(reply, sizeof(reply), "unreadable report file");
		res = LMTP_PERMFAIL;
	} else {
		if (w->session == NULL)
			w->session = lmtp_connect(j->lmtp, j->helo,
			    LMTP_TIMEOUT_MS, reply, sizeof(reply));
		res = w->session == NULL ? LMTP_TEMPFAIL
					 : lmtp_send(w->session, rcpt, fd,
					       reply, sizeof(reply));
		if (res != LMTP_DELIVERED)
			lmtp_close(&w->session);
		w->last_used_ms = ma_now_ms();
	}
	close(fd);
	if (res == LMTP_DELIVERED && unlink(path) < 0)
		ma_log_warn("unlink(%s)", path);
	if (res == LMTP_PERMFAIL) {
		snprintf(dest, sizeof(dest), "%s/failed/%s", j->dir, name);
		(void)rename(path, dest);
	}

	pthread_mutex_lock(&j->lock);
	switch (res) {
	case LMTP_DELIVERED:
		j->delivered++;
		j->last_success_ms = ma_now_ms();
		if (j->failing)
			ma_log_info(
			    "journal delivery to %s works again", j->lmtp);
		j->failing = false;
		j->backoff_ms = 0;
		break;
	case LMTP_PERMFAIL:
		j->failed++;
		j->last_error_ms = ma_now_ms();
		snprintf(j->last_error, sizeof(j->last_error), "%s: %.400s",
		    name, reply);
		ma_log_warnx("journal report %s for %s REFUSED by %s: %s; "
			     "kept in %s/failed",
		    name, rcpt, j->lmtp, reply, j->dir);
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
			    j->lmtp, reply, j->dir,
			    (long long)j->backoff_ms / 1000);
			j->last_warn_ms = ma_now_ms();
		}
		j->failing = true;
		break;
	}
	pthread_mutex_unlock(&j->lock);
	return res != LMTP_TEMPFAIL;
}

static void *
delivery_thread(void *arg)
{
	struct worker *w = arg;
	struct journal *j = w->j;
	char **names = ma_xcalloc(MAX_BATCH, sizeof(*names));

	for (;;) {
		int64_t oldest_ms;
		size_t n = 0, done = 0;
		uint64_t seen;
		bool go;
		struct timespec ts;

		pthread_mutex_lock(&j->lock);
		if (j->stopping) {
			pthread_mutex_unlock(&j->lock);
			break;
		}
		seen = j->signals;
		go = ma_now_ms() >= j->next_try_ms;
		pthread_mutex_unlock(&j->lock);

		if (go)
			n = list_new(j, (int)w->idx, names, &oldest_ms);
		for (size_t i = 0; i < n; i++) {
			pthread_mutex_lock(&j->lock);
			go = !j->stopping;
			pthread_mutex_unlock(&j->lock);
			if (!go || !deliver_one(w, names[i]))
				break;
			done++;
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
		/* Keep the session while reports come; not forever. */
		if (done == 0 && w->session != NULL &&
		    ma_now_ms() - w->last_used_ms > IDLE_CLOSE_MS)
			lmtp_close(&w->session);

		pthread_mutex_lock(&j->lock);
		if (!j->stopping && j->signals == seen &&
		    (done == 0 || done < n)) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&j->wake, &j->lock, &ts);
		}
		pthread_mutex_unlock(&j->lock);
	}
	lmtp_close(&w->session);
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
	}
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->wake);
	free(j->dir);
	free(j->lmtp);
	free(j->helo);
	free(j);
	*jp = NULL;
}
