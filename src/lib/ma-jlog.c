/* SPDX-License-Identifier: MIT */
/*
 * ma-jlog.c - the journal log (see ma-jlog.h).
 *
 * Writers: under the lock, an item is written at the end of the current
 * segment (one writev), then the writer waits for a sync generation that
 * covers it.  Whoever finds no sync running starts one (fdatasync outside
 * the lock) covering every item written so far; the others wait for it
 * and, if theirs came too late for it, for the next.  After a sync the
 * durable end (segment, offset) moves on; the reader never reads past it.
 * A segment is replaced once it passes SEG_MAX, after a last fdatasync.
 *
 * The reader (one thread) parses items from its cursor with pread and
 * checks each one's CRC-32 before handing it out; at the end of a segment
 * older than the one being written it moves to the next and removes the
 * finished one.  Workload: one item per journaled message, a few KiB each,
 * hundreds per second at most.
 */

#include "ma-jlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include "ma-log.h"

#define SEG_MAX ((uint64_t)64 * 1024 * 1024)
#define HDR_MAX (MA_JLOG_RCPT_MAX + 96)
#define MAGIC   "MAJ1 "
#define NO_SEG  UINT64_MAX

struct ma_jlog {
	char *dir;
	int dir_fd;
	pthread_mutex_t lock;
	pthread_cond_t cond;

	/* writers, under lock */
	uint64_t wseg; /* segment being written (created on first append) */
	int wfd;
	uint64_t wsize;
	uint64_t req_gen, done_gen, err_gen;
	int sync_errno;
	bool syncing;
	/* durable end: segments before dseg are complete */
	uint64_t dseg, doff;
	uint64_t pending;

	/* reader only */
	uint64_t rseg, roff; /* cursor */
	int rfd;
	uint64_t rfd_seg;
};

static void
seg_path(const char *dir, uint64_t seg, char *out, size_t size)
{
	snprintf(out, size, "%s/%016" PRIx64 ".log", dir, seg);
}

/* parse_seg_name - 1 if name is a segment file name */
static int
parse_seg_name(const char *name, uint64_t *seg_r)
{
	char *end;

	if (strlen(name) != 20 || strcmp(name + 16, ".log") != 0)
		return 0;
	errno = 0;
	*seg_r = strtoull(name, &end, 16);
	return errno == 0 && end == name + 16;
}

/*
 * parse_item - the item at off of fd: 1 and *it filled when it is whole
 * and its checksum matches, 0 at the end of the data or at anything else
 * (a torn or foreign tail).  limit: bytes of fd that may be read.
 */
static int
parse_item(
    int fd, uint64_t seg, uint64_t off, uint64_t limit, struct ma_jlog_item *it)
{
	char hdr[HDR_MAX + 1], tail[2], *p, *end, *nl;
	unsigned char buf[65536];
	unsigned long long len, ms;
	unsigned long crc, sum;
	ssize_t n;
	uint64_t pos, left;
	size_t hlen;

	if (off >= limit)
		return 0;
	n = pread(fd, hdr, HDR_MAX, (off_t)off);
	if (n <= 0)
		return 0;
	hdr[n] = '\0';
	nl = memchr(hdr, '\n', (size_t)n);
	if (nl == NULL || nl == hdr || nl[-1] != '\r' ||
	    strncmp(hdr, MAGIC, strlen(MAGIC)) != 0)
		return 0;
	nl[-1] = '\0';
	hlen = (size_t)(nl - hdr) + 1;
	p = hdr + strlen(MAGIC);
	errno = 0;
	len = strtoull(p, &end, 10);
	if (errno != 0 || end == p || *end != ' ')
		return 0;
	p = end + 1;
	crc = strtoul(p, &end, 16);
	if (errno != 0 || end != p + 8 || *end != ' ')
		return 0;
	p = end + 1;
	ms = strtoull(p, &end, 10);
	if (errno != 0 || end == p || *end != ' ' ||
	    strlen(end + 1) > MA_JLOG_RCPT_MAX || end[1] == '\0')
		return 0;
	if (off + hlen + len + 2 > limit || off + hlen + len + 2 < off)
		return 0;
	/* The checksum and the CRLF after the bytes. */
	sum = crc32(0L, Z_NULL, 0);
	for (pos = off + hlen, left = len; left > 0;) {
		size_t want = left < sizeof(buf) ? (size_t)left : sizeof(buf);

		n = pread(fd, buf, want, (off_t)pos);
		if (n <= 0)
			return 0;
		sum = crc32(sum, buf, (uInt)n);
		pos += (uint64_t)n;
		left -= (uint64_t)n;
	}
	if (sum != crc || pread(fd, tail, 2, (off_t)pos) != 2 ||
	    tail[0] != '\r' || tail[1] != '\n')
		return 0;
	snprintf(it->rcpt, sizeof(it->rcpt), "%s", end + 1);
	it->time_ms = (int64_t)ms;
	it->fd = fd;
	it->off = off + hlen;
	it->len = len;
	it->seg = seg;
	it->next = pos + 2;
	return 1;
}

