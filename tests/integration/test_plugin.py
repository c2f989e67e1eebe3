# SPDX-License-Identifier: MIT
"""Integration tests of the Dovecot plugin against a real Dovecot.

The receiving side is a small SOCK_SEQPACKET test double of mailauditd
(WireReceiver): it parses each frame as the wire protocol defines it
(ma-proto.h: key=value lines, %XX escapes, TAB-separated item=/prop=)
and answers "ack=<n>" like the daemon.  Tests drive Dovecot with real
clients (imaplib, poplib, smtplib.LMTP, a raw ManageSieve client and
doveadm) and assert on the records' field values.

Needs root and a built plugin ($MAILAUDIT_BUILD_DIR, default ./build
of this checkout).
"""

import imaplib
import os
import socket
import threading
import time
import unittest
import uuid

from dovecot_fixture import DovecotFixture, plugin_path

imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED", "LOGOUT"))

ALL_ACTIONS = [
    "ApplyRecord", "Copy", "Create", "FolderBind", "HardDelete",
    "MailboxLogin", "MailItemsAccessed", "MessageBind", "Move",
    "MoveToDeletedItems", "RecordDelete", "SearchQueryInitiated", "Send",
    "SendAs", "SendOnBehalf", "SoftDelete", "Update",
    "UpdateCalendarDelegation", "UpdateComplianceTag",
    "UpdateFolderPermissions", "UpdateInboxRules", "FolderCreate",
    "FolderDelete", "FolderRename",
]
MAX_FRAME = 128 * 1024


def action_list(actions):
    return ",".join(actions) if actions else "None"


def write_policy(path, subjects=True, default=None, mailboxes=()):
    """A policy snapshot (format of ma-policy.h).  mailboxes: tuples
    (name, owner_set, delegate_set, admin_set)."""
    default = default or ALL_ACTIONS
    lines = ["mailaudit-policy 1", "audit_disabled no",
             "subjects %s" % ("yes" if subjects else "no"),
             "default User %s %s %s" % ((action_list(default),) * 3)]
    for name, owner, delegate, admin in mailboxes:
        lines.append("mailbox %s User yes %s %s %s" % (
            name, action_list(owner), action_list(delegate), action_list(admin)))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def unescape(value):
    out = bytearray()
    raw = value.encode("utf-8", "surrogateescape")
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw) + 0 and i + 2 <= len(raw) - 1:
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def parse_frame(data):
    """One wire frame -> dict; item/prop become lists/dicts."""
    text = data.decode("utf-8", "surrogateescape")
    if not text.endswith("\n\n"):
        raise ValueError("frame does not end with an empty line: %r" % text[-20:])
    rec = {"items": [], "props": {}}
    for line in text[:-2].split("\n"):
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError("bad line %r" % line)
        if key == "item":
            f = [unescape(x) for x in value.split("\t")]
            rec["items"].append({"uid": int(f[0]) if f[0] else 0,
                                 "msgid": f[1] or None,
                                 "subject": f[2] or None,
                                 "size": int(f[3]) if len(f) > 3 and f[3] else 0})
        elif key == "prop":
            f = [unescape(x) for x in value.split("\t")]
            rec["props"][f[0]] = (f[1] or None, f[2] or None)
        else:
            if key in rec:
                raise ValueError("duplicate key %s" % key)
            rec[key] = unescape(value)
    return rec


def split_frames(blob):
    """Concatenated frames (a spool file) -> list of frame bytes."""
    frames = []
    while blob:
        end = blob.find(b"\n\n")
        if end < 0:
            raise ValueError("truncated frame in spool")
        # "\n\n" inside a frame is impossible: values escape control bytes
        frames.append(blob[:end + 2])
        blob = blob[end + 2:]
    return frames


