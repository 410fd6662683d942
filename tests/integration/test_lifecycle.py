#!/usr/bin/env python3
"""Integration tests of what production relies on: a graceful stop under
load, the Prometheus metrics and the JSON log lines.

    python3 tests/integration/test_lifecycle.py <mailtrail-binary> <tests/data> [TestClass ...]

Real binary, real redis-server, real signatures (the shared harness).
Nothing is skipped; no timing is asserted except the documented bounds on a
graceful stop (10 s grace period) and on /healthz while a certificate host
hangs (50 ms), scaled for valgrind.
"""

import http.client
import json
import math
import os
import re
import shutil
import signal
import ssl
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (LOOPBACK, TIME_FACTOR, HarnessError,  # noqa: E402
                     RedisServer, SnsSigner, now_iso)

BINARY = None
DATA = None
ENV = None

# src/http.h HTTP_DRAIN_TIMEOUT_MS: how long a stop waits for requests.
GRACE_S = 10.0


def setUpModule():
    global ENV
    if BINARY is None:
        raise HarnessError("usage: test_lifecycle.py <mailtrail-binary> <tests/data>")
    if not os.access(BINARY, os.X_OK):
        raise HarnessError(f"mailtrail binary not found or not executable: {BINARY}")
    ENV = harness.Environment("mailtrail-life-")
    ENV.pattern = r"^127\.0\.0\.1:%d$" % ENV.sns.port
    Case.env = ENV
    Case.binary = BINARY


def tearDownModule():
    if ENV is not None:
        ENV.close()
    harness.kill_all_children()


def delivery(recipient, ses_id):
    """An SES Delivery event for one recipient, compact, as SES writes it."""
    return json.dumps({
        "notificationType": "Delivery",
        "mail": {"timestamp": "2026-11-01T10:00:00.000Z", "messageId": ses_id,
                 "source": "sender@example.net", "destination": [recipient]},
        "delivery": {"timestamp": "2026-11-01T10:00:01.000Z", "recipients": [recipient],
                     "processingTimeMillis": 1000, "smtpResponse": "250 ok",
                     "reportingMTA": "a1.smtp-out.amazonses.com"},
    }, separators=(",", ":"))


class Case(harness.MailtrailTestCase):
    log_tail = 80

    def start(self, *extra, redis_url=None, api=False, pattern=None):
        args = ["--listen", "127.0.0.1:0",
                "--api-listen", "127.0.0.1:0" if api else "off",
                "--redis", redis_url or ENV.redis_url,
                "--ca-file", ENV.pki.ca_cert, "--log-format", "json",
                "--cert-host-pattern", pattern or ENV.pattern] + list(extra)
        return self.launch(args)

    def post(self, port, msg, timeout=30.0, tls_context=None):
        return harness.http_request(
            port, "POST", "/sns", json.dumps(msg).encode(),
            {"Content-Type": "text/plain; charset=UTF-8",
             "x-amz-sns-message-type": msg["Type"]}, timeout=timeout * TIME_FACTOR,
            tls_context=tls_context)

    def post_as_sns(self, port, msg, tries=6, tls_context=None):
        """Posts like SNS: again after a 5xx (under valgrind the very first
        certificate download can time out).  Returns the last answer."""
        for _ in range(tries):
            r = self.post(port, msg, tls_context=tls_context)
            if r.status < 500:
                return r
            time.sleep(2.1)  # past the 2 s memory of a failed download
        return r

    def stored_ids(self, recipient):
        members = ENV.redis("ZRANGE", f"mailtrail:rcpt:{{{recipient}}}", 0, -1)
        return [json.loads(x)["id"] for x in members]


# ==============================================================================
# Prometheus text format (exposition format 0.0.4), checked line by line.

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class PromFormatError(AssertionError):
    pass


def _parse_float(s, where):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)", s):
        raise PromFormatError(f"{where}: not a number: {s!r}")
    return float(s)


