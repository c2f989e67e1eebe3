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
 * ALIAS_MAX_MEMBERS addresses and at loops; a failed lookup is treated as
 * "no alias" and logged.
 */

#include <stddef.h>

#define ALIAS_MAX_MEMBERS 1000

struct alias_resolver;

/* maps: Postfix map specs ("texthash:/etc/postfix/virtual ..."); config_dir
   for postmap -c, or "" for Postfix's default. */
struct alias_resolver *alias_create(const char *maps, const char *config_dir);
void alias_destroy(struct alias_resolver **r);

/*
 * alias_lookup - the raw right-hand side for addr (then "@domain"), as
 * postmap prints it; the caller frees it.  NULL: no entry.  Also how the
 * milter asks a Postfix sender login table.
 */
char *alias_lookup(struct alias_resolver *r, const char *addr);

/*
 * alias_expand - the final recipients addr expands to (normalised, the
 * caller frees each and the array), or 0 when addr is no alias (the
 * caller then uses addr itself).
 */
size_t alias_expand(
    struct alias_resolver *r, const char *addr, char ***members_r);

#endif