class WireReceiver:
    """Test double of mailauditd's ingest socket (SOCK_SEQPACKET)."""

    def __init__(self, path, ack=True):
        self.path = path
        self.ack = ack
        self.records = []
        self.frames_received = 0
        self.errors = []
        self.lock = threading.Lock()
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.running = True
        self.threads = []
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, conn):
        count = 0
        conn.settimeout(0.2)
        with conn:
            while self.running:
                try:
                    data = conn.recv(MAX_FRAME + 16)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                try:
                    rec = parse_frame(data)
                except ValueError as e:
                    with self.lock:
                        self.errors.append(str(e))
                    return
                count += 1
                with self.lock:
                    self.records.append(rec)
                    self.frames_received += 1
                if self.ack:
                    try:
                        conn.sendall(b"ack=%d\n\n" % count)
                    except OSError:
                        return

    def close(self):
        self.running = False
        try:
            self.sock.close()
        except OSError:
            pass
        for t in self.threads + [self.thread]:
            t.join(1)
        if os.path.exists(self.path):
            os.unlink(self.path)

    def snapshot(self):
        with self.lock:
            return list(self.records)

    def wait_for(self, pred, timeout=5.0):
        """Poll until pred(records) is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = pred(self.snapshot())
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.05)


def find(records, **want):
    """Records whose fields equal every given value (op=, folder= ...)."""
    out = []
    for r in records:
        if all(r.get(k) == v for k, v in want.items()):
            out.append(r)
    return out


def with_msgid(records, msgid):
    return [r for r in records if any(i["msgid"] == msgid for i in r["items"])]


def message(msgid, subject, body="hello\r\n"):
    return ("From: carol@example.test\r\nTo: alice@example.test\r\n"
            "Subject: %s\r\nMessage-ID: %s\r\n\r\n%s" % (subject, msgid, body)).encode()


def uid_of(conn, msgid):
    typ, data = conn.uid("SEARCH", None, "HEADER", "Message-ID", msgid)
    assert typ == "OK", data
    return int(data[0].split()[-1])


def new_msgid(tag):
    return "<%s-%s@test.example>" % (tag, uuid.uuid4().hex[:12])


@unittest.skipUnless(os.geteuid() == 0, "needs root to run Dovecot")
@unittest.skipUnless(os.path.exists(plugin_path()), "plugin not built")
class PluginTestCase(unittest.TestCase):
    """One Dovecot and one receiver per class; tests use unique names."""

    policy_kwargs = {}
    extra_conf = ""

    @classmethod
    def setUpClass(cls):
        cls.dovecot = DovecotFixture(extra_conf=cls.extra_conf)
        write_policy(cls.dovecot.policy_path, **cls.policy_kwargs)
        cls.receiver = WireReceiver(cls.dovecot.socket_path)
        try:
            cls.dovecot.start()
        except Exception:
            cls.receiver.close()
            cls.dovecot.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.dovecot.stop()
        cls.receiver.close()
        cls.dovecot.cleanup()

    def setUp(self):
        self.addCleanup(self._report_on_failure)

    def _report_on_failure(self):
        outcome = getattr(self, "_outcome", None)
        failed = outcome is not None and not getattr(outcome, "success", True)
        if failed or os.environ.get("MAILAUDIT_VERBOSE") == "1":
            log = self.dovecot.log_text()
            print("\n--- dovecot log (tail) ---\n" + log[-4000:])

    def assertNoPluginErrors(self):
        errors = [l for l in self.dovecot.log_text().splitlines()
                  if "mailaudit" in l and ("Error" in l or "Panic" in l or "Fatal" in l)]
        self.assertEqual(errors, [])
        self.assertEqual(self.receiver.errors, [])

    def wait_op(self, timeout=5.0, count=1, **want):
        recs = self.receiver.wait_for(
            lambda rs: (lambda m: m if len(m) >= count else None)(find(rs, **want)),
            timeout)
        self.assertTrue(recs, "no %s record; have: %s" % (
            want, [(r.get("op"), r.get("user"), r.get("folder")) for r in self.receiver.snapshot()][-30:]))
        return recs

    def assertSession(self, rec, user, mbox, logon, proto="imap"):
        self.assertEqual(rec["user"], user)
        self.assertEqual(rec["mbox"], mbox)
        self.assertEqual(rec["logon"], logon)
        self.assertEqual(rec["proto"], proto)
        self.assertEqual(rec["server"], "testhost")
        self.assertEqual(rec["res"], "Succeeded")
        self.assertTrue(rec.get("sess"), rec)
        self.assertEqual(len(rec["id"]), 36)
        self.assertLess(abs(int(rec["t"]) - time.time() * 1000), 60000)


class OwnerTests(PluginTestCase):

    def test_owner_session(self):
        d = self.dovecot
        tag = uuid.uuid4().hex[:8]
        work, other, renamed = "Work" + tag, "Other" + tag, "Renamed" + tag
        ids = [new_msgid("own%d" % i) for i in range(4)]
        imap = d.imap("alice")
        self.addCleanup(imap.logout)
        typ, _ = imap._simple_command("ID", '("name" "pytest" "version" "1.0")')
        self.assertEqual(typ, "OK")
        self.assertEqual(imap.create(work)[0], "OK")
        self.assertEqual(imap.create(other)[0], "OK")
        for i, msgid in enumerate(ids):
            self.assertEqual(imap.append(work, None, None, message(msgid, "Subject %d %s" % (i, tag)))[0], "OK")
        self.assertEqual(imap.select(work)[0], "OK")
        uids = [uid_of(imap, m) for m in ids]

        # FolderCreate
        rec = self.wait_op(op="FolderCreate", folder=work)[0]
        self.assertSession(rec, "alice", "alice", "Owner")
        self.assertEqual(rec["ip"], "127.0.0.1")
        # Create: one record per APPEND command, with the new UID
        for i, msgid in enumerate(ids):
            recs = self.receiver.wait_for(lambda rs: with_msgid(find(rs, op="Create"), msgid))
            self.assertEqual(len(recs), 1, msgid)
            self.assertEqual(recs[0]["folder"], work)
            self.assertEqual(recs[0]["items"], [{"uid": uids[i], "msgid": msgid,
                                                 "subject": "Subject %d %s" % (i, tag), "size": 0}])
        # FolderBind (once per folder per session)
        imap.select(work)
        rec = self.wait_op(op="FolderBind", folder=work)
        self.assertEqual(len(find(self.receiver.snapshot(), op="FolderBind", folder=work)), 1)
        self.assertSession(rec[0], "alice", "alice", "Owner")

        # MailItemsAccessed: body read, aggregated, deduplicated
        imap.uid("FETCH", "%d:%d" % (uids[0], uids[1]), "(BODY.PEEK[])")
        imap.uid("FETCH", "%d" % uids[0], "(BODY.PEEK[])")
        recs = self.wait_op(op="MailItemsAccessed", folder=work)
        time.sleep(0.3)
        recs = find(self.receiver.snapshot(), op="MailItemsAccessed", folder=work)
        items = [i for r in recs for i in r["items"]]
        self.assertEqual(sorted(i["uid"] for i in items), sorted(uids[:2]))
        self.assertEqual(recs[0]["props"]["MailAccessType"], (None, "Bind"))
        self.assertEqual(int(recs[0]["count"]), len(recs[0]["items"]))
        self.assertIn("Protocol=IMAP4;ClientName=pytest;ClientVersion=1.0", recs[0]["client"])
        self.assertTrue(recs[0]["client"].startswith("Client=POP3/IMAP4;"))

        # Update: flags old/new
        imap.uid("STORE", str(uids[0]), "+FLAGS", "(\\Flagged)")
        rec = self.receiver.wait_for(lambda rs: with_msgid(find(rs, op="Update"), ids[0]))[0]
        self.assertEqual(rec["props"]["Flags"][1].split(), ["\\Flagged"] if rec["props"]["Flags"][0] is None
                         else rec["props"]["Flags"][0].split() + ["\\Flagged"])
        self.assertNotIn("\\Flagged", (rec["props"]["Flags"][0] or ""))

        # Copy
        imap.uid("COPY", str(uids[0]), other)
        rec = self.wait_op(op="Copy", folder=work)[0]
        self.assertEqual(rec["dfolder"], other)
        self.assertEqual([(i["uid"], i["msgid"]) for i in rec["items"]], [(uids[0], ids[0])])
        # Move: no HardDelete for the source
        imap.uid("MOVE", str(uids[1]), other)
        rec = self.wait_op(op="Move", folder=work)[0]
        self.assertEqual(rec["dfolder"], other)
        self.assertEqual([(i["uid"], i["msgid"]) for i in rec["items"]], [(uids[1], ids[1])])
        # Move to Trash
        imap.uid("MOVE", str(uids[2]), "Trash")
        rec = self.wait_op(op="MoveToDeletedItems", folder=work)[0]
        self.assertEqual(rec["dfolder"], "Trash")
        self.assertEqual(rec["items"][0]["msgid"], ids[2])
        # SoftDelete + HardDelete
        imap.uid("STORE", str(uids[3]), "+FLAGS", "(\\Deleted)")
        rec = self.wait_op(op="SoftDelete", folder=work)[0]
        self.assertEqual([(i["uid"], i["msgid"]) for i in rec["items"]], [(uids[3], ids[3])])
        self.assertFalse(with_msgid(find(self.receiver.snapshot(), op="Update"), ids[3]),
                         "setting \\Deleted must not be an Update")
        imap.expunge()
        rec = self.wait_op(op="HardDelete", folder=work)[0]
        self.assertEqual([(i["uid"], i["msgid"]) for i in rec["items"]], [(uids[3], ids[3])])
        all_hard = find(self.receiver.snapshot(), op="HardDelete", folder=work)
        self.assertEqual([i["uid"] for r in all_hard for i in r["items"]], [uids[3]],
                         "the MOVEs must not produce HardDelete")
        # Rename and delete
        imap.close()
        self.assertEqual(imap.rename(other, renamed)[0], "OK")
        rec = self.wait_op(op="FolderRename", folder=other)[0]
        self.assertEqual(rec["dfolder"], renamed)
        self.assertEqual(imap.delete(renamed)[0], "OK")
        rec = self.wait_op(op="FolderDelete", folder=renamed)[0]
        self.assertSession(rec, "alice", "alice", "Owner")
        self.assertNoPluginErrors()

    def test_header_values(self):
        """Message-ID and Subject as Dovecot reads them (first occurrence,
        unfolded, MIME-decoded, trimmed, cut at 255 bytes), and the same
        whether they come from the file or Dovecot's cache: every message
        is named by a Create, two Updates, a Copy and a read."""
        d = self.dovecot
        tag = uuid.uuid4().hex[:8]
        folder, other = "Hdr" + tag, "HdrCopy" + tag
        long_subject = "\u00e9" * 200  # 400 bytes: cut to 127 characters
        # (raw header lines, expected msgid, expected subject); None = absent
        cases = [
            ("Message-ID: <plain-%s@x>\r\nSubject: Plain subject" % tag,
             "<plain-%s@x>" % tag, "Plain subject"),
            ("Message-ID:\t <tab-%s@x> \r\nSubject:   =?UTF-8?B?w6TDtsO8IGNhZsOp?="
             % tag, "<tab-%s@x>" % tag, "\u00e4\u00f6\u00fc caf\u00e9"),
            ("message-id: <lower-%s@x>\r\nSUBJECT: Upper case names" % tag,
             "<lower-%s@x>" % tag, "Upper case names"),
            ("Message-ID: <two-%s@x>\r\nSubject: First\r\nSubject: Second" % tag,
             "<two-%s@x>" % tag, "First"),
            ("Message-ID: <nosubj-%s@x>" % tag, "<nosubj-%s@x>" % tag, None),
            ("Subject: No message id %s" % tag, None, "No message id %s" % tag),
            ("Message-ID: <fold-%s@x>\r\nSubject: Folded\r\n\tacross\r\n  lines"
             % tag, "<fold-%s@x>" % tag, "Folded across  lines"),
            ("Message-ID: <nul-%s@x>\r\nSubject: =?utf-8?q?a=00b?=" % tag,
             "<nul-%s@x>" % tag, "a b"),
            ("Message-ID: <long-%s@x>\r\nSubject: =?utf-8?b?%s?=" % (
                tag, __import__("base64").b64encode(long_subject.encode()).decode()),
             "<long-%s@x>" % tag, "\u00e9" * 127),
        ]
        imap = d.imap("alice")
        self.addCleanup(imap.logout)
        self.assertEqual(imap.create(folder)[0], "OK")
        self.assertEqual(imap.create(other)[0], "OK")
        for i, (hdrs, _, _) in enumerate(cases):
            msg = ("From: carol@example.test\r\n%s\r\nX-Case: %d\r\n\r\nbody\r\n"
                   % (hdrs, i)).encode()
            self.assertEqual(imap.append(folder, None, None, msg)[0], "OK")
        self.assertEqual(imap.select(folder)[0], "OK")
        typ, data = imap.uid("SEARCH", None, "ALL")
        uids = [int(x) for x in data[0].split()]
        self.assertEqual(len(uids), len(cases))
        for flag in ("\\Flagged", "\\Answered"):
            for uid in uids:
                self.assertEqual(imap.uid("STORE", str(uid), "+FLAGS", "(%s)" % flag)[0], "OK")
        self.assertEqual(imap.uid("COPY", "1:*", other)[0], "OK")
        self.assertEqual(imap.uid("FETCH", "1:*", "(BODY.PEEK[])")[0], "OK")
        imap.close()

        self.wait_op(op="Copy", folder=folder)
        self.wait_op(op="MailItemsAccessed", folder=folder)
        self.wait_op(op="Update", folder=folder, count=2 * len(cases))
        recs = [r for r in self.receiver.snapshot() if r.get("folder") == folder]
        for op, per_uid in (("Create", 1), ("Update", 2), ("Copy", 1),
                            ("MailItemsAccessed", 1)):
            items = [i for r in find(recs, op=op) for i in r["items"]]
            for uid, (_, msgid, subject) in zip(uids, cases):
                got = [(i["msgid"], i["subject"]) for i in items if i["uid"] == uid]
                self.assertEqual(got, [(msgid, subject)] * per_uid, (op, uid))
        self.assertNoPluginErrors()

    def test_login_record(self):
        before = len(find(self.receiver.snapshot(), op="MailboxLogin", user="bob"))
        imap = self.dovecot.imap("bob")
        imap.logout()
        recs = self.wait_op(op="MailboxLogin", user="bob", count=before + 1)
        rec = recs[-1]
        self.assertSession(rec, "bob", "bob", "Owner")
        self.assertEqual(rec["ip"], "127.0.0.1")
        self.assertNotIn("folder", rec)

    def test_failed_select(self):
        imap = self.dovecot.imap("bob")
        self.addCleanup(imap.logout)
        name = "Missing" + uuid.uuid4().hex[:6]
        typ, _ = imap.select(name)
        self.assertEqual(typ, "NO")
        rec = self.wait_op(op="FolderBind", folder=name)[0]
        self.assertEqual(rec["res"], "Failed")
        self.assertEqual(rec["user"], "bob")

    def test_failed_select_records_the_utf8_name(self):
        imap = self.dovecot.imap("bob")
        self.addCleanup(imap.logout)
        tag = uuid.uuid4().hex[:6]
        # modified UTF-7 for "Entwürfe-<tag>", as a client sends it
        typ, _ = imap.select('"Entw&APw-rfe-%s"' % tag)
        self.assertEqual(typ, "NO")
        rec = self.wait_op(op="FolderBind", folder="Entw\u00fcrfe-" + tag)[0]
        self.assertEqual(rec["res"], "Failed")


class AccessTypeTests(PluginTestCase):
    """Delegate, master-user (Admin), doveadm, POP3, ManageSieve, LMTP."""

    def _alice_message(self, tag):
        msgid = new_msgid(tag)
        alice = self.dovecot.imap("alice")
        self.assertEqual(alice.append("INBOX", None, None, message(msgid, "For " + tag))[0], "OK")
        alice.select("INBOX")
        uid = uid_of(alice, msgid)
        return alice, msgid, uid

    def test_delegate_via_acl(self):
        alice, msgid, uid = self._alice_message("deleg")
        self.addCleanup(alice.logout)
        typ, data = alice._simple_command("SETACL", "INBOX", "bob", "lrswipte")
        self.assertEqual(typ, "OK", data)
        rec = self.wait_op(op="UpdateFolderPermissions", user="alice", folder="INBOX")[-1]
        self.assertSession(rec, "alice", "alice", "Owner")
        self.assertEqual(rec["props"]["Member"], (None, "user=bob"))
        self.assertEqual(rec["props"]["ModifyMode"], (None, "Replace"))
        self.assertEqual(sorted(rec["props"]["Rights"][1].split()),
                         sorted("lookup read write write-seen insert post write-deleted expunge".split()))

        bob = self.dovecot.imap("bob")
        self.addCleanup(bob.logout)
        self.assertEqual(bob.select('"shared/alice/INBOX"')[0], "OK")
        buid = uid_of(bob, msgid)
        self.assertEqual(buid, uid)
        bob.uid("FETCH", str(uid), "(BODY.PEEK[])")
        bob.uid("STORE", str(uid), "+FLAGS", "(\\Answered)")
        for op in ("FolderBind", "MailItemsAccessed", "Update"):
            recs = self.wait_op(op=op, user="bob", mbox="alice")
            rec = recs[-1]
            self.assertSession(rec, "bob", "alice", "Delegate")
            self.assertEqual(rec["folder"], "INBOX")
            if op != "FolderBind":
                self.assertIn(msgid, [i["msgid"] for i in rec["items"]])
        upd = with_msgid(find(self.receiver.snapshot(), op="Update", user="bob"), msgid)[-1]
        self.assertIn("\\Answered", upd["props"]["Flags"][1].split())

        typ, data = alice._simple_command("DELETEACL", "INBOX", "bob")
        self.assertEqual(typ, "OK", data)
        rec = self.wait_op(op="UpdateFolderPermissions", user="alice",
                           count=2, folder="INBOX")[-1]
        self.assertEqual(rec["props"]["ModifyMode"], (None, "Clear"))
        self.assertEqual(rec["props"]["Rights"][1], None)
        self.assertTrue(rec["props"]["Rights"][0])
        self.assertNoPluginErrors()

    def test_master_user_is_admin(self):
        alice, msgid, uid = self._alice_message("master")
        alice.logout()
        admin = self.dovecot.imap("alice*admin", "adminpw")
        self.addCleanup(admin.logout)
        self.assertEqual(admin.select("INBOX", True)[0], "OK")  # EXAMINE
        admin.uid("FETCH", str(uid), "(BODY.PEEK[TEXT])")
        rec = self.wait_op(op="MailboxLogin", user="admin")[-1]
        self.assertSession(rec, "admin", "alice", "Admin")
        self.assertEqual(rec["props"]["ImpersonatedUser"], (None, "alice"))
        rec = self.wait_op(op="FolderBind", user="admin")[-1]
        self.assertSession(rec, "admin", "alice", "Admin")
        self.assertEqual(rec["folder"], "INBOX")
        recs = self.receiver.wait_for(lambda rs: with_msgid(find(rs, op="MailItemsAccessed", user="admin"), msgid))
        self.assertTrue(recs)
        self.assertSession(recs[-1], "admin", "alice", "Admin")

    def test_doveadm_is_admin(self):
        d = self.dovecot
        folder = "Dove" + uuid.uuid4().hex[:6]
        msgid = new_msgid("dove")
        d.doveadm("mailbox", "create", "-u", "alice", folder)
        d.doveadm("save", "-u", "alice", "-m", folder, input=message(msgid, "Doveadm").decode())
        d.doveadm("fetch", "-u", "alice", "text", "mailbox", folder, "all")
        d.doveadm("flags", "add", "-u", "alice", "\\Flagged", "mailbox", folder, "all")
        d.doveadm("acl", "set", "-u", "alice", folder, "user=carol", "lookup", "read")
        d.doveadm("expunge", "-u", "alice", "mailbox", folder, "all")
        expect = ["FolderCreate", "Create", "MailItemsAccessed", "Update",
                  "UpdateFolderPermissions", "HardDelete"]
        for op in expect:
            rec = self.wait_op(op=op, folder=folder)[-1]
            self.assertSession(rec, "doveadm", "alice", "Admin", proto="doveadm")
            self.assertNotIn("ip", rec)
            self.assertEqual(rec["client"], "Client=doveadm;Protocol=doveadm")
            if op in ("Create", "MailItemsAccessed", "Update", "HardDelete"):
                self.assertEqual([i["msgid"] for i in rec["items"]], [msgid])
                self.assertEqual(rec["items"][0]["uid"], 1)
        rec = find(self.receiver.snapshot(), op="UpdateFolderPermissions", folder=folder)[-1]
        self.assertEqual(rec["props"]["Member"], (None, "user=carol"))
        self.assertEqual(sorted(rec["props"]["Rights"][1].split()), ["lookup", "read"])
        rec = find(self.receiver.snapshot(), op="Update", folder=folder)[-1]
        self.assertEqual(rec["props"]["Flags"], (None, "\\Flagged"))

    def test_pop3(self):
        d = self.dovecot
        msgid = new_msgid("pop")
        carol = d.imap("carol")
        carol.append("INBOX", None, None, message(msgid, "Pop me"))
        carol.select("INBOX")
        uid = uid_of(carol, msgid)
        carol.logout()
        pop = d.pop3("carol")
        count, _ = pop.stat()
        found = None
        for n in range(1, count + 1):
            lines = pop.top(n, 0)[1]
            if any(msgid.encode() in l for l in lines):
                found = n
        self.assertIsNotNone(found)
        pop.retr(found)
        pop.dele(found)
        pop.quit()
        rec = self.wait_op(op="FolderBind", user="carol", proto="pop3")[-1]
        self.assertSession(rec, "carol", "carol", "Owner", proto="pop3")
        self.assertEqual(rec["folder"], "INBOX")
        self.assertEqual(rec["client"], "Client=POP3/IMAP4;Protocol=POP3")
        recs = self.receiver.wait_for(lambda rs: with_msgid(find(rs, op="MailItemsAccessed", proto="pop3"), msgid))
        self.assertTrue(recs)
        self.assertSession(recs[-1], "carol", "carol", "Owner", proto="pop3")
        recs = self.receiver.wait_for(lambda rs: with_msgid(find(rs, op="HardDelete", proto="pop3"), msgid))
        self.assertTrue(recs, "DELE+QUIT must be a HardDelete")
        self.assertEqual([i["uid"] for i in recs[-1]["items"] if i["msgid"] == msgid], [uid])

    def test_managesieve(self):
        s = self.dovecot.sieve("bob")
        self.addCleanup(s.logout)
        s.putscript("rules", 'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "Trash"; }\r\n')
        s.command('SETACTIVE "rules"')
        s.command('RENAMESCRIPT "rules" "rules2"')
        s.command('SETACTIVE ""')
        s.command('DELETESCRIPT "rules2"')
        recs = self.wait_op(op="UpdateInboxRules", user="bob", count=5)
        got = [(r["props"]["RuleOperation"][1], r["props"]["RuleName"]) for r in recs]
        self.assertEqual(got, [("Put", (None, "rules")), ("Activate", (None, "rules")),
                               ("Rename", ("rules", "rules2")), ("Deactivate", (None, None)),
                               ("Delete", (None, "rules2"))])
        for r in recs:
            self.assertSession(r, "bob", "bob", "Owner", proto="managesieve")
            self.assertEqual(r["client"], "Client=ManageSieve;Protocol=ManageSieve")

    def test_lmtp_delivery_not_audited(self):
        msgid = new_msgid("lmtp")
        with self.dovecot.lmtp() as lmtp:
            lmtp.sendmail("carol@example.test", ["bob"], message(msgid, "Delivered"))
        bob = self.dovecot.imap("bob")
        self.addCleanup(bob.logout)
        deadline = time.monotonic() + 5
        while True:
            bob.select("INBOX", True)
            typ, data = bob.uid("SEARCH", None, "HEADER", "Message-ID", msgid)
            if data[0] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertTrue(data[0], "message was not delivered")
        time.sleep(0.3)
        recs = self.receiver.snapshot()
        self.assertEqual(with_msgid(find(recs, op="Create"), msgid), [])
        self.assertEqual(find(recs, proto="lmtp"), [])
        self.assertNoPluginErrors()


class PolicyTests(PluginTestCase):
    """carol's owner set lacks Update; subjects are off organisation-wide."""

    policy_kwargs = {
        "subjects": False,
        "mailboxes": [("carol", [a for a in ALL_ACTIONS if a != "Update"],
                       ALL_ACTIONS, ALL_ACTIONS)],
    }

    def test_removed_action_is_not_emitted(self):
        carol = self.dovecot.imap("carol")
        self.addCleanup(carol.logout)
        msgid = new_msgid("pol")
        carol.append("INBOX", None, None, message(msgid, "Secret subject"))
        carol.select("INBOX")
        uid = uid_of(carol, msgid)
        carol.uid("STORE", str(uid), "+FLAGS", "(\\Flagged)")
        carol.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
        recs = self.receiver.wait_for(lambda rs: with_msgid(find(rs, op="SoftDelete", user="carol"), msgid))
        self.assertTrue(recs, "SoftDelete is still audited")
        create = with_msgid(find(self.receiver.snapshot(), op="Create", user="carol"), msgid)
        self.assertEqual(len(create), 1)
        self.assertIsNone(create[0]["items"][0]["subject"], "subjects=no")
        self.assertIsNone(recs[0]["items"][0]["subject"])
        self.assertEqual(find(self.receiver.snapshot(), op="Update", user="carol"), [])
        # the same change by another owner is audited (default set)
        bob = self.dovecot.imap("bob")
        self.addCleanup(bob.logout)
        bmsg = new_msgid("polb")
        bob.append("INBOX", None, None, message(bmsg, "Bob subject"))
        bob.select("INBOX")
        bob.uid("STORE", str(uid_of(bob, bmsg)), "+FLAGS", "(\\Flagged)")
        recs = self.receiver.wait_for(lambda rs: with_msgid(find(rs, op="Update", user="bob"), bmsg))
        self.assertTrue(recs)
        self.assertIsNone(recs[0]["items"][0]["subject"])
        self.assertEqual(recs[0]["items"][0]["msgid"], bmsg)



