/* SPDX-License-Identifier: MIT */
/*
 * ma-forward-conf.c - forward lines of mailaudit.conf and the state files
 * of mailaudit-forward.
 *
 * A forward line is split on blanks: NAME TYPE TARGET, then option=value
 * words.  Which options a type takes, and which it requires, is one table
 * (type_options); everything is checked when the file is loaded so that a
 * typo is an error naming the line and the word, not a surprise at the
 * first reconnect.  Values hold no blanks (paths with spaces are not
 * supported).  Files are not opened and hosts not resolved here.
 *
 * A state file is a few "key=value" lines, small enough to be replaced
 * atomically (tmp + fdatasync + rename) every second.  Unknown keys are
 * ignored when reading, so a newer writer does not break an older reader.
 */

#include "ma-forward-conf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* Options, as bits, so that a type's allowed set is one word. */
enum {
	OP_FORMAT = 1u << 0,
	OP_CA = 1u << 1,
	OP_CERT = 1u << 2,
	OP_KEY = 1u << 3,
	OP_PEER_NAME = 1u << 4,
	OP_TLS = 1u << 5,
	OP_WINDOW = 1u << 6,
	OP_TOKEN_FILE = 1u << 7,
	OP_API_KEY_FILE = 1u << 8,
	OP_USER = 1u << 9,
	OP_PASSWORD_FILE = 1u << 10,
	OP_INDEX = 1u << 11,
	OP_SOURCETYPE = 1u << 12,
	OP_BATCH = 1u << 13,
	OP_TIMEOUT = 1u << 14,
};

enum opt_kind {
	K_FORMAT,
	K_PATH,
	K_NAME, /* a host name or IP address */
	K_WORD, /* printable ASCII without quotes or backslashes */
	K_BOOL,
	K_UINT,
};

static const struct fwd_opt {
	const char *name;
	unsigned int bit;
	enum opt_kind kind;
	size_t offset;
	uint32_t min, max;
} fwd_opts[] = {
#define F(f) offsetof(struct fwd_dest_conf, f)
    {"format", OP_FORMAT, K_FORMAT, F(format), 0, 0},
    {"ca", OP_CA, K_PATH, F(ca), 0, 0},
    {"cert", OP_CERT, K_PATH, F(cert), 0, 0},
    {"key", OP_KEY, K_PATH, F(key), 0, 0},
    {"peer_name", OP_PEER_NAME, K_NAME, F(peer_name), 0, 0},
    {"tls", OP_TLS, K_BOOL, F(tls), 0, 0},
    {"window", OP_WINDOW, K_UINT, F(window), 1, 65535},
    {"token_file", OP_TOKEN_FILE, K_PATH, F(token_file), 0, 0},
    {"api_key_file", OP_API_KEY_FILE, K_PATH, F(api_key_file), 0, 0},
    {"user", OP_USER, K_WORD, F(user), 0, 0},
    {"password_file", OP_PASSWORD_FILE, K_PATH, F(password_file), 0, 0},
    {"index", OP_INDEX, K_WORD, F(index), 0, 0},
    {"sourcetype", OP_SOURCETYPE, K_WORD, F(sourcetype), 0, 0},
    {"batch", OP_BATCH, K_UINT, F(batch), 1, 100000},
    {"timeout_ms", OP_TIMEOUT, K_UINT, F(timeout_ms), 100, 3600000},
#undef F
};
#define FWD_OPT_COUNT (sizeof(fwd_opts) / sizeof(fwd_opts[0]))

#define OP_COMMON (OP_FORMAT | OP_BATCH | OP_TIMEOUT)

