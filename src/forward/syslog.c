/* SPDX-License-Identifier: MIT */
/*
 * syslog.c - the "syslog" (RFC 6587 over TCP) and "syslog-tls" (RFC
 * 5425, OpenSSL) transports of mailaudit-forward.
 *
 * A batch is rendered into one buffer of octet-counted RFC 5424 frames
 * (ma_siem_syslog_frame) and written at once.  Syslog over TCP has no
 * acknowledgement of its own, so a batch counts as taken when (1) the
 * connection was still open before writing (a receiver that closed is
 * noticed by a read returning 0 or a reset, not by the write), (2) every
 * byte is written, (3) the kernel's send queue has drained (SIOCOUTQ is
 * 0: the receiving host's TCP has acknowledged every byte) within the
 * destination's timeout, and (4) the connection is still neither closed
 * nor reset after that.  What this cannot see: bytes the receiving
 * kernel acknowledged that the receiving program never read, or read
 * but lost before its own queue reached disk (a crash, a kill -9, a
 * restart with an in-memory queue).  That window is the reason RELP
 * exists; docs/FORWARDING.md says so.
 *
 * TLS: 1.2 or newer, the server's chain verified against ca=, its name
 * checked (X509_VERIFY_PARAM_set1_host or set1_ip_asc) against peer_name
 * or the target's host, SNI for a DNS name, an optional client
 * certificate.  Every file is loaded before connecting, so a bad file is
 * reported as such even while the receiver is down.
 *
 * All I/O is non-blocking with poll() and bounded by timeout_ms.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "transport.h"

struct sl_conn {
	const struct fwd_dest_conf *conf;
	const struct ma_siem_ctx *siem;
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	/* for messages: the target, and the address if the target's host
	   is a name ("siem.example:6514 (192.0.2.7:6514)") */
	char addr[600];
	struct fwd_rendered out; /* for send without render */
};

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
left_ms(int64_t deadline)
{
	int64_t left = deadline - mono_ms();

	return left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
}

/* OpenSSL's first queued error, for a message; clears the queue. */
static const char *
ssl_reason(char *buf, size_t size)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		snprintf(buf, size, "unknown TLS error");
	else
		ERR_error_string_n(e, buf, size);
	ERR_clear_error();
	return buf;
}

/* Connecting. */