/* Segments in dir, sorted; *n_r of them.  NULL (n 0) if none. */
static uint64_t *
list_segments(const char *dir, size_t *n_r, struct ma_error *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint64_t *segs = NULL, seg;
	size_t n = 0, cap = 0;

	*n_r = 0;
	if (d == NULL) {
		ma_error_set(err, "opendir(%.300s): %s", dir, strerror(errno));
		return NULL;
	}
	while ((de = readdir(d)) != NULL) {
		if (!parse_seg_name(de->d_name, &seg))
			continue;
		if (n == cap) {
			cap = cap == 0 ? 8 : cap * 2;
			segs = ma_xrealloc(segs, cap, sizeof(*segs));
		}
		segs[n++] = seg;
	}
	closedir(d);
	for (size_t i = 1; i < n; i++) { /* few: insertion sort */
		uint64_t v = segs[i];
		size_t k = i;

		for (; k > 0 && segs[k - 1] > v; k--)
			segs[k] = segs[k - 1];
		segs[k] = v;
	}
	*n_r = n;
	return segs;
}

static void
read_cursor(const char *dir, uint64_t *seg_r, uint64_t *off_r)
{
	char path[4096], line[128];
	unsigned long long seg, off;
	FILE *fp;

	*seg_r = 0;
	*off_r = 0;
	snprintf(path, sizeof(path), "%s/cursor", dir);
	fp = fopen(path, "re");
	if (fp == NULL)
		return;
	if (fgets(line, sizeof(line), fp) != NULL &&
	    sscanf(line, "%llx %llu", &seg, &off) == 2) {
		*seg_r = seg;
		*off_r = off;
	}
	fclose(fp);
}

static void
write_cursor(struct ma_jlog *l)
{
	char tmp[4096], path[4096];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s/.cursor.tmp", l->dir);
	snprintf(path, sizeof(path), "%s/cursor", l->dir);
	fp = fopen(tmp, "we");
	if (fp == NULL) {
		ma_log_warn("journal log: %s", tmp);
		return;
	}
	fprintf(fp, "%016" PRIx64 " %" PRIu64 "\n", l->rseg, l->roff);
	if (fclose(fp) != 0 || rename(tmp, path) < 0)
		ma_log_warn("journal log: cursor %s", path);
}

/*
 * count_from - items from (seg, off) on in the given segments; the
 * oldest one's time into *oldest_ms_r.
 */
