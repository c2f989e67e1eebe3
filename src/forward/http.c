/* SPDX-License-Identifier: MIT */
/*
 * http.c - the HTTP transports of mailaudit-forward (libcurl): Splunk's
 * HTTP Event Collector ("hec") and the Elasticsearch/OpenSearch _bulk API
 * ("elastic").
 *
 * A send() renders records into one request body at a time (up to
 * `batch` records and HTTP_BODY_MAX bytes), POSTs it on a kept-alive
 * connection (one CURL handle per destination) and reads the answer:
 *
 *  hec      body = concatenated HEC event objects (ma_siem_hec_event),
 *           "Authorization: Splunk <token_file>".  200 {"code":0} takes the
 *           whole request.  400 with "invalid-event-number": N (codes 6,
 *           12, 13, 15: that event is malformed) takes the N events before
 *           it, refuses event N for good (reject_fn) and the rest is sent
 *           in the next request.  401/403 is "HEC token refused"; 429, 503
 *           and other 5xx are "try later" (Retry-After kept).  HTTP 200
 *           means Splunk parsed the events: indexer acknowledgment
 *           (ackId polling) is not used.
 *  elastic  POST TARGET/_bulk, NDJSON "create" pairs with _id = record Id
 *           (ma_siem_bulk_create).  "errors":false takes everything;
 *           otherwise item by item, in order: 200/201, and 409 (the _id is
 *           there already: a resend) are taken; 429 and 5xx end the taken
 *           prefix (the rest is resent later); any other status (a
 *           mapping or parse error) is refused for good (reject_fn) and
 *           counts as taken.  Auth: api_key_file (ApiKey) or user +
 *           password_file (basic).
 *
 * open() probes the receiver once before anything is sent (http_probe),
 * so that a wrong token, an unknown host or a certificate we do not trust
 * is reported by --check and at start-up, not only when records flow:
 *
 *  hec      POST an empty body to the event URL.  Splunk checks the token
 *           first and then answers 400 {"text":"No data","code":5}; a
 *           token it does not take is 401 (code 2 "Token is required", 3
 *           "Invalid authorization") or 403 (code 1 "Token disabled", 4
 *           "Invalid token").  Sources: the status code table of
 *           Splunk's "Troubleshoot HTTP Event Collector" (help.splunk.com,
 *           Get Data In), as reproduced in the SplunkAdmins app's
 *           splunkadmins_hec_reply_code_lookup.csv (which also notes that
 *           AWS Firehose probes HEC with an empty POST expecting 400), and
 *           fluent-bit PR #12043 (in_splunk made to answer 401 code 2/3
 *           and 403 code 4 "as Splunk documents").  400 code 10 "Data
 *           channel is missing" means the token wants indexer
 *           acknowledgment, which we do not use: an error too.
 *  elastic  GET TARGET/ (the root API, cluster info): 200 takes us in,
 *           401 refuses the credentials.  403 is not an error: the
 *           credentials were accepted but lack the cluster privilege
 *           "monitor" that GET / needs (Elasticsearch's Root API
 *           reference), which an API key made only to write the data
 *           stream rightly has not got.
 *  either   404 (the URL is wrong) and 3xx (not followed) are errors; 429
 *           and 5xx are not (the receiver is there: send() will meet the
 *           same answer and honour its Retry-After).  No HTTP answer at
 *           all (resolve, connect, TLS verification, timeout) is an error
 *           that names the host, port and ca file.
 *
 * Every "try later" answer returns -1 with err (and res->retry_after_ms
 * when the server sent Retry-After), after counting in res->accepted what
 * was taken before it; 0 means all n records were taken.  Secrets are read
 * at open(), so a reopen picks up a rotated token.  TLS is verified
 * against ca= (or the system store); redirects are never followed (a 3xx
 * is an error naming the Location); only http and https are allowed.
 *
 * Not done: gzip request bodies, HEC indexer acknowledgment, a proxy
 * setting of our own (libcurl honours https_proxy/no_proxy).
 */

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "transport.h"

#define HTTP_RECORD_MAX         (1024 * 1024)      /* one rendered record */
#define HTTP_BODY_MAX           (16 * 1024 * 1024) /* one request body, soft */
#define HTTP_RESP_MAX           (64 * 1024 * 1024) /* one response body */
#define HTTP_SECRET_MAX         4096
#define HTTP_RETRY_AFTER_MAX_MS (24 * 3600 * 1000LL)

enum http_kind {
	HTTP_HEC,
	HTTP_ELASTIC
};

