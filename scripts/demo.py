#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The README's first command: install, build, and show mailaudit at work.

Installs missing Debian packages, builds with meson, then starts a
sandboxed mailauditd, a sandboxed Dovecot (loopback ports, a temporary
directory, the mailaudit plugin loaded), mailaudit-milter and a sandboxed
Postfix delivering to that Dovecot, and exercises them as real users
would: alice works in her own mailbox (Owner), shares her INBOX with bob
who reads and deletes there (Delegate), an administrator logs in as alice
through a master user and runs doveadm (Admin); mail arrives from outside,
alice sends as carol (SendAs), every message is journaled as an envelope
report into a journal mailbox that only carol's security group may read
(stored by the milter in IMAP batches), and carol reads it (audited too).
A sandboxed rsyslog receives every record over syslog TLS from
mailaudit-forward, as a SIEM would.  It then prints the audit log and what
rsyslog got, and stops everything it started, by pid.

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


def mail(dov, daemon, milter, postfix):
    from postfix_fixture import message
    d = "@example.test"
    step("mail from outside to alice (MX port 127.0.0.1:%d)"
         % postfix.mx_port)
    data = message("eve@outside.test", ["alice" + d],
                   subject="Invoice overdue")
    postfix.wait_delivered(postfix.send("eve@outside.test", ["alice" + d],
                                        data))
    step("alice sends as carol through the submission port (SendAs; the "
         "sender login map allows it), Bcc to bob")
    data = message("carol" + d, ["x@partner.example"],
                   subject="Signed contract")
    qid = postfix.send("carol" + d, ["x@partner.example", "bob" + d], data,
                       port="submission", user="alice", password="alicepw")
    postfix.wait_deferred(qid)  # the partner copy never leaves the sandbox
    step("alice tries to send as bob: refused (550 5.7.1), and audited")
    try:
        postfix.send("alice" + d, ["carol" + d],
                     message("bob" + d, ["carol" + d], subject="forged"),
                     port="submission", user="alice", password="alicepw")
    except Exception as e:
        print("  refused: %s" % str(e).strip()[:100])
    step("restrict the journal mailbox to the group journal-readers")
    res = daemon.ctl("journal", "setup", "journal", "--group",
                     "journal-readers", "--dovecot-config", dov.conf)
    print("\n".join("  " + l for l in res.stdout.splitlines()
                    if "group=" in l or "owner" in l))
    step("carol (journal-readers) reads the journal; bob may not")
    deadline = time.monotonic() + 10
    while True:
        c = dov.imap("carol")
        c.state, c.is_readonly = "SELECTED", True
        typ, resp = c._simple_command("SELECT", '"shared/journal/INBOX"')
        typ, hits = c.uid("SEARCH", None, "ALL")
        if len(hits[0].split()) >= 2 or time.monotonic() > deadline:
            break
        c.logout()
        time.sleep(0.2)
    uid = hits[0].split()[-1]
    typ, parts = c.uid("FETCH", uid, "(BODY.PEEK[])")
    report = parts[0][1].decode(errors="replace")
    c.logout()
    env = report.split("Content-Transfer-Encoding: 8bit", 1)[-1]
    env = env.split("--=_mailaudit", 1)[0].strip()
    print("  the envelope journal report of the SendAs message:")
    print("\n".join("    " + l for l in env.splitlines()))
    b = dov.imap("bob")
    typ, _ = b._simple_command("SELECT", '"shared/journal/INBOX"')
    print("  bob: SELECT shared/journal/INBOX -> %s" % typ)
    b.logout()


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
    step("send auditing: the SendAs records (--operations SendAs)")
    res = daemon.ctl("search", "--oldest-first", "--operations", "SendAs")
    sys.stdout.write(res.stdout)
    missing = {0, 1, 2} - set(by_logon)
    if missing:
        sys.exit("demo: no records of logon type(s) %s" % sorted(missing))
    if not any(r["Operation"] == "SendAs" for r in recs):
        sys.exit("demo: no SendAs record")


