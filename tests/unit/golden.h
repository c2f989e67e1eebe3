/* SPDX-License-Identifier: MIT */
#ifndef GOLDEN_H
#define GOLDEN_H

/*
 * The runner of the golden-file tests, Postfix style: every <case>.in in
 * the golden directory is one wire-protocol frame (ma-proto.h); it is
 * decoded, given store sequence number GOLDEN_SEQ (frames carry none) and
 * handed to the test's check function, which renders it and compares
 * each output with golden_compare.  A mismatch prints the differing lines
 * with control and non-ASCII bytes shown as \xNN.
 *
 * Usage of a golden test: <prog> [-u] <dir>
 *   -u  rewrite the .ref files from the current output (then review the
 *       change with git diff before committing it).
 */

#include <stddef.h>

#include "ma-record.h"

#define GOLDEN_SEQ      4242
#define GOLDEN_MAX_FILE (1024 * 1024)

/*
 * golden_compare - got[0..got_len) must equal <dir>/<name>.<ext>.ref byte
 * for byte (a failure of the current test otherwise); with -u the file
 * is rewritten from got instead.
 */
void golden_compare(const char *dir, const char *name, const char *ext,
    const char *got, size_t got_len);

/*
 * golden_main - runs check on every case of the directory named on the
 * command line, one test per case (name: the file without ".in"), and
 * returns main's exit code.
 */
int golden_main(int argc, char **argv, const char *prog,
    void (*check)(
	const char *dir, const char *name, const struct ma_record *rec));

#endif
