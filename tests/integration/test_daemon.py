# SPDX-License-Identifier: MIT
"""mailauditd + mailauditctl end to end, with a scripted sensor.

Covers ingest and acks, searchability latency, bad input isolation,
de-duplication between socket and spool, spool draining and quarantine,
the policy CLI with its admin audit records and errors, retention, paging
and the three output formats.
"""

import csv
import io
import json
import os
import subprocess
import threading
import time
import unittest

from daemon_fixture import MailauditDaemon, frame, uuid7


class DaemonTestCase(unittest.TestCase):
    extra_conf = ""

    def setUp(self):
        self.d = MailauditDaemon(self.extra_conf)
        self.addCleanup(self.d.cleanup)
        self.d.start()


class TestIngest(DaemonTestCase):
    def test_records_are_acked_and_searchable_within_a_second(self):
        s = self.d.sensor()
        self.addCleanup(s.close)
        t0 = time.monotonic()
        for i in range(50):
            s.send(frame("SoftDelete", user="bob", mbox="alice",
                         logon="Delegate", folder="INBOX", sess="S1",
                         ip="192.0.2.7", items=[(i + 1, "<m%d@x>" % i,
                                                 "subject %d" % i)]))
        self.assertEqual(s.wait_ack(50), 50)
        recs = self.d.records("--mailbox", "alice")
        elapsed = time.monotonic() - t0
        self.assertEqual(len(recs), 50)
        self.assertLess(elapsed, 1.0, "stored and searchable in %.3fs"
                        % elapsed)
        r = recs[0]
        self.assertEqual(r["Operation"], "SoftDelete")
        self.assertEqual(r["LogonType"], 2)
        self.assertEqual(r["RecordType"], 3)
        self.assertEqual(r["UserId"], "bob")
        self.assertEqual(r["MailboxOwnerUPN"], "alice")
        self.assertEqual(r["ClientIP"], "192.0.2.7")
        self.assertEqual(r["SessionId"], "S1")
        self.assertEqual(r["AffectedItems"][0]["Subject"], "subject 0")
        self.assertEqual(r["AffectedItems"][0]["InternetMessageId"],
                         "<m0@x>")
        # sequence numbers are monotonic in arrival order
        seqs = [x["MailAuditSequence"] for x in recs]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), 50)

    def test_garbage_drops_only_that_connection(self):
        good = self.d.sensor()
        bad = self.d.sensor()
        self.addCleanup(good.close)
        self.addCleanup(bad.close)
        good.send(frame("Update"))
        self.assertEqual(good.wait_ack(1), 1)
        bad.send(b"\x00\x01garbage\xff\n\n")
        self.assertTrue(bad.closed_by_peer())
        good.send(frame("Update"))
        self.assertEqual(good.wait_ack(2), 2)
        log = self.d.log_text()
        self.assertIn("closed: bad frame", log)
        # the log line is sanitised: no raw control bytes from the peer
        line = [l for l in log.splitlines() if "bad frame" in l][0]
        self.assertFalse(any(ord(c) < 0x20 for c in line))
        self.assertEqual(len(self.d.records()), 2)

    def test_oversized_and_unknown_keys_are_rejected(self):
        s1 = self.d.sensor()
        self.addCleanup(s1.close)
        s1.send(b"user=" + b"a" * 200000 + b"\n\n")
        self.assertTrue(s1.closed_by_peer())
        s2 = self.d.sensor()
        self.addCleanup(s2.close)
        s2.send(frame("Update").replace(b"\n\n", b"\nevil=1\n\n"))
        self.assertTrue(s2.closed_by_peer())
        s3 = self.d.sensor()
        self.addCleanup(s3.close)
        s3.send(frame("NotAnAction"))
        self.assertTrue(s3.closed_by_peer())
        self.assertIn("unknown operation", self.d.log_text())
        self.assertEqual(self.d.records(), [])
        # still serving
        s4 = self.d.sensor()
        self.addCleanup(s4.close)
        s4.send(frame("Update"))
        self.assertEqual(s4.wait_ack(1), 1)

    def test_same_record_by_socket_and_spool_is_stored_once(self):
        rid = uuid7()
        f = frame("HardDelete", rid=rid, folder="INBOX")
        s = self.d.sensor()
        self.addCleanup(s.close)
        s.send(f)
        self.assertEqual(s.wait_ack(1), 1)
        path = os.path.join(self.d.spool, "1-1-1.spool")
        with open(path + ".tmp", "wb") as fp:
            fp.write(f + frame("HardDelete", folder="Other"))
        os.rename(path + ".tmp", path)
        deadline = time.monotonic() + 5
        while os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(path), "spool file not drained")
        recs = self.d.records()
        self.assertEqual(len(recs), 2)
        self.assertEqual([r["Id"] for r in recs].count(rid), 1)

    def test_bad_spool_file_is_quarantined_not_deleted(self):
        path = os.path.join(self.d.spool, "9-9-9.spool")
        with open(path, "wb") as fp:
            fp.write(b"not a frame\n\n")
        deadline = time.monotonic() + 5
        while not os.path.exists(path + ".bad") and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(path + ".bad"))
        self.assertIn("kept as", self.d.log_text())
        status = self.d.ctl("status").stdout
        self.assertIn("spool_quarantined: 1", status)
        self.assertIn("spool_pending: 0", status)

    def test_truncated_spool_tail_keeps_complete_records(self):
        path = os.path.join(self.d.spool, "7-7-7.spool")
        with open(path, "wb") as fp:
            fp.write(frame("Update") + frame("Update")[:30])
        deadline = time.monotonic() + 5
        while os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(len(self.d.records()), 1)
        self.assertIn("not a complete frame", self.d.log_text())

    def test_fifo_or_hard_link_in_spool_cannot_stall_the_daemon(self):
        fifo = os.path.join(self.d.spool, "5-5-5.spool")
        os.mkfifo(fifo)
        target = os.path.join(self.d.dir, "secret")
        with open(target, "wb") as fp:
            fp.write(frame("Update", user="forged"))
        link = os.path.join(self.d.spool, "6-6-6.spool")
        os.link(target, link)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (
                os.path.exists(fifo + ".bad") and
                os.path.exists(link + ".bad")):
            time.sleep(0.05)
        self.assertTrue(os.path.exists(fifo + ".bad"))
        self.assertTrue(os.path.exists(link + ".bad"))
        s = self.d.sensor()
        self.addCleanup(s.close)
        s.send(frame("Update"))
        self.assertEqual(s.wait_ack(1), 1)
        self.assertEqual(self.d.records("--user-ids", "forged"), [])

    def test_store_locked_record_is_not_acked(self):
        import sqlite3
        db = sqlite3.connect(self.d.store, timeout=5, isolation_level=None)
        self.addCleanup(db.close)
        db.execute("BEGIN IMMEDIATE")
        s = self.d.sensor()
        self.addCleanup(s.close)
        s.send(frame("Update", folder="while-locked"))
        # the daemon cannot store it: it must not ack it, and it closes
        # the connection so that the sensor spools what it holds
        self.assertTrue(s.closed_by_peer(timeout=5))
        db.execute("ROLLBACK")
        s2 = self.d.sensor()
        self.addCleanup(s2.close)
        s2.send(frame("Update", folder="after"))
        self.assertEqual(s2.wait_ack(1), 1)
        folders = [r.get("Folder", {}).get("Path") for r in self.d.records()]
        self.assertEqual(folders, ["\\after"])
        self.assertIn("store failure, records not committed",
                      self.d.log_text())

    def test_second_instance_refuses_to_take_the_sockets(self):
        res = subprocess.run([self.d.binary("mailauditd"), "-f", "-c",
                              self.d.conf], capture_output=True, text=True,
                             timeout=10)
        self.assertEqual(res.returncode, 1)
        self.assertIn("another mailauditd is running", res.stderr)
        s = self.d.sensor()
        self.addCleanup(s.close)
        s.send(frame("Update"))
        self.assertEqual(s.wait_ack(1), 1)

    def test_sigterm_under_load_keeps_every_acked_record(self):
        # sync_full = yes (the default): while four sensors keep sending,
        # batches are being filled, written and synced by different
        # threads when SIGTERM comes.  The daemon commits and acknowledges
        # what it received; every acknowledged record is in the store,
        # numbered without gaps.
        self.d.stop()
        d = MailauditDaemon(options={"sync_full": "yes"})
        self.addCleanup(d.cleanup)
        d.start()
        sensors = [d.sensor() for _ in range(4)]
        for s in sensors:
            self.addCleanup(s.close)
        ids = [[] for _ in sensors]

        def send(i, s):
            for n in range(100000):
                rid = uuid7()
                try:
                    s.send(frame("Update", rid=rid, folder="load-%d" % i,
                                 items=[(n + 1, "<%d.%d@x>" % (i, n), "s")]))
                except OSError:
                    return  # the daemon closed the connection
                ids[i].append(rid)

        acked = [0 for _ in sensors]

        def read_acks(i, s):
            # Acks are read as they come: when the daemon closes a
            # connection with frames still unread, the kernel resets it
            # and acks not yet read are gone (ECONNRESET).
            s.sock.settimeout(15)
            while True:
                try:
                    data = s.sock.recv(256)
                except OSError:
                    return
                if not data:
                    return
                for line in data.decode().split("\n"):
                    if line.startswith("ack="):
                        acked[i] = max(acked[i], int(line[4:]))

        threads = [threading.Thread(target=send, args=(i, s))
                   for i, s in enumerate(sensors)]
        readers = [threading.Thread(target=read_acks, args=(i, s))
                   for i, s in enumerate(sensors)]
        for t in threads + readers:
            t.start()
        time.sleep(0.5)
        d.stop()  # SIGTERM, waits for the exit
        for t in threads + readers:
            t.join(20)
        self.assertIn("stopped:", d.log_text())
        d.start()
        recs = d.records()
        stored = {r["Id"] for r in recs}
        for i, n in enumerate(acked):
            missing = [x for x in ids[i][:n] if x not in stored]
            self.assertEqual(missing, [], "sensor %d: %d acked" % (i, n))
        self.assertGreater(sum(acked), 0)
        seqs = sorted(r["MailAuditSequence"] for r in recs)
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))))

    def test_restart_keeps_records_and_sequence(self):
        s = self.d.sensor()
        s.send(frame("Update"))
        self.assertEqual(s.wait_ack(1), 1)
        s.close()
        self.d.stop()
        self.d.start()
        s = self.d.sensor()
        self.addCleanup(s.close)
        s.send(frame("Update"))
        self.assertEqual(s.wait_ack(1), 1)
        recs = self.d.records()
        self.assertEqual(len(recs), 2)
        self.assertLess(recs[0]["MailAuditSequence"],
                        recs[1]["MailAuditSequence"])


