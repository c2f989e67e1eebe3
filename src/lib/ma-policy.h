/* SPDX-License-Identifier: MIT */
#ifndef MA_POLICY_H
#define MA_POLICY_H

/*
 * Audit policy: which actions are recorded for which logon type on which
 * mailbox.  The model is Exchange's: per mailbox AuditEnabled, the sets
 * AuditOwner/AuditAdmin/AuditDelegate, a mailbox type, AuditLogAgeLimit
 * and DefaultAuditSet (a set that was never customised follows the preset,
 * so changing the preset changes it); organisation-wide AuditDisabled and
 * bypass associations.
 *
 * The daemon keeps the policy in its store and writes a snapshot file
 * that sensors read (docs/SCHEMA.md, "Policy snapshot").  A sensor asks
 * the snapshot one question: for this mailbox, acting user and logon type,
 * which actions are audited?  The answer is a bitmask; anything not in it
 * costs nothing more.
 */

#include <stdbool.h>
#include <stdint.h>
#include "ma-action.h"
#include "ma-util.h"

enum ma_mailbox_type {
	MA_MAILBOX_USER,
	MA_MAILBOX_SHARED,
	MA_MAILBOX_GROUP,
	MA_MAILBOX_TYPE_COUNT
};

/* Index into the three per-logon-type sets. */
enum ma_policy_set {
	MA_SET_OWNER,
	MA_SET_DELEGATE,
	MA_SET_ADMIN,
	MA_SET_COUNT
};

enum ma_preset {
	MA_PRESET_DEFAULT,  /* the seed's table (ASD Blueprint), exactly */
	MA_PRESET_EXCHANGE, /* Exchange Online's on-by-default sets */
	MA_PRESET_STRICT,   /* seed + MailItemsAccessed and folder actions */
	MA_PRESET_COUNT
};

#define MA_DEFAULT_AGE_LIMIT_DAYS 90

struct ma_mailbox_policy {
	enum ma_mailbox_type type;
	bool audit_enabled;
	uint32_t age_limit_days;
	ma_action_set sets[MA_SET_COUNT];
	/* DefaultAuditSet: true while the set follows the preset. */
	bool set_is_default[MA_SET_COUNT];
};

const char *ma_mailbox_type_name(enum ma_mailbox_type type);
int ma_mailbox_type_lookup(const char *name, enum ma_mailbox_type *type_r);
const char *ma_preset_name(enum ma_preset preset);
int ma_preset_lookup(const char *name, enum ma_preset *preset_r);
/* "Owner", "Delegate", "Admin" (Exchange's DefaultAuditSet words). */
const char *ma_policy_set_name(enum ma_policy_set set);
int ma_policy_set_lookup(const char *name, enum ma_policy_set *set_r);

/* The preset's set for a mailbox type and logon set. */
ma_action_set ma_preset_actions(
    enum ma_preset preset, enum ma_mailbox_type type, enum ma_policy_set set);

/* A new mailbox of this type: enabled, default sets, 90 days. */
void ma_mailbox_policy_default(struct ma_mailbox_policy *mp,
    enum ma_preset preset, enum ma_mailbox_type type);

/*
 * Which policy set governs a logon type: Owner, Delegate and Admin map to
 * their own; Transport and SystemService actions (autoexpunge, ...) follow
 * the Admin set.
 */
enum ma_policy_set ma_logon_policy_set(enum ma_logon logon);

/*
 * Snapshot file, written atomically by mailauditd, read by sensors.
 * Lines (values %-escaped as in ma-proto.h):
 *   mailaudit-policy 1
 *   audit_disabled yes|no
 *   subjects yes|no
 *   bypass <user>
 *   default <type> <owner-set> <delegate-set> <admin-set>
 *   mailbox <name> <type> <enabled yes|no> <owner-set> <delegate-set>
 * <admin-set> Sets are comma-separated action names, "None" when empty.
 */

/*
 * Writing a snapshot (the daemon does): append the lines to buf in this
 * order, then ma_policy_snapshot_commit writes buf to path atomically
 * (temporary file, fsync, rename) with mode 0644.
 */
int ma_policy_snapshot_header(
    struct ma_buf *buf, bool audit_disabled, bool subjects);
int ma_policy_snapshot_bypass(struct ma_buf *buf, const char *user);
int ma_policy_snapshot_default(
    struct ma_buf *buf, enum ma_preset preset, enum ma_mailbox_type type);
int ma_policy_snapshot_mailbox(
    struct ma_buf *buf, const char *name, const struct ma_mailbox_policy *mp);
int ma_policy_snapshot_commit(
    const char *path, const struct ma_buf *buf, struct ma_error *err);

/* What a sensor needs for one mailbox and one acting user. */
struct ma_policy_answer {
	bool audit_disabled; /* organisation-wide switch */
	bool bypassed;       /* the acting user has a bypass association */
	bool mailbox_enabled;
	bool subjects; /* record subjects (privacy setting) */
	bool known;    /* mailbox had its own line */
	ma_action_set sets[MA_SET_COUNT];
};

/* Effective audited actions for a logon type, after every switch. */
ma_action_set ma_policy_answer_actions(
    const struct ma_policy_answer *a, enum ma_logon logon);

/*
 * ma_policy_snapshot_lookup - scan the snapshot at path for mailbox and
 * actor.  Returns 1 found (answer filled), 0 if the file does not exist
 * (answer filled with the default preset's user sets, so a sensor started
 * before the daemon still audits per the seed), -1 on a malformed file
 * (err names the line; answer filled as for 0).
 */
int ma_policy_snapshot_lookup(const char *path, const char *mailbox,
    const char *actor, struct ma_policy_answer *answer_r, struct ma_error *err);

#endif
