#!/usr/bin/env python3
"""Integration tests of the deliverability API (issue 13, README
"Deliverability (health)").

    python3 tests/integration/test_health.py <mailtrail-binary> <tests/data> [TestClass ...]

The real binary runs against a real redis-server (and, in TestCluster, a
real three-master Redis Cluster).  The counts come in the only way they do
in production: SES events (built from the real files in tests/data/ses,
with sender identity, configuration set, recipients, bounce type and event
time set per event) wrapped in SNS Notifications signed with the test key
and POSTed to /sns; mailtrail counts each stored event (a redelivery
counts nothing).  Every answer is compared whole with the one a small
model of the contract computes from the events delivered (Model below),
and the cases that matter are also spelled out by hand: windows (24 h,
7 d, 30 d, and events just outside them), rates with and without Send
events, each status at and past its boundary (warning, at_risk,
pause_risk, low_volume with the default --health-min-volume of 100 and
with a flag), series with an hour and a day step (zero buckets, a range
not aligned to buckets, the 2,000-point limit), the domains ranking (ties,
the window, by, limit), every parameter error (400 naming the parameter),
the bearer token (401), GET /v1/events?domain= (paging, type filter, what
does not match), and in a Cluster a 30-day read of hourly buckets seeded in
the contract's key layout besides ingested events.

Nothing is ever skipped: a missing tool or binary is a failure.
"""

import copy
import datetime as dt
import json
import os
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import HarnessError, Mailtrail, iso_ms  # noqa: E402

BINARY = None
DATA = None
ENV = None

TOKEN = "mt-health-token-5a0c9e1f3b7d2468"
HOUR = 3_600_000
DAY = 86_400_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

TYPES = ["Send", "Delivery", "Bounce/Permanent", "Bounce/Transient", "Bounce/Undetermined",
         "Complaint", "Reject", "DeliveryDelay", "Open", "Click", "Rendering Failure"]
DIM_CODES = {"identity": "i", "configuration-set": "c", "domain": "d"}

# SES event type -> template in tests/data/ses
TEMPLATES = {
    "Send": "awsdoc-event-send.json",
    "Delivery": "awsdoc-event-delivery.json",
    "Bounce": "awsdoc-event-bounce.json",
    "Complaint": "awsdoc-event-complaint.json",
    "Reject": "awsdoc-event-reject.json",
    "DeliveryDelay": "awsdoc-event-deliverydelay.json",
    "Open": "awsdoc-event-open.json",
    "Click": "awsdoc-event-click.json",
    "Rendering Failure": "awsdoc-event-rendering-failure.json",
    "Subscription": "awsdoc-event-subscription.json",
}

BOUNCE_WARNING, BOUNCE_REVIEW, BOUNCE_PAUSE = 0.05 / 2, 0.05, 0.10
COMPLAINT_WARNING, COMPLAINT_REVIEW, COMPLAINT_PAUSE = 0.001 / 2, 0.001, 0.005
SEVERITY = {"low_volume": 0, "ok": 1, "warning": 2, "at_risk": 3, "pause_risk": 4}


def ms_iso(ms):
    return iso_ms(EPOCH + dt.timedelta(milliseconds=ms))


def day_start(ms):
    return ms // DAY * DAY


def hour_start(ms):
    return ms // HOUR * HOUR


