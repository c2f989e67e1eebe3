/* SPDX-License-Identifier: MIT */
/*
 * fuzz-conf.c - libFuzzer target for the configuration parser: any text
 * either parses, or fails with a message naming a line; never a crash,
 * and a failure leaves the defaults in place.  Forward lines accepted at
 * load must parse again into destinations (mailaudit-forward, mailauditd
 * and mailauditctl rely on that and do not re-check).
 */

#include <stdlib.h>
#include <string.h>

#include "ma-conf.h"
#include "ma-forward-conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ma_conf conf;
	struct ma_error err = {0};
	char *text = malloc(size + 1);

	memcpy(text, data, size);
	text[size] = '\0';
	if (ma_conf_parse(&conf, "fuzz.conf", text, &err) < 0) {
		if (strncmp(err.msg, "fuzz.conf:", 10) != 0)
			abort();
		if (strcmp(conf.store_path, "/var/lib/mailaudit/audit.db") != 0)
			abort();
	} else {
		struct fwd_dest_conf *dests;
		size_t n;

		if (ma_fwd_dests_parse(conf.forwards, &dests, &n, &err) < 0)
			abort();
		for (size_t i = 0; i < n; i++) {
			if (dests[i].name == NULL || dests[i].type == NULL ||
			    dests[i].target == NULL ||
			    (dests[i].host == NULL) != (dests[i].port == 0))
				abort();
		}
		ma_fwd_dests_free(&dests, n);
	}
	ma_conf_free(&conf);
	free(text);
	return 0;
}
