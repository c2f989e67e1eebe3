/* SPDX-License-Identifier: MIT */
#ifndef MA_SIEM_H
#define MA_SIEM_H

/*
 * Rendering records for a SIEM (docs/FORWARDING.md, "Formats"):
 *  - a record body in one of three formats: the Management Activity JSON
 *    of ma-export (json), ArcSight CEF 0 (cef), Elastic Common Schema (ecs);
 *  - the RFC 5424 syslog message around a body, and its RFC 6587
 *    octet-counting frame;
 *  - a Splunk HEC event object, and an Elasticsearch/OpenSearch _bulk
 *    "create" pair (action line + document line).
 * Every untrusted string is escaped for the format *and* the framing it
 * lands in: no subject, folder or client string can end a frame, start a
 * field or forge one.  Pure functions: no I/O, thread-safe.
 */

#include <stdbool.h>
#include <string.h>
#include "ma-export.h"
#include "ma-record.h"
#include "ma-util.h"

enum ma_siem_format {
	MA_SIEM_JSON,
	MA_SIEM_CEF,
	MA_SIEM_ECS,
};

struct ma_siem_ctx {
	/* organisation values for the JSON body (ma_export_json) */
	struct ma_export_ctx export;
	const char *hostname; /* RFC 5424 HOSTNAME when the record names no server */
	const char *app_name; /* RFC 5424 APP-NAME, "mailaudit" */
	const char *sd_id;    /* "mailaudit@32473" */
	bool utf8_bom;        /* MSG starts with the BOM (MSG-UTF8) */
	int facility;         /* 0..23, default 13 (log audit) */
	const char *product_version; /* CEF Device Version */
};

/*
 * 1 and *fmt_r set if name is json, cef or ecs; 0 otherwise.  Inline, so
 * the configuration parser in ma_core (libc only) can use it.
 */
static inline int
ma_siem_format_lookup(const char *name, enum ma_siem_format *fmt_r)
{
	static const char *const names[] = {"json", "cef", "ecs"};

	for (unsigned int i = 0; i < 3; i++) {
		if (strcmp(name, names[i]) == 0) {
			*fmt_r = (enum ma_siem_format)i;
			return 1;
		}
	}
	return 0;
}

/* ma_siem_body - append rec in fmt (one line, no newline) to out. -1: out full */
int ma_siem_body(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, struct ma_buf *out);

/*
 * ma_siem_syslog_frame - append "LEN SP SYSLOG-MSG" (RFC 6587 octet
 * counting) for rec: RFC 5424 header, the SD element, MSG = body in fmt.
 */
int ma_siem_syslog_frame(const struct ma_siem_ctx *ctx,
    enum ma_siem_format fmt, const struct ma_record *rec, struct ma_buf *out);

/* ma_siem_syslog_msg - the same without the length prefix (for RELP). */
int ma_siem_syslog_msg(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, struct ma_buf *out);

/*
 * ma_siem_hec_event - append one HEC event object {"time":..,"host":..,
 * "source":..,"sourcetype":..,["index":..,]"event":..} (no newline);
 * the event is the JSON/ECS object, or a string for CEF.
 */
int ma_siem_hec_event(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, const char *index, const char *sourcetype,
    struct ma_buf *out);

/*
 * ma_siem_bulk_create - append the two NDJSON lines of a _bulk "create"
 * with _id = the record's Id (so a resend is answered 409, not stored
 * twice), each ending in '\n'.  fmt is json or ecs.
 */
int ma_siem_bulk_create(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, const char *index, struct ma_buf *out);

#endif
