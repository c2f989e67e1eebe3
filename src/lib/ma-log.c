/* SPDX-License-Identifier: MIT */
/*
 * ma-log.c - the logging backend shared by mailauditd and mailauditctl,
 * shaped like OpenSMTPD's log.c: one formatter, two sinks.
 */

#include "ma-log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static const char *log_progname = "mailaudit";
static bool log_foreground = true;
static bool log_debug_on;

void
ma_log_init(const char *progname, bool foreground, bool debug)
{
	log_progname = progname;
	log_foreground = foreground;
	log_debug_on = debug;
	if (!foreground)
		openlog(progname, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

static void vlog(int pri, const char *fmt, va_list ap, const char *suffix)
    __attribute__((format(printf, 2, 0)));

static void
vlog(int pri, const char *fmt, va_list ap, const char *suffix)
{
	char msg[1024];
	int saved = errno;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_foreground) {
		fprintf(stderr, "%s: %s%s%s\n", log_progname, msg,
		    suffix != NULL ? ": " : "", suffix != NULL ? suffix : "");
		fflush(stderr);
	} else {
		syslog(pri, "%s%s%s", msg, suffix != NULL ? ": " : "",
		    suffix != NULL ? suffix : "");
	}
	errno = saved;
}

#define LOGFN(name, pri, cond, with_errno)                                     \
	void name(const char *fmt, ...)                                        \
	{                                                                      \
		va_list ap;                                                    \
		const char *suffix = (with_errno) ? strerror(errno) : NULL;    \
		if (!(cond))                                                   \
			return;                                                \
		va_start(ap, fmt);                                             \
		vlog(pri, fmt, ap, suffix);                                    \
		va_end(ap);                                                    \
	}

LOGFN(ma_log_debug, LOG_DEBUG, log_debug_on, false)
LOGFN(ma_log_info, LOG_INFO, true, false)
LOGFN(ma_log_warn, LOG_WARNING, true, true)
LOGFN(ma_log_warnx, LOG_WARNING, true, false)

void
ma_fatal(const char *fmt, ...)
{
	va_list ap;
	const char *suffix = strerror(errno);

	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap, suffix);
	va_end(ap);
	exit(1);
}

void
ma_fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap, NULL);
	va_end(ap);
	exit(1);
}
