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
	size_t accepted;          /* leading records taken for good */
	size_t rejected;          /* of those, refused permanently (dead letter) */
	int64_t retry_after_ms;   /* receiver's Retry-After, 0 = none */
};

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
	    void (*reject_fn)(void *ctx, const struct ma_record *rec,
		const char *why),
	    void *reject_ctx, struct fwd_send_result *res, struct ma_error *err);
	void (*close)(void *conn);
};

extern const struct fwd_transport fwd_transport_syslog;     /* syslog.c */
extern const struct fwd_transport fwd_transport_syslog_tls; /* syslog.c */
extern const struct fwd_transport fwd_transport_relp;       /* relp.c */
extern const struct fwd_transport fwd_transport_hec;        /* http.c */
extern const struct fwd_transport fwd_transport_elastic;    /* http.c */

#endif