struct http_conn {
	const struct fwd_dest_conf *conf;
	const struct ma_siem_ctx *siem;
	enum http_kind kind;
	CURL *curl;
	struct curl_slist *headers;
	char *url;
	char *probe_url;    /* elastic: TARGET/ */
	char hostport[300]; /* host:port of the URL, for messages */
	char *password;     /* basic auth, elastic only */
	struct ma_buf one;  /* one rendered record */
	struct ma_buf body; /* the request */
	struct ma_buf resp; /* the response body */
	bool resp_overflow;
	int64_t retry_after_ms; /* from the last response's headers */
	char location[256];     /* from the last response's headers */
	char errbuf[CURL_ERROR_SIZE];
};

typedef void http_reject_fn(
    void *ctx, const struct ma_record *rec, const char *why);

static pthread_once_t http_once = PTHREAD_ONCE_INIT;
static CURLcode http_global_rc;

static void
http_global_init(void)
{
	http_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/*
 * http_read_secret - the first line of path, without trailing blanks:
 * a token, an API key or a password.  Refused when empty, longer than
 * HTTP_SECRET_MAX or holding control characters (it goes into a header).
 * The error names the file, never its content.
 */
static char *
http_read_secret(const char *path, struct ma_error *err)
{
	char buf[HTTP_SECRET_MAX + 2];
	size_t len = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		ma_error_set(err, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	while (len < sizeof(buf) - 1 &&
	       (r = read(fd, buf + len, sizeof(buf) - 1 - len)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ma_error_set(
			    err, "cannot read %s: %s", path, strerror(errno));
			close(fd);
			return NULL;
		}
		len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0';
	/* one line: a trailing newline (and blanks) are not part of it */
	len = strcspn(buf, "\r\n");
	while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	if (len == 0 || len > HTTP_SECRET_MAX) {
		explicit_bzero(buf, sizeof(buf));
		ma_error_set(err, "%s: %s", path,
		    len == 0 ? "empty" : "longer than 4096 bytes");
		return NULL;
	}
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f) {
			explicit_bzero(buf, sizeof(buf));
			ma_error_set(
			    err, "%s: holds a control character", path);
			return NULL;
		}
	}
	char *s = ma_xstrdup(buf);

	explicit_bzero(buf, sizeof(buf));
	return s;
}

static void
http_free_secret(char **s)
{
	if (*s != NULL) {
		explicit_bzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

static size_t
http_write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct http_conn *c = ud;
	size_t len = size * nmemb;

	if (ma_buf_append(&c->resp, ptr, len) < 0) {
		c->resp_overflow = true;
		return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
	}
	return len;
}

/* Retry-After: delta-seconds or an HTTP-date; Location for the message */
static size_t
http_header_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct http_conn *c = ud;
	size_t len = size * nmemb;
	char val[128];
	size_t vlen;

	if (len > 12 && strncasecmp(ptr, "Retry-After:", 12) == 0) {
		const char *v = ptr + 12;

		vlen = len - 12;
		while (vlen > 0 && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
			vlen--;
		if (vlen == 0 || vlen >= sizeof(val))
			return len;
		memcpy(val, v, vlen);
		val[vlen] = '\0';
		uint64_t secs;

		if (ma_parse_u64(val, HTTP_RETRY_AFTER_MAX_MS / 1000, &secs) ==
		    0) {
			c->retry_after_ms = (int64_t)secs * 1000;
		} else {
			time_t t = curl_getdate(val, NULL);
			int64_t delta = (int64_t)t * 1000 - ma_now_ms();

			if (t != -1 && delta > 0)
				c->retry_after_ms =
				    delta < HTTP_RETRY_AFTER_MAX_MS
					? delta
					: HTTP_RETRY_AFTER_MAX_MS;
		}
	} else if (len > 9 && strncasecmp(ptr, "Location:", 9) == 0) {
		ma_sanitize(ptr + 9, len - 9, c->location, sizeof(c->location));
	} else if (len >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
		/* a new response (after a 100 Continue): forget the last */
		c->retry_after_ms = 0;
		c->location[0] = '\0';
	}
	return len;
}

static int
http_check(const struct fwd_dest_conf *conf, struct ma_error *err)
{
	const char *files[5] = {conf->ca, conf->cert, conf->key,
	    conf->token_file, conf->api_key_file};
	bool https = strncmp(conf->target, "https://", 8) == 0;

	if (!https && strncmp(conf->target, "http://", 7) != 0)
		return ma_error_set(err,
		    "%s: target must be an http:// or "
		    "https:// URL",
		    conf->name);
	if (strcmp(conf->type, "hec") == 0 && conf->token_file == NULL)
		return ma_error_set(
		    err, "%s: hec needs token_file=", conf->name);
	if ((conf->user == NULL) != (conf->password_file == NULL))
		return ma_error_set(err,
		    "%s: user= and password_file= go together", conf->name);
	for (unsigned int i = 0; i < 5; i++) {
		if (files[i] != NULL && access(files[i], R_OK) < 0)
			return ma_error_set(err, "%s: cannot read %s: %s",
			    conf->name, files[i], strerror(errno));
	}
	if (conf->password_file != NULL &&
	    access(conf->password_file, R_OK) < 0)
		return ma_error_set(err, "%s: cannot read %s: %s", conf->name,
		    conf->password_file, strerror(errno));
	return 0;
}

static void http_close(void *vconn);
static void http_hostport(struct http_conn *c);
static int http_probe(struct http_conn *c, struct ma_error *err);

static int
http_add_header(struct http_conn *c, const char *h)
{
	struct curl_slist *l = curl_slist_append(c->headers, h);

	if (l == NULL)
		return -1;
	c->headers = l;
	return 0;
}

/* "Authorization: <scheme> <secret from path>" */
static int
http_auth_header(struct http_conn *c, const char *scheme, const char *path,
    struct ma_error *err)
{
	char *secret = http_read_secret(path, err);
	struct ma_buf h;
	int ret = 0;

	if (secret == NULL)
		return -1;
	ma_buf_init(&h, HTTP_SECRET_MAX + 64);
	if (ma_buf_printf(&h, "Authorization: %s %s", scheme, secret) < 0 ||
	    http_add_header(c, h.data) < 0)
		ret = ma_error_set(err, "%s: cannot build the header", path);
	explicit_bzero(h.data, h.len);
	ma_buf_deinit(&h);
	http_free_secret(&secret);
	return ret;
}

static void *
http_open_kind(const struct fwd_dest_conf *conf, const struct ma_siem_ctx *siem,
    enum http_kind kind, struct ma_error *err)
{
	struct http_conn *c;
	CURLcode rc = CURLE_OK;
	size_t tlen;

	if (http_check(conf, err) < 0)
		return NULL;
	pthread_once(&http_once, http_global_init);
	if (http_global_rc != CURLE_OK) {
		ma_error_set(err, "%s: curl_global_init: %s", conf->name,
		    curl_easy_strerror(http_global_rc));
		return NULL;
	}
	c = ma_xcalloc(1, sizeof(*c));
	c->conf = conf;
	c->siem = siem;
	c->kind = kind;
	ma_buf_init(&c->one, HTTP_RECORD_MAX);
	ma_buf_init(&c->body, HTTP_BODY_MAX + HTTP_RECORD_MAX);
	ma_buf_init(&c->resp, HTTP_RESP_MAX);
	tlen = strlen(conf->target);
	if (kind == HTTP_ELASTIC) {
		while (tlen > 0 && conf->target[tlen - 1] == '/')
			tlen--;
		c->url = ma_xmalloc(tlen + sizeof("/_bulk"));
		memcpy(c->url, conf->target, tlen);
		memcpy(c->url + tlen, "/_bulk", sizeof("/_bulk"));
		c->probe_url = ma_xmalloc(tlen + sizeof("/"));
		memcpy(c->probe_url, conf->target, tlen);
		memcpy(c->probe_url + tlen, "/", sizeof("/"));
	} else {
		c->url = ma_xstrdup(conf->target);
	}
	http_hostport(c);
	if ((c->curl = curl_easy_init()) == NULL) {
		ma_error_set(err, "%s: curl_easy_init failed", conf->name);
		goto fail;
	}
	if (http_add_header(c, kind == HTTP_ELASTIC
				   ? "Content-Type: application/x-ndjson"
				   : "Content-Type: application/json") < 0 ||
	    /* curl would wait for "100 Continue" on large bodies */
	    http_add_header(c, "Expect:") < 0) {
		ma_error_set(err, "%s: cannot build the headers", conf->name);
		goto fail;
	}
	if (kind == HTTP_HEC &&
	    http_auth_header(c, "Splunk", conf->token_file, err) < 0)
		goto fail;
	if (kind == HTTP_ELASTIC && conf->api_key_file != NULL &&
	    http_auth_header(c, "ApiKey", conf->api_key_file, err) < 0)
		goto fail;
	if (kind == HTTP_ELASTIC && conf->user != NULL &&
	    (c->password = http_read_secret(conf->password_file, err)) == NULL)
		goto fail;

#define SET(opt, val)                                                          \
	do {                                                                   \
		if (rc == CURLE_OK)                                            \
			rc = curl_easy_setopt(c->curl, opt, val);              \
	} while (0)
	SET(CURLOPT_URL, c->url);
	SET(CURLOPT_ERRORBUFFER, c->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)conf->timeout_ms);
	SET(CURLOPT_TIMEOUT_MS, (long)conf->timeout_ms);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_USERAGENT, "mailaudit-forward");
	SET(CURLOPT_HTTPHEADER, c->headers);
	SET(CURLOPT_POST, 1L);
	SET(CURLOPT_WRITEFUNCTION, http_write_cb);
	SET(CURLOPT_WRITEDATA, c);
	SET(CURLOPT_HEADERFUNCTION, http_header_cb);
	SET(CURLOPT_HEADERDATA, c);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (conf->ca != NULL)
		SET(CURLOPT_CAINFO, conf->ca);
	if (conf->cert != NULL)
		SET(CURLOPT_SSLCERT, conf->cert);
	if (conf->key != NULL)
		SET(CURLOPT_SSLKEY, conf->key);
	if (c->password != NULL) {
		SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		SET(CURLOPT_USERNAME, conf->user);
		SET(CURLOPT_PASSWORD, c->password);
	}
#undef SET
	if (rc != CURLE_OK) {
		ma_error_set(err, "%s: setting up libcurl: %s", conf->name,
		    curl_easy_strerror(rc));
		goto fail;
	}
	if (http_probe(c, err) < 0)
		goto fail;
	return c;
fail:
	http_close(c);
	return NULL;
}

