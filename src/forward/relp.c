/* SPDX-License-Identifier: MIT */
/*
 * relp.c - the RELP transport of mailaudit-forward (librelp 1.11).
 *
 * Each record is one RELP "syslog" command carrying its RFC 5424 message
 * (ma_siem_syslog_msg: RELP counts its frames, so no octet-count prefix).
 * The receiver (rsyslog imrelp) answers every command with "rsp 200 OK";
 * librelp keeps up to `window` commands unanswered and blocks in
 * relpCltSendSyslog while the window is full.
 *
 * Which records were acknowledged.  librelp keeps its list of unanswered
 * commands private and has no call that waits for answers short of
 * closing the session; its only report of each answer is its debug hook,
 * which it calls for every "rsp" frame with the transaction number and
 * the code ("in rsp command handler, txnr %d, code %d, ...").  Our k-th
 * command of a session has txnr k + 2 ("open" is 1).  So send() streams a
 * batch through one session, closes it (relpEngineCltDestruct sends
 * "close" and reads every answer up to the answer to "close": a RELP
 * server answers in the order it received), and counts as accepted the
 * leading records whose txnr was answered 200.  The same count holds when
 * the session breaks half-way: nothing unanswered is counted, and what
 * was answered is not resent.  (librelp 1.11 then reports an error on
 * every close: rsyslog answers "close" with an empty rsp that librelp's
 * parser rejects; the answers before it were all read by then.)
 *
 * Relying on a debug line fails safe: open() checks that the answer to
 * "open" was seen through the hook and refuses to run otherwise, and an
 * answer not seen is an answer not counted.  The price of closing per
 * batch is one connection (and TLS handshake) per batch: a trickle of
 * records costs a connection per poll, a busy stream one per `batch`.
 *
 * librelp's OpenSSL mode keeps one SSL_CTX per process, loaded with the CA
 * file of the first TLS session ever opened and never reloaded, and sets
 * it up without a lock.  Hence every RELP TLS destination must name the
 * same ca= file (checked, with an error naming both), TLS connects and
 * destructs are serialised by a process-wide mutex, and a changed CA file
 * needs a restart.  librelp writes with send() without MSG_NOSIGNAL: the
 * program must ignore SIGPIPE.
 *
 * Not done: RELP over TLS with fingerprint or certvalid authentication
 * (always "name": peer_name, default the target host, matched against the
 * certificate's CN and DNS SANs), compression (relpCltEnableTLSZip).
 */

#include <errno.h>
#include <stddef.h> /* librelp.h uses size_t without it */
#include <librelp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport.h"

/* librelp's window when none is set (relpSessSetWindowSize ignores <= 1) */
#define RELP_DEFAULT_WINDOW 128
/* largest RFC 5424 message we build; rsyslog must allow it (maxDataSize) */
#define RELP_MSG_MAX (1024 * 1024)

struct relp_conn {
	const struct fwd_dest_conf *conf;
	const struct ma_siem_ctx *siem;
	relpEngine_t *engine;
	relpClt_t *clt; /* NULL between batches */
	char port[8];
	unsigned int window; /* librelp's effective window */
	struct ma_buf msg;

	/* answers of the current session, by txnr (from the debug hook) */
	bool open_acked;      /* "open" (txnr 1) answered 200 */
	int seg_base;         /* txnr of the batch's first record */
	size_t seg_cap;       /* records of the batch in this session */
	size_t seg_cap_max;   /* allocated size of acked[] */
	uint8_t *acked;       /* acked[txnr - seg_base]: answered 200 */
	unsigned int refused; /* answers other than 200 */
	char refused_text[84];

	/* set by librelp's callbacks while one of our calls runs */
	bool failed;      /* an error was reported */
	bool capture;     /* collect connect diagnostics from dbgprint */
	char why[256];    /* first error reported */
	char detail[120]; /* a diagnostic from dbgprint (errno, timeout) */
};

/* librelp's callbacks carry no pointer of ours (dbgprint, generic errors):
   the conn whose librelp call is running in this thread. */
static __thread struct relp_conn *relp_current;

/* librelp takes these as non-const strings */
static char relp_auth_name[] = "name";
static unsigned char relp_cmd_syslog[] = "syslog";

