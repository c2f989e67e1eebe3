/* SPDX-License-Identifier: MIT */
/*
 * ma-client.c - frames to mailauditd with acks and a spool fallback (see
 * ma-client.h).
 *
 * The model is the Dovecot plugin's (src/dovecot/mailaudit-send.c) made
 * thread-safe for a multi-threaded sensor: the milter's libmilter threads
 * call ma_client_send concurrently and a timer calls ma_client_pump.  The
 * workload is a few frames per message, so one mutex held for a
 * non-blocking send() is cheap; only a spool write (daemon unavailable)
 * holds it for an fdatasync.
 */

#include "ma-client.h"
#include "ma-proto.h"
#include "ma-util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define BACKLOG_MAX    (1024 * 1024)
#define BACKLOG_AGE_MS 2000
#define RETRY_MS       1000
#define WARN_MS        (60 * 1000)

struct queued {
	struct queued *next;
	int64_t queued_ms;
	uint64_t seq; /* position on the connection, 0 = not sent yet */
	size_t len;
	char data[];
};

struct ma_client {
	pthread_mutex_t lock;
	char *socket_path, *spool_dir;
	ma_client_log_fn *log;
	int fd;
	int64_t last_fail_ms, last_warn_ms;
	uint64_t sent; /* frames sent on the current connection */
	struct queued *head, *tail;
	unsigned int count;
	size_t bytes;
	unsigned int spool_counter;
};

