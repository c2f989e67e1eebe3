# SPDX-License-Identifier: MIT
"""mailaudit-forward for integration tests, and readers of what it sent.

Forwarder writes its own mailaudit.conf next to a MailauditDaemon's: the
daemon's file (store, sockets, organisation) plus forward_state_dir in the
daemon's temporary directory, the given `forward = ...` lines and any
other forward_* options; starts the built mailaudit-forward in the
foreground with it, stops it by pid (SIGTERM, or SIGKILL for a crash),
reads the state files (forward_state_dir/NAME.state, NAME.rejected) and
`mailauditctl forward status --json`.

parse_syslog() splits an RFC 5424 message into its header, its
structured data (parameter values unescaped) and MSG; parse_cef() splits
a CEF 0 line into header and extensions (unescaped).  Both are strict:
anything that does not parse raises ValueError, so a forged field or a
broken frame makes a test fail instead of being skipped over.

Python standard library only.
"""

import json
import os
import re
import signal
import subprocess
import time

from daemon_fixture import build_dir, stop_process


def forward_binary():
    return os.path.join(build_dir(), "src", "forward", "mailaudit-forward")


def have_forwarder():
    """Why the forwarding tests cannot run, or None."""
    path = forward_binary()
    if not os.access(path, os.X_OK):
        return "%s not built" % path
    return None


class Forwarder:
    """mailaudit-forward reading daemon's store.

    forwards: the values of the forward lines ("NAME TYPE TARGET opt=v");
    None: those of the daemon's own mailaudit.conf.
    options: other keys (forward_poll_ms, forward_state_interval_ms,
    forward_backoff_max_ms, syslog_*); tests default to short intervals."""

    DEFAULTS = {
        "forward_poll_ms": "50",
        "forward_state_interval_ms": "200",
        "forward_backoff_max_ms": "2000",
    }

    def __init__(self, daemon, forwards, options=None, conf_name=None):
        self.daemon = daemon
        self.state_dir = os.path.join(daemon.dir, "forward")
        os.makedirs(self.state_dir, exist_ok=True)
        self.conf = os.path.join(daemon.dir, conf_name or "forward.conf")
        self.log = os.path.join(daemon.dir, "mailaudit-forward.log")
        self.proc = None
        with open(daemon.conf) as f:
            base = f.read()
        # Keys the daemon's file sets already (forwards=None: its forward
        # lines too, so that mailauditd and we see the same destinations)
        # are not written twice.
        base_keys = {}
        for line in base.splitlines():
            key, eq, value = line.partition("=")
            if eq and not line.lstrip().startswith("#"):
                base_keys.setdefault(key.strip(), []).append(value.strip())
        if forwards is None:
            forwards = []
            self.names = [v.split()[0] for v in base_keys.get("forward", [])]
        else:
            self.names = [f.split()[0] for f in forwards]
        opts = dict(self.DEFAULTS)
        opts.update(options or {})
        opts.setdefault("forward_state_dir", self.state_dir)
        if "forward_state_dir" in base_keys:
            self.state_dir = base_keys["forward_state_dir"][0]
        with open(self.conf, "w") as f:
            f.write(base)
            f.write("\n# written by tests/integration/forward_fixture.py\n")
            for key, value in opts.items():
                if key not in base_keys:
                    f.write("%s = %s\n" % (key, value))
            for line in forwards:
                f.write("forward = %s\n" % line)

    def command(self, *extra):
        return [forward_binary(), "-c", self.conf] + list(extra)

    def check(self, timeout=60):
        """mailaudit-forward --check: CompletedProcess (text)."""
        return subprocess.run(self.command("--check"), capture_output=True,
                              text=True, timeout=timeout)

    def start(self, timeout=10.0):
        """Start in the foreground; returns once it runs (and raises if it
        exits first).  A destination that cannot be reached does not make
        it exit: it keeps retrying."""
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.command("--foreground"),
                                     stdout=self.logf,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                self.logf.close()
                raise RuntimeError("mailaudit-forward exited (%d): %s"
                                   % (code, self.log_text()))
            if all(os.path.exists(self.state_path(n)) for n in self.names):
                return self
            time.sleep(0.02)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc is None:
            return None
        stop_process(self.proc, sig, timeout)
        code = self.proc.returncode
        self.proc = None
        self.logf.close()
        return code

    def kill(self):
        """SIGKILL: a crash, no chance to write the state files."""
        return self.stop(signal.SIGKILL)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def state_path(self, name, suffix=".state"):
        return os.path.join(self.state_dir, name + suffix)

    def state(self, name):
        """NAME.state as a dict (ints where the value is a number), or {}
        when it does not exist yet."""
        out = {}
        try:
            with open(self.state_path(name)) as f:
                for line in f:
                    line = line.rstrip("\n")
                    if not line or line.startswith("#"):
                        continue
                    key, _, value = line.partition("=")
                    out[key] = int(value) if re.fullmatch(r"-?\d+", value) \
                        else value
        except FileNotFoundError:
            pass
        return out

    def cursor(self, name):
        return self.state(name).get("cursor", 0)

    def wait_cursor(self, name, seq, timeout=15.0):
        """Wait until NAME's persisted cursor reaches seq; returns it."""
        deadline = time.monotonic() + timeout
        cur = self.cursor(name)
        while cur < seq and time.monotonic() < deadline:
            time.sleep(0.05)
            cur = self.cursor(name)
        return cur

    def rejected(self, name):
        """NAME.rejected: one JSON object per line."""
        try:
            with open(self.state_path(name, ".rejected")) as f:
                return [json.loads(l) for l in f if l.strip()]
        except FileNotFoundError:
            return []

    def ctl(self, *args, check=True):
        res = subprocess.run(
            [self.daemon.binary("mailauditctl"), "-c", self.conf] +
            list(args), capture_output=True, text=True, timeout=30)
        if check and res.returncode != 0:
            raise AssertionError("mailauditctl %s failed (%d): %s%s" % (
                " ".join(args), res.returncode, res.stdout, res.stderr))
        return res

    def status(self):
        """`mailauditctl forward status --json`, parsed, and the list of
        destinations in it as {name: {...}}."""
        res = self.ctl("forward", "status", "--json")
        doc = json.loads(res.stdout)
        dests = doc.get("destinations", doc) if isinstance(doc, dict) \
            else doc
        if isinstance(dests, list):
            dests = {d["name"]: d for d in dests}
        return doc, dests