static const struct fwd_type {
	const char *name;
	bool url; /* TARGET is a URL, else host:port */
	unsigned int allowed, required;
	enum ma_siem_format format; /* default */
	unsigned int formats;       /* bit per enum ma_siem_format allowed */
} fwd_types[] = {
    {"syslog", false, OP_COMMON, 0, MA_SIEM_JSON, 7},
    {"syslog-tls", false, OP_COMMON | OP_CA | OP_CERT | OP_KEY | OP_PEER_NAME,
	OP_CA, MA_SIEM_JSON, 7},
    {"relp", false,
	OP_COMMON | OP_TLS | OP_CA | OP_CERT | OP_KEY | OP_PEER_NAME |
	    OP_WINDOW,
	0, MA_SIEM_JSON, 7},
    {"hec", true, OP_COMMON | OP_TOKEN_FILE | OP_INDEX | OP_SOURCETYPE | OP_CA,
	OP_TOKEN_FILE, MA_SIEM_JSON, 7},
    {"elastic", true,
	OP_COMMON | OP_INDEX | OP_CA | OP_API_KEY_FILE | OP_USER |
	    OP_PASSWORD_FILE,
	0, MA_SIEM_ECS, (1u << MA_SIEM_JSON) | (1u << MA_SIEM_ECS)},
};
#define FWD_TYPE_COUNT (sizeof(fwd_types) / sizeof(fwd_types[0]))

static const char *const format_names[] = {"json", "cef", "ecs"};

static bool
name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > FWD_NAME_MAX)
		return false;
	for (; *s != '\0'; s++) {
		if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') &&
		    !(*s >= '0' && *s <= '9') && *s != '_' && *s != '-')
			return false;
	}
	return true;
}

/* host_valid - a DNS name, an IPv4 address or (bracketed) an IPv6 one */
static bool
host_valid(const char *s, size_t len, bool bracketed)
{
	if (len == 0 || len > 253)
		return false;
	if (bracketed) {
		for (size_t i = 0; i < len; i++) {
			if (ma_hexval(s[i]) < 0 && s[i] != ':' && s[i] != '.')
				return false;
		}
		return memchr(s, ':', len) != NULL;
	}
	if (s[0] == '.' || s[0] == '-' || s[len - 1] == '.' ||
	    s[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') &&
		    !(c >= '0' && c <= '9') && c != '-' && c != '.' && c != '_')
			return false;
		if (c == '.' && s[i + 1] == '.')
			return false;
	}
	return true;
}

/* ip6_literal - s (not bracketed) looks like an IPv6 address */
static bool
ip6_literal(const char *s)
{
	return strchr(s, ':') != NULL && host_valid(s, strlen(s), true);
}

static int
parse_port(const char *s, size_t len, uint16_t *port_r)
{
	char buf[8];
	uint64_t v;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (ma_parse_u64(buf, 65535, &v) < 0 || v == 0)
		return -1;
	*port_r = (uint16_t)v;
	return 0;
}

/* parse_hostport - "host:port" or "[v6]:port" */
static int
parse_hostport(struct fwd_dest_conf *d, const char *t, struct ma_error *err)
{
	const char *colon, *host = t;
	size_t hlen;
	bool br = false;

	if (t[0] == '[') {
		const char *close = strchr(t, ']');

		if (close == NULL || close[1] != ':')
			goto bad;
		host = t + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
		br = true;
	} else {
		colon = strrchr(t, ':');
		if (colon == NULL)
			goto bad;
		hlen = (size_t)(colon - t);
	}
	if (!host_valid(host, hlen, br) ||
	    parse_port(colon + 1, strlen(colon + 1), &d->port) < 0)
		goto bad;
	d->host = ma_xstrndup(host, hlen);
	return 0;
bad:
	return ma_error_set(
	    err, "target '%.80s' is not host:port (or [IPv6]:port)", t);
}