class TestPolicy(DaemonTestCase):
    def test_mailbox_policy_changes_are_audited(self):
        self.d.ctl("mailbox", "add", "finance", "--type", "shared")
        out = self.d.ctl("get-mailbox", "finance").stdout
        self.assertIn("MailboxType        shared", out)
        self.assertIn("DefaultAuditSet    Owner,Delegate,Admin", out)
        self.d.ctl("set-mailbox", "finance", "--audit-owner-add",
                   "MailItemsAccessed", "--audit-log-age-limit", "365")
        out = self.d.ctl("get-mailbox", "finance").stdout
        self.assertIn("MailItemsAccessed", out.split("AuditOwner")[1]
                      .splitlines()[0])
        self.assertIn("DefaultAuditSet    Delegate,Admin", out)
        self.assertIn("365.00:00:00", out)
        # restoring the managed default
        self.d.ctl("set-mailbox", "finance", "--default-audit-set", "Owner")
        out = self.d.ctl("get-mailbox", "finance").stdout
        self.assertIn("DefaultAuditSet    Owner,Delegate,Admin", out)

        recs = self.d.records("--operations", "Set-Mailbox")
        self.assertEqual(len(recs), 2)
        first = recs[0]
        self.assertEqual(first["RecordType"], 1)
        self.assertEqual(first["ObjectId"], "finance")
        self.assertEqual(first["UserId"], "root")
        mods = {m["Name"]: m for m in first["ModifiedProperties"]}
        self.assertEqual(mods["AuditLogAgeLimit"]["OldValue"],
                         "90.00:00:00")
        self.assertEqual(mods["AuditLogAgeLimit"]["NewValue"],
                         "365.00:00:00")
        self.assertNotIn("MailItemsAccessed", mods["AuditOwner"]["OldValue"])
        self.assertIn("MailItemsAccessed", mods["AuditOwner"]["NewValue"])
        self.assertEqual(len(self.d.records("--operations", "New-Mailbox")),
                         1)
        # the snapshot the sensors read carries the change
        with open(self.d.snapshot) as f:
            snap = f.read()
        line = [l for l in snap.splitlines()
                if l.startswith("mailbox finance ")][0]
        self.assertIn("shared yes", line)

    def test_errors_name_the_bad_value(self):
        cases = [
            (["set-mailbox", "nobody", "--audit-owner", "Update"],
             "unknown mailbox 'nobody'"),
            (["mailbox", "add", "x", "--type", "robot"],
             "unknown mailbox type 'robot'"),
        ]
        for args, msg in cases:
            res = self.d.ctl(*args, check=False)
            self.assertNotEqual(res.returncode, 0, args)
            self.assertIn(msg, res.stderr, args)
        self.d.ctl("mailbox", "add", "alice")
        for args, msg in [
            (["set-mailbox", "alice", "--audit-owner", "Update,Frobnicate"],
             "unknown action 'Frobnicate'"),
            (["set-mailbox", "alice", "--default-audit-set", "Janitor"],
             "unknown logon type 'Janitor'"),
            (["set-mailbox", "alice", "--audit-log-age-limit", "forever"],
             "'forever' is not a number"),
            (["set-org", "--preset", "lax"], "unknown preset 'lax'"),
            (["search", "--logon-types", "Root"],
             "unknown logon type 'Root'"),
            (["search", "--operations", "Peek"], "unknown operation 'Peek'"),
            (["search", "--start", "yesterday"], "cannot parse 'yesterday'"),
        ]:
            res = self.d.ctl(*args, check=False)
            self.assertNotEqual(res.returncode, 0, args)
            self.assertIn(msg, res.stderr, args)
        # nothing was changed by the failed attempts
        self.assertEqual(self.d.records("--operations", "Set-Mailbox"), [])

    def test_org_switch_and_bypass_are_audited(self):
        self.d.ctl("set-org", "--audit-disabled", "yes")
        self.d.ctl("set-org", "--audit-disabled", "no", "--preset", "strict")
        self.d.ctl("set-bypass", "svc-backup", "--enabled", "yes")
        out = self.d.ctl("get-org").stdout
        self.assertIn("AuditPreset:     strict", out)
        self.assertIn("svc-backup", out)
        recs = self.d.records("--operations", "set-organizationconfig")
        self.assertEqual(len(recs), 2)
        mods = {m["Name"]: m for m in recs[0]["ModifiedProperties"]}
        self.assertEqual(mods["AuditDisabled"]["NewValue"], "True")
        byp = self.d.records("--operations",
                             "Set-MailboxAuditBypassAssociation")
        self.assertEqual(len(byp), 1)
        self.assertEqual(byp[0]["ObjectId"], "svc-backup")
        with open(self.d.snapshot) as f:
            snap = f.read()
        self.assertIn("bypass svc-backup", snap)
        self.assertIn("audit_disabled no", snap)

    def test_control_socket_refuses_other_users(self):
        res = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             self.d.binary("mailauditctl"), "-c", self.d.conf,
             "set-org", "--preset", "strict"],
            capture_output=True, text=True, timeout=30)
        self.assertNotEqual(res.returncode, 0)
        out = self.d.ctl("get-org").stdout
        self.assertIn("AuditPreset:     default", out)


