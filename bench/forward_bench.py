# SPDX-License-Identifier: MIT
"""Helpers of bench/run-forward: records/s from the store to rsyslog.

One rsyslogd (tests/integration/rsyslog_fixture.py, writing each message
as one raw line) takes, per transport, first the N records of a prefilled
store from mailaudit-forward, then the very same N messages (the lines it
just wrote) from ma-bench-forward-send, a plain client with nothing else
to do.  Both are timed end to end: from the start of the sender until
rsyslog has written the last line.  CPU seconds of the sender and of
rsyslogd are reported beside each, so a run shows who was the bottleneck.
Everything started here is stopped by pid (benchlib.Cleanup).
"""

import os
import subprocess
import sys
import tempfile
import time

import benchlib as bl

sys.path.insert(0, os.path.join(bl.ROOT, "tests", "integration"))
from forward_fixture import Forwarder, forward_binary  # noqa: E402
from rsyslog_fixture import Rsyslog  # noqa: E402

# The product's defaults, not the tests' short intervals.
FORWARD_OPTIONS = {"forward_poll_ms": "100",
                   "forward_state_interval_ms": "1000",
                   "forward_backoff_max_ms": "60000"}
SENDER_MODE = {"tcp": "tcp", "tls": "tls", "relp": "relp",
               "relp_tls": "relp-tls"}


def build_sender(outdir=None):
    """ma-bench-forward-send from the meson build (bench/meson.build)."""
    out = os.path.join(bl.BUILD, "bench", "ma-bench-forward-send")
    if not os.path.exists(out):
        sys.exit("%s not built: run ninja -C %s" % (out, bl.BUILD))
    return out


def forward_line(rs, inp, batch=None):
    p = rs.pki
    line = {
        "tcp": "b syslog %s",
        "tls": "b syslog-tls %s ca=" + p.ca + " cert=" + p.client_cert +
               " key=" + p.client_key,
        "relp": "b relp %s",
        "relp_tls": "b relp %s tls=yes peer_name=localhost ca=" + p.ca +
                    " cert=" + p.client_cert + " key=" + p.client_key,
    }[inp] % rs.target(inp)
    if batch:
        line += " batch=%d" % batch
    return line


def wait_lines(rs, inp, n, timeout):
    deadline = time.monotonic() + timeout
    while rs.count(inp) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("%s: %d of %d lines after %.0f s" % (
                inp, rs.count(inp), n, timeout))
        time.sleep(0.01)
    return time.monotonic()


def run_forwarder(daemon, rs, inp, n, batch, timeout):
    """mailaudit-forward from cursor 0 to rsyslog input inp; returns
    {seconds, rate, cpu, rsyslog_cpu}."""
    base = rs.count(inp)
    state = os.path.join(daemon.dir, "forward")
    subprocess.run(["rm", "-rf", state])
    fw = Forwarder(daemon, [forward_line(rs, inp, batch)],
                   options=dict(FORWARD_OPTIONS,
                                forward_state_dir=state),
                   conf_name="forward-%s.conf" % inp)
    bl.Cleanup.add(fw.stop)
    rs_cpu0 = bl.proc_cpu_seconds(rs.pid)
    machine = bl.CpuSampler().start()
    t0 = time.monotonic()
    fw.start(timeout=30)
    try:
        t1 = wait_lines(rs, inp, base + n, timeout)
        cpu = bl.proc_cpu_seconds(fw.pid)
        rs_cpu = bl.proc_cpu_seconds(rs.pid) - rs_cpu0
        busy = machine.stop()
        rss = bl.proc_status(fw.pid).get("VmHWM", 0)
    finally:
        fw.stop()
    return {"seconds": t1 - t0, "rate": n / (t1 - t0), "cpu": cpu,
            "rsyslog_cpu": rs_cpu, "hwm_kib": rss,
            "other": other_load(busy, cpu + rs_cpu, t1 - t0)}


def other_load(busy, ours, seconds):
    """Share of the machine's cores used by everything but the sender
    and rsyslogd while a run lasted (other helpers, the bench itself)."""
    return max(0.0, busy - ours) / (seconds * os.cpu_count())


def run_raw(sender, rs, inp, msgs_file, n, timeout):
    """ma-bench-forward-send with the same messages; same measures."""
    base = rs.count(inp)
    p = rs.pki
    cmd = [sender, "-m", SENDER_MODE[inp], "-p", str(rs.ports[inp]),
           "-C", p.ca, "-c", p.client_cert, "-k", p.client_key, msgs_file]
    rs_cpu0 = bl.proc_cpu_seconds(rs.pid)
    machine = bl.CpuSampler().start()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    bl.Cleanup.add(lambda: bl.kill_pid(proc))
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d)" % (" ".join(cmd),
                                               proc.returncode))
    t1 = wait_lines(rs, inp, base + n, timeout)
    busy = machine.stop()
    r = bl.parse_kv(out)
    rs_cpu = bl.proc_cpu_seconds(rs.pid) - rs_cpu0
    return {"seconds": t1 - t0, "rate": n / (t1 - t0), "cpu": r["cpu"],
            "client_seconds": r["seconds"], "rsyslog_cpu": rs_cpu,
            "other": other_load(busy, r["cpu"] + rs_cpu, t1 - t0)}


def last_lines(rs, inp, n, path):
    """The last n lines rsyslog wrote for inp, into path; mean bytes."""
    with open(rs.output(inp), "rb") as f:
        lines = f.read().split(b"\n")[:-1][-n:]
    with open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return sum(len(x) for x in lines) / max(1, len(lines))


def prefill(daemon, n):
    """n records through mailauditd (ma-bench-send), all acknowledged."""
    r = bl.run_sender(daemon.socket, 4, 2048, count=n, timeout=600)
    if int(r["acked"]) != n:
        raise RuntimeError("prefill: %s of %d acked" % (r["acked"], n))
    return r


def setup(base):
    bl.need_binaries(bl.SEND, bl.MAILAUDITD, bl.MAILAUDITCTL,
                     forward_binary())
    work = tempfile.mkdtemp(prefix="ma-bench-forward-", dir=base)
    bl.Cleanup.add(lambda: subprocess.run(["rm", "-rf", work]))
    return work


def start_rsyslog(work):
    rs = Rsyslog(tmpdir=os.path.join(work, "rsyslog"), output="raw")
    bl.Cleanup.add(rs.stop)
    rs.start()
    return rs
