# SPDX-License-Identifier: MIT
"""A sandboxed Dovecot for the benchmarks, in three variants.

Adapted from tests/integration/dovecot_fixture.py (not imported: the
benchmarks need Dovecot *without* the mailaudit plugin too, and only IMAP).
mode is one of
  "plain"     mail_plugins = acl                 (no auditing at all)
  "mail_log"  mail_plugins = acl notify mail_log (Dovecot's own logging,
              mail_log_events = delete undelete expunge save copy
              mailbox_create mailbox_delete mailbox_rename flag_change)
  "mailaudit" mail_plugins = acl notify mailaudit (our plugin)
Everything else is identical.  Users u0..u(N-1) with password "pw", mail
processes as uid/gid 5000, IMAP on a free loopback port.  Stopped by the
pid in master.pid (SIGTERM, then SIGKILL), also on failure (Cleanup).
"""

import glob
import imaplib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import benchlib as bl

sys.path.insert(0, os.path.join(bl.ROOT, "tests", "integration"))
from dovecot_fixture import free_port, stop_pid  # noqa: E402

DOVECOT = "/usr/sbin/dovecot"
STOCK_MODULES = "/usr/lib/dovecot/modules"
MAIL_UID = 5000

PLUGINS = {
    "plain": "acl",
    "mail_log": "acl notify mail_log",
    "mailaudit": "acl notify mailaudit",
}

CONFIG = """\
instance_name = {instance}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/log/dovecot.log
info_log_path = {d}/log/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1000
mail_plugin_dir = {d}/modules
mail_location = maildir:{d}/mail/%u
mail_uid = {uid}
mail_gid = {uid}
verbose_proctitle = yes
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
  mailbox Trash {{
    special_use = \\Trash
    auto = create
  }}
  mailbox Archive {{
    auto = create
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/users
}}
userdb {{
  driver = passwd-file
  args = {d}/users
  default_fields = home={d}/home/%u
}}
mail_plugins = {plugins}
protocol imap {{
  mail_plugins = $mail_plugins imap_acl
}}
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
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = 0
  }}
}}
plugin {{
  acl = vfile
  mailaudit_socket = {socket}
  mailaudit_spool_dir = {spool}
  mailaudit_policy = {policy}
  mailaudit_server = mx-bench.example
  mail_log_events = delete undelete expunge save copy mailbox_create mailbox_delete mailbox_rename flag_change
  mail_log_fields = uid box msgid size flags
}}
{extra}
"""


def plugin_path():
    return os.path.join(bl.BUILD, "src", "dovecot",
                        "lib90_mailaudit_plugin.so")


