/* SPDX-License-Identifier: MIT */
#ifndef MA_PROTO_H
#define MA_PROTO_H

/*
 * The wire format between sensors and mailauditd, also used for spool
 * files and the control socket.  See docs/PROTOCOL.md.
 *
 * A frame is a sequence of "key=value\n" lines ended by an empty line.
 * Values are escaped: every byte below 0x20, 0x7f and '%' is written as
 * %XX (upper-case hex); nothing else is touched, so frames are readable
 * with socat.  Structured values (item=, prop=) separate their fields with
 * a literal TAB, which escaped fields cannot contain.
 *
 * Record keys:
 *   v=1  id=<uuid>  t=<ms>  op=<name>  res=<result>  logon=<logon name>
 *   user=  mbox=  folder=  dfolder=  dmbox=  sess=  ip=  client=
 *   proto=  server=  count=<n>
 *   item=<uid>\t<message-id>\t<subject>\t<size>      (repeatable)
 *   prop=<name>\t<old>\t<new>                       (repeatable)
 * An empty field in item=/prop= means "absent".  Unknown keys are an error
 * (a newer sensor talking to an older daemon must be noticed).
 */

#include <stddef.h>
#include "ma-record.h"
#include "ma-util.h"

#define MA_PROTO_VERSION   1
#define MA_PROTO_MAX_FRAME (128 * 1024)
#define MA_PROTO_MAX_LINES 4096

/*
 * ma_proto_encode_record - append rec as one frame to out.  -1 if the
 * frame would exceed out's max (the caller splits items across records).
 */
int ma_proto_encode_record(const struct ma_record *rec, struct ma_buf *out);

/*
 * ma_proto_frame_len - if data[0..len) starts with a complete frame,
 * return its length including the terminating empty line; 0 if more data
 * is needed; -1 if the frame is already longer than MA_PROTO_MAX_FRAME.
 */
long ma_proto_frame_len(const char *data, size_t len);

/*
 * ma_proto_decode_record - parse one complete frame (as delimited by
 * ma_proto_frame_len) into rec, which the caller has initialised or reset.
 * Validates the result with ma_record_validate.  -1 with a reason naming
 * the bad line or key in err.
 */
int ma_proto_decode_record(
    const char *frame, size_t len, struct ma_record *rec, struct ma_error *err);

/*
 * The item= and prop= lines alone (how the store keeps them): encode
 * appends them to out; decode adds them to rec.  -1 on malformed input.
 */
int ma_proto_encode_detail(const struct ma_record *rec, struct ma_buf *out);
int ma_proto_decode_detail(
    struct ma_record *rec, const char *text, size_t len, struct ma_error *err);

/*
 * Generic key/value frames for acks and the control socket.
 */
struct ma_kv {
	const char *key;
	const char *value; /* unescaped, NUL-terminated */
};
struct ma_kvframe {
	struct ma_arena arena;
	struct ma_kv *kv;
	unsigned int count, cap;
};
void ma_kvframe_init(struct ma_kvframe *f);
void ma_kvframe_deinit(struct ma_kvframe *f);
void ma_kvframe_reset(struct ma_kvframe *f);
int ma_kvframe_decode(
    struct ma_kvframe *f, const char *frame, size_t len, struct ma_error *err);
/* First value of key, or NULL. */
const char *ma_kvframe_get(const struct ma_kvframe *f, const char *key);
/* Append "key=escaped(value)\n" to out. */
int ma_proto_put(struct ma_buf *out, const char *key, const char *value);
/* Append the terminating empty line. */
int ma_proto_end(struct ma_buf *out);
/* Escape value (len bytes) into out. */
int ma_proto_escape(struct ma_buf *out, const char *value, size_t len);

#endif
