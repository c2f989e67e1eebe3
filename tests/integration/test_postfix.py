# SPDX-License-Identifier: MIT
"""The Postfix test fixture against a real Postfix and a real Dovecot.

A throwaway Postfix (postfix_fixture.py) on loopback delivers over LMTP
into the Dovecot fixture (with the mailaudit plugin) and authenticates
submission clients against it.  Each test sends with smtplib or Postfix's
sendmail, waits for the maillog's status=sent, and reads the mailboxes
back over IMAP.  No milter here: these tests pin down the mail flow the
milter tests build on (ports, addresses, logins, aliases, Bcc, refusals,
outbound mail that never leaves).

Needs root, Postfix and a built plugin.
"""

import imaplib
import os
import smtplib
import socket
import time
import unittest

from dovecot_fixture import DovecotFixture, free_port
from postfix_fixture import (DeliveryError, PostfixFixture, imap_messages,
                             message, message_id)

D = "@example.test"


class PostfixFlow(unittest.TestCase):
    """One Dovecot + one Postfix for all the mail-flow tests."""

    @classmethod
    def setUpClass(cls):
        cls.dovecot = DovecotFixture(postfix=True, journal=True,
                                     acl_groups={"alice": "journal-readers"})
        try:
            cls.dovecot.start()
            # carol lets alice send as her (the SendAs delegate of issue 3)
            cls.postfix = PostfixFixture(
                cls.dovecot, sender_login={"carol" + D: ["carol", "alice"]})
            cls.postfix.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "postfix", None) is not None:
            cls.postfix.cleanup()
        cls.dovecot.cleanup()

    def deliver(self, sender, rcpts, data, **kw):
        qid = self.postfix.send(sender, rcpts, data, **kw)
        return qid, self.postfix.wait_delivered(qid)

    def copies(self, user, data):
        return imap_messages(self.dovecot, user, message_id(data))

    def smtpd_line(self, qid):
        """smtpd's "QID: client=..." line (with sasl_username= if any)."""
        lines = [l for l in self.postfix.maillog_text().splitlines()
                 if "smtpd[" in l and " %s: client=" % qid in l]
        self.assertEqual(len(lines), 1, self.postfix.maillog_text())
        return lines[0]

    # -- inbound -----------------------------------------------------------
    def test_inbound_from_external_sender_reaches_alice(self):
        data = message("eve@outside.test", ["alice" + D], subject="inbound")
        qid, sent = self.deliver("eve@outside.test", ["alice" + D], data)
        self.assertEqual(list(sent), ["alice" + D])
        [copy] = self.copies("alice", data)
        self.assertIn(b"Subject: inbound", copy)
        # unauthenticated ESMTP on the MX port, by LMTP into user alice
        self.assertIn(b"with ESMTP id " + qid.encode(), copy)
        self.assertIn(b"with LMTP", copy)
        self.assertNotIn("sasl_username", self.smtpd_line(qid))
        self.assertIn("postfix/mx/smtpd", self.smtpd_line(qid))
        self.assertEqual(self.copies("bob", data), [])

    def test_mx_does_not_relay_for_loopback(self):
        # mynetworks is empty: 127.0.0.1 is an outside client like any other
        data = message("eve@outside.test", ["x@elsewhere.test"])
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            self.postfix.send("eve@outside.test", ["x@elsewhere.test"], data)
        code, text = cm.exception.recipients["x@elsewhere.test"]
        self.assertEqual(code, 554)
        self.assertIn(b"Relay access denied", text)

    def test_unknown_local_recipient_refused(self):
        data = message("eve@outside.test", ["nobody" + D])
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            self.postfix.send("eve@outside.test", ["nobody" + D], data)
        code, text = cm.exception.recipients["nobody" + D]
        self.assertEqual(code, 550)
        self.assertIn(b"5.1.1", text)

    def test_alias_expands_to_alice_and_bob(self):
        data = message("eve@outside.test", ["team" + D], subject="to the team")
        qid, sent = self.deliver("eve@outside.test", ["team" + D], data)
        self.assertEqual(sorted(sent), ["alice" + D, "bob" + D])
        for detail in sent.values():
            self.assertIn("orig_to=<team%s>" % D, detail)
        self.assertEqual(len(self.copies("alice", data)), 1)
        self.assertEqual(len(self.copies("bob", data)), 1)
        self.assertEqual(self.copies("carol", data), [])

    # -- submission --------------------------------------------------------
    def test_submission_alice_to_bob(self):
        data = message("alice" + D, ["bob" + D], subject="submitted")
        qid, sent = self.deliver("alice" + D, ["bob" + D], data,
                                 port="submission", user="alice" + D)
        self.assertEqual(list(sent), ["bob" + D])
        [copy] = self.copies("bob", data)
        self.assertIn(b"with ESMTPA id " + qid.encode(), copy)
        line = self.smtpd_line(qid)
        self.assertIn("postfix/submission/smtpd", line)
        # Dovecot strips the domain for service smtp: {auth_authen} = alice
        self.assertIn("sasl_method=PLAIN, sasl_username=alice", line)
        self.assertTrue(line.endswith("sasl_username=alice"), line)

    def test_submission_login_without_domain(self):
        data = message("alice" + D, ["bob" + D], subject="plain login")
        qid, _ = self.deliver("alice" + D, ["bob" + D], data,
                              port="submission", user="alice")
        self.assertTrue(self.smtpd_line(qid).endswith("sasl_username=alice"))
        self.assertEqual(len(self.copies("bob", data)), 1)

    def test_submission_needs_auth_and_right_password(self):
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            self.postfix.smtp("submission", user="alice", password="wrong").close()
        data = message("alice" + D, ["bob" + D])
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            self.postfix.send("alice" + D, ["bob" + D], data, port="submission")
        self.assertEqual(cm.exception.recipients["bob" + D][0], 554)

    def test_bcc_delivered_but_invisible_to_to_and_cc(self):
        data = message("alice" + D, to=["bob" + D], cc=["journal" + D],
                       subject="with bcc")
        qid, sent = self.deliver("alice" + D, ["bob" + D, "journal" + D, "carol" + D],
                                 data, port="submission", user="alice")
        self.assertEqual(sorted(sent), ["bob" + D, "carol" + D, "journal" + D])
        [carol] = self.copies("carol", data)
        self.assertIn(b"Subject: with bcc", carol)
        for user in ("bob", "journal"):
            [copy] = self.copies(user, data)
            self.assertNotIn(b"carol", copy.lower(), copy)

    def test_sender_login_mismatch_refused(self):
        data = message("bob" + D, ["carol" + D])
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
            self.postfix.send("bob" + D, ["carol" + D], data,
                              port="submission", user="alice" + D)
        code, text = cm.exception.recipients["carol" + D]
        self.assertEqual(code, 553)
        self.assertIn(b"5.7.1", text)
        self.assertIn(b"not owned by user alice", text)

    def test_permitted_delegate_may_use_the_address(self):
        data = message("carol" + D, ["bob" + D], subject="as carol",
                       headers=[("Sender", "alice" + D)])
        qid, sent = self.deliver("carol" + D, ["bob" + D], data,
                                 port="submission", user="alice")
        self.assertEqual(list(sent), ["bob" + D])
        self.assertIn(b"Sender: alice" + D.encode(), self.copies("bob", data)[0])

    # -- outbound and local --------------------------------------------------
    def test_outbound_mail_stays_deferred(self):
        data = message("alice" + D, ["friend@elsewhere.test"], subject="out")
        qid = self.postfix.send("alice" + D, ["friend@elsewhere.test"], data,
                                port="submission", user="alice")
        entry = self.postfix.wait_deferred(qid)
        [rcpt] = entry["recipients"]
        self.assertEqual(rcpt["address"], "friend@elsewhere.test")
        self.assertIn("127.0.0.1", rcpt.get("delay_reason", ""))
        statuses = self.postfix.statuses(qid)
        self.assertTrue(statuses)
        self.assertEqual({s for _, s, _ in statuses}, {"deferred"})
        with self.assertRaises(DeliveryError):
            self.postfix.wait_delivered(qid, timeout=0.5)

    def test_local_sendmail_delivered(self):
        data = message("alice" + D, ["bob" + D], subject="via sendmail")
        qid = self.postfix.sendmail("alice" + D, ["bob" + D], data)
        sent = self.postfix.wait_delivered(qid)
        self.assertEqual(list(sent), ["bob" + D])
        [copy] = self.copies("bob", data)
        self.assertIn(b"(Postfix, from userid 0)", copy)
        self.assertIn(b"Return-Path: <alice" + D.encode() + b">", copy)

    # -- the Dovecot side ----------------------------------------------------
    def test_journal_user_and_acl_groups(self):
        alice = self.dovecot.doveadm("user", "alice").stdout
        self.assertIn("acl_groups\tjournal-readers", alice)
        self.assertNotIn("acl_groups", self.dovecot.doveadm("user", "bob").stdout)
        self.assertIn("home\t%s/home/journal" % self.dovecot.dir,
                      self.dovecot.doveadm("user", "journal").stdout)
        # IMAP logins keep plain names only, as before postfix=True
        conn = imaplib.IMAP4("127.0.0.1", self.dovecot.imap_port, timeout=10)
        try:
            with self.assertRaises(imaplib.IMAP4.error):
                conn.login("alice" + D, "alicepw")
        finally:
            conn.shutdown()


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class PostfixLifecycle(unittest.TestCase):
    """Start failures, an unreachable milter, and stop by pid."""

    @classmethod
    def setUpClass(cls):
        cls.dovecot = DovecotFixture(postfix=True)
        try:
            cls.dovecot.start()
        except BaseException:
            cls.dovecot.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.dovecot.cleanup()

    def test_milter_down_tempfails_and_stop_kills_everything(self):
        closed = free_port()
        pf = PostfixFixture(self.dovecot, milter="inet:127.0.0.1:%d" % closed)
        self.addCleanup(pf.cleanup)
        pf.start()
        data = message("eve@outside.test", ["alice" + D])
        with self.assertRaises(smtplib.SMTPResponseException) as cm:
            pf.send("eve@outside.test", ["alice" + D], data)
        self.assertEqual(cm.exception.smtp_code, 451)
        self.assertIn(b"4.7.1", cm.exception.smtp_error)
        pid, ports = pf.pid, (pf.mx_port, pf.submission_port)
        children = pf._children(pid)
        self.assertTrue(children)
        pf.stop()
        for p in [pid] + children:
            self.assertFalse(pf._alive(p), "pid %d still running" % p)
        self.assertFalse(any(port_open(p) for p in ports))
        pf.cleanup()
        if os.environ.get("MAILAUDIT_KEEP_FIXTURE") != "1":
            self.assertFalse(os.path.exists(pf.dir))

    def test_bad_config_raises_with_the_log(self):
        pf = PostfixFixture(self.dovecot,
                            extra_main_cf="inet_interfaces = 192.0.2.1")
        self.addCleanup(pf.cleanup)
        t0 = time.monotonic()
        with self.assertRaises(RuntimeError) as cm:
            pf.start(timeout=5)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertIn("192.0.2.1", str(cm.exception))
        self.assertIsNone(pf.pid)
        self.assertFalse(port_open(pf.mx_port))


if __name__ == "__main__":
    unittest.main()
