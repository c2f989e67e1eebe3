# SPDX-License-Identifier: MIT
"""A throwaway Postfix on loopback that delivers to the Dovecot fixture.

PostfixFixture writes main.cf, master.cf and its lookup tables into a fresh
temporary directory (config, queue and data directory, a maillog written by
postlogd), starts /usr/sbin/postfix with that config directory and stops
it again by the master's pid.  It never reads or writes /etc/postfix's
main.cf (there is none on the test machine; the system Postfix is never
started).  The recipe is ../shared/reference/journaling.md section 4.
Needs root (postfix -c / postqueue -c / sendmail -C with a non-default
directory) and a DovecotFixture started with postfix=True.

Two smtpd services on free 127.0.0.1 ports:

  mx_port          MX-style inbound: no AUTH, relay only to example.test.
                   mynetworks is empty by default, so mail from loopback
                   counts as external and unauthenticated.
  submission_port  AUTH PLAIN/LOGIN against Dovecot's auth socket
                   (smtpd_sasl_type = dovecot); only authenticated clients;
                   smtpd_sender_login_maps + reject_sender_login_mismatch.

milter_macro_daemon_name is "MX" and "SUBMISSION" on these two services, so
a milter tells them apart by {daemon_name}.  Local submission (sendmail(1)
-> pickup -> cleanup) goes through non_smtpd_milters with Postfix's own
daemon name (myhostname, mx.example.test) and no {auth_*} macros.

Addresses and logins.  The Dovecot fixture's users are plain names (alice,
bob, carol, optionally journal) and the plugin's records say mailbox
"alice"; Postfix speaks user@example.test.  DovecotFixture(postfix=True)
sets auth_username_format = %Ln for Dovecot's LMTP and for the auth
service "smtp" (the service name Postfix's SASL client sends) only:

  - LMTP RCPT TO:<alice@example.test> is delivered to user "alice", INBOX
    in the same maildir the IMAP tests read, and records keep mailbox
    "alice";
  - SASL login "alice@example.test" and "alice" both authenticate as user
    "alice", and Dovecot returns user=alice, which Postfix takes as the
    SASL username: {auth_authen} is "alice" for either login name, and the
    sender-login map's right-hand sides are therefore plain user names;
  - IMAP, POP3, ManageSieve and master-user logins are unchanged (plain
    names only), so the existing plugin tests see exactly what they saw.

The sender-login map (texthash) by default lets each user use its own
address (alice@example.test -> alice); sender_login={...} adds or
replaces entries (e.g. {"shared@example.test": ["alice", "bob"]}).

Outbound mail (any other domain) goes to relayhost [127.0.0.1]:<a free
port nobody listens on>, so it stays deferred in the queue and never
leaves the machine.  Mail is never delivered by local(8) (mydestination is
empty) and /etc/aliases is not used.

Python standard library only.
"""

import email.utils
import json
import os
import re
import shlex
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time

from dovecot_fixture import free_port, stop_pid

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTQUEUE = "/usr/sbin/postqueue"
SENDMAIL = "/usr/sbin/sendmail"
DOMAIN = "example.test"
DEFAULT_ALIASES = {"team@" + DOMAIN: ["alice@" + DOMAIN, "bob@" + DOMAIN]}

# The macro lists a milter test can rely on (Postfix sends only macros
# that have a value: no {auth_*} on MX or for sendmail).
CONNECT_MACROS = "j {daemon_name} {daemon_addr} v _ {client_addr}"
MAIL_MACROS = ("i {auth_type} {auth_authen} {auth_author} {mail_addr} "
               "{mail_host} {mail_mailer} {daemon_name} {client_addr}")
EOD_MACROS = "i {auth_authen} {auth_type} {daemon_name} {client_addr}"

MASTER_CF = """\
# written by tests/integration/postfix_fixture.py; chroot off everywhere
127.0.0.1:{mx_port} inet n - n - - smtpd
  -o syslog_name=postfix/mx
  -o milter_macro_daemon_name=MX
  -o smtpd_sasl_auth_enable=no
{mx_options}127.0.0.1:{submission_port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o milter_macro_daemon_name=SUBMISSION
  -o smtpd_tls_security_level=none
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path={auth_socket}
  -o smtpd_sasl_security_options=noanonymous
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_login_maps=texthash:{etc}/sender_login
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
{submission_options}pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
{extra}"""

QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]+)")
LOG_STATUS = re.compile(r"\]: ([0-9A-Za-z]+): to=<([^>]*)>.*?"
                        r"status=(sent|deferred|bounced|expired)")


class DeliveryError(AssertionError):
    """Postfix bounced a message, or it did not leave the queue in time."""


def message(sender, to=(), cc=(), subject="test", body="body\r\n",
            msgid=None, headers=()):
    """An RFC 5322 message as bytes (CRLF), with a Message-ID.  Bcc
    recipients belong in the envelope only (send(bcc=...)), never here."""
    msgid = msgid or email.utils.make_msgid(domain=DOMAIN)
    lines = ["From: %s" % sender]
    if to:
        lines.append("To: %s" % ", ".join(to))
    if cc:
        lines.append("Cc: %s" % ", ".join(cc))
    lines += ["Subject: %s" % subject, "Message-ID: %s" % msgid,
              "Date: %s" % email.utils.formatdate(localtime=False)]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def message_id(data):
    """The Message-ID header's value of a raw message, or None."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    m = re.search(rb"^message-id:[ \t]*(\S+)", head, re.IGNORECASE | re.MULTILINE)
    return m.group(1).decode(errors="replace") if m else None


def imap_messages(dovecot, user, msgid, mailbox="INBOX"):
    """Raw messages in user's mailbox whose Message-ID is msgid (every
    message for msgid None), over IMAP (a fresh login as user; the mailbox
    is selected read-only)."""
    conn = dovecot.imap(user)
    try:
        typ, _ = conn.select('"%s"' % mailbox, readonly=True)
        if typ != "OK":
            raise AssertionError("cannot select %s of %s" % (mailbox, user))
        if msgid is None:
            typ, data = conn.uid("SEARCH", None, "ALL")
        else:
            typ, data = conn.uid("SEARCH", None, "HEADER", "Message-ID",
                                 '"%s"' % msgid)
        out = []
        for uid in data[0].split():
            typ, parts = conn.uid("FETCH", uid, "(BODY.PEEK[])")
            out += [p[1] for p in parts if isinstance(p, tuple)]
        return out
    finally:
        conn.logout()


class PostfixFixture:
    """One Postfix instance.  start(); stop() and cleanup() are idempotent.

    dovecot                 a DovecotFixture(postfix=True), started or not
                            (its sockets only need to exist by delivery)
    milter                  None, or a Postfix milter spec ("unix:/path",
                            "inet:127.0.0.1:PORT", or "{ spec, k=v }"): put
                            in smtpd_milters and non_smtpd_milters
    milter_default_action   tempfail (Postfix's default) | accept | reject
    mynetworks              "" by default: loopback is not trusted
    aliases                 {address: [addresses]} -> virtual_alias_maps;
                            default team@example.test -> alice, bob
    sender_login            {envelope sender: [SASL user, ...]} added to
                            the default own-address entries
    extra_main_cf           str ("name = value" lines) or dict; overrides
                            the fixture's main.cf parameters
    mx_options, submission_options
                            {param: value}: extra -o for that service
    extra_master_cf         text appended to master.cf
    lmtp                    "unix" (Dovecot's lmtp socket) or "inet"
    """

    _counter = 0

    def __init__(self, dovecot, milter=None, milter_default_action="tempfail",
                 mynetworks="", aliases=None, sender_login=None,
                 extra_main_cf="", mx_options=None, submission_options=None,
                 extra_master_cf="", lmtp="unix"):
        if not getattr(dovecot, "postfix", False):
            raise ValueError("the DovecotFixture needs postfix=True")
        PostfixFixture._counter += 1
        self.dovecot = dovecot
        self.dir = tempfile.mkdtemp(prefix="mailaudit-postfix-")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.data_dir = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        self.pidfile = os.path.join(self.queue_dir, "pid", "master.pid")
        self.milter = milter
        self.milter_default_action = milter_default_action
        self.mynetworks = mynetworks
        self.aliases = DEFAULT_ALIASES if aliases is None else dict(aliases)
        self.sender_login = {"%s@%s" % (u, DOMAIN): [u] for u in dovecot.users}
        self.sender_login.update(sender_login or {})
        self.extra_main_cf = extra_main_cf
        self.mx_options = dict(mx_options or {})
        self.submission_options = dict(submission_options or {})
        self.extra_master_cf = extra_master_cf
        self.lmtp = lmtp
        self.mx_port = self.submission_port = self.relay_port = None
        self.pid = None
        self.start_output = ""
        self.last_refused = {}

    # -- configuration -------------------------------------------------------
    def main_cf(self):
        """main.cf as an ordered dict (extra_main_cf applied)."""
        if self.lmtp == "unix":
            transport = "lmtp:unix:%s" % self.dovecot.lmtp_socket
        else:
            transport = "lmtp:inet:127.0.0.1:%d" % self.dovecot.lmtp_port
        p = {
            "compatibility_level": "3.6",
            "config_directory": self.etc,
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": "/var, /dev/stdout, %s" % self.dir,
            "myhostname": "mx." + DOMAIN,
            "mydomain": DOMAIN,
            "myorigin": DOMAIN,
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "mynetworks": self.mynetworks,
            "relay_domains": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "smtputf8_enable": "no",
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_maps": "texthash:%s/virtual_mailbox" % self.etc,
            "virtual_alias_maps": "texthash:%s/virtual_alias" % self.etc,
            "virtual_transport": transport,
            "default_transport": "smtp",
            # closed port: outbound mail stays deferred, never leaves
            "relayhost": "[127.0.0.1]:%d" % self.relay_port,
            "smtp_connect_timeout": "1s",
            "smtpd_relay_restrictions":
                "permit_mynetworks, permit_sasl_authenticated, "
                "reject_unauth_destination",
            "smtpd_banner": "$myhostname ESMTP mailaudit-test",
            "milter_protocol": "6",
            "milter_default_action": self.milter_default_action,
            "milter_connect_macros": CONNECT_MACROS,
            "milter_mail_macros": MAIL_MACROS,
            "milter_end_of_data_macros": EOD_MACROS,
            # a stuck milter fails a test in seconds, not minutes
            "milter_connect_timeout": "5s",
            "milter_command_timeout": "10s",
            "milter_content_timeout": "20s",
        }
        if self.milter:
            p["smtpd_milters"] = self.milter
            p["non_smtpd_milters"] = "$smtpd_milters"
        extra = self.extra_main_cf
        if isinstance(extra, dict):
            p.update(extra)
        else:
            name = None
            for line in extra.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                if line[0].isspace() and name:
                    p[name] = (p[name] + " " + line.strip()).strip()
                    continue
                name, sep, value = line.partition("=")
                if not sep:
                    raise ValueError("extra_main_cf: not name = value: %r" % line)
                name = name.strip()
                p[name] = value.strip()
        return p

    def _write_files(self):
        for sub in (self.etc, self.queue_dir, self.data_dir):
            os.makedirs(sub, exist_ok=True)
        shutil.chown(self.data_dir, "postfix", "postfix")
        self.mx_port, self.submission_port = free_port(), free_port()
        self.relay_port = free_port()
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("# written by tests/integration/postfix_fixture.py\n")
            for name, value in self.main_cf().items():
                f.write("%s = %s\n" % (name, value))

        def options(opts):
            return "".join("  -o %s=%s\n" % kv for kv in opts.items())
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(
                mx_port=self.mx_port, submission_port=self.submission_port,
                auth_socket=self.dovecot.auth_socket, etc=self.etc,
                mx_options=options(self.mx_options),
                submission_options=options(self.submission_options),
                extra=self.extra_master_cf))
        self._write_table("virtual_mailbox", {
            "%s@%s" % (u, DOMAIN): "%s/" % u for u in self.dovecot.users})
        self._write_table("virtual_alias", self.aliases)
        self._write_table("sender_login", self.sender_login)

    def _write_table(self, name, entries):
        with open(os.path.join(self.etc, name), "w") as f:
            for key, value in entries.items():
                if not isinstance(value, str):
                    value = ", ".join(value)
                f.write("%s %s\n" % (key, value))

    # -- lifecycle -------------------------------------------------------------
    def _postfix(self, command, timeout=30):
        """postfix -c DIR command under script(1): postfix writes its
        errors only to a tty (otherwise to syslog, which is not there)."""
        cmd = "%s -c %s %s" % (POSTFIX, shlex.quote(self.etc), command)
        res = subprocess.run(["script", "-qec", cmd, "/dev/null"],
                             stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, errors="replace", timeout=timeout)
        return res.returncode, res.stdout + res.stderr

    def start(self, timeout=15.0):
        self._write_files()
        check = subprocess.run([POSTCONF, "-c", self.etc, "-n"],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0 or "warning" in check.stderr:
            raise RuntimeError("postconf rejected main.cf: %s\n%s" %
                               (check.stderr, self.maillog_text()))
        rc, self.start_output = self._postfix("start")
        if rc != 0:
            self.stop()
            raise RuntimeError("postfix start failed (%d): %s\n%s" %
                               (rc, self.start_output, self.maillog_text()))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid is None:
                self.pid = self._read_pid()
            elif not self._alive(self.pid):
                self.pid = None
                break
            if self.pid is not None and self._banner(self.mx_port) \
                    and self._banner(self.submission_port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("postfix did not answer on its ports (%.0fs): %s\n%s"
                           % (timeout, self.start_output, self.maillog_text()))

    def _read_pid(self):
        try:
            with open(self.pidfile) as f:
                text = f.read().strip()
        except OSError:
            return None
        return int(text) if text else None

    @staticmethod
    def _banner(port):
        try:
            with smtplib.socket.create_connection(("127.0.0.1", port),
                                                  timeout=2) as s:
                return s.recv(64).startswith(b"220")
        except OSError:
            return False

    def _children(self, pid):
        """Pids whose parent is pid (Postfix's daemons under master)."""
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
        return out

    def stop(self, timeout=10.0):
        """postfix stop, then make sure the master (from its pid file) and
        the daemons it had started are gone: SIGTERM, wait, SIGKILL."""
        pid = self.pid or self._read_pid()
        self.pid = None
        if pid is None and not os.path.exists(os.path.join(self.etc, "main.cf")):
            return
        children = self._children(pid) if pid else []
        if pid is not None or os.path.exists(self.pidfile):
            try:
                self._postfix("stop", timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        for p in ([pid] if pid else []) + children:
            if self._alive(p):
                stop_pid(p, timeout)

    @staticmethod
    def _alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:
            with open("/proc/%d/stat" % pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def cleanup(self):
        self.stop()
        if os.environ.get("MAILAUDIT_KEEP_FIXTURE") == "1":
            return
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- clients -----------------------------------------------------------------
    def maillog_text(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def smtp(self, port="mx", user=None, password=None, helo="client.example.net"):
        """An smtplib.SMTP connection to "mx" or "submission" (or a port
        number), EHLO done, AUTH PLAIN done when user is given (password
        defaults to the Dovecot user's; user may carry @example.test)."""
        if port == "mx":
            port = self.mx_port
        elif port == "submission":
            port = self.submission_port
        conn = smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=15)
        try:
            conn.ehlo()
            if user is not None:
                if password is None:
                    password = self.dovecot.users[user.split("@")[0]]
                conn.user, conn.password = user, password
                conn.auth("PLAIN", conn.auth_plain)
        except BaseException:
            conn.close()
            raise
        return conn

    def send(self, sender, rcpts, data, port="mx", user=None, password=None):
        """One message over SMTP; returns Postfix's queue id.

        rcpts are the envelope recipients (To, Cc and Bcc alike).  Refused
        recipients are left in self.last_refused ({rcpt: (code, text)});
        if all are refused, smtplib.SMTPRecipientsRefused is raised, and a
        refused MAIL FROM or DATA raises smtplib's exception too.
        """
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        if isinstance(data, str):
            data = data.encode()
        conn = self.smtp(port, user, password)
        try:
            code, resp = conn.mail(sender)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, resp, sender)
            refused = {}
            for rcpt in rcpts:
                code, resp = conn.rcpt(rcpt)
                if code not in (250, 251):
                    refused[rcpt] = (code, resp)
            self.last_refused = refused
            if len(refused) == len(rcpts):
                raise smtplib.SMTPRecipientsRefused(refused)
            code, resp = conn.data(data)
            if code != 250:
                raise smtplib.SMTPDataError(code, resp)
        finally:
            try:
                conn.quit()
            except smtplib.SMTPException:
                conn.close()
        m = QUEUED_AS.search(resp.decode(errors="replace"))
        if not m:
            raise AssertionError("no queue id in %r" % resp)
        return m.group(1)

    def sendmail(self, sender, rcpts, data, timeout=10.0):
        """Local submission: Postfix's sendmail -C DIR -f sender -i rcpts
        (postdrop -> pickup -> cleanup, non_smtpd_milters).  sendmail prints
        no queue id, so the message gets a Message-ID if it has none and the
        queue id is read from cleanup's "message-id=" log line."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        if isinstance(data, str):
            data = data.encode()
        msgid = message_id(data)
        if msgid is None:
            msgid = email.utils.make_msgid(domain=DOMAIN)
            data = b"Message-ID: " + msgid.encode() + b"\r\n" + data
        res = subprocess.run([SENDMAIL, "-C", self.etc, "-f", sender, "-i", "--"]
                             + list(rcpts), input=data, capture_output=True,
                             timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError("sendmail failed (%d): %s\n%s" % (
                res.returncode, res.stderr.decode(errors="replace"),
                self.maillog_text()))
        line = re.compile(r"postfix/cleanup\[\d+\]: ([0-9A-Za-z]+): message-id=%s$"
                          % re.escape(msgid), re.MULTILINE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = line.search(self.maillog_text())
            if m:
                return m.group(1)
            time.sleep(0.05)
        raise DeliveryError("sendmail: no queue id for %s within %.0fs:\n%s"
                            % (msgid, timeout, self.maillog_text()))

    def queue(self):
        """The queue as postqueue -j reports it: a list of dicts with
        queue_id, queue_name (incoming/active/deferred/hold), sender,
        recipients [{address, delay_reason?}], ..."""
        res = subprocess.run([POSTQUEUE, "-c", self.etc, "-j"],
                             capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise RuntimeError("postqueue -j failed: %s" % res.stderr)
        return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]

    def statuses(self, queue_id):
        """[(recipient, status, log line)] for queue_id's delivery
        attempts, oldest first (the line has orig_to=, relay=, dsn=...)."""
        out = []
        for line in self.maillog_text().splitlines():
            m = LOG_STATUS.search(line)
            if m and m.group(1) == queue_id:
                out.append((m.group(2), m.group(3), line))
        return out

    def wait_delivered(self, queue_id, timeout=10.0):
        """Wait until queue_id has left the queue with every recipient
        status=sent; return {recipient: its status=sent log line}.  Deferred counts as
        still pending; bounced/expired raises DeliveryError at once, and
        so does the timeout (with the log lines of this message)."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = self.statuses(queue_id)
            bad = [s for s in statuses if s[1] in ("bounced", "expired")]
            if bad:
                raise DeliveryError("%s not delivered: %s\n%s" % (
                    queue_id, bad, self._lines(queue_id)))
            removed = re.search(r"\]: %s: removed$" % re.escape(queue_id),
                                self.maillog_text(), re.MULTILINE)
            if removed and all(q["queue_id"] != queue_id for q in self.queue()):
                return {rcpt: rest for rcpt, st, rest in statuses if st == "sent"}
            if time.monotonic() >= deadline:
                raise DeliveryError("%s still queued after %.0fs:\n%s\nqueue: %s"
                                    % (queue_id, timeout, self._lines(queue_id),
                                       self.queue()))
            time.sleep(0.05)

    def wait_deferred(self, queue_id, timeout=10.0):
        """Wait until queue_id sits in the deferred queue; return its
        postqueue -j entry."""
        deadline = time.monotonic() + timeout
        while True:
            for q in self.queue():
                if q["queue_id"] == queue_id and q["queue_name"] == "deferred":
                    return q
            if time.monotonic() >= deadline:
                raise DeliveryError("%s not deferred after %.0fs:\n%s" % (
                    queue_id, timeout, self._lines(queue_id)))
            time.sleep(0.05)

    def _lines(self, queue_id):
        return "\n".join(l for l in self.maillog_text().splitlines()
                         if (" %s: " % queue_id) in l)
