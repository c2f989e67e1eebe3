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
 * connections: the sender costs little CPU next to the daemon.
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

struct bconn {
	int fd;
	uint64_t sent, acked;
	int64_t *sent_us; /* ring of send times, window entries */
	bool blocked;	  /* last send gave EAGAIN */
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

static void
usage(void)
{
	fprintf(stderr, "usage: ma-bench-send -s socket [-c conns] [-w window] "
			"[-n records] [-d seconds] [-S seed] [-v]\n");
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
	bool verbose = false;
	struct bconn *conns;
	struct pollfd *pfds;
	struct ma_record rec;
	struct ma_buf frame;
	int64_t t0, deadline, drain_end = 0, last_ack = 0, next_report;
	int ch;

	while ((ch = getopt(argc, argv, "s:c:w:n:d:S:v")) != -1) {
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

	t0 = now_us();
	deadline = duration > 0 ? t0 + (int64_t)(duration * 1e6) : INT64_MAX;
	next_report = t0 + 1000000;
	for (;;) {
		int64_t now = now_us();
		bool sending = now < deadline &&
		    (limit == 0 || sent_total < limit);
		uint64_t outstanding = 0;

		if (!sending && drain_end == 0)
			drain_end = now + 10000000;
		for (unsigned int i = 0; i < nconns; i++) {
			struct bconn *c = &conns[i];

			while (sending && !c->dead && !c->blocked &&
			    c->sent - c->acked < window &&
			    (limit == 0 || sent_total < limit)) {
				ma_record_reset(&rec);
				ma_buf_reset(&frame);
				bench_make_record(&rec, &seed, sent_total,
				    ma_now_ms());
				if (ma_proto_encode_record(&rec, &frame) < 0) {
					fprintf(stderr, "encode failed\n");
					return 1;
				}
				if (send(c->fd, frame.data, frame.len,
					MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
					if (errno == EAGAIN) {
						c->blocked = true;
						break;
					}
					perror("send");
					c->dead = true;
					break;
				}
				c->sent_us[c->sent % window] = now_us();
				c->sent++;
				sent_total++;
				bytes_total += frame.len;
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
	free(conns);
	free(pfds);
	ma_record_deinit(&rec);
	ma_buf_deinit(&frame);
	return 0;
}
