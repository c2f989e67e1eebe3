/* SPDX-License-Identifier: MIT */
/*
 * mailauditd - the audit daemon: the only writer of the audit store.
 *
 * Sensors (the Dovecot plugin, later the milter) send records over a Unix
 * SOCK_SEQPACKET socket, one frame per message; the daemon stores them in
 * batched SQLite transactions and, once a batch is durable, tells each
 * sensor how many of its records are safe (a cumulative ack).  Records a
 * sensor could not hand over sit in the spool directory; the daemon drains
 * it and deletes a spool file only after its records are committed.  The
 * record id makes delivery idempotent: a record that arrives both ways is
 * stored once.
 *
 * The event loop is one thread on epoll: accept, receive, decode into
 * the filling batch, ack; a writer thread (writer.c) inserts and commits
 * the previous batch meanwhile, so decoding and SQLite use both cores.  A
 * record is searchable within a few milliseconds when idle and well
 * within a second under load.  Policy changes arrive on a separate
 * control socket that only root and the daemon's own user may use; they
 * reach the store while the writer is idle.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "ma-config.h"
#include "ma-forward-conf.h"
#include "ma-log.h"
#include "ma-proto.h"

static void
usage(void)
{
	fprintf(stderr, "usage: mailauditd [-fd] [-c config] [-p pidfile]\n");
	exit(2);
}

/* Connections. */

/*
 * daemon_conn_close - stop serving c at once (fd closed, out of epoll and
 * the connection list) but free it later, in reap(): epoll_wait's result
 * array or the dirty list may still point at it.  Idempotent.
 */
void
daemon_conn_close(struct daemon *d, struct conn *c, const char *why)
{
	if (c->closing)
		return;
	if (why != NULL)
		ma_log_info("%s connection from pid %ld uid %ld closed: %s",
		    c->kind == CONN_INGEST ? "ingest" : "control", (long)c->pid,
		    (long)c->uid, why);
	epoll_ctl(d->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	c->closing = true;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	d->conn_count--;
	if (c->kind == CONN_CONTROL)
		d->control_count--;
	c->prev = NULL;
	c->next = d->dead;
	d->dead = c;
}

/* reap - free closed connections that nothing refers to any more */
static void
reap(struct daemon *d)
{
	struct conn **pp = &d->dead, *c;

	while ((c = *pp) != NULL) {
		if (c->in_batch || c->sealed > 0) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		free(c);
	}
}

/* Start-up. */

static int
listen_unix(const char *path, mode_t mode, const char *what)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		ma_fatalx("%s socket path too long: %s", what, path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		ma_fatal("socket");
	/* Remove a stale socket, never anything else, and never the socket
	   of a daemon that is still running. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			ma_fatalx("%s: exists and is not a socket", path);
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ||
		    errno == EAGAIN)
			ma_fatalx("%s: another mailauditd is running", path);
		unlink(path);
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		ma_fatal("bind %s", path);
	if (chmod(path, mode) < 0)
		ma_fatal("chmod %s", path);
	if (listen(fd, 128) < 0)
		ma_fatal("listen %s", path);
	return fd;
}

/* mkdir_parent - create the directory holding path if it is missing */
static void
mkdir_parent(const char *path, mode_t mode)
{
	char *dir = ma_xstrdup(path), *slash = strrchr(dir, '/');

	if (slash != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, mode) == 0) {
			if (chmod(dir, mode) < 0)
				ma_fatal("chmod %s", dir);
		} else if (errno != EEXIST) {
			ma_fatal("mkdir %s", dir);
		}
	}
	free(dir);
}

