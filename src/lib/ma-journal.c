/* SPDX-License-Identifier: MIT */
/*
 * ma-journal.c - journal rules, addresses, direction, the sender login map
 * and send classification (see ma-journal.h).
 *
 * Everything here is a pure function of its arguments (the login map is
 * parsed once and then only read, so threads may share it).  Input comes
 * from the configuration, from Postfix's maps and from SMTP envelopes and
 * headers that any sender controls, so every parser bounds what it keeps
 * and is fuzzed (tests/fuzz/fuzz-journal.c).
 *
 * Addresses are compared after ma_address_normalize, which lower-cases
 * the whole address.  RFC 5321 lets a local part be case-sensitive; no
 * mail system in use relies on it, and Postfix's own table lookups fold
 * case too.
 */

#include "ma-journal.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LOGIN_MAP_MAX      (16 * 1024 * 1024)
#define RULE_MAX_MAILBOXES 10000

/* Addresses. */

int
ma_address_normalize(const char *in, char out[MA_ADDRESS_MAX + 1])
{
	size_t len;

	while (*in == ' ' || *in == '\t')
		in++;
	len = strlen(in);
	while (len > 0 && (in[len - 1] == ' ' || in[len - 1] == '\t'))
		len--;
	if (len >= 2 && in[0] == '<' && in[len - 1] == '>') {
		in++;
		len -= 2;
	}
	if (len > MA_ADDRESS_MAX)
		return -1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c < 0x21 || c == 0x7f || c == '<' || c == '>')
			return -1;
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
	}
	out[len] = '\0';
	return 0;
}

bool
ma_address_list_next(const char **pos, char out[MA_ADDRESS_MAX + 1])
{
	const char *p = *pos;

	for (;;) {
		char raw[MA_ADDRESS_MAX + 1];
		size_t len;

		p += strspn(p, ", \t\r\n");
		if (*p == '\0') {
			*pos = p;
			return false;
		}
		len = strcspn(p, ", \t\r\n");
		if (len <= MA_ADDRESS_MAX) {
			memcpy(raw, p, len);
			raw[len] = '\0';
			if (ma_address_normalize(raw, out) == 0 &&
			    out[0] != '\0') {
				*pos = p + len;
				return true;
			}
		}
		p += len;
	}
}

const char *
ma_address_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at == NULL ? "" : at + 1;
}

/* Split a comma/space separated list; calls fn for each word. */
static int
split_words(const char *list, const char *seps,
    int (*fn)(void *ctx, const char *word, size_t len), void *ctx)
{
	const char *p = list;

	while (*p != '\0') {
		size_t len;

		p += strspn(p, seps);
		len = strcspn(p, seps);
		if (len > 0 && fn(ctx, p, len) < 0)
			return -1;
		p += len;
	}
	return 0;
}

/* Local domains. */

struct domains_ctx {
	struct ma_domains *domains;
	struct ma_error *err;
};

static int
domains_add(void *ctx, const char *word, size_t len)
{
	struct domains_ctx *c = ctx;
	char *name;

	if (len > 255)
		return ma_error_set(c->err, "domain '%.64s...' too long", word);
	name = ma_xstrndup(word, len);
	for (char *s = name; *s != '\0'; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s + ('a' - 'A'));
		else if ((unsigned char)*s < 0x21 || *s == '@') {
			ma_error_set(c->err, "'%.64s' is not a domain", name);
			free(name);
			return -1;
		}
	}
	c->domains->names = ma_xrealloc(c->domains->names,
	    c->domains->count + 1, sizeof(*c->domains->names));
	c->domains->names[c->domains->count++] = name;
	return 0;
}

int
ma_domains_parse(
    const char *list, struct ma_domains *domains_r, struct ma_error *err)
{
	struct domains_ctx ctx = {domains_r, err};

	memset(domains_r, 0, sizeof(*domains_r));
	if (split_words(list, ", \t", domains_add, &ctx) < 0) {
		ma_domains_free(domains_r);
		return -1;
	}
	return 0;
}

void
ma_domains_free(struct ma_domains *domains)
{
	for (size_t i = 0; i < domains->count; i++)
		free(domains->names[i]);
	free(domains->names);
	memset(domains, 0, sizeof(*domains));
}

bool
ma_domains_has(const struct ma_domains *domains, const char *addr)
{
	const char *dom = ma_address_domain(addr);

	if (*dom == '\0')
		return false;
	for (size_t i = 0; i < domains->count; i++) {
		if (strcasecmp(domains->names[i], dom) == 0)
			return true;
	}
	return false;
}

