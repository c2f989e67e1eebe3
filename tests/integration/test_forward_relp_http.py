# SPDX-License-Identifier: MIT
"""mailaudit-forward's RELP and HTTP transports, against real receivers.

RELP: the real mailauditd stores records, the real mailaudit-forward
sends them to a real rsyslogd (imrelp, plain and TLS, rsyslog_fixture)
that is stopped and restarted while records flow: every stored record
must arrive (duplicates allowed, gaps not).

HTTP: the same, to http_receiver.py behaving like Splunk HEC and like
Elasticsearch _bulk; the receiver checks every request's format, stores
what it takes and answers with the scripted failures of each test
(busy/Retry-After, an invalid event, bulk items refused, a wrong token).
What the receiver holds is compared with the store, record by record.
"""

import json
import os
import signal
import threading
import time
import unittest

from daemon_fixture import MailauditDaemon, frame
from forward_fixture import ForwarderCase, have_forwarder, parse_syslog, \
    store_lines
from http_receiver import HttpReceiver, event_id
from rsyslog_fixture import Rsyslog, TestPKI, have_rsyslog

NO_RSYSLOG = have_rsyslog()
NO_FORWARD = have_forwarder()


def frames(n, start=0):
    """n record frames, each with an item (so bodies are realistic)."""
    ops = ["Update", "SoftDelete", "HardDelete", "MoveToDeletedItems"]
    return [frame(ops[i % 4], user="alice", mbox="alice@example.test",
                  items=[(i + 1, "<m%d@example.test>" % i,
                          "subject %d" % i)],
                  folder="INBOX", ip="192.0.2.%d" % (i % 250 + 1))
            for i in range(start, start + n)]


def submit(daemon, fr, timeout=30.0):
    s = daemon.sensor()
    try:
        for f in fr:
            s.send(f)
        acked = s.wait_ack(len(fr), timeout=timeout)
    finally:
        s.close()
    if acked != len(fr):
        raise AssertionError("mailauditd acked %d of %d" % (acked, len(fr)))


class Feeder(threading.Thread):
    """Submits frames at about rate per second in the background."""

    def __init__(self, daemon, fr, rate):
        super().__init__(daemon=True)
        self.d, self.fr, self.rate = daemon, fr, rate
        self.error, self.sent = None, 0

    def run(self):
        s = self.d.sensor()
        try:
            t0 = time.monotonic()
            for i in range(0, len(self.fr), 20):
                batch = self.fr[i:i + 20]
                for f in batch:
                    s.send(f)
                if s.wait_ack(i + len(batch), timeout=10) < i + len(batch):
                    raise AssertionError("ack missing at %d" % i)
                self.sent = i + len(batch)
                time.sleep(max(0.0, t0 + self.sent / self.rate -
                               time.monotonic()))
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            s.close()