/* check_url - http(s)://host[:port][/path], no blanks or controls */
static int
check_url(const char *t, struct ma_error *err)
{
	const char *p, *end;
	uint16_t port;
	bool br = false;

	if (strncmp(t, "https://", 8) == 0)
		p = t + 8;
	else if (strncmp(t, "http://", 7) == 0)
		p = t + 7;
	else
		return ma_error_set(
		    err, "target '%.80s' is not an http:// or https:// URL", t);
	for (const char *c = t; *c != '\0'; c++) {
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f ||
		    *c == '"' || *c == '\\')
			return ma_error_set(err,
			    "target URL '%.80s' has a character that needs "
			    "%%-encoding",
			    t);
	}
	if (*p == '[') {
		end = strchr(p, ']');
		if (end == NULL)
			goto bad;
		br = true;
		if (!host_valid(p + 1, (size_t)(end - p - 1), true))
			goto bad;
		end++;
	} else {
		end = p + strcspn(p, ":/?#");
		if (!host_valid(p, (size_t)(end - p), false))
			goto bad;
	}
	if (*end == ':') {
		const char *pe = end + 1 + strcspn(end + 1, "/?#");

		if (parse_port(end + 1, (size_t)(pe - end - 1), &port) < 0)
			goto bad;
		end = pe;
	}
	if (*end != '\0' && *end != '/')
		goto bad;
	(void)br;
	return 0;
bad:
	return ma_error_set(err, "target URL '%.80s': bad host or port", t);
}

static bool
word_valid(const char *s)
{
	if (*s == '\0' || strlen(s) > 255)
		return false;
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f ||
		    *s == '"' || *s == '\\')
			return false;
	}
	return true;
}

static int
set_option(struct fwd_dest_conf *d, const struct fwd_opt *o, const char *v,
    struct ma_error *err)
{
	void *field = (char *)d + o->offset;
	uint64_t n;

	switch (o->kind) {
	case K_FORMAT:
		if (!ma_siem_format_lookup(v, (enum ma_siem_format *)field))
			return ma_error_set(
			    err, "format=%.32s: not json, cef or ecs", v);
		return 0;
	case K_PATH:
		if (v[0] != '/')
			return ma_error_set(
			    err, "%s=%.80s: not an absolute path", o->name, v);
		break;
	case K_NAME:
		if (!host_valid(v, strlen(v), false) && !ip6_literal(v))
			return ma_error_set(err,
			    "%s=%.80s: not a host name or IP address", o->name,
			    v);
		break;
	case K_WORD:
		if (!word_valid(v))
			return ma_error_set(err,
			    "%s=%.80s: empty, too long or has quotes or "
			    "control characters",
			    o->name, v);
		break;
	case K_BOOL:
		if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0)
			return ma_error_set(
			    err, "%s=%.32s: not yes or no", o->name, v);
		*(bool *)field = strcmp(v, "yes") == 0;
		return 0;
	case K_UINT:
		if (ma_parse_u64(v, UINT32_MAX, &n) < 0 || n < o->min ||
		    n > o->max)
			return ma_error_set(err,
			    "%s=%.32s: not a number from %u to %u", o->name, v,
			    o->min, o->max);
		*(uint32_t *)field = (uint32_t)n;
		return 0;
	}
	*(char **)field = ma_xstrdup(v);
	return 0;
}

/* next_word - the next blank-separated word of *p, or NULL at the end */
static char *
next_word(char **p)
{
	char *s = *p, *w;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0')
		return NULL;
	w = s;
	while (*s != '\0' && *s != ' ' && *s != '\t')
		s++;
	if (*s != '\0')
		*s++ = '\0';
	*p = s;
	return w;
}