static uint64_t
count_from(const char *dir, const uint64_t *segs, size_t n, uint64_t seg,
    uint64_t off, int64_t *oldest_ms_r)
{
	uint64_t count = 0;

	*oldest_ms_r = 0;
	for (size_t i = 0; i < n; i++) {
		struct ma_jlog_item it;
		char path[4096];
		uint64_t pos = segs[i] == seg ? off : 0;
		int fd;

		if (segs[i] < seg)
			continue;
		seg_path(dir, segs[i], path, sizeof(path));
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		while (parse_item(fd, segs[i], pos, UINT64_MAX, &it) == 1) {
			if (count++ == 0)
				*oldest_ms_r = it.time_ms;
			pos = it.next;
		}
		close(fd);
	}
	return count;
}

struct ma_jlog *
ma_jlog_open(const char *dir, struct ma_error *err)
{
	struct ma_jlog *l;
	uint64_t *segs, last = 0;
	size_t n;
	int64_t oldest;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		ma_error_set(err, "mkdir(%.300s): %s", dir, strerror(errno));
		return NULL;
	}
	segs = list_segments(dir, &n, err);
	if (segs == NULL && err->msg[0] != '\0')
		return NULL;
	l = ma_xcalloc(1, sizeof(*l));
	l->dir = ma_xstrdup(dir);
	l->wfd = l->rfd = -1;
	l->rfd_seg = NO_SEG;
	MA_ASSERT(pthread_mutex_init(&l->lock, NULL) == 0);
	MA_ASSERT(pthread_cond_init(&l->cond, NULL) == 0);
	l->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (l->dir_fd < 0) {
		ma_error_set(err, "open(%.300s): %s", dir, strerror(errno));
		free(segs);
		ma_jlog_close(&l);
		return NULL;
	}
	if (n > 0)
		last = segs[n - 1];
	read_cursor(dir, &l->rseg, &l->roff);
	/* Never append to a segment of an earlier run: its tail may be
	   torn.  Everything in those segments counts as durable. */
	if (n == 0 || l->rseg > last) {
		/* Nothing left (or the cursor is past every segment): start
		   a segment after everything there was. */
		l->wseg = (n > 0 ? last : l->rseg) + 1;
		l->rseg = l->wseg;
		l->roff = 0;
	} else {
		l->wseg = last + 1;
		if (l->rseg < segs[0]) {
			l->rseg = segs[0];
			l->roff = 0;
		}
	}
	l->dseg = l->wseg;
	l->doff = 0;
	l->pending = count_from(dir, segs, n, l->rseg, l->roff, &oldest);
	free(segs);
	return l;
}

void
ma_jlog_close(struct ma_jlog **lp)
{
	struct ma_jlog *l = *lp;

	if (l == NULL)
		return;
	if (l->wfd >= 0)
		close(l->wfd);
	if (l->rfd >= 0)
		close(l->rfd);
	if (l->dir_fd >= 0)
		close(l->dir_fd);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l->dir);
	free(l);
	*lp = NULL;
}

/* new_segment - (under lock, no sync running) start segment l->wseg */
static int
new_segment(struct ma_jlog *l, struct ma_error *err)
{
	char path[4096];

	seg_path(l->dir, l->wseg, path, sizeof(path));
	l->wfd = open(
	    path, O_CREAT | O_EXCL | O_WRONLY | O_APPEND | O_CLOEXEC, 0600);
	if (l->wfd < 0)
		return ma_error_set(
		    err, "open(%.300s): %s", path, strerror(errno));
	l->wsize = 0;
	/* Its name must be on disk before an item in it counts as such. */
	if (fsync(l->dir_fd) < 0) {
		ma_error_set(err, "fsync(%.300s): %s", l->dir, strerror(errno));
		close(l->wfd);
		l->wfd = -1;
		(void)unlink(path);
		return -1;
	}
	return 0;
}

/* rotate - (under lock) finish the full segment, start the next */
static int
rotate(struct ma_jlog *l, struct ma_error *err)
{
	while (l->syncing)
		pthread_cond_wait(&l->cond, &l->lock);
	if (fdatasync(l->wfd) < 0)
		return ma_error_set(err,
		    "fdatasync(segment %016" PRIx64 "): %s", l->wseg,
		    strerror(errno));
	close(l->wfd);
	l->wfd = -1;
	/* Everything written so far is durable: the old segment is whole. */
	l->done_gen = l->req_gen;
	l->wseg++;
	l->dseg = l->wseg;
	l->doff = 0;
	pthread_cond_broadcast(&l->cond);
	return new_segment(l, err);
}

