/* SPDX-License-Identifier: MIT */
/*
 * headers.c - the header values the milter reads (see headers.h), parsed
 * with GMime: address lists (RFC 5322 groups, comments, quoted local
 * parts, encoded display names) and RFC 2047 text.  Input is whatever a
 * sender wrote; fuzzed by tests/fuzz/fuzz-headers.c.
 */

#include "headers.h"

#include <gmime/gmime.h>
#include <string.h>

void
header_first_address(const char *value, char out[MA_ADDRESS_MAX + 1])
{
	InternetAddressList *list;

	out[0] = '\0';
	if (value == NULL)
		return;
	list = internet_address_list_parse(NULL, value);
	if (list == NULL)
		return;
	for (int i = 0; i < internet_address_list_length(list); i++) {
		InternetAddress *ia =
		    internet_address_list_get_address(list, i);

		if (INTERNET_ADDRESS_IS_MAILBOX(ia) &&
		    ma_address_normalize(internet_address_mailbox_get_addr(
					     INTERNET_ADDRESS_MAILBOX(ia)),
			out) == 0)
			break;
		out[0] = '\0';
	}
	g_object_unref(list);
}

bool
header_lists(const char *value, const char *addr)
{
	InternetAddressList *list;
	bool found = false;

	if (value == NULL)
		return false;
	list = internet_address_list_parse(NULL, value);
	if (list == NULL)
		return false;
	for (int i = 0; i < internet_address_list_length(list) && !found; i++) {
		InternetAddress *ia =
		    internet_address_list_get_address(list, i);
		char norm[MA_ADDRESS_MAX + 1];

		if (INTERNET_ADDRESS_IS_MAILBOX(ia) &&
		    ma_address_normalize(internet_address_mailbox_get_addr(
					     INTERNET_ADDRESS_MAILBOX(ia)),
			norm) == 0)
			found = strcmp(norm, addr) == 0;
		else if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			InternetAddressList *members =
			    internet_address_group_get_members(
				INTERNET_ADDRESS_GROUP(ia));

			for (int k = 0;
			     members != NULL && !found &&
			     k < internet_address_list_length(members);
			     k++) {
				InternetAddress *m =
				    internet_address_list_get_address(
					members, k);

				if (INTERNET_ADDRESS_IS_MAILBOX(m) &&
				    ma_address_normalize(
					internet_address_mailbox_get_addr(
					    INTERNET_ADDRESS_MAILBOX(m)),
					norm) == 0)
					found = strcmp(norm, addr) == 0;
			}
		}
	}
	g_object_unref(list);
	return found;
}

char *
header_decode_text(const char *raw)
{
	char *s, *out;

	if (raw == NULL)
		return NULL;
	s = g_mime_utils_header_decode_text(NULL, raw);
	if (s == NULL)
		return NULL;
	/* Unfold and trim; cut like every sensor does. */
	for (char *p = s; *p != '\0'; p++) {
		if (*p == '\r' || *p == '\n' || *p == '\t')
			*p = ' ';
	}
	out = ma_xstrdup(g_strstrip(s));
	g_free(s);
	return out;
}
