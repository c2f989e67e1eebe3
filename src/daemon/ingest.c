/* SPDX-License-Identifier: MIT */
/*
 * ingest.c - sensor connections and the spool directory.
 *
 * A sensor connection carries one record frame per SOCK_SEQPACKET
 * message.  Anything that is not a valid frame (garbage, an oversized
 * message, an unknown key, a bad escape) drops that connection with one
 * sanitised log line; other connections carry on.  After each commit every
 * connection that sent records gets "ack=<n>": n records of this
 * connection are durable.
 *
 * Spool files hold frames back to back.  Sensors write them under a
 * dot-name and rename them to *.spool when complete, so a file we see is
 * whole.  Its records join the filling batch (or, for a large file,
 * several batches) and the file is unlinked only once the batch with its
 * last record is committed and none failed since it was read.  No new
 * scan starts while files of the last one wait for their commit.  A file
 * that cannot be parsed is renamed to *.bad and reported, never deleted.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "ma-log.h"
#include "ma-proto.h"

#define SPOOL_FILE_MAX   (64 * 1024 * 1024)
#define SPOOL_FILES_SCAN 256 /* per scan, so one scan stays short */
#define SPOOL_BYTES_SCAN (64 * 1024 * 1024)

/*
 * accept_pause - out of file descriptors: stop watching the listening
 * socket for a second instead of spinning on a level-triggered event.
 */
static void
accept_pause(struct daemon *d, int listen_fd)
{
	struct epoll_event ev = {.events = 0};

	ma_log_warn("accept paused for 1 s (%u connections)", d->conn_count);
	ev.data.ptr = listen_fd == d->ingest_fd ? (void *)&d->ingest_fd
						: (void *)&d->control_fd;
	epoll_ctl(d->epfd, EPOLL_CTL_MOD, listen_fd, &ev);
	d->accept_resume_ms = ma_now_ms() + 1000;
}

void
ingest_accept_resume(struct daemon *d)
{
	struct epoll_event ev = {.events = EPOLLIN};

	d->accept_resume_ms = 0;
	ev.data.ptr = &d->ingest_fd;
	epoll_ctl(d->epfd, EPOLL_CTL_MOD, d->ingest_fd, &ev);
	ev.data.ptr = &d->control_fd;
	epoll_ctl(d->epfd, EPOLL_CTL_MOD, d->control_fd, &ev);
}

void
ingest_accept(struct daemon *d, int listen_fd, enum conn_kind kind)
{
	struct epoll_event ev = {.events = EPOLLIN};
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct conn *c;
	int fd;

	for (;;) {
		fd = accept4(
		    listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				accept_pause(d, listen_fd);
			else if (errno != EAGAIN && errno != EINTR &&
				 errno != ECONNABORTED)
				ma_log_warn("accept");
			return;
		}
		/* Control connections have their own small allowance, so a
		   flood of sensor connections cannot lock the operator out. */
		if ((kind == CONN_INGEST &&
			d->conn_count >= d->conf.max_connections) ||
		    (kind == CONN_CONTROL && d->control_count >= 16)) {
			ma_log_warnx("too many connections (%u), refusing one",
			    d->conn_count);
			close(fd);
			continue;
		}
		c = ma_xcalloc(1, sizeof(*c));
		c->fd = fd;
		c->kind = kind;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
			c->pid = cred.pid;
			c->uid = cred.uid;
		} else {
			c->uid = (uid_t)-1;
		}
		ev.data.ptr = c;
		if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			ma_log_warn("epoll_ctl");
			close(fd);
			free(c);
			continue;
		}
		if (kind == CONN_CONTROL)
			d->control_count++;
		c->next = d->conns;
		if (d->conns != NULL)
			d->conns->prev = c;
		d->conns = c;
		d->conn_count++;
	}
}