static void
drop_privileges(struct daemon *d, bool spool_created)
{
	struct passwd *pw;

	if (d->conf.user[0] == '\0')
		return;
	pw = getpwnam(d->conf.user);
	if (pw == NULL)
		ma_fatalx(
		    "user '%s' (config key user) does not exist", d->conf.user);
	if (geteuid() != 0) {
		if (geteuid() != pw->pw_uid)
			ma_fatalx("running as uid %ld, cannot switch to %s",
			    (long)geteuid(), d->conf.user);
		return;
	}
	if (chown(d->conf.socket_path, pw->pw_uid, pw->pw_gid) < 0 ||
	    chown(d->conf.control_socket_path, pw->pw_uid, pw->pw_gid) < 0)
		ma_fatal("chown sockets to %s", d->conf.user);
	if (spool_created &&
	    chown(d->conf.spool_dir, pw->pw_uid, pw->pw_gid) < 0)
		ma_fatal("chown %s to %s", d->conf.spool_dir, d->conf.user);
	if (ma_become_user(pw->pw_uid, pw->pw_gid) < 0)
		ma_fatal("cannot drop privileges to %s", d->conf.user);
}

/* raise_fd_limit - use the hard limit; keep max_connections below it */
static void
raise_fd_limit(struct daemon *d)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY &&
	    d->conf.max_connections + 64 > rl.rlim_cur) {
		d->conf.max_connections =
		    rl.rlim_cur > 128 ? rl.rlim_cur - 64 : 64;
		ma_log_warnx("max_connections lowered to %llu (file descriptor "
			     "limit %llu)",
		    (unsigned long long)d->conf.max_connections,
		    (unsigned long long)rl.rlim_cur);
	}
}

static void
epoll_add(struct daemon *d, int fd, void *ptr)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ptr};

	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		ma_fatal("epoll_ctl");
}

/*
 * Retention must not delete what a forward destination has not
 * acknowledged yet (docs/FORWARDING.md, "Retention"): the limit is the
 * lowest cursor in the state files, read afresh for every purge.
 */
static char guard_dest[FWD_NAME_MAX + 1];

static int
forward_guard(void *ctx, int64_t *max_seq_r, struct ma_error *err)
{
	const struct daemon *d = ctx;

	return ma_fwd_lowest_cursor(d->conf.forwards, d->conf.forward_state_dir,
	    max_seq_r, guard_dest, err);
}

/* Markers for the signal fd and the writer's eventfd in epoll's data.ptr.
 */
static char mark_signal, mark_writer;

static void
setup(struct daemon *d)
{
	struct ma_store_options so = {
	    .readonly = false,
	    .sync_full = d->conf.sync_full,
	    .cache_kib = d->conf.cache_size_kib,
	    .checkpoint_thread = true,
	    .deferred_sync = d->conf.sync_full, /* the sync thread's job */
	};
	struct ma_error err = {0};
	bool spool_created = false;
	sigset_t mask;

	raise_fd_limit(d);
	mkdir_parent(d->conf.socket_path, 0755);
	mkdir_parent(d->conf.control_socket_path, 0755);
	/* Audit data is for the daemon's user alone: the store and its WAL
	   are created 0600.  What sensors must reach gets explicit modes. */
	umask(077);
	/* Spool: every mail uid may create files (-wx), nobody may list or
	   remove another's (sticky), and new files take the directory's
	   group (setgid), through which the daemon reads their 0640. */
	if (mkdir(d->conf.spool_dir, 03733) == 0) {
		if (chmod(d->conf.spool_dir, 03733) < 0)
			ma_fatal("chmod %s", d->conf.spool_dir);
		spool_created = true;
	} else if (errno != EEXIST) {
		ma_fatal("mkdir %s", d->conf.spool_dir);
	}
	d->ingest_fd = listen_unix(
	    d->conf.socket_path, (mode_t)d->conf.socket_mode, "ingest");
	d->control_fd =
	    listen_unix(d->conf.control_socket_path, 0600, "control");
	drop_privileges(d, spool_created);

	d->store = ma_store_open(d->conf.store_path, &so, &err);
	if (d->store == NULL)
		ma_fatalx("%s", err.msg);
	ma_store_set_purge_guard(d->store, forward_guard, d);
	if (control_write_snapshot(d) < 0)
		ma_fatalx("cannot write the policy snapshot %s",
		    d->conf.policy_snapshot_path);

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		ma_fatal("sigprocmask");
	signal(SIGPIPE, SIG_IGN);
	d->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (d->signal_fd < 0)
		ma_fatal("signalfd");

	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->epfd < 0)
		ma_fatal("epoll_create1");
	epoll_add(d, d->ingest_fd, &d->ingest_fd);
	epoll_add(d, d->control_fd, &d->control_fd);
	epoll_add(d, d->signal_fd, &mark_signal);
	daemon_writer_start(d);
	epoll_add(d, d->writer_fd, &mark_writer);
	d->recvbuf = ma_xmalloc(MA_PROTO_MAX_FRAME + 1);
	for (int i = 0; i < INGEST_RECV_BATCH; i++)
		d->recvbufs[i] = ma_xmalloc(MA_PROTO_MAX_FRAME + 1);
	d->next_spool_scan_ms = ma_now_ms();
	d->next_purge_ms = ma_now_ms() + 10000;
}