static int
write_item(struct ma_jlog *l, const char *hdr, size_t hlen, const void *data,
    size_t len, struct ma_error *err)
{
	static char crlf[] = "\r\n";
	/* writev does not write through iov_base: dropping const is safe */
	struct iovec iov[3] = {{(void *)(uintptr_t)hdr, hlen},
	    {(void *)(uintptr_t)data, len}, {crlf, 2}};
	size_t total = hlen + len + 2, done = 0;

	while (done < total) {
		struct iovec v[3];
		size_t skip = done, k = 0;
		ssize_t n;

		for (size_t i = 0; i < 3; i++) {
			if (skip >= iov[i].iov_len) {
				skip -= iov[i].iov_len;
				continue;
			}
			v[k].iov_base = (char *)iov[i].iov_base + skip;
			v[k].iov_len = iov[i].iov_len - skip;
			skip = 0;
			k++;
		}
		n = writev(l->wfd, v, (int)k);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;

			/* No half item may stay: later ones follow it. */
			if (ftruncate(l->wfd, (off_t)l->wsize) < 0)
				ma_log_warn("journal log: ftruncate");
			return ma_error_set(err,
			    "write(segment %016" PRIx64 "): %s", l->wseg,
			    strerror(e));
		}
		done += (size_t)n;
	}
	l->wsize += total;
	return 0;
}

int
ma_jlog_append(struct ma_jlog *l, const char *rcpt, const void *data,
    size_t len, struct ma_error *err)
{
	char hdr[HDR_MAX];
	unsigned long sum = crc32(0L, Z_NULL, 0);
	uint64_t need;
	int hlen, ret = 0;

	if (strlen(rcpt) > MA_JLOG_RCPT_MAX || strpbrk(rcpt, "\r\n") != NULL)
		return ma_error_set(err, "journal log: bad recipient");
	for (size_t off = 0; off < len;) {
		uInt n =
		    len - off > (1U << 30) ? (1U << 30) : (uInt)(len - off);

		sum = crc32(sum, (const Bytef *)data + off, n);
		off += n;
	}
	hlen = snprintf(hdr, sizeof(hdr), MAGIC "%zu %08lx %lld %s\r\n", len,
	    sum, (long long)ma_now_ms(), rcpt);

	pthread_mutex_lock(&l->lock);
	if ((l->wfd < 0 && new_segment(l, err) < 0) ||
	    (l->wsize + (uint64_t)hlen + len + 2 > SEG_MAX && l->wsize > 0 &&
		rotate(l, err) < 0) ||
	    write_item(l, hdr, (size_t)hlen, data, len, err) < 0) {
		pthread_mutex_unlock(&l->lock);
		return -1;
	}
	need = ++l->req_gen;
	l->pending++;
	for (;;) {
		if (l->done_gen >= need) {
			if (l->err_gen >= need) {
				ret = ma_error_set(err,
				    "fdatasync(journal log %.300s): %s", l->dir,
				    strerror(l->sync_errno));
			}
			break;
		}
		if (!l->syncing) {
			uint64_t upto = l->req_gen, seg = l->wseg,
				 off = l->wsize;
			int fd = l->wfd, r;

			l->syncing = true;
			pthread_mutex_unlock(&l->lock);
			r = fdatasync(fd);
			pthread_mutex_lock(&l->lock);
			l->syncing = false;
			if (upto > l->done_gen)
				l->done_gen = upto;
			if (r < 0) {
				l->err_gen = upto;
				l->sync_errno = errno;
			} else if (seg == l->dseg && off > l->doff) {
				l->doff = off;
			}
			pthread_cond_broadcast(&l->cond);
			continue;
		}
		pthread_cond_wait(&l->cond, &l->lock);
	}
	pthread_mutex_unlock(&l->lock);
	return ret;
}