class TestSearch(DaemonTestCase):
    def fill(self, n=25):
        s = self.d.sensor()
        self.addCleanup(s.close)
        t = int(time.time() * 1000) - n
        for i in range(n):
            s.send(frame("MailboxLogin" if i % 2 else "Update",
                         user="carol", mbox="carol", t=t + i,
                         ip="10.1.1.%d" % (i % 3), sess="sess-%d" % (i % 4),
                         folder="Projects/Q%d" % i,
                         client="Client=POP3/IMAP4;Protocol=IMAP4"))
        self.assertEqual(s.wait_ack(n), n)

    def test_paging_never_truncates_silently(self):
        self.fill(25)
        seen = []
        args = ["search", "--format", "json", "--result-size", "10"]
        for _ in range(5):
            res = self.d.ctl(*args)
            page = [json.loads(l) for l in res.stdout.splitlines()]
            seen += [r["MailAuditSequence"] for r in page]
            if "Next page" not in res.stderr:
                break
            self.assertIn("record(s) matched; 10 shown", res.stderr)
            nxt = res.stderr.split("add ")[1].split()
            args = ["search", "--format", "json", "--result-size", "10",
                    nxt[0], nxt[1]]
        self.assertEqual(len(seen), 25)
        self.assertEqual(seen, sorted(seen, reverse=True))

    def test_filters(self):
        self.fill(24)
        self.assertEqual(len(self.d.records("--operations", "mailboxlogin")),
                         12)
        self.assertEqual(len(self.d.records("--ip", "10.1.1.0")), 8)
        self.assertEqual(len(self.d.records("--session", "sess-1")), 6)
        self.assertEqual(len(self.d.records("--free-text", "Projects/Q1")),
                         11)  # Q1, Q10..Q19
        self.assertEqual(len(self.d.records("--logon-types", "Admin")), 0)
        self.assertEqual(len(self.d.records("--user-ids", "carol",
                                            "--start", "-1d")), 24)
        self.assertEqual(len(self.d.records("--end", "-1d")), 0)

    def test_csv_and_table(self):
        self.fill(3)
        res = self.d.ctl("search", "--format", "csv")
        rows = list(csv.reader(io.StringIO(res.stdout)))
        self.assertEqual(rows[0], ["CreationDate", "UserIds", "Operations",
                                   "AuditData"])
        self.assertEqual(len(rows), 4)
        self.assertEqual(json.loads(rows[1][3])["UserId"], "carol")
        res = self.d.ctl("search")
        self.assertIn("Operation", res.stdout.splitlines()[0])
        self.assertEqual(len(res.stdout.splitlines()), 4)


