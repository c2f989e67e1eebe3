/* SPDX-License-Identifier: MIT */
/*
 * fuzz-export.c - libFuzzer target for the exporters' escaping.
 *
 * The input is consumed as a record: id, time, an operation (an action
 * name, an admin operation or arbitrary bytes), logon type, result, every
 * string field, up to 8 items and 6 properties, all strings arbitrary
 * bytes (invalid UTF-8, controls, quotes...).  The record is not
 * validated, so the exporters see more than the store would ever hand
 * them.  Each record is exported in all three formats, twice per stream
 * (the header must come once), and the output is checked:
 *  - JSON: only printable ASCII, parses with json_loads into an object;
 *  - CSV: the header, then exactly one CRLF-terminated physical line per
 *    record, no other CR or LF; every line is valid RFC 4180 with exactly
 *    four cells; UserIds and Operations never start with = + - @ TAB CR;
 *    AuditData unquotes to exactly the JSON of ma_export_json;
 *  - table: valid UTF-8, no byte < 0x20 but each line's final '\n', no
 *    DEL, no ESC, no C1 control, and the column separators of every row
 *    sit where the header's are.
 * A violated invariant aborts.
 *
 * Build with clang -fsanitize=fuzzer; with -DMA_FUZZ_STANDALONE it gets a
 * main() instead that runs the files named on the command line, or (with
 * none) a deterministic batch of pseudo-random inputs, so any compiler
 * and valgrind can run it as a regression test.
 */

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ma-export.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(e) ((e) ? (void)0 : fz_fail(#e, __LINE__))

static void
fz_fail(const char *expr, int line)
{
	fprintf(stderr, "fuzz-export: invariant failed (line %d): %s\n", line,
	    expr);
	abort();
}

#include "fuzz-record.h"

/* The names the exporters give a meaning to. */
static const char *const prop_names[] = {
    "Member", "Rights", "Identity", "MailAccessType", "IsThrottled", "Flags"};

static const struct ma_export_ctx fz_ctx = {
    .format = MA_EXPORT_JSON,
    .organization_id = "0b5d1c7e-3a3c-4b0e-8d1e-6f2a9a6b7c01",
    .organization_name = "contoso.onmicrosoft.com",
};

/* render - two records through ma_export_record into a malloc'd string. */
static char *
render(enum ma_export_format fmt, const struct ma_record *rec, size_t *len_r)
{
	struct ma_export_ctx ctx = fz_ctx;
	char *text = NULL;
	FILE *fp = open_memstream(&text, len_r);

	FZ_CHECK(fp != NULL);
	ctx.format = fmt;
	FZ_CHECK(ma_export_record(&ctx, rec, fp) == 0);
	FZ_CHECK(ma_export_record(&ctx, rec, fp) == 0);
	FZ_CHECK(fclose(fp) == 0);
	return text;
}

static void
check_json(const char *json, const struct ma_record *rec)
{
	json_t *j;
	const char *op;

	for (const char *p = json; *p != '\0'; p++)
		FZ_CHECK(*p >= 0x20 && *p < 0x7f);
	j = json_loads(json, JSON_REJECT_DUPLICATES, NULL);
	FZ_CHECK(json_is_object(j));
	op = json_string_value(json_object_get(j, "Operation"));
	if (rec->operation != NULL &&
	    ma_utf8_valid(rec->operation, strlen(rec->operation)))
		FZ_CHECK(op != NULL && strcmp(op, rec->operation) == 0);
	json_decref(j);
}

/*
 * csv_line - parse one RFC 4180 line (up to its CRLF) into cells[4];
 * aborts unless it is well formed with exactly four cells.  Returns the
 * start of the next line.
 */
static const char *
csv_line(const char *p, char *cells[4])
{
	for (unsigned int n = 0;; n++) {
		size_t o = 0;

		FZ_CHECK(n < 4);
		cells[n] = malloc(strlen(p) + 1);
		FZ_CHECK(cells[n] != NULL);
		if (*p == '"') {
			for (p++;; p++) {
				FZ_CHECK(*p != '\0');
				if (*p == '"' && p[1] != '"')
					break;
				if (*p == '"')
					p++; /* a doubled quote */
				cells[n][o++] = *p;
			}
			p++;
		} else {
			for (; *p != ',' && *p != '\r' && *p != '\0'; p++) {
				FZ_CHECK(*p != '"' && *p != '\n');
				cells[n][o++] = *p;
			}
		}
		cells[n][o] = '\0';
		if (*p == ',') {
			p++;
			continue;
		}
		FZ_CHECK(p[0] == '\r' && p[1] == '\n' && n == 3);
		return p + 2;
	}
}

static void
check_csv(const char *csv, size_t len, const char *json)
{
	static const char header[] = "CreationDate,UserIds,Operations,"
				     "AuditData\r\n";
	const char *p = csv + strlen(header);
	size_t crlf = 0;

	FZ_CHECK(strlen(csv) == len);
	FZ_CHECK(strncmp(csv, header, strlen(header)) == 0);
	/* One physical line per record: header + 2 lines, no stray CR/LF. */
	for (size_t i = 0; i < len; i++) {
		if (csv[i] == '\n')
			FZ_CHECK(i > 0 && csv[i - 1] == '\r');
		if (csv[i] == '\r')
			FZ_CHECK(csv[i + 1] == '\n');
		crlf += csv[i] == '\n';
	}
	FZ_CHECK(crlf == 3);
	for (int r = 0; r < 2; r++) {
		char *cells[4] = {NULL, NULL, NULL, NULL};

		p = csv_line(p, cells);
		FZ_CHECK(strlen(cells[0]) == 24 && cells[0][23] == 'Z');
		for (int c = 1; c <= 2; c++)
			FZ_CHECK(cells[c][0] == '\0' ||
				 strchr("=+-@\t\r", cells[c][0]) == NULL);
		FZ_CHECK(strcmp(cells[3], json) == 0);
		for (int c = 0; c < 4; c++)
			free(cells[c]);
	}
	FZ_CHECK(*p == '\0');
}

/* codepoint_offsets - byte offset of every code point of line[0..len). */
static size_t
codepoint_offsets(const char *line, size_t len, size_t *offs)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (((unsigned char)line[i] & 0xc0) != 0x80)
			offs[n++] = i;
	}
	return n;
}

