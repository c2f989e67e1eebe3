/* SPDX-License-Identifier: MIT */
/*
 * Delivery of encoded records from a mail process to mailauditd.
 *
 * Model: one AF_UNIX SOCK_SEQPACKET connection per process, one record
 * per message, so the kernel keeps frame boundaries and a frame is never
 * half-sent.  The daemon answers "ack=<n>" frames, n being the number of
 * frames received on this connection that it has durably committed.
 * Frames stay in memory until acknowledged.  Whenever the daemon cannot
 * take them quickly (no socket, send would block, connection lost, more
 * than MAILAUDIT_BACKLOG_MAX bytes or MAILAUDIT_BACKLOG_AGE_MS old, or
 * still unacknowledged at logout) they go to a spool file, written to a
 * hidden temporary name, fdatasync()ed and renamed to *.spool, which the
 * daemon imports.  A frame may thus reach the daemon twice; it
 * de-duplicates by record id.  Only when the spool itself fails are
 * records lost, and then we say so with i_error.
 *
 * Frames wait back to back in one buffer that lives as long as the
 * process (allocated when the first user is configured), not in one
 * allocation each: an IMAP session then sends and forgets records
 * without touching the heap, and when an ack happens to arrive does not
 * change how Dovecot's own allocations are laid out.
 *
 * Workload: a handful of small frames per IMAP command.  Nothing here
 * blocks except the bounded wait at logout (a few ms) and the fdatasync
 * of a spool file, which only happens when the daemon is unavailable.
 * Acks are read opportunistically (on every send and at logout), not
 * from the ioloop, so the plugin never registers I/O that could outlive
 * an ioloop switch.
 */

#include "lib.h"
#include "randgen.h"
#include "hostpid.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ma-proto.h"
#include "mailaudit-plugin.h"

#define MAILAUDIT_BACKLOG_MAX    (256 * 1024)
#define MAILAUDIT_BACKLOG_AGE_MS 2000
#define MAILAUDIT_RETRY_MS       1000
#define MAILAUDIT_WARN_MS        (60 * 1000)
/* The queue buffer's size at start, and the most it keeps when empty. */
#define MAILAUDIT_QUEUE_INITIAL (16 * 1024)
#define MAILAUDIT_QUEUE_KEEP    (64 * 1024)

/* A queued frame: this header, then len bytes, padded to 8 bytes. */
struct mailaudit_queued {
	int64_t queued_ms;
	uint64_t seq; /* position on the connection, 0 = not sent yet */
	size_t len;
	char data[];
};
#define MAILAUDIT_QUEUED_SIZE(len)                                             \
	((sizeof(struct mailaudit_queued) + (len) + 7) & ~(size_t)7)

static struct {
	char *socket_path, *spool_dir;
	int fd;
	int64_t last_fail_ms, last_warn_ms;
	uint64_t sent; /* frames sent on the current connection */
	/* Queued frames are queue[queue_head, queue_tail). */
	char *queue;
	size_t queue_head, queue_tail, queue_cap;
	unsigned int count;
	size_t bytes;
	unsigned int spool_counter;
	/* Decodes acks; reused so that an ack allocates nothing. */
	struct ma_kvframe ack;
	bool ack_ready;
} mailaudit_send = {.fd = -1, .last_fail_ms = -MAILAUDIT_RETRY_MS};

static void mailaudit_send_warn(const char *fmt, ...) ATTR_FORMAT(1, 2);

/* mailaudit_send_warn - a warning, at most once a minute per process. */
static void
mailaudit_send_warn(const char *fmt, ...)
{
	int64_t now = ma_now_ms();
	va_list args;

	if (now - mailaudit_send.last_warn_ms < MAILAUDIT_WARN_MS &&
	    mailaudit_send.last_warn_ms != 0)
		return;
	mailaudit_send.last_warn_ms = now;
	va_start(args, fmt);
	i_warning("mailaudit: %s", t_strdup_vprintf(fmt, args));
	va_end(args);
}