/* reject - drop a connection that sent something we cannot accept */
static void
reject(struct daemon *d, struct conn *c, const char *why)
{
	char clean[200];

	d->rejected_total++;
	ma_sanitize(why, strlen(why), clean, sizeof(clean));
	daemon_conn_close(d, c, clean);
}

/*
 * ingest_frame - decode and store one received frame; false once the
 * connection is closed (bad frame, store failure).
 */
static bool
ingest_frame(struct daemon *d, struct conn *c, struct ma_record *rec,
    const char *data, size_t len, int flags)
{
	struct ma_error err = {0};

	if ((flags & MSG_TRUNC) != 0 || len > MA_PROTO_MAX_FRAME) {
		reject(d, c, "frame larger than the protocol maximum");
		return false;
	}
	if (len == 0) {
		daemon_conn_close(d, c, NULL);
		return false;
	}
	ma_record_reset(rec);
	if (ma_proto_frame_len(data, len) != (long)len ||
	    ma_proto_decode_record(data, len, rec, &err) < 0) {
		char why[sizeof(err.msg) + 32];

		snprintf(why, sizeof(why), "bad frame: %s",
		    err.msg[0] != '\0' ? err.msg : "not exactly one frame");
		reject(d, c, why);
		return false;
	}
	if (daemon_batch_add(d, rec, c) < 0) {
		reject(d, c, "record too large to store");
		return false;
	}
	/* A full batch may have waited for the writer, and a failed commit
	   closes the connections it had records of. */
	return !c->closing;
}

void
ingest_readable(struct daemon *d, struct conn *c)
{
	struct mmsghdr msgs[INGEST_RECV_BATCH];
	struct iovec iov[INGEST_RECV_BATCH];
	struct ma_record rec;
	int budget = 1024; /* frames per wakeup: stay fair to others */
	int n;

	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < INGEST_RECV_BATCH; i++) {
		iov[i].iov_base = d->recvbufs[i];
		iov[i].iov_len = MA_PROTO_MAX_FRAME + 1;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	ma_record_init(&rec);
	while (budget > 0 && !c->closing) {
		n = recvmmsg(
		    c->fd, msgs, INGEST_RECV_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				daemon_conn_close(d, c, strerror(errno));
			break;
		}
		if (n == 0) {
			daemon_conn_close(d, c, NULL);
			break;
		}
		budget -= n;
		for (int i = 0; i < n && !c->closing; i++) {
			if (!ingest_frame(d, c, &rec, d->recvbufs[i],
				msgs[i].msg_len, msgs[i].msg_hdr.msg_flags))
				break;
		}
		if (n < INGEST_RECV_BATCH)
			break; /* drained for now */
	}
	ma_record_deinit(&rec);
}

void
ingest_ack(struct conn *c, uint64_t n)
{
	char buf[64];
	int len;

	len = snprintf(buf, sizeof(buf), "ack=%llu\n\n", (unsigned long long)n);
	/* A full socket buffer only delays this ack: the next one is
	   cumulative and covers it. */
	if (send(c->fd, buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL) == len)
		c->acked = n;
}

/* The spool. */

static bool
is_spool_name(const char *name)
{
	size_t len = strlen(name);

	return name[0] != '.' && len > 6 &&
	       strcmp(name + len - 6, ".spool") == 0;
}

static void
quarantine(const char *path, const char *why)
{
	char bad[4096];

	snprintf(bad, sizeof(bad), "%s.bad", path);
	ma_log_warnx(
	    "spool: %s: %s; kept as %s for inspection", path, why, bad);
	if (rename(path, bad) < 0)
		ma_log_warn("spool: rename %s", path);
}

/*
 * read_file - the whole of a spool file.  The directory is writable by
 * every mail uid, so anything may sit there: only a regular file with one
 * link is read (a FIFO would block the daemon, a hard link could expose
 * another file); EINVAL reports anything else.
 */