static void
format_addr(const struct sockaddr *sa, char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned int port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		port = ntohs(in->sin_port);
		snprintf(out, size, "%s:%u", ip, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
		    (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		port = ntohs(in6->sin6_port);
		snprintf(out, size, "[%s]:%u", ip, port);
	} else {
		snprintf(out, size, "?");
	}
}

/* connect_one - non-blocking connect with a deadline; fd or -1 (errno) */
static int
connect_one(const struct addrinfo *ai, int64_t deadline)
{
	int fd, soerr = 0, one = 1;
	socklen_t len = sizeof(soerr);
	struct pollfd pfd;

	fd = socket(ai->ai_family,
	    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return fd;
	if (errno != EINPROGRESS)
		goto fail;
	pfd.fd = fd;
	pfd.events = POLLOUT;
	for (;;) {
		int n = poll(&pfd, 1, left_ms(deadline));

		if (n > 0)
			break;
		if (n == 0) {
			errno = ETIMEDOUT;
			goto fail;
		}
		if (errno != EINTR)
			goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		goto fail;
	if (soerr != 0) {
		errno = soerr;
		goto fail;
	}
	return fd;
fail : {
	int e = errno;

	close(fd);
	errno = e;
	return -1;
}
}

/* tcp_connect - every address of host:port in turn until one answers */
static int
tcp_connect(struct sl_conn *c, int64_t deadline, struct ma_error *err)
{
	struct addrinfo hints = {
	    .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
	struct addrinfo *res, *ai;
	char port[8], where[INET6_ADDRSTRLEN + 16];
	int rc, e = 0;

	snprintf(port, sizeof(port), "%u", c->conf->port);
	rc = getaddrinfo(c->conf->host, port, &hints, &res);
	if (rc == EAI_BADFLAGS || rc == EAI_NONAME) {
		/* AI_ADDRCONFIG hides loopback-only hosts on some setups */
		hints.ai_flags = 0;
		rc = getaddrinfo(c->conf->host, port, &hints, &res);
	}
	if (rc != 0)
		return ma_error_set(err, "cannot resolve host %s: %s",
		    c->conf->host,
		    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
	where[0] = '\0';
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		format_addr(ai->ai_addr, where, sizeof(where));
		c->fd = connect_one(ai, deadline);
		if (c->fd >= 0)
			break;
		e = errno;
		if (left_ms(deadline) == 0)
			break;
	}
	freeaddrinfo(res);
	if (strcmp(where, c->conf->target) == 0)
		snprintf(c->addr, sizeof(c->addr), "%s", c->conf->target);
	else
		snprintf(c->addr, sizeof(c->addr), "%s (%s)", c->conf->target,
		    where);
	if (c->fd < 0)
		return ma_error_set(
		    err, "connect to %s: %s", c->addr, strerror(e));
	return 0;
}

/* TLS. */

static int
check_readable(const char *what, const char *path, struct ma_error *err)
{
	FILE *fp = fopen(path, "re");

	if (fp == NULL)
		return ma_error_set(
		    err, "%s file %s: %s", what, path, strerror(errno));
	fclose(fp);
	return 0;
}

/* tls_context - CA, client certificate and key, TLS >= 1.2 */
static int
tls_context(struct sl_conn *c, struct ma_error *err)
{
	const struct fwd_dest_conf *conf = c->conf;
	char why[256];

	ERR_clear_error();
	if (check_readable("ca", conf->ca, err) < 0 ||
	    (conf->cert != NULL &&
		(check_readable("cert", conf->cert, err) < 0 ||
		    check_readable("key", conf->key, err) < 0)))
		return -1;
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (c->ctx == NULL)
		return ma_error_set(
		    err, "TLS: %s", ssl_reason(why, sizeof(why)));
	if (SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) != 1)
		return ma_error_set(
		    err, "TLS: %s", ssl_reason(why, sizeof(why)));
	if (SSL_CTX_load_verify_locations(c->ctx, conf->ca, NULL) != 1)
		return ma_error_set(err,
		    "ca file %s: no usable certificate: %s", conf->ca,
		    ssl_reason(why, sizeof(why)));
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (conf->cert == NULL)
		return 0;
	if (SSL_CTX_use_certificate_chain_file(c->ctx, conf->cert) != 1)
		return ma_error_set(err, "cert file %s: %s", conf->cert,
		    ssl_reason(why, sizeof(why)));
	if (SSL_CTX_use_PrivateKey_file(c->ctx, conf->key, SSL_FILETYPE_PEM) !=
	    1)
		return ma_error_set(err,
		    "key file %s: not a key for cert file %s: %s", conf->key,
		    conf->cert, ssl_reason(why, sizeof(why)));
	if (SSL_CTX_check_private_key(c->ctx) != 1)
		return ma_error_set(err,
		    "key file %s does not belong to cert "
		    "file %s",
		    conf->key, conf->cert);
	return 0;
}

static bool
is_ip(const char *name)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, name, buf) == 1 ||
	       inet_pton(AF_INET6, name, buf) == 1;
}

/* wait_io - poll for what SSL wants; -1 with errno ETIMEDOUT at the end */
static int
wait_io(int fd, int ssl_error, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd,
	    .events = ssl_error == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
	int n;

	do {
		n = poll(&pfd, 1, left_ms(deadline));
	} while (n < 0 && errno == EINTR);
	if (n == 0)
		errno = ETIMEDOUT;
	return n > 0 ? 0 : -1;
}

static int
tls_handshake(struct sl_conn *c, int64_t deadline, struct ma_error *err)
{
	const char *name =
	    c->conf->peer_name != NULL ? c->conf->peer_name : c->conf->host;
	X509_VERIFY_PARAM *vp;
	char why[256];
	int rc;

	c->ssl = SSL_new(c->ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		return ma_error_set(
		    err, "TLS: %s", ssl_reason(why, sizeof(why)));
	vp = SSL_get0_param(c->ssl);
	X509_VERIFY_PARAM_set_hostflags(
	    vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (is_ip(name)) {
		rc = X509_VERIFY_PARAM_set1_ip_asc(vp, name);
	} else {
		rc = X509_VERIFY_PARAM_set1_host(vp, name, 0);
		if (rc == 1)
			rc = SSL_set_tlsext_host_name(c->ssl, name);
	}
	if (rc != 1)
		return ma_error_set(err, "TLS: cannot check the name %s: %s",
		    name, ssl_reason(why, sizeof(why)));
	for (;;) {
		int e;

		ERR_clear_error();
		rc = SSL_connect(c->ssl);
		if (rc == 1)
			break;
		e = SSL_get_error(c->ssl, rc);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (wait_io(c->fd, e, deadline) < 0)
				return ma_error_set(err,
				    "TLS handshake with %s: %s", c->addr,
				    strerror(errno));
			continue;
		}
		if (SSL_get_verify_result(c->ssl) != X509_V_OK) {
			long v = SSL_get_verify_result(c->ssl);

			ERR_clear_error();
			return ma_error_set(err,
			    "TLS: the certificate of %s is not trusted: %s "
			    "(checked against ca file %s and name %s)",
			    c->addr, X509_verify_cert_error_string(v),
			    c->conf->ca, name);
		}
		if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
			return ma_error_set(err, "TLS handshake with %s: %s",
			    c->addr,
			    errno != 0 ? strerror(errno)
				       : "connection closed by the receiver");
		return ma_error_set(err, "TLS handshake with %s: %s", c->addr,
		    ssl_reason(why, sizeof(why)));
	}
	return 0;
}

static void
sl_close(void *conn)
{
	struct sl_conn *c = conn;

	if (c == NULL)
		return;
	if (c->ssl != NULL) {
		/* One non-blocking close_notify; no waiting for the answer. */
		if (c->fd >= 0 && SSL_is_init_finished(c->ssl))
			(void)SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	if (c->ctx != NULL)
		SSL_CTX_free(c->ctx);
	ERR_clear_error();
	if (c->fd >= 0)
		close(c->fd);
	ma_buf_deinit(&c->out.data);
	free(c->out.bad);
	free(c);
}

static struct sl_conn *
sl_open_common(const struct fwd_dest_conf *conf, const struct ma_siem_ctx *siem,
    bool tls, struct ma_error *err)
{
	struct sl_conn *c = ma_xcalloc(1, sizeof(*c));
	int64_t deadline = mono_ms() + conf->timeout_ms;

	c->conf = conf;
	c->siem = siem;
	c->fd = -1;
	ma_buf_init(&c->out.data, FWD_RENDER_MAX);
	if ((tls && tls_context(c, err) < 0) ||
	    tcp_connect(c, deadline, err) < 0 ||
	    (tls && tls_handshake(c, deadline, err) < 0)) {
		sl_close(c);
		return NULL;
	}
	return c;
}

static void *
sl_open_tcp(const struct fwd_dest_conf *conf, const struct ma_siem_ctx *siem,
    struct ma_error *err)
{
	return sl_open_common(conf, siem, false, err);
}

static void *
sl_open_tls(const struct fwd_dest_conf *conf, const struct ma_siem_ctx *siem,
    struct ma_error *err)
{
	return sl_open_common(conf, siem, true, err);
}

/* Sending. */

/*
 * peer_gone - has the receiver closed or reset the connection?  A syslog
 * receiver never sends application data; whatever arrives (TLS session
 * tickets, say) is read and dropped.  1 with the reason in err, 0 if the
 * connection looks alive.
 */
static int
peer_gone(struct sl_conn *c, struct ma_error *err)
{
	char buf[4096];
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 &&
	    soerr != 0) {
		ma_error_set(
		    err, "connection to %s: %s", c->addr, strerror(soerr));
		return 1;
	}
	for (;;) {
		ssize_t n;

		if (c->ssl != NULL) {
			int e;

			ERR_clear_error();
			n = SSL_read(c->ssl, buf, sizeof(buf));
			if (n > 0)
				continue;
			e = SSL_get_error(c->ssl, (int)n);
			if (e == SSL_ERROR_WANT_READ ||
			    e == SSL_ERROR_WANT_WRITE)
				return 0;
			if (e == SSL_ERROR_ZERO_RETURN ||
			    (e == SSL_ERROR_SYSCALL && errno == 0))
				ma_error_set(err,
				    "the receiver %s closed the connection",
				    c->addr);
			else if (e == SSL_ERROR_SYSCALL)
				ma_error_set(err, "connection to %s: %s",
				    c->addr, strerror(errno));
			else
				ma_error_set(err, "connection to %s: %s",
				    c->addr, ssl_reason(buf, sizeof(buf)));
			return 1;
		}
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n < 0 && errno == EAGAIN) /* == EWOULDBLOCK on Linux */
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			ma_error_set(err,
			    "the receiver %s closed the connection", c->addr);
		else
			ma_error_set(err, "connection to %s: %s", c->addr,
			    strerror(errno));
		return 1;
	}
}

static int
write_all(struct sl_conn *c, const char *data, size_t len, int64_t deadline,
    struct ma_error *err)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n;
		int want;

		if (c->ssl != NULL) {
			int chunk =
			    len - off > (1u << 30) ? 1 << 30 : (int)(len - off);

			ERR_clear_error();
			n = SSL_write(c->ssl, data + off, chunk);
			if (n > 0) {
				off += (size_t)n;
				continue;
			}
			want = SSL_get_error(c->ssl, (int)n);
			if (want != SSL_ERROR_WANT_READ &&
			    want != SSL_ERROR_WANT_WRITE) {
				char why[256];

				return ma_error_set(err, "write to %s: %s",
				    c->addr,
				    want == SSL_ERROR_SYSCALL
					? strerror(errno)
					: ssl_reason(why, sizeof(why)));
			}
		} else {
			n = send(c->fd, data + off, len - off, MSG_NOSIGNAL);
			if (n > 0) {
				off += (size_t)n;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno != EAGAIN)
				return ma_error_set(err, "write to %s: %s",
				    c->addr, strerror(errno));
			want = SSL_ERROR_WANT_WRITE;
		}
		if (wait_io(c->fd, want, deadline) < 0)
			return ma_error_set(err,
			    "write to %s: %s after %u ms (%zu of %zu bytes "
			    "written)",
			    c->addr, strerror(errno), c->conf->timeout_ms, off,
			    len);
	}
	return 0;
}

