/* SPDX-License-Identifier: MIT */
/*
 * fuzz-proto.c - libFuzzer target for the wire decoder, the daemon's
 * first contact with bytes from any local process.
 *
 * Invariants: frame_len never claims more than it was given; decoding
 * never crashes; a frame that decodes re-encodes to a frame that decodes
 * to the same record (so nothing the store keeps can be mangled on the
 * way out); every decoded string is valid UTF-8 within the length limit.
 */

#include <stdlib.h>
#include <string.h>

#include "ma-proto.h"

static void
check_strings(const struct ma_record *r)
{
	const char *s[] = {r->operation, r->user, r->mailbox, r->folder,
	    r->dest_folder, r->session, r->client_ip, r->client_info};

	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		if (s[i] != NULL && (!ma_utf8_valid(s[i], strlen(s[i])) ||
					strlen(s[i]) > MA_RECORD_MAX_STRING))
			abort();
	}
	for (uint32_t i = 0; i < r->item_count; i++) {
		if (r->items[i].subject != NULL &&
		    !ma_utf8_valid(
			r->items[i].subject, strlen(r->items[i].subject)))
			abort();
	}
}

static void
same(const struct ma_record *a, const struct ma_record *b)
{
	if (memcmp(a->id, b->id, 16) != 0 || a->time_ms != b->time_ms ||
	    strcmp(a->operation, b->operation) != 0 ||
	    strcmp(a->user, b->user) != 0 || a->item_count != b->item_count ||
	    a->prop_count != b->prop_count || a->logon_type != b->logon_type)
		abort();
	for (uint32_t i = 0; i < a->item_count; i++) {
		const char *x = a->items[i].subject, *y = b->items[i].subject;

		if ((x == NULL) != (y == NULL) || (x != NULL && strcmp(x, y)))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ma_record rec, again;
	struct ma_error err = {0};
	struct ma_kvframe kv;
	struct ma_buf buf;
	long len = ma_proto_frame_len((const char *)data, size);

	if (len > (long)size)
		abort();
	ma_record_init(&rec);
	ma_record_init(&again);
	if (ma_proto_decode_record((const char *)data, size, &rec, &err) == 0) {
		check_strings(&rec);
		ma_buf_init(&buf, MA_PROTO_MAX_FRAME * 4);
		if (ma_proto_encode_record(&rec, &buf) == 0) {
			if (ma_proto_decode_record(
				buf.data, buf.len, &again, &err) != 0)
				abort();
			same(&rec, &again);
		}
		ma_buf_deinit(&buf);
	}
	ma_kvframe_init(&kv);
	(void)ma_kvframe_decode(&kv, (const char *)data, size, &err);
	ma_kvframe_deinit(&kv);
	ma_record_reset(&rec);
	(void)ma_proto_decode_detail(&rec, (const char *)data, size, &err);
	ma_record_deinit(&rec);
	ma_record_deinit(&again);
	return 0;
}