static int
read_file(const char *path, struct ma_buf *out)
{
	char chunk[65536];
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		if (ma_buf_append(out, chunk, (size_t)n) < 0) {
			close(fd);
			errno = EFBIG;
			return -1;
		}
	}
	close(fd);
	return n < 0 ? -1 : 0;
}

/* spool_load - add every record of one file to the batch */
static int
spool_load(struct daemon *d, const char *path, struct ma_buf *data)
{
	struct ma_record rec;
	struct ma_error err = {0};
	size_t off = 0;
	unsigned int frames = 0, bad = 0;
	long len;

	ma_buf_reset(data);
	if (read_file(path, data) < 0) {
		if (errno == EFBIG)
			quarantine(path, "larger than 64 MiB");
		else if (errno == EINVAL)
			quarantine(path, "not a regular file with one link");
		else
			ma_log_warn("spool: read %s", path);
		return -1;
	}
	ma_record_init(&rec);
	while (off < data->len) {
		len = ma_proto_frame_len(data->data + off, data->len - off);
		if (len <= 0) {
			/* A truncated tail: the writer died mid-frame. */
			ma_log_warnx("spool: %s: %zu trailing bytes are not a "
				     "complete frame; ignored",
			    path, data->len - off);
			break;
		}
		ma_record_reset(&rec);
		memset(&err, 0, sizeof(err));
		if (ma_proto_decode_record(
			data->data + off, (size_t)len, &rec, &err) < 0) {
			char clean[200];

			ma_sanitize(
			    err.msg, strlen(err.msg), clean, sizeof(clean));
			ma_log_warnx("spool: %s: frame %u rejected: %s", path,
			    frames + bad + 1, clean);
			bad++;
		} else if (daemon_batch_add(d, &rec, NULL) < 0) {
			ma_log_warnx("spool: %s: frame %u rejected: too large "
				     "to store",
			    path, frames + bad + 1);
			bad++;
		} else {
			frames++;
		}
		off += (size_t)len;
	}
	ma_record_deinit(&rec);
	if (frames == 0 && bad > 0) {
		quarantine(path, "no valid record");
		return -1;
	}
	return 0;
}

void
spool_scan(struct daemon *d)
{
	DIR *dir = opendir(d->conf.spool_dir);
	struct dirent *de;
	struct ma_buf data;
	unsigned int files = 0;
	size_t bytes = 0;
	char path[4096];

	/* Files of the previous scan are still waiting for their commit. */
	if (d->spool_pending > 0)
		return;
	if (dir == NULL) {
		ma_log_warn("spool: opendir %s", d->conf.spool_dir);
		return;
	}
	ma_buf_init(&data, SPOOL_FILE_MAX);
	while ((de = readdir(dir)) != NULL && files < SPOOL_FILES_SCAN &&
	       bytes < SPOOL_BYTES_SCAN) {
		uint64_t epoch = d->fail_epoch;

		if (!is_spool_name(de->d_name))
			continue;
		snprintf(
		    path, sizeof(path), "%s/%s", d->conf.spool_dir, de->d_name);
		if (spool_load(d, path, &data) < 0)
			continue;
		bytes += data.len;
		daemon_batch_spooled(d, path, epoch);
		files++;
	}
	closedir(dir);
	ma_buf_deinit(&data);
	if (files > 0) {
		d->spool_files_total += files;
		ma_log_info("spool: drained %u file(s)", files);
	}
}

void
spool_count(struct daemon *d, unsigned int *pending_r, unsigned int *bad_r)
{
	DIR *dir = opendir(d->conf.spool_dir);
	struct dirent *de;
	size_t len;

	*pending_r = *bad_r = 0;
	if (dir == NULL)
		return;
	while ((de = readdir(dir)) != NULL) {
		len = strlen(de->d_name);
		if (is_spool_name(de->d_name))
			(*pending_r)++;
		else if (len > 4 && strcmp(de->d_name + len - 4, ".bad") == 0)
			(*bad_r)++;
	}
	closedir(dir);
}
