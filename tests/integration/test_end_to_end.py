# SPDX-License-Identifier: MIT
"""Real Dovecot + the plugin + the real mailauditd, checked with mailauditctl.

Each test drives Dovecot with real clients (imaplib, doveadm) and reads the
records back from the store the way an analyst would (mailauditctl search
--format json).  The last test stops the daemon in the middle of an IMAP
session, goes on working, restarts it and checks that every record arrived
exactly once.
"""

import os
import subprocess
import time
import unittest

from daemon_fixture import MailauditDaemon
from dovecot_fixture import DovecotFixture

MSG = ("From: carol@example.test\r\nTo: alice@example.test\r\n"
       "Subject: {subject}\r\nMessage-ID: <{mid}@example.test>\r\n\r\n"
       "body\r\n")


def message(subject, mid=None):
    return MSG.format(subject=subject, mid=mid or subject).encode()


class EndToEnd(unittest.TestCase):
    def setUp(self):
        self.d = MailauditDaemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.dov = DovecotFixture(socket_path=self.d.socket,
                                  spool_dir=self.d.spool,
                                  policy_path=self.d.snapshot,
                                  server="e2e.example.test")
        self.addCleanup(self.dov.cleanup)
        self.dov.start()

    def wait_records(self, n, *filters, timeout=10.0):
        return self.d.wait_records(n, *filters, timeout=timeout)

    def test_owner_delegate_admin_records(self):
        a = self.dov.imap("alice")
        a.append("INBOX", None, None, message("owner-1"))
        a.append("INBOX", None, None, message("owner-2"))
        a.select("INBOX")
        a.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
        a.uid("MOVE", "2", "Trash")
        a._simple_command("SETACL", "INBOX", "bob", "lrswite")
        a.logout()
        b = self.dov.imap("bob")
        b.select('"shared/alice/INBOX"')
        b.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
        b.expunge()
        b.logout()
        m = self.dov.imap("alice*admin", "adminpw")
        m.select("Trash")
        m.uid("STORE", "1", "+FLAGS", "(\\Seen)")
        m.logout()
        # doveadm runs under the mail uid; the administrator is named by
        # the kernel's audit login uid (set at login by pam_loginuid),
        # which survives sudo and privilege drops: 65534 here
        def login_as_nobody():
            with open("/proc/self/loginuid", "w") as f:
                f.write("65534")
        # Update is in the default Admin set (INBOX is empty by now)
        subprocess.run(["doveadm", "-c", self.dov.conf, "flags", "add",
                        "-u", "alice", "\\Answered", "mailbox", "Trash",
                        "all"], check=True, timeout=30,
                       preexec_fn=login_as_nobody)
        # the doveadm record comes last: once it is in, all are
        self.wait_records(1, "--mailboxes", "alice", "--user-ids", "doveadm")
        recs = self.d.records("--mailboxes", "alice")
        ops = [(r["Operation"], r["LogonType"]) for r in recs]
        for expected in [("MailboxLogin", 0), ("Create", 0), ("Update", 0),
                         ("MoveToDeletedItems", 0),
                         ("UpdateFolderPermissions", 0),
                         ("FolderBind", 2), ("SoftDelete", 2),
                         ("HardDelete", 2), ("FolderBind", 1),
                         ("Update", 1)]:
            self.assertIn(expected, ops)
        by = {(r["Operation"], r["LogonType"]): r for r in recs}
        mv = by[("MoveToDeletedItems", 0)]
        self.assertEqual(mv["RecordType"], 3)
        self.assertEqual(mv["Folder"]["Path"], "\\INBOX")
        self.assertEqual(mv["DestFolder"]["Path"], "\\Trash")
        self.assertEqual(mv["AffectedItems"][0]["InternetMessageId"],
                         "<owner-2@example.test>")
        self.assertEqual(mv["AffectedItems"][0]["Subject"], "owner-2")
        self.assertEqual(mv["ClientIP"], "127.0.0.1")
        self.assertIn("IMAP4", mv["ClientInfoString"])
        self.assertEqual(mv["OriginatingServer"], "e2e.example.test\r\n")
        self.assertTrue(mv["SessionId"])
        sd = by[("SoftDelete", 2)]
        self.assertEqual(sd["UserId"], "bob")
        self.assertEqual(sd["MailboxOwnerUPN"], "alice")
        self.assertEqual(sd["AffectedItems"][0]["Subject"], "owner-1")
        adm = [r for r in recs if r["Operation"] == "Update" and
               r["LogonType"] == 1 and r["UserId"] == "admin"][0]
        self.assertEqual(adm["UserType"], 2)
        # doveadm is an Admin action without a client IP
        dv = [r for r in recs if r.get("MailAuditProtocol") == "doveadm"]
        self.assertTrue(dv)
        for r in dv:
            self.assertEqual(r["LogonType"], 1)
            self.assertNotIn("ClientIP", r)
            props = {p["Name"]: p["Value"]
                     for p in r.get("OperationProperties", [])}
            self.assertEqual(props.get("LoginUser"), "nobody", r)
        # every session's records were acked before logout: none spooled
        self.assertNotIn("spool: drained", self.d.log_text())
        # bob's own login is his, not alice's
        self.assertEqual(len(self.d.records("--mailboxes", "bob",
                                            "--operations",
                                            "MailboxLogin")), 1)

    def test_policy_change_takes_effect_and_unaudited_costs_nothing(self):
        self.d.ctl("mailbox", "add", "carol")
        self.d.ctl("set-mailbox", "carol", "--audit-owner", "None")
        c = self.dov.imap("carol")
        c.append("INBOX", None, None, message("quiet"))
        c.select("INBOX")
        c.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
        c.expunge()
        c.logout()
        self.d.ctl("set-mailbox", "carol", "--default-audit-set", "Owner")
        time.sleep(1.1)  # the plugin re-reads the snapshot at most 1/s
        c = self.dov.imap("carol")
        c.append("INBOX", None, None, message("loud"))
        c.logout()
        recs = self.wait_records(2, "--mailboxes", "carol", "--user-ids",
                                 "carol")
        ops = sorted(r["Operation"] for r in recs)
        self.assertEqual(ops, ["Create", "MailboxLogin"])
        self.assertEqual(recs[-1]["AffectedItems"][0]["Subject"]
                         if "AffectedItems" in recs[-1]
                         else recs[-1]["Item"]["Subject"], "loud")

    def test_bulk_store_reads_at_most_64_message_files(self):
        # Mail dropped into the maildir by hand: Dovecot has never parsed
        # it, so its cache holds no headers and each lookup would open
        # the file.  Past 64 per transaction the plugin asks only the
        # cache, and names the rest by UID.
        root = os.path.join(self.dov.dir, "mail", "carol")
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
            os.chown(os.path.join(root, sub), 5000, 5000)
        for i in range(100):
            path = os.path.join(root, "new", "%d.M%dP1.test" % (1700000000 + i, i))
            with open(path, "wb") as f:
                f.write(message("bulk-%d" % i))
            os.chown(path, 5000, 5000)
        c = self.dov.imap("carol")
        c.select("INBOX")
        c.uid("STORE", "1:100", "+FLAGS", "(\\Flagged)")
        c.logout()
        recs = self.wait_records(1, "--operations", "Update")
        items = []
        for r in recs:
            items += r.get("AffectedItems") or ([r["Item"]] if "Item" in r
                                                else [])
        # every message is named by UID, whatever the header budget
        self.assertEqual(sorted(int(i["Id"].split("/")[-1]) for i in items),
                         list(range(1, 101)))
        self.assertEqual(len([i for i in items if "Subject" in i]), 64)
        self.assertEqual(len([i for i in items if "InternetMessageId" in i]),
                         64)

    def test_daemon_stopped_mid_session_every_record_exactly_once(self):
        a = self.dov.imap("alice")
        subjects = []

        def append(tag, n):
            for i in range(n):
                s = "%s-%d" % (tag, i)
                subjects.append(s)
                a.append("INBOX", None, None, message(s))

        append("before", 5)
        self.assertEqual(len(self.wait_records(5, "--operations",
                                               "Create")), 5)
        self.d.stop()
        append("down", 5)
        # a second session while the daemon is down
        other = self.dov.imap("alice")
        for i in range(3):
            s = "down-other-%d" % i
            subjects.append(s)
            other.append("INBOX", None, None, message(s))
        other.logout()
        self.d.start()
        time.sleep(1.2)  # the plugin retries the socket at most 1/s
        append("after", 5)
        a.logout()
        recs = self.wait_records(len(subjects), "--operations", "Create",
                                 timeout=15)
        got = []
        for r in recs:
            item = r.get("Item") or (r.get("AffectedItems") or [{}])[0]
            got.append(item.get("Subject"))
        self.assertEqual(sorted(got), sorted(subjects))
        self.assertEqual(len(set(r["Id"] for r in recs)), len(recs))
        # nothing left behind in the spool
        left = [f for f in os.listdir(self.d.spool)
                if f.endswith(".spool") or f.endswith(".bad")]
        self.assertEqual(left, [])


if __name__ == "__main__":
    unittest.main()
