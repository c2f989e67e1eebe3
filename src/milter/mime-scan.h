/* SPDX-License-Identifier: MIT */
#ifndef MIME_SCAN_H
#define MIME_SCAN_H

/*
 * Attachment detection for send records, streaming over a message's
 * header and body as the milter receives them, without keeping the body.
 * A part is an attachment when its Content-Disposition says so or names a
 * file, or its Content-Type names one (name=).  Boundaries are taken from
 * multipart Content-Type headers, so only real part headers are examined.
 * Memory is bounded whatever the input: lines are cut at 1000 bytes for
 * matching, folded headers at 4 KiB, at most 16 nested boundaries and 20
 * remembered file names.
 */

#include <stdbool.h>
#include <stddef.h>

#define MIME_SCAN_MAX_NAMES      20
#define MIME_SCAN_MAX_NAME_LEN   255
#define MIME_SCAN_MAX_BOUNDARIES 16

struct mime_scan {
	unsigned int attachments; /* parts judged attachments */
	char *names[MIME_SCAN_MAX_NAMES];
	unsigned int name_count;

	/* private */
	char *boundaries[MIME_SCAN_MAX_BOUNDARIES];
	unsigned int boundary_count;
	bool in_headers; /* inside a part's header block */
	char line[1001]; /* current body line (cut) */
	size_t line_len;
	bool line_cr;      /* the last byte seen was CR */
	char header[4096]; /* current (unfolded) part header */
	size_t header_len;
	bool part_attachment; /* verdict so far for the current part */
	char *part_name;
};

void mime_scan_init(struct mime_scan *scan);
void mime_scan_deinit(struct mime_scan *scan);
/* A top-level header (the milter's header callback). */
void mime_scan_top_header(
    struct mime_scan *scan, const char *name, const char *value);
/* A chunk of the body, any size, any split. */
void mime_scan_body(struct mime_scan *scan, const char *data, size_t len);
/* End of the body. */
void mime_scan_finish(struct mime_scan *scan);

#endif