/* The loop. */

static void
handle_signal(struct daemon *d)
{
	struct signalfd_siginfo si;

	while (read(d->signal_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			ma_log_info("SIGHUP: rewriting the policy snapshot");
			daemon_writer_idle(d);
			control_write_snapshot(d);
		} else {
			d->quit = true;
		}
	}
}

static void
run_purge(struct daemon *d, int64_t now)
{
	struct ma_error err = {0};
	uint64_t deleted;
	int64_t limit;

	/* Retention reaches the store between batches. */
	daemon_writer_idle(d);
	/* At most 50,000 records a run, so ingest never waits long; a
	   backlog is worked off a second later. */
	if (ma_store_purge(d->store, now, (uint32_t)d->conf.retention_min_days,
		50000, &deleted, &err) < 0)
		ma_log_warnx("retention: %s", err.msg);
	else if (deleted > 0)
		ma_log_info("retention: purged %llu records",
		    (unsigned long long)deleted);
	if (ma_store_purge_held(d->store, &limit)) {
		char held[512];

		ma_fwd_held_text(d->conf.forward_state_dir, guard_dest, limit,
		    held, sizeof(held));
		ma_log_info("retention: held back: %s", held);
	}
	if (deleted >= 50000)
		d->next_purge_ms = now + 1000;
}

static void
run_timers(struct daemon *d)
{
	int64_t now = ma_now_ms();

	if (d->accept_resume_ms != 0 && now >= d->accept_resume_ms)
		ingest_accept_resume(d);
	if (now >= d->next_spool_scan_ms) {
		spool_scan(d);
		d->next_spool_scan_ms =
		    now + (int64_t)d->conf.spool_scan_interval_ms;
	}
	if (now >= d->next_purge_ms) {
		d->next_purge_ms =
		    now + (int64_t)d->conf.purge_interval_s * 1000;
		run_purge(d, now); /* may bring the next run forward */
	}
}

static int
next_timeout(const struct daemon *d)
{
	int64_t now = ma_now_ms(), next = d->next_spool_scan_ms;

	if (d->next_purge_ms < next)
		next = d->next_purge_ms;
	if (d->accept_resume_ms != 0 && d->accept_resume_ms < next)
		next = d->accept_resume_ms;
	if (next <= now)
		return 0;
	return next - now > 60000 ? 60000 : (int)(next - now);
}

static void
dispatch(struct daemon *d, struct epoll_event *ev)
{
	void *p = ev->data.ptr;
	struct conn *c;

	if (p == &mark_signal) {
		handle_signal(d);
		return;
	}
	if (p == &mark_writer) {
		daemon_writer_done(d);
		return;
	}
	if (p == &d->ingest_fd || p == &d->control_fd) {
		ingest_accept(d, *(int *)p,
		    p == &d->ingest_fd ? CONN_INGEST : CONN_CONTROL);
		return;
	}
	c = p;
	if (c->closing)
		return;
	if (c->kind == CONN_INGEST)
		ingest_readable(d, c);
	else
		control_readable(d, c);
}