def _parse_labels(text, i, where):
    """Parses '{a="x",b="y"}' starting at text[i] == '{'; returns (dict, next i)."""
    labels = {}
    i += 1
    while True:
        if text[i:i + 1] == "}":
            return labels, i + 1
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(text, i)
        if not m:
            raise PromFormatError(f"{where}: bad label name at {text[i:]!r}")
        name = m.group(0)
        if name.startswith("__"):
            raise PromFormatError(f"{where}: reserved label name {name}")
        i = m.end()
        if text[i:i + 2] != '="':
            raise PromFormatError(f"{where}: expected =\" after label {name}")
        i += 2
        value = []
        while True:
            if i >= len(text):
                raise PromFormatError(f"{where}: unterminated label value")
            c = text[i]
            if c == "\\":
                nxt = text[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise PromFormatError(f"{where}: bad escape \\{nxt} in label value")
                value.append({"n": "\n"}.get(nxt, nxt))
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise PromFormatError(f"{where}: newline in label value")
            else:
                value.append(c)
                i += 1
        if name in labels:
            raise PromFormatError(f"{where}: label {name} twice")
        labels[name] = "".join(value)
        if text[i:i + 1] == ",":
            i += 1
        elif text[i:i + 1] != "}":
            raise PromFormatError(f"{where}: expected , or }} after label {name}")


def parse_prometheus(text):
    """Checks text as Prometheus text format 0.0.4 and returns
    {family: {"type", "help", "samples": [(name, labels dict, value)]}}.
    Raises PromFormatError on anything a scraper would reject or
    misread: syntax, TYPE/HELP placement, families split apart, duplicate
    series, histogram buckets out of order or not cumulative, +Inf bucket
    missing or not equal to _count, _sum missing, negative counters."""
    if not text.endswith("\n"):
        raise PromFormatError("the exposition must end with a newline")
    families = {}
    order = []       # families in the order their samples appear
    seen_series = set()
    current = None   # the family whose samples are being read

    def family_of(name):
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and families.get(base, {}).get("type") in ("histogram", "summary"):
                return base
        return name

    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n} {line!r}"
        if line == "":
            raise PromFormatError(f"{where}: empty line")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_NAME.match(name):
                    raise PromFormatError(f"{where}: bad metric name")
                fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
                if fam["samples"]:
                    raise PromFormatError(f"{where}: {parts[1]} after the family's samples")
                key = parts[1].lower()
                if fam[key] is not None:
                    raise PromFormatError(f"{where}: second {parts[1]} line for {name}")
                if parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise PromFormatError(f"{where}: bad TYPE")
                    fam["type"] = parts[3]
                else:
                    fam["help"] = parts[3] if len(parts) == 4 else ""
            continue
        m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        if not m:
            raise PromFormatError(f"{where}: bad metric name")
        name, i = m.group(0), m.end()
        labels = {}
        if line[i:i + 1] == "{":
            labels, i = _parse_labels(line, i, where)
        if line[i:i + 1] != " ":
            raise PromFormatError(f"{where}: expected a space before the value")
        rest = line[i + 1:].split(" ")
        if len(rest) not in (1, 2) or rest[0] == "":
            raise PromFormatError(f"{where}: expected 'value [timestamp]'")
        value = _parse_float(rest[0], where)
        if len(rest) == 2 and not re.fullmatch(r"-?\d+", rest[1]):
            raise PromFormatError(f"{where}: bad timestamp")
        fam_name = family_of(name)
        fam = families.setdefault(fam_name, {"type": None, "help": None, "samples": []})
        if fam_name != current:
            if fam["samples"]:
                raise PromFormatError(f"{where}: samples of {fam_name} are not together")
            current = fam_name
            order.append(fam_name)
        series = (name, tuple(sorted(labels.items())))
        if series in seen_series:
            raise PromFormatError(f"{where}: duplicate series")
        seen_series.add(series)
        if fam["type"] == "histogram" and name == fam_name:
            raise PromFormatError(f"{where}: a histogram has only _bucket, _sum, _count")
        if fam["type"] == "counter" and (value < 0 or math.isnan(value)):
            raise PromFormatError(f"{where}: counter is negative or NaN")
        fam["samples"].append((name, labels, value))

    for fam_name, fam in families.items():
        if fam["type"] == "histogram":
            _check_histogram(fam_name, fam)
    return families


def _check_histogram(fam_name, fam):
    groups = {}
    for name, labels, value in fam["samples"]:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if name == fam_name + "_bucket":
            if "le" not in labels:
                raise PromFormatError(f"{fam_name}{dict(rest)}: bucket without le")
            g["buckets"].append((_parse_float(labels["le"], f"{fam_name} le"), value))
        elif name == fam_name + "_sum":
            g["sum"] = value
        elif name == fam_name + "_count":
            g["count"] = value
    for rest, g in groups.items():
        where = f"{fam_name}{dict(rest)}"
        les = [le for le, _ in g["buckets"]]
        if les != sorted(les) or len(set(les)) != len(les):
            raise PromFormatError(f"{where}: buckets not in increasing le order: {les}")
        if not les or les[-1] != math.inf:
            raise PromFormatError(f"{where}: no +Inf bucket")
        counts = [c for _, c in g["buckets"]]
        if any(b < a for a, b in zip(counts, counts[1:])):
            raise PromFormatError(f"{where}: bucket counts not cumulative: {counts}")
        if g["count"] is None or g["sum"] is None:
            raise PromFormatError(f"{where}: _count or _sum missing")
        if g["count"] != counts[-1]:
            raise PromFormatError(f"{where}: _count {g['count']} != +Inf bucket {counts[-1]}")
        if g["sum"] < 0:
            raise PromFormatError(f"{where}: negative _sum")


class TestPrometheusChecker(unittest.TestCase):
    """The checker itself must refuse what a scraper refuses."""

    GOOD = ("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n"
            "# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
            "h_sum 0.3\nh_count 2\n")

    def test_good(self):
        fams = parse_prometheus(self.GOOD)
        self.assertEqual(fams["a_total"]["samples"], [("a_total", {"x": "1"}, 3.0)])

    def test_bad(self):
        bad = {
            "duplicate series": self.GOOD + "a_total{x=\"1\"} 3\n",
            "split family": self.GOOD.replace("h_count 2\n", "h_count 2\na_total{x=\"2\"} 1\n"),
            "not cumulative": self.GOOD.replace("le=\"+Inf\"} 2", "le=\"+Inf\"} 0").replace(
                "h_count 2", "h_count 0"),
            "count mismatch": self.GOOD.replace("h_count 2", "h_count 3"),
            "no +Inf": self.GOOD.replace("h_bucket{le=\"+Inf\"} 2\n", ""),
            "no sum": self.GOOD.replace("h_sum 0.3\n", ""),
            "bad label": self.GOOD.replace("{x=\"1\"}", "{x=1}"),
            "bad name": self.GOOD.replace("a_total{", "a-total{"),
            "late TYPE": self.GOOD + "# TYPE a_total counter\n",
            "bad value": self.GOOD.replace("} 3\n", "} three\n"),
            "negative counter": self.GOOD.replace("} 3\n", "} -3\n"),
            "no final newline": self.GOOD[:-1],
        }
        for what, text in bad.items():
            with self.subTest(what):
                with self.assertRaises(PromFormatError):
                    parse_prometheus(text)