def ymd(ms):
    return time.strftime("%Y%m%d", time.gmtime(ms // 1000))


def now_ms():
    return int(time.time() * 1000)


def q(**params):
    params = {k: v for k, v in params.items() if v is not None}
    return "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote) if params else ""


# --- the model: what the counters and the answers must be ---------------------------

def count_type(etype, bounce_type):
    if etype == "Bounce":
        return {"Permanent": "Bounce/Permanent",
                "Transient": "Bounce/Transient"}.get(bounce_type, "Bounce/Undetermined")
    return None if etype == "Subscription" else etype


def rates(c):
    """(sends, complaint base, bounce_rate, complaint_rate) of a counts dict."""
    send = c.get("Send", 0)
    sends = send if send > 0 else (c.get("Delivery", 0) + c.get("Bounce/Permanent", 0)
                                   + c.get("Bounce/Transient", 0)
                                   + c.get("Bounce/Undetermined", 0))
    base = send if send > 0 else c.get("Delivery", 0)
    br = c.get("Bounce/Permanent", 0) / sends if sends else None
    cr = c.get("Complaint", 0) / base if base else None
    return sends, base, br, cr


def status_of(c, min_volume):
    sends, _, br, cr = rates(c)
    if sends < min_volume:
        return "low_volume"
    br, cr = br or 0, cr or 0
    if br > BOUNCE_PAUSE or cr > COMPLAINT_PAUSE:
        return "pause_risk"
    if br > BOUNCE_REVIEW or cr > COMPLAINT_REVIEW:
        return "at_risk"
    if br > BOUNCE_WARNING or cr > COMPLAINT_WARNING:
        return "warning"
    return "ok"


class Model:
    """Counts per (dimension, name, event ms, type), as the contract counts
    each stored event."""

    def __init__(self):
        self.rows = []  # (dim, name, ms, type, n)

    def add(self, dim, name, ms, ctype, n=1):
        self.rows.append((dim, name, ms, ctype, n))

    def counts(self, dim, name, lo, hi):
        """Counts of name in [lo, hi) (event ms)."""
        out = {}
        for d, nm, ms, t, n in self.rows:
            if d == dim and nm == name and lo <= ms < hi:
                out[t] = out.get(t, 0) + n
        return out

    def names(self, dim, lo, hi):
        return sorted({nm for d, nm, ms, _, _ in self.rows if d == dim and lo <= ms < hi})

    @staticmethod
    def windows(now):
        today = day_start(now)
        return {"24h": (hour_start(now) - 23 * HOUR, hour_start(now) + HOUR),
                "7d": (today - 6 * DAY, today + DAY),
                "30d": (today - 29 * DAY, today + DAY)}

    def overview(self, dim, now, min_volume, limit=100):
        ws = self.windows(now)
        items = []
        for name in self.names(dim, *ws["30d"]):
            windows = {}
            for w, (lo, hi) in ws.items():
                c = self.counts(dim, name, lo, hi)
                sends, _, br, cr = rates(c)
                windows[w] = {"sends": sends, "bounce_rate": br, "complaint_rate": cr,
                              "status": status_of(c, min_volume),
                              "counts": {t: c[t] for t in TYPES if c.get(t)}}
            rated = [windows[w]["status"] for w in ws if windows[w]["status"] != "low_volume"]
            status = max(rated, key=SEVERITY.get) if rated else "low_volume"
            items.append({"name": name, "status": status, "windows": windows})
        items.sort(key=lambda it: (-SEVERITY[it["status"]],
                                   -it["windows"]["30d"]["sends"], it["name"].encode()))
        return items[:limit]

    def series(self, dim, name, frm, to, step):
        size = DAY if step == "day" else HOUR
        points = []
        t = frm // size * size
        while t < to:
            c = self.counts(dim, name, t, t + size)
            sends, _, br, cr = rates(c)
            points.append({"time": t, "sends": sends, "bounce_rate": br, "complaint_rate": cr,
                           "counts": {k: c[k] for k in TYPES if c.get(k)}})
            t += size
        return points

    def domains(self, now, window, by, limit):
        lo, hi = self.windows(now)[window]
        out = []
        for name in self.names("domain", lo, hi):
            c = self.counts("domain", name, lo, hi)
            sends, _, br, cr = rates(c)
            bounces = sum(c.get(t, 0) for t in TYPES if t.startswith("Bounce/"))
            row = {"domain": name, "sends": sends, "bounces": bounces,
                   "permanent_bounces": c.get("Bounce/Permanent", 0),
                   "complaints": c.get("Complaint", 0), "bounce_rate": br,
                   "complaint_rate": cr}
            if row[by]:
                out.append(row)
        out.sort(key=lambda r: (-r[by], r["domain"].encode()))
        return out[:limit]


# --- SES events --------------------------------------------------------------------------

class Environment(harness.Environment):
    def __init__(self):
        super().__init__("mailtrail-health-")
        self.pattern = r"^127\.0\.0\.1:%d$" % self.sns.port
        self._templates = {}
        self.serial = 0

    def template(self, etype):
        if etype not in self._templates:
            with open(os.path.join(DATA, "ses", TEMPLATES[etype]), "rb") as f:
                self._templates[etype] = json.loads(f.read())
        return copy.deepcopy(self._templates[etype])


class Fixture:
    """Events to deliver (SES JSON each) and the model of their counts."""

    def __init__(self):
        self.texts = []
        self.model = Model()

    def add(self, etype, recipients, ms, identity=None, source="sender@example.com",
            config_set=None, bounce_type="Permanent"):
        """One SES event of etype for recipients (a list, or a count n for
        n addresses r<i>@<domain of the identity>) at ms.  identity: the
        sourceArn's identity (None: no sourceArn, the source's domain
        counts)."""
        ENV.serial += 1
        serial = ENV.serial
        obj = ENV.template(etype)
        t = ms_iso(ms)
        mail = obj["mail"]
        mail["messageId"] = f"0100018f{serial:08x}-5b1e9a3c-7d42-4c1e-9f0a-2b6c8d4e1f30-000000"
        mail["timestamp"] = t
        mail["source"] = source
        if identity is None:
            mail.pop("sourceArn", None)
            ident = source.rsplit("@", 1)[1].lower()
        else:
            mail["sourceArn"] = f"arn:aws:ses:us-east-1:123456789012:identity/{identity}"
            ident = identity.lower()
        tags = mail.setdefault("tags", {})
        if config_set is None:
            tags.pop("ses:configuration-set", None)
        else:
            tags["ses:configuration-set"] = [config_set]
        if isinstance(recipients, int):
            recipients = [f"r{serial}-{i}@rcpt.example" for i in range(recipients)]
        mail["destination"] = list(recipients)
        key = {"Bounce": "bounce", "Complaint": "complaint", "Delivery": "delivery",
               "DeliveryDelay": "deliveryDelay", "Open": "open", "Click": "click",
               "Subscription": "subscription"}.get(etype)
        if key:
            obj[key]["timestamp"] = t
        if etype == "Bounce":
            entry = obj["bounce"]["bouncedRecipients"][0]
            obj["bounce"]["bouncedRecipients"] = [dict(entry, emailAddress=a) for a in recipients]
            if bounce_type is None:
                del obj["bounce"]["bounceType"]
            else:
                obj["bounce"]["bounceType"] = bounce_type
        elif etype == "Complaint":
            obj["complaint"]["complainedRecipients"] = [{"emailAddress": a} for a in recipients]
        elif etype == "Delivery":
            obj["delivery"]["recipients"] = list(recipients)
        elif etype == "DeliveryDelay":
            entry = obj["deliveryDelay"]["delayedRecipients"][0]
            obj["deliveryDelay"]["delayedRecipients"] = [dict(entry, emailAddress=a)
                                                         for a in recipients]
        self.texts.append(json.dumps(obj, separators=(",", ":")))
        ctype = count_type(etype, bounce_type)
        if ctype:
            for a in recipients:
                self.model.add("identity", ident, ms, ctype)
                if config_set is not None:
                    self.model.add("configuration-set", config_set, ms, ctype)
                self.model.add("domain", a.rsplit("@", 1)[1].lower(), ms, ctype)
        return self.texts[-1]


# --- fixtures ----------------------------------------------------------------------------

def setUpModule():
    global ENV
    if BINARY is None:
        raise HarnessError("usage: test_health.py <mailtrail-binary> <tests/data>")
    if not os.access(BINARY, os.X_OK):
        raise HarnessError(f"mailtrail binary not found or not executable: {BINARY}")
    ENV = Environment()
    HealthCase.env = ENV
    HealthCase.binary = BINARY


def tearDownModule():
    if ENV is not None:
        cluster = getattr(ENV, "cluster", None)
        if cluster is not None:
            cluster.stop()
        ENV.close()
    harness.kill_all_children()


class HealthCase(harness.MailtrailTestCase):
    log_tail = 40

    def start(self, *extra, token=None, redis=None, cluster=False):
        args = ["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                "--redis", redis or ENV.redis_url,
                "--ca-file", ENV.pki.ca_cert, "--cert-host-pattern", ENV.pattern,
                "--log-format", "json"]
        if cluster:
            args.append("--redis-cluster")
        if token:
            args += ["--api-token", token]
        m = self.launch(args + list(extra))
        m.api_port = m.wait_listen_port("api listening")
        m.token = token
        return m

    def deliver(self, m, texts, expect="stored"):
        msgs = []
        for text in texts:
            msg = ENV.signer.notification(text)
            r = m.post_sns(msg)
            self.assertEqual((r.status, r.json().get("status")), (200, expect),
                             f"delivery answered {r!r}")
            msgs.append(msg)
        return msgs

    def get(self, m, path, status=200, token="default"):
        h = {}
        token = m.token if token == "default" else token
        if token:
            h["Authorization"] = f"Bearer {token}"
        r = harness.http_request(m.api_port, "GET", path, headers=h)
        self.assertEqual(r.status, status, f"GET {path}: {r!r}")
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"),
                        f"GET {path}: {r.headers}")
        return r.json()

    def assertBad(self, m, path, param):  # noqa: N802
        body = self.get(m, path, status=400)
        self.assertEqual((body.get("status"), body.get("parameter")), ("error", param),
                         f"GET {path}: {body}")
        self.assertTrue(body.get("error", "").startswith(f"bad parameter '{param}': ")
                        and len(body["error"]) > len(param) + 20, f"GET {path}: {body}")

    def overview(self, m, min_volume, **params):
        body = self.get(m, "/v1/health" + q(**params))
        self.assertEqual(sorted(body), ["dimension", "items", "min_volume", "now", "thresholds"])
        self.assertEqual(body["min_volume"], min_volume)
        self.assertEqual(body["thresholds"], {
            "bounce": {"warning": 0.025, "review": 0.05, "pause": 0.1},
            "complaint": {"warning": 0.0005, "review": 0.001, "pause": 0.005}})
        self.assertLess(abs(body["now"] - now_ms()), 60_000)
        return body

    def assertOverview(self, m, model, min_volume, dim="identity", limit=100):  # noqa: N802
        params = {"dimension": dim} if dim != "identity" else {}
        if limit != 100:
            params["limit"] = limit
        body = self.overview(m, min_volume, **params)
        self.assertEqual(body["dimension"], dim)
        want = model.overview(dim, body["now"], min_volume, limit)
        self.assertEqual(body["items"], want, f"GET /v1/health{q(**params)}")
        return {it["name"]: it for it in body["items"]}


# --- the tests ---------------------------------------------------------------------------

class TestOverview(HealthCase):

    def test_statuses_at_their_boundaries(self):
        """Each status at (not above) and past its threshold, rates with and
        without Send events, transient bounces out of the bounce rate,
        low_volume below --health-min-volume, the order of the items."""
        now = now_ms()
        t = now - 2 * HOUR
        f = Fixture()
        for ident, perm in (("ok.example", 1), ("warning.example", 2),
                            ("atrisk.example", 4), ("pause.example", 5)):
            f.add("Send", 40, t, identity=ident)
            f.add("Bounce", perm, t, identity=ident)
        f.add("Bounce", 3, t, identity="ok.example", bounce_type="Transient")
        # No Send events: sends = deliveries + bounces, complaints / deliveries.
        f.add("Delivery", 998, t, identity="nosend.example")
        f.add("Bounce", 2, t, identity="nosend.example")
        f.add("Complaint", 1, t, identity="nosend.example")
        # Complaints alone: 1 in 1,000 is at (not above) the review threshold.
        f.add("Send", 1000, t, identity="cwarn.example")
        f.add("Complaint", 1, t, identity="cwarn.example")
        f.add("Send", 3, t, identity="tiny.example")
        f.add("Bounce", 2, t, identity="tiny.example")
        m = self.start("--health-min-volume", "10")
        self.deliver(m, f.texts)
        items = self.assertOverview(m, f.model, 10)

        def w24(name):
            return items[name]["windows"]["24h"]
        self.assertEqual(list(items), ["pause.example", "nosend.example", "atrisk.example",
                                       "cwarn.example", "warning.example", "ok.example",
                                       "tiny.example"])
        self.assertEqual((w24("ok.example")["sends"], w24("ok.example")["bounce_rate"],
                          w24("ok.example")["status"]), (40, 0.025, "ok"))
        self.assertEqual(w24("ok.example")["counts"],
                         {"Send": 40, "Bounce/Permanent": 1, "Bounce/Transient": 3})
        self.assertEqual((w24("warning.example")["bounce_rate"], w24("warning.example")["status"]),
                         (0.05, "warning"))
        self.assertEqual((w24("atrisk.example")["bounce_rate"], w24("atrisk.example")["status"]),
                         (0.1, "at_risk"))
        self.assertEqual((w24("pause.example")["bounce_rate"], w24("pause.example")["status"]),
                         (0.125, "pause_risk"))
        self.assertEqual((w24("nosend.example")["sends"], w24("nosend.example")["bounce_rate"],
                          w24("nosend.example")["complaint_rate"], w24("nosend.example")["status"]),
                         (1000, 0.002, 1 / 998, "at_risk"))
        self.assertEqual((w24("cwarn.example")["complaint_rate"], w24("cwarn.example")["status"]),
                         (0.001, "warning"))
        self.assertEqual(items["cwarn.example"]["status"], "warning")
        self.assertEqual((w24("tiny.example")["sends"], w24("tiny.example")["bounce_rate"],
                          w24("tiny.example")["status"], items["tiny.example"]["status"]),
                         (3, 2 / 3, "low_volume", "low_volume"))
        # limit keeps the worst.
        self.assertEqual([it["name"] for it in self.overview(m, 10, limit=2)["items"]],
                         ["pause.example", "nosend.example"])

    def test_windows_types_and_dimensions(self):
        """Events just inside and outside each window; all 11 types, a
        Subscription (not counted), a redelivery (counts nothing), the
        configuration-set and domain dimensions, the source's domain when
        there is no sourceArn."""
        now = now_ms()
        f = Fixture()
        ident = "win.example"
        for ago, sends, perm, compl in ((2 * HOUR, 10, 1, 0), (22 * HOUR, 5, 0, 0),
                                        (26 * HOUR, 20, 0, 0), (3 * DAY, 30, 0, 1),
                                        (10 * DAY, 40, 4, 0), (29 * DAY, 50, 0, 0),
                                        (31 * DAY, 60, 9, 0), (40 * DAY, 70, 0, 0)):
            f.add("Send", sends, now - ago, identity=ident, config_set="Marketing-EU")
            if perm:
                f.add("Bounce", perm, now - ago, identity=ident, config_set="Marketing-EU")
            if compl:
                f.add("Complaint", compl, now - ago, identity=ident, config_set="Marketing-EU")
        t = now - HOUR
        for etype in ("Send", "Delivery", "Complaint", "Reject", "DeliveryDelay", "Open",
                      "Click", "Rendering Failure", "Subscription"):
            f.add(etype, ["a@types.example", "b@Other.Example"], t, identity="Types.Example")
        f.add("Bounce", ["c@types.example"], t, identity="Types.Example", bounce_type="Transient")
        f.add("Bounce", ["d@types.example"], t, identity="Types.Example", bounce_type=None)
        # No sourceArn: the domain of mail.source.
        f.add("Send", ["e@types.example"], t, source="news@Mail.Example.COM")
        m = self.start("--health-min-volume", "0")
        msgs = self.deliver(m, f.texts)
        # Redeliveries: answered duplicate, counted nothing.
        for msg in msgs[:3]:
            r = m.post_sns(msg)
            self.assertEqual((r.status, r.json()["status"]), (200, "duplicate"))
        items = self.assertOverview(m, f.model, 0)
        win = items[ident]["windows"]
        self.assertEqual({w: win[w]["sends"] for w in win}, {"24h": 15, "7d": 65, "30d": 155})
        self.assertEqual((win["24h"]["bounce_rate"], win["7d"]["bounce_rate"],
                          win["30d"]["bounce_rate"]), (1 / 15, 1 / 65, 5 / 155))
        self.assertEqual((win["24h"]["complaint_rate"], win["7d"]["complaint_rate"]),
                         (0, 1 / 65))
        self.assertEqual(win["7d"]["status"], "pause_risk")  # 1/65 complaints
        self.assertEqual(items["types.example"]["windows"]["24h"]["counts"], {
            "Send": 2, "Delivery": 2, "Bounce/Transient": 1, "Bounce/Undetermined": 1,
            "Complaint": 2, "Reject": 2, "DeliveryDelay": 2, "Open": 2, "Click": 2,
            "Rendering Failure": 2})
        self.assertIn("mail.example.com", items)
        sets = self.assertOverview(m, f.model, 0, dim="configuration-set")
        self.assertEqual(list(sets), ["Marketing-EU"])
        self.assertEqual(sets["Marketing-EU"]["windows"]["30d"]["sends"], 155)
        domains = self.assertOverview(m, f.model, 0, dim="domain")
        self.assertEqual(domains["other.example"]["windows"]["24h"]["counts"]["Send"], 1)
        self.assertIn("rcpt.example", domains)

    def test_default_min_volume(self):
        """Without the flag a window needs 100 sends to be rated."""
        now = now_ms()
        f = Fixture()
        f.add("Send", 99, now - HOUR, identity="small.example")
        f.add("Bounce", 20, now - HOUR, identity="small.example")
        f.add("Send", 100, now - HOUR, identity="enough.example")
        f.add("Bounce", 20, now - HOUR, identity="enough.example")
        m = self.start()
        self.deliver(m, f.texts)
        items = self.assertOverview(m, f.model, 100)
        self.assertEqual(items["small.example"]["status"], "low_volume")
        self.assertEqual(items["enough.example"]["status"], "pause_risk")
        self.assertEqual(items["small.example"]["windows"]["30d"]["bounce_rate"], 20 / 99)

    def test_empty(self):
        m = self.start()
        body = self.overview(m, 100)
        self.assertEqual((body["dimension"], body["items"]), ("identity", []))
        body = self.get(m, "/v1/health/domains")
        self.assertEqual(body, {"window": "7d", "by": "bounces", "domains": []})


class TestSeries(HealthCase):

    def test_hour_and_day_steps(self):
        now = now_ms()
        base = hour_start(now) - 30 * HOUR
        f = Fixture()
        ident = "series.example"
        f.add("Send", 3, base + HOUR + 5 * 60_000, identity=ident, config_set="Tx")
        f.add("Bounce", 1, base + HOUR + 50 * 60_000, identity=ident, config_set="Tx")
        f.add("Delivery", 2, base + 4 * HOUR, identity=ident)
        f.add("Complaint", 1, base + 4 * HOUR + 1, identity=ident)
        f.add("Send", 7, base + 26 * HOUR, identity=ident, config_set="Tx")
        f.add("Send", 9, base - HOUR, identity=ident)  # before the range
        f.add("Send", 4, base + 28 * HOUR, identity=ident)  # at its end: out
        m = self.start()
        self.deliver(m, f.texts)
        frm, to = base + 30 * 60_000, base + 28 * HOUR
        body = self.get(m, "/v1/health/series" + q(name=ident, **{"from": frm}, to=to))
        self.assertEqual({k: body[k] for k in ("dimension", "name", "step", "from", "to")},
                         {"dimension": "identity", "name": ident, "step": "hour",
                          "from": frm, "to": to})
        pts = body["points"]
        self.assertEqual(pts, f.model.series("identity", ident, frm, to, "hour"))
        self.assertEqual(len(pts), 28)
        self.assertEqual(pts[0], {"time": base, "sends": 0, "bounce_rate": None,
                                  "complaint_rate": None, "counts": {}})
        self.assertEqual(pts[1], {"time": base + HOUR, "sends": 3, "bounce_rate": 1 / 3,
                                  "complaint_rate": 0,
                                  "counts": {"Send": 3, "Bounce/Permanent": 1}})
        self.assertEqual(pts[4], {"time": base + 4 * HOUR, "sends": 2, "bounce_rate": 0,
                                  "complaint_rate": 0.5,
                                  "counts": {"Delivery": 2, "Complaint": 1}})
        self.assertEqual(pts[26]["counts"], {"Send": 7})
        # Days: every day that meets the range.
        body = self.get(m, "/v1/health/series" + q(name=ident, step="day", **{"from": frm},
                                                   to=to))
        self.assertEqual(body["points"], f.model.series("identity", ident, frm, to, "day"))
        self.assertEqual(body["points"][0]["time"], day_start(frm))
        # Whole days: the sends before and after the range on its days too.
        lo, hi = day_start(frm), day_start(to - 1) + DAY
        self.assertEqual(sum(p["counts"].get("Send", 0) for p in body["points"]),
                         sum(n for ms, n in ((base + HOUR + 5 * 60_000, 3),
                                             (base + 26 * HOUR, 7), (base - HOUR, 9),
                                             (base + 28 * HOUR, 4)) if lo <= ms < hi))
        # Defaults: the last 7 days to now, by hour.
        body = self.get(m, "/v1/health/series" + q(name=ident))
        self.assertLess(abs(body["to"] - now_ms()), 60_000)
        self.assertEqual(body["from"], body["to"] - 7 * DAY)
        self.assertEqual(body["points"], f.model.series("identity", ident, body["from"],
                                                        body["to"], "hour"))
        # Another dimension: the configuration set (case kept), a domain
        # (case folded).
        body = self.get(m, "/v1/health/series" + q(dimension="configuration-set", name="Tx",
                                                   step="day", **{"from": frm}, to=to))
        self.assertEqual(body["points"],
                         f.model.series("configuration-set", "Tx", frm, to, "day"))
        self.assertEqual(sum(p["sends"] for p in body["points"]), 10)
        body = self.get(m, "/v1/health/series" + q(dimension="domain", name="RCPT.Example",
                                                   **{"from": frm}, to=to))
        self.assertEqual(body["name"], "rcpt.example")
        self.assertEqual(body["points"], f.model.series("domain", "rcpt.example", frm, to, "hour"))
        # A name never seen: all zeros.
        body = self.get(m, "/v1/health/series" + q(name="nobody.example", step="day"))
        self.assertEqual([p["sends"] for p in body["points"]], [0] * len(body["points"]))
        self.assertIn(len(body["points"]), (7, 8))

    def test_points_limit(self):
        m = self.start()
        to = hour_start(now_ms())
        body = self.get(m, "/v1/health/series" + q(name="x.example", **{"from": to - 2000 * HOUR},
                                                   to=to))
        self.assertEqual(len(body["points"]), 2000)
        self.assertBad(m, "/v1/health/series" + q(name="x.example",
                                                  **{"from": to - 2000 * HOUR - 1}, to=to), "from")
        body = self.get(m, "/v1/health/series" + q(name="x.example", step="day",
                                                   **{"from": 0}, to=2000 * DAY))
        self.assertEqual(len(body["points"]), 2000)


class TestDomains(HealthCase):

    def test_ranking(self):
        now = now_ms()
        f = Fixture()
        t, old = now - 2 * HOUR, now - 3 * DAY
        f.add("Send", ["a@tie-b.example"] * 1 + [f"x{i}@tie-b.example" for i in range(9)], t,
              identity="s.example")
        f.add("Bounce", [f"x{i}@tie-b.example" for i in range(5)], t, identity="s.example")
        f.add("Send", [f"x{i}@tie-a.example" for i in range(20)], t, identity="s.example")
        f.add("Bounce", [f"x{i}@tie-a.example" for i in range(3)], t, identity="s.example")
        f.add("Bounce", [f"y{i}@tie-a.example" for i in range(2)], t, identity="s.example",
              bounce_type="Transient")
        f.add("Delivery", [f"x{i}@complain.example" for i in range(4)], old, identity="s.example")
        f.add("Complaint", ["x0@complain.example", "x1@complain.example"], old,
              identity="s.example")
        f.add("Send", [f"x{i}@clean.example" for i in range(50)], t, identity="s.example")
        f.add("Bounce", [f"x{i}@old.example" for i in range(7)], now - 20 * DAY,
              identity="s.example")
        m = self.start()
        self.deliver(m, f.texts)
        for window in ("24h", "7d", "30d"):
            for by in ("bounces", "complaints"):
                for limit in (None, 1):
                    body = self.get(m, "/v1/health/domains" + q(window=window, by=by,
                                                                 limit=limit))
                    self.assertEqual(body, {"window": window, "by": by, "domains":
                                            f.model.domains(now_ms(), window, by, limit or 20)},
                                     f"window={window} by={by} limit={limit}")
        body = self.get(m, "/v1/health/domains")
        self.assertEqual(body["domains"], [
            {"domain": "tie-a.example", "sends": 20, "bounces": 5, "permanent_bounces": 3,
             "complaints": 0, "bounce_rate": 0.15, "complaint_rate": 0},
            {"domain": "tie-b.example", "sends": 10, "bounces": 5, "permanent_bounces": 5,
             "complaints": 0, "bounce_rate": 0.5, "complaint_rate": 0}])
        body = self.get(m, "/v1/health/domains" + q(by="complaints"))
        self.assertEqual(body["domains"], [
            {"domain": "complain.example", "sends": 4, "bounces": 0, "permanent_bounces": 0,
             "complaints": 2, "bounce_rate": 0, "complaint_rate": 0.5}])
        self.assertEqual([d["domain"] for d in self.get(
            m, "/v1/health/domains" + q(window="30d"))["domains"]],
            ["old.example", "tie-a.example", "tie-b.example"])
        self.assertEqual(self.get(m, "/v1/health/domains" + q(window="24h", by="complaints")),
                         {"window": "24h", "by": "complaints", "domains": []})


class TestRequests(HealthCase):

    def test_parameter_errors(self):
        m = self.start()
        for path, param in (
                ("/v1/health?dimension=sender", "dimension"),
                ("/v1/health?dimension", "dimension"),
                ("/v1/health?limit=0", "limit"),
                ("/v1/health?limit=1001", "limit"),
                ("/v1/health?limit=ten", "limit"),
                ("/v1/health?limit=-1", "limit"),
                ("/v1/health?name=a.example", "name"),
                ("/v1/health?window=7d", "window"),
                ("/v1/health?before=1", "before"),
                ("/v1/health/series", "name"),
                ("/v1/health/series?name=", "name"),
                ("/v1/health/series?name=a%20b.example", "name"),
                ("/v1/health/series?name=a%7Cb.example", "name"),
                ("/v1/health/series?name=%7Bx%7D", "name"),
                ("/v1/health/series?name=caf%C3%A9.example", "name"),
                ("/v1/health/series?name=" + "a" * 254, "name"),
                ("/v1/health/series?dimension=configuration-set&name=a%40b", "name"),
                ("/v1/health/series?name=a%40b&dimension=configuration-set", "name"),
                ("/v1/health/series?name=a.example&dimension=ip", "dimension"),
                ("/v1/health/series?name=a.example&step=week", "step"),
                ("/v1/health/series?name=a.example&step", "step"),
                ("/v1/health/series?name=a.example&from=abc", "from"),
                ("/v1/health/series?name=a.example&from=-5", "from"),
                ("/v1/health/series?name=a.example&to=1.5", "to"),
                ("/v1/health/series?name=a.example&from=100&to=100", "from"),
                ("/v1/health/series?name=a.example&from=200&to=100", "from"),
                ("/v1/health/series?name=a.example&to=0", "to"),
                ("/v1/health/series?name=a.example&from=0&to=999999999999999", "from"),
                ("/v1/health/series?name=a.example&limit=5", "limit"),
                ("/v1/health/series?name=a.example&window=7d", "window"),
                ("/v1/health/domains?window=1d", "window"),
                ("/v1/health/domains?window=", "window"),
                ("/v1/health/domains?by=opens", "by"),
                ("/v1/health/domains?limit=0", "limit"),
                ("/v1/health/domains?limit=1001", "limit"),
                ("/v1/health/domains?dimension=domain", "dimension"),
                ("/v1/health/domains?name=x", "name"),
                ("/v1/events?domain=", "domain"),
                ("/v1/events?domain=a%40b.example", "domain"),
                ("/v1/events?domain=a%20b", "domain"),
                ("/v1/events?domain=" + "a" * 254, "domain"),
                ("/v1/recipients/a%40b.example/events?domain=b.example", "domain")):
            with self.subTest(path=path):
                self.assertBad(m, path, param)
        # (other) is a name the answers list, so its series can be read.
        body = self.get(m, "/v1/health/series?name=(other)&step=day")
        self.assertEqual(body["name"], "(other)")
        # Other routes under /v1/health are not found.
        r = harness.http_request(m.api_port, "GET", "/v1/health/identities")
        self.assertEqual(r.status, 404)
        r = harness.http_request(m.api_port, "POST", "/v1/health")
        self.assertEqual(r.status, 405)

    def test_token(self):
        m = self.start(token=TOKEN)
        for path in ("/v1/health", "/v1/health/series?name=a.example",
                     "/v1/health/domains", "/v1/events?domain=a.example"):
            with self.subTest(path=path):
                body = self.get(m, path, status=401, token=None)
                self.assertEqual(body["status"], "error")
                self.get(m, path, status=401, token="mt-health-token-wrong-0000000000")
                self.get(m, path)


class TestEventsByDomain(HealthCase):

    def test_domain_filter(self):
        now = now_ms()
        f = Fixture()
        wanted = []  # (ms, address, type) of a.example's events
        addresses = ["x@a.example", "y@A.Example", "z@sub.a.example", "a.example@b.example",
                     "w@b.example", "v@a.example.org"]
        for i in range(40):
            ms = now - 10 * HOUR + i * 60_000 - (i % 4 == 0) * 30_000
            rcpt = [addresses[i % len(addresses)], addresses[(i + 1) % len(addresses)]]
            etype = ("Delivery", "Send", "Bounce", "Open")[i % 4]
            f.add(etype, rcpt, ms, identity="s.example")
            wanted += [(ms, a.lower(), etype) for a in rcpt if a.lower().endswith("@a.example")]
        # Two events in one millisecond across a page boundary.
        f.add("Delivery", ["p@a.example", "q@a.example"], now - HOUR, identity="s.example")
        wanted += [(now - HOUR, "p@a.example", "Delivery"), (now - HOUR, "q@a.example", "Delivery")]
        m = self.start()
        self.deliver(m, f.texts)

        def walk(limit, **params):
            seen, before = [], None
            for _ in range(100):
                body = self.get(m, "/v1/events" + q(limit=limit, before=before, **params))
                seen += [(e["recipient"], e["type"], harness.iso_to_ms(e["time"]))
                         for e in body["events"]]
                before = body["next_before"]
                if before is None:
                    return seen
            self.fail("paging did not end")

        want = sorted(((a, t, ms) for ms, a, t in wanted), key=lambda e: -e[2])
        for limit in (3, 7, 1000):
            got = walk(limit, domain="a.example")
            self.assertEqual(sorted(got), sorted(want), f"limit {limit}")
            self.assertEqual([e[2] for e in got], sorted((e[2] for e in got), reverse=True))
        self.assertEqual(sorted(walk(50, domain="A.EXAMPLE")), sorted(want))
        got = walk(5, domain="a.example", type="Bounce")
        self.assertEqual(sorted(got), sorted(e for e in want if e[1] == "Bounce"))
        self.assertTrue(got)
        self.assertEqual({e[0] for e in walk(1000, domain="b.example")},
                         {"a.example@b.example", "w@b.example"})
        self.assertEqual({e[0] for e in walk(1000, domain="sub.a.example")}, {"z@sub.a.example"})
        self.assertEqual(walk(1000, domain="nobody.example"), [])
        # The unfiltered feed still has everyone.
        self.assertEqual(len(walk(1000)), sum(len(json.loads(t)["mail"]["destination"])
                                              for t in f.texts))


# --- Redis Cluster ---------------------------------------------------------------------------

def seed_buckets(redis_for, model, dim, name, lo, hi, counts_of, prefix="mailtrail:"):
    """Writes hourly buckets of name for the hours [lo, hi) straight into
    the contract's layout (hash fields <name>|<HH>|<type> and <name>|*|<type>,
    the :names score), one HSET and one ZADD per day; counts_of(hour_ms)
    gives {type: n}.  redis_for(key) is the client of the key's node."""
    days = {}
    for t in range(lo, hi, HOUR):
        for ctype, n in counts_of(t).items():
            if not n:
                continue
            fields = days.setdefault(day_start(t), {})
            hh = time.gmtime(t // 1000).tm_hour
            fields[f"{name}|{hh:02d}|{ctype}"] = n
            fields[f"{name}|*|{ctype}"] = fields.get(f"{name}|*|{ctype}", 0) + n
            model.add(dim, name, t, ctype, n)
    for d, fields in days.items():
        key = f"{prefix}stats:{{{DIM_CODES[dim]}:{ymd(d)}}}"
        args = [x for kv in fields.items() for x in kv]
        redis_for(key)("HSET", key, *args)
        total = sum(n for f, n in fields.items() if "|*|" in f)
        redis_for(key)("ZINCRBY", key + ":names", total, name)
        redis_for(key)("PEXPIREAT", key, d + 92 * DAY)
        redis_for(key)("PEXPIREAT", key + ":names", d + 92 * DAY)
    return sorted(days)


def seeded_counts(t):
    """The seeded identity's counts in the hour starting at t: every hour
    has sends, some have bounces, a few complaints."""
    h = t // HOUR
    return {"Send": 10 + h % 5, "Delivery": 9 + h % 3,
            "Bounce/Permanent": 1 if h % 7 == 0 else 0,
            "Bounce/Transient": 2 if h % 11 == 0 else 0,
            "Complaint": 1 if h % 97 == 0 else 0}


class TestCluster(HealthCase):
    """A three-master Redis Cluster: the day keys of one dimension live on
    30 slots, spread over the masters; the answers are read per node."""

    @classmethod
    def setUpClass(cls):
        import test_cluster  # the cluster fixture (crc16, node clients)
        if getattr(ENV, "cluster", None) is None:
            ENV.cluster = ThreeMasters(os.path.join(ENV.tmp, "cluster"), test_cluster)
        cls.cluster = ENV.cluster
        cls.crc16 = staticmethod(test_cluster.crc16)

    def setUp(self):
        self.procs = []
        for h in self.env.hosts:
            h.clear()
        for p in self.cluster.masters():
            self.cluster.c(p)("FLUSHALL")

    def node_of(self, key):
        tag = key[key.index("{") + 1:key.index("}")]
        return self.cluster.owner(self.crc16(tag.encode()) % 16384)

    def test_thirty_days_of_hourly_buckets(self):
        now = now_ms()
        f = Fixture()
        t = now - 2 * HOUR
        f.add("Send", 40, t, identity="warning.example", config_set="Tx")
        f.add("Bounce", 2, t, identity="warning.example", config_set="Tx")
        f.add("Bounce", ["a@bounce-a.example", "b@bounce-b.example", "c@bounce-b.example"],
              now - 3 * DAY, identity="warning.example")
        f.add("Complaint", ["d@complain.example"], now - 5 * HOUR, identity="warning.example")
        m = self.start("--health-min-volume", "10", redis=(
            f"redis://:{self.cluster.password}@127.0.0.1:{self.cluster.ports[0]}"), cluster=True)
        self.deliver(m, f.texts)
        lo = day_start(now) - 29 * DAY
        days = seed_buckets(lambda key: self.cluster.c(self.node_of(key)), f.model, "identity",
                            "seeded.example", lo, hour_start(now) + HOUR, seeded_counts)
        self.assertEqual(len(days), 30)
        nodes = {self.node_of(f"mailtrail:stats:{{i:{ymd(d)}}}") for d in days}
        self.assertEqual(len(nodes), 3, "the 30 day keys are on every master")
        items = self.assertOverview(m, f.model, 10)
        self.assertEqual(items["warning.example"]["windows"]["24h"]["bounce_rate"], 0.05)
        self.assertEqual(items["seeded.example"]["windows"]["30d"]["sends"],
                         sum(seeded_counts(t)["Send"] for t in range(lo, hour_start(now) + HOUR,
                                                                      HOUR)))
        self.assertOverview(m, f.model, 10, dim="configuration-set")
        self.assertOverview(m, f.model, 10, dim="domain")
        for step in ("hour", "day"):
            body = self.get(m, "/v1/health/series" + q(name="seeded.example", step=step,
                                                       **{"from": lo}, to=now))
            self.assertEqual(body["points"],
                             f.model.series("identity", "seeded.example", lo, now, step))
            self.assertEqual(len(body["points"]),
                             30 if step == "day" else (hour_start(now) - lo) // HOUR + 1)
        for window in ("24h", "7d", "30d"):
            for by in ("bounces", "complaints"):
                body = self.get(m, "/v1/health/domains" + q(window=window, by=by))
                self.assertEqual(body["domains"], f.model.domains(now_ms(), window, by, 20))
        self.assertEqual([d["domain"] for d in self.get(m, "/v1/health/domains")["domains"]],
                         ["bounce-b.example", "rcpt.example", "bounce-a.example"])


class ThreeMasters:
    """Three redis-server processes joined as a cluster of three masters
    (test_cluster.py's fixture builds six, with replicas)."""

    def __init__(self, directory, tc):
        self.password = tc.PASSWORD
        self.base = tc.Cluster.__new__(tc.Cluster)
        b = self.base
        b.dir = directory
        b.ports, b.bus_ports, b.procs, b.clients = [], {}, {}, {}
        while len(b.ports) < 3:
            p = harness.free_port()
            if p <= 55535 and p not in b.ports:
                b.ports.append(p)
        for p in b.ports:
            b._start(p)
        harness.run(["redis-cli", "-a", tc.PASSWORD, "--no-auth-warning", "--cluster", "create"]
                    + [f"127.0.0.1:{p}" for p in b.ports]
                    + ["--cluster-replicas", "0", "--cluster-yes"])
        b.wait_stable()
        self.ports = b.ports

    def masters(self):
        return self.base.masters()

    def owner(self, slot):
        return self.base.owner(slot)

    def c(self, port):
        return self.base.c(port)

    def stop(self):
        self.base.stop()


if __name__ == "__main__":
    sys.exit(harness.suite_main(sys.modules[__name__], sys.argv))
