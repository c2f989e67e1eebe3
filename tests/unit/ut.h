/* SPDX-License-Identifier: MIT */
#ifndef UT_H
#define UT_H

/*
 * A tiny unit-test harness in Dovecot's test-common shape.  Each test
 * function calls ut_begin(name), any number of assertions, ut_end().
 * UT_MAIN(f1, f2, ...) runs them and prints "N passed, N failed", where
 * N counts test functions (a function fails if any assertion failed).
 */

#include <stdbool.h>
#include <string.h>

void ut_begin(const char *name);
void ut_end(void);
void ut_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ut_run(void (*const tests[])(void), unsigned int count);

#define ut_assert(e) ((e) ? (void)0 : ut_fail(__FILE__, __LINE__, "%s", #e))
#define ut_assert_str(a, b)                                                    \
	do {                                                                   \
		const char *ut_a_ = (a), *ut_b_ = (b);                         \
		if (ut_a_ == NULL || ut_b_ == NULL ||                          \
		    strcmp(ut_a_, ut_b_) != 0)                                 \
			ut_fail(__FILE__, __LINE__, "%s: '%s' != '%s'", #a,    \
			    ut_a_ == NULL ? "(null)" : ut_a_,                  \
			    ut_b_ == NULL ? "(null)" : ut_b_);                 \
	} while (0)
#define ut_assert_cmp(a, op, b)                                                \
	do {                                                                   \
		long long ut_a_ = (long long)(a), ut_b_ = (long long)(b);      \
		if (!(ut_a_ op ut_b_))                                         \
			ut_fail(__FILE__, __LINE__, "%s %s %s: %lld vs %lld",  \
			    #a, #op, #b, ut_a_, ut_b_);                        \
	} while (0)

#define UT_MAIN(...)                                                           \
	int main(void)                                                         \
	{                                                                      \
		static void (*const ut_tests_[])(void) = {__VA_ARGS__};        \
		return ut_run(                                                 \
		    ut_tests_, sizeof(ut_tests_) / sizeof(ut_tests_[0]));      \
	}

#endif