def sample(fams, family, name=None, **labels):
    """The value of one series (0 when the series is absent: a labelled
    series appears when first counted)."""
    for n, lab, v in fams.get(family, {}).get("samples", []):
        if n == (name or family) and lab == labels:
            return v
    return 0.0


class TestMetrics(Case):

    def scrape(self, m):
        """/metrics once every earlier request is counted: a request is
        counted when it completes, which can be just after its client has
        read the answer, so wait until only the scrape is in flight."""
        deadline = time.monotonic() + 10 * TIME_FACTOR
        while True:
            fams = self.scrape_once(m)
            if (sample(fams, "mailtrail_http_requests_in_flight") == 1
                    or time.monotonic() > deadline):
                return fams
            time.sleep(0.02)

    def scrape_once(self, m):
        r = m.request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("content-type"), "text/plain; version=0.0.4")
        text = r.body.decode("utf-8")
        try:
            fams = parse_prometheus(text)
        except PromFormatError as e:
            self.fail(f"/metrics is not valid Prometheus text: {e}\n{text}")
        for fam, info in fams.items():
            self.assertTrue(fam.startswith("mailtrail_"), fam)
            self.assertIsNotNone(info["type"], f"{fam} has no TYPE line")
            self.assertTrue(info["help"], f"{fam} has no HELP text")
            for _, labels, _ in info["samples"]:
                for v in labels.values():
                    self.assertNotIn("@", v, "an address must never be a label value")
        return fams

    def test_format_and_counters_move(self):
        m = self.start(api=True)
        api_port = m.wait_listen_port("api listening")
        before = self.scrape(m)
        for fam in ("mailtrail_http_requests_total", "mailtrail_http_request_duration_seconds",
                    "mailtrail_signature_failures_total", "mailtrail_cert_fetches_total",
                    "mailtrail_cert_cache_hits_total", "mailtrail_subscriptions_confirmed_total",
                    "mailtrail_events_stored_total", "mailtrail_redis_errors_total",
                    "mailtrail_http_requests_in_flight"):
            self.assertIn(fam, before, f"{fam} missing from /metrics")
        self.assertEqual(before["mailtrail_http_request_duration_seconds"]["type"], "histogram")

        signer = ENV.signer
        msg = signer.notification(delivery("metrics@example.com", "ses-metrics-1"))
        self.assertEqual(self.post_as_sns(m.port, msg).status, 200)   # stored, cert fetched
        self.assertEqual(self.post(m.port, msg).status, 200)          # duplicate, cert in memory
        bounce = json.dumps({"notificationType": "Bounce", "mail": {
            "timestamp": "2026-11-01T10:00:00.000Z", "messageId": "ses-metrics-2",
            "source": "s@example.net", "destination": ["a@example.com", "b@example.com"]},
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                       "timestamp": "2026-11-01T10:00:02.000Z",
                       "bouncedRecipients": [{"emailAddress": "a@example.com"},
                                             {"emailAddress": "b@example.com"}]}})
        self.assertEqual(self.post(m.port, signer.notification(bounce)).status, 200)
        forged = signer.notification(delivery("x@example.com", "ses-metrics-3"))
        forged["Message"] = forged["Message"].replace("250 ok", "251 ok")
        self.assertEqual(self.post(m.port, forged).status, 403)       # bad signature
        unsigned = signer.notification(delivery("y@example.com", "ses-metrics-4"), sign=False)
        del unsigned["Signature"], unsigned["SignatureVersion"], unsigned["SigningCertURL"]
        self.assertEqual(self.post(m.port, unsigned).status, 403)     # raw (unsigned)
        self.assertEqual(self.post_as_sns(m.port, signer.confirmation()).status, 200)
        for _ in range(3):
            self.assertEqual(m.request("GET", "/healthz").status, 200)
        self.assertEqual(m.request("GET", "/nowhere").status, 404)
        r = harness.http_request(api_port, "GET", "/v1/recipients/a%40example.com")
        self.assertEqual(r.status, 200)
        r = harness.http_request(api_port, "GET", "/v1/recipients/a%40example.com/events")
        self.assertEqual(r.status, 200)

        after = self.scrape(m)

        def delta(family, name=None, **labels):
            return sample(after, family, name, **labels) - sample(before, family, name, **labels)

        req = "mailtrail_http_requests_total"
        retried = delta(req, route="/sns", status="503")  # see post_as_sns
        self.assertEqual(delta(req, route="/sns", status="200"), 4)
        self.assertEqual(delta(req, route="/sns", status="403"), 2)
        self.assertEqual(delta(req, route="/healthz", status="200"), 3)
        self.assertEqual(delta(req, route="other", status="404"), 1)
        self.assertGreaterEqual(delta(req, route="/metrics", status="200"), 1, "the first scrape")
        self.assertEqual(delta(req, route="/v1/recipients/{address}", status="200"), 1)
        self.assertEqual(delta(req, route="/v1/recipients/{address}/events", status="200"), 1)
        sig = "mailtrail_signature_failures_total"
        self.assertEqual(delta(sig, reason="bad_signature"), 1)
        self.assertEqual(delta(sig, reason="unsigned"), 1)
        self.assertEqual(delta(sig, reason="cert_invalid"), 0)
        ev = "mailtrail_events_stored_total"
        self.assertEqual(delta(ev, type="Delivery"), 1)
        self.assertEqual(delta(ev, type="Bounce"), 2, "one event per bounced recipient")
        self.assertEqual(delta("mailtrail_events_duplicate_total"), 1)
        self.assertEqual(delta("mailtrail_cert_fetches_total")
                         - delta("mailtrail_cert_fetch_failures_total"), 1,
                         "one good download, then cached")
        self.assertGreaterEqual(delta("mailtrail_cert_cache_hits_total", tier="memory"), 4)
        self.assertEqual(delta("mailtrail_subscriptions_confirmed_total"), 1)
        self.assertEqual(delta("mailtrail_redis_errors_total"), 0)
        self.assertEqual(delta("mailtrail_sns_results_total", result="ok", status="200"), 4)
        self.assertEqual(delta("mailtrail_sns_results_total", result="cert_fetch", status="503")
                         + delta("mailtrail_sns_results_total", result="confirm", status="503"),
                         retried)
        hist = "mailtrail_http_request_duration_seconds"
        self.assertEqual(delta(hist, hist + "_count", route="/sns"), 6 + retried,
                         "every /sns request is in the histogram")
        self.assertGreater(delta(hist, hist + "_sum", route="/sns"), 0)
        self.assertEqual(sample(after, hist, hist + "_bucket", route="/sns", le="+Inf"),
                         sum(sample(after, req, route="/sns", status=st)
                             for st in ("200", "403", "503")))
        self.assertEqual(sample(after, "mailtrail_http_requests_in_flight"), 1,
                         "only the scrape itself is in flight")

    def test_redis_errors_and_503(self):
        rs = RedisServer(os.path.join(ENV.tmp, f"redis-metrics-{time.monotonic_ns()}")).start()
        try:
            m = self.start(redis_url=f"redis://127.0.0.1:{rs.port}/0")
            before = self.scrape(m)
            rs.stop()
            msg = ENV.signer.notification(delivery("down@example.com", "ses-down-1"))
            self.assertEqual(self.post(m.port, msg).status, 503)
            self.assertEqual(m.request("GET", "/readyz").status, 503)
            after = self.scrape(m)
            self.assertGreaterEqual(sample(after, "mailtrail_redis_errors_total")
                                    - sample(before, "mailtrail_redis_errors_total"), 2)
            self.assertEqual(sample(after, "mailtrail_http_requests_total", route="/sns",
                                    status="503"), 1)
            self.assertEqual(sample(after, "mailtrail_http_requests_total", route="/readyz",
                                    status="503"), 1)
        finally:
            rs.stop()


