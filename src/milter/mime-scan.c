/* SPDX-License-Identifier: MIT */
/*
 * mime-scan.c - streaming attachment detection (see mime-scan.h).
 *
 * The body is seen line by line; a line "--<boundary>" of a boundary we
 * know starts a part's header block, which ends at the first empty line.
 * Header values are parsed with GMime (RFC 2045/2231/2047 parameters),
 * which is why g_mime_init() must have run.  A message without multipart
 * structure can still be one attachment (a top-level
 * Content-Disposition: attachment).
 */

#include "mime-scan.h"

#include <gmime/gmime.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ma-util.h"

void
mime_scan_init(struct mime_scan *scan)
{
	memset(scan, 0, sizeof(*scan));
}

void
mime_scan_deinit(struct mime_scan *scan)
{
	for (unsigned int i = 0; i < scan->name_count; i++)
		free(scan->names[i]);
	for (unsigned int i = 0; i < scan->boundary_count; i++)
		free(scan->boundaries[i]);
	free(scan->part_name);
	memset(scan, 0, sizeof(*scan));
}

static void
add_name(struct mime_scan *scan, const char *name)
{
	if (name == NULL || *name == '\0' ||
	    scan->name_count >= MIME_SCAN_MAX_NAMES)
		return;
	scan->names[scan->name_count++] =
	    ma_xstrndup(name, strnlen(name, MIME_SCAN_MAX_NAME_LEN));
}

/*
 * analyze - one header of the top level or of a part.  Returns whether it
 * marks the part as an attachment; *name_r gets the file name, if any
 * (the caller frees it).
 */
static bool
analyze(
    struct mime_scan *scan, const char *name, const char *value, char **name_r)
{
	bool attachment = false;

	if (strcasecmp(name, "Content-Type") == 0) {
		GMimeContentType *ct = g_mime_content_type_parse(NULL, value);
		const char *p;

		if (ct == NULL)
			return false;
		p = g_mime_content_type_get_parameter(ct, "boundary");
		if (g_mime_content_type_is_type(ct, "multipart", "*") &&
		    p != NULL && *p != '\0' && strlen(p) <= 200 &&
		    scan->boundary_count < MIME_SCAN_MAX_BOUNDARIES)
			scan->boundaries[scan->boundary_count++] =
			    ma_xstrdup(p);
		p = g_mime_content_type_get_parameter(ct, "name");
		if (p != NULL && *p != '\0') {
			attachment = true;
			if (*name_r == NULL)
				*name_r = ma_xstrdup(p);
		}
		g_object_unref(ct);
	} else if (strcasecmp(name, "Content-Disposition") == 0) {
		GMimeContentDisposition *cd =
		    g_mime_content_disposition_parse(NULL, value);
		const char *p;

		if (cd == NULL)
			return false;
		if (g_mime_content_disposition_is_attachment(cd))
			attachment = true;
		p = g_mime_content_disposition_get_parameter(cd, "filename");
		if (p != NULL && *p != '\0') {
			attachment = true;
			free(*name_r);
			*name_r = ma_xstrdup(p);
		}
		g_object_unref(cd);
	}
	return attachment;
}

void
mime_scan_top_header(
    struct mime_scan *scan, const char *name, const char *value)
{
	char *fname = NULL;

	/* A top-level name= alone is a single-part message, not a file. */
	if (analyze(scan, name, value, &fname) &&
	    strcasecmp(name, "Content-Disposition") == 0) {
		scan->attachments++;
		add_name(scan, fname);
	}
	free(fname);
}

/* part_end_headers - the part's header block is complete */
static void
part_end_headers(struct mime_scan *scan)
{
	if (scan->part_attachment) {
		scan->attachments++;
		add_name(scan, scan->part_name);
	}
	free(scan->part_name);
	scan->part_name = NULL;
	scan->part_attachment = false;
	scan->in_headers = false;
}

/* part_header_flush - analyse the unfolded header collected so far */
static void
part_header_flush(struct mime_scan *scan)
{
	char *colon;

	if (scan->header_len == 0)
		return;
	scan->header[scan->header_len] = '\0';
	scan->header_len = 0;
	colon = strchr(scan->header, ':');
	if (colon == NULL)
		return;
	*colon = '\0';
	if (analyze(scan, scan->header, colon + 1, &scan->part_name))
		scan->part_attachment = true;
}

static bool
is_boundary(const struct mime_scan *scan, const char *line, size_t len)
{
	if (len < 3 || line[0] != '-' || line[1] != '-')
		return false;
	for (unsigned int i = 0; i < scan->boundary_count; i++) {
		size_t blen = strlen(scan->boundaries[i]);

		if (len >= blen + 2 &&
		    memcmp(line + 2, scan->boundaries[i], blen) == 0)
			return true;
	}
	return false;
}

/* scan_line - one complete body line (without CRLF, possibly cut) */
static void
scan_line(struct mime_scan *scan, const char *line, size_t len)
{
	if (is_boundary(scan, line, len)) {
		if (scan->in_headers) {
			part_header_flush(scan);
			part_end_headers(scan);
		}
		scan->in_headers = true;
		return;
	}
	if (!scan->in_headers)
		return;
	if (len == 0) {
		part_header_flush(scan);
		part_end_headers(scan);
	} else if (line[0] == ' ' || line[0] == '\t') {
		/* Folded: append to the current header, bounded. */
		size_t room = sizeof(scan->header) - 1 - scan->header_len;

		if (scan->header_len > 0) {
			if (len > room)
				len = room;
			memcpy(scan->header + scan->header_len, line, len);
			scan->header_len += len;
		}
	} else {
		part_header_flush(scan);
		if (len > sizeof(scan->header) - 1)
			len = sizeof(scan->header) - 1;
		memcpy(scan->header, line, len);
		scan->header_len = len;
	}
}

void
mime_scan_body(struct mime_scan *scan, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = data[i];

		if (c == '\n') {
			scan_line(scan, scan->line, scan->line_len);
			scan->line_len = 0;
			scan->line_cr = false;
			continue;
		}
		if (scan->line_cr && scan->line_len < sizeof(scan->line) - 1)
			scan->line[scan->line_len++] = '\r';
		scan->line_cr = c == '\r';
		if (!scan->line_cr && scan->line_len < sizeof(scan->line) - 1)
			scan->line[scan->line_len++] = c;
	}
}

void
mime_scan_finish(struct mime_scan *scan)
{
	if (scan->line_len > 0)
		scan_line(scan, scan->line, scan->line_len);
	scan->line_len = 0;
	if (scan->in_headers) {
		part_header_flush(scan);
		part_end_headers(scan);
	}
}
