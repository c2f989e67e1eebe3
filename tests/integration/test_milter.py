# SPDX-License-Identifier: MIT
"""mailaudit-milter in a real Postfix, delivering to a real Dovecot.

Real mailauditd, real Dovecot (with the plugin), real Postfix with the
built milter in smtpd_milters and non_smtpd_milters; mail goes in with
smtplib (MX port, submission port with SASL) and Postfix's sendmail, and
comes out over IMAP and from the audit store (mailauditctl search).

  MilterSend     Send / SendAs / SendOnBehalf records, refusals by Postfix
                 (envelope forgery) and by the milter (From: forgery).
  MilterCopy     copy-mode journaling: every direction, once per message,
                 no bounce and no trace visible to the recipients, the
                 journal address closed to the outside, forged journal
                 markers stripped.
  MilterReport   report-mode journaling: the envelope report with To/Cc/Bcc
                 and the original attached, and a journal mailbox that is
                 unreachable for a while (report kept, delivered later).

Needs root, Postfix, libmilter and a built tree.
"""

import email
import email.policy
import os
import smtplib
import subprocess
import time
import unittest

from daemon_fixture import MailauditDaemon
from dovecot_fixture import DovecotFixture, free_port
from milter_fixture import MilterFixture
from postfix_fixture import PostfixFixture, imap_messages, message, message_id

D = "@example.test"


class MilterBase(unittest.TestCase):
    """daemon + Dovecot + milter + Postfix, shared by a class's tests."""

    RULES = ()
    MILTER_OPTIONS = {}
    LOGIN_TABLE = "file"
    JOURNAL_TRANSPORT = False

    @classmethod
    def setUpClass(cls):
        cls.d = cls.dovecot = cls.milter = cls.postfix = None
        try:
            cls.d = MailauditDaemon()
            cls.d.start()
            for user in ("alice", "bob", "carol"):
                cls.d.ctl("mailbox", "add", user)
            # Send is not in the seed's owner set; audit it here.
            cls.d.ctl("set-mailbox", "alice", "--audit-owner-add", "Send")
            cls.dovecot = DovecotFixture(
                socket_path=cls.d.socket, spool_dir=cls.d.spool,
                policy_path=cls.d.snapshot, postfix=True, journal=True,
                acl_groups={"alice": "journal-readers"})
            cls.dovecot.start()
            opts = {"journal_lmtp": "unix:" + cls.dovecot.lmtp_socket}
            opts.update(cls.milter_options())
            cls.milter = MilterFixture(cls.d, options=opts, rules=cls.RULES)
            extra = {}
            if cls.JOURNAL_TRANSPORT:
                # Journal copies go through a socket path a test can take
                # away: a symlink to Dovecot's LMTP socket.
                cls.journal_link = os.path.join(cls.milter.dir, "j-lmtp")
                os.symlink(cls.dovecot.lmtp_socket, cls.journal_link)
                table = os.path.join(cls.milter.dir, "transport")
                with open(table, "w") as f:
                    f.write("journal%s lmtp:unix:%s\n" % (D, cls.journal_link))
                extra = {"transport_maps": "texthash:" + table}
            # carol lets alice send as her (a permitted delegate)
            cls.postfix = PostfixFixture(
                cls.dovecot, milter=cls.milter.postfix_spec,
                sender_login={"carol" + D: ["carol", "alice"]},
                extra_main_cf=extra)
            login_map = os.path.join(cls.postfix.etc, "sender_login")
            cls.milter.options_file_add("sender_login_maps", login_map)
            # Expanded: lines come from Postfix's own alias table.
            cls.milter.options_file_add(
                "journal_alias_maps",
                "texthash:" + os.path.join(cls.postfix.etc, "virtual_alias"))
            cls.milter.options_file_add("postfix_config_dir",
                                        cls.postfix.etc)
            cls.postfix.start()  # writes the map the milter reads
            if cls.LOGIN_TABLE == "hash":
                # Postfix's own indexed table, asked through postmap -q.
                subprocess.run(["postmap", "-c", cls.postfix.etc,
                                "hash:" + login_map], check=True)
                cls.milter.options_file_add("sender_login_maps",
                                            "hash:" + login_map)
            cls.milter.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def milter_options(cls):
        """mailaudit.conf keys for the milter (Dovecot is running)."""
        return dict(cls.MILTER_OPTIONS)

    @classmethod
    def tearDownClass(cls):
        for fx in (cls.postfix, cls.milter, cls.dovecot, cls.d):
            if fx is None:
                continue
            if hasattr(fx, "cleanup"):
                fx.cleanup()
            else:
                fx.stop()

    def deliver(self, sender, rcpts, data, **kw):
        qid = self.postfix.send(sender, rcpts, data, **kw)
        return qid, self.postfix.wait_delivered(qid)

    def records(self, n, *filters, timeout=10.0):
        return self.d.wait_records(n, *filters, timeout=timeout)

    def journal(self, data, timeout=10.0, n=1):
        """Messages in the journal mailbox that carry data's Message-ID
        anywhere (a copy in its header, a report in its attachment),
        waiting until n are there."""
        msgid = message_id(data).encode()
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.journal_all() if msgid in m]
            if len(found) >= n or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def journal_all(self):
        return imap_messages(self.dovecot, "journal", None)

    def journal_status_until(self, cond, timeout=10.0):
        """The milter's journal status once cond(status) holds, or as it
        is when timeout passes (the caller asserts on it)."""
        deadline = time.monotonic() + timeout
        status = self.milter.journal_status()
        while not cond(status) and time.monotonic() < deadline:
            time.sleep(0.1)
            status = self.milter.journal_status()
        return status

    def props(self, rec):
        return {p["Name"]: p["Value"]
                for p in rec.get("OperationProperties", [])}