static void
check_table(const char *table, size_t len)
{
	const char *line = table, *nl;
	size_t *offs = malloc((len + 1) * sizeof(*offs));
	size_t seps[16], nseps = 0, lines = 0;

	FZ_CHECK(offs != NULL);
	FZ_CHECK(strlen(table) == len && ma_utf8_valid(table, len));
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)table[i];

		FZ_CHECK(c >= 0x20 || c == '\n');
		FZ_CHECK(c != 0x7f && c != 0x1b);
		/* C1 controls are U+0080..U+009F: 0xc2 0x80..0x9f. */
		FZ_CHECK(!(c == 0xc2 && (unsigned char)table[i + 1] < 0xa0));
	}
	FZ_CHECK(len > 0 && table[len - 1] == '\n');
	/* The header gives the separators: a space before each title. */
	nl = strchr(line, '\n');
	for (const char *p = line + 1; p < nl; p++) {
		if (p[-1] == ' ' && p[0] != ' ') {
			FZ_CHECK(nseps < 16);
			seps[nseps++] = (size_t)(p - line - 1);
		}
	}
	for (; *line != '\0'; line = nl + 1) {
		size_t n;

		nl = strchr(line, '\n');
		n = codepoint_offsets(line, (size_t)(nl - line), offs);
		lines++;
		for (size_t s = 0; s < nseps; s++)
			FZ_CHECK(seps[s] < n && line[offs[seps[s]]] == ' ');
	}
	FZ_CHECK(lines == 3);
	free(offs);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz f = {data, size};
	struct ma_record rec;
	struct ma_buf json;
	char *text;
	size_t len;

	ma_record_init(&rec);
	fz_record(&f, &rec, prop_names,
	    sizeof(prop_names) / sizeof(*prop_names), 0x80);
	ma_buf_init(&json, 64 * 1024 * 1024);
	FZ_CHECK(ma_export_json(&fz_ctx, &rec, &json) == 0);
	check_json(json.data, &rec);

	text = render(MA_EXPORT_JSON, &rec, &len);
	FZ_CHECK(len == 2 * (json.len + 1));
	free(text);
	text = render(MA_EXPORT_CSV, &rec, &len);
	check_csv(text, len, json.data);
	free(text);
	text = render(MA_EXPORT_TABLE, &rec, &len);
	check_table(text, len);
	free(text);

	ma_buf_deinit(&json);
	ma_record_deinit(&rec);
	return 0;
}

#ifdef MA_FUZZ_STANDALONE
/* run_file - one input file through the target; -1 if unreadable. */
static int
run_file(const char *path)
{
	static uint8_t buf[1 << 20];
	FILE *fp = fopen(path, "rb");
	size_t n;

	if (fp == NULL) {
		perror(path);
		return -1;
	}
	n = fread(buf, 1, sizeof(buf), fp);
	fclose(fp);
	return LLVMFuzzerTestOneInput(buf, n);
}

int
main(int argc, char **argv)
{
	static const char hostile[] = "\r\n\t\"\\,=\x1b\x7f\xc2\x9b\xff";
	static uint8_t buf[4096];
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	unsigned int runs = 0, failed = 0;

	for (int i = 1; i < argc; i++, runs++)
		failed += run_file(argv[i]) < 0;
	/* No files: a fixed batch of xorshift inputs, one byte in 4 hostile. */
	for (unsigned int r = 0; argc == 1 && r < 3000; r++, runs++) {
		size_t n = (size_t)(r * 7 % sizeof(buf));

		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = (uint8_t)x;
			if ((x & 0x300) == 0)
				buf[i] = (uint8_t)
				    hostile[(x >> 12) % (sizeof(hostile) - 1)];
		}
		LLVMFuzzerTestOneInput(buf, n);
	}
	/* One test for the harness; a broken invariant has aborted. */
	printf("fuzz-export: %u inputs, %u unreadable\n", runs, failed);
	printf("%d passed, %d failed\n", failed == 0, failed != 0);
	return failed == 0 ? 0 : 1;
}
#endif