/* One CA for all RELP TLS sessions of the process (see the top). */
static pthread_mutex_t relp_tls_lock = PTHREAD_MUTEX_INITIALIZER;
static char *relp_tls_ca;
static char relp_tls_ca_dest[FWD_NAME_MAX + 1];

static void
relp_note(struct relp_conn *c, const char *what, const char *msg, int code)
{
	char w[96], m[120];

	if (c == NULL)
		return;
	c->failed = true;
	if (c->why[0] != '\0')
		return;
	/* librelp's texts can hold raw certificate bytes (an IP SAN) */
	ma_sanitize(what, strlen(what), w, sizeof(w));
	ma_sanitize(msg, strlen(msg), m, sizeof(m));
	snprintf(c->why, sizeof(c->why), "%s: %s (librelp %d)", w, m, code);
}

static void
relp_on_err(void *usr, char *objinfo, char *errmsg, relpRetVal code)
{
	(void)usr;
	relp_note(relp_current, objinfo, errmsg, code);
}

static void
relp_on_auth_err(void *usr, char *authinfo, char *errmsg, relpRetVal code)
{
	char what[160];

	(void)usr;
	snprintf(what, sizeof(what), "TLS peer '%.120s'", authinfo);
	relp_note(relp_current, what, errmsg, code);
}

static void
relp_on_generic_err(char *objinfo, char *errmsg, relpRetVal code)
{
	relp_note(relp_current, objinfo, errmsg, code);
}

/* librelp's debug line for every answer it reads (scrsp.c) */
#define RELP_RSP_FMT "in rsp command handler, txnr %d, code %d, text '%s'\n"

/*
 * librelp's debug output.  Formatting every line would cost more than the
 * sending (it prints whole frames), so only a few are looked at by their
 * format string: each answer (which txnr, which code) and, while
 * connecting, the lines that say why a connect failed.
 */
static void __attribute__((format(printf, 1, 2))) relp_dbgprint(char *fmt, ...)
{
	struct relp_conn *c = relp_current;
	va_list ap;

	if (c == NULL)
		return;
	va_start(ap, fmt);
	if (fmt[0] == 'i' && strcmp(fmt, RELP_RSP_FMT) == 0) {
		int txnr = va_arg(ap, int), code = va_arg(ap, int);
		const char *text = va_arg(ap, const char *);

		if (txnr == 1) {
			c->open_acked = code == 200;
		} else if (txnr >= c->seg_base &&
			   (size_t)(txnr - c->seg_base) < c->seg_cap) {
			if (code == 200) {
				c->acked[txnr - c->seg_base] = 1;
			} else {
				c->refused++;
				snprintf(c->refused_text,
				    sizeof(c->refused_text), "%d %.70s", code,
				    text);
			}
		}
	} else if (!c->capture) {
		/* nothing else matters outside a connect */
	} else if (strcmp(fmt, "socket has an error %d\n") == 0) {
		int e = va_arg(ap, int);

		snprintf(c->detail, sizeof(c->detail), "%s", strerror(e));
	} else if (strcmp(fmt, "connection timed out after %d seconds\n") ==
		   0) {
		snprintf(c->detail, sizeof(c->detail),
		    "connect timed out after %d s", va_arg(ap, int));
	} else if (strcmp(fmt, "error %d in getaddrinfo\n") == 0) {
		snprintf(
		    c->detail, sizeof(c->detail), "host name not resolved");
	}
	va_end(ap);
}

static const char *
relp_strerror(relpRetVal code)
{
	switch (code) {
	case RELP_RET_IO_ERR:
		return "I/O error";
	case RELP_RET_TIMED_OUT:
		return "timed out";
	case RELP_RET_SESSION_BROKEN:
		return "session broken";
	case RELP_RET_RSP_STATE_ERR:
		return "the server answered with an error";
	case RELP_RET_RQD_FEAT_MISSING:
	case RELP_RET_INCOMPAT_OFFERS:
		return "the server does not offer the syslog command";
	case RELP_RET_ERR_TLS_SETUP:
		return "TLS setup failed (CA, certificate or key file)";
	case RELP_RET_ERR_TLS_HANDS:
		return "TLS handshake failed";
	case RELP_RET_ERR_TLS:
		return "TLS error";
	case RELP_RET_AUTH_ERR_NAME:
		return "server certificate does not match peer_name";
	case RELP_RET_AUTH_NO_CERT:
		return "server presented no certificate";
	case RELP_RET_AUTH_CERT_INVL:
		return "server certificate not valid for ca=";
	case RELP_RET_ERR_NO_TLS:
		return "librelp has no TLS support";
	case RELP_RET_CMD_DISABLED:
		return "syslog command disabled in this session";
	default:
		return "RELP error";
	}
}

