/* SPDX-License-Identifier: MIT */
/*
 * ma-bench-send - load generator for mailauditd's ingest socket.
 *
 * Opens -c connections to the SOCK_SEQPACKET ingest socket and keeps up to
 * -w unacknowledged record frames in flight on each (the daemon's acks
 * are cumulative, sent after the batch commit, so an acknowledged record
 * is durable and searchable).  Sends until -n records were sent in total
 * or -d seconds passed, then waits (at most 10 s) for the outstanding acks.
 * Only acknowledged records count.  One thread, poll() over all
 * connections.  So that the load generator takes as little of the
 * machine's CPU from the daemon as it can, it encodes a pool of
 * POOL_FRAMES distinct frames once and sends copies of them with a fresh
 * record id (UUIDv7) and time patched in (same length, so the frame stays
 * valid), up to SEND_BATCH frames per sendmmsg call.  Every record sent
 * is therefore distinct by id; other content repeats every POOL_FRAMES
 * records (-P 0 encodes every record afresh instead, the old way).
 *
 * Output, one line of key=value on stdout:
 *   conns window sent acked seconds rate frame_bytes lat_p50_ms
 *   lat_p99_ms lat_max_ms
 * where lat is the time from send() of a frame to the ack that covers it
 * (send to durable; the ack goes out after COMMIT, when a reader already
 * sees the record).
 */

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ma-bench-gen.h"
#include "ma-proto.h"

#define LAT_BUCKETS 200000 /* 0.1 ms each: up to 20 s */
#define POOL_FRAMES 4096
#define SEND_BATCH  32

/* A pre-encoded frame and where its id and time values start. */
struct pframe {
	char *data;
	size_t len, id_off, t_off, t_len;
};

struct bconn {
	int fd;
	uint64_t sent, acked;
	int64_t *sent_us; /* ring of send times, window entries */
	bool blocked;     /* last send gave EAGAIN */
	bool dead;
};

static uint32_t lat_hist[LAT_BUCKETS];
static uint64_t lat_count;
static int64_t lat_max_us;

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
lat_add(int64_t us)
{
	int64_t b = us / 100;

	if (b >= LAT_BUCKETS)
		b = LAT_BUCKETS - 1;
	lat_hist[b]++;
	lat_count++;
	if (us > lat_max_us)
		lat_max_us = us;
}

static double
lat_pct(double p)
{
	uint64_t want = (uint64_t)(p * (double)lat_count), seen = 0;

	if (lat_count == 0)
		return 0;
	for (int i = 0; i < LAT_BUCKETS; i++) {
		seen += lat_hist[i];
		if (seen > want || seen == lat_count)
			return (i + 1) / 10.0;
	}
	return LAT_BUCKETS / 10.0;
}

/* make_pool - encode POOL_FRAMES records of the stream seeded by *seed */
static struct pframe *
make_pool(uint64_t *seed)
{
	struct pframe *pool = ma_xcalloc(POOL_FRAMES, sizeof(*pool));
	struct ma_record rec;
	struct ma_buf frame;

	ma_record_init(&rec);
	ma_buf_init(&frame, MA_PROTO_MAX_FRAME);
	for (unsigned int i = 0; i < POOL_FRAMES; i++) {
		const char *id, *t;

		ma_record_reset(&rec);
		ma_buf_reset(&frame);
		bench_make_record(&rec, seed, i, ma_now_ms());
		if (ma_proto_encode_record(&rec, &frame) < 0 ||
		    (id = strstr(frame.data, "\nid=")) == NULL ||
		    (t = strstr(frame.data, "\nt=")) == NULL) {
			fprintf(stderr, "encode failed\n");
			exit(1);
		}
		pool[i].data = ma_xstrdup(frame.data);
		pool[i].len = frame.len;
		pool[i].id_off = (size_t)(id - frame.data) + 4;
		pool[i].t_off = (size_t)(t - frame.data) + 3;
		pool[i].t_len = strcspn(t + 3, "\n");
	}
	ma_record_deinit(&rec);
	ma_buf_deinit(&frame);
	return pool;
}

/* pool_frame - a copy of f with a new record id and time ms in out */
static size_t
pool_frame(const struct pframe *f, int64_t ms, char *out, size_t size)
{
	uint8_t id[16];
	char text[37], t[24];

	if (f->len > size)
		return 0;
	memcpy(out, f->data, f->len);
	ma_uuid7(id, ms);
	ma_uuid_fmt(id, text);
	memcpy(out + f->id_off, text, 36);
	if ((size_t)snprintf(t, sizeof(t), "%lld", (long long)ms) != f->t_len)
		return 0;
	memcpy(out + f->t_off, t, f->t_len);
	return f->len;
}