class MilterSend(MilterBase):
    RULES = ()

    def test_owner_send(self):
        data = message("alice" + D, ["bob" + D], subject="owner send")
        qid, _ = self.deliver("alice" + D, ["bob" + D, "carol" + D], data,
                              port="submission", user="alice",
                              password="alicepw")
        [rec] = self.records(1, "--operations", "Send", "--free-text",
                             message_id(data))
        self.assertEqual(rec["Operation"], "Send")
        self.assertEqual(rec["LogonType"], 0)
        self.assertEqual(rec["UserId"], "alice")
        self.assertEqual(rec["MailboxOwnerUPN"], "alice")
        self.assertEqual(rec["ResultStatus"], "Succeeded")
        self.assertEqual(rec["ClientIPAddress"], "127.0.0.1")
        self.assertEqual(rec["SessionId"], qid)
        self.assertEqual(rec["recipientCount"], 2)
        self.assertEqual([r["Address"] for r in rec["recipientList"]],
                         ["bob@example.test", "carol@example.test"])
        self.assertEqual(rec["Item"]["InternetMessageId"], message_id(data))
        self.assertEqual(rec["Item"]["Subject"], "owner send")
        self.assertEqual(rec["Item"]["SizeInBytes"], len(data))
        props = self.props(rec)
        self.assertEqual(props["HasAttachments"], "false")
        self.assertEqual(props["EnvelopeSender"], "alice@example.test")
        self.assertIn("SMTP-Submission", rec["ClientInfoString"])

    def test_send_as_permitted_delegate(self):
        data = message("carol" + D, ["bob" + D], subject="as carol",
                       headers=[("Content-Type",
                                 'multipart/mixed; boundary="b"')],
                       body="--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
                            "--b\r\nContent-Type: application/pdf\r\n"
                            "Content-Disposition: attachment; "
                            "filename=\"quote.pdf\"\r\n\r\nJVBER\r\n"
                            "--b--\r\n")
        self.deliver("carol" + D, ["bob" + D], data, port="submission",
                     user="alice", password="alicepw")
        [rec] = self.records(1, "--operations", "SendAs", "--free-text",
                             message_id(data))
        self.assertEqual(rec["LogonType"], 2)
        self.assertEqual(rec["UserId"], "alice")
        self.assertEqual(rec["MailboxOwnerUPN"], "carol")
        self.assertEqual(rec["ResultStatus"], "Succeeded")
        self.assertEqual(rec["SendAsUserSmtp"], "carol@example.test")
        self.assertEqual(rec["Item"]["Attachments"], "quote.pdf")
        props = self.props(rec)
        self.assertEqual(props["HasAttachments"], "true")
        self.assertNotIn("Permitted", props)

    def test_send_on_behalf(self):
        data = message("carol" + D, ["bob" + D], subject="on behalf",
                       headers=[("Sender", "alice" + D)])
        self.deliver("alice" + D, ["bob" + D], data, port="submission",
                     user="alice", password="alicepw")
        [rec] = self.records(1, "--operations", "SendOnBehalf",
                             "--free-text", message_id(data))
        self.assertEqual(rec["LogonType"], 2)
        self.assertEqual(rec["MailboxOwnerUPN"], "carol")
        self.assertEqual(rec["SendOnBehalfOfUserSmtp"], "carol@example.test")

    def test_envelope_forgery_refused_by_postfix_is_audited(self):
        data = message("bob" + D, ["carol" + D], subject="forged envelope")
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            self.postfix.send("bob" + D, ["carol" + D], data,
                              port="submission", user="alice",
                              password="alicepw")
        recs = self.records(1, "--operations", "SendAs", "--mailboxes", "bob",
                            "--user-ids", "alice")
        failed = [r for r in recs if r["ResultStatus"] == "Failed"]
        self.assertEqual(len(failed), 1, recs)
        self.assertIn("Sender address rejected",
                      self.props(failed[0])["FailureReason"])

    def test_header_forgery_refused_by_milter_is_audited(self):
        data = message("bob" + D, ["carol" + D], subject="forged From")
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            self.postfix.send("alice" + D, ["carol" + D], data,
                              port="submission", user="alice",
                              password="alicepw")
        self.assertEqual(cm.exception.smtp_code, 550)
        self.assertIn(b"5.7.1", cm.exception.smtp_error)
        [rec] = self.records(1, "--operations", "SendAs", "--free-text",
                             message_id(data))
        self.assertEqual(rec["ResultStatus"], "Failed")
        self.assertEqual(rec["MailboxOwnerUPN"], "bob")
        self.assertEqual(self.props(rec)["Permitted"], "false")
        self.assertEqual(imap_messages(self.dovecot, "carol",
                                       message_id(data)), [])

    def test_unaudited_send_produces_nothing(self):
        # bob's owner set is the seed's: no Send.
        data = message("bob" + D, ["carol" + D], subject="bob plain")
        self.deliver("bob" + D, ["carol" + D], data, port="submission",
                     user="bob", password="bobpw")
        self.d.ctl("flush")
        time.sleep(0.5)
        self.d.ctl("flush")
        self.assertEqual(self.d.records("--free-text", message_id(data)), [])


    def test_policy_change_applies_within_seconds(self):
        first = message("carol" + D, ["bob" + D], subject="carol before")
        self.deliver("carol" + D, ["bob" + D], first, port="submission",
                     user="carol", password="carolpw")
        self.d.ctl("set-mailbox", "carol", "--audit-owner-add", "Send")
        time.sleep(1.2)  # the milter looks at the snapshot once a second
        second = message("carol" + D, ["bob" + D], subject="carol after")
        self.deliver("carol" + D, ["bob" + D], second, port="submission",
                     user="carol", password="carolpw")
        [rec] = self.records(1, "--operations", "Send", "--free-text",
                             message_id(second))
        self.assertEqual(rec["UserId"], "carol")
        self.assertEqual(self.d.records("--free-text", message_id(first)),
                         [])
        self.d.ctl("set-mailbox", "carol", "--audit-owner-remove", "Send")