/*
 * drain - wait until the receiving host has acknowledged every byte
 * (SIOCOUTQ 0), watching for a close or reset meanwhile.  Nothing wakes
 * us when the queue empties, so it is polled: every 100 us at first,
 * doubling to 1 ms while the wait is short (a receiver reading at its
 * full rate is left idle for no longer than that before the next batch
 * comes), then to 50 ms.
 */
static int
drain(struct sl_conn *c, int64_t deadline, struct ma_error *err)
{
	int64_t start = mono_ms();
	long nap_us = 100;
	int pending = 0;

	for (;;) {
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
		struct timespec ts;
		long left_us;

		if (ioctl(c->fd, SIOCOUTQ, &pending) < 0)
			return ma_error_set(
			    err, "SIOCOUTQ: %s", strerror(errno));
		if (pending == 0)
			return 0;
		left_us = (long)left_ms(deadline) * 1000;
		if (left_us == 0)
			return ma_error_set(err,
			    "the receiver %s has not acknowledged %d bytes "
			    "after %u ms",
			    c->addr, pending, c->conf->timeout_ms);
		if (nap_us > left_us)
			nap_us = left_us;
		ts.tv_sec = nap_us / 1000000;
		ts.tv_nsec = (nap_us % 1000000) * 1000;
		if (ppoll(&pfd, 1, &ts, NULL) > 0 && peer_gone(c, err))
			return -1;
		if (nap_us < (mono_ms() - start < 100 ? 1000 : 50000))
			nap_us *= 2;
	}
}

