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

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ma-proto.h"
#include "ma-siem.h"
#include "ut.h"

#define GOLDEN_SEQ       4242
#define GOLDEN_MAX_FILE  (1024 * 1024)
#define GOLDEN_MAX_DIFFS 10

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

static bool update_refs;

/* read_file - the whole file into a malloc'd, NUL-terminated buffer. */
static char *
read_file(const char *path, size_t *len_r)
{
	FILE *fp = fopen(path, "rb");
	char *data;
	size_t len;

	if (fp == NULL)
		return NULL;
	data = ma_xmalloc(GOLDEN_MAX_FILE + 1);
	len = fread(data, 1, GOLDEN_MAX_FILE + 1, fp);
	if (ferror(fp) != 0 || len > GOLDEN_MAX_FILE) {
		fclose(fp);
		free(data);
		errno = EFBIG;
		return NULL;
	}
	fclose(fp);
	data[len] = '\0';
	*len_r = len;
	return data;
}

static int
write_file(const char *path, const char *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	if (fp == NULL)
		return -1;
	if (fwrite(data, 1, len, fp) != len) {
		fclose(fp);
		return -1;
	}
	return fclose(fp) == 0 ? 0 : -1;
}

/* print_visible - one line, control and non-ASCII bytes as \xNN. */
static void
print_visible(char sign, unsigned int lineno, const char *s, size_t len)
{
	fprintf(stderr, "%c%4u: ", sign, lineno);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c >= 0x7f || c == '\\')
			fprintf(stderr, "\\x%02x", c);
		else
			fputc(c, stderr);
	}
	fputc('\n', stderr);
}

/* next_line - [*p, end of line incl. '\n'); advances *p. */
static size_t
next_line(const char **p, const char *end)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t len = nl != NULL ? (size_t)(nl - *p + 1) : (size_t)(end - *p);

	*p += len;
	return len;
}

/* print_diff - the lines that differ, as -expected / +got pairs. */
static void
print_diff(const char *ref_path, const char *exp, size_t exp_len,
    const char *got, size_t got_len)
{
	const char *e = exp, *g = got;
	const char *e_end = exp + exp_len, *g_end = got + got_len;
	unsigned int lineno = 0, shown = 0;

	fprintf(stderr, "--- %s\n+++ (output)\n", ref_path);
	while ((e < e_end || g < g_end) && shown < GOLDEN_MAX_DIFFS) {
		const char *el = e, *gl = g;
		size_t elen = next_line(&e, e_end), glen = next_line(&g, g_end);

		size_t col = 0;

		lineno++;
		if (elen == glen && memcmp(el, gl, elen) == 0)
			continue;
		if (elen > 0)
			print_visible('-', lineno, el, elen);
		if (glen > 0)
			print_visible('+', lineno, gl, glen);
		/* JSON lines are long: say where to look. */
		while (col < elen && col < glen && el[col] == gl[col])
			col++;
		fprintf(
		    stderr, "       first difference at byte %zu\n", col + 1);
		shown++;
	}
}

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
	char path[4096];
	size_t exp_len = 0;
	struct ma_buf got;
	char *exp;
	int n = snprintf(
	    path, sizeof(path), "%s/%s.%s.ref", dir, name, outputs[o].ext);

	MA_ASSERT(n > 0 && (size_t)n < sizeof(path));
	ma_buf_init(&got, GOLDEN_MAX_FILE);
	render(rec, o, &got);
	if (update_refs) {
		if (write_file(path, got.data, got.len) < 0)
			ut_fail(__FILE__, __LINE__, "write %s: %s", path,
			    strerror(errno));
		ma_buf_deinit(&got);
		return;
	}
	exp = read_file(path, &exp_len);
	if (exp == NULL) {
		ut_fail(__FILE__, __LINE__, "%s: %s", path, strerror(errno));
	} else if (exp_len != got.len || memcmp(exp, got.data, got.len) != 0) {
		ut_fail(__FILE__, __LINE__, "%s differs", path);
		print_diff(path, exp, exp_len, got.data, got.len);
	}
	free(exp);
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
check_case(const char *dir, const char *file)
{
	char path[4096], name[256];
	size_t len = strlen(file) - 3, frame_len;
	struct ma_record rec;
	struct ma_error err;
	char *frame;
	int n;

	MA_ASSERT(len < sizeof(name));
	memcpy(name, file, len);
	name[len] = '\0';
	ut_begin(name);
	n = snprintf(path, sizeof(path), "%s/%s", dir, file);
	MA_ASSERT(n > 0 && (size_t)n < sizeof(path));
	frame = read_file(path, &frame_len);
	ma_record_init(&rec);
	if (frame == NULL) {
		ut_fail(__FILE__, __LINE__, "%s: %s", path, strerror(errno));
	} else if (ma_proto_decode_record(frame, frame_len, &rec, &err) < 0) {
		ut_fail(__FILE__, __LINE__, "%s: %s", path, err.msg);
	} else {
		rec.seq = GOLDEN_SEQ;
		check_json_is_export(&rec);
		for (unsigned int o = 0; o < sizeof(outputs) / sizeof(*outputs);
		     o++)
			check_output(dir, name, &rec, o);
	}
	ma_record_deinit(&rec);
	free(frame);
	ut_end();
}

static int
is_case(const struct dirent *d)
{
	size_t len = strlen(d->d_name);

	return len > 3 && strcmp(d->d_name + len - 3, ".in") == 0;
}

int
main(int argc, char **argv)
{
	struct dirent **cases;
	const char *dir;
	int n, argi = 1;

	if (argi < argc && strcmp(argv[argi], "-u") == 0) {
		update_refs = true;
		argi++;
	}
	if (argi + 1 != argc) {
		fprintf(stderr, "usage: test-golden-siem [-u] <dir>\n");
		return 2;
	}
	dir = argv[argi];
	n = scandir(dir, &cases, is_case, alphasort);
	if (n <= 0) {
		fprintf(stderr, "%s: no golden cases: %s\n", dir,
		    n < 0 ? strerror(errno) : "no *.in files");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		check_case(dir, cases[i]->d_name);
		free(cases[i]);
	}
	free(cases);
	/* Nothing left to run: prints the "N passed, N failed" line. */
	return ut_run(NULL, 0);
}
