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
 * postmap_query - run postmap -q key maps...; 1 found (*value_r set),
 * 0 not found, -1 failure (logged).
 */
static int
postmap_query(struct alias_resolver *r, const char *key, char **value_r)
{
	char *argv[8 + 64];
	size_t argc = 0;
	posix_spawn_file_actions_t fa;
	struct ma_buf out;
	int pipefd[2], status = 0;
	int64_t deadline = ma_now_ms() + POSTMAP_TIMEOUT_MS;
	pid_t pid;
	bool timed_out = false;

	if (r->map_count == 0 || r->map_count > 64)
		return 0;
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
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		ma_log_warn("alias lookup: pipe");
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (posix_spawn(&pid, POSTMAP, &fa, NULL, argv, environ) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		close(pipefd[0]);
		close(pipefd[1]);
		ma_log_warn("alias lookup: cannot run %s", POSTMAP);
		return -1;
	}
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	ma_buf_init(&out, POSTMAP_OUTPUT_MAX);
	for (;;) {
		struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
		char buf[4096];
		int64_t left = deadline - ma_now_ms();
		ssize_t n;

		if (left <= 0) {
			timed_out = true;
			break;
		}
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			break;
		n = read(pipefd[0], buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		(void)ma_buf_append(&out, buf, (size_t)n);
	}
	close(pipefd[0]);
	if (timed_out)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (timed_out || !WIFEXITED(status) || WEXITSTATUS(status) > 1) {
		ma_log_warnx("alias lookup of %s failed (postmap %s)", key,
		    timed_out ? "timed out" : "failed");
		ma_buf_deinit(&out);
		return -1;
	}
	if (WEXITSTATUS(status) == 1 || out.len == 0) {
		ma_buf_deinit(&out);
		return 0;
	}
	*value_r = ma_xstrdup(out.data);
	ma_buf_deinit(&out);
	return 1;
}

char *
alias_lookup(struct alias_resolver *r, const char *addr)
{
	char *value = NULL;
	char key[MA_ADDRESS_MAX + 2];
	const char *dom = ma_address_domain(addr);

	if (cache_get(r, addr, &value))
		return value;
	if (postmap_query(r, addr, &value) == 0 && *dom != '\0') {
		snprintf(key, sizeof(key), "@%s", dom);
		if (postmap_query(r, key, &value) < 0)
			value = NULL;
	}
	cache_put(r, addr, value);
	return value;
}

struct expansion {
	char **members;
	size_t count;
};

static bool
seen(const struct expansion *e, const char *addr)
{
	for (size_t i = 0; i < e->count; i++) {
		if (strcmp(e->members[i], addr) == 0)
			return true;
	}
	return false;
}

static void
expand(struct alias_resolver *r, const char *addr, unsigned int depth,
    struct expansion *e)
{
	char *value = depth < ALIAS_DEPTH ? alias_lookup(r, addr) : NULL;
	const char *p;

	if (value == NULL) {
		if (!seen(e, addr) && e->count < ALIAS_MAX_MEMBERS) {
			e->members = ma_xrealloc(
			    e->members, e->count + 1, sizeof(char *));
			e->members[e->count++] = ma_xstrdup(addr);
		}
		return;
	}
	for (p = value; *p != '\0';) {
		char raw[MA_ADDRESS_MAX + 1], norm[MA_ADDRESS_MAX + 1];
		size_t len;

		p += strspn(p, ", \t\r\n");
		len = strcspn(p, ", \t\r\n");
		if (len > 0 && len <= MA_ADDRESS_MAX) {
			memcpy(raw, p, len);
			raw[len] = '\0';
			if (ma_address_normalize(raw, norm) == 0 &&
			    norm[0] != '\0') {
				/* An alias that includes itself stops there. */
				if (strcmp(norm, addr) == 0)
					expand(r, norm, ALIAS_DEPTH, e);
				else
					expand(r, norm, depth + 1, e);
			}
		}
		p += len;
	}
	free(value);
}

size_t
alias_expand(struct alias_resolver *r, const char *addr, char ***members_r)
{
	struct expansion e = {0};
	char *value = alias_lookup(r, addr);

	if (value == NULL)
		return 0;
	free(value);
	expand(r, addr, 0, &e);
	*members_r = e.members;
	return e.count;
}