/* sl_render - the batch as octet-counted frames; see transport.h */
static void
sl_render(const struct fwd_dest_conf *conf, const struct ma_siem_ctx *siem,
    const struct ma_record *const *recs, size_t n, struct fwd_rendered *out)
{
	ma_buf_reset(&out->data);
	out->bad_count = 0;
	for (size_t i = 0; i < n; i++) {
		size_t mark = out->data.len;

		if (ma_siem_syslog_frame(
			siem, conf->format, recs[i], &out->data) == 0)
			continue;
		/* Cannot be rendered within the limit: refused for good,
		   once the batch around it is through. */
		out->data.len = mark;
		if (out->data.data != NULL)
			out->data.data[mark] = '\0';
		if (out->bad_count == out->bad_cap) {
			out->bad_cap =
			    out->bad_cap == 0 ? 16 : out->bad_cap * 2;
			out->bad = ma_xrealloc(
			    out->bad, out->bad_cap, sizeof(*out->bad));
		}
		out->bad[out->bad_count++] = i;
	}
}

/*
 * sl_send_rendered - one write of the whole batch (OpenSSL cuts it into
 * full 16 KiB records) and one drain: the acknowledgement wait is per
 * batch, so a large batch pays it rarely.
 */
static int
sl_send_rendered(void *conn, const struct ma_record *const *recs, size_t n,
    const struct fwd_rendered *out, fwd_reject_fn *reject_fn, void *reject_ctx,
    struct fwd_send_result *res, struct ma_error *err)
{
	struct sl_conn *c = conn;
	int64_t deadline = mono_ms() + c->conf->timeout_ms;