static void *
http_open_hec(const struct fwd_dest_conf *conf, const struct ma_siem_ctx *siem,
    struct ma_error *err)
{
	return http_open_kind(conf, siem, HTTP_HEC, err);
}

static void *
http_open_elastic(const struct fwd_dest_conf *conf,
    const struct ma_siem_ctx *siem, struct ma_error *err)
{
	return http_open_kind(conf, siem, HTTP_ELASTIC, err);
}

static void
http_close(void *vconn)
{
	struct http_conn *c = vconn;

	if (c == NULL)
		return;
	if (c->curl != NULL)
		curl_easy_cleanup(c->curl);
	/* the header list holds the token or API key */
	for (struct curl_slist *l = c->headers; l != NULL; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(c->headers);
	http_free_secret(&c->password);
	free(c->url);
	free(c->probe_url);
	ma_buf_deinit(&c->one);
	ma_buf_deinit(&c->body);
	ma_buf_deinit(&c->resp);
	free(c);
}

/* host:port of c->url, for messages (the URL itself if curl cannot split it) */
static void
http_hostport(struct http_conn *c)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL;

	if (u != NULL &&
	    curl_url_set(u, CURLUPART_URL, c->url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) ==
		CURLUE_OK)
		snprintf(c->hostport, sizeof(c->hostport), "%s:%s", host, port);
	else
		snprintf(c->hostport, sizeof(c->hostport), "%s", c->url);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
}