static struct mailaudit_queued *
mailaudit_queue_first(void)
{
	if (mailaudit_send.queue_head == mailaudit_send.queue_tail)
		return NULL;
	return (struct mailaudit_queued *)(mailaudit_send.queue +
					   mailaudit_send.queue_head);
}

static struct mailaudit_queued *
mailaudit_queue_next(const struct mailaudit_queued *q)
{
	size_t next = (size_t)((const char *)q - mailaudit_send.queue) +
		      MAILAUDIT_QUEUED_SIZE(q->len);

	if (next == mailaudit_send.queue_tail)
		return NULL;
	return (struct mailaudit_queued *)(mailaudit_send.queue + next);
}

static void
mailaudit_queue_alloc(size_t cap)
{
	i_free(mailaudit_send.queue);
	mailaudit_send.queue = i_malloc(cap);
	mailaudit_send.queue_cap = cap;
	mailaudit_send.queue_head = mailaudit_send.queue_tail = 0;
}

/* mailaudit_queue_append - room for a frame of len bytes at the end. */
static struct mailaudit_queued *
mailaudit_queue_append(size_t len)
{
	size_t need = MAILAUDIT_QUEUED_SIZE(len), used, cap;
	struct mailaudit_queued *q;

	if (mailaudit_send.queue == NULL)
		mailaudit_queue_alloc(MAILAUDIT_QUEUE_INITIAL);
	if (mailaudit_send.queue_cap - mailaudit_send.queue_tail < need) {
		/* Move the frames still waiting to the front, then grow if
		   that is not enough (only while the daemon lags). */
		used = mailaudit_send.queue_tail - mailaudit_send.queue_head;
		memmove(mailaudit_send.queue,
		    mailaudit_send.queue + mailaudit_send.queue_head, used);
		mailaudit_send.queue_head = 0;
		mailaudit_send.queue_tail = used;
		if (mailaudit_send.queue_cap - used < need) {
			cap = mailaudit_send.queue_cap;
			while (cap - used < need)
				cap *= 2;
			mailaudit_send.queue = i_realloc(mailaudit_send.queue,
			    mailaudit_send.queue_cap, cap);
			mailaudit_send.queue_cap = cap;
		}
	}
	q = (struct mailaudit_queued *)(mailaudit_send.queue +
					mailaudit_send.queue_tail);
	mailaudit_send.queue_tail += need;
	mailaudit_send.count++;
	mailaudit_send.bytes += len;
	return q;
}

/* mailaudit_queue_drop_first - forget the oldest frame. */
static void
mailaudit_queue_drop_first(void)
{
	struct mailaudit_queued *q = mailaudit_queue_first();

	mailaudit_send.queue_head += MAILAUDIT_QUEUED_SIZE(q->len);
	mailaudit_send.count--;
	mailaudit_send.bytes -= q->len;
	if (mailaudit_send.queue_head == mailaudit_send.queue_tail)
		mailaudit_send.queue_head = mailaudit_send.queue_tail = 0;
}

static void
mailaudit_queue_free_all(void)
{
	mailaudit_send.queue_head = mailaudit_send.queue_tail = 0;
	mailaudit_send.count = 0;
	mailaudit_send.bytes = 0;
	/* A backlog from a stalled daemon should not stay resident. */
	if (mailaudit_send.queue_cap > MAILAUDIT_QUEUE_KEEP)
		mailaudit_queue_alloc(MAILAUDIT_QUEUE_INITIAL);
}

/*
 * mailaudit_spool_name - a fresh, unguessable base name.  The spool is
 * writable by every mail uid; with predictable names another local user
 * could pre-create them and make our writes fail.
 */
