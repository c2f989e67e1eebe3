/* SPDX-License-Identifier: MIT */
#ifndef MA_JOURNAL_H
#define MA_JOURNAL_H

/*
 * The pure part of journaling and send auditing, shared by the milter,
 * the config parser and the fuzz targets: journal rules, address
 * normalisation, local domains, message direction, the sender login map
 * and the classification of a submission as Send, SendAs or SendOnBehalf.
 * Nothing here does I/O except ma_login_map_load.  See docs/JOURNALING.md.
 */

#include <stdbool.h>
#include <stddef.h>
#include "ma-action.h"
#include "ma-util.h"

#define MA_ADDRESS_MAX 320 /* RFC 5321: 64 + 1 + 255 */

enum ma_journal_mode {
	MA_JOURNAL_COPY,   /* the message itself, as an extra recipient */
	MA_JOURNAL_REPORT, /* an envelope report with the message attached */
};

/* Direction bits; a message can be internal and outbound at once. */
#define MA_DIR_INTERNAL 1u
#define MA_DIR_INBOUND  2u
#define MA_DIR_OUTBOUND 4u
#define MA_DIR_ALL      (MA_DIR_INTERNAL | MA_DIR_INBOUND | MA_DIR_OUTBOUND)

/*
 * One journal_rule line:
 *   <name> copy|report all|internal|inbound|outbound[,...] <journal-address>
 *       [mailboxes=<address>[,<address>...] | group=<address>]
 * With mailboxes=, only messages from or to one of those addresses match;
 * with group=, only messages from or to the group address or one of its
 * members (the caller expands the group, e.g. from virtual_alias_maps).
 */
struct ma_journal_rule {
	char *name;
	enum ma_journal_mode mode;
	unsigned int scope; /* MA_DIR_* bits */
	char *address;      /* normalised journal mailbox address */
	char **mailboxes;   /* normalised; NULL when the rule is unlimited */
	size_t mailbox_count;
	char *group; /* normalised group address, or NULL */
};

/* Parse one rule; -1 with the offending word named in err. */
int ma_journal_rule_parse(
    const char *text, struct ma_journal_rule *rule_r, struct ma_error *err);
void ma_journal_rule_free(struct ma_journal_rule *rule);
/*
 * Does the rule take a message of direction dir between these addresses?
 * members: the group's expansion when the rule has group= (else unused).
 */
bool ma_journal_rule_matches(const struct ma_journal_rule *rule,
    unsigned int dir, const char *sender, const char *const *rcpts,
    size_t rcpt_count, const char *const *members, size_t member_count);
/* "internal,outbound" etc. into buf (at least 32 bytes). */
void ma_journal_dir_name(unsigned int dir, char *buf, size_t size);

/*
 * ma_address_normalize - strip one pair of angle brackets and surrounding
 * blanks, lower-case the domain (and, since mail systems treat them so,
 * the local part).  Writes at most MA_ADDRESS_MAX bytes + NUL into out
 * (which must hold MA_ADDRESS_MAX + 1).  Returns -1 for an address that is
 * empty, too long, or has control bytes; "" (the null sender) is 0 and
 * yields "".
 */
int ma_address_normalize(const char *in, char out[MA_ADDRESS_MAX + 1]);
/*
 * ma_address_list_next - the next address of a comma/blank/newline
 * separated list at *pos (as Postfix tables return them), normalised into
 * out; words that are not addresses are skipped.  false at the end.
 */
bool ma_address_list_next(const char **pos, char out[MA_ADDRESS_MAX + 1]);
/* The part after the last '@', or "" */
const char *ma_address_domain(const char *addr);

/* Local domains: a comma/space separated list, matched exactly. */
struct ma_domains {
	char **names;
	size_t count;
};
int ma_domains_parse(
    const char *list, struct ma_domains *domains_r, struct ma_error *err);
void ma_domains_free(struct ma_domains *domains);
bool ma_domains_has(const struct ma_domains *domains, const char *addr);

/*
 * ma_journal_direction - originated means the message comes from us: a
 * SASL-authenticated client, a trusted network or the local submission
 * path.  Local recipients of originated mail make it internal, remote
 * ones outbound; anything not originated is inbound, whatever its sender
 * domain claims (*spoofed_r is set when that claim is a local domain).
 */
unsigned int ma_journal_direction(bool originated,
    const struct ma_domains *local, const char *sender,
    const char *const *rcpts, size_t rcpt_count, bool *spoofed_r);

/*
 * Sender login map, the format of Postfix's smtpd_sender_login_maps
 * source file (texthash): "address login[, login...]" per line, '#'
 * comments, continuation lines start with blanks; a key "@domain" covers
 * the whole domain.  Keys and logins are normalised like addresses.
 */
struct ma_login_map;
/* ma_login_map_parse - from text; -1 with "name:line: reason". */
struct ma_login_map *ma_login_map_parse(
    const char *name, const char *text, struct ma_error *err);
struct ma_login_map *ma_login_map_load(const char *path, struct ma_error *err);
void ma_login_map_destroy(struct ma_login_map **map);
/* May login use address (own address, or listed for it or its domain)? */
bool ma_login_map_allows(
    const struct ma_login_map *map, const char *login, const char *address);

/*
 * How addresses name mailboxes: MA_NAMES_ADDRESS uses the address itself
 * (virtual users), MA_NAMES_LOCALPART the local part for local domains
 * (system users, Dovecot auth_username_format=%n).
 */
enum ma_mailbox_names {
	MA_NAMES_ADDRESS,
	MA_NAMES_LOCALPART
};
int ma_mailbox_names_parse(const char *s, enum ma_mailbox_names *names_r);
/* The mailbox (user) name for a normalised address or login into out. */
void ma_mailbox_name(enum ma_mailbox_names names,
    const struct ma_domains *local, const char *addr,
    char out[MA_ADDRESS_MAX + 1]);

/*
 * A submission, classified the way Exchange audits sends.  login is the
 * SASL user; env_from the envelope sender; from the first From: address
 * ("" if none); sender the Sender: address ("" if none); all normalised.
 */
struct ma_send_class {
	enum ma_action action; /* SEND, SEND_AS or SEND_ON_BEHALF */
	enum ma_logon logon;   /* Owner for Send, Delegate otherwise */
	const char *principal; /* address sent as / on behalf of */
	bool permitted;        /* the login map allows it */
};
/* May login send as address?  (The map, Postfix's tables, ...) */
typedef bool ma_send_allows_fn(
    void *ctx, const char *login, const char *address);
/* The adapter for a struct ma_login_map (ctx; NULL allows nothing). */
bool ma_login_map_allows_cb(void *map, const char *login, const char *address);

void ma_send_classify(ma_send_allows_fn *allows, void *ctx,
    enum ma_mailbox_names names, const struct ma_domains *local,
    const char *login, const char *env_from, const char *from,
    const char *sender, struct ma_send_class *class_r);

#endif