class MilterSendPostfixTable(MilterSend):
    """The same, with sender_login_maps = hash:... (Postfix's table)."""
    LOGIN_TABLE = "hash"

    def test_zz_table_failure_defers(self):
        # Runs last: after a failure the milter stops asking for 10 s.
        db = os.path.join(self.postfix.etc, "sender_login.db")
        os.rename(db, db + ".away")
        try:
            data = message("newbox" + D, ["bob" + D], subject="no table")
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                self.postfix.send("alice" + D, ["bob" + D], data,
                                  port="submission", user="alice",
                                  password="alicepw")
            # Deferred (try again later), as smtpd does on a table error;
            # neither refused for good nor let through unchecked.
            self.assertEqual(cm.exception.smtp_code, 451)
            self.assertIn("lookup", self.milter.log_text())
        finally:
            os.rename(db + ".away", db)


class MilterCopy(MilterBase):
    RULES = ("all copy all journal" + D,)
    JOURNAL_TRANSPORT = True

    def test_copy_kept_while_journal_store_unreachable(self):
        os.unlink(self.journal_link)
        try:
            data = message("eve@outside.test", ["bob" + D],
                           subject="copy later")
            qid = self.postfix.send("eve@outside.test", ["bob" + D], data)
            # bob has his copy; the journal copy waits in Postfix's queue.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not imap_messages(
                    self.dovecot, "bob", message_id(data)):
                time.sleep(0.1)
            self.postfix.wait_deferred(qid)
            out = subprocess.run(
                [self.d.binary("mailauditctl"), "-c", self.milter.conf,
                 "journal", "status"], capture_output=True, text=True,
                timeout=30).stdout
            self.assertIn("journal copies in Postfix's queue: 1 "
                          "(deferred: 1)", out)
            self.assertIn("j-lmtp", out)
            self.assertEqual(self.journal(data, timeout=0), [])
        finally:
            os.symlink(self.dovecot.lmtp_socket, self.journal_link)
        # The store is back: a queue run delivers the copy, once.
        subprocess.run(["postqueue", "-c", self.postfix.etc, "-f"],
                       check=True)
        self.postfix.wait_delivered(qid, timeout=30)
        self.assertEqual(len(self.journal(data)), 1)

    def test_every_direction_journaled_once(self):
        cases = [
            ("inbound", "eve@outside.test", ["alice" + D, "bob" + D], "mx",
             None),
            ("internal", "alice" + D, ["bob" + D, "carol" + D],
             "submission", "alice"),
            ("outbound", "alice" + D, ["x@remote.test"], "submission",
             "alice"),
        ]
        for name, sender, rcpts, port, user in cases:
            with self.subTest(direction=name):
                data = message(sender, rcpts, subject="copy " + name)
                kw = {"port": port}
                if user:
                    kw.update(user=user, password=user + "pw")
                qid = self.postfix.send(sender, rcpts, data, **kw)
                if name == "outbound":
                    # The remote copy stays queued; the journal copy is local.
                    self.postfix.wait_deferred(qid)
                else:
                    self.postfix.wait_delivered(qid)
                copies = self.journal(data)
                self.assertEqual(len(copies), 1)
                self.assertIn(b"Subject: copy " + name.encode(), copies[0])
                time.sleep(0.3)
                self.assertEqual(len(self.journal(data, timeout=0)), 1)

    def test_bcc_and_recipients_see_no_trace(self):
        data = message("alice" + D, ["bob" + D], subject="bcc copy")
        self.deliver("alice" + D, ["bob" + D, "carol" + D], data,
                     port="submission", user="alice", password="alicepw")
        [bob_copy] = imap_messages(self.dovecot, "bob", message_id(data))
        self.assertNotIn(b"journal", bob_copy.lower())
        self.assertNotIn(b"carol", bob_copy.lower())
        self.assertEqual(len(self.journal(data)), 1)
        # Nothing came back to the sender.
        time.sleep(0.5)
        self.assertNotIn("bounce", self.postfix.maillog_text().lower())

    def test_journal_address_closed_to_outside(self):
        data = message("eve@outside.test", ["journal" + D], subject="fake")
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            self.postfix.send("eve@outside.test", ["journal" + D], data)

    def test_forged_journal_markers_are_stripped(self):
        data = message("eve@outside.test", ["alice" + D], subject="marker",
                       headers=[("X-MS-Journal-Report", ""),
                                ("X-Mailaudit-Journal-Report", "rule=x")])
        self.deliver("eve@outside.test", ["alice" + D], data)
        [copy] = imap_messages(self.dovecot, "alice", message_id(data))
        self.assertNotIn(b"journal-report", copy.lower())
        [jcopy] = self.journal(data)
        self.assertNotIn(b"journal-report", jcopy.lower())

    def test_journal_mailbox_readable_by_group_only(self):
        out = self.d.ctl("journal", "setup", "journal", "--group",
                         "journal-readers", "--dovecot-config",
                         self.dovecot.conf).stdout
        self.assertIn("group=journal-readers lookup read", out)
        # Deliveries still reach it after the ACL change.
        data = message("eve@outside.test", ["bob" + D], subject="secret")
        self.deliver("eve@outside.test", ["bob" + D], data)
        self.assertEqual(len(self.journal(data)), 1)
        box = '"shared/journal/INBOX"'
        # alice is in journal-readers: she reads, but cannot delete.
        a = self.dovecot.imap("alice")
        # Plain SELECT: Dovecot itself reports the mailbox read-only.
        typ, resp = a._simple_command("SELECT", box)
        self.assertEqual(typ, "OK")
        self.assertIn(b"READ-ONLY", resp[-1])
        a.state, a.is_readonly = "SELECTED", True
        typ, hits = a.uid("SEARCH", None, "HEADER", "Message-ID",
                          '"%s"' % message_id(data))
        [uid] = hits[0].split()
        typ, parts = a.uid("FETCH", uid, "(BODY[])")
        self.assertEqual(typ, "OK")
        self.assertIn(b"Subject: secret", parts[0][1])
        # Dovecot answers OK but applies no flag the ACL does not allow.
        a.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
        typ, flags = a.uid("FETCH", uid, "(FLAGS)")
        self.assertNotIn(b"\\Deleted", flags[0])
        a.expunge()
        a.logout()
        self.assertEqual(len(self.journal(data, timeout=0)), 1)
        # bob is not: the mailbox does not exist for him.
        b = self.dovecot.imap("bob")
        typ, _ = b.select(box)
        self.assertEqual(typ, "NO")
        b.logout()
        # alice's reading is on record, as a delegate of the journal.
        recs = self.records(1, "--mailboxes", "journal", "--user-ids",
                            "alice", "--operations", "MessageBind")
        self.assertGreaterEqual(len(recs), 1)
        self.assertEqual(recs[0]["LogonType"], 2)

    def test_local_submission_to_journal_bounces(self):
        # A local sendmail to a journal address cannot be refused per
        # recipient (Postfix would keep retrying it); the message is
        # refused as a whole and bounces, the journal gets nothing.
        data = message("alice" + D, ["journal" + D],
                       subject="planted journal item")
        qid = self.postfix.sendmail("alice" + D, ["journal" + D, "bob" + D],
                                    data)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            st = {r: status for r, status, _ in self.postfix.statuses(qid)}
            if len(st) == 2:
                break
            time.sleep(0.1)
        self.assertEqual(st, {"journal" + D: "bounced", "bob" + D: "bounced"})
        self.assertNotIn(qid, [q["queue_id"] for q in self.postfix.queue()])
        self.assertEqual(self.journal(data, timeout=0), [])
        self.assertEqual(imap_messages(self.dovecot, "bob", message_id(data)),
                         [])

    def test_local_submission_journaled(self):
        data = message("alice" + D, ["bob" + D], subject="local sendmail")
        qid = self.postfix.sendmail("alice" + D, ["bob" + D], data)
        self.postfix.wait_delivered(qid)
        self.assertEqual(len(self.journal(data)), 1)


