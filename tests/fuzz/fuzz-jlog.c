/* SPDX-License-Identifier: MIT */
/*
 * fuzz-jlog.c - libFuzzer target for the journal log's reader: the input
 * becomes a segment file (as a crash, a full disk or a stranger could
 * leave one), optionally behind a cursor file, and the log is opened,
 * scanned and read to the end.  Never a crash or a read out of bounds;
 * every item handed out lies inside the file; the status scan and the
 * reader agree on how many whole items there are.
 */

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ma-jlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void
write_file(const char *name, const void *data, size_t size)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	if (fd < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
}

static void
clear_dir(void)
{
	static const char *const names[] = {
	    "cursor", ".cursor.tmp", "0000000000000001.log"};
	char path[128];

	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		(void)unlink(path);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ma_error err = {0};
	struct ma_jlog *log;
	struct ma_jlog_item items[16];
	uint64_t pending, taken = 0;
	int64_t oldest;
	size_t n;

	if (dir[0] == '\0') {
		snprintf(dir, sizeof(dir), "/tmp/fuzz-jlog-XXXXXX");
		if (mkdtemp(dir) == NULL)
			abort();
	}
	clear_dir();
	/* A first byte 'C' puts a cursor line before the segment. */
	if (size > 0 && data[0] == 'C') {
		const uint8_t *nl = memchr(data, '\n', size);

		if (nl != NULL) {
			write_file("cursor", data + 1, (size_t)(nl - data));
			size -= (size_t)(nl + 1 - data);
			data = nl + 1;
		}
	}
	write_file("0000000000000001.log", data, size);
	if (ma_jlog_scan(dir, &pending, &oldest, &err) < 0)
		abort();
	log = ma_jlog_open(dir, &err);
	if (log == NULL)
		abort();
	if (ma_jlog_pending(log) != pending)
		abort();
	while ((n = ma_jlog_peek(log, items, 16, UINT64_MAX)) > 0) {
		for (size_t i = 0; i < n; i++) {
			struct stat st;

			if (fstat(items[i].fd, &st) < 0 ||
			    items[i].off + items[i].len >
				(uint64_t)st.st_size ||
			    strlen(items[i].rcpt) == 0)
				abort();
		}
		ma_jlog_consume(log, &items[n - 1], n);
		taken += n;
		if (taken > pending)
			abort();
	}
	if (taken != pending || ma_jlog_pending(log) != 0)
		abort();
	ma_jlog_close(&log);
	return 0;
}
