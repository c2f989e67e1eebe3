# SPDX-License-Identifier: MIT
"""A throwaway rsyslogd on 127.0.0.1 for the forwarding tests.

TestPKI makes a CA, a server certificate for 127.0.0.1/localhost and client
certificates with the openssl command line, in a directory of its own (one
per test class is plenty: P-256 keys take milliseconds).

Rsyslog runs the installed /usr/sbin/rsyslogd in the foreground (-n) with a
configuration written into a fresh temporary directory: its work
directory, pid file, output files and certificates all live there.  It
never reads /etc/rsyslog.conf, loads neither imuxsock nor imklog (no
/dev/log, no kernel log) and is stopped by the pid it wrote, never by name.
Four inputs on free ports:

  tcp       imptcp, plain; octet-counted (RFC 6587) and LF framing
  tls       imtcp with the OpenSSL driver, mode 1, x509/name: the client
            must present a certificate for one of permitted_peers (the
            list is imtcp's module parameter: see _write_conf)
  relp      imrelp, plain
  relp_tls  imrelp over TLS (openssl), authMode name, same peer list

Every input writes each message it receives to its own file, one JSON
string per line holding the raw message (rawmsg) exactly as sent:
control characters are not rewritten on reception
(parser.escapeControlCharactersOnReceive off), so a line break inside a
message stays inside that message's line and a frame that was split by
the sender shows up as two lines.  received(input) decodes the lines
(non-UTF-8 bytes come back as surrogate escapes, as bytes with
received_bytes).  Rsyslog's own messages go to rsyslogd.log.

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

from dovecot_fixture import free_port  # one port picker for all fixtures

RSYSLOGD = "/usr/sbin/rsyslogd"
MODULE_DIR = "/usr/lib/x86_64-linux-gnu/rsyslog"
INPUTS = ("tcp", "tls", "relp", "relp_tls")
CLIENT_NAME = "mailsrv01.example.test"


def have_rsyslog():
    """Why the tests cannot run, or None when they can."""
    if not os.access(RSYSLOGD, os.X_OK):
        return "%s not installed (apt-get install rsyslog)" % RSYSLOGD
    for mod in ("imtcp", "imrelp", "lmnsd_ossl"):
        if not os.path.exists(os.path.join(MODULE_DIR, mod + ".so")):
            return "%s/%s.so missing (rsyslog-relp, rsyslog-openssl)" % (
                MODULE_DIR, mod)
    if shutil.which("openssl") is None:
        return "openssl command not installed"
    return None




def _openssl(*args, cwd):
    res = subprocess.run(["openssl"] + list(args), cwd=cwd,
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args),
                                                      res.stderr))


class TestPKI:
    """A CA and certificates signed by it, as PEM files in self.dir:
    ca.pem, server.pem/.key (SAN localhost, 127.0.0.1) and client.pem/.key
    (CN and SAN CLIENT_NAME).  issue() makes more; other_ca() a second,
    unrelated CA (for "wrong CA" tests)."""

    def __init__(self, tmpdir=None):
        self.dir = tmpdir or tempfile.mkdtemp(prefix="ma-pki-")
        self.own_dir = tmpdir is None
        self.ca = self.path("ca.pem")
        self.ca_key = self.path("ca.key")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
                 "-out", "ca.pem", "-days", "2", "-subj",
                 "/CN=mailaudit-test-ca", cwd=self.dir)
        self.server_cert, self.server_key = self.issue(
            "server", "localhost", ["DNS:localhost", "IP:127.0.0.1"])
        self.client_cert, self.client_key = self.issue(
            "client", CLIENT_NAME, ["DNS:" + CLIENT_NAME])

    def path(self, name):
        return os.path.join(self.dir, name)

    def issue(self, stem, cn, sans):
        """stem.pem + stem.key signed by this CA; returns their paths."""
        _openssl("req", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                 stem + ".key", "-out", stem + ".csr", "-subj", "/CN=" + cn,
                 cwd=self.dir)
        with open(self.path(stem + ".ext"), "w") as f:
            f.write("subjectAltName=%s\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n"
                    % ",".join(sans))
        _openssl("x509", "-req", "-in", stem + ".csr", "-CA", "ca.pem",
                 "-CAkey", "ca.key", "-CAcreateserial", "-out",
                 stem + ".pem", "-days", "2", "-extfile", stem + ".ext",
                 cwd=self.dir)
        return self.path(stem + ".pem"), self.path(stem + ".key")

    def other_ca(self):
        """A self-signed CA that signed nothing here: other-ca.pem."""
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                 "other-ca.key", "-out", "other-ca.pem", "-days", "2",
                 "-subj", "/CN=unrelated-ca", cwd=self.dir)
        return self.path("other-ca.pem")

    def cleanup(self):
        if self.own_dir and not os.environ.get("MAILAUDIT_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def _q(s):
    """A RainerScript string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Rsyslog:
    """rsyslogd with the four inputs of the module docstring.

    pki: a TestPKI (made, and removed at cleanup, when not given).
    permitted_peers: client certificate names the TLS inputs accept.
    ports: {input: port} to reuse (restart keeps its ports by itself).
    output: "json" (module docstring) or "raw": rawmsg and a line feed,
    cheaper for rsyslog (the benchmark), a line per message only as
    long as no message holds a line feed."""

    def __init__(self, pki=None, permitted_peers=(CLIENT_NAME,),
                 tmpdir=None, ports=None, output="json"):
        self.dir = tmpdir or tempfile.mkdtemp(prefix="ma-rsyslog-")
        self.own_dir = tmpdir is None
        if pki is None:
            # inside self.dir, so removed with it
            os.makedirs(os.path.join(self.dir, "pki"))
            pki = TestPKI(os.path.join(self.dir, "pki"))
        self.pki = pki
        self.permitted_peers = list(permitted_peers)
        self.ports = dict(ports or {})
        for name in INPUTS:
            self.ports.setdefault(name, free_port())
        self.conf = os.path.join(self.dir, "rsyslog.conf")
        self.pidfile = os.path.join(self.dir, "rsyslogd.pid")
        self.work = os.path.join(self.dir, "work")
        self.out = os.path.join(self.dir, "out")
        self.log = os.path.join(self.dir, "rsyslogd.log")
        os.makedirs(self.work, exist_ok=True)
        os.makedirs(self.out, exist_ok=True)
        self.proc = None
        self.pid = None
        self._counted = {}
        self.output_format = output
        self._write_conf()

    def output(self, name):
        return os.path.join(self.out, name + ".log")

    def target(self, name):
        """host:port of an input, as a forward line's TARGET."""
        return "127.0.0.1:%d" % self.ports[name]

    def _write_conf(self):
        peers = "[" + ", ".join(_q(p) for p in self.permitted_peers) + "]"
        pki = self.pki
        lines = [
            "# written by tests/integration/rsyslog_fixture.py",
            "global(workDirectory=%s maxMessageSize=\"64k\"" % _q(self.work),
            "       parser.escapeControlCharactersOnReceive=\"off\"",
            "       defaultNetstreamDriverCAFile=%s" % _q(pki.ca),
            "       defaultNetstreamDriverCertFile=%s" % _q(pki.server_cert),
            "       defaultNetstreamDriverKeyFile=%s)" % _q(pki.server_key),
            # Drain what was acknowledged (RELP) into the files before
            # exiting on SIGTERM instead of dropping it after 1.5 s.
            "main_queue(queue.timeoutShutdown=\"20000\")",
            # The peer list must be the module's: rsyslog 8.2302 ignores
            # an imtcp input's own permittedPeer with the ossl driver (any
            # CA-signed client got in).  A module-wide list would make
            # imtcp's plain listeners fail, so plain TCP is imptcp.
            # Even so imtcp/ossl checks the name too late: a CA-signed
            # client with another name gets some messages in (6 of 10
            # tries); a client without a certificate never does, and
            # imrelp refuses a wrong name every time.
            "module(load=\"imtcp\" maxSessions=\"200\" permittedPeer=%s)"
            % peers,
            "module(load=\"imptcp\")",
            "module(load=\"imrelp\" tls.tlslib=\"openssl\")",
            "input(type=\"imptcp\" address=\"127.0.0.1\" port=\"%d\" "
            "name=\"tcp\" ruleset=\"rx_tcp\")" % self.ports["tcp"],
            "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\" "
            "name=\"tls\" ruleset=\"rx_tls\" streamDriver.name=\"ossl\" "
            "streamDriver.mode=\"1\" streamDriver.authMode=\"x509/name\")"
            % self.ports["tls"],
            "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"%d\" "
            "name=\"relp\" ruleset=\"rx_relp\")" % self.ports["relp"],
            "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"%d\" "
            "name=\"relp_tls\" ruleset=\"rx_relp_tls\" tls=\"on\" "
            "tls.caCert=%s tls.myCert=%s tls.myPrivKey=%s "
            "tls.authMode=\"name\" tls.permittedPeer=%s)" % (
                self.ports["relp_tls"], _q(pki.ca), _q(pki.server_cert),
                _q(pki.server_key), peers),
            # One JSON string per message: the raw bytes, nothing added.
            "template(name=\"raw_json\" type=\"list\") {",
            "  constant(value=\"\\\"\") property(name=\"rawmsg\" "
            "format=\"json\") constant(value=\"\\\"\\n\") }",
            "template(name=\"raw\" type=\"list\") {",
            "  property(name=\"rawmsg\") constant(value=\"\\n\") }",
        ]
        tmpl = "raw_json" if self.output_format == "json" else "raw"
        for name in INPUTS:
            lines.append(
                "ruleset(name=\"rx_%s\") { action(type=\"omfile\" file=%s "
                "template=\"%s\") }" % (name, _q(self.output(name)), tmpl))
        # rsyslog's own messages (the default ruleset)
        lines.append("syslog.* action(type=\"omfile\" file=%s)"
                     % _q(self.log))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def check_config(self):
        res = subprocess.run([RSYSLOGD, "-N1", "-f", self.conf, "-M",
                              MODULE_DIR], capture_output=True, text=True,
                             timeout=30)
        if res.returncode != 0:
            raise RuntimeError("rsyslog config %s rejected: %s%s" % (
                self.conf, res.stdout, res.stderr))

    def _listening(self):
        """Every input listens (read from /proc/net/tcp, so that no probe
        connection shows up in rsyslog's log)."""
        ports = set()
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A":  # LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        return all(self.ports[name] in ports for name in INPUTS)

    def start(self, timeout=15.0):
        if self.proc is not None:
            raise RuntimeError("rsyslogd already running")
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)
        self.stdout = open(os.path.join(self.dir, "rsyslogd.stdout"), "ab")
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", self.conf, "-i", self.pidfile,
             "-M", MODULE_DIR], stdout=self.stdout,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                self.stdout.close()
                raise RuntimeError("rsyslogd exited: " + self.log_text())
            # The pid file is written once the configuration is active;
            # the probes below then see every listener.
            if os.path.exists(self.pidfile) and self._listening():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("rsyslogd did not start: " + self.log_text())

    def stop(self, timeout=30.0):
        """SIGTERM the rsyslogd we started (by pid), wait; SIGKILL if it
        will not go.  rsyslogd drains its queue before exiting."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        self.stdout.close()

    def kill(self):
        """SIGKILL: a receiver that dies without draining its queue."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None:
            self.proc = None
            self.stdout.close()

    def restart(self, timeout=15.0):
        self.stop()
        return self.start(timeout)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        self.stop()
        if self.own_dir and not os.environ.get("MAILAUDIT_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        text = ""
        for path in (self.log, os.path.join(self.dir, "rsyslogd.stdout")):
            try:
                with open(path, errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def received_bytes(self, name):
        """Every complete message that input wrote, as bytes, in order."""
        try:
            with open(self.output(name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        if self.output_format != "json":
            return data.split(b"\n")[:data.count(b"\n")]
        msgs = []
        for line in data.split(b"\n"):
            if not line:
                continue
            try:
                text = json.loads(line.decode("utf-8", "surrogateescape"))
            except ValueError:
                break  # a line omfile has not finished writing
            msgs.append(text.encode("utf-8", "surrogateescape"))
        return msgs

    def received(self, name):
        """Every message as str (invalid UTF-8 as surrogate escapes)."""
        return [m.decode("utf-8", "surrogateescape")
                for m in self.received_bytes(name)]

    def count(self, name):
        """Lines written so far; reads only what is new since the last
        call, so polling a large file stays cheap."""
        off, n = self._counted.get(name, (0, 0))
        try:
            with open(self.output(name), "rb") as f:
                f.seek(off)
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    off += len(chunk)
                    n += chunk.count(b"\n")
        except FileNotFoundError:
            return 0
        self._counted[name] = (off, n)
        return n

    def wait_count(self, name, n, timeout=10.0):
        """Wait until input name wrote at least n messages; returns the
        messages (fewer than n after timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(name) >= n:
                break
            time.sleep(0.05)
        return self.received(name)


# Plain clients, for the fixture's own test and the benchmark's raw rate.

def client_tls_context(pki, cert=True):
    """An ssl context that trusts pki's CA and presents its client
    certificate (cert=False: none)."""
    import ssl
    ctx = ssl.create_default_context(cafile=pki.ca)
    if cert:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    return ctx


def octet_frames(msgs):
    """RFC 6587 octet-counting frames of msgs (bytes) as one bytes."""
    return b"".join(b"%d %s" % (len(m), m) for m in msgs)


def send_syslog(port, msgs, tls=None, chunk=1 << 20):
    """Send msgs (bytes each) to 127.0.0.1:port octet-counted, over TLS
    with the ssl context tls; close cleanly (TLS close_notify)."""
    data = octet_frames(msgs)
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
    try:
        view = memoryview(data)
        for off in range(0, len(data), chunk):
            sock.sendall(view[off:off + chunk])
        if tls is not None:
            try:
                sock = sock.unwrap()
            except OSError:
                # rsyslog sometimes answers close_notify with garbage
                # after it refused another session; all data was sent.
                return
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        while sock.recv(4096):
            pass
    finally:
        sock.close()


class RelpClient:
    """A minimal RELP client (the protocol of librelp and rsyslog's
    imrelp): open, syslog commands with up to window unacknowledged,
    close.  send() returns once every message is acknowledged 200."""

    def __init__(self, port, tls=None, window=128, timeout=30):
        sock = socket.create_connection(("127.0.0.1", port),
                                        timeout=timeout)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
            except OSError:
                sock.close()
                raise
        self.sock = sock
        self.window = window
        self.txnr = 0
        self.buf = b""
        offers = b"relp_version=0\nrelp_software=mailaudit-test\n" \
                 b"commands=syslog"
        try:
            self._command(b"open", offers)
            nr, data = self._response()
            if not data.startswith(b"200"):
                raise RuntimeError("RELP open refused: %r" % data)
        except (OSError, RuntimeError):
            self.sock.close()
            raise

    def _command(self, cmd, data):
        self.txnr += 1
        self.sock.sendall(b"%d %s %d %s\n" % (self.txnr, cmd, len(data),
                                               data))

    def _frames(self, cmds):
        out = []
        for cmd, data in cmds:
            self.txnr += 1
            out.append(b"%d %s %d %s\n" % (self.txnr, cmd, len(data), data))
        return b"".join(out)

    def _frame(self):
        """(txnr, command, data) of the next complete frame in self.buf,
        or None.  TXNR SP COMMAND SP DATALEN [SP DATA] LF."""
        sp1 = self.buf.find(b" ")
        sp2 = self.buf.find(b" ", sp1 + 1) if sp1 > 0 else -1
        if sp2 < 0:
            return None
        p = sp2 + 1
        while p < len(self.buf) and self.buf[p:p + 1].isdigit():
            p += 1
        if p >= len(self.buf):
            return None
        length = int(self.buf[sp2 + 1:p])
        start = p + 1 if length else p
        end = start + length
        if len(self.buf) <= end:
            return None
        if self.buf[end:end + 1] != b"\n":
            raise RuntimeError("RELP: bad frame %r" % self.buf[:80])
        frame = (int(self.buf[:sp1]), self.buf[sp1 + 1:sp2],
                 self.buf[start:end])
        self.buf = self.buf[end + 1:]
        return frame

    def _response(self):
        """(txnr, data) of the next rsp frame from the server."""
        while True:
            frame = self._frame()
            if frame is not None:
                if frame[1] == b"serverclose":
                    raise RuntimeError("RELP server closed the session")
                return frame[0], frame[2]
            more = self.sock.recv(1 << 16)
            if not more:
                raise RuntimeError("RELP connection closed by server")
            self.buf += more

    def send(self, msgs):
        outstanding = 0
        i = 0
        while i < len(msgs) or outstanding:
            if i < len(msgs) and outstanding < self.window:
                n = min(self.window - outstanding, len(msgs) - i)
                self.sock.sendall(self._frames(
                    [(b"syslog", m) for m in msgs[i:i + n]]))
                i += n
                outstanding += n
                continue
            nr, data = self._response()
            if not data.startswith(b"200"):
                raise RuntimeError("RELP txnr %d refused: %r" % (nr, data))
            outstanding -= 1

    def close(self):
        try:
            self._command(b"close", b"")
            self._response()
        except (OSError, RuntimeError):
            pass
        self.sock.close()
