/* SPDX-License-Identifier: MIT */
/*
 * fuzz-headers.c - libFuzzer target for the header values the milter
 * reads from any sender's mail: From/Sender/To/Cc address lists and the
 * Subject's encoded words.  The first line is the header value, the
 * second an address to look for.  Never a crash; every address returned
 * is normalised and within the limit.
 */

#include <gmime/gmime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "headers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool initialised;
	char *text = malloc(size + 1), *nl, *subject;
	char addr[MA_ADDRESS_MAX + 1], norm[MA_ADDRESS_MAX + 1];

	if (!initialised) {
		g_mime_init();
		initialised = true;
	}
	memcpy(text, data, size);
	text[size] = '\0';
	nl = strchr(text, '\n');
	if (nl != NULL)
		*nl = '\0';
	header_first_address(text, addr);
	if (strlen(addr) > MA_ADDRESS_MAX)
		abort();
	if (addr[0] != '\0' &&
	    (ma_address_normalize(addr, norm) < 0 || strcmp(addr, norm) != 0))
		abort();
	if (addr[0] != '\0' && !header_lists(text, addr))
		abort();
	if (nl != NULL)
		(void)header_lists(text, nl + 1);
	subject = header_decode_text(text);
	free(subject);
	free(text);
	return 0;
}
