/* SPDX-License-Identifier: MIT */
/* records.c - the records the renderers' unit tests start from. */

#include <string.h>

#include "records.h"

void
rec_plain(struct ma_record *rec, const char *op, enum ma_logon logon,
    const char *user)
{
	static const uint8_t id[16] = {0x01, 0x95, 0xb3, 0xc2, 0x7a, 0x10, 0x7d,
	    0x4e, 0x9a, 0x43, 0x2f, 0x0f, 0x0d, 0x7b, 0x9d, 0x11};

	ma_record_init(rec);
	memcpy(rec->id, id, sizeof(id));
	rec->time_ms = T0;
	rec->seq = 42;
	rec->logon_type = logon;
	rec->result = MA_RESULT_SUCCEEDED;
	ma_record_set(rec, &rec->operation, op);
	ma_record_set(rec, &rec->user, user);
	ma_record_set(rec, &rec->mailbox, "alice@contoso.com");
	ma_record_set(rec, &rec->folder, "INBOX");
	ma_record_set(rec, &rec->session, "sess-1");
	ma_record_set(rec, &rec->client_ip, "203.0.113.24");
	ma_record_set(
	    rec, &rec->client_info, "Client=POP3/IMAP4;Protocol=IMAP4");
	ma_record_set(rec, &rec->protocol, "imap");
	ma_record_set(rec, &rec->server, "mx1.contoso.com");
}
