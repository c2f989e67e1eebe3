/* SPDX-License-Identifier: MIT */
/*
 * ut.c - the unit-test harness: counts failing assertions per test
 * function and prints a closing "N passed, N failed" line.
 */

#include "ut.h"

#include <stdarg.h>
#include <stdio.h>

static const char *current;
static unsigned int current_failures, passed, failed;

void
ut_begin(const char *name)
{
	current = name;
	current_failures = 0;
}

void
ut_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL %s (%s:%d): ", current != NULL ? current : "?",
	    file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	current_failures++;
}

void
ut_end(void)
{
	if (current_failures == 0) {
		passed++;
		printf("ok   %s\n", current);
	} else {
		failed++;
		printf("FAIL %s\n", current);
	}
	current = NULL;
}

int
ut_run(void (*const tests[])(void), unsigned int count)
{
	for (unsigned int i = 0; i < count; i++)
		tests[i]();
	printf("%u passed, %u failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
