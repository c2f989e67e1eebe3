# SPDX-License-Identifier: MIT
"""A throwaway Dovecot instance for the plugin's integration tests.

DovecotFixture writes a complete dovecot.conf into a fresh temporary
directory (users alice, bob and carol, master user admin, a shared
namespace with ACLs, Trash as \\Trash, IMAP/POP3/ManageSieve/LMTP on free
loopback ports), loads the mailaudit plugin from the build directory
through a private mail_plugin_dir of symlinks, starts /usr/sbin/dovecot
and stops it again by the pid in its master.pid.  With postfix=True it
also serves a throwaway Postfix (postfix_fixture.py): an auth socket for
SASL, user@domain -> user for LMTP and SASL only (POSTFIX_CONFIG);
journal=True adds a user "journal", acl_groups={user: groups} the userdb
field acl_groups, user_fields={user: "userdb_mail=mdbox:/path"} more
passwd-file extra fields (e.g. another mail format for one user), and
shared_location the shared namespace's location.  It needs root (mail
processes run as uid/gid 5000, which needs no passwd entry), as in the
verified setup of docs/reference/dovecot-plugin.md section 7.

Python standard library only.
"""

import base64
import glob
import imaplib
import os
import poplib
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
STOCK_MODULES = "/usr/lib/dovecot/modules"
MAIL_UID = 5000

USERS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw"}
MASTER_USERS = {"admin": "adminpw"}
# the optional journal mailbox of the Postfix tests (journal=True)
JOURNAL_USER = ("journal", "journalpw")


def plugin_path():
    here = os.path.dirname(os.path.abspath(__file__))
    build = os.environ.get("MAILAUDIT_BUILD_DIR",
                           os.path.join(here, "..", "..", "build"))
    return os.path.join(build, "src", "dovecot", "lib90_mailaudit_plugin.so")