/*
 * http_transfer_error - err for a request that got no HTTP answer: what
 * failed (resolve, connect, TLS verification, a certificate file, time),
 * naming the host, port and file concerned.
 */
static int
http_transfer_error(
    struct http_conn *c, const char *url, CURLcode rc, struct ma_error *err)
{
	const struct fwd_dest_conf *conf = c->conf;
	const char *why =
	    c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(rc);
	long oserr = 0;

	if (c->resp_overflow)
		return ma_error_set(err, "%s: response larger than %d MiB", url,
		    HTTP_RESP_MAX >> 20);
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
		return ma_error_set(
		    err, "cannot resolve host %s: %s", c->hostport, why);
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &oserr);
		return ma_error_set(err, "connect to %s: %s", c->hostport,
		    oserr != 0 ? strerror((int)oserr) : why);
	case CURLE_PEER_FAILED_VERIFICATION:
		return ma_error_set(err,
		    "TLS: the certificate of %s is not trusted: %s (checked "
		    "against %s%s)",
		    c->hostport, why,
		    conf->ca != NULL ? "ca file " : "the system's CA store",
		    conf->ca != NULL ? conf->ca : "");
	case CURLE_SSL_CACERT_BADFILE:
		return ma_error_set(err, "TLS: ca file %s: %s",
		    conf->ca != NULL ? conf->ca : "(system)", why);
	case CURLE_SSL_CERTPROBLEM:
		return ma_error_set(err, "TLS: cert file %s, key file %s: %s",
		    conf->cert != NULL ? conf->cert : "-",
		    conf->key != NULL ? conf->key : "-", why);
	case CURLE_SSL_CONNECT_ERROR:
		return ma_error_set(
		    err, "TLS handshake with %s: %s", c->hostport, why);
	case CURLE_OPERATION_TIMEDOUT:
		return ma_error_set(err,
		    "%s: no answer within timeout_ms=%u: %s", c->hostport,
		    conf->timeout_ms, why);
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
		/* e.g. http:// to a TLS port, or a receiver that went away */
		return ma_error_set(
		    err, "connection to %s: %s", c->hostport, why);
	default:
		return ma_error_set(err, "%s: %s", url, why);
	}
}