class MilterReport(MilterBase):
    RULES = ("rep report all journal" + D,)

    @classmethod
    def setUpClass(cls):
        # The journal goes through a path that a test can make disappear.
        cls.lmtp_link = None
        super().setUpClass()

    def report_parts(self, report):
        msg = email.message_from_bytes(report, policy=email.policy.default)
        self.assertEqual(msg.get_content_type(), "multipart/mixed")
        self.assertIn("X-MS-Journal-Report", msg)
        parts = list(msg.iter_parts())
        self.assertEqual(len(parts), 2)
        envelope = parts[0].get_content()
        self.assertEqual(parts[1].get_content_type(), "message/rfc822")
        return msg, envelope, parts[1]

    def test_internal_report_splits_to_cc_bcc(self):
        data = message("alice" + D, ["bob" + D], cc=["carol" + D],
                       subject="report internal")
        self.deliver("alice" + D, ["bob" + D, "carol" + D, "alice" + D],
                     data, port="submission", user="alice",
                     password="alicepw")
        [report] = self.journal(data)
        msg, env, original = self.report_parts(report)
        lines = env.splitlines()
        self.assertIn("Sender: alice@example.test", lines)
        self.assertIn("Subject: report internal", lines)
        self.assertIn("Message-ID: " + message_id(data), lines)
        self.assertIn("To: bob@example.test", lines)
        self.assertIn("Cc: carol@example.test", lines)
        self.assertIn("Bcc: alice@example.test", lines)
        self.assertIn("Direction: internal", lines)
        self.assertIn("Authenticated-User: alice", lines)
        inner = original.get_payload()[0]
        self.assertEqual(inner["Message-ID"], message_id(data))
        self.assertIn("report internal", inner["Subject"])
        # Bob's copy shows no Bcc and no journal trace.
        [bob_copy] = imap_messages(self.dovecot, "bob", message_id(data))
        self.assertNotIn(b"journal", bob_copy.lower())

    def test_alias_expansion_in_report(self):
        data = message("alice" + D, ["team" + D], subject="to the team")
        self.deliver("alice" + D, ["team" + D], data, port="submission",
                     user="alice", password="alicepw")
        [report] = self.journal(data)
        _, env, _ = self.report_parts(report)
        lines = env.splitlines()
        self.assertIn("To: alice@example.test, Expanded: team@example.test",
                      lines)
        self.assertIn("To: bob@example.test, Expanded: team@example.test",
                      lines)
        self.assertNotIn("To: team@example.test", lines)

    def test_zz_alias_table_failure_is_said(self):
        # Runs last in its class (the milter then stops asking for 10 s).
        self.milter.stop()  # a fresh milter: nothing cached
        self.milter.start()
        table = os.path.join(self.postfix.etc, "virtual_alias")
        with open(table) as f:
            saved = f.read()
        os.unlink(table)
        try:
            data = message("eve@outside.test", ["bob" + D],
                           subject="aliases unknown")
            self.deliver("eve@outside.test", ["bob" + D], data)
        finally:
            with open(table, "w") as f:
                f.write(saved)
        [report] = self.journal(data)
        _, env, _ = self.report_parts(report)
        self.assertIn("Recipient: bob@example.test", env.splitlines())
        self.assertIn("Expansion: incomplete (alias lookups failed or took "
                      "too long)", env.splitlines())

    def test_inbound_report_uses_recipient_lines(self):
        data = message("eve@outside.test", ["alice" + D],
                       subject="report inbound")
        self.deliver("eve@outside.test", ["alice" + D, "bob" + D], data)
        [report] = self.journal(data)
        _, env, _ = self.report_parts(report)
        lines = env.splitlines()
        self.assertIn("Recipient: alice@example.test", lines)
        self.assertIn("Recipient: bob@example.test", lines)
        self.assertIn("Direction: inbound", lines)

    def journal_with(self, token, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.journal_all() if token in m]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def test_malformed_mail_journaled_intact(self):
        cases = {
            "no-msgid": b"From: eve@outside.test\r\nSubject: tok-no-msgid"
                        b"\r\n\r\nbody\r\n",
            "broken-mime": b"From: eve@outside.test\r\nSubject: "
                           b"tok-broken-mime\r\nMIME-Version: 1.0\r\n"
                           b"Content-Type: multipart/mixed; boundary=\"b\""
                           b"\r\n\r\n--b\r\nContent-Type: text/plain;;;"
                           b" name=\"\r\nContent-Disposition: attach"
                           b"ment; filename*0*=bad%%%\r\n\r\nno end\r\n",
            "8bit": "From: \u00c9ve <eve@outside.test>\r\nSubject: "
                    "tok-8bit gr\u00fc\u00dfe \udcff\r\n\r\nk\u00f6rper\r\n"
                    .encode("utf-8", "surrogateescape"),
            "long-header": b"From: eve@outside.test\r\nSubject: tok-long-"
                           b"header\r\nX-Long: " + b"x" * 5000 +
                           b"\r\n\r\nbody\r\n",
            "nul": b"From: eve@outside.test\r\nSubject: tok-nul\r\n\r\n"
                   b"before\x00after\r\n",
        }
        for name, data in cases.items():
            with self.subTest(case=name):
                self.deliver("eve@outside.test", ["alice" + D], data)
                token = b"tok-" + name.encode()
                [report] = self.journal_with(token)
                _, env, original = self.report_parts(report)
                inner = original.get_payload()[0].as_bytes()
                # The body the recipient got is the body in the report.
                conn = self.dovecot.imap("alice")
                try:
                    conn.select("INBOX", readonly=True)
                    typ, hits = conn.uid("SEARCH", None, "SUBJECT",
                                         token.decode())
                    uid = hits[0].split()[-1]
                    typ, parts = conn.uid("FETCH", uid, "(BODY.PEEK[TEXT])")
                    body = parts[0][1]
                finally:
                    conn.logout()
                raw = report.split(b"Content-Type: message/rfc822", 1)[1]
                self.assertIn(body, raw)
                self.assertIn(token, raw)
        self.assertIsNone(self.milter.proc.poll())

    def test_large_message_journaled(self):
        # Past 1 MiB an item goes to a file of its own, not the log.
        line = "0123456789abcdef" * 4 + "\r\n"
        data = message("eve@outside.test", ["alice" + D],
                       subject="large one", body=line * 24000)
        self.assertGreater(len(data), 1500000)
        self.deliver("eve@outside.test", ["alice" + D], data)
        [item] = self.journal(data, timeout=20)
        self.assertIn((line * 100).encode(), item)
        self.assertGreater(len(item), len(data))
        self.assertEqual(self.milter.journal_queued(), [])

    def test_unfinished_items_removed_at_start(self):
        # A crash mid-message leaves a file in tmp/: its message was never
        # accepted (Postfix hears OK only once the item is in new/), so
        # it is removed, not delivered half-written.
        self.milter.stop()
        left = os.path.join(self.milter.journal_spool, "tmp",
                            "00000000-0000-7000-8000-000000000000")
        with open(left, "w") as f:
            f.write("rcpt journal@example.test\r\nFrom: half")
        self.milter.start()
        self.assertFalse(os.path.exists(left))
        self.assertIn("removed 1 unfinished journal item",
                      self.milter.log_text())

    def test_thousand_recipients(self):
        rcpts = ["r%04d@remote.test" % i for i in range(1000)]
        data = message("alice" + D, ["list@remote.test"],
                       subject="to a thousand")
        qid = self.postfix.send("alice" + D, rcpts, data,
                                port="submission", user="alice",
                                password="alicepw")
        [report] = self.journal(data, timeout=20)
        _, env, _ = self.report_parts(report)
        lines = [l for l in env.splitlines() if l.startswith("Bcc: r")]
        self.assertEqual(len(lines), 1000)
        self.assertIn("Direction: outbound", env.splitlines())
        [rec] = self.records(1, "--operations", "Send", "--free-text",
                             message_id(data))
        self.assertEqual(rec["recipientCount"], 1000)
        self.assertEqual(len(rec["recipientList"]), 1000)
        self.assertEqual(rec["recipientList"][999]["Address"],
                         "r0999@remote.test")
        self.assertIsNone(self.milter.proc.poll())

    def test_report_kept_while_journal_store_unreachable(self):
        # Point the milter at an LMTP socket that is not there yet.
        self.milter.stop()
        # SIGTERM is a clean stop (records in flight flushed or spooled),
        # not the signal's default action.
        self.assertEqual(self.milter.returncode, 0, self.milter.log_text())
        self.assertIn("stopping", self.milter.log_text())
        link = os.path.join(self.milter.dir, "lmtp-later")
        self.milter.options_file_add("journal_lmtp", "unix:" + link)
        self.milter.start()
        data = message("eve@outside.test", ["alice" + D],
                       subject="report later")
        self.deliver("eve@outside.test", ["alice" + D], data)
        status = self.journal_status_until(
            lambda st: st.get("state") == "retrying")
        self.assertEqual(status.get("state"), "retrying", status)
        self.assertEqual(status.get("queued"), "1")
        self.assertIn("lmtp-later", status.get("last_error", "") +
                      self.milter.log_text())
        self.assertEqual(len(self.milter.journal_queued()), 1)
        self.assertEqual(self.journal(data, timeout=0), [])
        # What an administrator sees.
        out = subprocess.run(
            [self.d.binary("mailauditctl"), "-c", self.milter.conf,
             "journal", "status"], capture_output=True, text=True,
            timeout=30).stdout
        self.assertIn("queued: 1", out)
        self.assertIn("state = retrying", out)
        # The store comes back: the report is delivered, once.
        os.symlink(self.dovecot.lmtp_socket, link)
        self.assertEqual(len(self.journal(data, timeout=15)), 1)
        self.assertEqual(self.milter.journal_queued(), [])