/* err = "relp HOST:PORT: doing: reason (code) [peer]; details" */
static int
relp_fail(struct relp_conn *c, const char *doing, relpRetVal code,
    struct ma_error *err)
{
	const struct fwd_dest_conf *conf = c->conf;
	char peer[96] = "";

	if (conf->tls)
		snprintf(peer, sizeof(peer), " [TLS peer_name %.64s]",
		    conf->peer_name != NULL ? conf->peer_name : conf->host);
	return ma_error_set(err, "relp %s: %s: %s (%d)%s%s%s%s%s", conf->target,
	    doing, relp_strerror(code), code, peer,
	    c->detail[0] != '\0' ? "; " : "", c->detail,
	    c->why[0] != '\0' ? "; " : "", c->why);
}

static void
relp_reset_notes(struct relp_conn *c)
{
	c->failed = false;
	c->why[0] = '\0';
	c->detail[0] = '\0';
}

static bool
relp_tls(const struct relp_conn *c)
{
	return c->conf->tls;
}

/* destroy the client; with a session up this closes it (see the top) */
static void
relp_disconnect(struct relp_conn *c)
{
	if (c->clt == NULL)
		return;
	if (relp_tls(c))
		pthread_mutex_lock(&relp_tls_lock);
	(void)relpEngineCltDestruct(c->engine, &c->clt);
	if (relp_tls(c))
		pthread_mutex_unlock(&relp_tls_lock);
	c->clt = NULL;
}

static int
relp_connect(struct relp_conn *c, struct ma_error *err)
{
	const struct fwd_dest_conf *conf = c->conf;
	unsigned int secs = (conf->timeout_ms + 999) / 1000;
	relpRetVal r;

	relp_reset_notes(c);
	c->open_acked = false;
	c->seg_base = 2; /* the first command after "open" */
	c->seg_cap = 0;
	r = relpEngineCltConstruct(c->engine, &c->clt);
	if (r != RELP_RET_OK) {
		c->clt = NULL;
		return relp_fail(c, "creating the client", r, err);
	}
	if ((r = relpCltSetTimeout(c->clt, secs)) != RELP_RET_OK ||
	    (r = relpCltSetConnTimeout(c->clt, (int)secs)) != RELP_RET_OK ||
	    (r = relpCltSetWindowSize(c->clt, (int)c->window)) != RELP_RET_OK)
		goto fail;
	if (relp_tls(c)) {
		char *peer =
		    conf->peer_name != NULL ? conf->peer_name : conf->host;

		if ((r = relpCltEnableTLS(c->clt)) != RELP_RET_OK ||
		    (r = relpCltSetCACert(c->clt, conf->ca)) != RELP_RET_OK ||
		    (conf->cert != NULL && (r = relpCltSetOwnCert(c->clt,
						conf->cert)) != RELP_RET_OK) ||
		    (conf->key != NULL && (r = relpCltSetPrivKey(c->clt,
					       conf->key)) != RELP_RET_OK) ||
		    (r = relpCltSetAuthMode(c->clt, relp_auth_name)) !=
			RELP_RET_OK ||
		    (r = relpCltAddPermittedPeer(c->clt, peer)) != RELP_RET_OK)
			goto fail;
	}
	c->capture = true;
	if (relp_tls(c))
		pthread_mutex_lock(&relp_tls_lock);
	r = relpCltConnect(c->clt, AF_UNSPEC, (unsigned char *)c->port,
	    (unsigned char *)conf->host);
	if (relp_tls(c))
		pthread_mutex_unlock(&relp_tls_lock);
	c->capture = false;
	if (r != RELP_RET_OK)
		goto fail;
	if (!c->open_acked) {
		/* see the top: without this hook nothing could be counted */
		relp_disconnect(c);
		return ma_error_set(err,
		    "relp %s: librelp did not report the answer to \"open\" "
		    "through its debug hook; this librelp version cannot tell "
		    "which records were acknowledged",
		    conf->target);
	}
	relp_reset_notes(c);
	return 0;
fail:
	c->capture = false;
	relp_fail(c, "connecting", r, err);
	/* a client whose connect failed has no session: destruct is local */
	relp_disconnect(c);
	return -1;
}

