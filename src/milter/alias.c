/* SPDX-License-Identifier: MIT */
/*
 * alias.c - virtual alias expansion through postmap(1) (see alias.h).
 *
 * One postmap process per uncached lookup, spawned with posix_spawn (safe
 * in a threaded process) and read with a 5 s deadline.  The cache is a
 * small open table of address -> raw right-hand side (or "not found"),
 * emptied every ALIAS_CACHE_TTL_MS; it is shared by libmilter's threads
 * under one mutex, never held while postmap runs.
 */

#include "alias.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ma-journal.h"
#include "ma-log.h"
#include "ma-util.h"

#define ALIAS_CACHE_SIZE   4096
#define ALIAS_CACHE_TTL_MS (60 * 1000)
#define ALIAS_DEPTH        8
#define POSTMAP_TIMEOUT_MS 5000
#define ALIAS_DOWN_MS      10000 /* no lookups this long after a failure */
#define POSTMAP_OUTPUT_MAX (256 * 1024)
#define POSTMAP            "/usr/sbin/postmap"

struct cache_entry {
	char *key;
	char *value; /* NULL: no entry */
};

struct alias_resolver {
	char **argv_maps;
	size_t map_count;
	char *config_dir;
	pthread_mutex_t lock;
	struct cache_entry cache[ALIAS_CACHE_SIZE];
	size_t cached;
	int64_t cache_born_ms;
	int64_t down_until_ms; /* atomic */
};

struct alias_resolver *
alias_create(const char *maps, const char *config_dir)
{
	struct alias_resolver *r = ma_xcalloc(1, sizeof(*r));
	const char *p = maps;

	while (*p != '\0') {
		size_t len;

		p += strspn(p, ", \t");
		len = strcspn(p, ", \t");
		if (len > 0) {
			r->argv_maps = ma_xrealloc(
			    r->argv_maps, r->map_count + 1, sizeof(char *));
			r->argv_maps[r->map_count++] = ma_xstrndup(p, len);
		}
		p += len;
	}
	r->config_dir = ma_xstrdup(config_dir);
	MA_ASSERT(pthread_mutex_init(&r->lock, NULL) == 0);
	r->cache_born_ms = ma_now_ms();
	return r;
}

static void
cache_clear(struct alias_resolver *r)
{
	for (size_t i = 0; i < ALIAS_CACHE_SIZE; i++) {
		free(r->cache[i].key);
		free(r->cache[i].value);
		r->cache[i].key = r->cache[i].value = NULL;
	}
	r->cached = 0;
	r->cache_born_ms = ma_now_ms();
}

void
alias_destroy(struct alias_resolver **rp)
{
	struct alias_resolver *r = *rp;

	if (r == NULL)
		return;
	cache_clear(r);
	for (size_t i = 0; i < r->map_count; i++)
		free(r->argv_maps[i]);
	free(r->argv_maps);
	free(r->config_dir);
	pthread_mutex_destroy(&r->lock);
	free(r);
	*rp = NULL;
}

static size_t
slot(const char *key)
{
	return (size_t)(ma_hash_str(key) % ALIAS_CACHE_SIZE);
}

