/* SPDX-License-Identifier: MIT */
#ifndef HEADERS_H
#define HEADERS_H

/* Header values from untrusted mail; g_mime_init() must have run. */

#include <stdbool.h>
#include "ma-journal.h"

/* The first mailbox of an address-list header, normalised; "" if none. */
void header_first_address(const char *value, char out[MA_ADDRESS_MAX + 1]);
/* Is addr (normalised) one of the mailboxes of the header, groups too? */
bool header_lists(const char *value, const char *addr);
/* Unstructured text (Subject) decoded to UTF-8, unfolded and trimmed; the
   caller frees it; NULL for NULL. */
char *header_decode_text(const char *raw);

#endif
