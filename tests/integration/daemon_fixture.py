# SPDX-License-Identifier: MIT
"""mailauditd for integration tests, in a temporary directory.

MailauditDaemon writes a mailaudit.conf whose paths all live in a fresh
temporary directory, starts the built mailauditd in the foreground, waits
for its sockets, runs mailauditctl against it and stops it by pid (SIGTERM,
then SIGKILL) even when a test fails.  Also a minimal sensor: encode a
record frame (docs/PROTOCOL.md) and send it over SOCK_SEQPACKET.

Python standard library only.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid


def build_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("MAILAUDIT_BUILD_DIR",
                          os.path.join(here, "..", "..", "build"))


def escape(value):
    """%XX-escape bytes below 0x20, 0x7f and '%' (ma-proto.h)."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    out = bytearray()
    for b in value:
        if b < 0x20 or b == 0x7F or b == 0x25:
            out += b"%%%02X" % b
        else:
            out.append(b)
    return bytes(out)


def uuid7(ms=None):
    ms = int(time.time() * 1000) if ms is None else ms
    raw = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(raw)))


def frame(op="Update", user="alice", mbox="alice", logon="Owner",
          items=(), props=(), rid=None, t=None, **fields):
    """One record frame. fields: folder, dfolder, sess, ip, client, ..."""
    t = int(time.time() * 1000) if t is None else t
    lines = [b"v=1", b"id=" + (rid or uuid7(t)).encode(),
             b"t=%d" % t, b"op=" + escape(op), b"res=Succeeded",
             b"logon=" + escape(logon), b"user=" + escape(user),
             b"mbox=" + escape(mbox)]
    for k, v in fields.items():
        lines.append(k.encode() + b"=" + escape(v))
    for uid, msgid, subject in items:
        lines.append(b"item=%d\t" % uid + escape(msgid or "") + b"\t" +
                     escape(subject or "") + b"\t0")
    for name, old, new in props:
        lines.append(b"prop=" + escape(name) + b"\t" + escape(old or "") +
                     b"\t" + escape(new or ""))
    return b"\n".join(lines) + b"\n\n"


class Sensor:
    """A SOCK_SEQPACKET connection to the ingest socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(5)
        self.sock.connect(path)

    def send(self, data):
        self.sock.send(data)

    def wait_ack(self, n, timeout=5.0):
        """Read acks until one says at least n; return the last count."""
        deadline = time.monotonic() + timeout
        last = 0
        while last < n and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(256)
            except (socket.timeout, ConnectionResetError):
                break
            if not data:
                break
            for line in data.decode().split("\n"):
                if line.startswith("ack="):
                    last = int(line[4:])
        return last

    def closed_by_peer(self, timeout=3.0):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(256) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def stop_process(proc, sig=signal.SIGTERM, timeout=15):
    """Signal a Popen child, wait for it, SIGKILL it if it will not go."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class MailauditDaemon:
    """options override the test defaults below (e.g. sync_full="yes" for
    the daemon's own default); extra_conf is appended verbatim."""

    DEFAULTS = {
        "spool_scan_interval_ms": "100",
        "server_name": "mx-test.example",
        "organization_name": "example.test",
        "organization_id": "0b5d1c7e-3a3c-4b0e-8d1e-6f2a9a6b7c01",
        "sync_full": "no",
    }

    def __init__(self, extra_conf="", tmpdir=None, options=None):
        self.dir = tmpdir or tempfile.mkdtemp(prefix="mailauditd-test-")
        self.own_dir = tmpdir is None
        # Dovecot's mail processes (another uid) must reach the socket and
        # the spool inside; the daemon creates the store itself 0600.
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "mailaudit.conf")
        self.store = os.path.join(self.dir, "audit.db")
        self.socket = os.path.join(self.dir, "run", "ingest.sock")
        self.control = os.path.join(self.dir, "run", "control.sock")
        self.spool = os.path.join(self.dir, "spool")
        self.snapshot = os.path.join(self.dir, "policy.snapshot")
        self.log = os.path.join(self.dir, "mailauditd.log")
        self.proc = None
        opts = dict(self.DEFAULTS)
        opts.update(options or {})
        with open(self.conf, "w") as f:
            f.write("# written by tests/integration/daemon_fixture.py\n")
            f.write("store_path = %s\nsocket_path = %s\n"
                    "control_socket_path = %s\nspool_dir = %s\n"
                    "policy_snapshot_path = %s\n" % (
                        self.store, self.socket, self.control, self.spool,
                        self.snapshot))
            for key, value in opts.items():
                f.write("%s = %s\n" % (key, value))
            f.write(extra_conf)

    def binary(self, name):
        sub = "daemon" if name == "mailauditd" else "cli"
        return os.path.join(build_dir(), "src", sub, name)

    def start(self, timeout=10.0, nofile=None):
        def limit():
            if nofile is not None:
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [self.binary("mailauditd"), "-f", "-c", self.conf],
            stdout=self.logf, stderr=subprocess.STDOUT, preexec_fn=limit)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mailauditd exited: " + self.log_text())
            if os.path.exists(self.socket) and os.path.exists(self.control) \
                    and os.path.exists(self.snapshot):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("mailauditd did not start: " + self.log_text())

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return
        stop_process(self.proc, sig)
        self.proc = None
        self.logf.close()

    def cleanup(self):
        self.stop()
        if self.own_dir and not os.environ.get("MAILAUDIT_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def ctl(self, *args, check=True):
        res = subprocess.run([self.binary("mailauditctl"), "-c", self.conf]
                             + list(args), capture_output=True, text=True,
                             timeout=30)
        if check and res.returncode != 0:
            raise AssertionError("mailauditctl %s failed (%d): %s" %
                                 (" ".join(args), res.returncode,
                                  res.stderr))
        return res

    def records(self, *filters):
        """All matching records as Management Activity JSON dicts."""
        res = self.ctl("search", "--format", "json", "--oldest-first",
                       "--result-size", "1000000", *filters)
        return [json.loads(line) for line in res.stdout.splitlines()
                if line.strip()]

    def wait_records(self, n, *filters, timeout=10.0):
        """Flush and search until at least n records match (or timeout);
        returns what matched last."""
        deadline = time.monotonic() + timeout
        recs = []
        while time.monotonic() < deadline:
            self.ctl("flush")
            recs = self.records(*filters)
            if len(recs) >= n:
                return recs
            time.sleep(0.1)
        return recs

    def sensor(self):
        return Sensor(self.socket)