# ==============================================================================

class TestLogs(Case):
    """One JSON object per line; the fields of every delivery line; no
    recipient address at info level, and addresses only when asked for
    (--log-level debug)."""

    ADDRESSES = ("privacy-one@example.com", "privacy-two@example.org")

    def deliveries(self, m):
        # The signing certificate first (downloaded, perhaps after a retry
        # under valgrind), so that every delivery below is answered at once.
        warm = ENV.signer.notification(delivery("warm-up@example.net", "ses-log-warm"))
        self.assertEqual(self.post_as_sns(m.port, warm).status, 200)
        self.warm_id = warm["MessageId"]
        ids = []
        for i, addr in enumerate(self.ADDRESSES):
            msg = ENV.signer.notification(delivery(addr, f"ses-log-{i}"))
            self.assertEqual(self.post(m.port, msg).status, 200)
            ids.append(msg["MessageId"])
        forged = ENV.signer.notification(delivery(self.ADDRESSES[0], "ses-log-x"))
        forged["Message"] = forged["Message"].replace("250 ok", "550 no")
        self.assertEqual(self.post(m.port, forged).status, 403)
        # An API lookup of an address (its path holds the address).
        api_port = m.wait_listen_port("api listening")
        r = harness.http_request(api_port, "GET",
                                 "/v1/recipients/" + self.ADDRESSES[0].replace("@", "%40"))
        self.assertEqual(r.status, 200)
        return ids, forged["MessageId"]

    def json_lines(self, m):
        with m._cond:
            lines = list(m.out_lines)
        objs = []
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                self.fail(f"log line is not JSON: {line!r}")
            self.assertIsInstance(obj, dict, line)
            self.assertRegex(obj.get("time", ""), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", line)
            self.assertIn(obj.get("level"), ("debug", "info", "warn", "error"), line)
            self.assertIsInstance(obj.get("msg"), str, line)
            objs.append(obj)
        return objs

    def test_info_level(self):
        m = self.start(api=True)
        ids, forged_id = self.deliveries(m)
        self.stop(m)
        objs = self.json_lines(m)
        sns = [o for o in objs if o["msg"] == "sns" and o["message_id"] != self.warm_id]
        # Each event loop writes its lines after its wake-up: the lines of
        # deliveries answered by different loops may come in either order.
        self.assertEqual({o["message_id"]: (o["outcome"], o["status"]) for o in sns},
                         {ids[0]: ("stored", "200"), ids[1]: ("stored", "200"),
                          forged_id: ("rejected", "403")})
        self.assertEqual(len(sns), 3)
        rids = [o.get("request_id", "") for o in sns]
        for rid in rids:
            self.assertRegex(rid, r"^[0-9a-f]{16}$")
        self.assertEqual(len(set(rids)), len(rids), "request ids must be unique")
        self.assertEqual([o["msg"] for o in objs[-3:]], ["stopping", "drained", "stopped"])
        everything = "\n".join(m.out_lines + m.err_lines)
        for addr in self.ADDRESSES:
            self.assertNotIn(addr, everything, "a recipient address was logged at info level")
            self.assertNotIn(addr.split("@")[0], everything)

    def test_debug_level_shows_recipients(self):
        m = self.start("--log-level", "debug", api=True)
        ids, _ = self.deliveries(m)
        self.stop(m)
        objs = self.json_lines(m)
        rec = {o["message_id"]: o["recipients"] for o in objs
               if o["msg"] == "sns recipients" and o["message_id"] != self.warm_id}
        self.assertEqual(rec, {ids[0]: self.ADDRESSES[0], ids[1]: self.ADDRESSES[1]})
        sns = {o["message_id"]: o["request_id"] for o in objs if o["msg"] == "sns"}
        for o in objs:
            if o["msg"] == "sns recipients":
                self.assertEqual(o["request_id"], sns[o["message_id"]])


# ==============================================================================

class Client(threading.Thread):
    """Posts signed deliveries one after another on a kept-alive
    connection, like one of SNS's senders: a 200 is acknowledged, anything
    else (an error status, a connection refused or cut) is tried again
    until stopped.  Records (sent at, answered at, outcome) per attempt."""

    def __init__(self, n, ports, go, stop):
        super().__init__(daemon=True)
        self.n, self.ports, self.go, self.stop_event = n, ports, go, stop
        self.attempts = []   # (t_start, t_end, message id, status or None)
        self.acked = []      # (message id, recipient)
        self.pending = None
        self.seq = 0
        self.conn = None
        self.error = None

    def next_message(self):
        if self.pending is None:
            self.seq += 1
            rcpt = f"load-{self.n}-{self.seq}@example.com"
            msg = ENV.signer.notification(delivery(rcpt, f"ses-load-{self.n}-{self.seq}"))
            self.pending = (msg, rcpt)
        return self.pending

    def run(self):
        try:
            self.go.wait()
            while not self.stop_event.is_set():
                msg, rcpt = self.next_message()
                t0 = time.monotonic()
                status = None
                try:
                    if self.conn is None:
                        self.conn = http.client.HTTPConnection(LOOPBACK, self.ports[-1],
                                                               timeout=30 * TIME_FACTOR)
                    self.conn.request("POST", "/sns", json.dumps(msg).encode(),
                                      {"Content-Type": "text/plain; charset=UTF-8",
                                       "x-amz-sns-message-type": "Notification"})
                    r = self.conn.getresponse()
                    r.read()
                    status = r.status
                    if r.getheader("Connection", "").lower() == "close":
                        self.conn.close()
                        self.conn = None
                except (OSError, http.client.HTTPException):
                    if self.conn is not None:
                        self.conn.close()
                    self.conn = None
                self.attempts.append((t0, time.monotonic(), msg["MessageId"], status))
                if status == 200:
                    self.acked.append((msg["MessageId"], rcpt))
                    self.pending = None
                else:
                    time.sleep(0.05)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            if self.conn is not None:
                self.conn.close()


class TestGracefulStop(Case):

    CLIENTS = 6

    def test_sigterm_under_load_loses_nothing(self):
        first = self.start()
        ports = [first.port]
        go, stop = threading.Event(), threading.Event()
        clients = [Client(i, ports, go, stop) for i in range(self.CLIENTS)]
        for c in clients:
            c.start()
        go.set()
        deadline = time.monotonic() + 60 * TIME_FACTOR
        while sum(len(c.acked) for c in clients) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(sum(len(c.acked) for c in clients), 30,
                                "the load never got going")

        # Hold every store for a moment (Redis paused for all clients),
        # so each sender has a request in flight when SIGTERM arrives.
        pause_ms = 1000
        ENV.redis("CLIENT", "PAUSE", pause_ms, "WRITE")
        time.sleep(0.3)
        r = first.request("GET", "/metrics")
        in_flight = sample(parse_prometheus(r.body.decode()), "mailtrail_http_requests_in_flight")
        self.assertGreaterEqual(in_flight, 2, "requests must be in flight at the signal")
        t_signal = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)
        # While it drains, new connections are refused (a balancer sends
        # them to another copy) rather than left waiting.
        time.sleep(0.2)
        still_draining = first.proc.poll() is None
        with self.assertRaises(ConnectionRefusedError):
            harness.http_request(first.port, "GET", "/healthz", timeout=5)
        self.assertTrue(still_draining and first.proc.poll() is None,
                        "it must still be finishing the paused requests")
        rc = first.proc.wait(timeout=(GRACE_S + 20) * TIME_FACTOR)
        stop_s = time.monotonic() - t_signal
        first._stopped = True
        first.stop()
        self.assertEqual(rc, 0, "SIGTERM must end with exit status 0")
        self.assertLess(stop_s, (GRACE_S + 5) * TIME_FACTOR,
                        "the stop must end within the grace period")

        # Every request that was in flight at the signal was answered 200.
        at_signal = [a for c in clients for a in c.attempts if a[0] < t_signal < a[1]]
        self.assertGreaterEqual(len(at_signal), 2)
        self.assertEqual([a[3] for a in at_signal], [200] * len(at_signal),
                         f"requests in flight at SIGTERM must be finished: {at_signal}")
        drained = [json.loads(x) for x in first.out_lines if '"msg":"drained"' in x]
        self.assertEqual(len(drained), 1, first.log())
        self.assertEqual(drained[0]["unfinished"], "0")

        # A new copy on the same Redis takes over; senders retry there.
        second = self.start()
        ports.append(second.port)
        acked_before = sum(len(c.acked) for c in clients)
        while (sum(len(c.acked) for c in clients) < acked_before + 30
               and time.monotonic() < deadline):
            time.sleep(0.05)
        stop.set()
        for c in clients:
            c.join(timeout=60 * TIME_FACTOR)
            self.assertIsNone(c.error, f"client {c.n} failed: {c.error!r}")
        self.stop(second)

        acked = [a for c in clients for a in c.acked]
        sent = {a[2] for c in clients for a in c.attempts}
        missing, doubled = [], []
        for mid, rcpt in acked:
            ids = self.stored_ids(rcpt)
            if mid not in ids:
                missing.append((mid, rcpt))
            if len(ids) > 1:
                doubled.append((rcpt, ids))
        refused = sum(1 for c in clients for a in c.attempts if a[3] != 200)
        print(f"\n  graceful stop: {len(sent)} messages sent, {len(acked)} acknowledged, "
              f"{len(acked) - len(missing)} stored, {len(doubled)} doubled; "
              f"{len(at_signal)} in flight at SIGTERM, all answered 200; "
              f"{refused} attempts not acknowledged (retried); stop took {stop_s:.2f}s",
              flush=True)
        self.assertEqual(missing, [], "acknowledged messages missing from Redis")
        self.assertEqual(doubled, [], "a message stored twice")
        self.assertGreater(len(acked), acked_before, "the second copy took no load")

    def test_sigterm_idle_keepalive_does_not_hold_the_stop(self):
        m = self.start()
        conn = http.client.HTTPConnection(LOOPBACK, m.port, timeout=10)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        t0 = time.monotonic()
        m.proc.send_signal(signal.SIGTERM)
        rc = m.proc.wait(timeout=(GRACE_S + 20) * TIME_FACTOR)
        took = time.monotonic() - t0
        m._stopped = True
        m.stop()
        conn.close()
        self.assertEqual(rc, 0)
        self.assertLess(took, GRACE_S * TIME_FACTOR, "an idle connection held the stop up")

    def test_sighup_does_not_stop(self):
        m = self.start()
        m.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10 * TIME_FACTOR
        while not any("SIGHUP" in x for x in m.out_lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(any("SIGHUP" in x for x in m.out_lines), m.log())
        self.assertEqual(m.request("GET", "/healthz").status, 200)


class TestSlowRedis(Case):

    def test_probes_answer_while_deliveries_wait_for_redis(self):
        # Deliveries and /readyz waiting for a stuck Redis wait in the
        # writer threads, not in the event loops: the loops still answer
        # /healthz and /metrics at once; the deliveries are then stored.
        m = self.start()
        self.assertEqual(m.post_sns(ENV.signer.notification(
            delivery("warm@example.com", "ses-warm"))).status, 200)
        pause_ms = 2500
        msgs = [ENV.signer.notification(delivery(f"slow-{i}@example.com", f"ses-slow-{i}"))
                for i in range(8)]
        statuses, readyz = [], []

        def post(msg):
            statuses.append(m.post_sns(msg).status)

        def ready():
            readyz.append(m.request("GET", "/readyz").status)

        ENV.redis("CLIENT", "PAUSE", pause_ms, "ALL")
        t_pause = time.monotonic()
        senders = [threading.Thread(target=post, args=(msg,)) for msg in msgs]
        senders += [threading.Thread(target=ready) for _ in range(2)]
        for t in senders:
            t.start()
        time.sleep(0.3)
        waits = []
        for path in ("/healthz", "/metrics", "/healthz"):
            t0 = time.monotonic()
            r = m.request("GET", path)
            waits.append(time.monotonic() - t0)
            self.assertEqual(r.status, 200)
        answered_at = time.monotonic() - t_pause
        for t in senders:
            t.join(timeout=30 * TIME_FACTOR)
        print(f"\n    (probes answered in {max(waits) * 1000:.0f} ms at most while Redis was "
              f"paused {pause_ms} ms; the 8 deliveries then got {sorted(set(statuses))}, "
              f"/readyz {readyz})", end=" ", flush=True)
        self.assertLess(answered_at, pause_ms / 1000, "the probes waited for Redis")
        self.assertEqual(len(readyz), 2)
        self.assertEqual(len(statuses), len(msgs))
        self.assertTrue(all(s in (200, 503) for s in statuses + readyz), (statuses, readyz))
        for i, msg in enumerate(msgs):  # SNS sends a 503 again; a redelivery adds nothing
            self.assertEqual(m.post_sns(msg).status, 200)
            self.assertEqual(len(self.stored_ids(f"slow-{i}@example.com")), 1)
        self.assertEqual(m.request("GET", "/readyz").status, 200)


class TestCertificateHostHangs(Case):
    """Issue 11, item 4: certificate downloads never block an event loop.
    Anyone can make mailtrail download from an allowed host (no signature
    is checked before the certificate is had); one that accepts the
    connection and never answers holds a download for FETCH_TIMEOUT_MS.
    That happens in the fetch threads, with the request suspended: the
    loops go on answering /healthz and storing deliveries whose
    certificate is in memory."""

    PROBE_CONNECTIONS = 16   # kept-alive: spread over every loop
    PROBE_SOURCE = "127.0.0.2"
    PROBE_LIMIT_S = 0.050    # README: /healthz < 50 ms while a host hangs
    # On a machine shared with other test suites, a probe now and then
    # waits for a CPU, not for mailtrail: the 99th percentile is held to
    # the limit, and every probe to a bound still far below what a loop
    # blocked by one download costs (FETCH_CONNECT_TIMEOUT_MS, 2 s).
    PROBE_WORST_S = 0.500

    def test_healthz_and_deliveries_while_a_certificate_host_hangs(self):
        hang = harness.SilentHost("hanging-cert-host")
        self.addCleanup(hang.close)
        pattern = r"^127\.0\.0\.1:(%d|%d)$" % (ENV.sns.port, hang.port)
        m = self.start(pattern=pattern)
        # The genuine certificate is in memory from the first delivery.
        warm = ENV.signer.notification(delivery("warm@example.com", "ses-warm"))
        self.assertEqual(self.post_as_sns(m.port, warm).status, 200)

        # Probes come from another address than the flood, so that the
        # per-address connection limit counts them apart.
        def probe_conn():
            return http.client.HTTPConnection(LOOPBACK, m.port, timeout=30 * TIME_FACTOR,
                                              source_address=(self.PROBE_SOURCE, 0))

        probes = [probe_conn() for _ in range(self.PROBE_CONNECTIONS)]
        for c in probes:
            self.addCleanup(c.close)
            c.request("GET", "/healthz")
            c.getresponse().read()

        # A stream of made-up certificate URLs on the hanging host, each
        # posted on its own connection (it waits up to the download timeout).
        stop = threading.Event()
        flood_status = []

        def flood_one(i):
            # Every third one the same URL: deliveries that wait for
            # another's download of it.
            n = 0 if i % 3 == 0 else i
            url = hang.url(f"/SimpleNotificationService-hang{n:04d}.pem")
            msg = ENV.signer.notification(delivery(f"x{i}@example.com", f"ses-x{i}"),
                                          cert_url=url)
            try:
                r = self.post(m.port, msg)
                flood_status.append(r.status)
            except OSError as e:
                flood_status.append(repr(e))

        flooders = []

        def flood():
            i = 0
            while not stop.is_set():
                t = threading.Thread(target=flood_one, args=(i,), daemon=True)
                t.start()
                flooders.append(t)
                i += 1
                time.sleep(0.05)

        # And subscription confirmations (genuinely signed) whose
        # SubscribeURL is on the hanging host: their GET waits too.
        confirm_status = []

        def confirm_one(i):
            token = f"hang{i:04d}"
            msg = ENV.signer.confirmation(subscribe_url=hang.url(
                f"/?Action=ConfirmSubscription&TopicArn={SnsSigner.TOPIC}&Token={token}"))
            try:
                confirm_status.append(self.post(m.port, msg).status)
            except OSError as e:
                confirm_status.append(repr(e))

        confirmers = [threading.Thread(target=confirm_one, args=(i,), daemon=True)
                      for i in range(2)]
        feeder = threading.Thread(target=flood, daemon=True)
        feeder.start()
        self.addCleanup(stop.set)
        for t in confirmers:
            t.start()
        time.sleep(0.3)  # downloads under way
        self.assertGreaterEqual(hang.connections(), 1, "no download reached the host")

        waits, failed = [], []

        def probe(c):
            t0 = time.monotonic()
            try:
                if c is None:
                    fresh = probe_conn()
                    try:
                        fresh.request("GET", "/healthz")
                        resp = fresh.getresponse()
                        resp.read()
                        status = resp.status
                    finally:
                        fresh.close()
                else:
                    c.request("GET", "/healthz")
                    resp = c.getresponse()
                    resp.read()
                    status = resp.status
            except (OSError, http.client.HTTPException) as e:
                status = repr(e)
            waits.append(time.monotonic() - t0)
            if status != 200:
                failed.append(status)
                if c is not None:
                    c.close()  # http.client reconnects on the next request

        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:
            for c in probes:
                probe(c)
            for _ in range(4):  # and new connections
                probe(None)

        waits.sort()
        print(f"\n    ({len(waits)} probes while made-up URLs waited on a hanging host "
              f"({hang.connections()} downloads): max {waits[-1] * 1000:.1f} ms, "
              f"p99 {waits[len(waits) * 99 // 100] * 1000:.1f} ms)", end=" ", flush=True)
        self.assertEqual(failed, [], "/healthz failed while a certificate host hung")
        self.assertLess(waits[len(waits) * 99 // 100], self.PROBE_LIMIT_S * TIME_FACTOR,
                        f"/healthz waited for a certificate download: {waits[-10:]}")
        self.assertLess(waits[-1], self.PROBE_WORST_S * TIME_FACTOR,
                        f"/healthz waited for a certificate download: {waits[-10:]}")

        # A genuine delivery meanwhile is stored at once.
        t0 = time.monotonic()
        genuine = ENV.signer.notification(delivery("meanwhile@example.com", "ses-meanwhile"))
        r = self.post(m.port, genuine)
        genuine_s = time.monotonic() - t0
        stop.set()
        feeder.join()
        print(f"(a genuine delivery stored in {genuine_s * 1000:.0f} ms)", end=" ", flush=True)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.stored_ids("meanwhile@example.com"), [genuine["MessageId"]])
        self.assertLess(genuine_s, 1.0 * TIME_FACTOR, "a genuine delivery waited")

        # SIGTERM while deliveries wait on downloads: each is answered (a
        # 503: SNS delivers it again), and the stop ends within the grace.
        t_signal = time.monotonic()
        m.proc.send_signal(signal.SIGTERM)
        rc = m.proc.wait(timeout=(GRACE_S + 20) * TIME_FACTOR)
        stop_s = time.monotonic() - t_signal
        m._stopped = True
        m.stop()
        self.assertEqual(rc, 0)
        self.assertLess(stop_s, GRACE_S * TIME_FACTOR)
        for t in flooders + confirmers:
            t.join(timeout=10)
        self.assertEqual(confirm_status, [503, 503], "each confirmation is answered 503")
        self.assertEqual(len(flood_status), len(flooders))
        self.assertEqual(set(flood_status), {503}, flood_status)


class TestTlsReload(Case):
    """SIGHUP swaps the webhook's certificate for new connections without
    dropping the open ones; unusable files change nothing."""

    def wait_log(self, m, msg, count):
        deadline = time.monotonic() + 10 * TIME_FACTOR
        while time.monotonic() < deadline:
            if sum(f'"msg":"{msg}"' in x for x in list(m.out_lines)) >= count:
                return
            time.sleep(0.05)
        self.fail(f"no {count}x {msg!r} in the log\n{m.log()}")

    def served_cert(self, port):
        """The DER of the certificate a new TLS connection gets."""
        conn = http.client.HTTPSConnection(LOOPBACK, port, timeout=10,
                                           context=ENV.pki.client_context())
        try:
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            return conn.sock.getpeercert(binary_form=True)
        finally:
            conn.close()

    @staticmethod
    def der(pem_path):
        with open(pem_path) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())

    def test_sighup_reloads_certificate(self):
        pki = ENV.pki
        d = os.path.join(ENV.tmp, f"tls-{time.monotonic_ns()}")
        os.makedirs(d)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        shutil.copy(pki.server_cert, cert)
        shutil.copy(pki.server_key, key)
        m = self.start("--tls-cert", cert, "--tls-key", key)
        self.assertEqual(self.served_cert(m.port), self.der(pki.server_cert))

        # A kept-alive connection opened before the reload.
        old = http.client.HTTPSConnection(LOOPBACK, m.port, timeout=10,
                                          context=pki.client_context())
        old.request("GET", "/healthz")
        old.getresponse().read()

        # The renewed certificate: same CA, new key.
        tag = f"renewed{time.monotonic_ns()}"
        new_key = pki._genkey(tag + ".key")
        new_cert = pki._issue(tag, new_key, "/CN=127.0.0.1", "server_ext",
                              "20200101000000Z", "20491231000000Z", selfsign=False)
        shutil.copy(new_cert, cert)
        shutil.copy(new_key, key)
        m.proc.send_signal(signal.SIGHUP)
        self.wait_log(m, "tls reloaded", 1)
        self.assertEqual(self.served_cert(m.port), self.der(new_cert),
                         "new connections must get the reloaded certificate")
        old.request("GET", "/healthz")
        r = old.getresponse()
        r.read()
        self.assertEqual(r.status, 200, "the connection opened before SIGHUP must still work")
        self.assertEqual(old.sock.getpeercert(binary_form=True), self.der(pki.server_cert))
        old.close()
        msg = ENV.signer.notification(delivery("tls-reload@example.com", "ses-tls-1"))
        r = self.post_as_sns(m.port, msg, tls_context=pki.client_context())
        self.assertEqual(r.status, 200, r)

        # Unusable files: a key of another certificate, then garbage.  The
        # reload fails and the last good certificate stays.
        shutil.copy(pki.server_key, key)
        m.proc.send_signal(signal.SIGHUP)
        self.wait_log(m, "tls reload failed: still serving the previous certificate", 1)
        with open(cert, "w") as f:
            f.write("not a certificate\n")
        m.proc.send_signal(signal.SIGHUP)
        self.wait_log(m, "tls reload failed: still serving the previous certificate", 2)
        self.assertEqual(self.served_cert(m.port), self.der(new_cert))
        errors = [json.loads(x)["error"] for x in m.out_lines if "tls reload failed" in x]
        self.assertIn("does not belong", errors[0])
        self.assertIn("not a PEM certificate", errors[1])


def main(argv):
    global BINARY, DATA
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    BINARY = os.path.abspath(argv[1])
    DATA = os.path.abspath(argv[2])
    return harness.run_module_tests(sys.modules[__name__], argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