class SystemActionTests(PluginTestCase):
    """autoexpunge and auto=create are SystemService; doveadm move is a move."""

    extra_conf = ("namespace inbox {\n  mailbox Junk {\n    auto = create\n"
                  "    autoexpunge = 1s\n  }\n}\n")

    def test_autoexpunge_and_autocreate(self):
        msgid = new_msgid("junk")
        alice = self.dovecot.imap("alice")
        alice.append("Junk", None, None, message(msgid, "Junk"))
        alice.logout()
        rec = self.wait_op(op="FolderCreate", folder="Junk")[0]
        self.assertSession(rec, "alice", "alice", "SystemService")
        time.sleep(1.5)
        alice = self.dovecot.imap("alice")
        alice.select("Junk")
        alice.logout()
        recs = self.receiver.wait_for(lambda rs: with_msgid(find(rs, op="HardDelete"), msgid))
        self.assertTrue(recs, "autoexpunge not reported")
        self.assertSession(recs[0], "alice", "alice", "SystemService")
        self.assertEqual(recs[0]["folder"], "Junk")

    def test_doveadm_move_is_not_hard_delete(self):
        msgid = new_msgid("dmove")
        bob = self.dovecot.imap("bob")
        bob.append("INBOX", None, None, message(msgid, "Move me"))
        bob.logout()
        self.dovecot.doveadm("move", "-u", "bob", "Trash", "mailbox", "INBOX",
                             "HEADER", "Message-ID", msgid)
        recs = self.receiver.wait_for(lambda rs: with_msgid(find(rs, op="MoveToDeletedItems"), msgid))
        self.assertTrue(recs)
        self.assertSession(recs[0], "doveadm", "bob", "Admin", proto="doveadm")
        self.assertEqual((recs[0]["folder"], recs[0]["dfolder"]), ("INBOX", "Trash"))
        time.sleep(0.3)
        self.assertEqual(with_msgid(find(self.receiver.snapshot(), op="HardDelete"), msgid), [])


if __name__ == "__main__":
    unittest.main()
