/* SPDX-License-Identifier: MIT */
/*
 * ma-proto-enc.c - encode wire frames (see ma-proto.h and
 * docs/PROTOCOL.md).  This is the sensors' side (plugin, milter); the
 * daemon's strict decoder is in ma-proto.c.
 */

#include "ma-proto.h"

#include <string.h>

static const char hexdig[] = "0123456789ABCDEF";

/* escape_slow - the same, span by span, for a buffer near its max */
static int
escape_slow(struct ma_buf *out, const char *value, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		char esc[3];

		if (c >= 0x20 && c != 0x7f && c != '%')
			continue;
		if (ma_buf_append(out, value + start, i - start) < 0)
			return -1;
		esc[0] = '%';
		esc[1] = hexdig[c >> 4];
		esc[2] = hexdig[c & 15];
		if (ma_buf_append(out, esc, 3) < 0)
			return -1;
		start = i + 1;
	}
	return ma_buf_append(out, value + start, len - start);
}

int
ma_proto_escape(struct ma_buf *out, const char *value, size_t len)
{
	size_t worst;
	char *o;

	/* Room for the worst case (every byte escaped), then one pass that
	   writes in place: no per-span calls. */
	if (__builtin_mul_overflow(len, 3, &worst) ||
	    ma_buf_reserve(out, worst) < 0)
		return escape_slow(out, value, len);
	o = out->data + out->len;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];

		if (c >= 0x20 && c != 0x7f && c != '%') {
			*o++ = (char)c;
			continue;
		}
		*o++ = '%';
		*o++ = hexdig[c >> 4];
		*o++ = hexdig[c & 15];
	}
	out->len = (size_t)(o - out->data);
	*o = '\0';
	return 0;
}

int
ma_proto_put(struct ma_buf *out, const char *key, const char *value)
{
	if (value == NULL)
		return 0;
	if (ma_buf_puts(out, key) < 0 || ma_buf_putc(out, '=') < 0 ||
	    ma_proto_escape(out, value, strlen(value)) < 0)
		return -1;
	return ma_buf_putc(out, '\n');
}

int
ma_proto_end(struct ma_buf *out)
{
	return ma_buf_putc(out, '\n');
}

static int
put_u64(struct ma_buf *out, const char *key, uint64_t v)
{
	if (ma_buf_puts(out, key) < 0 || ma_buf_putc(out, '=') < 0 ||
	    ma_buf_put_u64(out, v) < 0)
		return -1;
	return ma_buf_putc(out, '\n');
}

/* put_field - escaped value or nothing (NULL), then a TAB if more follow */
static int
put_field(struct ma_buf *out, const char *value, bool tab)
{
	if (value != NULL && ma_proto_escape(out, value, strlen(value)) < 0)
		return -1;
	return tab ? ma_buf_putc(out, '\t') : 0;
}

int
ma_proto_encode_detail(const struct ma_record *rec, struct ma_buf *out)
{
	for (uint32_t i = 0; i < rec->item_count; i++) {
		const struct ma_item *it = &rec->items[i];

		if (ma_buf_puts(out, "item=") < 0 ||
		    ma_buf_put_u64(out, it->uid) < 0 ||
		    ma_buf_putc(out, '\t') < 0 ||
		    put_field(out, it->message_id, true) < 0 ||
		    put_field(out, it->subject, true) < 0 ||
		    ma_buf_put_u64(out, it->size) < 0 ||
		    ma_buf_putc(out, '\n') < 0)
			return -1;
	}
	for (uint32_t i = 0; i < rec->prop_count; i++) {
		const struct ma_prop *p = &rec->props[i];

		if (ma_buf_puts(out, "prop=") < 0 ||
		    put_field(out, p->name, true) < 0 ||
		    put_field(out, p->old_value, true) < 0 ||
		    put_field(out, p->new_value, false) < 0 ||
		    ma_buf_putc(out, '\n') < 0)
			return -1;
	}
	return 0;
}

int
ma_proto_encode_record(const struct ma_record *rec, struct ma_buf *out)
{
	size_t start = out->len;
	char id[37];

	ma_uuid_fmt(rec->id, id);
	if (put_u64(out, "v", MA_PROTO_VERSION) < 0 ||
	    ma_proto_put(out, "id", id) < 0 ||
	    (rec->time_ms >= 0 ? put_u64(out, "t", (uint64_t)rec->time_ms)
			       : ma_buf_printf(out, "t=%lld\n",
				     (long long)rec->time_ms)) < 0 ||
	    ma_proto_put(out, "op", rec->operation) < 0 ||
	    ma_proto_put(out, "res", ma_result_name(rec->result)) < 0 ||
	    ma_proto_put(out, "logon", ma_logon_name(rec->logon_type)) < 0 ||
	    ma_proto_put(out, "user", rec->user) < 0 ||
	    ma_proto_put(out, "mbox", rec->mailbox) < 0 ||
	    ma_proto_put(out, "folder", rec->folder) < 0 ||
	    ma_proto_put(out, "dfolder", rec->dest_folder) < 0 ||
	    ma_proto_put(out, "dmbox", rec->dest_mailbox) < 0 ||
	    ma_proto_put(out, "sess", rec->session) < 0 ||
	    ma_proto_put(out, "ip", rec->client_ip) < 0 ||
	    ma_proto_put(out, "client", rec->client_info) < 0 ||
	    ma_proto_put(out, "proto", rec->protocol) < 0 ||
	    ma_proto_put(out, "server", rec->server) < 0 ||
	    (rec->count != 0 && put_u64(out, "count", rec->count) < 0) ||
	    ma_proto_encode_detail(rec, out) < 0 || ma_proto_end(out) < 0 ||
	    out->len - start > MA_PROTO_MAX_FRAME) {
		/* Leave the buffer as it was: the caller splits and retries. */
		out->len = start;
		if (out->data != NULL)
			out->data[start] = '\0';
		return -1;
	}
	return 0;
}
