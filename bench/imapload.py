# SPDX-License-Identifier: MIT
"""The IMAP load of bench/run-imap and bench/run-memory: one client
process per user, each doing a fixed number of iterations of a fixed mix
(APPEND, SELECT, UID FETCH BODY[], UID STORE flags, UID COPY, UID MOVE,
SELECT Trash, UID STORE \\Deleted, EXPUNGE = 9 commands per iteration).
Clients start together (a barrier after LOGIN), report (t0, t1, ops) and
hold their session open until the parent has looked at their imap
processes, then LOGOUT.
"""

import imaplib
import multiprocessing as mp
import re
import time

MESSAGE = (b"From: carol@example.test\r\nTo: %s@example.test\r\n"
           b"Subject: Quarterly figures %d\r\n"
           b"Message-ID: <bench-%s-%d@example.test>\r\n"
           b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n" +
           b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n" * 40)
OPS_PER_ITER = 9


def _ok(res, what):
    typ, data = res
    if typ != "OK":
        raise RuntimeError("%s: %s %r" % (what, typ, data))
    return data


def session(conn, user, iters):
    """The mix, iters times; returns the number of commands."""
    ops = 0
    for i in range(iters):
        data = _ok(conn.append("INBOX", None, None,
                               MESSAGE % (user.encode(), i, user.encode(),
                                          i)), "APPEND")
        m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
        if not m:
            raise RuntimeError("no APPENDUID: %r" % data)
        uid = m.group(1).decode()
        _ok(conn.select("INBOX"), "SELECT")
        _ok(conn.uid("FETCH", uid, "(BODY[])"), "FETCH")
        _ok(conn.uid("STORE", uid, "+FLAGS", "(\\Flagged)"), "STORE")
        _ok(conn.uid("COPY", uid, "Archive"), "COPY")
        _ok(conn.uid("MOVE", uid, "Trash"), "MOVE")
        _ok(conn.select("Trash"), "SELECT Trash")
        _ok(conn.uid("STORE", "1:*", "+FLAGS", "(\\Deleted)"), "STORE")
        _ok(conn.expunge(), "EXPUNGE")
        ops += OPS_PER_ITER
    return ops


def _client(port, user, iters, barrier, results, hold):
    try:
        conn = imaplib.IMAP4("127.0.0.1", port, timeout=60)
        conn.login(user, "pw")
        barrier.wait(60)
        t0 = time.monotonic()
        ops = session(conn, user, iters)
        t1 = time.monotonic()
        results.put((user, t0, t1, ops, None))
        hold.wait(120)
        conn.logout()
    except Exception as e:  # report, never hang the parent
        results.put((user, 0, 0, 0, repr(e)))
        try:
            barrier.abort()
        except Exception:
            pass


def run(port, users, iters, at_end=None):
    """Run one client process per user; return (ops, seconds, per-client).
    at_end() is called while every session is still open."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(len(users))
    hold = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(port, u, iters, barrier,
                                               results, hold))
             for u in users]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=600) for _ in users]
        errors = [g for g in got if g[4]]
        if errors:
            raise RuntimeError("client failed: %s" % (errors,))
        extra = at_end() if at_end else None
    finally:
        hold.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()  # our own child, by pid
                p.join(5)
    ops = sum(g[3] for g in got)
    secs = max(g[2] for g in got) - min(g[1] for g in got)
    return ops, secs, got, extra