def siem_start(daemon):
    """rsyslog on loopback (TLS, client certificates) and mailaudit-forward
    sending every stored record to it as RFC 5424 over TLS, CEF body."""
    from forward_fixture import Forwarder
    from rsyslog_fixture import Rsyslog
    rs = Rsyslog()
    step("starting rsyslog (TLS on %s, sandbox %s) and mailaudit-forward"
         % (rs.target("tls"), rs.dir))
    rs.start()
    p = rs.pki
    fw = Forwarder(daemon, [
        "siem syslog-tls %s format=cef ca=%s cert=%s key=%s"
        % (rs.target("tls"), p.ca, p.client_cert, p.client_key)])
    fw.start()
    return rs, fw


def siem_show(daemon, rs, fw):
    daemon.ctl("flush")
    deadline = time.monotonic() + 30
    while True:
        _, dests = fw.status()
        if (dests["siem"].get("records_behind") == 0 and
                dests["siem"].get("cursor", 0) > 0) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.2)
    last = dests["siem"].get("cursor", 0)
    rs.wait_count("tls", last, timeout=10)
    got = rs.received("tls")
    step("what the SIEM got: %d records over syslog TLS "
         "(mailauditctl forward status, then one message)" % len(got))
    sys.stdout.write(fw.ctl("forward", "status").stdout)
    print("  " + [m for m in got if "SendAs" in m][0])
    if len(got) < last:
        sys.exit("demo: rsyslog has %d of %d records" % (len(got), last))


def main():
    keep = "--keep" in sys.argv[1:]
    build()
    from daemon_fixture import MailauditDaemon
    from dovecot_fixture import DovecotFixture
    from milter_fixture import MilterFixture
    from postfix_fixture import PostfixFixture

    daemon = MailauditDaemon()
    dov = milter = postfix = rsyslog = forwarder = None
    try:
        step("starting mailauditd in %s" % daemon.dir)
        daemon.start()
        dov = DovecotFixture(socket_path=daemon.socket,
                             spool_dir=daemon.spool,
                             policy_path=daemon.snapshot,
                             server="demo.example.test", postfix=True,
                             journal=True,
                             acl_groups={"carol": "journal-readers"})
        step("starting Dovecot with the mailaudit plugin (IMAP on "
             "127.0.0.1, sandbox %s)" % dov.dir)
        dov.start()
        exercise(dov, daemon)
        # The journal store: the milter appends reports in IMAP batches
        # as the master user admin (bypassed: its appends are not audit
        # events), see docs/JOURNALING.md.
        secret = os.path.join(dov.dir, "journal-imap.pass")
        with open(secret, "w") as f:
            f.write("adminpw\n")
        os.chmod(secret, 0o600)
        daemon.ctl("set-bypass", "admin", "--enabled", "yes")
        milter = MilterFixture(daemon, rules=[
            "all report all journal@example.test"], options={
            "journal_store": "imap",
            "journal_imap": "inet:127.0.0.1:%d" % dov.imap_port,
            "journal_imap_master_user": "admin",
            "journal_imap_password_file": secret})
        postfix = PostfixFixture(
            dov, milter=milter.postfix_spec,
            sender_login={"carol@example.test": ["carol", "alice"]})
        step("starting Postfix (sandbox %s) with mailaudit-milter: every "
             "message journaled as a report to journal@example.test"
             % postfix.dir)
        postfix.start()
        milter.options_file_add("sender_login_maps",
                                os.path.join(postfix.etc, "sender_login"))
        milter.options_file_add("journal_alias_maps", "texthash:" +
                                os.path.join(postfix.etc, "virtual_alias"))
        milter.options_file_add("postfix_config_dir", postfix.etc)
        milter.start()
        mail(dov, daemon, milter, postfix)
        time.sleep(0.2)
        rsyslog, forwarder = siem_start(daemon)
        show(daemon)
        siem_show(daemon, rsyslog, forwarder)
    finally:
        if forwarder is not None:
            forwarder.stop()
        if rsyslog is not None:
            rsyslog.stop() if keep else rsyslog.cleanup()
        for fx in (postfix, milter):
            if fx is not None:
                fx.stop() if keep else fx.cleanup()
        if dov is not None:
            dov.stop() if keep else dov.cleanup()
        if keep:
            daemon.stop()
            print("\nkept: %s and %s" % (daemon.dir,
                                         dov.dir if dov else "-"))
        else:
            daemon.cleanup()
    step("done: mailaudit-forward, rsyslog, Postfix, the milter, Dovecot "
         "and mailauditd stopped")


if __name__ == "__main__":
    main()
