/* SPDX-License-Identifier: MIT */
#ifndef FUZZ_RECORD_H
#define FUZZ_RECORD_H

/*
 * fuzz-record.h - the fuzz targets' reading of their input: a consumer
 * (bytes past the end read as zero) and a record built from it, every
 * string arbitrary bytes (invalid UTF-8, controls, quotes...), not
 * validated, so the code under test sees more than the store would ever
 * hand it.  The includer defines FZ_CHECK(e), which aborts if e is false.
 */

#include <stdint.h>
#include <string.h>

#include "ma-record.h"

#ifndef FZ_CHECK
#error "define FZ_CHECK before including fuzz-record.h"
#endif

/* Input consumer: bytes past the end read as zero. */
struct fz {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t
fz_u8(struct fz *f)
{
	uint8_t v = 0;

	if (f->n > 0) {
		v = f->p[0];
		f->p++;
		f->n--;
	}
	return v;
}

static inline uint64_t
fz_u64(struct fz *f, unsigned int bytes)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < bytes; i++)
		v = v << 8 | fz_u8(f);
	return v;
}

/* fz_str - length byte (0: absent), then up to length-1 bytes. */
static inline const char *
fz_str(struct fz *f, struct ma_record *rec)
{
	size_t len = fz_u8(f);

	if (len == 0)
		return NULL;
	len--;
	if (len > f->n)
		len = f->n;
	f->p += len;
	f->n -= len;
	return ma_arena_strndup(&rec->arena, (const char *)f->p - len, len);
}

static inline const char *
fz_operation(struct fz *f, struct ma_record *rec)
{
	static const char *const admin[] = {"Set-Mailbox",
	    "Set-OrganizationConfig", "Set-MailboxAuditBypassAssociation"};
	uint8_t sel = fz_u8(f);

	if (sel < 0xc0)
		return ma_action_name((enum ma_action)(sel % MA_ACTION_COUNT));
	if (sel < 0xe0)
		return admin[sel % 3];
	return fz_str(f, rec);
}

/*
 * fz_prop_name - a property name: below named_below, one of names[0..n)
 * (the names the code under test gives a meaning to), else arbitrary.
 */
static inline const char *
fz_prop_name(struct fz *f, struct ma_record *rec, const char *const *names,
    size_t n, uint8_t named_below)
{
	uint8_t sel = fz_u8(f);
	const char *s;

	if (sel < named_below)
		return names[sel % n];
	s = fz_str(f, rec);
	return s != NULL ? s : "";
}

/*
 * fz_record - id, time, an operation (an action name, an admin operation
 * or arbitrary bytes), result, logon type, count, every string field, up
 * to 8 items and 6 properties (names as fz_prop_name picks them).
 */
static inline void
fz_record(struct fz *f, struct ma_record *rec, const char *const *prop_names,
    size_t n_prop_names, uint8_t named_below)
{
	const char **strings[] = {&rec->user, &rec->mailbox, &rec->folder,
	    &rec->dest_folder, &rec->dest_mailbox, &rec->session,
	    &rec->client_ip, &rec->client_info, &rec->protocol, &rec->server};
	unsigned int n;

	for (size_t i = 0; i < sizeof(rec->id); i++)
		rec->id[i] = fz_u8(f);
	/* Years 1970-9999: ma_fmt_time's documented 24-byte output. */
	rec->time_ms = (int64_t)(fz_u64(f, 6) % 253402300800000ULL);
	rec->seq = (int64_t)fz_u64(f, 4);
	rec->operation = fz_operation(f, rec);
	rec->result = (enum ma_result)(fz_u8(f) % 3);
	rec->logon_type = (enum ma_logon)(fz_u8(f) % (MA_LOGON_MAX + 1));
	rec->count = fz_u8(f) < 0x80 ? 0 : (uint32_t)fz_u64(f, 4);
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		*strings[i] = fz_str(f, rec);
	n = fz_u8(f) % 9;
	for (unsigned int i = 0; i < n; i++) {
		uint32_t uid = (uint32_t)fz_u64(f, 4);
		const char *msgid = fz_str(f, rec), *subject = fz_str(f, rec);

		FZ_CHECK(ma_record_add_item(
			     rec, uid, msgid, subject, fz_u64(f, 8)) == 0);
	}
	n = fz_u8(f) % 7;
	for (unsigned int i = 0; i < n; i++) {
		const char *name =
		    fz_prop_name(f, rec, prop_names, n_prop_names, named_below);
		const char *old_value = fz_str(f, rec);

		FZ_CHECK(ma_record_add_prop(
			     rec, name, old_value, fz_str(f, rec)) == 0);
	}
}

#endif
