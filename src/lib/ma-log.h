/* SPDX-License-Identifier: MIT */
#ifndef MA_LOG_H
#define MA_LOG_H

/*
 * Diagnostics for the daemon and the CLI: syslog (LOG_MAIL) for a daemon,
 * stderr for a foreground process.  Audit records are data and never go
 * through here.  ma_log_warn appends strerror(errno); every call preserves
 * errno.  ma_fatal/ma_fatalx log and exit(1): only for programs, at
 * start-up or on a broken invariant.
 */

#include <stdbool.h>

void ma_log_init(const char *progname, bool foreground, bool debug);
void ma_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ma_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ma_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ma_log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ma_fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void ma_fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#endif
