/* SPDX-License-Identifier: MIT */
#ifndef MA_EXPORT_H
#define MA_EXPORT_H

/*
 * Rendering records for people and for other tools:
 *  - JSON in the Office 365 Management Activity API schema (one object
 *    per line), so SIEM parsers written for Exchange work unchanged;
 *  - CSV with the Purview export's columns (CreationDate, UserIds,
 *    Operations, AuditData), AuditData being that same JSON;
 *  - a fixed-width table for a terminal.
 * Every untrusted string is escaped for its format; nothing a mail client
 * chooses (subject, folder name, client ID) can break a line, a cell or a
 * terminal.  See docs/SCHEMA.md for the field mapping.
 */

#include <stdio.h>
#include "ma-record.h"
#include "ma-util.h"

enum ma_export_format {
	MA_EXPORT_TABLE,
	MA_EXPORT_JSON,
	MA_EXPORT_CSV,
};

/* Organisation-wide values that go into every JSON record. */
struct ma_export_ctx {
	enum ma_export_format format;
	const char *organization_id;   /* GUID string; may be NULL */
	const char *organization_name; /* may be NULL */
	/* Internal: whether the CSV header / table header was written. */
	bool header_done;
};

int ma_export_format_lookup(const char *name, enum ma_export_format *fmt_r);

/*
 * ma_export_json - append rec as one Management Activity JSON object
 * (no trailing newline) to out.  -1 only if out's max is exceeded.
 */
int ma_export_json(const struct ma_export_ctx *ctx, const struct ma_record *rec,
    struct ma_buf *out);

/*
 * ma_export_json_put_string - append s as a JSON string literal in the
 * form ma_export_json writes strings: 7-bit, \uXXXX for controls, DEL
 * and non-ASCII (the bytes of jansson's JSON_ENSURE_ASCII, DEL aside),
 * invalid UTF-8 as U+FFFD.  -1, out unchanged, if out is full.
 */
int ma_export_json_put_string(struct ma_buf *out, const char *s);

/*
 * ma_export_record - write rec to fp in ctx->format, with a header line
 * before the first record for CSV and table.  -1 on a write error.
 */
int ma_export_record(
    struct ma_export_ctx *ctx, const struct ma_record *rec, FILE *fp);

#endif
