/* SPDX-License-Identifier: MIT */
/*
 * forward-cmd.c - mailauditctl forward status: where each forward
 * destination stands, from its state file (written by mailaudit-forward)
 * and the store (read-only): cursor, records and seconds behind, counters,
 * last success and last error, and whether mailaudit-forward runs (its
 * pid file is locked while it does).  Nothing here talks to the
 * forwarder or to a receiver.
 */

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward-cmd.h"
#include "ma-forward-conf.h"
#include "ma-store.h"

struct dest_status {
	const struct fwd_dest_conf *conf;
	struct ma_fwd_state st;
	int have_state; /* 1 file read, 0 none yet, -1 unreadable */
	char state_error[256];
	int64_t behind;         /* records; -1 unknown */
	int64_t behind_seconds; /* age of the oldest unsent record; -1 */
};

static int
first_fn(void *ctx, const struct ma_record *rec)
{
	*(int64_t *)ctx = rec->time_ms;
	return 0;
}

/* behind - records after the cursor and the age of the first of them */
static void
behind(struct ma_store *store, int64_t last, struct dest_status *s, int64_t now)
{
	struct ma_query q = {.result = -1, .limit = 1};
	struct ma_error err = {0};
	int64_t first_ms = 0;

	s->behind = last > s->st.cursor ? last - s->st.cursor : 0;
	s->behind_seconds = 0;
	if (s->behind == 0)
		return;
	q.cursor = s->st.cursor;
	if (ma_store_search(store, &q, first_fn, &first_ms, NULL, &err) < 0) {
		s->behind_seconds = -1;
		return;
	}
	s->behind_seconds =
	    first_ms == 0 || first_ms > now ? 0 : (now - first_ms) / 1000;
}

static void
print_time(const char *label, int64_t ms)
{
	char t[32];

	if (ms == 0) {
		printf("  %-13s never\n", label);
		return;
	}
	ma_fmt_time(ms, false, t);
	printf("  %-13s %sZ", label, t);
}

static void
print_text(const struct ma_conf *conf, struct dest_status *v, size_t n,
    int running, long pid, const char *store_error, int64_t last)
{
	if (running == 1)
		printf("mailaudit-forward: running (pid %ld)\n", pid);
	else if (running == 0)
		printf("mailaudit-forward: not running\n");
	else
		printf("mailaudit-forward: unknown (pid file unreadable)\n");
	if (store_error != NULL)
		printf("store %s: error: %s\n", conf->store_path, store_error);
	else
		printf("store %s: last seq %lld\n", conf->store_path,
		    (long long)last);
	for (size_t i = 0; i < n; i++) {
		struct dest_status *s = &v[i];

		printf("\n%s  %s  %s\n", s->conf->name, s->conf->type,
		    s->conf->target);
		if (s->have_state < 0) {
			printf("  state         error: %s\n", s->state_error);
			continue;
		}
		if (s->have_state == 0)
			printf(
			    "  state         none yet (nothing delivered)\n");
		printf("  cursor        %lld\n", (long long)s->st.cursor);
		if (s->behind >= 0)
			printf("  behind        %lld records, %lld s\n",
			    (long long)s->behind, (long long)s->behind_seconds);
		printf("  delivered     %llu\n",
		    (unsigned long long)s->st.delivered);
		printf(
		    "  rejected      %llu", (unsigned long long)s->st.rejected);
		if (s->st.rejected > 0)
			printf(" (see %s/%s.rejected)", conf->forward_state_dir,
			    s->conf->name);
		printf("\n");
		print_time("last success", s->st.last_success_ms);
		if (s->st.last_success_ms != 0)
			printf("\n");
		if (s->st.last_error_ms == 0) {
			printf("  last error    none\n");
		} else {
			print_time("last error", s->st.last_error_ms);
			printf(" %s\n", s->st.last_error);
		}
	}
}

static json_t *
time_or_null(int64_t ms)
{
	char t[32], z[40];

	if (ms == 0)
		return json_null();
	ma_fmt_time(ms, true, t);
	snprintf(z, sizeof(z), "%sZ", t);
	return json_string(z);
}

static json_t *
num_or_null(int64_t v)
{
	return v < 0 ? json_null() : json_integer(v);
}