_recent_ports = []


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now, and not
    one of the last 256 this process was given (the kernel may hand out
    the same free port twice in a row, before anyone binds it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _recent_ports:
            _recent_ports.append(port)
            del _recent_ports[:-256]
            return port


CONFIG = """\
instance_name = {instance}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/log/dovecot.log
info_log_path = {d}/log/dovecot.log
protocols = imap pop3 sieve lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1000
mail_plugin_dir = {d}/modules
mail_location = maildir:{d}/mail/%u
mail_uid = {uid}
mail_gid = {uid}
imap_id_retain = yes
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
  mailbox Trash {{
    special_use = \\Trash
    auto = create
  }}
}}
namespace shared {{
  type = shared
  separator = /
  prefix = shared/%%u/
  location = {shared_location}
  subscriptions = no
  list = children
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/master-users
  master = yes
  result_success = continue
  override_fields = userdb_acl_user=%{{login_user}}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/users
  # hand the pre-login IMAP ID to the plugin (imap_id_retain = yes)
  override_fields = userdb_mailaudit_client_id=%{{client_id}}
}}
userdb {{
  driver = passwd-file
  args = {d}/users
  default_fields = home={d}/home/%u
}}
mail_plugins = acl notify mailaudit
protocol imap {{
  mail_plugins = $mail_plugins imap_acl
}}
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
{lmtp_extra}}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service managesieve-login {{
  inet_listener sieve {{
    address = 127.0.0.1
    port = {sieve_port}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = 0
  }}
}}
plugin {{
  acl = vfile
  acl_shared_dict = file:{d}/shared/shared-mailboxes.db
  sieve = file:~/sieve;active=~/.dovecot.sieve
  mailaudit_socket = {socket}
  mailaudit_spool_dir = {spool}
  mailaudit_policy = {policy}
  mailaudit_server = {server}
}}
# Pigeonhole's sieve_* events are debug events: they only reach the
# plugin's event callback when a metric wants them.
metric mailaudit_sieve {{
  filter = event=sieve_storage_save_finished OR event=sieve_script_activated OR event=sieve_storage_deactivated OR event=sieve_script_renamed OR event=sieve_script_deleted
}}
{postfix}{extra}
"""

# postfix=True: what a throwaway Postfix (postfix_fixture.py) needs.  The
# auth socket is Postfix's SASL backend (smtpd_sasl_type = dovecot; smtpd
# runs as user postfix, chroot off, so an absolute path); the LMTP socket
# is Dovecot's default unix_listener "lmtp" in base_dir (mode 0666).
POSTFIX_CONFIG = """\
service auth {{
  unix_listener auth-postfix {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
# Postfix says user@domain (LMTP RCPT TO, SASL logins); the users here
# are plain names.  Strip the domain for these two services only, so
# that alice@example.test is user "alice" (mailbox "alice" in records)
# and IMAP/POP3/master-user logins stay exactly as before.
protocol smtp {{
  auth_username_format = %Ln
}}
# Postfix tests fail SASL logins on purpose; Dovecot would then delay
# every later login from 127.0.0.1 (IMAP included) by seconds: no failure
# delay, and no anvil auth penalty (auth skips it when the socket is gone).
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def stop_pid(pid, timeout=10.0):
    """SIGTERM pid, wait up to timeout for it to go, then SIGKILL."""
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class DovecotFixture:
    """One Dovecot instance.  Use start(); stop() is idempotent.

    socket_path, spool_dir and policy_path are what the plugin is told;
    by default they live inside the fixture directory.
    """

    _counter = 0

    def __init__(self, socket_path=None, spool_dir=None, policy_path=None,
                 server="testhost", extra_conf="", postfix=False,
                 journal=False, acl_groups=None, user_fields=None,
                 shared_location=None):
        DovecotFixture._counter += 1
        self.dir = tempfile.mkdtemp(prefix="mailaudit-dovecot-")
        os.chmod(self.dir, 0o755)
        self.instance = "mailaudit-t%d-%d" % (os.getpid(), DovecotFixture._counter)
        self.socket_path = socket_path or os.path.join(self.dir, "sock", "ingest.sock")
        self.spool_dir = spool_dir or os.path.join(self.dir, "spool")
        self.policy_path = policy_path or os.path.join(self.dir, "policy.snapshot")
        self.server = server
        self.extra_conf = extra_conf
        # postfix: an auth socket for Postfix's SASL and user@domain ->
        # user for LMTP and SASL (POSTFIX_CONFIG); journal: one more user
        # "journal"; acl_groups: {user: "group1,group2"} as the userdb
        # field acl_groups (Dovecot's ACL group=... identifiers).
        self.postfix = postfix
        self.users = dict(USERS)
        if journal:
            self.users[JOURNAL_USER[0]] = JOURNAL_USER[1]
        self.acl_groups = dict(acl_groups or {})
        unknown = set(self.acl_groups) - set(self.users)
        if unknown:
            raise ValueError("acl_groups for unknown users: %s" % sorted(unknown))
        # user_fields: {user: "field=value ..." or [fields]}, more
        # passwd-file extra fields, e.g. "userdb_mail=mdbox:/path" (a
        # user's own mail format); shared_location: the shared
        # namespace's location ({d} = the fixture directory), by default
        # maildir as the users' mail_location.
        self.user_fields = dict(user_fields or {})
        self.shared_location = shared_location
        self.auth_socket = os.path.join(self.dir, "run", "auth-postfix")
        self.lmtp_socket = os.path.join(self.dir, "run", "lmtp")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.log_path = os.path.join(self.dir, "log", "dovecot.log")
        self.pid = None
        # the receiver may bind its socket before start()
        os.makedirs(os.path.dirname(self.socket_path), exist_ok=True)
        self.imap_port = self.pop3_port = self.sieve_port = self.lmtp_port = None

    # -- setup ---------------------------------------------------------------
    def _write_files(self):
        d = self.dir
        for sub in ("run", "state", "log", "mail", "home", "modules", "shared", "sock"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.makedirs(self.spool_dir, exist_ok=True)
        # Mail processes run as uid 5000: they must reach the socket
        # directory and write the spool (the daemon's real layout uses a
        # shared group; here world-writable sticky dirs keep it simple).
        os.chmod(self.spool_dir, 0o1777)
        os.chmod(os.path.dirname(self.socket_path), 0o1777)
        for user in self.users:
            for sub in ("mail", "home"):
                os.makedirs(os.path.join(d, sub, user), exist_ok=True)
        with open(os.path.join(d, "users"), "w") as f:
            for user, pw in self.users.items():
                groups = self.acl_groups.get(user)
                if isinstance(groups, (list, tuple)):
                    groups = ",".join(groups)
                extra = ["userdb_acl_groups=%s" % groups] if groups else []
                more = self.user_fields.get(user)
                if more:
                    extra += [more] if isinstance(more, str) else list(more)
                extra = " ".join(extra)
                f.write("%s:{PLAIN}%s::::::%s\n" % (user, pw, extra))
        with open(os.path.join(d, "master-users"), "w") as f:
            for user, pw in MASTER_USERS.items():
                f.write("%s:{PLAIN}%s::::::\n" % (user, pw))
        for so in glob.glob(os.path.join(STOCK_MODULES, "*.so")):
            os.symlink(so, os.path.join(d, "modules", os.path.basename(so)))
        plugin = plugin_path()
        if not os.path.exists(plugin):
            raise RuntimeError("plugin not built: %s" % plugin)
        os.symlink(plugin, os.path.join(d, "modules", os.path.basename(plugin)))
        for sub in ("mail", "home", "shared"):
            for root, dirs, files in os.walk(os.path.join(d, sub)):
                os.chown(root, MAIL_UID, MAIL_UID)
        self.imap_port, self.pop3_port = free_port(), free_port()
        self.sieve_port, self.lmtp_port = free_port(), free_port()
        with open(self.conf, "w") as f:
            f.write(CONFIG.format(
                instance=self.instance, d=d, uid=MAIL_UID,
                imap_port=self.imap_port, pop3_port=self.pop3_port,
                sieve_port=self.sieve_port, lmtp_port=self.lmtp_port,
                shared_location=(
                    self.shared_location or
                    "maildir:{d}/mail/%%u:INDEXPVT={d}/mail/%u/shared/%%u"
                ).format(d=d),
                socket=self.socket_path, spool=self.spool_dir,
                policy=self.policy_path, server=self.server,
                lmtp_extra="  auth_username_format = %Ln\n" if self.postfix else "",
                postfix=POSTFIX_CONFIG.format() if self.postfix else "",
                extra=self.extra_conf))

    def start(self, timeout=10.0):
        self._write_files()
        check = subprocess.run(["doveconf", "-c", self.conf, "-n"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError("doveconf rejected the config: " + check.stderr)
        # The daemonised master keeps the inherited stdout/stderr open,
        # so they go to a file, never to a pipe we would wait on.
        startup_log = os.path.join(self.dir, "log", "startup.log")
        with open(startup_log, "w") as out:
            res = subprocess.run([DOVECOT, "-c", self.conf], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT)
        if res.returncode != 0:
            with open(startup_log) as f:
                raise RuntimeError("dovecot failed to start: %s\n%s" %
                                   (f.read(), self.log_text()))
        pidfile = os.path.join(self.dir, "run", "master.pid")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid is None and os.path.exists(pidfile):
                with open(pidfile) as f:
                    text = f.read().strip()
                if text:
                    self.pid = int(text)
            if self.pid is not None and self._imap_answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("dovecot did not answer on IMAP within %.0fs:\n%s"
                           % (timeout, self.log_text()))

    def _imap_answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.imap_port), timeout=1) as s:
                return s.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def stop(self, timeout=10.0):
        """Stop the master by its pid: SIGTERM, wait, then SIGKILL."""
        pid, self.pid = self.pid, None
        stop_pid(pid, timeout)

    def cleanup(self):
        self.stop()
        if os.environ.get("MAILAUDIT_KEEP_FIXTURE") == "1":
            return
        # Children of the master may still be writing logs for a moment.
        for _ in range(20):
            shutil.rmtree(self.dir, ignore_errors=True)
            if not os.path.exists(self.dir):
                return
            time.sleep(0.1)

    # -- clients ---------------------------------------------------------------
    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def imap(self, user, password=None):
        conn = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        conn.login(user, password if password is not None else self.users[user])
        return conn

    def pop3(self, user, password=None):
        conn = poplib.POP3("127.0.0.1", self.pop3_port, timeout=10)
        conn.user(user)
        conn.pass_(password if password is not None else self.users[user])
        return conn

    def lmtp(self):
        return smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=10)

    def sieve(self, user, password=None):
        return ManageSieveClient("127.0.0.1", self.sieve_port, user,
                                 password if password is not None else self.users[user])

    def doveadm(self, *args, check=True, input=None):
        res = subprocess.run([DOVEADM, "-c", self.conf] + list(args),
                             capture_output=True, text=True, input=input, timeout=30)
        if check and res.returncode != 0:
            raise RuntimeError("doveadm %s failed (%d): %s%s" %
                               (" ".join(args), res.returncode, res.stdout, res.stderr))
        return res


class ManageSieveClient:
    """Just enough RFC 5804 for the tests (literal+ uploads)."""

    def __init__(self, host, port, user, password):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.read_response()  # capabilities + OK greeting
        token = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        self.command('AUTHENTICATE "PLAIN" "%s"' % token)

    def read_response(self):
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise RuntimeError("ManageSieve connection closed: %r" % lines)
            text = line.decode(errors="replace").rstrip("\r\n")
            lines.append(text)
            if text.startswith(("OK", "NO", "BYE")):
                return lines

    def command(self, text, expect_ok=True):
        self.sock.sendall(text.encode() + b"\r\n")
        lines = self.read_response()
        if expect_ok and not lines[-1].startswith("OK"):
            raise RuntimeError("%s -> %s" % (text, lines))
        return lines

    def putscript(self, name, script):
        data = script.encode()
        self.sock.sendall(b'PUTSCRIPT "%s" {%d+}\r\n' % (name.encode(), len(data)) + data + b"\r\n")
        lines = self.read_response()
        if not lines[-1].startswith("OK"):
            raise RuntimeError("PUTSCRIPT -> %s" % lines)

    def logout(self):
        try:
            self.command("LOGOUT", expect_ok=False)
        except (OSError, RuntimeError):
            pass
        self.file.close()
        self.sock.close()