/* cache_get - 1 hit (value may be NULL: no entry), 0 miss */
static int
cache_get(struct alias_resolver *r, const char *key, char **value_r)
{
	int found = 0;

	pthread_mutex_lock(&r->lock);
	if (ma_now_ms() - r->cache_born_ms > ALIAS_CACHE_TTL_MS)
		cache_clear(r);
	for (size_t i = slot(key), n = 0; n < 8; n++) {
		struct cache_entry *e = &r->cache[(i + n) % ALIAS_CACHE_SIZE];

		if (e->key == NULL)
			break;
		if (strcmp(e->key, key) == 0) {
			*value_r =
			    e->value != NULL ? ma_xstrdup(e->value) : NULL;
			found = 1;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return found;
}

static void
cache_put(struct alias_resolver *r, const char *key, const char *value)
{
	pthread_mutex_lock(&r->lock);
	if (r->cached >= ALIAS_CACHE_SIZE / 2)
		cache_clear(r);
	for (size_t i = slot(key), n = 0; n < 8; n++) {
		struct cache_entry *e = &r->cache[(i + n) % ALIAS_CACHE_SIZE];

		if (e->key == NULL) {
			e->key = ma_xstrdup(key);
			e->value = value != NULL ? ma_xstrdup(value) : NULL;
			r->cached++;
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
}

/*
 * run_postmap - postmap -q key maps...; its stdout and stderr into out
 * and err (bounded), within POSTMAP_TIMEOUT_MS.  The exit status, or -1
 * (could not run, timed out, killed).
 */
static int
run_postmap(struct alias_resolver *r, const char *key, struct ma_buf *out,
    struct ma_buf *err)
{
	char *argv[8 + 64];
	size_t argc = 0;
	posix_spawn_file_actions_t fa;
	int outp[2], errp[2], status = 0;
	int64_t deadline = ma_now_ms() + POSTMAP_TIMEOUT_MS;
	struct pollfd pfd[2];
	struct ma_buf *bufs[2] = {out, err};
	pid_t pid;
	bool timed_out = false;

	argv[argc++] = (char *)(uintptr_t)POSTMAP;
	if (r->config_dir[0] != '\0') {
		argv[argc++] = (char *)(uintptr_t) "-c";
		argv[argc++] = r->config_dir;
	}
	argv[argc++] = (char *)(uintptr_t) "-q";
	argv[argc++] = (char *)(uintptr_t)key;
	for (size_t i = 0; i < r->map_count; i++)
		argv[argc++] = r->argv_maps[i];
	argv[argc] = NULL;
	if (pipe2(outp, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(errp, O_CLOEXEC) < 0) {
		close(outp[0]);
		close(outp[1]);
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
	posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (posix_spawn(&pid, POSTMAP, &fa, NULL, argv, environ) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		close(outp[0]);
		close(outp[1]);
		close(errp[0]);
		close(errp[1]);
		ma_log_warn("lookup: cannot run %s", POSTMAP);
		return -1;
	}
	posix_spawn_file_actions_destroy(&fa);
	close(outp[1]);
	close(errp[1]);
	pfd[0] = (struct pollfd){.fd = outp[0], .events = POLLIN};
	pfd[1] = (struct pollfd){.fd = errp[0], .events = POLLIN};
	while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
		int64_t left = deadline - ma_now_ms();

		if (left <= 0) {
			timed_out = true;
			break;
		}
		if (poll(pfd, 2, (int)left) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			char buf[4096];
			ssize_t n;

			if (pfd[i].fd < 0 || pfd[i].revents == 0)
				continue;
			n = read(pfd[i].fd, buf, sizeof(buf));
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				continue;
			}
			(void)ma_buf_append(bufs[i], buf, (size_t)n);
		}
	}
	for (int i = 0; i < 2; i++) {
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	}
	if (timed_out)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (timed_out || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/*
 * postmap_query - 1 found (*value_r set), 0 not found, -1 failure
 * (logged).  postmap exits 1 both for "not found" and for a fatal error,
 * so its stderr tells them apart.
 */
static int
postmap_query(struct alias_resolver *r, const char *key, char **value_r)
{
	struct ma_buf out, err;
	int status, ret = -1;

	if (r->map_count == 0 || r->map_count > 64)
		return 0;
	ma_buf_init(&out, POSTMAP_OUTPUT_MAX);
	ma_buf_init(&err, 4096);
	status = run_postmap(r, key, &out, &err);
	if (status < 0 || status > 1 ||
	    (err.data != NULL && (strstr(err.data, "fatal:") != NULL ||
				     strstr(err.data, "error:") != NULL))) {
		char why[300];

		ma_sanitize(err.data != NULL ? err.data : "", err.len, why,
		    sizeof(why));
		ma_log_warnx("lookup of %s in %s failed: %s", key,
		    r->argv_maps[0], status < 0 ? "timed out or killed" : why);
	} else if (status == 1 || out.len == 0) {
		ret = 0;
	} else {
		*value_r = ma_xstrdup(out.data);
		ret = 1;
	}
	ma_buf_deinit(&out);
	ma_buf_deinit(&err);
	return ret;
}

int
alias_lookup(struct alias_resolver *r, const char *addr, char **value_r)
{
	char key[MA_ADDRESS_MAX + 2];
	const char *dom = ma_address_domain(addr);
	int ret;

	*value_r = NULL;
	if (cache_get(r, addr, value_r))
		return *value_r != NULL ? 1 : 0;
	/* After a failure, do not make every message wait for the table. */
	if (ma_now_ms() < __atomic_load_n(&r->down_until_ms, __ATOMIC_RELAXED))
		return -1;
	ret = postmap_query(r, addr, value_r);
	if (ret == 0 && *dom != '\0') {
		snprintf(key, sizeof(key), "@%s", dom);
		ret = postmap_query(r, key, value_r);
	}
	if (ret < 0) {
		/* Errors are not cached as "no entry". */
		__atomic_store_n(&r->down_until_ms, ma_now_ms() + ALIAS_DOWN_MS,
		    __ATOMIC_RELAXED);
		*value_r = NULL;
		return -1;
	}
	cache_put(r, addr, *value_r);
	return ret;
}

/* lookup_by - alias_lookup, but past deadline_ms only cached answers */
static int
lookup_by(struct alias_resolver *r, const char *addr, int64_t deadline_ms,
    char **value_r)
{
	*value_r = NULL;
	if (ma_now_ms() <= deadline_ms)
		return alias_lookup(r, addr, value_r);
	if (!cache_get(r, addr, value_r))
		return -1;
	return *value_r != NULL ? 1 : 0;
}

struct expansion {
	char **members;
	size_t count;
	int64_t deadline_ms;
	bool incomplete;
};

static void
add_member(struct expansion *e, const char *addr)
{
	for (size_t i = 0; i < e->count; i++) {
		if (strcmp(e->members[i], addr) == 0)
			return;
	}
	if (e->count >= ALIAS_MAX_MEMBERS) {
		e->incomplete = true;
		return;
	}
	e->members = ma_xrealloc(e->members, e->count + 1, sizeof(char *));
	e->members[e->count++] = ma_xstrdup(addr);
}

static void
expand(struct alias_resolver *r, const char *addr, unsigned int depth,
    struct expansion *e)
{
	char *value = NULL, norm[MA_ADDRESS_MAX + 1];
	const char *p;
	int ret = 0;

	if (depth < ALIAS_DEPTH)
		ret = lookup_by(r, addr, e->deadline_ms, &value);
	if (ret < 0)
		e->incomplete = true;
	if (ret <= 0) {
		add_member(e, addr);
		return;
	}
	for (p = value; ma_address_list_next(&p, norm);) {
		/* An alias that includes itself stops there. */
		if (strcmp(norm, addr) == 0)
			expand(r, norm, ALIAS_DEPTH, e);
		else
			expand(r, norm, depth + 1, e);
	}
	free(value);
}

size_t
alias_expand(struct alias_resolver *r, const char *addr, int64_t deadline_ms,
    char ***members_r, bool *incomplete_r)
{
	struct expansion e = {.deadline_ms = deadline_ms};
	char *value = NULL;
	int ret;

	ret = lookup_by(r, addr, deadline_ms, &value);
	free(value);
	if (ret <= 0) {
		*incomplete_r = ret < 0;
		return 0;
	}
	expand(r, addr, 0, &e);
	*members_r = e.members;
	*incomplete_r = e.incomplete;
	return e.count;
}