@unittest.skipIf(NO_FORWARD, NO_FORWARD or "")
class Base(ForwarderCase, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = TestPKI()

    @classmethod
    def tearDownClass(cls):
        cls.pki.cleanup()

    def setUp(self):
        self.d = MailauditDaemon("")
        self.addCleanup(self.d.cleanup)
        self.d.start()

    def secret(self, name, value):
        path = os.path.join(self.d.dir, name)
        with open(path, "w") as f:
            f.write(value + "\n")
        os.chmod(path, 0o600)
        return path

    def wait_for(self, cond, timeout=30.0, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)

    def wait_status(self, fw, name, pred, timeout=20.0):
        last = {}

        def ok():
            nonlocal last
            _, dests = fw.status()
            last = dests.get(name, {})
            return pred(last)
        try:
            self.wait_for(ok, timeout, "status of " + name)
        except AssertionError:
            self.fail("status of %s never matched: %s" % (name, last))
        return last


# --- RELP --------------------------------------------------------------

class DirectRsyslog(Rsyslog):
    """rsyslogd whose main queue is Direct: imrelp answers "200 OK" only
    after omfile wrote the message, so a SIGKILL loses nothing that was
    acknowledged, and a gap after one is the sender's fault."""

    def _write_conf(self):
        super()._write_conf()
        with open(self.conf) as f:
            text = f.read()
        old = 'main_queue(queue.timeoutShutdown="20000")'
        if old not in text:
            raise RuntimeError("rsyslog_fixture changed: no " + old)
        with open(self.conf, "w") as f:
            f.write(text.replace(old, 'main_queue(queue.type="Direct")'))


@unittest.skipIf(NO_RSYSLOG or NO_FORWARD, NO_RSYSLOG or NO_FORWARD or "")
class TestRelp(Base):
    def setUp(self):
        super().setUp()
        self.rs = DirectRsyslog(pki=self.pki)
        self.addCleanup(self.rs.cleanup)
        self.rs.start()

    def relp_line(self, name, tls=False, extra=""):
        if not tls:
            line = "%s relp %s" % (name, self.rs.target("relp"))
        else:
            p = self.pki
            # librelp matches DNS names only, not the IP SAN
            line = ("%s relp %s tls=yes peer_name=localhost ca=%s cert=%s "
                    "key=%s" % (name, self.rs.target("relp_tls"), p.ca,
                                p.client_cert, p.client_key))
        return line + (" " + extra if extra else "")

    def check_no_gap(self, inp, n):
        """Every stored record arrived at inp once or more, each copy the
        same bytes, first arrivals in seq order.  Returns duplicates."""
        store = {seq: rec for seq, _, rec in store_lines(self.d)}
        self.assertEqual(len(store), n)
        seen, order, dups = {}, [], 0
        for m in self.rs.received(inp):
            p = parse_syslog(m)
            sd = dict(p["sd"])["mailaudit@32473"]
            seq = int(sd["seq"])
            self.assertEqual(sd["id"], store[seq]["Id"])
            if seq in seen:
                self.assertEqual(m, seen[seq])
                dups += 1
                continue
            seen[seq] = m
            order.append(seq)
        self.assertEqual(order, sorted(order), "out of order")
        missing = sorted(set(store) - set(seen))
        self.assertEqual(missing, [], "%d records missing" % len(missing))
        return dups

    def restart_mid_stream(self, tls, stop, n=3000, prefill=False):
        """Records flow (fed at 1000/s, or all stored first: prefill, so
        that a batch is in flight most of the time); once 500 arrived,
        stop() ends rsyslog; it is started again 1.5 s later."""
        inp = "relp_tls" if tls else "relp"
        if prefill:
            submit(self.d, frames(n))
        fw = self.forwarder([self.relp_line("r1", tls,
                                            "batch=200 timeout_ms=2000")])
        feed = None
        if not prefill:
            feed = Feeder(self.d, frames(n), rate=1000)
            feed.start()
        self.wait_for(lambda: self.rs.count(inp) >= 500, 20,
                      "first records at rsyslog")
        stop()   # rsyslog gone while records keep coming
        self.assertFalse(self.rs.running())
        got = self.rs.count(inp)
        self.assertLess(got, n, "all records arrived before the stop")
        time.sleep(1.5)
        self.rs.start()
        if feed is not None:
            feed.join(60)
            self.assertIsNone(feed.error)
        self.assertEqual(fw.wait_cursor("r1", n, timeout=60), n)
        dups = self.check_no_gap(inp, n)
        # duplicates are bounded by what was in flight: one batch
        self.assertLessEqual(dups, 200)
        st = fw.state("r1")
        self.assertEqual(st["delivered"], n)
        self.assertEqual(st["rejected"], 0)
        return fw

    def test_relp_rsyslog_stopped_and_restarted(self):
        self.restart_mid_stream(False, self.rs.stop)

    def test_relp_tls_rsyslog_stopped_and_restarted(self):
        # SIGTERM, not SIGKILL: what rsyslog acknowledged but had not
        # written yet would be rsyslog's loss (no disk-assisted queue)
        self.restart_mid_stream(True, self.rs.stop)

    def frozen_then_killed(self):
        # rsyslog stops reading: what the forwarder sent now sits in
        # the socket unanswered; then it dies without answering.  Only
        # what was answered may count, or the rest is a gap.
        os.kill(self.rs.pid, signal.SIGSTOP)
        time.sleep(0.5)
        self.rs.kill()

    def test_relp_rsyslog_frozen_and_killed(self):
        self.restart_mid_stream(False, self.frozen_then_killed, n=20000,
                                prefill=True)

    def test_relp_tls_rsyslog_frozen_and_killed(self):
        self.restart_mid_stream(True, self.frozen_then_killed, n=10000,
                                prefill=True)

    def test_relp_forwarder_killed_resumes_from_cursor(self):
        n = 2000
        submit(self.d, frames(n))
        fw = self.forwarder([self.relp_line("r1")])
        self.wait_for(lambda: self.rs.count("relp") >= 300, 20)
        fw.kill()
        self.forwarder([self.relp_line("r1")])
        self.wait_for(lambda: len({parse_syslog(m)["sd"][0][1]["seq"]
                                   for m in self.rs.received("relp")}) >= n,
                      30, "all records after the restart")
        self.check_no_gap("relp", n)

    def test_relp_tls_wrong_peer_name_is_refused(self):
        submit(self.d, frames(5))
        fw = self.forwarder([self.relp_line(
            "r1", True).replace("peer_name=localhost",
                                "peer_name=other.example.test")],
            start=False)
        res = fw.check()
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("peer_name", res.stdout)
        self.assertIn("other", res.stdout + res.stderr)
        self.assertEqual(self.rs.count("relp_tls"), 0)

    def test_relp_tls_unknown_ca_is_refused(self):
        other = self.pki.other_ca()
        fw = self.forwarder([self.relp_line("r1", True).replace(
            "ca=" + self.pki.ca, "ca=" + other)], start=False)
        res = fw.check()
        self.assertNotEqual(res.returncode, 0, res.stdout)
        self.assertIn("r1 relp", res.stdout)
        self.assertIn("certificate", res.stdout)

    def test_relp_tls_destinations_must_share_the_ca(self):
        other = self.pki.other_ca()
        fw = self.forwarder([
            self.relp_line("r1", True),
            self.relp_line("r2", True).replace("ca=" + self.pki.ca,
                                               "ca=" + other)],
            start=False)
        res = fw.check()
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("share one ca=", res.stdout)

    def test_relp_connection_refused_names_the_target(self):
        port = self.rs.ports["relp"]
        self.rs.stop()
        fw = self.forwarder([self.relp_line("r1")], start=False)
        res = fw.check()
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("127.0.0.1:%d" % port, res.stdout)
        self.assertIn("refused", res.stdout.lower())


# --- HTTP --------------------------------------------------------------

class HttpBase(Base):
    kind = None

    def receiver(self, tls=False, **kw):
        rx = HttpReceiver(self.kind, tls=(self.pki.server_cert,
                                          self.pki.server_key)
                          if tls else None, **kw)
        rx.start()
        self.addCleanup(rx.stop)
        return rx

    def assert_store_equals(self, rx, rejected_ids=()):
        store = store_lines(self.d)
        want = [rec["Id"] for _, _, rec in store
                if rec["Id"] not in rejected_ids]
        got = rx.ids()
        self.assertEqual(len(got), len(set(got)), "duplicates stored")
        self.assertEqual(sorted(got), sorted(want))
        self.assertEqual(rx.violations, [])
        return store


class TestHec(HttpBase):
    kind = "hec"

    def hec_line(self, rx, token_file, extra=""):
        line = "h1 hec %s token_file=%s" % (rx.url(), token_file)
        if rx.tls is not None:
            line += " ca=" + self.pki.ca
        return line + (" " + extra if extra else "")

    def deliver(self, fmt, n=300, tls=False):
        rx = self.receiver(token="tok-%s" % fmt, tls=tls)
        tok = self.secret("hec.token", "tok-%s" % fmt)
        submit(self.d, frames(n))
        fw = self.forwarder([self.hec_line(rx, tok, "format=%s batch=100"
                                           % fmt)])
        self.assertEqual(fw.wait_cursor("h1", n), n)
        store = self.assert_store_equals(rx)
        # the events are the records (json: the very objects)
        by_id = {rec["Id"]: (line, rec) for _, line, rec in store}
        for e in rx.events:
            line, rec = by_id[event_id(e)]
            self.assertEqual(e["host"], "mx-test.example")
            self.assertIsInstance(e["time"], (int, float))
            if fmt == "json":
                self.assertEqual(e["event"], json.loads(line))
        return rx, fw

    def test_hec_json(self):
        rx, _ = self.deliver("json")
        # keep-alive: one connection for the three requests
        self.assertEqual(rx.connections, 1)
        self.assertEqual([s for _, s, _ in rx.log], [200] * 3)

    def test_hec_ecs(self):
        self.deliver("ecs")

    def test_hec_cef(self):
        self.deliver("cef")

    def test_hec_tls(self):
        rx, _ = self.deliver("json", n=50, tls=True)
        self.assertTrue(rx.url().startswith("https://"))

    def test_hec_tls_wrong_ca(self):
        rx = self.receiver(token="t", tls=True)
        tok = self.secret("hec.token", "t")
        fw = self.forwarder([self.hec_line(rx, tok).replace(
            self.pki.ca, self.pki.other_ca())], start=False)
        submit(self.d, frames(3))
        fw.start()
        st = self.wait_status(fw, "h1", lambda s: s.get("last_error"))
        self.assertIn("certificate", st["last_error"])
        self.assertEqual(rx.events, [])

    def test_hec_busy_with_retry_after(self):
        rx = self.receiver(token="t")
        rx.fail_requests(2, 503, retry_after=1)
        tok = self.secret("hec.token", "t")
        submit(self.d, frames(50))
        t0 = time.monotonic()
        fw = self.forwarder([self.hec_line(rx, tok)])
        self.assertEqual(fw.wait_cursor("h1", 50), 50)
        # two refusals, each followed by a wait of at least Retry-After
        self.assertGreaterEqual(time.monotonic() - t0, 2.0)
        self.assertEqual([s for _, s, _ in rx.log], [503, 503, 200])
        self.assertIn("HEC server busy", fw.log_text())
        self.assert_store_equals(rx)

    def test_hec_invalid_event_is_rejected_and_the_rest_delivered(self):
        rx = self.receiver(token="t")
        rx.hec_invalid_event(7)
        tok = self.secret("hec.token", "t")
        submit(self.d, frames(40))
        fw = self.forwarder([self.hec_line(rx, tok)])
        self.assertEqual(fw.wait_cursor("h1", 40), 40)
        store = store_lines(self.d)
        bad = store[7][2]["Id"]
        rej = fw.rejected("h1")
        self.assertEqual(len(rej), 1, rej)
        self.assertIn(bad, json.dumps(rej[0]))
        self.assertIn("Invalid data format", json.dumps(rej[0]))
        self.assert_store_equals(rx, rejected_ids={bad})
        st = fw.state("h1")
        self.assertEqual((st["delivered"], st["rejected"]), (39, 1))

    def test_hec_token_refused_then_fixed(self):
        rx = self.receiver(token="right")
        tok = self.secret("hec.token", "wrong")
        submit(self.d, frames(10))
        fw = self.forwarder([self.hec_line(rx, tok)])
        st = self.wait_status(fw, "h1", lambda s: s.get("last_error"))
        self.assertIn("HEC token refused", st["last_error"])
        self.assertNotIn("wrong", st["last_error"])  # never the secret
        self.assertEqual(fw.cursor("h1"), 0)
        self.secret("hec.token", "right")  # re-read on reconnect
        self.assertEqual(fw.wait_cursor("h1", 10, timeout=20), 10)
        self.assert_store_equals(rx)


    def test_hec_check_probes_without_sending(self):
        rx = self.receiver(token="t", tls=True)
        tok = self.secret("hec.token", "t")
        fw = self.forwarder([self.hec_line(rx, tok)], start=False)
        res = fw.check()
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn("h1 hec %s: ok" % rx.url(), res.stdout)
        # one empty POST, answered 400 "No data" like Splunk; no events
        self.assertEqual((rx.probes, rx.requests, rx.events), (1, 0, []))
        self.assertEqual(rx.violations, [])

    def test_hec_wrong_path_is_reported_at_check(self):
        rx = self.receiver(token="t")
        tok = self.secret("hec.token", "t")
        url = rx.url().replace("/services/collector/event",
                               "/services/collector/evnt")
        fw = self.forwarder(["h1 hec %s token_file=%s" % (url, tok)],
                            start=False)
        res = fw.check()
        self.assertEqual(res.returncode, 1, res.stdout)
        self.assertIn("HTTP 404 not found (check the target URL)",
                      res.stdout)

    def test_hec_token_with_indexer_ack_is_reported_at_check(self):
        rx = self.receiver(token="t", hec_ack_required=True)
        tok = self.secret("hec.token", "t")
        fw = self.forwarder([self.hec_line(rx, tok)], start=False)
        res = fw.check()
        self.assertEqual(res.returncode, 1, res.stdout)
        self.assertIn("indexer acknowledgment", res.stdout)
        self.assertIn("code 10", res.stdout)
        self.assertIn(tok, res.stdout)


class TestElastic(HttpBase):
    kind = "elastic"

    def test_check_probes_the_cluster(self):
        rx = self.receiver(tls=True, api_key="a2V5aWQ6c2VjcmV0")
        key = self.secret("es.key", "a2V5aWQ6c2VjcmV0")
        fw = self.forwarder([self.es_line(rx, "api_key_file=" + key)],
                            start=False)
        res = fw.check()
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn("e1 elastic %s: ok" % rx.url(), res.stdout)
        self.assertEqual((rx.probes, rx.requests), (1, 0))
        self.assertEqual(rx.violations, [])

    def test_api_key_without_monitor_privilege_is_not_an_error(self):
        # GET / needs the cluster privilege "monitor"; a key that may only
        # write the data stream gets 403 there, yet its _bulk works
        rx = self.receiver(api_key="a2V5aWQ6c2VjcmV0", monitor=False)
        key = self.secret("es.key", "a2V5aWQ6c2VjcmV0")
        fw = self.forwarder([self.es_line(rx, "api_key_file=" + key)],
                            start=False)
        res = fw.check()
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        submit(self.d, frames(7))
        fw.start()
        self.assertEqual(fw.wait_cursor("e1", 7), 7)
        self.assert_store_equals(rx)
        self.assertGreaterEqual(rx.probes, 2)  # --check, then the daemon

    def es_line(self, rx, extra=""):
        line = "e1 elastic %s" % rx.url()
        if rx.tls is not None:
            line += " ca=" + self.pki.ca
        return line + (" " + extra if extra else "")

    def test_bulk_ecs_and_json(self):
        for fmt, index in (("ecs", "logs-mailaudit-default"),
                           ("json", "audit-json")):
            with self.subTest(fmt=fmt):
                rx = self.receiver()
                d = MailauditDaemon("")
                self.addCleanup(d.cleanup)
                d.start()
                self.d = d
                submit(d, frames(250))
                fw = self.forwarder([self.es_line(
                    rx, "format=%s index=%s batch=100" % (fmt, index))])
                self.assertEqual(fw.wait_cursor("e1", 250), 250)
                store = self.assert_store_equals(rx)
                self.assertEqual(list(rx.docs), [index])
                self.assertEqual(rx.connections, 1)
                by_id = {rec["Id"]: line for _, line, rec in store}
                for _id, doc in rx.docs[index].items():
                    if fmt == "json":
                        self.assertEqual(doc, json.loads(by_id[_id]))
                    else:
                        self.assertEqual(doc["event"]["id"], _id)
                fw.stop()

    def test_bulk_item_429_resends_from_it(self):
        rx = self.receiver()
        rx.bulk_item(3, 429)
        submit(self.d, frames(20))
        fw = self.forwarder([self.es_line(rx)])
        self.assertEqual(fw.wait_cursor("e1", 20), 20)
        self.assert_store_equals(rx)
        # first request: 20 items, 3 stored before the 429 item, the
        # items after it stored too (Elasticsearch does), then the resend
        # from item 3 answered 201 for it and 409 for the rest
        self.assertEqual([n for _, _, n in rx.log], [20, 17])
        self.assertEqual(rx.duplicates, 16)
        st = fw.state("e1")
        self.assertEqual((st["delivered"], st["rejected"]), (20, 0))

    def test_bulk_item_mapping_error_is_rejected(self):
        rx = self.receiver()
        rx.bulk_item(5, 400, "mapper_parsing_exception")
        submit(self.d, frames(12))
        fw = self.forwarder([self.es_line(rx)])
        self.assertEqual(fw.wait_cursor("e1", 12), 12)
        bad = store_lines(self.d)[5][2]["Id"]
        rej = fw.rejected("e1")
        self.assertEqual(len(rej), 1)
        self.assertIn(bad, json.dumps(rej[0]))
        self.assertIn("mapper_parsing_exception", json.dumps(rej[0]))
        self.assert_store_equals(rx, rejected_ids={bad})
        self.assertEqual(len(rx.log), 1)  # nothing resent

    def test_bulk_409_counts_as_delivered(self):
        rx = self.receiver()
        submit(self.d, frames(6))
        store = store_lines(self.d)
        # already there, as after a resend
        rx.docs["logs-mailaudit-default"] = {store[2][2]["Id"]: {}}
        fw = self.forwarder([self.es_line(rx)])
        self.assertEqual(fw.wait_cursor("e1", 6), 6)
        self.assertEqual(rx.duplicates, 1)
        self.assertEqual(fw.state("e1")["delivered"], 6)

    def test_bulk_request_429_with_retry_after(self):
        rx = self.receiver()
        rx.fail_requests(1, 429, retry_after=2)
        submit(self.d, frames(10))
        t0 = time.monotonic()
        fw = self.forwarder([self.es_line(rx)])
        self.assertEqual(fw.wait_cursor("e1", 10), 10)
        self.assertGreaterEqual(time.monotonic() - t0, 2.0)
        self.assertEqual([s for _, s, _ in rx.log], [429, 200])
        self.assert_store_equals(rx)

    def test_bulk_api_key_and_basic_auth(self):
        for how in ("api_key", "basic", "wrong"):
            with self.subTest(how=how):
                rx = self.receiver(tls=True, api_key="a2V5aWQ6c2VjcmV0"
                                   if how != "basic" else None,
                                   user="elastic" if how == "basic"
                                   else None, password="pw")
                if how == "basic":
                    extra = "user=elastic password_file=" + \
                        self.secret("es.pw", "pw")
                else:
                    extra = "api_key_file=" + self.secret(
                        "es.key", "a2V5aWQ6c2VjcmV0" if how == "api_key"
                        else "bm9wZTpub3Bl")
                d = MailauditDaemon("")
                self.addCleanup(d.cleanup)
                d.start()
                self.d = d
                submit(d, frames(5))
                fw = self.forwarder([self.es_line(rx, extra)])
                if how == "wrong":
                    st = self.wait_status(
                        fw, "e1", lambda s: s.get("last_error"))
                    self.assertIn("credentials refused", st["last_error"])
                    self.assertNotIn("bm9wZTpub3Bl", st["last_error"])
                    self.assertEqual(rx.ids(), [])
                else:
                    self.assertEqual(fw.wait_cursor("e1", 5), 5)
                    self.assert_store_equals(rx)
                fw.stop()


if __name__ == "__main__":
    unittest.main()
