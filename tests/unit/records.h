/* SPDX-License-Identifier: MIT */
#ifndef RECORDS_H
#define RECORDS_H

/* Records the unit tests of the renderers start from. */

#include "ma-record.h"

#define T0 1741082561123LL /* 2025-03-04T10:02:41.123Z */

/*
 * rec_plain - init rec as a plausible record of op by user, logged on as
 * logon, with every common field set: id
 * 0195b3c2-7a10-7d4e-9a43-2f0f0d7b9d11, time T0, seq 42, succeeded, on
 * alice@contoso.com's INBOX over IMAP.
 */
void rec_plain(struct ma_record *rec, const char *op, enum ma_logon logon,
    const char *user);

#endif