	memset(res, 0, sizeof(*res));
	if (peer_gone(c, err) ||
	    write_all(c, out->data.data, out->data.len, deadline, err) < 0 ||
	    drain(c, deadline, err) < 0 || peer_gone(c, err))
		return -1;
	for (size_t i = 0; i < out->bad_count; i++)
		reject_fn(reject_ctx, recs[out->bad[i]],
		    "too large for a syslog frame");
	res->accepted = n;
	res->rejected = out->bad_count;
	return 0;
}

static int
sl_send(void *conn, const struct ma_record *const *recs, size_t n,
    fwd_reject_fn *reject_fn, void *reject_ctx, struct fwd_send_result *res,
    struct ma_error *err)
{
	struct sl_conn *c = conn;

	sl_render(c->conf, c->siem, recs, n, &c->out);
	return sl_send_rendered(
	    c, recs, n, &c->out, reject_fn, reject_ctx, res, err);
}

const struct fwd_transport fwd_transport_syslog = {
    .type = "syslog",
    .check = NULL,
    .open = sl_open_tcp,
    .send = sl_send,
    .close = sl_close,
    .render = sl_render,
    .send_rendered = sl_send_rendered,
};

const struct fwd_transport fwd_transport_syslog_tls = {
    .type = "syslog-tls",
    .check = NULL,
    .open = sl_open_tls,
    .send = sl_send,
    .close = sl_close,
    .render = sl_render,
    .send_rendered = sl_send_rendered,
};
