#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A local HTTP(S) receiver that behaves like Splunk's HTTP Event Collector
and like Elasticsearch's _bulk API, for the tests of mailaudit-forward's
hec and elastic transports.  Python's standard library only.

What it checks (a violation is answered 400 and kept in .violations):
  hec      POST to the configured path; "Authorization: Splunk <token>";
           the body is one or more concatenated JSON objects, each with a
           numeric time, string host/source/sourcetype, optional string
           index, and an event (object, or string for CEF).
  elastic  POST /_bulk; Content-Type application/x-ndjson; auth as
           configured (ApiKey or Basic); the body is NDJSON ending in a
           newline, in pairs: an action line {"create":{"_index":..,
           "_id":..}} (create only, nothing else in it) and a JSON object.

Probes (mailaudit-forward's open() checks the receiver before sending,
docs/FORWARDING.md "--check"), answered like the real services and
counted in .probes only (not in .requests or .log, and never given a
scripted failure):
  hec      an empty POST to the event path: the token is checked (401
           code 2/3, 403 code 4), then 400 {"text":"No data","code":5};
           hec_ack_required=True answers 400 code 10 "Data channel is
           missing" instead (a token with indexer acknowledgment on).
  elastic  GET /: auth checked (401 security_exception), then 200 with
           the cluster info of Elasticsearch 8; monitor=False answers 403
           security_exception as for an API key without the cluster
           privilege "monitor".

What it stores: HEC events in arrival order (.events); bulk documents by
index and _id (.docs), answering 409 version_conflict_engine_exception for
an _id already stored, like Elasticsearch with explicit ids.

What it answers: the real response bodies of both ({"text":"Success",
"code":0}; {"took":..,"errors":..,"items":[{"create":{..,"status":201}}]};
error objects with type and reason), and, when a test scripted them:
  rx.fail_requests(n, status, retry_after=None)  the next n requests
  rx.bulk_item(i, status, type=None)             item i of the next bulk
  rx.hec_invalid_event(i, code=6)                event i of the next HEC
A scripted failure stores nothing it refuses.

In a test:  rx = HttpReceiver('hec', token='abc'); rx.start(); ...;
rx.stop().  Standalone (for benchmarks):
  http_receiver.py hec|elastic [--port N] [--token T] [--tls CERT KEY]