static void client_log(struct ma_client *c, int is_error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* client_log - errors always, warnings at most once a minute. */
static void
client_log(struct ma_client *c, int is_error, const char *fmt, ...)
{
	char msg[512];
	int64_t now = ma_now_ms();
	va_list ap;

	if (!is_error) {
		if (c->last_warn_ms != 0 && now - c->last_warn_ms < WARN_MS)
			return;
		c->last_warn_ms = now;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->log(is_error, msg);
}

struct ma_client *
ma_client_create(
    const char *socket_path, const char *spool_dir, ma_client_log_fn *log)
{
	struct ma_client *c = ma_xcalloc(1, sizeof(*c));

	MA_ASSERT(pthread_mutex_init(&c->lock, NULL) == 0);
	c->socket_path = ma_xstrdup(socket_path);
	c->spool_dir = ma_xstrdup(spool_dir);
	c->log = log;
	c->fd = -1;
	c->last_fail_ms = -RETRY_MS;
	return c;
}

static void
queue_free_all(struct ma_client *c)
{
	struct queued *q, *next;

	for (q = c->head; q != NULL; q = next) {
		next = q->next;
		free(q);
	}
	c->head = c->tail = NULL;
	c->count = 0;
	c->bytes = 0;
}

/*
 * spool_name - a fresh, unguessable name: the spool is shared with every
 * sensor, and predictable names could be pre-created to make ours fail.
 */
static void
spool_name(struct ma_client *c, const char *prefix, const char *suffix,
    char *out, size_t size)
{
	uint64_t rnd = 0;

	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd ^= (uint64_t)ma_now_ms() * 0x9E3779B97F4A7C15ull;
	snprintf(out, size, "%s/%smilter-%ld-%lld-%u-%016llx%s", c->spool_dir,
	    prefix, (long)getpid(), (long long)ma_now_ms(), ++c->spool_counter,
	    (unsigned long long)rnd, suffix);
}

/* spool_write - every queued frame into one new spool file */
static int
spool_write(struct ma_client *c, char *error, size_t size)
{
	char tmp[4096], path[4096];
	struct queued *q;
	int fd = -1;

	for (int attempt = 0; attempt < 4 && fd < 0; attempt++) {
		spool_name(c, ".tmp-", "", tmp, sizeof(tmp));
		fd = open(tmp,
		    O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0640);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		snprintf(error, size, "open(%.300s): %s", tmp, strerror(errno));
		return -1;
	}
	/* The daemon reads the file through the spool directory's group. */
	if (fchmod(fd, 0640) < 0)
		goto fail;
	for (q = c->head; q != NULL; q = q->next) {
		if (ma_write_all(fd, q->data, q->len) < 0)
			goto fail;
	}
	if (fdatasync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	for (int attempt = 0; attempt < 4; attempt++) {
		spool_name(c, "", ".spool", path, sizeof(path));
		if (renameat2(
			AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EEXIST)
			break;
	}
fail:
	snprintf(error, size, "%.300s: %s", tmp, strerror(errno));
	if (fd >= 0)
		close(fd);
	(void)unlink(tmp);
	return -1;
}

/* spool_all - move every queued frame to the spool */
static void
spool_all(struct ma_client *c, const char *why)
{
	char error[512];

	if (c->head == NULL)
		return;
	if (spool_write(c, error, sizeof(error)) < 0) {
		/* The one place where audit records vanish: loud. */
		client_log(c, 1,
		    "%u audit records LOST (%s, and spooling failed: %s)",
		    c->count, why, error);
	} else {
		client_log(c, 0, "%s: %u records spooled to %s", why, c->count,
		    c->spool_dir);
	}
	queue_free_all(c);
}

static void
disconnect(struct ma_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->sent = 0;
	c->last_fail_ms = ma_now_ms();
}

/* fail - the connection is unusable: spool everything and drop it */
static void
fail(struct ma_client *c, const char *why)
{
	spool_all(c, why);
	disconnect(c);
}

static void
client_connect(struct ma_client *c)
{
	struct sockaddr_un sa;
	size_t len = strlen(c->socket_path);
	int fd;

	if (ma_now_ms() - c->last_fail_ms < RETRY_MS)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (len >= sizeof(sa.sun_path)) {
		client_log(c, 0, "socket path too long: %s", c->socket_path);
		c->last_fail_ms = ma_now_ms();
		return;
	}
	memcpy(sa.sun_path, c->socket_path, len);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		client_log(
		    c, 0, "connect(%s): %s", c->socket_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		c->last_fail_ms = ma_now_ms();
		return;
	}
	c->fd = fd;
	c->sent = 0;
}

/* ack - forget the frames the daemon has committed */
static void
ack(struct ma_client *c, const char *frame, size_t len)
{
	struct ma_kvframe kv;
	struct ma_error err = {0};
	const char *value;
	struct queued *q;
	uint64_t n;

	ma_kvframe_init(&kv);
	if (ma_kvframe_decode(&kv, frame, len, &err) < 0 ||
	    (value = ma_kvframe_get(&kv, "ack")) == NULL ||
	    ma_parse_u64(value, c->sent, &n) < 0) {
		ma_kvframe_deinit(&kv);
		fail(c, "bad reply from daemon");
		return;
	}
	ma_kvframe_deinit(&kv);
	while ((q = c->head) != NULL && q->seq != 0 && q->seq <= n) {
		c->head = q->next;
		if (c->head == NULL)
			c->tail = NULL;
		c->count--;
		c->bytes -= q->len;
		free(q);
	}
}

static void
read_acks(struct ma_client *c)
{
	char buf[512];

	while (c->fd >= 0) {
		ssize_t ret = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (ret > 0)
			ack(c, buf, (size_t)ret);
		else if (ret == 0)
			fail(c, "daemon closed the connection");
		else if (errno == EAGAIN)
			return;
		else if (errno != EINTR)
			fail(c, "recv() failed");
	}
}

static void
send_unsent(struct ma_client *c)
{
	for (struct queued *q = c->head; q != NULL; q = q->next) {
		ssize_t ret;

		if (q->seq != 0)
			continue;
		do {
			ret = send(c->fd, q->data, q->len,
			    MSG_DONTWAIT | MSG_NOSIGNAL);
		} while (ret < 0 && errno == EINTR);
		if (ret < 0) {
			/* Busy or broken: never wait, the spool takes it. */
			fail(c, "send() failed");
			return;
		}
		q->seq = ++c->sent;
	}
}

static void
pump_locked(struct ma_client *c)
{
	if (c->fd < 0)
		client_connect(c);
	if (c->fd < 0) {
		spool_all(c, "daemon not reachable");
		return;
	}
	read_acks(c);
	if (c->fd >= 0)
		send_unsent(c);
	if (c->bytes > BACKLOG_MAX)
		spool_all(c, "daemon slow to acknowledge (backlog)");
	else if (c->head != NULL &&
		 ma_now_ms() - c->head->queued_ms > BACKLOG_AGE_MS)
		spool_all(c, "daemon slow to acknowledge");
}

void
ma_client_send(struct ma_client *c, const char *frame, size_t len)
{
	struct queued *q = ma_xmalloc(sizeof(*q) + len);

	q->next = NULL;
	q->queued_ms = ma_now_ms();
	q->seq = 0;
	q->len = len;
	memcpy(q->data, frame, len);
	pthread_mutex_lock(&c->lock);
	if (c->tail == NULL)
		c->head = q;
	else
		c->tail->next = q;
	c->tail = q;
	c->count++;
	c->bytes += len;
	pump_locked(c);
	pthread_mutex_unlock(&c->lock);
}

void
ma_client_pump(struct ma_client *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->head != NULL || c->fd >= 0)
		pump_locked(c);
	pthread_mutex_unlock(&c->lock);
}

void
ma_client_flush(struct ma_client *c, unsigned int wait_ms)
{
	int64_t deadline = ma_now_ms() + wait_ms;

	pthread_mutex_lock(&c->lock);
	if (c->head != NULL)
		pump_locked(c);
	while (c->head != NULL && c->fd >= 0) {
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		int64_t left = deadline - ma_now_ms();

		if (left <= 0)
			break;
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			break;
		read_acks(c);
	}
	spool_all(c, "daemon did not acknowledge in time");
	pthread_mutex_unlock(&c->lock);
}

unsigned int
ma_client_pending(struct ma_client *c)
{
	unsigned int n;

	pthread_mutex_lock(&c->lock);
	n = c->count;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void
ma_client_destroy(struct ma_client **client)
{
	struct ma_client *c = *client;

	if (c == NULL)
		return;
	ma_client_flush(c, 100);
	if (c->fd >= 0)
		close(c->fd);
	queue_free_all(c);
	pthread_mutex_destroy(&c->lock);
	free(c->socket_path);
	free(c->spool_dir);
	free(c);
	*client = NULL;
}