/*
 * relp_drain - close the session: librelp sends "close" and reads the
 * answers to everything sent before it (see the top); what they said is
 * in acked[].  Its own verdict is not used (it rejects rsyslog's answer
 * to "close"), only kept for the message.
 */
static void
relp_drain(struct relp_conn *c)
{
	relp_reset_notes(c);
	relp_disconnect(c);
}

static int
relp_check(const struct fwd_dest_conf *conf, struct ma_error *err)
{
	const char *files[3] = {conf->ca, conf->cert, conf->key};

	if (conf->host == NULL || conf->port == 0)
		return ma_error_set(
		    err, "%s: relp needs host:port", conf->name);
	if (!conf->tls)
		return 0;
	if (conf->ca == NULL)
		return ma_error_set(
		    err, "%s: relp with tls=yes needs ca=", conf->name);
	for (unsigned int i = 0; i < 3; i++) {
		if (files[i] != NULL && access(files[i], R_OK) < 0)
			return ma_error_set(err, "%s: cannot read %s: %s",
			    conf->name, files[i], strerror(errno));
	}
	return 0;
}

/* Every RELP TLS destination must use the CA librelp loaded first. */
static int
relp_claim_ca(const struct fwd_dest_conf *conf, struct ma_error *err)
{
	int ret = 0;

	pthread_mutex_lock(&relp_tls_lock);
	if (relp_tls_ca == NULL) {
		relp_tls_ca = ma_xstrdup(conf->ca);
		snprintf(relp_tls_ca_dest, sizeof(relp_tls_ca_dest), "%s",
		    conf->name);
	} else if (strcmp(relp_tls_ca, conf->ca) != 0) {
		ret = ma_error_set(err,
		    "%s: relp TLS destinations must share one ca= file "
		    "(librelp's OpenSSL mode loads one CA per process): %s "
		    "uses %s, this one %s",
		    conf->name, relp_tls_ca_dest, relp_tls_ca, conf->ca);
	}
	pthread_mutex_unlock(&relp_tls_lock);
	return ret;
}

static void relp_close(void *vconn);

static void *
relp_open(const struct fwd_dest_conf *conf, const struct ma_siem_ctx *siem,
    struct ma_error *err)
{
	struct relp_conn *c;
	relpRetVal r;

	if (relp_check(conf, err) < 0)
		return NULL;
	if (conf->tls && relp_claim_ca(conf, err) < 0)
		return NULL;
	c = ma_xcalloc(1, sizeof(*c));
	c->conf = conf;
	c->siem = siem;
	c->window = conf->window > 1 ? conf->window : RELP_DEFAULT_WINDOW;
	snprintf(c->port, sizeof(c->port), "%u", (unsigned int)conf->port);
	ma_buf_init(&c->msg, RELP_MSG_MAX);
	relp_current = c;
	if ((r = relpEngineConstruct(&c->engine)) != RELP_RET_OK) {
		relp_fail(c, "creating the librelp engine", r, err);
		c->engine = NULL;
		goto fail;
	}
	/* librelp 1.11 calls dbgprint unconditionally (NULL crashes) */
	if ((r = relpEngineSetDbgprint(c->engine, relp_dbgprint)) !=
		RELP_RET_OK ||
	    (r = relpEngineSetOnErr(c->engine, relp_on_err)) != RELP_RET_OK ||
	    (r = relpEngineSetOnAuthErr(c->engine, relp_on_auth_err)) !=
		RELP_RET_OK ||
	    (r = relpEngineSetOnGenericErr(c->engine, relp_on_generic_err)) !=
		RELP_RET_OK ||
	    (r = relpEngineSetEnableCmd(c->engine, relp_cmd_syslog,
		 eRelpCmdState_Required)) != RELP_RET_OK) {
		relp_fail(c, "setting up the librelp engine", r, err);
		goto fail;
	}
	if (conf->tls && (r = relpEngineSetTLSLibByName(
			      c->engine, "openssl")) != RELP_RET_OK) {
		relp_fail(c, "selecting OpenSSL in librelp", r, err);
		goto fail;
	}
	/*
	 * Connect and close now, so that a wrong port, CA or peer name shows
	 * at start-up; send() opens a fresh session per batch.
	 */
	if (relp_connect(c, err) < 0)
		goto fail;
	relp_drain(c);
	relp_current = NULL;
	return c;
fail:
	relp_current = NULL;
	relp_close(c);
	return NULL;
}