static int
check_combination(const struct fwd_type *t, const struct fwd_dest_conf *d,
    unsigned int given, struct ma_error *err)
{
	unsigned int missing = t->required & ~given;

	for (size_t i = 0; i < FWD_OPT_COUNT; i++) {
		if ((missing & fwd_opts[i].bit) != 0)
			return ma_error_set(err, "type %s needs %s=", t->name,
			    fwd_opts[i].name);
	}
	if ((t->formats & (1u << d->format)) == 0)
		return ma_error_set(err, "type %s does not take format=%s",
		    t->name, format_names[d->format]);
	if (((given & OP_CERT) != 0) != ((given & OP_KEY) != 0))
		return ma_error_set(err, "cert= and key= go together");
	if (strcmp(t->name, "relp") == 0) {
		if (d->tls && (given & OP_CA) == 0)
			return ma_error_set(err, "relp with tls=yes needs ca=");
		if (!d->tls &&
		    (given & (OP_CA | OP_CERT | OP_KEY | OP_PEER_NAME)) != 0)
			return ma_error_set(err,
			    "ca=, cert=, key= and peer_name= need tls=yes");
	}
	if (t->url && (given & OP_CA) != 0 &&
	    strncmp(d->target, "https://", 8) != 0)
		return ma_error_set(err, "ca= needs an https:// target");
	if (strcmp(t->name, "elastic") == 0) {
		if (((given & OP_USER) != 0) !=
		    ((given & OP_PASSWORD_FILE) != 0))
			return ma_error_set(
			    err, "user= and password_file= go together");
		if ((given & OP_USER) != 0 && (given & OP_API_KEY_FILE) != 0)
			return ma_error_set(err,
			    "api_key_file= or user=+password_file=, not both");
	}
	return 0;
}

int
ma_fwd_dest_parse(
    const char *value, struct fwd_dest_conf *d, struct ma_error *err)
{
	char *copy = ma_xstrdup(value), *p = copy, *w;
	const struct fwd_type *t = NULL;
	unsigned int given = 0;
	int ret = -1;

	memset(d, 0, sizeof(*d));
	d->batch = FWD_BATCH_DEFAULT;
	d->window = 128;
	d->timeout_ms = 10000;
	w = next_word(&p);
	if (w == NULL) {
		ma_error_set(
		    err, "expected NAME TYPE TARGET [option=value ...]");
		goto out;
	}
	if (!name_valid(w)) {
		ma_error_set(err,
		    "name '%.40s' is not 1 to %d of A-Z a-z 0-9 _ -", w,
		    FWD_NAME_MAX);
		goto out;
	}
	d->name = ma_xstrdup(w);
	w = next_word(&p);
	if (w == NULL) {
		ma_error_set(err,
		    "%s: no TYPE (syslog, syslog-tls, relp, hec, "
		    "elastic)",
		    d->name);
		goto out;
	}
	for (size_t i = 0; i < FWD_TYPE_COUNT; i++) {
		if (strcmp(w, fwd_types[i].name) == 0)
			t = &fwd_types[i];
	}
	if (t == NULL) {
		ma_error_set(err,
		    "%s: unknown type '%.32s' (syslog, syslog-tls, relp, hec, "
		    "elastic)",
		    d->name, w);
		goto out;
	}
	d->type = ma_xstrdup(t->name);
	d->format = t->format;
	/* RELP sends a batch through one session (a connection, and a TLS
	   handshake with tls=yes): fewer, larger ones (docs/FORWARDING.md) */
	if (strcmp(t->name, "relp") == 0)
		d->batch = FWD_RELP_BATCH_DEFAULT;
	if (strcmp(t->name, "elastic") == 0)
		d->index = ma_xstrdup("logs-mailaudit-default");
	w = next_word(&p);
	if (w == NULL) {
		ma_error_set(err, "%s: no TARGET (%s)", d->name,
		    t->url ? "a URL" : "host:port");
		goto out;
	}
	d->target = ma_xstrdup(w);
	if (t->url ? check_url(w, err) < 0 : parse_hostport(d, w, err) < 0) {
		char why[sizeof(err->msg)];

		memcpy(why, err->msg, sizeof(why));
		ma_error_set(err, "%s: %s", d->name, why);
		goto out;
	}
	while ((w = next_word(&p)) != NULL) {
		char *eq = strchr(w, '=');
		const struct fwd_opt *o = NULL;

		if (eq == NULL || eq == w || eq[1] == '\0') {
			ma_error_set(
			    err, "%s: '%.40s' is not option=value", d->name, w);
			goto out;
		}
		*eq = '\0';
		for (size_t i = 0; i < FWD_OPT_COUNT; i++) {
			if (strcmp(w, fwd_opts[i].name) == 0)
				o = &fwd_opts[i];
		}
		if (o == NULL || (t->allowed & o->bit) == 0) {
			ma_error_set(err, "%s: type %s has no option '%.32s'",
			    d->name, t->name, w);
			goto out;
		}
		if ((given & o->bit) != 0) {
			ma_error_set(
			    err, "%s: option %s given twice", d->name, w);
			goto out;
		}
		given |= o->bit;
		if (o->bit == OP_INDEX) {
			free(d->index);
			d->index = NULL;
		}
		if (set_option(d, o, eq + 1, err) < 0) {
			char why[sizeof(err->msg)];

			memcpy(why, err->msg, sizeof(why));
			ma_error_set(err, "%s: %s", d->name, why);
			goto out;
		}
	}
	if (check_combination(t, d, given, err) < 0) {
		char why[sizeof(err->msg)];

		memcpy(why, err->msg, sizeof(why));
		ma_error_set(err, "%s: %s", d->name, why);
		goto out;
	}
	ret = 0;
out:
	free(copy);
	return ret;
}