/* reader_fd - the cursor's segment, open; -1 if it does not exist */
static int
reader_fd(struct ma_jlog *l)
{
	char path[4096];

	if (l->rfd_seg == l->rseg)
		return l->rfd;
	if (l->rfd >= 0)
		close(l->rfd);
	seg_path(l->dir, l->rseg, path, sizeof(path));
	l->rfd = open(path, O_RDONLY | O_CLOEXEC);
	l->rfd_seg = l->rfd >= 0 ? l->rseg : NO_SEG;
	return l->rfd;
}

/* next_segment - the cursor's segment is finished: remove it, go on */
static void
next_segment(struct ma_jlog *l, int fd)
{
	char path[4096];
	struct stat st;

	if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size > l->roff)
		ma_log_warnx("journal log: segment %016" PRIx64 " ends in %llu "
			     "bytes that are not a whole item (written before "
			     "a crash, never acknowledged): skipped",
		    l->rseg, (unsigned long long)st.st_size - l->roff);
	seg_path(l->dir, l->rseg, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		ma_log_warn("journal log: unlink %s", path);
	l->rseg++;
	l->roff = 0;
	write_cursor(l);
}

size_t
ma_jlog_peek(struct ma_jlog *l, struct ma_jlog_item *items, size_t max,
    uint64_t max_bytes)
{
	uint64_t dseg, doff, limit, bytes = 0, pos;
	size_t n = 0;
	int fd;

	pthread_mutex_lock(&l->lock);
	dseg = l->dseg;
	doff = l->doff;
	pthread_mutex_unlock(&l->lock);

	for (;;) {
		if (l->rseg > dseg || (l->rseg == dseg && l->roff >= doff))
			return 0;
		limit = l->rseg < dseg ? UINT64_MAX : doff;
		fd = reader_fd(l);
		if (fd >= 0 &&
		    parse_item(fd, l->rseg, l->roff, limit, &items[0]) == 1)
			break;
		if (l->rseg == dseg)
			return 0; /* cannot happen: durable bytes are items */
		next_segment(l, fd);
	}
	n = 1;
	bytes = items[0].len;
	pos = items[0].next;
	while (n < max && parse_item(fd, l->rseg, pos, limit, &items[n]) == 1 &&
	       strcmp(items[n].rcpt, items[0].rcpt) == 0 &&
	       bytes + items[n].len <= max_bytes) {
		bytes += items[n].len;
		pos = items[n].next;
		n++;
	}
	return n;
}

void
ma_jlog_consume(
    struct ma_jlog *l, const struct ma_jlog_item *last, size_t count)
{
	MA_ASSERT(last->seg == l->rseg);
	l->roff = last->next;
	pthread_mutex_lock(&l->lock);
	l->pending = l->pending >= count ? l->pending - count : 0;
	pthread_mutex_unlock(&l->lock);
	write_cursor(l);
}

uint64_t
ma_jlog_pending(struct ma_jlog *l)
{
	uint64_t n;

	pthread_mutex_lock(&l->lock);
	n = l->pending;
	pthread_mutex_unlock(&l->lock);
	return n;
}

int
ma_jlog_scan(const char *dir, uint64_t *pending_r, int64_t *oldest_ms_r,
    struct ma_error *err)
{
	uint64_t *segs, seg, off;
	size_t n;

	*pending_r = 0;
	*oldest_ms_r = 0;
	segs = list_segments(dir, &n, err);
	if (segs == NULL && err->msg[0] != '\0')
		return -1;
	read_cursor(dir, &seg, &off);
	if (n > 0 && seg < segs[0]) {
		seg = segs[0];
		off = 0;
	}
	*pending_r = count_from(dir, segs, n, seg, off, oldest_ms_r);
	free(segs);
	return 0;
}