class ImapStore:
    """Mixin: the journal stored by the milter itself in IMAP APPEND
    batches (journal_store = imap), as Dovecot's master user admin."""

    SUBJECT_WORD = "journal"

    @classmethod
    def milter_options(cls):
        secret = os.path.join(cls.dovecot.dir, "journal-imap.pass")
        with open(secret, "w") as f:
            f.write("adminpw\n")
        os.chmod(secret, 0o600)
        return {"journal_store": "imap",
                "journal_imap": "inet:127.0.0.1:%d" % cls.dovecot.imap_port,
                "journal_imap_master_user": "admin",
                "journal_imap_password_file": secret,
                "journal_batch": "16"}

    def test_burst_stored_in_batches(self):
        # 40 messages at once: every one journaled, once.
        before = len(self.journal_all())
        datas = [message("eve@outside.test", ["bob" + D],
                         subject="burst %d" % i) for i in range(40)]
        qids = [self.postfix.send("eve@outside.test", ["bob" + D], d)
                for d in datas]
        for q in qids:
            self.postfix.wait_delivered(q)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and \
                len(self.journal_all()) < before + 40:
            time.sleep(0.2)
        found = self.journal_all()
        self.assertEqual(len(found), before + 40)
        for d in datas:
            self.assertEqual(len([m for m in found
                                  if message_id(d).encode() in m]), 1)
        self.assertEqual(self.milter.journal_queued(), [])

    def test_restricted_journal_takes_imap_reports(self):
        out = self.d.ctl("journal", "setup", "journal", "--group",
                         "journal-readers", "--dovecot-config",
                         self.dovecot.conf).stdout
        self.assertIn("owner lookup read post insert", out)
        data = message("eve@outside.test", ["bob" + D], subject="acl imap")
        self.deliver("eve@outside.test", ["bob" + D], data)
        self.assertEqual(len(self.journal(data)), 1)
        # The writer can append but neither flag nor delete: only
        # retention removes journal items.
        conn = self.dovecot.imap("journal*admin", "adminpw")
        try:
            typ, _ = conn.select("INBOX")
            self.assertEqual(typ, "OK")
            typ, hits = conn.uid("SEARCH", None, "TEXT",
                                 '"%s"' % message_id(data))
            [uid] = hits[0].split()
            conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
            typ, flags = conn.uid("FETCH", uid, "(FLAGS)")
            self.assertNotIn(b"\\Deleted", flags[0])
            conn.expunge()
        finally:
            conn.logout()
        self.assertEqual(len(self.journal(data, timeout=0)), 1)

    def test_journal_kept_while_imap_store_unreachable(self):
        # Nothing listens on the IMAP port the milter is given first.
        self.milter.stop()
        self.milter.options_file_add(
            "journal_imap", "inet:127.0.0.1:%d" % free_port())
        self.milter.start()
        data = message("eve@outside.test", ["alice" + D],
                       subject="imap later")
        self.deliver("eve@outside.test", ["alice" + D], data)
        status = self.journal_status_until(
            lambda st: st.get("state") == "retrying")
        self.assertEqual(status.get("state"), "retrying", status)
        self.assertIn("Connection refused", status.get("last_error", ""))
        self.assertEqual(len(self.milter.journal_queued()), 1)
        self.assertEqual(self.journal(data, timeout=0), [])
        # The right address again: the kept item goes in, once.
        self.milter.stop()
        self.milter.options_file_add(
            "journal_imap", "inet:127.0.0.1:%d" % self.dovecot.imap_port)
        self.milter.start()
        self.assertEqual(len(self.journal(data, timeout=15)), 1)
        self.assertEqual(self.milter.journal_queued(), [])

    def test_wrong_password_is_said_and_kept(self):
        secret = os.path.join(self.dovecot.dir, "journal-imap.bad")
        with open(secret, "w") as f:
            f.write("not-the-password\n")
        self.milter.stop()
        self.milter.options_file_add("journal_imap_password_file", secret)
        self.milter.start()
        try:
            data = message("eve@outside.test", ["alice" + D],
                           subject="imap bad login")
            self.deliver("eve@outside.test", ["alice" + D], data)
            self.journal_status_until(
                lambda st: "login as admin" in st.get("last_error", ""))
            self.assertIn("login as admin for journal",
                          self.milter.journal_status().get("last_error"))
            self.assertEqual(len(self.milter.journal_queued()), 1)
        finally:
            self.milter.stop()
            self.milter.options_file_add(
                "journal_imap_password_file",
                os.path.join(self.dovecot.dir, "journal-imap.pass"))
            self.milter.start()
        self.assertEqual(len(self.journal(data, timeout=15)), 1)