unsigned int
ma_journal_direction(bool originated, const struct ma_domains *local,
    const char *sender, const char *const *rcpts, size_t rcpt_count,
    bool *spoofed_r)
{
	unsigned int dir = 0;

	*spoofed_r = false;
	if (!originated) {
		*spoofed_r = ma_domains_has(local, sender);
		return MA_DIR_INBOUND;
	}
	for (size_t i = 0; i < rcpt_count; i++)
		dir |= ma_domains_has(local, rcpts[i]) ? MA_DIR_INTERNAL
						       : MA_DIR_OUTBOUND;
	/* No recipient at all cannot happen after RCPT; call it internal. */
	return dir != 0 ? dir : MA_DIR_INTERNAL;
}

void
ma_journal_dir_name(unsigned int dir, char *buf, size_t size)
{
	static const struct {
		unsigned int bit;
		const char *name;
	} names[] = {{MA_DIR_INTERNAL, "internal"}, {MA_DIR_INBOUND, "inbound"},
	    {MA_DIR_OUTBOUND, "outbound"}};
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int n;

		if ((dir & names[i].bit) == 0)
			continue;
		n = snprintf(buf + off, size - off, "%s%s", off > 0 ? "," : "",
		    names[i].name);
		if (n < 0 || (size_t)n >= size - off)
			return;
		off += (size_t)n;
	}
}

/* Journal rules. */

struct rule_ctx {
	struct ma_journal_rule *rule;
	struct ma_error *err;
	unsigned int word;
};

static int
scope_add(void *ctx, const char *word, size_t len)
{
	unsigned int *scope = ctx;

	if (len == 3 && strncmp(word, "all", 3) == 0)
		*scope |= MA_DIR_ALL;
	else if (len == 8 && strncmp(word, "internal", 8) == 0)
		*scope |= MA_DIR_INTERNAL;
	else if (len == 7 && strncmp(word, "inbound", 7) == 0)
		*scope |= MA_DIR_INBOUND;
	else if (len == 8 && strncmp(word, "outbound", 8) == 0)
		*scope |= MA_DIR_OUTBOUND;
	else
		return -1;
	return 0;
}

static int
mailbox_add(void *ctx, const char *word, size_t len)
{
	struct rule_ctx *c = ctx;
	struct ma_journal_rule *r = c->rule;
	char raw[MA_ADDRESS_MAX + 1], norm[MA_ADDRESS_MAX + 1];

	if (len > MA_ADDRESS_MAX || r->mailbox_count >= RULE_MAX_MAILBOXES)
		return ma_error_set(
		    c->err, "mailboxes: too many or too long addresses");
	memcpy(raw, word, len);
	raw[len] = '\0';
	if (ma_address_normalize(raw, norm) < 0 || strchr(norm, '@') == NULL)
		return ma_error_set(
		    c->err, "mailboxes: '%.64s' is not an address", raw);
	r->mailboxes =
	    ma_xrealloc(r->mailboxes, r->mailbox_count + 1, sizeof(char *));
	r->mailboxes[r->mailbox_count++] = ma_xstrdup(norm);
	return 0;
}

