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

/*
 * What every rendering takes besides the record.  A NULL or empty string
 * field means its default.  The caller owns the strings; nothing is kept
 * after a call returns.
 */
struct ma_siem_ctx {
	/* Organisation values for the JSON body (ma_export_json). */
	struct ma_export_ctx export;
	/* RFC 5424 HOSTNAME (and HEC host, CEF dvchost, ECS host.name)
	   when the record names no server; no default ("-"). */
	const char *hostname;
	const char *app_name; /* RFC 5424 APP-NAME, HEC source: "mailaudit" */
	const char *sd_id;    /* SD-ID: "mailaudit@32473" */
	bool utf8_bom;        /* MSG starts with the BOM (MSG-UTF8) */
	/* 0..23; anything else means 13 (log audit).  0 is kern: set it. */
	int facility;
	/* CEF Device Version, ECS observer.version: MA_VERSION */
	const char *product_version;
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

/*
 * Every function below appends to out and returns 0, or returns -1 and
 * leaves out exactly as it was when out's max would be passed (or, for
 * ma_siem_bulk_create, fmt is cef).  Records need not be validated:
 * any string may hold any bytes, and the output is still well formed.
 * docs/SIEM-FORMATS.md has the field mapping and the escaping rules.
 */

/*
 * ma_siem_body - rec in fmt, one line without a newline.  json is the
 * exact bytes of ma_export_json; cef and ecs never hold CR, LF or NUL.
 */
int ma_siem_body(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, struct ma_buf *out);

/*
 * ma_siem_syslog_frame - "MSG-LEN SP SYSLOG-MSG" (RFC 6587 octet
 * counting) of ma_siem_syslog_msg's message.
 */
int ma_siem_syslog_frame(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, struct ma_buf *out);

/*
 * ma_siem_syslog_msg - the RFC 5424 message alone (for RELP): "<PRI>1
 * TIMESTAMP HOSTNAME APP-NAME - MSGID [SD-ID seq= id= op= mbx= user=
 * logon= result=] MSG", MSG being the body in fmt.
 */
int ma_siem_syslog_msg(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, struct ma_buf *out);

/*
 * ma_siem_hec_event - one HEC event object {"time":..,"host":..,
 * "source":..,"sourcetype":..,["index":..,]"event":..} (no newline);
 * the event is the JSON/ECS object, or the CEF line as a string.  index
 * NULL or "": none (the token's default); sourcetype NULL or "":
 * "mailaudit:json", "mailaudit:cef" or "mailaudit:ecs".
 */
int ma_siem_hec_event(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, const char *index, const char *sourcetype,
    struct ma_buf *out);

/*
 * ma_siem_bulk_create - the two NDJSON lines of a _bulk "create" with
 * _id = the record's Id (so a resend is answered 409, not stored twice),
 * each ending in '\n'.  fmt is json or ecs (cef: -1); index NULL or "":
 * "logs-mailaudit-default".
 */
int ma_siem_bulk_create(const struct ma_siem_ctx *ctx, enum ma_siem_format fmt,
    const struct ma_record *rec, const char *index, struct ma_buf *out);

#endif
