/* SPDX-License-Identifier: MIT */
/*
 * test-golden-export.c - golden-file test of the exporters, Postfix style:
 * every <case>.in in the golden directory is one wire-protocol frame
 * (ma-proto.h); it is decoded with ma_proto_decode_record, given store
 * sequence number 4242 (frames carry none), and rendered as JSON, CSV and
 * table, each with its header, through ma_export_record.  The output must
 * equal <case>.json.ref, <case>.csv.ref and <case>.table.ref byte for
 * byte; a mismatch prints the differing lines with control and non-ASCII
 * bytes shown as \xNN.
 *
 * Usage: test-golden-export [-u] <dir>
 *   -u  rewrite the .ref files from the current output (then review the
 *       change with git diff before committing it).
 */

#include <stdio.h>
#include <stdlib.h>

#include "golden.h"
#include "ma-export.h"
#include "ut.h"

static const struct {
	enum ma_export_format format;
	const char *ext;
} formats[] = {
    {MA_EXPORT_JSON, "json"},
    {MA_EXPORT_CSV, "csv"},
    {MA_EXPORT_TABLE, "table"},
};

/* render - rec in fmt, with its header, as ma_export_record writes it. */
static char *
render(const struct ma_record *rec, enum ma_export_format fmt, size_t *len_r)
{
	struct ma_export_ctx ctx = {
	    .format = fmt,
	    .organization_id = "0b5d1c7e-3a3c-4b0e-8d1e-6f2a9a6b7c01",
	    .organization_name = "contoso.onmicrosoft.com",
	};
	char *text = NULL;
	FILE *fp = open_memstream(&text, len_r);

	MA_ASSERT(fp != NULL);
	ut_assert(ma_export_record(&ctx, rec, fp) == 0);
	MA_ASSERT(fclose(fp) == 0);
	return text;
}

static void
check_case(const char *dir, const char *name, const struct ma_record *rec)
{
	for (unsigned int f = 0; f < sizeof(formats) / sizeof(*formats); f++) {
		size_t len;
		char *got = render(rec, formats[f].format, &len);

		golden_compare(dir, name, formats[f].ext, got, len);
		free(got);
	}
}

int
main(int argc, char **argv)
{
	return golden_main(argc, argv, "test-golden-export", check_case);
}
