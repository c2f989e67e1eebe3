/* SPDX-License-Identifier: MIT */
#ifndef MA_FORWARD_CONF_H
#define MA_FORWARD_CONF_H

/*
 * Forwarding destinations and their state files (docs/FORWARDING.md):
 *  - a "forward = NAME TYPE TARGET [option=value ...]" line of
 *    mailaudit.conf, parsed and checked (types, options, host:port or
 *    URL, required options) into struct fwd_dest_conf;
 *  - forward_state_dir/NAME.state, the cursor and counters of one
 *    destination, written by mailaudit-forward and read by mailauditd
 *    (retention) and mailauditctl (status).
 * Part of ma_core: libc only, so the config parser and the fuzz target
 * can use it.  Nothing here opens a certificate or resolves a host: that
 * is mailaudit-forward's job, at start-up and on every reconnect.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ma-siem.h"
#include "ma-util.h"

#define FWD_NAME_MAX 32
/* records per batch: per RELP session; every other type */
#define FWD_RELP_BATCH_DEFAULT 2000
#define FWD_BATCH_DEFAULT      500
/* mailaudit-forward's pid file in forward_state_dir, flock'ed while it runs */
#define FWD_PID_NAME "mailaudit-forward.pid"

/* A destination as configured ("forward = NAME TYPE TARGET opt=val ..."). */
struct fwd_dest_conf {
	char *name;
	char *type;   /* syslog, syslog-tls, relp, hec, elastic */
	char *target; /* host:port or URL */
	enum ma_siem_format format;
	/* TLS (syslog-tls, relp tls=yes, https) */
	char *ca, *cert, *key, *peer_name;
	bool tls;
	/* HTTP */
	char *token_file, *api_key_file, *user, *password_file;
	char *index, *sourcetype;
	uint32_t batch;      /* records per request / write, default 500;
				relp: FWD_RELP_BATCH_DEFAULT */
	uint32_t window;     /* RELP window, default 128 */
	uint32_t timeout_ms; /* connect + I/O, default 10000 */
	/* host and port of a host:port target (NULL/0 for a URL) */
	char *host;
	uint16_t port;
};

/*
 * ma_fwd_dest_parse - one forward line's value ("NAME TYPE TARGET
 * opt=val ...") into *dest (zeroed first; free with ma_fwd_dest_free
 * whatever the result).  -1 with the reason (naming the word) in err.
 */
int ma_fwd_dest_parse(
    const char *value, struct fwd_dest_conf *dest, struct ma_error *err);
void ma_fwd_dest_free(struct fwd_dest_conf *dest);

/*
 * ma_fwd_dests_parse - every line of lines ('\n'-separated values, as in
 * struct ma_conf's forwards; NULL or "" = none) into a new array;
 * duplicate names are an error.  Free with ma_fwd_dests_free.
 */
int ma_fwd_dests_parse(const char *lines, struct fwd_dest_conf **dests_r,
    size_t *count_r, struct ma_error *err);
void ma_fwd_dests_free(struct fwd_dest_conf **dests, size_t count);

/*
 * ma_fwd_dest_check_new - parse value as ma_fwd_dest_parse does and also
 * refuse a NAME already used by one of lines (the config parser's check
 * of each new forward line).
 */
int ma_fwd_dest_check_new(
    const char *lines, const char *value, struct ma_error *err);

/* The state of one destination, as kept in forward_state_dir/NAME.state. */
struct ma_fwd_state {
	char type[16];
	char target[512];
	int64_t cursor;          /* highest seq acknowledged for good */
	uint64_t delivered;      /* records the receiver took */
	uint64_t rejected;       /* records refused for good (NAME.rejected) */
	int64_t last_success_ms; /* 0 = never */
	int64_t last_error_ms;   /* 0 = none since start */
	char last_error[256];    /* "" = none; no control characters */
	int64_t updated_ms;      /* when the file was written */
	long pid;                /* writer's pid */
};

/*
 * ma_fwd_state_path - "dir/NAME.state" (suffix ".state"), or another
 * suffix (".rejected", ".state.tmp").  Returns a new string.
 */
char *ma_fwd_state_path(const char *dir, const char *name, const char *suffix);

/*
 * ma_fwd_state_read - read dir/NAME.state.  1 and *st filled; 0 when the
 * file does not exist (*st zeroed: cursor 0); -1 with err when it cannot
 * be read or is malformed.
 */
int ma_fwd_state_read(const char *dir, const char *name,
    struct ma_fwd_state *st, struct ma_error *err);

/*
 * ma_fwd_state_write - replace dir/NAME.state atomically: write
 * NAME.state.tmp, fdatasync, rename, fsync the directory.  -1 with err.
 */
int ma_fwd_state_write(const char *dir, const char *name,
    const struct ma_fwd_state *st, struct ma_error *err);

/*
 * ma_fwd_lowest_cursor - the lowest cursor over the destinations of
 * lines (state files in dir; a missing file counts as cursor 0).
 * 1 with *cursor_r and the destination's name in name_r (FWD_NAME_MAX+1
 * bytes); 0 when no destination is configured; -1 with err when a state
 * file cannot be read (the caller must then treat everything as unsent).
 */
int ma_fwd_lowest_cursor(const char *lines, const char *dir, int64_t *cursor_r,
    char *name_r, struct ma_error *err);

/*
 * ma_fwd_held_text - what retention says when forwarding keeps records
 * that were due (docs/FORWARDING.md, "Retention"): "records above seq
 * LIMIT are kept until forward destination NAME has acknowledged them
 * (DIR/NAME.state)", or, with name NULL, "... until the forward
 * destinations have acknowledged them (DIR)".  Into out, cut to
 * out_size (at least 1).
 */
void ma_fwd_held_text(const char *dir, const char *name, int64_t limit,
    char *out, size_t out_size);

/*
 * ma_fwd_running - is mailaudit-forward running with state in dir?  1 and
 * *pid_r when its pid file is locked, 0 when not (no file, or a stale
 * one), -1 with err when the file cannot be read.
 */
int ma_fwd_running(const char *dir, long *pid_r, struct ma_error *err);

#endif
