# SPDX-License-Identifier: MIT
"""mailaudit-milter for the integration tests.

MilterFixture writes a mailaudit.conf for the milter (the daemon fixture's
ingest socket, spool and policy snapshot, plus the milter's own keys),
starts build/src/milter/mailaudit-milter in the foreground and stops it by
pid.  The milter's unix socket lives in a directory Postfix's processes
(user postfix) can enter, with group postfix and mode 0660, as in a real
installation.

Python standard library only.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

from daemon_fixture import build_dir, stop_process


class MilterFixture:
    def __init__(self, daemon, options=None, rules=(), tmpdir=None):
        self.dir = tmpdir or tempfile.mkdtemp(prefix="mailaudit-milter-")
        self.own_dir = tmpdir is None
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "milter.sock")
        self.journal_spool = os.path.join(self.dir, "journal")
        self.conf = os.path.join(self.dir, "milter.conf")
        self.log = os.path.join(self.dir, "milter.log")
        self.proc = None
        self.returncode = None
        opts = {
            "socket_path": daemon.socket,
            "spool_dir": daemon.spool,
            "policy_snapshot_path": daemon.snapshot,
            "server_name": "mx-test.example",
            "milter_socket": "unix:" + self.socket,
            "milter_socket_group": "postfix",
            "local_domains": "example.test",
            "mailbox_names": "localpart",
            "journal_spool_dir": self.journal_spool,
        }
        opts.update(options or {})
        self.opts = opts
        self.rules = list(rules)
        self._write()

    def _write(self):
        with open(self.conf, "w") as f:
            f.write("# written by tests/integration/milter_fixture.py\n")
            for key, value in self.opts.items():
                f.write("%s = %s\n" % (key, value))
            for rule in self.rules:
                f.write("journal_rule = %s\n" % rule)

    def options_file_add(self, key, value):
        """Set key in the config file (read at the next start())."""
        self.opts[key] = value
        self._write()

    def cleanup(self):
        self.stop()
        if self.own_dir and not os.environ.get("MAILAUDIT_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def postfix_spec(self):
        """The milter as Postfix's smtpd_milters names it."""
        return "unix:" + self.socket

    def binary(self):
        """The built milter (self is unused: tests may swap this for a
        wrapper, e.g. valgrind)."""
        return os.path.join(build_dir(), "src", "milter", "mailaudit-milter")

    def start(self, timeout=10.0):
        # A socket left by the last run must not look like a ready milter.
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([self.binary(), "-f", "-c", self.conf],
                                     stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mailaudit-milter exited %d:\n%s" %
                                   (self.proc.returncode, self.log_text()))
            if os.path.exists(self.socket) and \
                    os.stat(self.socket).st_mode & 0o060 == 0o060:
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("mailaudit-milter did not start:\n" +
                           self.log_text())

    def stop(self, sig=signal.SIGTERM):
        """Stop it; self.returncode tells how it ended (0: clean)."""
        if self.proc is None:
            return
        stop_process(self.proc, sig)
        self.returncode = self.proc.returncode
        self.proc = None

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def journal_status(self):
        """The delivery thread's status file as a dict."""
        path = os.path.join(self.journal_spool, "status")
        try:
            with open(path) as f:
                return dict(line.split(" = ", 1) for line in
                            f.read().splitlines() if " = " in line)
        except FileNotFoundError:
            return {}

    def journal_queued(self):
        """Items waiting in the journal spool: large ones as files in
        new/ (their names) and the rest in the log (as "log:SEG:OFF"),
        read here independently of the milter's own code."""
        try:
            files = sorted(os.listdir(os.path.join(self.journal_spool, "new")))
        except FileNotFoundError:
            files = []
        return files + journal_log_items(os.path.join(self.journal_spool,
                                                      "log"))


def journal_log_items(logdir):
    """The items after the cursor in a journal log directory (format in
    src/lib/ma-jlog.h): "log:SEG:OFF" for each whole item."""
    import zlib
    try:
        names = sorted(n for n in os.listdir(logdir) if n.endswith(".log"))
    except FileNotFoundError:
        return []
    seg0, off0 = 0, 0
    try:
        with open(os.path.join(logdir, "cursor")) as f:
            a, b = f.read().split()
            seg0, off0 = int(a, 16), int(b)
    except (FileNotFoundError, ValueError):
        pass
    out = []
    for name in names:
        seg = int(name[:16], 16)
        if seg < seg0:
            continue
        with open(os.path.join(logdir, name), "rb") as f:
            data = f.read()
        pos = off0 if seg == seg0 else 0
        while True:
            nl = data.find(b"\r\n", pos)
            if nl < 0 or not data.startswith(b"MAJ1 ", pos):
                break
            fields = data[pos + 5:nl].split(b" ", 3)
            length, crc = int(fields[0]), int(fields[1], 16)
            body = data[nl + 2:nl + 2 + length]
            if len(body) != length or zlib.crc32(body) != crc or \
                    data[nl + 2 + length:nl + 4 + length] != b"\r\n":
                break
            out.append("log:%s:%d" % (name[:16], pos))
            pos = nl + 4 + length
    return out