class Dovecot:
    _counter = 0

    def __init__(self, mode, users, socket_path="", spool_dir="",
                 policy_path="", base=None, extra_conf=""):
        assert mode in PLUGINS
        Dovecot._counter += 1
        self.mode = mode
        self.users = users
        self.extra_conf = extra_conf
        self.dir = tempfile.mkdtemp(prefix="ma-bench-dovecot-", dir=base)
        os.chmod(self.dir, 0o755)
        self.instance = "ma-bench-%d-%d" % (os.getpid(), Dovecot._counter)
        self.socket_path = socket_path or os.path.join(self.dir, "none.sock")
        self.spool_dir = spool_dir or os.path.join(self.dir, "spool")
        self.policy_path = policy_path or os.path.join(self.dir, "none")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.log_path = os.path.join(self.dir, "log", "dovecot.log")
        self.pid = None
        bl.Cleanup.add(self.cleanup)

    def _write_files(self):
        d = self.dir
        for sub in ("run", "state", "log", "mail", "home", "modules"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.makedirs(self.spool_dir, exist_ok=True)
        with open(os.path.join(d, "users"), "w") as f:
            for user in self.users:
                f.write("%s:{PLAIN}pw::::::\n" % user)
        for user in self.users:
            for sub in ("mail", "home"):
                os.makedirs(os.path.join(d, sub, user), exist_ok=True)
        for so in glob.glob(os.path.join(STOCK_MODULES, "*.so")):
            os.symlink(so, os.path.join(d, "modules", os.path.basename(so)))
        if self.mode == "mailaudit":
            plugin = plugin_path()
            if not os.path.exists(plugin):
                raise RuntimeError("plugin not built: %s" % plugin)
            os.symlink(plugin, os.path.join(d, "modules",
                                            os.path.basename(plugin)))
        for sub in ("mail", "home"):
            for root, dirs, files in os.walk(os.path.join(d, sub)):
                os.chown(root, MAIL_UID, MAIL_UID)
        self.imap_port = free_port()
        with open(self.conf, "w") as f:
            f.write(CONFIG.format(
                instance=self.instance, d=d, uid=MAIL_UID,
                imap_port=self.imap_port, socket=self.socket_path,
                spool=self.spool_dir, policy=self.policy_path,
                plugins=PLUGINS[self.mode], extra=self.extra_conf))

    def start(self, timeout=10.0):
        self._write_files()
        check = subprocess.run(["doveconf", "-c", self.conf, "-n"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError("doveconf rejected the config: " +
                               check.stderr)
        startup_log = os.path.join(self.dir, "log", "startup.log")
        with open(startup_log, "w") as out:
            res = subprocess.run([DOVECOT, "-c", self.conf],
                                 stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT)
        if res.returncode != 0:
            with open(startup_log) as f:
                raise RuntimeError("dovecot failed to start: " + f.read())
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
        raise RuntimeError("dovecot did not answer:\n" + self.log_text())

    def _imap_answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.imap_port),
                                          timeout=1) as s:
                return s.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def imap(self, user):
        conn = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=30)
        conn.login(user, "pw")
        return conn

    def imap_processes(self):
        """{user: pid} of the imap mail processes (children of the master,
        named by verbose_proctitle "<instance>/imap [user ip ...]")."""
        out = {}
        if self.pid is None:
            return out
        for kid in bl.children(self.pid):
            try:
                with open("/proc/%d/cmdline" % kid, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(
                        errors="replace")
            except OSError:
                continue
            # "<instance_name>/imap [user ip ...]" (verbose_proctitle)
            if "/imap [" in cmd:
                user = cmd.split("[", 1)[1].split()[0]
                out[user] = kid
        return out

    def children_cpu(self, split=False):
        """CPU seconds of the master's reaped children (cutime+cstime:
        every imap process that has exited) plus the live ones; with
        split, (user, system)."""
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        user, system = int(fields[13]), int(fields[14])
        for kid in bl.children(self.pid):
            try:
                with open("/proc/%d/stat" % kid) as f:
                    kf = f.read().rsplit(")", 1)[1].split()
                user += int(kf[11])
                system += int(kf[12])
            except OSError:
                pass
        if split:
            return user / bl.CLK_TCK, system / bl.CLK_TCK
        return (user + system) / bl.CLK_TCK

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout=10.0):
        pid, self.pid = self.pid, None
        stop_pid(pid, timeout)

    def cleanup(self):
        self.stop()
        if os.environ.get("MA_BENCH_KEEP"):
            return
        for _ in range(20):
            shutil.rmtree(self.dir, ignore_errors=True)
            if not os.path.exists(self.dir):
                return
            time.sleep(0.1)


ALL_ACTIONS = ("ApplyRecord,Copy,Create,FolderBind,HardDelete,MailboxLogin,"
               "MailItemsAccessed,MessageBind,Move,MoveToDeletedItems,"
               "RecordDelete,SearchQueryInitiated,Send,SendAs,SendOnBehalf,"
               "SoftDelete,Update,UpdateCalendarDelegation,"
               "UpdateComplianceTag,UpdateFolderPermissions,UpdateInboxRules,"
               "FolderCreate,FolderDelete,FolderRename")


def audit_everything(daemon, users):
    """Policy: every action audited for every logon type on every user
    (strict preset for the defaults, and each bench mailbox registered
    with all actions in all three sets)."""
    daemon.ctl("set-org", "--preset", "strict")
    for u in users:
        daemon.ctl("mailbox", "add", u)
        daemon.ctl("set-mailbox", u, "--audit-owner", ALL_ACTIONS,
                   "--audit-delegate", ALL_ACTIONS, "--audit-admin",
                   ALL_ACTIONS)