void
ma_fwd_dest_free(struct fwd_dest_conf *d)
{
	free(d->name);
	free(d->type);
	free(d->target);
	free(d->ca);
	free(d->cert);
	free(d->key);
	free(d->peer_name);
	free(d->token_file);
	free(d->api_key_file);
	free(d->user);
	free(d->password_file);
	free(d->index);
	free(d->sourcetype);
	free(d->host);
	memset(d, 0, sizeof(*d));
}

int
ma_fwd_dests_parse(const char *lines, struct fwd_dest_conf **dests_r,
    size_t *count_r, struct ma_error *err)
{
	struct fwd_dest_conf *v = NULL;
	size_t n = 0;
	const char *p = lines != NULL ? lines : "";

	*dests_r = NULL;
	*count_r = 0;
	while (*p != '\0') {
		size_t len = strcspn(p, "\n");
		char *line = ma_xstrndup(p, len);
		int ret;

		v = ma_xrealloc(v, n + 1, sizeof(*v));
		ret = ma_fwd_dest_parse(line, &v[n], err);
		free(line);
		n++;
		for (size_t i = 0; ret == 0 && i + 1 < n; i++) {
			if (strcmp(v[i].name, v[n - 1].name) == 0)
				ret = ma_error_set(err,
				    "destination name %s used twice",
				    v[i].name);
		}
		if (ret < 0) {
			ma_fwd_dests_free(&v, n);
			return -1;
		}
		p += len;
		if (*p == '\n')
			p++;
	}
	*dests_r = v;
	*count_r = n;
	return 0;
}

