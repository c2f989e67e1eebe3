# SPDX-License-Identifier: MIT
"""Shared helpers for the bench/run-* scripts (Python 3 standard library).

Daemon: the integration tests' mailauditd fixture
(tests/integration/daemon_fixture.py) with the daemon's own defaults
(sync_full = yes, 1 s spool scans) instead of the tests' faster settings.
Everything started here is stopped by pid (SIGTERM, then SIGKILL), also
when a run fails or is interrupted: see Cleanup.
"""

import atexit
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from daemon_fixture import MailauditDaemon  # noqa: E402
BUILD = os.environ.get("MAILAUDIT_BUILD_DIR", os.path.join(ROOT, "build"))
SEND = os.path.join(BUILD, "bench", "ma-bench-send")
SQLITE = os.path.join(BUILD, "bench", "ma-bench-sqlite")
MAILAUDITD = os.path.join(BUILD, "src", "daemon", "mailauditd")
MAILAUDITCTL = os.path.join(BUILD, "src", "cli", "mailauditctl")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Cleanup:
    """Stops registered callbacks on exit, SIGTERM, SIGINT and SIGHUP."""

    funcs = []

    @classmethod
    def add(cls, fn):
        cls.funcs.append(fn)

    @classmethod
    def run(cls):
        while cls.funcs:
            fn = cls.funcs.pop()
            try:
                fn()
            except Exception as e:  # keep cleaning up the rest
                print("cleanup: %s" % e, file=sys.stderr)


def _on_signal(signum, frame):
    raise SystemExit(128 + signum)


atexit.register(Cleanup.run)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


def kill_pid(proc, timeout=10.0):
    """Stop a Popen we started: SIGTERM, wait, SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def need_binaries(*paths):
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        sys.exit("not built: %s (run: ninja -C %s)" % (", ".join(missing),
                                                       BUILD))


def proc_cpu_seconds(pid):
    """utime + stime of pid (not children) in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status(pid, keys=("VmRSS", "VmHWM")):
    """{key: kB} from /proc/<pid>/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0])
    return out


def children(pid):
    """Direct children of pid (from /proc/<pid>/task/*/children)."""
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def proc_name(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


class CpuSampler:
    """Machine-wide busy CPU seconds between start() and stop() (all
    processes), to show how much of the 2 cores other work used."""

    def _read(self):
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return (sum(v) - idle) / CLK_TCK, sum(v) / CLK_TCK

    def start(self):
        self.b0, self.t0 = self._read()
        return self

    def stop(self):
        b1, t1 = self._read()
        self.busy = b1 - self.b0
        self.total = t1 - self.t0
        return self.busy


class Daemon(MailauditDaemon):
    """The test fixture's mailauditd with the daemon's own defaults
    (sync_full = yes, 1 s spool scans) instead of the tests' faster ones,
    stopped by Cleanup whatever happens."""

    def __init__(self, base=None, **options):
        opts = {"server_name": "mx-bench.example", "sync_full": "yes",
                "spool_scan_interval_ms": "1000"}
        opts.update(options)
        super().__init__(tmpdir=tempfile.mkdtemp(prefix="ma-bench-",
                                                 dir=base), options=opts)
        self.own_dir = True
        self.pid = None
        Cleanup.add(self.cleanup)

    def start(self, timeout=10.0):
        super().start(timeout)
        self.pid = self.proc.pid
        return self

    def cleanup(self):
        self.stop()
        if not os.environ.get("MA_BENCH_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def ctl(self, *args):
        return super().ctl(*args).stdout

    def status(self):
        out = {}
        for line in self.ctl("status").splitlines():
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
        return out


def run_sender(socket_path, conns, window, duration=None, count=None,
               seed=None, verbose=False, timeout=None):
    """Run ma-bench-send (Popen, stopped by pid on failure); return its
    key=value result line as a dict."""
    cmd = [SEND, "-s", socket_path, "-c", str(conns), "-w", str(window)]
    if duration:
        cmd += ["-d", str(duration)]
    if count:
        cmd += ["-n", str(count)]
    if seed:
        cmd += ["-S", str(seed)]
    if verbose:
        cmd += ["-v"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    Cleanup.add(lambda: kill_pid(proc))
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        kill_pid(proc)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d)" % (" ".join(cmd),
                                               proc.returncode))
    return parse_kv(out)


def parse_kv(line):
    out = {}
    for word in line.split():
        k, _, v = word.partition("=")
        try:
            out[k] = float(v) if "." in v else int(v)
        except ValueError:
            out[k] = v
    return out


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return "nproc=%d cpu=%s kernel=%s python=%s\n# %s" % (
        os.cpu_count(), model, platform.release(),
        platform.python_version(), provenance())


def provenance():
    """Which code is measured: HEAD, whether src/ differs from it, and
    when the binaries under test were built (others commit concurrently)."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT] + list(args),
                              capture_output=True, text=True).stdout.strip()
    stamp = os.path.join(ROOT, ".source-commit")  # an exported tree
    if os.path.exists(stamp):
        with open(stamp) as f:
            head, dirty = f.read().strip() + " (exported to %s)" % ROOT, ""
    else:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "src")
    built = []
    for p in (MAILAUDITD, os.path.join(BUILD, "src", "dovecot",
                                       "lib90_mailaudit_plugin.so")):
        if os.path.exists(p):
            built.append("%s built %s" % (
                os.path.basename(p),
                time.strftime("%H:%M:%S", time.gmtime(os.path.getmtime(p)))))
    return "HEAD %s%s; %s" % (head, " (src/ modified)" if dirty else "",
                              ", ".join(built))


def table(headers, rows):
    """A Markdown table."""
    cols = [str(h) for h in headers]
    out = ["| " + " | ".join(cols) + " |",
           "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(out)