prints "port N" and serves until killed.
"""

import argparse
import base64
import http.server
import json
import ssl
import sys
import threading
import time

HEC_RESPONSES = {
    0: (200, 'Success'),
    2: (401, 'Token is required'),
    3: (401, 'Invalid authorization'),
    4: (403, 'Invalid token'),
    1: (403, 'Token disabled'),
    5: (400, 'No data'),
    6: (400, 'Invalid data format'),
    8: (500, 'Internal server error'),
    9: (503, 'Server is busy'),
    10: (400, 'Data channel is missing'),
    12: (400, 'Event field is required'),
    13: (400, 'Event field cannot be blank'),
}

ES_ERRORS = {
    400: ('mapper_parsing_exception',
          "failed to parse field [Item] of type [long] in document with "
          "id '%s'. Preview of field's value: 'x'"),
    409: ('version_conflict_engine_exception',
          '[%s]: version conflict, document already exists (current '
          'version [1])'),
    429: ('es_rejected_execution_exception',
          'rejected execution of coordinating operation [coordinating_and'
          '_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_'
          'operation_bytes=104857600, max_coordinating_and_primary_bytes='
          '107374182] for %s'),
    500: ('illegal_state_exception', 'shard failure for %s'),
    503: ('unavailable_shards_exception',
          '[.ds-logs-mailaudit-default-000001][0] primary shard is not '
          'active Timeout: [1m], request: %s'),
}


class HttpReceiver:
    def __init__(self, kind, token=None, api_key=None, user=None,
                 password=None, tls=None, client_ca=None,
                 hec_path='/services/collector/event', monitor=True,
                 hec_ack_required=False):
        assert kind in ('hec', 'elastic')
        self.kind = kind
        self.token = token
        self.api_key = api_key
        self.user, self.password = user, password
        self.tls = tls
        self.client_ca = client_ca
        self.hec_path = hec_path
        self.monitor = monitor
        self.hec_ack_required = hec_ack_required
        self.lock = threading.Lock()
        self.events = []     # HEC: event objects in arrival order
        self.docs = {}       # elastic: {index: {_id: doc}}
        self.duplicates = 0  # elastic: creates answered 409
        self.requests = 0
        self.probes = 0      # open()'s probes, answered but not counted
        self.connections = 0
        self.violations = []
        self.log = []        # (path, status, records in request)
        self._fail = []      # [(status, retry_after)] one per request
        self._items = {}     # next bulk: {index: (status, type)}
        self._hec_invalid = None
        self.server = None
        self.thread = None

    # --- scripting ---------------------------------------------------
    def fail_requests(self, n, status, retry_after=None):
        with self.lock:
            self._fail.extend([(status, retry_after)] * n)

    def bulk_item(self, i, status, type_=None):
        with self.lock:
            self._items[i] = (status, type_)

    def hec_invalid_event(self, i, code=6):
        with self.lock:
            self._hec_invalid = (i, code)

    # --- results -----------------------------------------------------
    def ids(self):
        """Record Ids received (HEC: from the events; elastic: _ids)."""
        with self.lock:
            if self.kind == 'elastic':
                return [i for d in self.docs.values() for i in d]
            return [event_id(e) for e in self.events]

    # --- life --------------------------------------------------------
    def start(self, port=0):
        rx = self

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def get_request(self):
                sock, addr = super().get_request()
                with rx.lock:
                    rx.connections += 1
                return sock, addr

        self.server = Server(('127.0.0.1', port), _handler(self))
        if self.tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(*self.tls)
            if self.client_ca is not None:
                ctx.load_verify_locations(self.client_ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
            self.server.socket = ctx.wrap_socket(self.server.socket,
                                                 server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()
        return self

    @property
    def port(self):
        return self.server.server_address[1]

    def url(self):
        scheme = 'https' if self.tls is not None else 'http'
        path = self.hec_path if self.kind == 'hec' else ''
        return '%s://127.0.0.1:%d%s' % (scheme, self.port, path)

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def event_id(e):
    """The record Id an HEC event carries, whatever the body format."""
    ev = e.get('event')
    if isinstance(ev, dict):
        if 'Id' in ev:                      # json
            return ev['Id']
        return ev.get('event', {}).get('id')  # ecs
    if isinstance(ev, str):                 # cef: externalId=...
        for part in ev.split(' '):
            if part.startswith('externalId='):
                return part[len('externalId='):]
    return None


def _handler(rx):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'  # keep-alive, like the real ones

        def log_message(self, fmt, *args):
            pass

        def reply(self, status, body, headers=()):
            data = json.dumps(body, separators=(',', ':')).encode()
            self.send_response(status)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def violation(self, why, hec_code=6):
            with rx.lock:
                rx.violations.append(why)
            if rx.kind == 'hec':
                self.reply(400, {'text': why, 'code': hec_code})
            else:
                self.reply(400, es_error(400, 'parse_exception', why))

        probe = False

        def do_GET(self):
            self.probe = False
            if rx.kind != 'elastic' or self.path != '/':
                self.violation('GET %s: only POST is used (and GET / '
                               'for elastic)' % self.path)
                return
            self.probe = True
            with rx.lock:
                rx.probes += 1
            if not self.auth_ok():
                self.unauthenticated()
                return
            if not rx.monitor:
                reason = ('action [cluster:monitor/main] is unauthorized '
                          'for API key id [VuaCfGcBCdbkQm-e5aOx] of user '
                          '[mailaudit], this action is granted by the '
                          'cluster privileges [monitor,manage,all]')
                self.reply(403, es_error(403, 'security_exception', reason))
                return
            self.reply(200, {
                'name': 'es-node-1', 'cluster_name': 'mailaudit-test',
                'cluster_uuid': 'nW8vuM9mRxy5mvLeQw4ubQ',
                'version': {'number': '8.13.4', 'build_flavor': 'default',
                            'build_type': 'deb',
                            'lucene_version': '9.10.0',
                            'minimum_wire_compatibility_version': '7.17.0',
                            'minimum_index_compatibility_version':
                            '7.0.0'},
                'tagline': 'You Know, for Search'})

        def do_POST(self):
            length = int(self.headers.get('Content-Length', '0'))
            body = self.rfile.read(length)
            # HEC: an empty POST is mailaudit-forward's probe
            self.probe = rx.kind == 'hec' and length == 0
            with rx.lock:
                if self.probe:
                    rx.probes += 1
                    fail = None
                else:
                    rx.requests += 1
                    fail = rx._fail.pop(0) if rx._fail else None
            if rx.kind == 'hec':
                self.hec(body, fail)
            else:
                self.bulk(body, fail)

        # --- Splunk HEC ------------------------------------------
        def hec_reply(self, code, extra=None, retry_after=None, n=0):
            status, text = HEC_RESPONSES[code]
            body = {'text': text, 'code': code}
            body.update(extra or {})
            headers = []
            if retry_after is not None:
                headers.append(('Retry-After', str(retry_after)))
            if not self.probe:
                with rx.lock:
                    rx.log.append((self.path, status, n))
            self.reply(status, body, headers)

        def hec(self, body, fail):
            if self.path != rx.hec_path:
                # Splunk's answer for a path it does not serve
                with rx.lock:
                    rx.violations.append('path %s, expected %s' %
                                         (self.path, rx.hec_path))
                self.reply(404, {'text': 'The requested URL was not found '
                                 'on this server.', 'code': 404})
                return
            auth = self.headers.get('Authorization')
            if auth is None:
                self.hec_reply(2)
                return
            if not auth.startswith('Splunk '):
                self.hec_reply(3)
                return
            if rx.token is not None and auth[7:] != rx.token:
                self.hec_reply(4)
                return
            if self.probe and rx.hec_ack_required:
                self.hec_reply(10)
                return
            try:
                events = parse_concatenated(body.decode('utf-8'))
            except ValueError as e:
                self.violation('body: %s' % e)
                return
            if not events:
                self.hec_reply(5)
                return
            for i, e in enumerate(events):
                why = check_hec_event(e)
                if why is not None:
                    self.violation('event %d: %s' % (i, why))
                    return
            if fail is not None:
                status, retry_after = fail
                code = {503: 9, 500: 8}.get(status)
                if code is None:
                    self.reply(status, {'text': 'scripted', 'code': 8},
                               [('Retry-After', str(retry_after))]
                               if retry_after is not None else [])
                else:
                    self.hec_reply(code, retry_after=retry_after,
                                   n=len(events))
                return
            with rx.lock:
                invalid, rx._hec_invalid = rx._hec_invalid, None
            if invalid is not None and invalid[0] < len(events):
                i, code = invalid
                with rx.lock:
                    rx.events.extend(events[:i])
                self.hec_reply(code, {'invalid-event-number': i},
                               n=len(events))
                return
            with rx.lock:
                rx.events.extend(events)
            self.hec_reply(0, n=len(events))

        # --- Elasticsearch _bulk ---------------------------------
        def bulk(self, body, fail):
            if self.path != '/_bulk':
                self.violation('path %s, expected /_bulk' % self.path)
                return
            ctype = self.headers.get('Content-Type', '')
            if ctype.split(';')[0].strip() != 'application/x-ndjson':
                self.violation('Content-Type %r' % ctype)
                return
            if not self.auth_ok():
                self.unauthenticated()
                return
            try:
                pairs = parse_bulk(body.decode('utf-8'))
            except ValueError as e:
                self.violation('body: %s' % e)
                return
            if fail is not None:
                status, retry_after = fail
                reason = 'scripted %d' % status
                err = es_error(status, ES_ERRORS.get(
                    status, ('exception',))[0], reason)
                with rx.lock:
                    rx.log.append((self.path, status, len(pairs)))
                self.reply(status, err, [('Retry-After', str(retry_after))]
                           if retry_after is not None else [])
                return
            with rx.lock:
                script, rx._items = rx._items, {}
            t0 = time.monotonic()
            items = []
            errors = False
            for i, (action, doc) in enumerate(pairs):
                index, _id = action['_index'], action['_id']
                status, type_ = script.get(i, (None, None))
                if status is None:
                    with rx.lock:
                        store = rx.docs.setdefault(index, {})
                        if _id in store:
                            status = 409
                            rx.duplicates += 1
                        else:
                            store[_id] = doc
                            status = 201
                item = {'_index': index, '_id': _id, 'status': status}
                if status == 201:
                    item.update({'_version': 1, 'result': 'created',
                                 '_shards': {'total': 2, 'successful': 1,
                                             'failed': 0},
                                 '_seq_no': i, '_primary_term': 1})
                else:
                    errors = True
                    etype, ereason = ES_ERRORS.get(
                        status, ('exception', 'scripted for %s'))
                    item['error'] = {'type': type_ or etype,
                                     'reason': ereason % _id,
                                     'index_uuid': 'aAsFqTI0Tc2W0LCWgPNrOA',
                                     'shard': '0', 'index': index}
                items.append({'create': item})
            took = int((time.monotonic() - t0) * 1000)
            with rx.lock:
                rx.log.append((self.path, 200, len(pairs)))
            self.reply(200, {'took': took, 'errors': errors,
                             'items': items})

        def unauthenticated(self):
            reason = 'unable to authenticate user for REST request [%s]' \
                % self.path
            err = es_error(401, 'security_exception', reason)
            self.reply(401, err, [('WWW-Authenticate',
                                   'Basic realm="security" '
                                   'charset="UTF-8"'),
                                  ('WWW-Authenticate', 'ApiKey')])

        def auth_ok(self):
            auth = self.headers.get('Authorization')
            if rx.api_key is not None:
                return auth == 'ApiKey ' + rx.api_key
            if rx.user is not None:
                want = base64.b64encode(('%s:%s' % (
                    rx.user, rx.password)).encode()).decode()
                return auth == 'Basic ' + want
            return True

    return Handler


def es_error(status, type_, reason):
    cause = {'type': type_, 'reason': reason}
    return {'error': dict(cause, root_cause=[cause]), 'status': status}


def parse_concatenated(text):
    """HEC: one or more JSON objects one after the other (not an array)."""
    dec = json.JSONDecoder()
    out, pos = [], 0
    while True:
        while pos < len(text) and text[pos] in ' \t\r\n':
            pos += 1
        if pos == len(text):
            return out
        obj, pos = dec.raw_decode(text, pos)
        if not isinstance(obj, dict):
            raise ValueError('not a JSON object at event %d' % len(out))
        out.append(obj)


def check_hec_event(e):
    if not isinstance(e.get('time'), (int, float)) or \
            isinstance(e.get('time'), bool):
        return 'time missing or not a number'
    for k in ('host', 'source', 'sourcetype'):
        if not isinstance(e.get(k), str) or not e[k]:
            return '%s missing or not a string' % k
    if 'index' in e and not isinstance(e['index'], str):
        return 'index not a string'
    if not isinstance(e.get('event'), (dict, str)) or not e['event']:
        return 'event missing'
    extra = set(e) - {'time', 'host', 'source', 'sourcetype', 'index',
                      'event', 'fields'}
    if extra:
        return 'unknown keys %s' % sorted(extra)
    return None


def parse_bulk(text):
    if not text.endswith('\n'):
        raise ValueError('NDJSON body does not end in a newline')
    lines = text[:-1].split('\n')
    if len(lines) % 2 != 0:
        raise ValueError('%d lines: not action/document pairs' % len(lines))
    pairs = []
    for i in range(0, len(lines), 2):
        action = json.loads(lines[i])
        doc = json.loads(lines[i + 1])
        if not isinstance(action, dict) or list(action) != ['create']:
            raise ValueError('line %d: action is not create: %s' %
                             (i + 1, lines[i][:80]))
        meta = action['create']
        if set(meta) != {'_index', '_id'} or \
                not all(isinstance(v, str) and v for v in meta.values()):
            raise ValueError('line %d: create needs _index and _id only'
                             % (i + 1))
        if not isinstance(doc, dict):
            raise ValueError('line %d: document is not an object' % (i + 2))
        pairs.append((meta, doc))
    return pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('kind', choices=('hec', 'elastic'))
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--token')
    ap.add_argument('--tls', nargs=2, metavar=('CERT', 'KEY'))
    args = ap.parse_args()
    rx = HttpReceiver(args.kind, token=args.token, tls=args.tls)
    rx.start(args.port)
    print('port %d' % rx.port, flush=True)
    try:
        while True:
            time.sleep(5)
            with rx.lock:
                n = len(rx.events) + sum(len(d) for d in rx.docs.values())
                print('requests %d probes %d connections %d stored %d '
                      'violations %d' % (rx.requests, rx.probes,
                                         rx.connections, n,
                                         len(rx.violations)),
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        rx.stop()


if __name__ == '__main__':
    main()