void
ma_fwd_dests_free(struct fwd_dest_conf **dests, size_t count)
{
	if (*dests == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		ma_fwd_dest_free(&(*dests)[i]);
	free(*dests);
	*dests = NULL;
}

int
ma_fwd_dest_check_new(
    const char *lines, const char *value, struct ma_error *err)
{
	struct fwd_dest_conf d;
	const char *p = lines != NULL ? lines : "";
	size_t nlen;
	int ret = 0;

	if (ma_fwd_dest_parse(value, &d, err) < 0) {
		ma_fwd_dest_free(&d);
		return -1;
	}
	nlen = strlen(d.name);
	/* Earlier lines were checked already: their name is the first word. */
	while (*p != '\0' && ret == 0) {
		size_t len = strcspn(p, "\n");

		while (*p == ' ' || *p == '\t') {
			p++;
			len--;
		}
		if (len >= nlen && memcmp(p, d.name, nlen) == 0 &&
		    (len == nlen || p[nlen] == ' ' || p[nlen] == '\t'))
			ret = ma_error_set(
			    err, "destination name %s used twice", d.name);
		p += len;
		if (*p == '\n')
			p++;
	}
	ma_fwd_dest_free(&d);
	return ret;
}

/* State files. */

char *
ma_fwd_state_path(const char *dir, const char *name, const char *suffix)
{
	struct ma_buf b;
	char *path;

	ma_buf_init(&b, 8192);
	if (ma_buf_printf(&b, "%s/%s%s", dir, name, suffix) < 0)
		MA_ASSERT(!"state path too long");
	path = b.data;
	return path;
}

static void
copy_field(char *out, size_t size, const char *v)
{
	ma_sanitize(v, strlen(v), out, size);
}

static int
state_set(struct ma_fwd_state *st, const char *key, const char *v)
{
	uint64_t u;
	int64_t i;

	if (strcmp(key, "type") == 0) {
		copy_field(st->type, sizeof(st->type), v);
	} else if (strcmp(key, "target") == 0) {
		copy_field(st->target, sizeof(st->target), v);
	} else if (strcmp(key, "last_error") == 0) {
		copy_field(st->last_error, sizeof(st->last_error), v);
	} else if (strcmp(key, "delivered") == 0 ||
		   strcmp(key, "rejected") == 0) {
		if (ma_parse_u64(v, UINT64_MAX, &u) < 0)
			return -1;
		*(key[0] == 'd' ? &st->delivered : &st->rejected) = u;
	} else if (strcmp(key, "cursor") == 0 ||
		   strcmp(key, "last_success_ms") == 0 ||
		   strcmp(key, "last_error_ms") == 0 ||
		   strcmp(key, "updated_ms") == 0 || strcmp(key, "pid") == 0) {
		if (ma_parse_i64(v, &i) < 0 || i < 0)
			return -1;
		if (strcmp(key, "cursor") == 0)
			st->cursor = i;
		else if (strcmp(key, "last_success_ms") == 0)
			st->last_success_ms = i;
		else if (strcmp(key, "last_error_ms") == 0)
			st->last_error_ms = i;
		else if (strcmp(key, "updated_ms") == 0)
			st->updated_ms = i;
		else
			st->pid = (long)i;
	}
	/* Other keys (name, version, newer ones) are not needed here. */
	return 0;
}

int
ma_fwd_state_read(const char *dir, const char *name, struct ma_fwd_state *st,
    struct ma_error *err)
{
	char *path = ma_fwd_state_path(dir, name, ".state");
	char line[1024];
	unsigned int lineno = 0;
	bool have_cursor = false;
	FILE *fp;

	memset(st, 0, sizeof(*st));
	fp = fopen(path, "re");
	if (fp == NULL) {
		int e = errno;

		if (e == ENOENT) {
			free(path);
			return 0;
		}
		ma_error_set(err, "%s: %s", path, strerror(e));
		free(path);
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *eq, *nl = strchr(line, '\n');

		lineno++;
		if (nl != NULL)
			*nl = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		eq = strchr(line, '=');
		if (eq == NULL ||
		    (*eq = '\0', state_set(st, line, eq + 1) < 0)) {
			ma_error_set(
			    err, "%s:%u: malformed line", path, lineno);
			fclose(fp);
			free(path);
			return -1;
		}
		have_cursor |= strcmp(line, "cursor") == 0;
	}
	if (ferror(fp) || !have_cursor) {
		ma_error_set(err, "%s: %s", path,
		    ferror(fp) ? "read error" : "no cursor= line");
		fclose(fp);
		free(path);
		return -1;
	}
	fclose(fp);
	free(path);
	return 1;
}

static void
put_str(struct ma_buf *b, const char *key, const char *v)
{
	char clean[600];

	ma_sanitize(v, strlen(v), clean, sizeof(clean));
	ma_buf_printf(b, "%s=%s\n", key, clean);
}

int
ma_fwd_state_write(const char *dir, const char *name,
    const struct ma_fwd_state *st, struct ma_error *err)
{
	char *tmp = ma_fwd_state_path(dir, name, ".state.tmp");
	char *path = ma_fwd_state_path(dir, name, ".state");
	struct ma_buf b;
	int fd = -1, dfd, ret = -1;

	ma_buf_init(&b, 8192);
	ma_buf_printf(&b,
	    "# mailaudit-forward: state of destination %s (replaced "
	    "atomically; see docs/FORWARDING.md)\nversion=1\n",
	    name);
	put_str(&b, "name", name);
	put_str(&b, "type", st->type);
	put_str(&b, "target", st->target);
	ma_buf_printf(&b,
	    "cursor=%lld\ndelivered=%llu\nrejected=%llu\n"
	    "last_success_ms=%lld\nlast_error_ms=%lld\n",
	    (long long)st->cursor, (unsigned long long)st->delivered,
	    (unsigned long long)st->rejected, (long long)st->last_success_ms,
	    (long long)st->last_error_ms);
	put_str(&b, "last_error", st->last_error);
	ma_buf_printf(&b, "updated_ms=%lld\npid=%ld\n",
	    (long long)st->updated_ms, st->pid);
	fd = open(
	    tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0) {
		ma_error_set(err, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (ma_write_all(fd, b.data, b.len) < 0 || fdatasync(fd) < 0) {
		ma_error_set(err, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		ma_error_set(err, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		ma_error_set(err, "rename %s: %s", path, strerror(errno));
		goto out;
	}
	/* The rename itself must survive a crash, or the old cursor returns
	   (harmless but more duplicates). */
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	ret = 0;
out:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	ma_buf_deinit(&b);
	free(tmp);
	free(path);
	return ret;
}

int
ma_fwd_lowest_cursor(const char *lines, const char *dir, int64_t *cursor_r,
    char *name_r, struct ma_error *err)
{
	struct fwd_dest_conf *dests;
	size_t n;
	int found = 0;

	if (ma_fwd_dests_parse(lines, &dests, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct ma_fwd_state st;

		if (ma_fwd_state_read(dir, dests[i].name, &st, err) < 0) {
			ma_fwd_dests_free(&dests, n);
			return -1;
		}
		if (found == 0 || st.cursor < *cursor_r) {
			*cursor_r = st.cursor;
			memcpy(
			    name_r, dests[i].name, strlen(dests[i].name) + 1);
		}
		found = 1;
	}
	ma_fwd_dests_free(&dests, n);
	return found;
}

void
ma_fwd_held_text(const char *dir, const char *name, int64_t limit, char *out,
    size_t out_size)
{
	if (name != NULL)
		snprintf(out, out_size,
		    "records above seq %lld are kept until forward "
		    "destination %s has acknowledged them (%s/%s.state)",
		    (long long)limit, name, dir, name);
	else
		snprintf(out, out_size,
		    "records above seq %lld are kept until the forward "
		    "destinations have acknowledged them (%s)",
		    (long long)limit, dir);
}

int
ma_fwd_running(const char *dir, long *pid_r, struct ma_error *err)
{
	char *path = ma_fwd_state_path(dir, FWD_PID_NAME, "");
	char buf[32];
	int64_t pid;
	ssize_t n;
	int fd, ret;

	*pid_r = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = errno == ENOENT
			  ? 0
			  : ma_error_set(err, "%s: %s", path, strerror(errno));
		free(path);
		return ret;
	}
	/* The daemon holds an exclusive lock: a shared one fails then. */
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		ret = 0;
	} else if (errno == EWOULDBLOCK) {
		n = read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (ma_parse_i64(buf, &pid) == 0)
			*pid_r = (long)pid;
		ret = 1;
	} else {
		ret = ma_error_set(err, "%s: %s", path, strerror(errno));
	}
	close(fd);
	free(path);
	return ret;
}