static int
rule_word(void *ctx, const char *word, size_t len)
{
	struct rule_ctx *c = ctx;
	struct ma_journal_rule *r = c->rule;
	char buf[MA_ADDRESS_MAX + 1];
	char *w;
	int ret = 0;

	if (len > 16 * 1024 * 1024)
		return ma_error_set(c->err, "rule too long");
	w = ma_xstrndup(word, len);
	switch (c->word++) {
	case 0:
		for (const char *s = w; *s != '\0'; s++) {
			if (!((*s >= 'a' && *s <= 'z') ||
				(*s >= 'A' && *s <= 'Z') ||
				(*s >= '0' && *s <= '9') || *s == '-' ||
				*s == '_' || *s == '.'))
				ret = ma_error_set(c->err,
				    "rule name '%.64s' may have only letters, "
				    "digits, '-', '_' and '.'",
				    w);
		}
		if (ret == 0 && strlen(w) > 64)
			ret = ma_error_set(c->err, "rule name too long");
		if (ret == 0)
			r->name = ma_xstrdup(w);
		break;
	case 1:
		if (strcmp(w, "copy") == 0)
			r->mode = MA_JOURNAL_COPY;
		else if (strcmp(w, "report") == 0)
			r->mode = MA_JOURNAL_REPORT;
		else
			ret = ma_error_set(
			    c->err, "mode '%.64s' is not copy or report", w);
		break;
	case 2:
		if (split_words(w, ",", scope_add, &r->scope) < 0 ||
		    r->scope == 0)
			ret = ma_error_set(c->err,
			    "scope '%.64s' is not all, internal, inbound or "
			    "outbound (or a comma-separated list of them)",
			    w);
		break;
	case 3:
		if (ma_address_normalize(w, buf) < 0 ||
		    strchr(buf, '@') == NULL || buf[0] == '@')
			ret = ma_error_set(c->err,
			    "journal address '%.64s' is not an address", w);
		else
			r->address = ma_xstrdup(buf);
		break;
	case 4:
		if (strncmp(w, "group=", 6) == 0) {
			if (ma_address_normalize(w + 6, buf) < 0 ||
			    strchr(buf, '@') == NULL || buf[0] == '@')
				ret = ma_error_set(c->err,
				    "group '%.64s' is not an address", w + 6);
			else
				r->group = ma_xstrdup(buf);
		} else if (strncmp(w, "mailboxes=", 10) != 0)
			ret = ma_error_set(c->err,
			    "'%.64s': expected mailboxes=<address>,... or "
			    "group=<address>",
			    w);
		else if (split_words(w + 10, ",", mailbox_add, c) < 0)
			ret = -1;
		else if (r->mailbox_count == 0)
			ret = ma_error_set(c->err, "mailboxes= is empty");
		break;
	default:
		ret = ma_error_set(c->err, "unexpected '%.64s'", w);
		break;
	}
	free(w);
	return ret;
}

int
ma_journal_rule_parse(
    const char *text, struct ma_journal_rule *rule_r, struct ma_error *err)
{
	struct rule_ctx ctx = {rule_r, err, 0};

	memset(rule_r, 0, sizeof(*rule_r));
	if (split_words(text, " \t", rule_word, &ctx) < 0) {
		ma_journal_rule_free(rule_r);
		return -1;
	}
	if (ctx.word < 4) {
		ma_journal_rule_free(rule_r);
		return ma_error_set(err,
		    "expected '<name> copy|report <scope> <journal-address> "
		    "[mailboxes=...]'");
	}
	return 0;
}

void
ma_journal_rule_free(struct ma_journal_rule *rule)
{
	free(rule->name);
	free(rule->address);
	free(rule->group);
	for (size_t i = 0; i < rule->mailbox_count; i++)
		free(rule->mailboxes[i]);
	free(rule->mailboxes);
	memset(rule, 0, sizeof(*rule));
}

static bool
in_list(const char *const *list, size_t count, const char *addr)
{
	for (size_t i = 0; i < count; i++) {
		if (strcmp(list[i], addr) == 0)
			return true;
	}
	return false;
}

/* limited_to - is addr one of the rule's mailboxes or its group? */
static bool
limited_to(const struct ma_journal_rule *rule, const char *addr,
    const char *const *members, size_t member_count)
{
	if (rule->group != NULL)
		return strcmp(rule->group, addr) == 0 ||
		       in_list(members, member_count, addr);
	return in_list(
	    (const char *const *)rule->mailboxes, rule->mailbox_count, addr);
}

bool
ma_journal_rule_matches(const struct ma_journal_rule *rule, unsigned int dir,
    const char *sender, const char *const *rcpts, size_t rcpt_count,
    const char *const *members, size_t member_count)
{
	if ((rule->scope & dir) == 0)
		return false;
	if (rule->mailbox_count == 0 && rule->group == NULL)
		return true;
	if (limited_to(rule, sender, members, member_count))
		return true;
	for (size_t i = 0; i < rcpt_count; i++) {
		if (limited_to(rule, rcpts[i], members, member_count))
			return true;
	}
	return false;
}

/* Mailbox names. */

int
ma_mailbox_names_parse(const char *s, enum ma_mailbox_names *names_r)
{
	if (strcmp(s, "address") == 0)
		*names_r = MA_NAMES_ADDRESS;
	else if (strcmp(s, "localpart") == 0)
		*names_r = MA_NAMES_LOCALPART;
	else
		return -1;
	return 0;
}

