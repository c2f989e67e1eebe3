/* SPDX-License-Identifier: MIT */
/*
 * test-golden-siem.c - golden-file test of the SIEM renderers (ma-siem),
 * in the shape of test-golden-export.c: every <case>.in in the golden
 * directory is one wire-protocol frame; it is decoded, given store
 * sequence number 4242, and rendered eight ways:
 *
 *   <case>.json.ref         JSON body (ma_siem_body, MA_SIEM_JSON)
 *   <case>.cef.ref          CEF body
 *   <case>.ecs.ref          ECS body
 *   <case>.syslog-json.ref  RFC 6587 frame of the RFC 5424 message, JSON
 *   <case>.syslog-cef.ref   the same with the CEF body
 *   <case>.hec-ecs.ref      HEC event, ECS object, index "mail_audit"
 *   <case>.hec-cef.ref      HEC event, CEF string, no index
 *   <case>.bulk-ecs.ref     _bulk create pair, ECS, default index
 *
 * Every output but the _bulk pair (which ends in its own newline) gets a
 * '\n' appended in the file so the references read as text.  The JSON
 * body must also be byte-identical to ma_export_json's output.
 *
 * Usage: test-golden-siem [-u] <dir>
 *   -u  rewrite the .ref files from the current output (then review the
 *       change with git diff before committing it).
 */

#include <string.h>

#include "golden.h"
#include "ma-siem.h"
#include "ut.h"

enum golden_kind {
	KIND_BODY,
	KIND_SYSLOG,
	KIND_HEC,
	KIND_BULK,
};

static const struct {
	const char *ext;
	enum golden_kind kind;
	enum ma_siem_format format;
	const char *index;
} outputs[] = {
    {"json", KIND_BODY, MA_SIEM_JSON, NULL},
    {"cef", KIND_BODY, MA_SIEM_CEF, NULL},
    {"ecs", KIND_BODY, MA_SIEM_ECS, NULL},
    {"syslog-json", KIND_SYSLOG, MA_SIEM_JSON, NULL},
    {"syslog-cef", KIND_SYSLOG, MA_SIEM_CEF, NULL},
    {"hec-ecs", KIND_HEC, MA_SIEM_ECS, "mail_audit"},
    {"hec-cef", KIND_HEC, MA_SIEM_CEF, NULL},
    {"bulk-ecs", KIND_BULK, MA_SIEM_ECS, NULL},
};

static const struct ma_siem_ctx golden_ctx = {
    .export =
	{
	    .format = MA_EXPORT_JSON,
	    .organization_id = "0b5d1c7e-3a3c-4b0e-8d1e-6f2a9a6b7c01",
	    .organization_name = "contoso.onmicrosoft.com",
	},
    .hostname = "forwarder.contoso.com",
    .app_name = "mailaudit",
    .sd_id = "mailaudit@32473",
    .utf8_bom = false,
    .facility = 13,
    /* Fixed, so that a release does not change every reference. */
    .product_version = "0.1.0",
};

/* render - output o of rec, as the .ref file holds it. */
static void
render(const struct ma_record *rec, unsigned int o, struct ma_buf *out)
{
	int ret = -1;

	switch (outputs[o].kind) {
	case KIND_BODY:
		ret = ma_siem_body(&golden_ctx, outputs[o].format, rec, out);
		break;
	case KIND_SYSLOG:
		ret = ma_siem_syslog_frame(
		    &golden_ctx, outputs[o].format, rec, out);
		break;
	case KIND_HEC:
		ret = ma_siem_hec_event(&golden_ctx, outputs[o].format, rec,
		    outputs[o].index, NULL, out);
		break;
	case KIND_BULK:
		ret = ma_siem_bulk_create(
		    &golden_ctx, outputs[o].format, rec, outputs[o].index, out);
		break;
	}
	ut_assert(ret == 0);
	if (outputs[o].kind != KIND_BULK)
		MA_ASSERT(ma_buf_putc(out, '\n') == 0);
}

static void
check_output(const char *dir, const char *name, const struct ma_record *rec,
    unsigned int o)
{
	struct ma_buf got;

	ma_buf_init(&got, GOLDEN_MAX_FILE);
	render(rec, o, &got);
	golden_compare(dir, name, outputs[o].ext, got.data, got.len);
	ma_buf_deinit(&got);
}

/* check_json_is_export - the JSON body is ma_export_json's, to the byte. */
static void
check_json_is_export(const struct ma_record *rec)
{
	struct ma_buf siem, export;

	ma_buf_init(&siem, GOLDEN_MAX_FILE);
	ma_buf_init(&export, GOLDEN_MAX_FILE);
	ut_assert(ma_siem_body(&golden_ctx, MA_SIEM_JSON, rec, &siem) == 0);
	ut_assert(ma_export_json(&golden_ctx.export, rec, &export) == 0);
	ut_assert(siem.len == export.len && siem.len > 0 &&
		  memcmp(siem.data, export.data, siem.len) == 0);
	ma_buf_deinit(&siem);
	ma_buf_deinit(&export);
}

static void
check_case(const char *dir, const char *name, const struct ma_record *rec)
{
	check_json_is_export(rec);
	for (unsigned int o = 0; o < sizeof(outputs) / sizeof(*outputs); o++)
		check_output(dir, name, rec, o);
}

int
main(int argc, char **argv)
{
	return golden_main(argc, argv, "test-golden-siem", check_case);
}