class MilterReportImap(ImapStore, MilterReport):
    """The report tests again, with reports stored by the milter over IMAP."""

    # replaced by the IMAP variant above (journal_lmtp is not used)
    test_report_kept_while_journal_store_unreachable = None


class MilterCopyImap(ImapStore, MilterCopy):
    """The copy tests again: copies spooled by the milter and stored over
    IMAP instead of one more recipient for Postfix."""

    test_copy_kept_while_journal_store_unreachable = None

    def test_copy_is_the_delivered_message(self):
        data = message("eve@outside.test", ["bob" + D], subject="same bytes",
                       headers=[("X-Folded", "one\r\n two")])
        self.deliver("eve@outside.test", ["bob" + D], data)
        [copy] = self.journal(data)
        [bob] = imap_messages(self.dovecot, "bob", message_id(data))
        c_head, c_body = copy.split(b"\r\n\r\n", 1)
        b_head, b_body = bob.split(b"\r\n\r\n", 1)
        self.assertEqual(c_body, b_body)
        # The journal copy starts with the milter's trace line (Postfix
        # adds its own only after the milter saw the headers); every
        # other header line of it is in bob's copy, which has Dovecot's
        # and Postfix's trace lines on top.
        trace, rest = c_head.split(b"\r\n", 1)[0], c_head
        self.assertTrue(trace.startswith(b"Received: from "), c_head)
        self.assertIn(b"[127.0.0.1]", trace)
        first = rest.split(b"\r\n")
        while first[0].startswith((b"Received:", b"\t")):
            first.pop(0)
        b_lines = b_head.split(b"\r\n")
        for line in first:
            self.assertIn(line, b_lines)
        self.assertIn(b"X-Folded: one\r\n two", c_head)
        self.assertEqual(b_lines[b_lines.index(first[0]):], first)


if __name__ == "__main__":
    unittest.main()