class TestRetention(DaemonTestCase):
    extra_conf = "retention_min_days = 0\n"

    def test_purge_by_age_limit(self):
        self.d.ctl("mailbox", "add", "old")
        self.d.ctl("set-mailbox", "old", "--audit-log-age-limit", "1")
        s = self.d.sensor()
        self.addCleanup(s.close)
        now = int(time.time() * 1000)
        s.send(frame("Update", user="old", mbox="old", t=now - 3 * 86400000))
        s.send(frame("Update", user="old", mbox="old", t=now))
        s.send(frame("Update", user="x", mbox="x", t=now - 3 * 86400000))
        self.assertEqual(s.wait_ack(3), 3)
        out = self.d.ctl("purge").stdout
        self.assertIn("purged: 1", out)
        left = self.d.records("--operations", "Update")
        self.assertEqual(len(left), 2)


class TestConnectionFlood(unittest.TestCase):
    def test_flood_neither_spins_nor_locks_out_the_operator(self):
        d = MailauditDaemon()
        self.addCleanup(d.cleanup)
        d.start(nofile=100)
        self.assertIn("max_connections lowered to 64", d.log_text())
        socks = []
        for _ in range(90):
            try:
                socks.append(d.sensor())
            except OSError:
                break
        for s in socks:
            self.addCleanup(s.close)

        def cpu():
            with open("/proc/%d/stat" % d.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        before = cpu()
        time.sleep(1.0)
        used = cpu() - before
        self.assertLess(used, 30, "daemon used %d ticks in 1 s" % used)
        self.assertIn("records:", d.ctl("status").stdout)
        # the connections it holds are served
        socks[0].send(frame("Update"))
        self.assertEqual(socks[0].wait_ack(1), 1)


class TestPrivileges(unittest.TestCase):
    def test_drops_to_user_and_keeps_the_store_private(self):
        d = MailauditDaemon("user = nobody\n")
        self.addCleanup(d.cleanup)
        os.chown(d.dir, 65534, 65534)
        d.start()
        with open("/proc/%d/status" % d.proc.pid) as f:
            uids = [l for l in f if l.startswith("Uid:")][0].split()[1:]
        self.assertEqual(set(uids), {"65534"})
        st = os.stat(d.store)
        self.assertEqual(st.st_uid, 65534)
        self.assertEqual(st.st_mode & 0o777, 0o600)
        sp = os.stat(d.spool)
        self.assertEqual(sp.st_mode & 0o7777, 0o3733)
        self.assertEqual(sp.st_uid, 65534)
        self.assertEqual(os.stat(d.socket).st_mode & 0o777, 0o666)
        self.assertEqual(os.stat(d.control).st_mode & 0o777, 0o600)
        s = d.sensor()
        self.addCleanup(s.close)
        s.send(frame("Update"))
        self.assertEqual(s.wait_ack(1), 1)
        d.ctl("mailbox", "add", "alice")   # root may use the control socket
        self.assertEqual(len(d.records()), 2)


class TestConfig(unittest.TestCase):
    def test_bad_config_names_file_line_and_key(self):
        d = MailauditDaemon("batch_max_records = lots\n")
        self.addCleanup(d.cleanup)
        res = subprocess.run([d.binary("mailauditd"), "-f", "-c", d.conf],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(res.returncode, 1)
        with open(d.conf) as f:
            n = f.read().splitlines().index(
                "batch_max_records = lots") + 1
        self.assertIn("%s:%d: batch_max_records: 'lots'" % (d.conf, n),
                      res.stderr)


if __name__ == "__main__":
    unittest.main()
