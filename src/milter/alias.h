/* SPDX-License-Identifier: MIT */
#ifndef ALIAS_H
#define ALIAS_H

/*
 * Virtual alias expansion for journal reports ("To: member, Expanded:
 * group").  A milter sees recipients before Postfix's cleanup expands
 * them, so we ask Postfix's own tables the same question cleanup asks:
 * `postmap -q <address> <maps>` (and "@domain" when the address has no
 * entry), recursively, which works for every map type Postfix supports.
 * Answers are cached for a minute.  Expansion stops at 8 levels, at
 * ALIAS_MAX_MEMBERS addresses, at loops and at the caller's deadline
 * (then only cached answers are used); a failed lookup is logged, never
 * cached, and makes lookups fail at once for the next 10 s, so a broken
 * table cannot make every message wait.  Callers learn that an answer is
 * incomplete.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ALIAS_MAX_MEMBERS 1000

struct alias_resolver;

/* maps: Postfix map specs ("texthash:/etc/postfix/virtual ..."); config_dir
   for postmap -c, or "" for Postfix's default. */
struct alias_resolver *alias_create(const char *maps, const char *config_dir);
void alias_destroy(struct alias_resolver **r);

/*
 * alias_lookup - the raw right-hand side for addr (then "@domain"), as
 * postmap prints it, in *value_r (the caller frees it).  1 found, 0 no
 * entry, -1 the lookup failed.  Also how the milter asks a Postfix sender
 * login table.
 */
int alias_lookup(struct alias_resolver *r, const char *addr, char **value_r);

/*
 * alias_expand - the final recipients addr expands to (normalised, the
 * caller frees each and the array), or 0 when addr is no alias (the
 * caller then uses addr itself).  Lookups not cached by deadline_ms are
 * skipped; *incomplete_r says whether any lookup was skipped or failed.
 */
size_t alias_expand(struct alias_resolver *r, const char *addr,
    int64_t deadline_ms, char ***members_r, bool *incomplete_r);

#endif
