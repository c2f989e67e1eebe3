# SPDX-License-Identifier: MIT
"""The plugin's failure path: records go to the spool, none are lost.

- no daemon listening: every record of a session lands in *.spool files;
- a daemon that takes frames but never acknowledges them: the frames
  are spooled at logout (so they are both received and spooled; the
  real daemon de-duplicates by record id);
- a daemon that acknowledges: nothing is spooled;
- both again with a backlog of many and large frames (the sender's
  queue buffer grows past its initial 16 KiB and past 64 KiB).
"""

import os
import re
import stat
import time
import unittest
import uuid

from dovecot_fixture import DovecotFixture, plugin_path
from test_plugin import (WireReceiver, find, message, new_msgid, parse_frame,
                         split_frames, write_policy)

SPOOL_NAME = r"^\d+-\d+-\d+-[0-9a-f]{16}\.spool$"


@unittest.skipUnless(os.geteuid() == 0, "needs root to run Dovecot")
@unittest.skipUnless(os.path.exists(plugin_path()), "plugin not built")
class SpoolTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dovecot = DovecotFixture()
        write_policy(cls.dovecot.policy_path)
        try:
            cls.dovecot.start()
        except Exception:
            cls.dovecot.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.dovecot.cleanup()

    def spooled(self):
        """All records in the spool, checking the files on the way."""
        recs = []
        for name in sorted(os.listdir(self.dovecot.spool_dir)):
            path = os.path.join(self.dovecot.spool_dir, name)
            self.assertFalse(name.startswith(".tmp-"), "temporary file left: " + name)
            self.assertRegex(name, SPOOL_NAME)
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)
            with open(path, "rb") as f:
                for frame in split_frames(f.read()):
                    recs.append(parse_frame(frame))
        return recs

    def wait_spooled(self, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            value = pred(self.spooled())
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.05)

    def session(self, folder, msgids):
        imap = self.dovecot.imap("alice")
        imap.create(folder)
        for m in msgids:
            self.assertEqual(imap.append(folder, None, None, message(m, "Spool " + m))[0], "OK")
        imap.select(folder)
        imap.fetch("1:*", "(BODY.PEEK[])")
        imap.logout()

    def expect_complete(self, recs, folder, msgids):
        self.assertEqual(len(find(recs, op="FolderCreate", folder=folder)), 1)
        self.assertEqual(len(find(recs, op="FolderBind", folder=folder)), 1)
        created = sorted(i["msgid"] for r in find(recs, op="Create", folder=folder) for i in r["items"])
        self.assertEqual(created, sorted(msgids))
        read = sorted(i["msgid"] for r in find(recs, op="MailItemsAccessed", folder=folder)
                      for i in r["items"])
        self.assertEqual(read, sorted(msgids))

    def test_no_daemon_records_spooled(self):
        self.assertFalse(os.path.exists(self.dovecot.socket_path))
        folder = "NoDaemon" + uuid.uuid4().hex[:6]
        msgids = [new_msgid("sp%d" % i) for i in range(3)]
        self.session(folder, msgids)
        recs = self.wait_spooled(
            lambda rs: rs if len(find(rs, op="MailItemsAccessed", folder=folder)) else None)
        self.assertTrue(recs, "nothing spooled")
        self.expect_complete(recs, folder, msgids)
        ids = [r["id"] for r in recs]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertIn("connect(", self.dovecot.log_text())
        self.assertNotIn("LOST", self.dovecot.log_text())

    def test_unacked_frames_spooled_at_logout(self):
        receiver = WireReceiver(self.dovecot.socket_path, ack=False)
        self.addCleanup(receiver.close)
        folder = "NoAck" + uuid.uuid4().hex[:6]
        msgids = [new_msgid("na%d" % i) for i in range(2)]
        self.session(folder, msgids)
        received = receiver.wait_for(
            lambda rs: find(rs, op="MailItemsAccessed", folder=folder))
        self.assertTrue(received, "the frames were sent before spooling")
        recs = self.wait_spooled(
            lambda rs: rs if find(rs, op="MailItemsAccessed", folder=folder) else None)
        self.assertTrue(recs, "unacknowledged frames were not spooled")
        self.expect_complete(recs, folder, msgids)
        got = {r["id"] for r in receiver.snapshot() if r.get("folder") == folder}
        spooled = {r["id"] for r in recs if r.get("folder") == folder}
        self.assertLessEqual(got, spooled, "a received but unacked frame is missing from the spool")

    def test_acked_frames_not_spooled(self):
        receiver = WireReceiver(self.dovecot.socket_path, ack=True)
        self.addCleanup(receiver.close)
        folder = "Acked" + uuid.uuid4().hex[:6]
        msgids = [new_msgid("ak%d" % i) for i in range(2)]
        self.session(folder, msgids)
        recs = receiver.wait_for(
            lambda rs: rs if find(rs, op="MailItemsAccessed", folder=folder) else None)
        self.assertTrue(recs)
        self.expect_complete(recs, folder, msgids)
        time.sleep(0.5)  # logout flush has happened by now
        self.assertEqual([r for r in self.spooled() if r.get("folder") == folder], [])

    def big_session(self, folder, msgids):
        """60 Creates of ~650 bytes, then a COPY and a MOVE of all of them
        (one frame of ~20 KiB each): well over 64 KiB in flight."""
        imap = self.dovecot.imap("alice")
        imap.create(folder)
        imap.create(folder + "-copy")
        for i, m in enumerate(msgids):
            subject = "%03d %s" % (i, "x" * 250)
            self.assertEqual(imap.append(folder, None, None, message(m, subject))[0], "OK")
        imap.select(folder)
        self.assertEqual(imap.uid("COPY", "1:*", folder + "-copy")[0], "OK")
        self.assertEqual(imap.uid("MOVE", "1:*", "Trash")[0], "OK")
        imap.logout()

    def expect_big(self, recs, folder, msgids):
        created = sorted(i["msgid"] for r in find(recs, op="Create", folder=folder) for i in r["items"])
        self.assertEqual(created, sorted(msgids))
        for op in ("Copy", "MoveToDeletedItems"):
            items = [i for r in find(recs, op=op, folder=folder) for i in r["items"]]
            self.assertEqual(sorted(i["msgid"] for i in items), sorted(msgids), op)
            self.assertTrue(all(len(i["subject"]) == 254 for i in items), op)
        ids = [r["id"] for r in recs if r.get("folder") == folder]
        self.assertEqual(len(ids), len(set(ids)))

    def test_large_unacked_backlog_spooled(self):
        receiver = WireReceiver(self.dovecot.socket_path, ack=False)
        self.addCleanup(receiver.close)
        folder = "BigNoAck" + uuid.uuid4().hex[:6]
        msgids = [new_msgid("bn%d" % i) for i in range(60)]
        self.big_session(folder, msgids)
        recs = self.wait_spooled(
            lambda rs: rs if find(rs, op="MoveToDeletedItems", folder=folder) else None)
        self.assertTrue(recs, "unacknowledged frames were not spooled")
        self.expect_big(recs, folder, msgids)
        self.assertNotIn("LOST", self.dovecot.log_text())

    def test_large_acked_backlog_not_spooled(self):
        receiver = WireReceiver(self.dovecot.socket_path, ack=True)
        self.addCleanup(receiver.close)
        folder = "BigAcked" + uuid.uuid4().hex[:6]
        msgids = [new_msgid("ba%d" % i) for i in range(60)]
        self.big_session(folder, msgids)
        recs = receiver.wait_for(
            lambda rs: rs if find(rs, op="MoveToDeletedItems", folder=folder) else None)
        self.assertTrue(recs)
        self.expect_big(recs, folder, msgids)
        time.sleep(0.5)  # logout flush has happened by now
        self.assertEqual([r for r in self.spooled() if r.get("folder") == folder], [])
        self.assertEqual(receiver.errors, [])


if __name__ == "__main__":
    unittest.main()