static int
print_json(const struct ma_conf *conf, struct dest_status *v, size_t n,
    int running, long pid, const char *store_error, int64_t last)
{
	json_t *root = json_object(), *dests = json_array(), *store;
	char *text;

	json_object_set_new(root, "running",
	    running < 0 ? json_null() : json_boolean(running == 1));
	json_object_set_new(
	    root, "pid", running == 1 ? json_integer(pid) : json_null());
	store = json_object();
	json_object_set_new(store, "path", json_string(conf->store_path));
	json_object_set_new(store, "last_seq",
	    store_error == NULL ? json_integer(last) : json_null());
	json_object_set_new(store, "error",
	    store_error != NULL ? json_string(store_error) : json_null());
	json_object_set_new(root, "store", store);
	json_object_set_new(
	    root, "state_dir", json_string(conf->forward_state_dir));
	for (size_t i = 0; i < n; i++) {
		struct dest_status *s = &v[i];
		json_t *d = json_object();

		json_object_set_new(d, "name", json_string(s->conf->name));
		json_object_set_new(d, "type", json_string(s->conf->type));
		json_object_set_new(d, "target", json_string(s->conf->target));
		json_object_set_new(d, "state",
		    json_string(s->have_state > 0    ? "ok"
				: s->have_state == 0 ? "none"
						     : "error"));
		json_object_set_new(d, "state_error",
		    s->have_state < 0 ? json_string(s->state_error)
				      : json_null());
		json_object_set_new(d, "cursor", json_integer(s->st.cursor));
		json_object_set_new(
		    d, "records_behind", num_or_null(s->behind));
		json_object_set_new(
		    d, "seconds_behind", num_or_null(s->behind_seconds));
		json_object_set_new(
		    d, "delivered", json_integer((json_int_t)s->st.delivered));
		json_object_set_new(
		    d, "rejected", json_integer((json_int_t)s->st.rejected));
		json_object_set_new(
		    d, "last_success", time_or_null(s->st.last_success_ms));
		json_object_set_new(
		    d, "last_error_time", time_or_null(s->st.last_error_ms));
		json_object_set_new(d, "last_error",
		    s->st.last_error_ms != 0 ? json_string(s->st.last_error)
					     : json_null());
		json_object_set_new(
		    d, "updated", time_or_null(s->st.updated_ms));
		json_array_append_new(dests, d);
	}
	json_object_set_new(root, "destinations", dests);
	text = json_dumps(root, JSON_INDENT(2) | JSON_ENSURE_ASCII);
	if (text != NULL)
		printf("%s\n", text);
	free(text);
	json_decref(root);
	return text != NULL ? 0 : -1;
}

int
forward_status(const struct ma_conf *conf, int argc, char **argv)
{
	struct ma_store_options so = {.readonly = true, .cache_kib = 2048};
	struct fwd_dest_conf *dests;
	struct dest_status *v;
	struct ma_error err = {0}, serr = {0};
	struct ma_store *store;
	int64_t last = 0, now = ma_now_ms();
	bool json = false;
	int running, ret = 0;
	long pid = 0;
	size_t n;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else {
			fprintf(stderr,
			    "usage: mailauditctl forward status [--json]\n");
			return 2;
		}
	}
	if (ma_fwd_dests_parse(conf->forwards, &dests, &n, &err) < 0) {
		fprintf(stderr, "mailauditctl: forward: %s\n", err.msg);
		return 1;
	}
	if (n == 0 && !json)
		printf("no forward destinations configured\n");
	running = ma_fwd_running(conf->forward_state_dir, &pid, &err);
	store = ma_store_open(conf->store_path, &so, &serr);
	if (store != NULL && ma_store_last_seq(store, &last, &serr) < 0)
		ma_store_destroy(&store);
	if (store == NULL)
		ret = 1;
	v = ma_xcalloc(n + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		struct dest_status *s = &v[i];

		s->conf = &dests[i];
		s->behind = s->behind_seconds = -1;
		s->have_state = ma_fwd_state_read(
		    conf->forward_state_dir, dests[i].name, &s->st, &err);
		if (s->have_state < 0) {
			snprintf(s->state_error, sizeof(s->state_error), "%s",
			    err.msg);
			memset(&s->st, 0, sizeof(s->st));
			ret = 1;
			continue;
		}
		if (store != NULL)
			behind(store, last, s, now);
	}
	if (json)
		print_json(conf, v, n, running, pid,
		    store == NULL ? serr.msg : NULL, last);
	else
		print_text(conf, v, n, running, pid,
		    store == NULL ? serr.msg : NULL, last);
	ma_store_destroy(&store);
	free(v);
	ma_fwd_dests_free(&dests, n);
	return ret;
}
