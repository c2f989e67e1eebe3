/* SPDX-License-Identifier: MIT */
/*
 * fuzz-journal.c - libFuzzer target for what the milter parses from the
 * configuration, Postfix's sender login map and SMTP envelopes: journal
 * rules, the login map, addresses and domain lists, then a send
 * classification with whatever parsed.  Never a crash, never an address
 * longer than the limit.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ma-journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), addr[MA_ADDRESS_MAX + 1];
	struct ma_journal_rule rule;
	struct ma_login_map *map;
	struct ma_domains d;
	struct ma_error err = {0};
	struct ma_send_class c;
	char *nl;

	memcpy(text, data, size);
	text[size] = '\0';
	if (ma_journal_rule_parse(text, &rule, &err) == 0) {
		const char *rcpts[] = {text};

		if (rule.name == NULL || rule.address == NULL)
			abort();
		(void)ma_journal_rule_matches(
		    &rule, MA_DIR_ALL, text, rcpts, 1, rcpts, 1);
		ma_journal_rule_free(&rule);
	}
	map = ma_login_map_parse("fuzz", text, &err);
	nl = strchr(text, '\n');
	if (nl != NULL)
		*nl = '\0';
	if (ma_address_normalize(text, addr) == 0 &&
	    strlen(addr) > MA_ADDRESS_MAX)
		abort();
	if (ma_domains_parse(text, &d, &err) == 0) {
		ma_send_classify(ma_login_map_allows_cb, map,
		    MA_NAMES_LOCALPART, &d, text, text,
		    nl != NULL ? nl + 1 : "", "", &c);
		(void)ma_login_map_allows(map, text, text);
		ma_domains_free(&d);
	}
	ma_login_map_destroy(&map);
	free(text);
	return 0;
}
