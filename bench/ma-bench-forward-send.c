/* SPDX-License-Identifier: MIT */
/*
 * ma-bench-forward-send - the plain syslog client of bench/run-forward:
 * how fast the same rsyslogd takes the same messages when nothing but
 * sending happens (no store, no rendering, no cursor).
 *
 * Reads messages from a file, one per line (the lines are sent as they
 * are, without the '\n'), and sends them all over one connection to
 * 127.0.0.1:PORT:
 *   tcp       RFC 6587 octet-counted frames, written in large chunks;
 *   tls       the same over TLS (OpenSSL, server verified against -C,
 *             client certificate -c/-k), close_notify at the end;
 *   relp      librelp, one "syslog" command per message, window -w;
 *   relp-tls  the same over TLS (librelp's openssl, authMode name).
 * For RELP the run ends when the session is closed, i.e. every message
 * was answered.  The caller measures end to end (until rsyslog wrote the
 * last line); this program reports its own part and its CPU time, so the
 * caller can tell whether the client was the bottleneck.
 *
 * Output, one key=value line: mode sent bytes seconds rate cpu
 *
 * Built by meson (bench/meson.build) as ma-bench-forward-send.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h> /* librelp.h uses size_t without it */
#include <librelp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024) /* bytes per write() / SSL_write() */

struct msgs {
	char *data;   /* the file, '\n' replaced by '\0' */
	char **start; /* each message */
	size_t *len;
	size_t count, bytes;
};

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("ma-bench-forward-send: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n != 0 ? n : 1);

	if (p == NULL)
		die("out of memory (%zu bytes)", n);
	return p;
}

static void
read_msgs(const char *path, struct msgs *m)
{
	FILE *fp = fopen(path, "rb");
	struct stat st;
	size_t n = 0;

	if (fp == NULL || fstat(fileno(fp), &st) < 0)
		die("%s: %s", path, strerror(errno));
	m->data = xmalloc((size_t)st.st_size + 1);
	if (fread(m->data, 1, (size_t)st.st_size, fp) != (size_t)st.st_size)
		die("%s: short read", path);
	fclose(fp);
	m->data[st.st_size] = '\n';
	for (off_t i = 0; i < st.st_size; i++)
		n += m->data[i] == '\n';
	m->start = xmalloc((n + 1) * sizeof(*m->start));
	m->len = xmalloc((n + 1) * sizeof(*m->len));
	m->count = m->bytes = 0;
	for (char *p = m->data, *end = m->data + st.st_size; p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p) + 1);

		if (nl > p) {
			m->start[m->count] = p;
			m->len[m->count] = (size_t)(nl - p);
			m->bytes += (size_t)(nl - p);
			m->count++;
		}
		*nl = '\0';
		p = nl + 1;
	}
}

/* The octet-counted stream of every message, in one buffer. */
static char *
octet_stream(const struct msgs *m, size_t *len_r)
{
	size_t cap = m->bytes + m->count * 12, len = 0;
	char *buf = xmalloc(cap);

	for (size_t i = 0; i < m->count; i++) {
		int n = snprintf(buf + len, cap - len, "%zu ", m->len[i]);

		if (n < 0 || (size_t)n >= cap - len)
			die("octet stream overflow");
		len += (size_t)n;
		memcpy(buf + len, m->start[i], m->len[i]);
		len += m->len[i];
	}
	*len_r = len;
	return buf;
}

static int
connect_port(int port)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		die("connect 127.0.0.1:%d: %s", port, strerror(errno));
	return fd;
}