static const char *
mailaudit_spool_name(void)
{
	uint64_t rnd;

	random_fill(&rnd, sizeof(rnd));
	return t_strdup_printf("%s-%lld-%u-%016llx", my_pid,
	    (long long)ma_now_ms(), ++mailaudit_send.spool_counter,
	    (unsigned long long)rnd);
}

static int
mailaudit_spool_create(
    const char *dir, const char **tmp_path_r, const char **error_r)
{
	int fd = -1;

	for (int attempt = 0; attempt < 4 && fd < 0; attempt++) {
		*tmp_path_r =
		    t_strdup_printf("%s/.tmp-%s", dir, mailaudit_spool_name());
		fd = open(*tmp_path_r,
		    O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0640);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0)
		*error_r = t_strdup_printf(
		    "open(%s) failed: %s", *tmp_path_r, strerror(errno));
	return fd;
}

/* mailaudit_spool_publish - rename to *.spool, never over another file */
static int
mailaudit_spool_publish(
    const char *dir, const char *tmp_path, const char **error_r)
{
	const char *path = NULL;

	for (int attempt = 0; attempt < 4; attempt++) {
		path =
		    t_strdup_printf("%s/%s.spool", dir, mailaudit_spool_name());
		if (renameat2(AT_FDCWD, tmp_path, AT_FDCWD, path,
			RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EEXIST)
			break;
	}
	*error_r =
	    t_strdup_printf("rename(%s) failed: %s", path, strerror(errno));
	return -1;
}

/* mailaudit_spool_write - all queued frames into one new spool file. */
static int
mailaudit_spool_write(const char **error_r)
{
	const char *dir = mailaudit_send.spool_dir;
	struct mailaudit_queued *q;
	const char *tmp_path;
	int fd;

	fd = mailaudit_spool_create(dir, &tmp_path, error_r);
	if (fd < 0)
		return -1;
	/* Dovecot's umask (0077 by default) would hide the file from the
	   daemon, which reads it through the spool directory's group. */
	if (fchmod(fd, 0640) < 0) {
		*error_r = t_strdup_printf(
		    "fchmod(%s) failed: %s", tmp_path, strerror(errno));
		goto fail;
	}
	for (q = mailaudit_queue_first(); q != NULL;
	     q = mailaudit_queue_next(q)) {
		if (ma_write_all(fd, q->data, q->len) < 0) {
			*error_r = t_strdup_printf(
			    "write(%s) failed: %s", tmp_path, strerror(errno));
			goto fail;
		}
	}
	if (fdatasync(fd) < 0) {
		*error_r = t_strdup_printf(
		    "fdatasync(%s) failed: %s", tmp_path, strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		*error_r = t_strdup_printf(
		    "close(%s) failed: %s", tmp_path, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (mailaudit_spool_publish(dir, tmp_path, error_r) < 0)
		goto fail;
	return 0;
fail:
	if (fd >= 0)
		i_close_fd(&fd);
	(void)unlink(tmp_path);
	return -1;
}

/* mailaudit_spool_all - move every queued frame to the spool. */
static void
mailaudit_spool_all(const char *why)
{
	const char *error;

	if (mailaudit_send.count == 0)
		return;
	T_BEGIN
	{
		if (mailaudit_spool_write(&error) < 0) {
			/* The one place where audit records vanish: loud. */
			i_error("mailaudit: %u audit records LOST (%s, and "
				"spooling failed: %s)",
			    mailaudit_send.count, why, error);
		} else {
			mailaudit_send_warn("%s: %u records spooled to %s", why,
			    mailaudit_send.count, mailaudit_send.spool_dir);
		}
	}
	T_END;
	mailaudit_queue_free_all();
}

static void
mailaudit_disconnect(void)
{
	if (mailaudit_send.fd >= 0)
		i_close_fd(&mailaudit_send.fd);
	mailaudit_send.sent = 0;
	mailaudit_send.last_fail_ms = ma_now_ms();
}

/* mailaudit_fail - the connection is unusable: spool and drop it. */
static void
mailaudit_fail(const char *why)
{
	mailaudit_spool_all(why);
	mailaudit_disconnect();
}

static void
mailaudit_connect(void)
{
	struct sockaddr_un sa;
	size_t len = strlen(mailaudit_send.socket_path);
	int fd;

	if (ma_now_ms() - mailaudit_send.last_fail_ms < MAILAUDIT_RETRY_MS)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (len >= sizeof(sa.sun_path)) {
		mailaudit_send_warn(
		    "socket path too long: %s", mailaudit_send.socket_path);
		mailaudit_send.last_fail_ms = ma_now_ms();
		return;
	}
	memcpy(sa.sun_path, mailaudit_send.socket_path, len);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		mailaudit_send_warn("socket() failed: %s", strerror(errno));
		mailaudit_send.last_fail_ms = ma_now_ms();
		return;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		/* A full listen backlog gives EAGAIN: treat as down. */
		mailaudit_send_warn("connect(%s) failed: %s",
		    mailaudit_send.socket_path, strerror(errno));
		i_close_fd(&fd);
		mailaudit_send.last_fail_ms = ma_now_ms();
		return;
	}
	mailaudit_send.fd = fd;
	mailaudit_send.sent = 0;
}

/* mailaudit_ack - forget the frames the daemon has committed. */
static void
mailaudit_ack(const char *frame, size_t len)
{
	struct ma_kvframe *kv = &mailaudit_send.ack;
	struct mailaudit_queued *q;
	struct ma_error err;
	const char *value;
	uint64_t n;
	bool ok;

	i_assert(mailaudit_send.ack_ready);
	memset(&err, 0, sizeof(err));
	ok = ma_kvframe_decode(kv, frame, len, &err) == 0 &&
	     (value = ma_kvframe_get(kv, "ack")) != NULL &&
	     ma_parse_u64(value, mailaudit_send.sent, &n) == 0;
	ma_kvframe_reset(kv);
	if (!ok) {
		mailaudit_fail("bad reply from daemon");
		return;
	}
	while (
	    (q = mailaudit_queue_first()) != NULL && q->seq != 0 && q->seq <= n)
		mailaudit_queue_drop_first();
}

static void
mailaudit_read_acks(void)
{
	char buf[512];
	ssize_t ret;

	while (mailaudit_send.fd >= 0) {
		ret = recv(mailaudit_send.fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (ret > 0) {
			mailaudit_ack(buf, (size_t)ret);
		} else if (ret == 0) {
			mailaudit_fail("daemon closed the connection");
		} else if (errno == EAGAIN) {
			return;
		} else if (errno != EINTR) {
			mailaudit_fail(t_strdup_printf(
			    "recv() failed: %s", strerror(errno)));
		}
	}
}

static void
mailaudit_send_unsent(void)
{
	struct mailaudit_queued *q;
	ssize_t ret;

	for (q = mailaudit_queue_first(); q != NULL;
	     q = mailaudit_queue_next(q)) {
		if (q->seq != 0)
			continue;
		ret = send(mailaudit_send.fd, q->data, q->len,
		    MSG_DONTWAIT | MSG_NOSIGNAL);
		if (ret < 0 && errno == EINTR) {
			ret = send(mailaudit_send.fd, q->data, q->len,
			    MSG_DONTWAIT | MSG_NOSIGNAL);
		}
		if (ret < 0) {
			/* EAGAIN (daemon busy), EMSGSIZE, EPIPE ...: never
			   wait, the spool takes it. */
			mailaudit_fail(t_strdup_printf(
			    "send() failed: %s", strerror(errno)));
			return;
		}
		q->seq = ++mailaudit_send.sent;
	}
}

static void
mailaudit_pump(void)
{
	struct mailaudit_queued *oldest;
	int64_t now;

	if (mailaudit_send.fd < 0)
		mailaudit_connect();
	if (mailaudit_send.fd < 0) {
		mailaudit_spool_all("daemon not reachable");
		return;
	}
	mailaudit_read_acks();
	if (mailaudit_send.fd >= 0)
		mailaudit_send_unsent();
	now = ma_now_ms();
	oldest = mailaudit_queue_first();
	if (mailaudit_send.bytes > MAILAUDIT_BACKLOG_MAX) {
		mailaudit_spool_all("daemon slow to acknowledge (backlog)");
	} else if (oldest != NULL &&
		   now - oldest->queued_ms > MAILAUDIT_BACKLOG_AGE_MS) {
		mailaudit_spool_all("daemon slow to acknowledge");
	}
}

void
mailaudit_send_frame(const char *frame, size_t len)
{
	struct mailaudit_queued *q;

	if (mailaudit_send.socket_path == NULL) {
		i_error("mailaudit: record emitted before configuration, "
			"1 record lost");
		return;
	}
	q = mailaudit_queue_append(len);
	q->queued_ms = ma_now_ms();
	q->seq = 0;
	q->len = len;
	memcpy(q->data, frame, len);
	T_BEGIN
	{
		mailaudit_pump();
	}
	T_END;
}

void
mailaudit_send_flush(unsigned int wait_msecs)
{
	int64_t deadline = ma_now_ms() + wait_msecs;
	struct pollfd pfd;
	int64_t left;

	T_BEGIN
	{
		if (mailaudit_send.count > 0)
			mailaudit_pump();
		while (mailaudit_send.count > 0 && mailaudit_send.fd >= 0) {
			left = deadline - ma_now_ms();
			if (left <= 0)
				break;
			pfd.fd = mailaudit_send.fd;
			pfd.events = POLLIN;
			pfd.revents = 0;
			if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
				break;
			mailaudit_read_acks();
		}
		mailaudit_spool_all("daemon did not acknowledge in time");
	}
	T_END;
}

void
mailaudit_send_configure(const char *socket_path, const char *spool_dir)
{
	if (mailaudit_send.socket_path != NULL &&
	    strcmp(mailaudit_send.socket_path, socket_path) == 0 &&
	    strcmp(mailaudit_send.spool_dir, spool_dir) == 0)
		return;
	if (mailaudit_send.socket_path != NULL) {
		mailaudit_send_flush(0);
		mailaudit_disconnect();
		mailaudit_send.last_fail_ms = -MAILAUDIT_RETRY_MS;
	}
	i_free(mailaudit_send.socket_path);
	i_free(mailaudit_send.spool_dir);
	mailaudit_send.socket_path = i_strdup(socket_path);
	mailaudit_send.spool_dir = i_strdup(spool_dir);
	/* What the session keeps is allocated now, at login, not between
	   two of the session's commands. */
	if (mailaudit_send.queue == NULL)
		mailaudit_queue_alloc(MAILAUDIT_QUEUE_INITIAL);
	if (!mailaudit_send.ack_ready) {
		ma_kvframe_init(&mailaudit_send.ack);
		/* reset keeps the arena's first chunk for every later ack */
		(void)ma_arena_alloc(&mailaudit_send.ack.arena, 1);
		ma_kvframe_reset(&mailaudit_send.ack);
		mailaudit_send.ack_ready = TRUE;
	}
}

void
mailaudit_send_deinit(void)
{
	if (mailaudit_send.socket_path != NULL)
		mailaudit_send_flush(20);
	if (mailaudit_send.fd >= 0)
		i_close_fd(&mailaudit_send.fd);
	mailaudit_queue_free_all();
	i_free(mailaudit_send.queue);
	mailaudit_send.queue_cap = 0;
	i_free(mailaudit_send.socket_path);
	i_free(mailaudit_send.spool_dir);
	if (mailaudit_send.ack_ready) {
		ma_kvframe_deinit(&mailaudit_send.ack);
		mailaudit_send.ack_ready = FALSE;
	}
}
