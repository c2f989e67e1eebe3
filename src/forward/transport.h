/* SPDX-License-Identifier: MIT */
#ifndef FWD_TRANSPORT_H
#define FWD_TRANSPORT_H

/*
 * One way of delivering records to a destination (docs/FORWARDING.md).
 * The destination thread (forward.c) owns the cursor and the back-off; a
 * transport only connects, renders and sends a run of records in order,
 * and says how many of them, from the first, the receiver has taken for
 * good.  Everything after that prefix is sent again later.
 */

#include <stddef.h>
#include <stdint.h>
#include "ma-forward-conf.h"
#include "ma-record.h"
#include "ma-siem.h"
#include "ma-util.h"

/*
 * struct fwd_dest_conf, a destination as configured ("forward = NAME TYPE
 * TARGET opt=val ..."), is declared in ma-forward-conf.h: the config
 * parser (ma_core) fills it.  For a host:port target, host and port are
 * already split and checked; for a URL they are NULL/0.
 */

struct fwd_send_result {
	size_t accepted; /* leading records taken for good */
	size_t rejected; /* of those, refused permanently (dead letter) */
	int64_t retry_after_ms; /* receiver's Retry-After, 0 = none */
};

/*
 * A batch rendered ahead of sending (fwd_transport.render): the bytes to
 * write, and the indices of the records that could not be rendered and
 * are to be refused for good once the batch around them is taken.
 */
#define FWD_RENDER_MAX (256u * 1024 * 1024)

struct fwd_rendered {
	struct ma_buf data; /* max FWD_RENDER_MAX */
	size_t *bad;
	size_t bad_count, bad_cap;
};

typedef void fwd_reject_fn(
    void *ctx, const struct ma_record *rec, const char *why);

struct fwd_transport {
	const char *type;
	/* validate options beyond the common parse; -1 with err */
	int (*check)(const struct fwd_dest_conf *conf, struct ma_error *err);
	/* connect (and handshake); NULL with err */
	void *(*open)(const struct fwd_dest_conf *conf,
	    const struct ma_siem_ctx *siem, struct ma_error *err);
	/*
	 * send recs[0..n) in order.  0 with res filled (res->accepted may be
	 * < n: the rest is resent); -1 with err when the connection is unusable
	 * (res->accepted still counts what was taken before it broke).  A
	 * permanently refused record is passed to reject_fn before it counts
	 * as accepted.
	 */
	int (*send)(void *conn, const struct ma_record *const *recs, size_t n,
	    void (*reject_fn)(
		void *ctx, const struct ma_record *rec, const char *why),
	    void *reject_ctx, struct fwd_send_result *res,
	    struct ma_error *err);
	void (*close)(void *conn);
	/*
	 * Optional pair.  render: recs[0..n) into out (reset first), with no
	 * connection, on the destination's reader thread while the batch
	 * before is being sent.  send_rendered: send out as send would have
	 * sent recs (same result rules), refusing out->bad through reject_fn.
	 * A transport without them renders in send.
	 */
	void (*render)(const struct fwd_dest_conf *conf,
	    const struct ma_siem_ctx *siem, const struct ma_record *const *recs,
	    size_t n, struct fwd_rendered *out);
	int (*send_rendered)(void *conn, const struct ma_record *const *recs,
	    size_t n, const struct fwd_rendered *out, fwd_reject_fn *reject_fn,
	    void *reject_ctx, struct fwd_send_result *res,
	    struct ma_error *err);
};

extern const struct fwd_transport fwd_transport_syslog;     /* syslog.c */
extern const struct fwd_transport fwd_transport_syslog_tls; /* syslog.c */
extern const struct fwd_transport fwd_transport_relp;       /* relp.c */
extern const struct fwd_transport fwd_transport_hec;        /* http.c */
extern const struct fwd_transport fwd_transport_elastic;    /* http.c */

#endif
