/* SPDX-License-Identifier: MIT */
/*
 * golden.c - the runner shared by the golden-file tests (golden.h): case
 * files in, decoded records out to the test's check function, outputs
 * compared with their .ref files byte for byte (or rewritten with -u).
 */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "ma-proto.h"
#include "ut.h"

#define GOLDEN_MAX_DIFFS 10

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

void
golden_compare(const char *dir, const char *name, const char *ext,
    const char *got, size_t got_len)
{
	char path[4096];
	size_t exp_len = 0;
	char *exp;
	int n = snprintf(path, sizeof(path), "%s/%s.%s.ref", dir, name, ext);

	MA_ASSERT(n > 0 && (size_t)n < sizeof(path));
	if (update_refs) {
		if (write_file(path, got, got_len) < 0)
			ut_fail(__FILE__, __LINE__, "write %s: %s", path,
			    strerror(errno));
		return;
	}
	exp = read_file(path, &exp_len);
	if (exp == NULL) {
		ut_fail(__FILE__, __LINE__, "%s: %s", path, strerror(errno));
	} else if (exp_len != got_len || memcmp(exp, got, got_len) != 0) {
		ut_fail(__FILE__, __LINE__, "%s differs", path);
		print_diff(path, exp, exp_len, got, got_len);
	}
	free(exp);
}

static void
run_case(const char *dir, const char *file,
    void (*check)(
	const char *dir, const char *name, const struct ma_record *rec))
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
		check(dir, name, &rec);
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
golden_main(int argc, char **argv, const char *prog,
    void (*check)(
	const char *dir, const char *name, const struct ma_record *rec))
{
	struct dirent **cases;
	const char *dir;
	int n, argi = 1;

	if (argi < argc && strcmp(argv[argi], "-u") == 0) {
		update_refs = true;
		argi++;
	}
	if (argi + 1 != argc) {
		fprintf(stderr, "usage: %s [-u] <dir>\n", prog);
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
		run_case(dir, cases[i]->d_name, check);
		free(cases[i]);
	}
	free(cases);
	/* Nothing left to run: prints the "N passed, N failed" line. */
	return ut_run(NULL, 0);
}
