#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The README's first command: install, build, and show mailaudit at work.

Installs missing Debian packages, builds with meson, then starts a
sandboxed mailauditd and a sandboxed Dovecot (loopback ports, a temporary
directory, the mailaudit plugin loaded) and exercises them as a real user
would: alice works in her own mailbox (Owner), shares her INBOX with bob
who reads and deletes there (Delegate), an administrator logs in as alice
through a master user and runs doveadm (Admin).  It then prints the audit
log and stops everything it started, by pid.

Needs root (Dovecot's mail processes switch to a mail uid).  Keep the
sandbox with --keep.
"""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MAILAUDIT_BUILD_DIR", os.path.join(ROOT, "build"))
os.environ["MAILAUDIT_BUILD_DIR"] = BUILD
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def step(text):
    print("\n==> " + text, flush=True)


def build():
    step("installing Debian packages (if missing) and building")
    if subprocess.run([os.path.join(ROOT, "scripts", "install-deps")]
                      ).returncode != 0:
        sys.exit("install-deps failed")
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        subprocess.run(["meson", "setup", BUILD, ROOT], check=True,
                       stdout=subprocess.DEVNULL)
    subprocess.run(["ninja", "-C", BUILD], check=True,
                   stdout=subprocess.DEVNULL)


MESSAGE = (b"From: carol@example.test\r\nTo: alice@example.test\r\n"
           b"Subject: %s\r\nMessage-ID: <%s@example.test>\r\n\r\n"
           b"Hello.\r\n")


def exercise(dov, daemon):
    step("alice (owner): login, create a folder, save, flag, move, delete")
    a = dov.imap("alice")
    a.create("Projects")
    for i, subj in enumerate([b"Q3 budget", b"Board minutes", b"Payroll"]):
        a.append("INBOX", None, None, MESSAGE % (subj, b"demo%d" % i))
    a.select("INBOX")
    a.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
    a.uid("COPY", "1", "Projects")
    a.uid("MOVE", "2", "Trash")
    a._simple_command("SETACL", "INBOX", "bob", "lrswite")
    a.logout()

    step("bob (delegate): reads alice's shared INBOX and deletes a message")
    b = dov.imap("bob")
    b.select('"shared/alice/INBOX"')
    b.uid("FETCH", "1", "(BODY[])")
    b.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
    b.expunge()
    b.logout()

    step("admin (master user alice*admin, then doveadm): reads and purges")
    m = dov.imap("alice*admin", "adminpw")
    m.select("INBOX")
    m.uid("FETCH", "1", "(BODY[])")
    m.logout()
    dov.doveadm("expunge", "-u", "alice", "mailbox", "Trash", "all")


def show(daemon):
    daemon.ctl("flush")
    step("the audit log (mailauditctl search --oldest-first)")
    res = daemon.ctl("search", "--oldest-first")
    sys.stdout.write(res.stdout)
    sys.stdout.write(res.stderr)
    recs = daemon.records()
    by_logon = {}
    for r in recs:
        by_logon.setdefault(r["LogonType"], []).append(r["Operation"])
    step("records by logon type (0 Owner, 1 Admin, 2 Delegate)")
    for lt in sorted(by_logon):
        print("  LogonType %d: %d records: %s" % (
            lt, len(by_logon[lt]), ", ".join(sorted(set(by_logon[lt])))))
    step("one record as a SIEM receives it (--format json)")
    res = daemon.ctl("search", "--format", "json", "--result-size", "1",
                     "--logon-types", "Delegate", "--operations",
                     "SoftDelete")
    print(res.stdout.strip())
    missing = {0, 1, 2} - set(by_logon)
    if missing:
        sys.exit("demo: no records of logon type(s) %s" % sorted(missing))


def main():
    keep = "--keep" in sys.argv[1:]
    build()
    from daemon_fixture import MailauditDaemon
    from dovecot_fixture import DovecotFixture

    daemon = MailauditDaemon()
    dov = None
    try:
        step("starting mailauditd in %s" % daemon.dir)
        daemon.start()
        dov = DovecotFixture(socket_path=daemon.socket,
                             spool_dir=daemon.spool,
                             policy_path=daemon.snapshot,
                             server="demo.example.test")
        step("starting Dovecot with the mailaudit plugin (IMAP on "
             "127.0.0.1, sandbox %s)" % dov.dir)
        dov.start()
        exercise(dov, daemon)
        time.sleep(0.2)
        show(daemon)
    finally:
        if dov is not None:
            dov.stop() if keep else dov.cleanup()
        if keep:
            daemon.stop()
            print("\nkept: %s and %s" % (daemon.dir,
                                         dov.dir if dov else "-"))
        else:
            daemon.cleanup()
    step("done: Dovecot and mailauditd stopped")


if __name__ == "__main__":
    main()
