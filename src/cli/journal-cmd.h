/* SPDX-License-Identifier: MIT */
#ifndef JOURNAL_CMD_H
#define JOURNAL_CMD_H

/* mailauditctl journal setup|status; see mailauditctl(8). */

#include "ma-conf.h"

/* Sets the journal mailbox's audit policy; -1 on failure (reported). */
typedef int journal_policy_fn(const char *user);

/* argv[0] is "setup"; exits on a doveadm failure. */
int journal_setup(int argc, char **argv, journal_policy_fn *policy);
/* 0, or 3 when reports were refused for good. */
int journal_status(const struct ma_conf *conf);

#endif
