/* SPDX-License-Identifier: MIT */
/*
 * fuzz-snapshot.c - libFuzzer target for the policy snapshot reader that
 * runs inside every Dovecot mail process: arbitrary file contents give an
 * answer or an error, never a crash; on error the answer is the seed's
 * defaults (auditing stays on).
 */

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ma-policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	struct ma_policy_answer a;
	struct ma_error err = {0};
	FILE *fp;

	if (path[0] == '\0')
		snprintf(path, sizeof(path), "/tmp/ma-fuzz-snapshot-%ld",
		    (long)getpid());
	fp = fopen(path, "w");
	if (fp == NULL)
		return 0;
	fwrite(data, 1, size, fp);
	fclose(fp);
	if (ma_policy_snapshot_lookup(path, "alice", "bob", &a, &err) < 0) {
		if (a.audit_disabled || a.bypassed ||
		    ma_policy_answer_actions(&a, MA_LOGON_OWNER) !=
			ma_preset_actions(
			    MA_PRESET_DEFAULT, MA_MAILBOX_USER, MA_SET_OWNER))
			abort();
	}
	return 0;
}
