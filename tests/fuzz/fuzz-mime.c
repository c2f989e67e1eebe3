/* SPDX-License-Identifier: MIT */
/*
 * fuzz-mime.c - libFuzzer target for the milter's streaming attachment
 * scanner: the input is split into a top-level header and a body fed in
 * chunks of varying size; the scanner must stay within its bounds.
 */

#include <gmime/gmime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime-scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool initialised;
	struct mime_scan scan;
	char *text = malloc(size + 1), *body;
	size_t off, chunk = 1;

	if (!initialised) {
		g_mime_init();
		initialised = true;
	}
	memcpy(text, data, size);
	text[size] = '\0';
	body = strchr(text, '\n');
	if (body != NULL)
		*body++ = '\0';
	mime_scan_init(&scan);
	mime_scan_top_header(&scan, "Content-Type", text);
	if (body != NULL) {
		size_t blen = size - (size_t)(body - text);

		for (off = 0; off < blen; off += chunk) {
			chunk = (chunk * 7 + 3) % 97 + 1;
			if (chunk > blen - off)
				chunk = blen - off;
			mime_scan_body(&scan, body + off, chunk);
		}
	}
	mime_scan_finish(&scan);
	if (scan.name_count > MIME_SCAN_MAX_NAMES)
		abort();
	for (unsigned int i = 0; i < scan.name_count; i++) {
		if (strlen(scan.names[i]) > MIME_SCAN_MAX_NAME_LEN)
			abort();
	}
	mime_scan_deinit(&scan);
	free(text);
	return 0;
}