void
ma_mailbox_name(enum ma_mailbox_names names, const struct ma_domains *local,
    const char *addr, char out[MA_ADDRESS_MAX + 1])
{
	const char *at = strrchr(addr, '@');
	size_t len = strlen(addr);

	if (names == MA_NAMES_LOCALPART && at != NULL &&
	    ma_domains_has(local, addr))
		len = (size_t)(at - addr);
	if (len > MA_ADDRESS_MAX)
		len = MA_ADDRESS_MAX;
	memcpy(out, addr, len);
	out[len] = '\0';
}

/* The sender login map. */

struct login_entry {
	char *key;     /* normalised address or "@domain" */
	char **logins; /* normalised */
	size_t login_count;
};

struct ma_login_map {
	struct login_entry *entries;
	size_t count;
};

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct login_entry *)a)->key,
	    ((const struct login_entry *)b)->key);
}

static int
login_add(void *ctx, const char *word, size_t len)
{
	struct login_entry *e = ctx;
	char raw[MA_ADDRESS_MAX + 1], norm[MA_ADDRESS_MAX + 1];

	if (len > MA_ADDRESS_MAX)
		return -1;
	memcpy(raw, word, len);
	raw[len] = '\0';
	if (ma_address_normalize(raw, norm) < 0)
		return -1;
	e->logins = ma_xrealloc(e->logins, e->login_count + 1, sizeof(char *));
	e->logins[e->login_count++] = ma_xstrdup(norm);
	return 0;
}

static void
entry_free(struct login_entry *e)
{
	free(e->key);
	for (size_t i = 0; i < e->login_count; i++)
		free(e->logins[i]);
	free(e->logins);
}

/* map_add_line - one logical line (continuations joined) */
static int
map_add_line(struct ma_login_map *map, const char *line, const char *name,
    unsigned int lineno, struct ma_error *err)
{
	struct login_entry e = {0};
	char raw[MA_ADDRESS_MAX + 1], norm[MA_ADDRESS_MAX + 1];
	size_t klen = strcspn(line, " \t");

	if (klen > MA_ADDRESS_MAX)
		return ma_error_set(err, "%s:%u: key too long", name, lineno);
	memcpy(raw, line, klen);
	raw[klen] = '\0';
	if (ma_address_normalize(raw, norm) < 0 || norm[0] == '\0')
		return ma_error_set(
		    err, "%s:%u: '%.64s' is not an address", name, lineno, raw);
	if (split_words(line + klen, ", \t", login_add, &e) < 0 ||
	    e.login_count == 0) {
		entry_free(&e);
		return ma_error_set(err,
		    "%s:%u: '%.64s' needs one or more valid logins", name,
		    lineno, raw);
	}
	e.key = ma_xstrdup(norm);
	map->entries =
	    ma_xrealloc(map->entries, map->count + 1, sizeof(*map->entries));
	map->entries[map->count++] = e;
	return 0;
}

struct ma_login_map *
ma_login_map_parse(const char *name, const char *text, struct ma_error *err)
{
	struct ma_login_map *map = ma_xcalloc(1, sizeof(*map));
	struct ma_buf logical;
	const char *p = text;
	unsigned int lineno = 0, start = 0;

	ma_buf_init(&logical, 1024 * 1024);
	for (;;) {
		size_t len = strcspn(p, "\n");
		bool cont = len > 0 && (p[0] == ' ' || p[0] == '\t');
		bool blank = strspn(p, " \t\r") >= len;

		lineno++;
		if (*p == '#')
			blank = true;
		/* A line that is not a continuation ends the last entry. */
		if ((!cont || blank || *p == '\0') && logical.len > 0) {
			if (map_add_line(map, logical.data, name, start, err) <
			    0)
				goto fail;
			ma_buf_reset(&logical);
		}
		if (*p == '\0')
			break;
		if (!blank) {
			if (cont && logical.len == 0) {
				ma_error_set(err,
				    "%s:%u: continuation line without an "
				    "entry",
				    name, lineno);
				goto fail;
			}
			if (logical.len == 0)
				start = lineno;
			if ((logical.len > 0 &&
				ma_buf_putc(&logical, ' ') < 0) ||
			    ma_buf_append(&logical, p, len) < 0) {
				ma_error_set(
				    err, "%s:%u: entry too long", name, lineno);
				goto fail;
			}
			while (logical.len > 0 &&
			       logical.data[logical.len - 1] == '\r')
				logical.data[--logical.len] = '\0';
		}
		p += len;
		if (*p == '\n')
			p++;
	}
	ma_buf_deinit(&logical);
	if (map->count > 0)
		qsort(
		    map->entries, map->count, sizeof(*map->entries), entry_cmp);
	return map;
fail:
	ma_buf_deinit(&logical);
	ma_login_map_destroy(&map);
	return NULL;
}

