/* SPDX-License-Identifier: MIT */
#ifndef FORWARD_CMD_H
#define FORWARD_CMD_H

/* mailauditctl forward status [--json]; see mailauditctl(8). */

#include "ma-conf.h"

/*
 * argv[0] is "status".  Prints every configured destination; returns 0,
 * 1 when the store or a state file could not be read (still printed), 2
 * on a usage error.
 */
int forward_status(const struct ma_conf *conf, int argc, char **argv);

#endif