static void
usage(void)
{
	fprintf(stderr, "usage: ma-bench-send -s socket [-c conns] [-w window] "
			"[-n records] [-d seconds] [-S seed] [-P 0|1] [-v]\n");
	exit(2);
}

static int
connect_socket(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	if (fd < 0 || strlen(path) >= sizeof(sun.sun_path)) {
		perror("socket");
		exit(1);
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		perror(path);
		exit(1);
	}
	return fd;
}

/* read_acks - consume every ack frame waiting on c */
static void
read_acks(struct bconn *c, unsigned int window)
{
	char buf[256];
	ssize_t n;

	for (;;) {
		n = recv(c->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				perror("recv");
				c->dead = true;
			}
			return;
		}
		if (n == 0) {
			fprintf(stderr, "connection closed by the daemon\n");
			c->dead = true;
			return;
		}
		buf[n] = '\0';
		if (strncmp(buf, "ack=", 4) == 0) {
			uint64_t a = strtoull(buf + 4, NULL, 10);
			int64_t t = now_us();

			for (; c->acked < a && c->acked < c->sent; c->acked++)
				lat_add(t - c->sent_us[c->acked % window]);
		}
	}
}

int
main(int argc, char **argv)
{
	const char *path = NULL;
	unsigned int nconns = 1, window = 1000;
	uint64_t limit = 0, seed = 0x9e3779b97f4a7c15ULL, sent_total = 0;
	uint64_t acked_total = 0, bytes_total = 0;
	double duration = 0;
	bool verbose = false, use_pool = true;
	struct pframe *pool = NULL;
	unsigned int pool_next = 0;
	static char bufs[SEND_BATCH][4096];
	struct mmsghdr msgs[SEND_BATCH];
	struct iovec iov[SEND_BATCH];
	struct bconn *conns;
	struct pollfd *pfds;
	struct ma_record rec;
	struct ma_buf frame;
	int64_t t0, deadline, drain_end = 0, last_ack = 0, next_report;
	int ch;

	while ((ch = getopt(argc, argv, "s:c:w:n:d:S:P:v")) != -1) {
		switch (ch) {
		case 's':
			path = optarg;
			break;
		case 'c':
			nconns = (unsigned int)strtoul(optarg, NULL, 10);
			break;
		case 'w':
			window = (unsigned int)strtoul(optarg, NULL, 10);
			break;
		case 'n':
			limit = strtoull(optarg, NULL, 10);
			break;
		case 'd':
			duration = strtod(optarg, NULL);
			break;
		case 'S':
			seed = strtoull(optarg, NULL, 0) | 1;
			break;
		case 'P':
			use_pool = strtoul(optarg, NULL, 10) != 0;
			break;
		case 'v':
			verbose = true;
			break;
		default:
			usage();
		}
	}
	if (path == NULL || nconns == 0 || window == 0 ||
	    (limit == 0 && duration <= 0))
		usage();

	conns = ma_xcalloc(nconns, sizeof(*conns));
	pfds = ma_xcalloc(nconns, sizeof(*pfds));
	for (unsigned int i = 0; i < nconns; i++) {
		conns[i].fd = connect_socket(path);
		conns[i].sent_us = ma_xcalloc(window, sizeof(int64_t));
	}
	ma_record_init(&rec);
	ma_buf_init(&frame, MA_PROTO_MAX_FRAME);
	if (use_pool)
		pool = make_pool(&seed);
	memset(msgs, 0, sizeof(msgs));
	for (unsigned int k = 0; k < SEND_BATCH; k++) {
		iov[k].iov_base = bufs[k];
		msgs[k].msg_hdr.msg_iov = &iov[k];
		msgs[k].msg_hdr.msg_iovlen = 1;
	}

	t0 = now_us();
	deadline = duration > 0 ? t0 + (int64_t)(duration * 1e6) : INT64_MAX;
	next_report = t0 + 1000000;
	for (;;) {
		int64_t now = now_us();
		bool sending =
		    now < deadline && (limit == 0 || sent_total < limit);
		uint64_t outstanding = 0;

		if (!sending && drain_end == 0)
			drain_end = now + 10000000;
		for (unsigned int i = 0; i < nconns; i++) {
			struct bconn *c = &conns[i];

			while (sending && !c->dead && !c->blocked &&
			       c->sent - c->acked < window &&
			       (limit == 0 || sent_total < limit)) {
				uint64_t room = window - (c->sent - c->acked);
				unsigned int n = SEND_BATCH;
				int64_t ms = ma_now_ms(), t;
				int r;

				if (room < n)
					n = (unsigned int)room;
				if (limit != 0 && limit - sent_total < n)
					n = (unsigned int)(limit - sent_total);
				for (unsigned int k = 0; k < n; k++) {
					size_t len = 0;

					if (pool != NULL) {
						len = pool_frame(
						    &pool[pool_next++ %
							  POOL_FRAMES],
						    ms, bufs[k],
						    sizeof(bufs[k]));
					} else {
						ma_record_reset(&rec);
						ma_buf_reset(&frame);
						bench_make_record(&rec, &seed,
						    sent_total + k, ms);
						if (ma_proto_encode_record(
							&rec, &frame) == 0 &&
						    frame.len <=
							sizeof(bufs[k])) {
							memcpy(bufs[k],
							    frame.data,
							    frame.len);
							len = frame.len;
						}
					}
					if (len == 0) {
						fprintf(
						    stderr, "encode failed\n");
						return 1;
					}
					iov[k].iov_len = len;
				}
				r = sendmmsg(c->fd, msgs, n,
				    MSG_DONTWAIT | MSG_NOSIGNAL);
				if (r < 0) {
					if (errno == EAGAIN) {
						c->blocked = true;
						break;
					}
					perror("send");
					c->dead = true;
					break;
				}
				t = now_us();
				for (int k = 0; k < r; k++) {
					c->sent_us[c->sent % window] = t;
					c->sent++;
					sent_total++;
					bytes_total += iov[k].iov_len;
				}
				if ((unsigned int)r < n) {
					c->blocked = true; /* socket full */
					break;
				}
			}

			pfds[i].fd = c->dead ? -1 : c->fd;
			pfds[i].events = POLLIN | (c->blocked ? POLLOUT : 0);
			pfds[i].revents = 0;
			if (!c->dead)
				outstanding += c->sent - c->acked;
		}
		if (!sending && (outstanding == 0 || now >= drain_end))
			break;
		if (poll(pfds, nconns, 100) < 0 && errno != EINTR) {
			perror("poll");
			return 1;
		}
		for (unsigned int i = 0; i < nconns; i++) {
			struct bconn *c = &conns[i];
			uint64_t before = c->acked;

			if (pfds[i].revents & POLLOUT)
				c->blocked = false;
			if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR))
				read_acks(c, window);
			if (c->acked != before) {
				acked_total += c->acked - before;
				last_ack = now_us();
			}
		}
		if (verbose && now_us() >= next_report) {
			fprintf(stderr, "%.1fs sent=%llu acked=%llu\n",
			    (now_us() - t0) / 1e6,
			    (unsigned long long)sent_total,
			    (unsigned long long)acked_total);
			next_report += 1000000;
		}
	}
	{
		double secs = last_ack > t0 ? (last_ack - t0) / 1e6 : 0;
		unsigned int dead = 0;

		for (unsigned int i = 0; i < nconns; i++)
			dead += conns[i].dead;
		printf("conns=%u window=%u sent=%llu acked=%llu seconds=%.3f "
		       "rate=%.0f frame_bytes=%.0f lat_p50_ms=%.1f "
		       "lat_p99_ms=%.1f lat_max_ms=%.1f dead_conns=%u\n",
		    nconns, window, (unsigned long long)sent_total,
		    (unsigned long long)acked_total, secs,
		    secs > 0 ? acked_total / secs : 0,
		    sent_total > 0 ? (double)bytes_total / sent_total : 0,
		    lat_pct(0.50), lat_pct(0.99), lat_max_us / 1000.0, dead);
	}
	for (unsigned int i = 0; i < nconns; i++) {
		close(conns[i].fd);
		free(conns[i].sent_us);
	}
	if (pool != NULL) {
		for (unsigned int i = 0; i < POOL_FRAMES; i++)
			free(pool[i].data);
		free(pool);
	}
	free(conns);
	free(pfds);
	ma_record_deinit(&rec);
	ma_buf_deinit(&frame);
	return 0;
}