struct ma_login_map *
ma_login_map_load(const char *path, struct ma_error *err)
{
	struct ma_login_map *map;
	struct ma_buf text;
	char chunk[8192];
	size_t n;
	FILE *fp = fopen(path, "re");

	if (fp == NULL) {
		ma_error_set(err, "%s: %s", path, strerror(errno));
		return NULL;
	}
	ma_buf_init(&text, LOGIN_MAP_MAX);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		if (ma_buf_append(&text, chunk, n) < 0 ||
		    memchr(chunk, '\0', n) != NULL) {
			fclose(fp);
			ma_buf_deinit(&text);
			ma_error_set(
			    err, "%s: larger than 16 MiB or binary", path);
			return NULL;
		}
	}
	fclose(fp);
	map = ma_login_map_parse(path, text.data != NULL ? text.data : "", err);
	ma_buf_deinit(&text);
	return map;
}

void
ma_login_map_destroy(struct ma_login_map **map)
{
	if (*map == NULL)
		return;
	for (size_t i = 0; i < (*map)->count; i++)
		entry_free(&(*map)->entries[i]);
	free((*map)->entries);
	free(*map);
	*map = NULL;
}

static const struct login_entry *
map_find(const struct ma_login_map *map, const char *key)
{
	struct login_entry k = {.key = (char *)(uintptr_t)key};

	if (map->count == 0)
		return NULL;
	return bsearch(
	    &k, map->entries, map->count, sizeof(*map->entries), entry_cmp);
}

static bool
entry_has(const struct login_entry *e, const char *login)
{
	if (e == NULL)
		return false;
	for (size_t i = 0; i < e->login_count; i++) {
		if (strcmp(e->logins[i], login) == 0)
			return true;
	}
	return false;
}

bool
ma_login_map_allows(
    const struct ma_login_map *map, const char *login, const char *address)
{
	char key[MA_ADDRESS_MAX + 2], addr[MA_ADDRESS_MAX + 1],
	    who[MA_ADDRESS_MAX + 1];
	const char *dom;

	if (map == NULL || ma_address_normalize(address, addr) < 0 ||
	    addr[0] == '\0' || ma_address_normalize(login, who) < 0)
		return false;
	if (entry_has(map_find(map, addr), who))
		return true;
	dom = ma_address_domain(addr);
	if (*dom == '\0')
		return false;
	snprintf(key, sizeof(key), "@%s", dom);
	return entry_has(map_find(map, key), who);
}

/* Send classification. */

static bool
owns(enum ma_mailbox_names names, const struct ma_domains *local,
    const char *login, const char *addr)
{
	char a[MA_ADDRESS_MAX + 1], b[MA_ADDRESS_MAX + 1];

	ma_mailbox_name(names, local, login, a);
	ma_mailbox_name(names, local, addr, b);
	return strcmp(a, b) == 0;
}

bool
ma_login_map_allows_cb(void *map, const char *login, const char *address)
{
	return ma_login_map_allows(map, login, address);
}

void
ma_send_classify(ma_send_allows_fn *allows, void *ctx,
    enum ma_mailbox_names names, const struct ma_domains *local,
    const char *login, const char *env_from, const char *from,
    const char *sender, struct ma_send_class *class_r)
{
	const char *principal = *from != '\0' ? from : env_from;

	class_r->action = MA_ACTION_SEND;
	class_r->logon = MA_LOGON_OWNER;
	class_r->principal = principal;
	class_r->permitted = true;
	if (*sender != '\0' && strcmp(sender, principal) != 0) {
		/* From: the principal, Sender: the one who really sent. */
		if (owns(names, local, login, principal))
			return;
		class_r->action = MA_ACTION_SEND_ON_BEHALF;
		class_r->logon = MA_LOGON_DELEGATE;
		class_r->permitted = allows(ctx, login, principal) &&
				     (owns(names, local, login, sender) ||
					 allows(ctx, login, sender));
		return;
	}
	if (*principal != '\0' && !owns(names, local, login, principal)) {
		class_r->action = MA_ACTION_SEND_AS;
	} else if (*env_from != '\0' && !owns(names, local, login, env_from)) {
		class_r->action = MA_ACTION_SEND_AS;
		class_r->principal = env_from;
	} else {
		return;
	}
	class_r->logon = MA_LOGON_DELEGATE;
	class_r->permitted = allows(ctx, login, class_r->principal);
}