/* the leading records of the batch answered 200 */
static size_t
relp_acked_prefix(const struct relp_conn *c, size_t sent)
{
	size_t k = 0;

	while (k < sent && c->acked[k])
		k++;
	return k;
}

/* err for a batch of which only acked of sent were answered 200 */
static int
relp_short(struct relp_conn *c, size_t acked, size_t sent, struct ma_error *err)
{
	if (c->refused > 0)
		return ma_error_set(err,
		    "relp %s: server refused %u record(s) (answer %s); %zu of "
		    "%zu acknowledged",
		    c->conf->target, c->refused, c->refused_text, acked, sent);
	return ma_error_set(err,
	    "relp %s: session closed with %zu of %zu records acknowledged%s%s",
	    c->conf->target, acked, sent, c->why[0] != '\0' ? ": " : "",
	    c->why);
}

static int
relp_send(void *vconn, const struct ma_record *const *recs, size_t n,
    void (*reject_fn)(void *ctx, const struct ma_record *rec, const char *why),
    void *reject_ctx, struct fwd_send_result *res, struct ma_error *err)
{
	struct relp_conn *c = vconn;
	size_t done = 0; /* leading records taken for good */

	memset(res, 0, sizeof(*res));
	relp_current = c;
	if (c->seg_cap_max < n) {
		free(c->acked);
		c->acked = ma_xcalloc(n, 1);
		c->seg_cap_max = n;
	}
	while (done < n) {
		size_t i, sent = 0, acked, bad = n;

		if (c->clt == NULL && relp_connect(c, err) < 0)
			goto fail;
		/* this segment's records get the next txnrs of the session */
		memset(c->acked, 0, n - done);
		c->seg_cap = n - done;
		c->refused = 0;
		for (i = done; i < n; i++) {
			relpRetVal r;

			ma_buf_reset(&c->msg);
			if (ma_siem_syslog_msg(c->siem, c->conf->format,
				recs[i], &c->msg) < 0) {
				bad = i;
				break;
			}
			relp_reset_notes(c);
			r = relpCltSendSyslog(
			    c->clt, (unsigned char *)c->msg.data, c->msg.len);
			if (r != RELP_RET_OK) {
				relp_fail(c, "sending", r, err);
				break;
			}
			sent++;
		}
		relp_drain(c);
		acked = relp_acked_prefix(c, sent);
		/* the next session starts at txnr 2 again */
		c->seg_cap = 0;
		if (i < n && bad == n) {
			/* the send failed: err says why */
			done += acked;
			goto fail;
		}
		done += acked;
		if (acked < sent) {
			relp_short(c, acked, sent, err);
			goto fail;
		}
		if (bad < n) {
			char why[96];

			snprintf(why, sizeof(why),
			    "RFC 5424 message longer than %u bytes",
			    (unsigned int)RELP_MSG_MAX);
			reject_fn(reject_ctx, recs[bad], why);
			res->rejected++;
			done = bad + 1;
		}
	}
	res->accepted = done;
	relp_current = NULL;
	return 0;
fail:
	res->accepted = done;
	relp_current = NULL;
	return -1;
}

static void
relp_close(void *vconn)
{
	struct relp_conn *c = vconn;

	if (c == NULL)
		return;
	relp_current = c;
	relp_disconnect(c);
	if (c->engine != NULL) {
		/* every engine's destruct drops librelp's OpenSSL refcount */
		pthread_mutex_lock(&relp_tls_lock);
		(void)relpEngineDestruct(&c->engine);
		pthread_mutex_unlock(&relp_tls_lock);
	}
	relp_current = NULL;
	ma_buf_deinit(&c->msg);
	free(c->acked);
	free(c);
}

const struct fwd_transport fwd_transport_relp = {
    .type = "relp",
    .check = relp_check,
    .open = relp_open,
    .send = relp_send,
    .close = relp_close,
};