/*
 * batch_wait_ms - how long the filling batch may still wait for company:
 * -1 when there is nothing to hand over (or the writer is busy; its
 * eventfd wakes us), else the time until it is batch_min_delay_ms old.
 */
static int64_t
batch_wait_ms(const struct daemon *d)
{
	int64_t left;

	if (daemon_writer_busy(d) || !daemon_batch_has_work(d))
		return -1;
	left = d->filling->start_ms + (int64_t)d->conf.batch_min_delay_ms -
	       ma_now_ms();
	return left > 0 ? left : 0;
}

/*
 * loop - group commit, pipelined: the filling batch goes to the writer
 * as soon as the writer is idle and the batch is batch_min_delay_ms old
 * (so a trickle of records does not cost one fsync each); while the
 * writer commits, the next batch fills, up to batch_max_records.  Under
 * load a batch is what arrived during the previous commit.  A record is
 * durable and acked within a few milliseconds when the daemon is idle,
 * which keeps a sensor's wait at logout short.
 */
static void
loop(struct daemon *d)
{
	struct epoll_event evs[64];
	int64_t wait;
	int n, timeout;

	while (!d->quit) {
		timeout = next_timeout(d);
		wait = batch_wait_ms(d);
		if (wait >= 0 && wait < timeout)
			timeout = (int)wait;
		n = epoll_wait(d->epfd, evs, 64, timeout);
		if (n < 0 && errno != EINTR)
			ma_fatal("epoll_wait");
		for (int i = 0; i < n; i++)
			dispatch(d, &evs[i]);
		if (batch_wait_ms(d) == 0)
			daemon_batch_submit(d, false);
		run_timers(d);
		reap(d);
	}
}

static void
shutdown_daemon(struct daemon *d)
{
	/* Commits and acknowledges everything received. */
	daemon_writer_stop(d);
	while (d->conns != NULL)
		daemon_conn_close(d, d->conns, NULL);
	reap(d);
	ma_store_destroy(&d->store);
	unlink(d->conf.socket_path);
	unlink(d->conf.control_socket_path);
	ma_log_info("stopped: %llu records stored, %llu duplicates ignored, "
		    "%llu rejected",
	    (unsigned long long)d->stored_total,
	    (unsigned long long)d->duplicates_total,
	    (unsigned long long)d->rejected_total);
	free(d->recvbuf);
	for (int i = 0; i < INGEST_RECV_BATCH; i++)
		free(d->recvbufs[i]);
	ma_conf_free(&d->conf);
}

static void
write_pidfile(const char *path)
{
	FILE *fp = fopen(path, "we");

	if (fp == NULL)
		ma_fatal("pidfile %s", path);
	fprintf(fp, "%ld\n", (long)getpid());
	fclose(fp);
}

int
main(int argc, char **argv)
{
	static struct daemon d;
	const char *config = MA_CONF_DEFAULT_PATH, *pidfile = NULL;
	bool foreground = false, debug = false, config_given = false;
	struct ma_error err = {0};
	int ch;

	while ((ch = getopt(argc, argv, "c:dfp:")) != -1) {
		switch (ch) {
		case 'c':
			config = optarg;
			config_given = true;
			break;
		case 'd':
			debug = true;
			break;
		case 'f':
			foreground = true;
			break;
		case 'p':
			pidfile = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	ma_log_init("mailauditd", true, debug);
	if (ma_conf_load(&d.conf, config, &err) < 0) {
		/* A missing default file means "all defaults"; a missing
		   file named on the command line is an error. */
		if (config_given || access(config, F_OK) == 0)
			ma_fatalx("%s", err.msg);
	}
	if (!foreground && daemon(0, 0) < 0)
		ma_fatal("daemon");
	ma_log_init("mailauditd", foreground, debug);
	if (pidfile != NULL)
		write_pidfile(pidfile);
	setup(&d);
	ma_log_info("started (version %s): store %s, socket %s", MA_VERSION,
	    d.conf.store_path, d.conf.socket_path);
	loop(&d);
	shutdown_daemon(&d);
	return 0;
}