/*
 * http_request - one request on the kept-alive handle: a POST of
 * data[0..len) to c->url, or (get) a GET of c->probe_url.  0 with
 * *status_r (the response body in c->resp), -1 with err when no HTTP
 * answer came (connect, TLS, timeout).
 */
static int
http_request(struct http_conn *c, bool get, const char *data, size_t len,
    long *status_r, struct ma_error *err)
{
	CURLcode rc;

	ma_buf_reset(&c->resp);
	c->resp_overflow = false;
	c->retry_after_ms = 0;
	c->location[0] = '\0';
	c->errbuf[0] = '\0';
	if (get) {
		rc = curl_easy_setopt(c->curl, CURLOPT_URL, c->probe_url);
		if (rc == CURLE_OK)
			rc = curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
	} else {
		/* never NULL: curl would read the body from stdin */
		rc = curl_easy_setopt(
		    c->curl, CURLOPT_POSTFIELDS, data != NULL ? data : "");
		if (rc == CURLE_OK)
			rc = curl_easy_setopt(c->curl,
			    CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	if (rc == CURLE_OK)
		rc = curl_easy_perform(c->curl);
	if (get) {
		/* back to what send() expects */
		CURLcode r2 = curl_easy_setopt(c->curl, CURLOPT_URL, c->url);

		if (r2 == CURLE_OK)
			r2 = curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
		if (r2 != CURLE_OK)
			return ma_error_set(err, "%s: resetting libcurl: %s",
			    c->url, curl_easy_strerror(r2));
	}
	if (rc != CURLE_OK)
		return http_transfer_error(
		    c, get ? c->probe_url : c->url, rc, err);
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status_r);
	return 0;
}

/* http_post - POST c->body (see http_request) */
static int
http_post(struct http_conn *c, long *status_r, struct ma_error *err)
{
	return http_request(c, false, c->body.data, c->body.len, status_r, err);
}

/* a short, printable excerpt of the response body for a message */
static const char *
http_excerpt(const struct http_conn *c, char out[160])
{
	ma_sanitize(c->resp.data, c->resp.len, out, 160);
	return out;
}

/*
 * es_reason - "type: reason" of an Elasticsearch error answer
 * ({"error":{"type":..,"reason":..}}), else an excerpt of the body.
 */
static const char *
es_reason(const struct http_conn *c, char out[160])
{
	json_t *root = json_loadb(c->resp.data, c->resp.len, 0, NULL);
	json_t *je = json_object_get(root, "error");
	const char *type = json_string_value(json_object_get(je, "type"));
	const char *reason = json_string_value(json_object_get(je, "reason"));

	if (type != NULL && reason != NULL) {
		char both[400];

		snprintf(both, sizeof(both), "%s: %s", type, reason);
		ma_sanitize(both, strlen(both), out, 160);
	} else {
		http_excerpt(c, out);
	}
	json_decref(root);
	return out;
}

/* "HTTP status + what it means" for answers that take nothing */
static int
http_status_error(struct http_conn *c, const char *what, long status,
    struct fwd_send_result *res, struct ma_error *err)
{
	char ex[160];

	res->retry_after_ms = c->retry_after_ms;
	if (status >= 300 && status < 400)
		return ma_error_set(err,
		    "%s: HTTP %ld redirect to '%s' not followed (set the "
		    "final URL as target)",
		    c->url, status, c->location);
	if (status == 413)
		return ma_error_set(err,
		    "%s: HTTP 413 request too large: lower batch=", c->url);
	return ma_error_set(err, "%s: %s (HTTP %ld%s%s): %s", c->url, what,
	    status, c->retry_after_ms > 0 ? ", Retry-After ms " : "",
	    c->retry_after_ms > 0 ? "set" : "", http_excerpt(c, ex));
}

/*
 * http_fill - render recs[from..) into c->body, up to the batch size and
 * HTTP_BODY_MAX bytes (at least one record).  Returns how many records
 * went in; *bad_r is the index of a record too large to render (the body
 * then stops before it), or n.
 */
static size_t
http_fill(struct http_conn *c, const struct ma_record *const *recs, size_t from,
    size_t n, size_t *bad_r)
{
	const struct fwd_dest_conf *conf = c->conf;
	size_t i, limit = conf->batch > 0 ? conf->batch : 500;

	ma_buf_reset(&c->body);
	*bad_r = n;
	for (i = from; i < n && i - from < limit; i++) {
		int r;

		ma_buf_reset(&c->one);
		if (c->kind == HTTP_HEC)
			r = ma_siem_hec_event(c->siem, conf->format, recs[i],
			    conf->index, conf->sourcetype, &c->one);
		else
			r = ma_siem_bulk_create(c->siem, conf->format, recs[i],
			    conf->index, &c->one);
		if (r < 0) {
			*bad_r = i;
			break;
		}
		if (i > from && c->body.len + c->one.len > HTTP_BODY_MAX)
			break;
		/* body's max is HTTP_BODY_MAX + one record: cannot fail */
		MA_ASSERT(
		    ma_buf_append(&c->body, c->one.data, c->one.len) == 0);
	}
	return i - from;
}

/*
 * http_answer_fn - reads the answer (HTTP status, c->resp) to the POST of
 * recs[0..count): sets *done_r to how many of them are done with (taken,
 * or refused for good through reject_fn and counted in res->rejected),
 * and returns 0, or -1 with err when the rest must be sent again later
 * (*done_r may then still name records that were done with).
 */
typedef int http_answer_fn(struct http_conn *c, long status,
    const struct ma_record *const *recs, size_t count, size_t *done_r,
    http_reject_fn *reject_fn, void *reject_ctx, struct fwd_send_result *res,
    struct ma_error *err);

/*
 * http_send_batches - recs[0..n) in as many requests as http_fill makes,
 * each answer read by answer; a record too large to render alone goes to
 * reject_fn with too_large.  res->accepted is how many are done with,
 * also on failure (-1 with err).
 */
static int
http_send_batches(struct http_conn *c, const struct ma_record *const *recs,
    size_t n, http_answer_fn *answer, const char *too_large,
    http_reject_fn *reject_fn, void *reject_ctx, struct fwd_send_result *res,
    struct ma_error *err)
{
	size_t done = 0;

	memset(res, 0, sizeof(*res));
	while (done < n) {
		size_t bad, count = http_fill(c, recs, done, n, &bad);

		if (count > 0) {
			size_t taken = 0;
			long status;
			int r = http_post(c, &status, err);

			if (r >= 0)
				r = answer(c, status, recs + done, count,
				    &taken, reject_fn, reject_ctx, res, err);
			done += taken;
			if (r < 0) {
				res->accepted = done;
				return -1;
			}
			if (taken < count)
				continue; /* the records after them, again */
		}
		if (bad < n && done == bad) {
			reject_fn(reject_ctx, recs[bad], too_large);
			res->rejected++;
			done++;
		}
	}
	res->accepted = done;
	return 0;
}

/* ---- Splunk HEC ---- */

/* err for a 401/403: the token was not taken (never showing the token) */
static int
hec_token_refused(struct http_conn *c, long status, json_int_t code,
    const char *text, struct ma_error *err)
{
	char t[80];

	ma_sanitize(text, strlen(text), t, sizeof(t));
	return ma_error_set(err,
	    "%s: HEC token refused (HTTP %ld, code %lld: %s); check "
	    "token_file=%s",
	    c->url, status, (long long)code, t, c->conf->token_file);
}

/* HEC codes whose 400 names one malformed event (invalid-event-number) */
static bool
hec_event_code(json_int_t code)
{
	return code == 6 || code == 12 || code == 13 || code == 15;
}

/*
 * hec_answer - what the HEC response for a request of count events means.
 * Returns the number of leading events taken (count for success), sets
 * *reject_r to the index of an event refused for good (or -1), and -1
 * with err when the answer takes nothing and means "try later" or
 * "fix the configuration".
 */
static int
hec_answer(struct http_conn *c, long status, size_t count, size_t *taken_r,
    long *reject_r, char *why, size_t why_size, struct fwd_send_result *res,
    struct ma_error *err)
{
	json_t *root = json_loadb(c->resp.data, c->resp.len, 0, NULL);
	json_int_t code = -1;
	const char *text = "";
	int ret = -1;

	*taken_r = 0;
	*reject_r = -1;
	if (root != NULL && json_is_object(root)) {
		json_t *jc = json_object_get(root, "code");
		json_t *jt = json_object_get(root, "text");

		if (json_is_integer(jc))
			code = json_integer_value(jc);
		if (json_is_string(jt))
			text = json_string_value(jt);
	}
	if (status == 200 && code == 0) {
		*taken_r = count;
		ret = 0;
	} else if (status == 200) {
		char ex[160];

		ma_error_set(err, "%s: HTTP 200 without code 0: %s", c->url,
		    http_excerpt(c, ex));
	} else if (status == 400 && hec_event_code(code)) {
		json_t *jn = json_object_get(root, "invalid-event-number");
		json_int_t num =
		    json_is_integer(jn) ? json_integer_value(jn) : -1;

		if (num < 0 || (size_t)num >= count) {
			ma_error_set(err,
			    "%s: HEC 400 code %lld '%.60s' names event %lld "
			    "of %zu",
			    c->url, (long long)code, text, (long long)num,
			    count);
		} else {
			char t[80];

			ma_sanitize(text, strlen(text), t, sizeof(t));
			snprintf(why, why_size, "HEC 400 code %lld: %s",
			    (long long)code, t);
			*taken_r = (size_t)num;
			*reject_r = (long)num;
			ret = 0;
		}
	} else if (status == 401 || status == 403) {
		hec_token_refused(c, status, code, text, err);
	} else if (status == 429 || status == 503 || status >= 500) {
		http_status_error(c,
		    status == 500 ? "HEC internal error, retrying"
				  : "HEC server busy, retrying",
		    status, res, err);
	} else {
		http_status_error(
		    c, "HEC refused the request", status, res, err);
	}
	json_decref(root);
	return ret;
}

/*
 * hec_take - the answer to a request of recs[0..count): *done_r is how
 * many are done with (taken, and the one event refused for good, which
 * goes to reject_fn); -1 with err when nothing was taken.
 */
static int
hec_take(struct http_conn *c, long status, const struct ma_record *const *recs,
    size_t count, size_t *done_r, http_reject_fn *reject_fn, void *reject_ctx,
    struct fwd_send_result *res, struct ma_error *err)
{
	size_t taken;
	long rej;
	char why[128];

	if (hec_answer(
		c, status, count, &taken, &rej, why, sizeof(why), res, err) < 0)
		return -1;
	if (rej >= 0) {
		reject_fn(reject_ctx, recs[taken], why);
		res->rejected++;
		taken++;
	}
	*done_r = taken;
	return 0;
}

static int
hec_send(void *vconn, const struct ma_record *const *recs, size_t n,
    http_reject_fn *reject_fn, void *reject_ctx, struct fwd_send_result *res,
    struct ma_error *err)
{
	return http_send_batches(vconn, recs, n, hec_take,
	    "HEC event larger than 1 MiB", reject_fn, reject_ctx, res, err);
}

/* ---- Elasticsearch / OpenSearch _bulk ---- */

/* err for a 401/403 of elastic: which setting to check (never the secret) */
static int
http_credentials_refused(
    struct http_conn *c, const char *url, long status, struct ma_error *err)
{
	const struct fwd_dest_conf *conf = c->conf;
	char ex[160];

	if (conf->api_key_file != NULL)
		return ma_error_set(err,
		    "%s: credentials refused (HTTP %ld): %s; check "
		    "api_key_file=%s",
		    url, status, es_reason(c, ex), conf->api_key_file);
	if (conf->user != NULL)
		return ma_error_set(err,
		    "%s: credentials refused (HTTP %ld): %s; check user=%s "
		    "and password_file=%s",
		    url, status, es_reason(c, ex), conf->user,
		    conf->password_file);
	return ma_error_set(err,
	    "%s: credentials refused (HTTP %ld): %s; the receiver wants "
	    "api_key_file= or user= and password_file=",
	    url, status, es_reason(c, ex));
}

/*
 * bulk_answer - walk the items of a 200 answer to count events.  Returns
 * 0 with *taken_r = count when every item was taken; -1 with err and
 * *taken_r = the prefix when an item asks to try later or the answer is
 * malformed (then *taken_r counts only what precedes the problem).  Items
 * refused for good within the prefix go to reject_fn.
 */
static int
bulk_answer(struct http_conn *c, const struct ma_record *const *recs,
    size_t count, size_t *taken_r, size_t *rejected_r,
    http_reject_fn *reject_fn, void *reject_ctx, struct ma_error *err)
{
	json_error_t jerr;
	json_t *root = json_loadb(c->resp.data, c->resp.len, 0, &jerr);
	json_t *items, *jerrors;
	int ret = -1;
	size_t i = 0;

	*rejected_r = 0;
	if (root == NULL || !json_is_object(root)) {
		char ex[160];

		ma_error_set(err, "%s: bulk answer is not a JSON object: %s",
		    c->url, http_excerpt(c, ex));
		goto out;
	}
	items = json_object_get(root, "items");
	jerrors = json_object_get(root, "errors");
	if (!json_is_array(items) || json_array_size(items) != count ||
	    !json_is_boolean(jerrors)) {
		ma_error_set(err,
		    "%s: bulk answer without errors/items for %zu records "
		    "(%zu items)",
		    c->url, count,
		    json_is_array(items) ? json_array_size(items) : 0);
		goto out;
	}
	for (i = 0; i < count; i++) {
		json_t *item = json_array_get(items, i);
		json_t *act = json_object_get(item, "create");
		json_t *js = json_object_get(act, "status");
		json_int_t status =
		    json_is_integer(js) ? json_integer_value(js) : -1;

		if (status == 200 || status == 201 || status == 409)
			continue;
		if (status < 0) {
			ma_error_set(err,
			    "%s: bulk item %zu has no create.status", c->url,
			    i);
			goto out;
		}
		json_t *je = json_object_get(act, "error");
		const char *type =
		    json_string_value(json_object_get(je, "type"));
		const char *reason =
		    json_string_value(json_object_get(je, "reason"));
		char t[64], r[160];

		ma_sanitize(type != NULL ? type : "",
		    type != NULL ? strlen(type) : 0, t, sizeof(t));
		ma_sanitize(reason != NULL ? reason : "",
		    reason != NULL ? strlen(reason) : 0, r, sizeof(r));
		if (status == 429 || status >= 500) {
			ma_error_set(err,
			    "%s: bulk item %zu answered %lld (%s: %s); "
			    "resending from it",
			    c->url, i, (long long)status, t, r);
			goto out;
		}
		char why[256];

		snprintf(why, sizeof(why), "elastic %lld %s: %s",
		    (long long)status, t, r);
		reject_fn(reject_ctx, recs[i], why);
		(*rejected_r)++;
	}
	ret = 0;
out:
	*taken_r = i;
	json_decref(root);
	return ret;
}

/*
 * bulk_take - the answer to a _bulk request of recs[0..count): *done_r is
 * how many are done with (created, or refused for good and given to
 * reject_fn); -1 with err when the rest must be sent again later.
 */
static int
bulk_take(struct http_conn *c, long status, const struct ma_record *const *recs,
    size_t count, size_t *done_r, http_reject_fn *reject_fn, void *reject_ctx,
    struct fwd_send_result *res, struct ma_error *err)
{
	size_t rejected;
	int r;

	if (status == 401 || status == 403)
		return http_credentials_refused(c, c->url, status, err);
	if (status != 200) {
		http_status_error(c,
		    status == 429 || status >= 500
			? "bulk request not taken, retrying"
			: "bulk request refused",
		    status, res, err);
		return -1;
	}
	r = bulk_answer(
	    c, recs, count, done_r, &rejected, reject_fn, reject_ctx, err);
	res->rejected += rejected;
	return r;
}

static int
elastic_send(void *vconn, const struct ma_record *const *recs, size_t n,
    http_reject_fn *reject_fn, void *reject_ctx, struct fwd_send_result *res,
    struct ma_error *err)
{
	return http_send_batches(vconn, recs, n, bulk_take,
	    "bulk document larger than 1 MiB", reject_fn, reject_ctx, res, err);
}

/* ---- the probe of open() ---- */

/* 0 when an answer to the probe lets us in; -1 with err (see the top) */
static int
http_probe(struct http_conn *c, struct ma_error *err)
{
	long status = 0;
	char ex[160];

	if (http_request(c, c->kind == HTTP_ELASTIC, "", 0, &status, err) < 0)
		return -1;
	if (status >= 300 && status < 400)
		return ma_error_set(err,
		    "%s: HTTP %ld redirect to '%s' not followed (set the "
		    "final URL as target)",
		    c->kind == HTTP_ELASTIC ? c->probe_url : c->url, status,
		    c->location);
	if (status == 404)
		return ma_error_set(err,
		    "%s: HTTP 404 not found (check the "
		    "target URL): %s",
		    c->kind == HTTP_ELASTIC ? c->probe_url : c->url,
		    http_excerpt(c, ex));
	if (c->kind == HTTP_ELASTIC) {
		if (status == 401)
			return http_credentials_refused(
			    c, c->probe_url, status, err);
		return 0;
	}
	if (status != 401 && status != 403 && status != 400)
		return 0;

	json_t *root = json_loadb(c->resp.data, c->resp.len, 0, NULL);
	json_t *jc = json_object_get(root, "code");
	json_t *jt = json_object_get(root, "text");
	json_int_t code = json_is_integer(jc) ? json_integer_value(jc) : -1;
	const char *text = json_is_string(jt) ? json_string_value(jt) : "";
	int ret = 0;

	if (status == 401 || status == 403)
		ret = hec_token_refused(c, status, code, text, err);
	else if (code == 10)
		ret = ma_error_set(err,
		    "%s: the HEC token wants indexer acknowledgment (HTTP "
		    "400, code 10: Data channel is missing), which "
		    "mailaudit-forward does not use: turn it off for the "
		    "token in token_file=%s",
		    c->url, c->conf->token_file);
	json_decref(root);
	return ret;
}

const struct fwd_transport fwd_transport_hec = {
    .type = "hec",
    .check = http_check,
    .open = http_open_hec,
    .send = hec_send,
    .close = http_close,
};

const struct fwd_transport fwd_transport_elastic = {
    .type = "elastic",
    .check = http_check,
    .open = http_open_elastic,
    .send = elastic_send,
    .close = http_close,
};