static void
send_tcp(int port, const char *buf, size_t len)
{
	int fd = connect_port(port);
	char tmp[256];

	for (size_t off = 0; off < len;) {
		size_t n = len - off < CHUNK ? len - off : CHUNK;
		ssize_t w = write(fd, buf + off, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("write: %s", strerror(errno));
		off += (size_t)w;
	}
	/* An orderly end: the receiver reads everything before the FIN. */
	shutdown(fd, SHUT_WR);
	while (read(fd, tmp, sizeof(tmp)) > 0)
		;
	close(fd);
}

static void
ssl_die(const char *what)
{
	unsigned long e = ERR_get_error();

	die("%s: %s", what, e != 0 ? ERR_error_string(e, NULL) : "failed");
}

static void
send_tls(int port, const char *buf, size_t len, const char *ca,
    const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl;
	int fd;

	if (ctx == NULL)
		ssl_die("SSL_CTX_new");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (ca == NULL || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		ssl_die("CA file (-C)");
	if (cert != NULL &&
	    (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
		SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1))
		ssl_die("client certificate (-c, -k)");
	fd = connect_port(port);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set1_host(ssl, "127.0.0.1");
	if (SSL_connect(ssl) != 1)
		ssl_die("TLS handshake");
	for (size_t off = 0; off < len;) {
		int n = (int)(len - off < CHUNK ? len - off : CHUNK);
		int w = SSL_write(ssl, buf + off, n);

		if (w <= 0)
			ssl_die("SSL_write");
		off += (size_t)w;
	}
	SSL_shutdown(ssl);
	shutdown(fd, SHUT_WR);
	{
		char tmp[256];

		while (SSL_read(ssl, tmp, sizeof(tmp)) > 0)
			;
	}
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
}

static void
relp_dbg(char *fmt, ...)
{
	(void)fmt; /* librelp 1.11 crashes without a dbgprint function */
}

static void
relp_err(void *user, char *obj, char *msg, relpRetVal code)
{
	(void)user;
	die("RELP error %d (%s): %s", (int)code, obj ? obj : "", msg);
}

static void
relp_generic_err(char *obj, char *msg, relpRetVal code)
{
	die("RELP error %d (%s): %s", (int)code, obj ? obj : "", msg);
}

static void
relp_auth_err(void *user, char *peer, char *msg, relpRetVal code)
{
	(void)user;
	die("RELP auth error %d (%s): %s", (int)code, peer ? peer : "", msg);
}

static void
send_relp(int port, const struct msgs *m, int window, bool tls,
    const char *ca, const char *cert, const char *key)
{
	relpEngine_t *eng;
	relpClt_t *clt;
	char portstr[16];

	snprintf(portstr, sizeof(portstr), "%d", port);
	if (relpEngineConstruct(&eng) != RELP_RET_OK)
		die("relpEngineConstruct");
	relpEngineSetDbgprint(eng, relp_dbg);
	relpEngineSetOnErr(eng, relp_err);
	relpEngineSetOnGenericErr(eng, relp_generic_err);
	relpEngineSetOnAuthErr(eng, relp_auth_err);
	relpEngineSetEnableCmd(
	    eng, (unsigned char *)"syslog", eRelpCmdState_Required);
	if (tls && relpEngineSetTLSLibByName(eng, "openssl") != RELP_RET_OK)
		die("librelp has no openssl");
	if (relpEngineCltConstruct(eng, &clt) != RELP_RET_OK)
		die("relpEngineCltConstruct");
	relpCltSetTimeout(clt, 30);
	relpCltSetWindowSize(clt, window);
	if (tls) {
		if (relpCltEnableTLS(clt) != RELP_RET_OK ||
		    relpCltSetCACert(clt, (char *)ca) != RELP_RET_OK ||
		    relpCltSetOwnCert(clt, (char *)cert) != RELP_RET_OK ||
		    relpCltSetPrivKey(clt, (char *)key) != RELP_RET_OK ||
		    relpCltSetAuthMode(clt, (char *)"name") != RELP_RET_OK ||
		    relpCltAddPermittedPeer(clt, (char *)"localhost") !=
			RELP_RET_OK)
			die("RELP TLS setup");
	}
	if (relpCltConnect(clt, AF_INET, (unsigned char *)portstr,
		(unsigned char *)"127.0.0.1") != RELP_RET_OK)
		die("RELP connect 127.0.0.1:%d", port);
	for (size_t i = 0; i < m->count; i++) {
		if (relpCltSendSyslog(clt, (unsigned char *)m->start[i],
			m->len[i]) != RELP_RET_OK)
			die("relpCltSendSyslog (message %zu)", i);
	}
	/* waits for every answer */
	if (relpEngineCltDestruct(eng, &clt) != RELP_RET_OK)
		die("RELP close");
	relpEngineDestruct(&eng);
}

static double
cpu_seconds(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec +
	       (double)ru->ru_utime.tv_usec / 1e6 +
	       (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	const char *mode = "tcp", *ca = NULL, *cert = NULL, *key = NULL;
	int port = 0, window = 128, c;
	struct msgs m;
	struct rusage ru0, ru;
	double t0, secs;
	char *stream = NULL;
	size_t stream_len = 0;

	while ((c = getopt(argc, argv, "m:p:C:c:k:w:")) != -1) {
		switch (c) {
		case 'm': mode = optarg; break;
		case 'p': port = (int)strtol(optarg, NULL, 10); break;
		case 'C': ca = optarg; break;
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'w': window = (int)strtol(optarg, NULL, 10); break;
		default:
			die("usage: -m tcp|tls|relp|relp-tls -p PORT [-C ca] "
			    "[-c cert -k key] [-w window] FILE");
		}
	}
	if (optind != argc - 1 || port <= 0 || port > 65535)
		die("usage: -m tcp|tls|relp|relp-tls -p PORT [-C ca] "
		    "[-c cert -k key] [-w window] FILE");
	signal(SIGPIPE, SIG_IGN);
	read_msgs(argv[optind], &m);
	if (strcmp(mode, "tcp") == 0 || strcmp(mode, "tls") == 0)
		stream = octet_stream(&m, &stream_len);
	/* the clock starts after the file is read and framed, as the
	   forwarder's starts with the store already filled */
	getrusage(RUSAGE_SELF, &ru0);
	t0 = now();
	if (strcmp(mode, "tcp") == 0)
		send_tcp(port, stream, stream_len);
	else if (strcmp(mode, "tls") == 0)
		send_tls(port, stream, stream_len, ca, cert, key);
	else if (strcmp(mode, "relp") == 0)
		send_relp(port, &m, window, false, ca, cert, key);
	else if (strcmp(mode, "relp-tls") == 0)
		send_relp(port, &m, window, true, ca, cert, key);
	else
		die("unknown mode %s", mode);
	secs = now() - t0;
	getrusage(RUSAGE_SELF, &ru);
	printf("mode=%s sent=%zu bytes=%zu seconds=%.3f rate=%.0f cpu=%.3f\n",
	    mode, m.count, m.bytes, secs, (double)m.count / secs,
	    cpu_seconds(&ru) - cpu_seconds(&ru0));
	free(stream);
	free(m.start);
	free(m.len);
	free(m.data);
	return 0;
}