class ForwarderCase:
    """Mixin for test cases with a MailauditDaemon in self.d: forwarder()
    starts a mailaudit-forward that stops when the test ends (its log is
    printed with MAILAUDIT_TEST_VERBOSE=1)."""

    def forwarder(self, forwards, start=True, **kw):
        fw = Forwarder(self.d, forwards, **kw)
        self.addCleanup(self.dump_on_failure, fw)
        self.addCleanup(fw.stop)
        if start:
            fw.start()
        return fw

    def dump_on_failure(self, fw):
        if os.environ.get("MAILAUDIT_TEST_VERBOSE"):
            print(fw.log_text())

def store_lines(daemon, *filters):
    """The store's records as `mailauditctl search --format json` prints
    them, oldest first: (seq, exact line text, parsed dict) each."""
    daemon.ctl("flush")
    res = daemon.ctl("search", "--format", "json", "--oldest-first",
                     "--result-size", "1000000", *filters)
    out = []
    for line in res.stdout.splitlines():
        if line.strip():
            rec = json.loads(line)
            out.append((rec["MailAuditSequence"], line, rec))
    return out


# RFC 5424 parsing -----------------------------------------------------

_HEADER = re.compile(
    r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ")
_SD_NAME = r"[^ =\]\"]{1,32}"


def parse_syslog(msg):
    """Split an RFC 5424 message (str) strictly.

    Returns {"pri", "timestamp", "hostname", "app", "procid", "msgid",
    "sd": [(sd_id, {param: value})], "msg"}; values unescaped (\\" \\\\
    \\]).  Raises ValueError on anything malformed."""
    m = _HEADER.match(msg)
    if m is None:
        raise ValueError("not an RFC 5424 header: %r" % msg[:120])
    out = {"pri": int(m.group(1)), "timestamp": m.group(2),
           "hostname": m.group(3), "app": m.group(4),
           "procid": m.group(5), "msgid": m.group(6), "sd": []}
    p = m.end()
    if msg.startswith("-", p):
        p += 1
    else:
        while msg.startswith("[", p):
            idm = re.compile(_SD_NAME).match(msg, p + 1)
            if idm is None:
                raise ValueError("bad SD-ID at %d: %r" % (p, msg[p:p + 40]))
            sd_id = idm.group(0)
            p = idm.end()
            params = {}
            while msg.startswith(" ", p):
                nm = re.compile(_SD_NAME + "=\"").match(msg, p + 1)
                if nm is None:
                    raise ValueError("bad SD-PARAM at %d: %r"
                                     % (p, msg[p:p + 40]))
                name = nm.group(0)[:-2]
                p = nm.end()
                value = []
                while True:
                    if p >= len(msg):
                        raise ValueError("unterminated SD value")
                    c = msg[p]
                    if c == "\\" and p + 1 < len(msg) and \
                            msg[p + 1] in "\"\\]":
                        value.append(msg[p + 1])
                        p += 2
                    elif c == "\"":
                        p += 1
                        break
                    elif c == "]":
                        raise ValueError("unescaped ] in SD value %s" % name)
                    else:
                        value.append(c)
                        p += 1
                if name in params:
                    raise ValueError("SD-PARAM %s twice" % name)
                params[name] = "".join(value)
            if not msg.startswith("]", p):
                raise ValueError("SD element not closed at %d: %r"
                                 % (p, msg[p:p + 40]))
            p += 1
            out["sd"].append((sd_id, params))
    if p == len(msg):
        out["msg"] = ""
    elif msg[p] == " ":
        out["msg"] = msg[p + 1:]
    else:
        raise ValueError("no space before MSG at %d" % p)
    if out["msg"].startswith("\ufeff"):
        out["msg"] = out["msg"][1:]
    return out


def parse_cef(text):
    """Split "CEF:0|vendor|product|version|class|name|severity|ext"
    strictly; returns (header list of 7, {key: value}) unescaped."""
    if not text.startswith("CEF:"):
        raise ValueError("not CEF: %r" % text[:60])
    fields, cur, i = [], [], 4
    while len(fields) < 7:
        if i >= len(text):
            raise ValueError("CEF header ends early")
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "\\|":
            cur.append(text[i + 1])
            i += 2
        elif c == "|":
            fields.append("".join(cur))
            cur = []
            i += 1
        elif c == "\\":
            raise ValueError("bad escape in CEF header")
        else:
            cur.append(c)
            i += 1
    ext_text = text[i:]
    # A value runs to the next unescaped " key=" (CEF keys are alnum).
    ext = {}
    starts = [m for m in re.finditer(r"(?:^| )([A-Za-z0-9_]+)=", ext_text)
              if not _escaped(ext_text, m.end() - 1)]
    for n, m in enumerate(starts):
        end = starts[n + 1].start() if n + 1 < len(starts) else \
            len(ext_text)
        raw = ext_text[m.end():end]
        value, j = [], 0
        while j < len(raw):
            if raw[j] == "\\" and j + 1 < len(raw):
                value.append({"n": "\n", "r": "\r"}.get(raw[j + 1],
                                                        raw[j + 1]))
                j += 2
            elif raw[j] == "=":
                raise ValueError("unescaped = in CEF value of %s"
                                 % m.group(1))
            else:
                value.append(raw[j])
                j += 1
        key = m.group(1)
        if key in ext:
            raise ValueError("CEF key %s twice" % key)
        ext[key] = "".join(value)
    if ext_text and (not starts or starts[0].start() != 0):
        raise ValueError("CEF extension does not start with a key")
    return fields, ext


def _escaped(s, pos):
    """s[pos] is preceded by an odd number of backslashes."""
    n = 0
    while pos - 1 - n >= 0 and s[pos - 1 - n] == "\\":
        n += 1
    return n % 2 == 1
