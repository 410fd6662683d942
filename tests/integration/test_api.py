#!/usr/bin/env python3
"""Integration tests of the mailtrail query API (SPEC.md, "Query API and console").

    python3 tests/integration/test_api.py <mailtrail-binary> <tests/data>

The real binary runs against a real redis-server on a free loopback port.
Every event the API returns was put into Redis the only way SPEC allows: an
SES event (built from the real files in tests/data/ses, with the recipient
and the event's own timestamp set per event) wrapped in an SNS Notification,
signed with the test signing key, and POSTed to /sns; mailtrail fetches the
signing certificate from a local HTTPS "SNS" host (its own test CA).  As in
test_webhook.py, proxy variables point at an "egress guard" recorder, so an
attempt to reach anything outside 127.0.0.1 fails the test.

What is checked (issue 3, "Tests"): paging through 2,500 events of one
recipient (with many events sharing a millisecond, one run of 150 and one of
64) returns each exactly once, newest first, at limits 100, 7 and 1000;
type and before/after filters return exactly the expected subset; lookups
are case-insensitive and URL-decoded ('+' stays a plus, %40 and %2B are
decoded); the summary's counts, last event and suppression; the recent
feed; the 400/401/404/405 answers with their exact JSON shape; the console
assets; 503 while Redis is down.  Issue 14: GET /v1/messages/{id} groups a
mail's events by recipient, newest first, and a redelivery adds nothing to
the message index; retention trims drop its references; its cap (first
come, first kept: forged later references cannot push a mail's genuine
ones out; dropped ones counted), its expiry, its id validation (400), and store_forget_message_refs() run
through build/tests/forget_refs.  Issue 12: type-filtered pages of a
3,000-event recipient read through its type index (every type at limits 7,
50 and 1000, windows at the edges of runs in one millisecond), and the
index the store script keeps across its threshold, retention trims,
redelivery, expiry renewal, drop and rebuild.

MAILTRAIL_TEST_WRAPPER (e.g. "valgrind --error-exitcode=99 -q") is put in
front of every mailtrail command.  Nothing is ever skipped: a missing tool or
binary is a failure.
"""

import base64
import collections
import concurrent.futures
import copy
import datetime as dt
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (HarnessError, Mailtrail, RedisServer, SnsSigner,  # noqa: E402
                     iso_ms)

BINARY = None
DATA = None
ENV = None

TOKEN = "mt-test-token-7d1f0c2b9a8e4f6d"
POST_THREADS = 8

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def ms_iso(ms):
    """ms since the epoch -> 'YYYY-MM-DDTHH:MM:SS.mmmZ' (EVENT "time")."""
    return iso_ms(EPOCH + dt.timedelta(milliseconds=ms))


def ms_of(iso):
    return harness.iso_to_ms(iso)


# The event times used below: recent enough to be within any retention
# window of each other, far from the wall clock on purpose (the event time,
# not the SNS Timestamp nor the arrival time, orders a timeline).
T0 = ms_of("2026-03-02T08:00:00.000Z")


class Environment(harness.Environment):
    """The shared fixtures, plus the SES templates the events are made of."""

    def __init__(self):
        super().__init__("mailtrail-api-")
        self.pattern = r"^127\.0\.0\.1:%d$" % self.sns.port
        self._templates = {}

    def template(self, name):
        if name not in self._templates:
            with open(os.path.join(DATA, "ses", name), "rb") as f:
                self._templates[name] = json.loads(f.read())
        return copy.deepcopy(self._templates[name])


def setUpModule():
    global ENV
    if BINARY is None:
        raise HarnessError("usage: test_api.py <mailtrail-binary> <tests/data>")
    if not os.access(BINARY, os.X_OK):
        raise HarnessError(f"mailtrail binary not found or not executable: {BINARY}")
    if not os.path.isdir(os.path.join(DATA, "ses")):
        raise HarnessError(f"not the tests/data directory: {DATA}")
    ENV = Environment()
    ApiCase.env = ENV


def tearDownModule():
    if ENV is not None:
        ENV.close()
    harness.kill_all_children()


# --- SES events -----------------------------------------------------------------

# kind -> (file in tests/data/ses, EVENT type)
KINDS = {
    "bounce-permanent": ("awsdoc-identity-bounce-permanent-general-with-dsn.json", "Bounce"),
    "bounce-transient": ("relay-identity-bounce-transient-general-ooto-no-dsn.json", "Bounce"),
    "delivery": ("awsdoc-identity-delivery.json", "Delivery"),
    "complaint": ("awsdoc-identity-complaint-with-feedback-report.json", "Complaint"),
    "rendering-failure": ("awsdoc-event-rendering-failure.json", "Rendering Failure"),
    "open": ("awsdoc-event-open.json", "Open"),
}


class Item:
    """One event to deliver: what we send and what the API must return."""

    __slots__ = ("kind", "addresses", "ms", "serial", "text", "msg", "type")

    def __init__(self, kind, addresses, ms, serial, mail_id=None):
        self.kind = kind
        self.addresses = [addresses] if isinstance(addresses, str) else list(addresses)
        self.ms = ms
        self.serial = serial
        self.type = KINDS[kind][1]
        self.text = ses_event(kind, self.addresses, ms, serial, mail_id)
        self.msg = None

    @property
    def id(self):
        return self.msg["MessageId"]

    def recipients(self):
        """The normalised addresses this event is indexed under."""
        return [normalised(a) for a in self.addresses]


def normalised(address):
    """'Display Name <Addr@X>' -> 'addr@x' (what SPEC indexes)."""
    if address.endswith(">"):
        address = address[address.rindex("<") + 1:-1]
    return address.lower()


def ses_message_id(serial):
    """An SES message id (mail.messageId) of SES's shape."""
    return f"0100018e{serial:08x}-4eca7ee8-dd82-4f94-8b91-3b4917f769ec-000000"


def ses_event(kind, addresses, ms, serial, mail_id=None):
    """The SES JSON (compact) of one event for these recipients at ms, of
    the mail mail_id (default: one of its own).

    The mail's own timestamp is set 5 s earlier for the types that carry
    their own time (bounce, complaint, delivery, open), so an event filed
    under the wrong timestamp is seen; rendering failure has no time of
    its own and uses the mail's."""
    name, _ = KINDS[kind]
    obj = ENV.template(name)
    t = ms_iso(ms)
    mail = obj["mail"]
    mail["messageId"] = mail_id or ses_message_id(serial)
    mail["destination"] = list(addresses)
    mail["timestamp"] = ms_iso(ms - 5000)
    if kind.startswith("bounce"):
        b = obj["bounce"]
        entry = b["bouncedRecipients"][0]
        b["bouncedRecipients"] = [dict(entry, emailAddress=a) for a in addresses]
        b["timestamp"] = t
    elif kind == "delivery":
        d = obj["delivery"]
        d["recipients"] = list(addresses)
        d["timestamp"] = t
    elif kind == "complaint":
        c = obj["complaint"]
        c["complainedRecipients"] = [{"emailAddress": a} for a in addresses]
        c["timestamp"] = t
    elif kind == "rendering-failure":
        mail["timestamp"] = t
    elif kind == "open":
        obj["open"]["timestamp"] = t
    else:
        raise ValueError(kind)
    return json.dumps(obj, separators=(",", ":"))


# --- HTTP -------------------------------------------------------------------------------

def q(**params):
    """A query string (values URL-encoded with %20 for spaces)."""
    params = {k: v for k, v in params.items() if v is not None}
    if not params:
        return ""
    return "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def timeline_path(address, **params):
    return f"/v1/recipients/{address}/events" + q(**params)


class ApiCase(harness.MailtrailTestCase):
    """Starts mailtrail processes (webhook + API) for one test or one class
    (see MailtrailTestCase)."""

    log_tail = 30

    # --- processes ---------------------------------------------------------------------

    @staticmethod
    def launch(*extra, redis_url=None, token=None, name="mailtrail"):
        args = ["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                "--redis", redis_url or ENV.redis_url,
                "--ca-file", ENV.pki.ca_cert, "--cert-host-pattern", ENV.pattern,
                "--log-format", "json"]
        if token is not None:
            args += ["--api-token", token]
        args += list(extra)
        m = Mailtrail(BINARY, args, env=ENV.child_env(), name=name)
        try:
            m.start()
            m.api_port = m.wait_listen_port("api listening")
        except Exception:
            m.kill()
            raise
        m.token = token
        return m

    def start(self, *extra, **kw):
        kw.setdefault("name", f"mailtrail#{len(self.procs) + 1}")
        m = self.launch(*extra, **kw)
        self.procs.append(m)
        self.addCleanup(self.stop, m)
        return m

    # --- delivering events ---------------------------------------------------------------

    def deliver(self, m, items, threads=POST_THREADS, expect="stored"):
        """Signs and POSTs every item (concurrently); each must be answered
        200 with {"status": expect}."""
        def one(it):
            if it.msg is None:
                it.msg = ENV.signer.notification(it.text, version=("1", "2")[it.serial % 2])
            r = m.post_sns(it.msg)
            return it, r

        failures = []
        if threads <= 1:
            results = map(one, items)
        else:
            pool = concurrent.futures.ThreadPoolExecutor(threads)
            results = pool.map(one, items)
        try:
            for it, r in results:
                try:
                    body = r.json()
                except ValueError:
                    body = None
                if r.status != 200 or not isinstance(body, dict) or body.get("status") != expect:
                    failures.append((it.kind, it.addresses, it.ms, r))
        finally:
            if threads > 1:
                pool.shutdown()
        self.assertEqual(failures[:5], [], f"{len(failures)} deliveries not answered "
                                           f"200 {{\"status\":\"{expect}\"}}")

    # --- API ------------------------------------------------------------------------------

    def api(self, m, path, method="GET", headers=None, token="default"):
        h = dict(headers or {})
        if token == "default":
            token = m.token
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return harness.http_request(m.api_port, method, path, headers=h)

    def get(self, m, path, status=200, **kw):
        r = self.api(m, path, **kw)
        self.assertEqual(r.status, status, f"GET {path}: {r!r}")
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"),
                        f"GET {path}: Content-Type {r.headers.get('content-type')!r}")
        try:
            body = r.json()
        except ValueError:
            self.fail(f"GET {path}: body is not JSON: {r.body!r}")
        self.assertIsInstance(body, dict, f"GET {path}: {r.body!r}")
        return body

    def get_page(self, m, path, address=None):
        body = self.get(m, path)
        if address is None:
            self.assertEqual(sorted(body), ["events", "next_before"], f"GET {path}: {body}")
        else:
            self.assertEqual(sorted(body), ["events", "next_before", "recipient"],
                             f"GET {path}: keys")
            self.assertEqual(body["recipient"], address, f"GET {path}")
        self.assertIsInstance(body["events"], list, f"GET {path}")
        nb = body["next_before"]
        self.assertTrue(nb is None or (isinstance(nb, int) and not isinstance(nb, bool)),
                        f"GET {path}: next_before {nb!r}")
        return body

    def walk(self, m, address, limit, filtered=False, max_pages=5000, **params):
        """Pages through a timeline (address) or the recent feed (None) with
        next_before until it is null; returns [(events, next_before)].
        Checks each page on the way: newest first, never more than limit
        events unless the page is one single millisecond (an ms cursor
        cannot split a millisecond), the cursor below every event shown
        and strictly decreasing."""
        pages = []
        before = params.pop("before", None)
        after = params.get("after")
        for _ in range(max_pages):
            if address is None:
                path = "/v1/events" + q(limit=limit, before=before, **params)
            else:
                path = timeline_path(urllib.parse.quote(address, safe="@+"),
                                     limit=limit, before=before, **params)
            body = self.get_page(m, path, address)
            events, nb = body["events"], body["next_before"]
            times = [ms_of(e["time"]) for e in events]
            pages.append((events, nb))
            self.assertEqual(times, sorted(times, reverse=True),
                             f"GET {path}: not newest first")
            if before is not None:
                self.assertTrue(all(t < before for t in times),
                                f"GET {path}: an event at or after before={before}")
            if after is not None:
                self.assertTrue(all(t > after for t in times),
                                f"GET {path}: an event at or before after={after}")
            self.assertTrue(len(events) <= limit or len(set(times)) == 1,
                            f"GET {path}: {len(events)} events over limit {limit} "
                            f"from {len(set(times))} different ms")
            if nb is None:
                return pages
            if not filtered:
                self.assertTrue(events, f"GET {path}: empty page with a cursor {nb}")
            if times:
                self.assertLessEqual(nb, times[-1],
                                     f"GET {path}: cursor above an event shown")
            if before is not None:
                self.assertLess(nb, before, f"GET {path}: cursor does not move")
            before = nb
        self.fail(f"paging {address} limit={limit} {params} did not end "
                  f"within {max_pages} pages")

    def assertEventsExactly(self, events, expected, what):  # noqa: N802
        """events (EVENT dicts, as returned) are exactly the expected items
        (each once), in newest-first order, each with its id, type, time."""
        ids = [(e.get("id"), e.get("recipient")) for e in events]
        dup = [k for k, n in collections.Counter(ids).items() if n > 1]
        self.assertEqual(dup[:10], [], f"{what}: {len(dup)} events returned more than once")
        by_key = {}
        for it in expected:
            for r in it.recipients():
                by_key[(it.id, r)] = it
        missing = set(by_key) - set(ids)
        extra = set(ids) - set(by_key)
        self.assertEqual((len(missing), sorted(missing)[:5]), (0, []),
                         f"{what}: events never returned")
        self.assertEqual((len(extra), sorted(map(str, extra))[:5]), (0, []),
                         f"{what}: unexpected events returned")
        self.assertEqual(len(events), len(by_key), what)
        times = [ms_of(e["time"]) for e in events]
        self.assertEqual(times, sorted(times, reverse=True), f"{what}: not newest first")
        for e in events:
            it = by_key[(e["id"], e["recipient"])]
            if e["type"] != it.type or e["time"] != ms_iso(it.ms):
                self.fail(f"{what}: event {e['id']} is {e['type']} at {e['time']}, "
                          f"expected {it.type} at {ms_iso(it.ms)}")


def concat(pages):
    return [e for events, _ in pages for e in events]


# ===================================================================================
class TestPaging(ApiCase):
    """2,500 events of one recipient, delivered through the webhook once for
    the whole class (the tests only read)."""

    ADDRESS = "pager@example.com"
    OTHER = "other@example.com"
    class_procs = []

    @classmethod
    def setUpClass(cls):
        ENV.redis("FLUSHALL")
        rng = random.Random(20260302)
        # Newest first: 60 events 1 ms apart, 340 distinct ms, a run of 150
        # events in one ms (so the 5th page of 100 starts with more than a
        # page of one millisecond), then mostly distinct ms with pairs and
        # triples, one run of 64 in the middle, until 2,500.
        sizes = [1] * 400 + [150]
        while sum(sizes) < 2500:
            if len(sizes) == 800:
                sizes.append(64)
            elif rng.random() < 0.02:
                sizes.append(rng.choice((2, 2, 3)))
            else:
                sizes.append(1)
        sizes[-1] -= sum(sizes) - 2500
        t = T0 + 10_000_000
        times = []
        for i, n in enumerate(sizes):
            times += [t] * n
            t -= 1 if i < 60 else rng.randint(2, 3000)
        assert len(times) == 2500
        kinds = (["delivery"] * 12 + ["bounce-transient"] * 2 + ["bounce-permanent"] * 2
                 + ["complaint"] * 2 + ["rendering-failure"] * 2)
        spellings = (cls.ADDRESS, "Pager@Example.COM", "Pager Person <PAGER@example.com>")
        items = []
        for i, ms in enumerate(times):
            kind = rng.choice(kinds)
            # Display names only where SES may write them (bounce and
            # complaint entries, destination); delivery recipients are bare.
            spelling = spellings[i % 3] if kind != "delivery" else spellings[i % 2]
            items.append(Item(kind, spelling, ms, serial=100000 + i))
        cls.items = items
        cls.sizes = sizes
        cls.shared = sum(n for n in sizes if n > 1)
        cls.group150 = times[400]
        cls.group64 = times[sum(sizes[:800])]
        # A few events of another recipient, interleaved in time.
        cls.others = [Item(rng.choice(kinds), cls.OTHER, rng.randint(times[-1], times[0]),
                           serial=900000 + i) for i in range(40)]

        cls.m = cls.launch(name="mailtrail-paging")
        cls.class_procs = [cls.m]
        started = time.monotonic()
        case = cls("test_default_limit")
        order = list(items) + cls.others
        random.Random(7).shuffle(order)   # arrival order is not time order
        try:
            case.deliver(cls.m, order)
        except Exception:
            cls.m.kill()
            raise
        cls.seed_seconds = time.monotonic() - started
        print(f"\n    seeded {len(order)} signed deliveries "
              f"({len(items)} for {cls.ADDRESS}, {cls.shared} of them sharing a "
              f"millisecond; runs of 150 and 64) in {cls.seed_seconds:.1f} s",
              file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        rc = cls.m.stop()
        if rc != 0:
            raise AssertionError(f"mailtrail-paging must exit 0 on SIGTERM, got {rc}\n"
                                 f"{cls.m.log()}")

    def setUp(self):
        self.procs = []   # no FLUSHALL: the class data stays

    def newest_first(self, items):
        return sorted(items, key=lambda it: -it.ms)

    def test_default_limit(self):
        m = self.m
        body = self.get_page(m, timeline_path(self.ADDRESS), self.ADDRESS)
        expected = self.newest_first(self.items)
        # The newest 60 are 1 ms apart: the first page is exactly the
        # newest 50, and the exclusive cursor is the 50th's time.
        self.assertEqual([e["id"] for e in body["events"]], [it.id for it in expected[:50]])
        self.assertEqual(body["next_before"], expected[49].ms)
        self.assertEqual(ms_of(body["events"][0]["time"]), expected[0].ms)
        for e in body["events"]:
            self.assertEqual(e["recipient"], self.ADDRESS)
            self.assertEqual(sorted(e), ["detail", "id", "mail", "recipient", "time",
                                         "topicArn", "type"], e)
        nxt = self.get_page(m, timeline_path(self.ADDRESS, before=body["next_before"]),
                            self.ADDRESS)
        self.assertEqual([e["id"] for e in nxt["events"]], [it.id for it in expected[50:100]])

    def test_all_pages_limit_100(self):
        pages = self.walk(self.m, self.ADDRESS, 100)
        self.assertEventsExactly(concat(pages), self.items, "limit=100")
        # The 5th page starts at the run of 150 in one millisecond and is
        # that run, whole.
        self.assertEqual([len(p) for p, _ in pages[:4]], [100] * 4)
        fifth = [ms_of(e["time"]) for e in pages[4][0]]
        self.assertEqual(fifth, [self.group150] * 150,
                         "a millisecond with more events than the limit comes whole")
        self.assertEqual(pages[4][1], self.group150)
        self.assertIsNone(pages[-1][1])
        print(f"\n    limit=100: {len(pages)} pages", end=" ", file=sys.stderr)

    def test_all_pages_limit_1000(self):
        pages = self.walk(self.m, self.ADDRESS, 1000)
        self.assertEventsExactly(concat(pages), self.items, "limit=1000")
        self.assertLessEqual(len(pages), 4)

    def test_all_pages_limit_1(self):
        # Over the newest 70 only (before/after window): one event a page,
        # except the run boundary.
        expected = self.newest_first(self.items)[:70]
        after = expected[-1].ms - 1
        pages = self.walk(self.m, self.ADDRESS, 1, after=after)
        self.assertEventsExactly(concat(pages), expected, "limit=1")
        self.assertEqual(len(pages), 70)

    def test_window_limit_7(self):
        # A window that holds both runs (150 and 64) and ~1,000 others.
        ordered = self.newest_first(self.items)
        before = ordered[380].ms
        after = ordered[1500].ms
        expected = [it for it in self.items if after < it.ms < before]
        self.assertIn(self.group150, {it.ms for it in expected})
        self.assertIn(self.group64, {it.ms for it in expected})
        pages = self.walk(self.m, self.ADDRESS, 7, before=before, after=after)
        self.assertEventsExactly(concat(pages), expected, "limit=7 window")
        whole = [len(p) for p, _ in pages if len(p) > 7]
        self.assertEqual(sorted(whole), [64, 150], "the runs come whole, each once")

    def test_before_after_windows(self):
        cases = [
            ("exactly the run of 150", self.group150 - 1, self.group150 + 1),
            ("newer than the run", self.group150, None),
            ("older than the run", None, self.group150),
            ("around the run of 64", self.group64 - 5000, self.group64 + 5000),
            ("bounds at event times are exclusive",
             self.newest_first(self.items)[10].ms, self.newest_first(self.items)[3].ms),
            ("before=0", None, 0),
            ("after the newest", self.newest_first(self.items)[0].ms, None),
        ]
        for what, after, before in cases:
            with self.subTest(what):
                expected = [it for it in self.items
                            if (after is None or it.ms > after)
                            and (before is None or it.ms < before)]
                pages = self.walk(self.m, self.ADDRESS, 1000, after=after, before=before)
                self.assertEventsExactly(concat(pages), expected, what)
        # Exclusive bounds, by count: 6 events strictly between the 11th
        # and the 4th newest (1 ms apart).
        ordered = self.newest_first(self.items)
        body = self.get_page(self.m, timeline_path(self.ADDRESS, after=ordered[10].ms,
                                                   before=ordered[3].ms), self.ADDRESS)
        self.assertEqual([e["id"] for e in body["events"]], [it.id for it in ordered[4:10]])
        self.assertIsNone(body["next_before"])

    def test_type_filters(self):
        for etype, encoded in (("Complaint", "Complaint"),
                               ("Rendering Failure", "Rendering%20Failure"),
                               ("Rendering Failure", "Rendering+Failure"),
                               ("Bounce", "Bounce"), ("Delivery", "Delivery")):
            with self.subTest(type=encoded):
                expected = [it for it in self.items if it.type == etype]
                # First page, built by hand to control the encoding.
                path = timeline_path(self.ADDRESS) + f"?limit=100&type={encoded}"
                body = self.get_page(self.m, path, self.ADDRESS)
                self.assertTrue(body["events"], path)
                self.assertEqual({e["type"] for e in body["events"]}, {etype}, path)
                pages = self.walk(self.m, self.ADDRESS, 100, filtered=True, type=etype)
                self.assertEventsExactly(concat(pages), expected, f"type={etype}")
        # A type with none of these events: empty, no cursor.
        body = self.get_page(self.m, timeline_path(self.ADDRESS, type="Open"), self.ADDRESS)
        self.assertEqual(body, {"recipient": self.ADDRESS, "events": [], "next_before": None})

    def test_type_filter_with_window(self):
        ordered = self.newest_first(self.items)
        before, after = ordered[200].ms, ordered[2000].ms
        expected = [it for it in self.items
                    if it.type == "Complaint" and after < it.ms < before]
        pages = self.walk(self.m, self.ADDRESS, 7, filtered=True, type="Complaint",
                          before=before, after=after)
        self.assertEventsExactly(concat(pages), expected, "Complaint in a window")

    def test_other_recipient_separate(self):
        pages = self.walk(self.m, self.OTHER, 1000)
        self.assertEventsExactly(concat(pages), self.others, self.OTHER)

    def test_recent_feed_type_filter(self):
        everything = self.items + self.others
        for etype in ("Complaint", "Rendering Failure"):
            with self.subTest(type=etype):
                expected = [it for it in everything if it.type == etype]
                pages = self.walk(self.m, None, 100, filtered=True, type=etype)
                self.assertEventsExactly(concat(pages), expected, f"/v1/events type={etype}")

    def test_recent_feed_all(self):
        pages = self.walk(self.m, None, 1000)
        self.assertEventsExactly(concat(pages), self.items + self.others, "/v1/events")

    def test_redelivery_adds_nothing(self):
        # Delivered again (a copy of SNS's retry): still each event once.
        sample = self.items[::250]
        self.deliver(self.m, sample, expect="duplicate")
        pages = self.walk(self.m, self.ADDRESS, 1000)
        self.assertEventsExactly(concat(pages), self.items, "after redelivery")
        s = self.get(self.m, f"/v1/recipients/{self.ADDRESS}")
        counts = collections.Counter(it.type for it in self.items)
        self.assertEqual(s["counts"], dict(counts))


# ===================================================================================
class TestTypeIndex(ApiCase):
    """Type-filtered pages of recipients big enough for a type index
    (store.h: STORE_INDEX_MIN events and more): every type's pages, the
    index the store script keeps across trims and redelivery, and the
    index dropped and rebuilt."""

    INDEX_MIN = 256     # STORE_INDEX_MIN
    INDEX_OFF = 128     # STORE_INDEX_OFF
    TYPES = ("Delivery", "Bounce", "Complaint", "Rendering Failure")

    @staticmethod
    def index_key(address, etype):
        return f"mailtrail:bytype:{{{address}}}:{etype}"

    def index_of(self, address):
        """{type: [(member, score)]} as Redis holds the index, and whether
        the counts hash says it is built."""
        out = {}
        for etype in self.TYPES:
            raw = ENV.redis("ZRANGE", self.index_key(address, etype), 0, -1, "WITHSCORES")
            if raw:
                out[etype] = sorted((raw[i].decode(), int(raw[i + 1]))
                                    for i in range(0, len(raw), 2))
        on = ENV.redis("HGET", f"mailtrail:counts:{{{address}}}", "index")
        return out, on == b"1"

    def assertIndexed(self, address, items, what):  # noqa: N802
        """The index holds exactly the items' events, by type: member the
        event's message prefix, score its time; and expires with the set."""
        want = collections.defaultdict(list)
        for it in items:
            want[it.type].append((f'{{"id":"{it.id}",', it.ms))
        got, on = self.index_of(address)
        self.assertTrue(on, f"{what}: no index")
        self.assertEqual(got, {t: sorted(v) for t, v in want.items()}, f"{what}: index")
        ttl = ENV.redis("PTTL", f"mailtrail:rcpt:{{{address}}}")
        for etype in got:
            self.assertAlmostEqual(ENV.redis("PTTL", self.index_key(address, etype)), ttl,
                                   delta=2000, msg=f"{what}: {etype} index expiry")

    def assertNotIndexed(self, address, what):  # noqa: N802
        self.assertEqual(self.index_of(address), ({}, False), f"{what}: an index left")

    def assertTypePages(self, m, address, items, limits, what, **window):  # noqa: N802
        after, before = window.get("after"), window.get("before")
        for etype in self.TYPES:
            expected = [it for it in items if it.type == etype
                        and (after is None or it.ms > after)
                        and (before is None or it.ms < before)]
            for limit in limits:
                with self.subTest(what=what, type=etype, limit=limit, **window):
                    pages = self.walk(m, address, limit, filtered=True, type=etype, **window)
                    self.assertEventsExactly(concat(pages), expected,
                                             f"{what}: type={etype} limit={limit}")

    def test_erasure_removes_the_type_index(self):
        m = self.start()
        a = "erase-big@example.com"
        kinds = ("delivery", "bounce-permanent", "complaint", "rendering-failure")
        items = [Item(kinds[k % 4], a, T0 + 60_000_000 + 1000 * k, 400000 + k)
                 for k in range(self.INDEX_MIN + 20)]
        self.deliver(m, items)
        self.assertIndexed(a, items, "before the erasure")
        r = self.api(m, "/v1/recipients/" + urllib.parse.quote(a), method="DELETE")
        self.assertEqual(r.status, 200, r)
        left = [k for k in ENV.redis("KEYS", "*") if a.encode() in k]
        self.assertEqual(left, [], "keys of the erased address are left")
        self.assertNotIndexed(a, "after the erasure")

    def test_filtered_pages_of_a_big_set(self):
        m = self.start()
        a = "big@example.com"
        rng = random.Random(12)
        kinds = (["delivery"] * 14 + ["bounce-transient"] * 2 + ["bounce-permanent"]
                 + ["complaint"] + ["rendering-failure"] * 2)
        # Newest first: mostly distinct ms, and runs in one ms: 120 of
        # mixed types, 60 complaints (more than a page of 50 of that type),
        # 40 rendering failures among 40 deliveries; the oldest a delivery.
        plan = [("mixed", 1)] * 300 + [("mixed", 120)] + [("mixed", 1)] * 700 \
            + [("complaint", 60)] + [("mixed", 1)] * 900 + [("rf+delivery", 80)] \
            + [("mixed", 1)] * 839 + [("delivery", 1)]
        items, t, serial = [], T0 + 50_000_000, 300000
        for what, n in plan:
            for k in range(n):
                if what == "mixed":
                    kind = rng.choice(kinds)
                elif what == "rf+delivery":
                    kind = ("rendering-failure", "delivery")[k % 2]
                else:
                    kind = what
                items.append(Item(kind, a, t, serial))
                serial += 1
            t -= rng.randint(1, 2000)
        self.assertEqual(len(items), 3000)
        order = list(items)
        rng.shuffle(order)
        self.deliver(m, order)
        self.assertIndexed(a, items, "3,000 events")
        counts = collections.Counter(it.type for it in items)
        self.assertEqual(self.get(m, f"/v1/recipients/{a}")["counts"], dict(counts))

        self.assertTypePages(m, a, items, (7, 50, 1000), "whole set")
        # Windows whose bounds are the runs' own milliseconds (exclusive).
        runs = [it.ms for it in items if sum(1 for x in items if x.ms == it.ms) >= 60]
        for ms in sorted(set(runs)):
            self.assertTypePages(m, a, items, (50,), "window", after=ms - 1, before=ms + 1)
            self.assertTypePages(m, a, items, (13,), "below a run", before=ms)
            self.assertTypePages(m, a, items, (13,), "above a run", after=ms)

        # The run of 60 complaints comes whole on one page of 50.
        cms = items[1120].ms
        body = self.get_page(m, timeline_path(a, type="Complaint", limit=50, before=cms + 1), a)
        self.assertEqual([ms_of(e["time"]) for e in body["events"]], [cms] * 60)
        self.assertEqual(body["next_before"], cms)

        # The page of the oldest complaints is the last one, though older
        # events of other types follow it: the index is what was read (a
        # scan of the set would stop at the limit and give a cursor).
        complaints = [it for it in items if it.type == "Complaint"]
        pages = self.walk(m, a, len(complaints), filtered=True, type="Complaint")
        self.assertEqual(len(pages), 1, "an index read ends with the last complaint")
        self.assertEventsExactly(pages[0][0], complaints, "all complaints")

        # Redelivery adds nothing, to the set or to the index.
        self.deliver(m, items[::97], expect="duplicate")
        self.assertIndexed(a, items, "after redelivery")
        self.assertTypePages(m, a, items, (100,), "after redelivery")

    def test_index_follows_trims_and_redelivery(self):
        m = self.start("--retention-days", "1")
        day = 86400 * 1000
        a = "trims@example.com"
        kinds = ["delivery", "delivery", "bounce-transient", "complaint", "rendering-failure",
                 "delivery", "bounce-permanent"]

        def make(n, start, serial, step=1000):
            return [Item(kinds[(serial + i) % len(kinds)], a, start + i * step, serial + i)
                    for i in range(n)]

        first = make(self.INDEX_MIN - 1, T0, 1000)
        self.deliver(m, first)
        self.assertNotIndexed(a, f"{len(first)} events")
        self.assertTypePages(m, a, first, (50,), "below the threshold")
        one_more = make(1, T0 + 1_000_000, 2000)
        self.deliver(m, one_more)
        stored = first + one_more
        self.assertIndexed(a, stored, f"{self.INDEX_MIN} events")

        # Newer events a day later: the retention trims the oldest from the
        # set, from the counts and from the index.
        later = make(100, T0 + day + 50_000, 3000)
        self.deliver(m, later, threads=1)
        cutoff = later[-1].ms - day
        stored = [it for it in stored + later if it.ms >= cutoff]
        self.assertLess(len(stored), len(first) + 101)
        self.assertGreaterEqual(len(stored), self.INDEX_OFF)
        self.assertIndexed(a, stored, "after retention trims")
        self.assertTypePages(m, a, stored, (9,), "after retention trims")

        # Redelivered: the ones still stored are duplicates; one trimmed is
        # stored and trimmed again at once (out of the window).
        self.deliver(m, later[:5] + first[-3:], threads=1, expect="duplicate")
        self.deliver(m, first[:2], threads=1)
        self.assertIndexed(a, stored, "after redelivery")
        s = self.get(m, f"/v1/recipients/{a}")
        self.assertEqual(s["counts"], dict(collections.Counter(it.type for it in stored)))

        # The set's expiry renewed: the index keys' with it.
        rkey = f"mailtrail:rcpt:{{{a}}}"
        for k in [rkey, f"mailtrail:counts:{{{a}}}"] + [self.index_key(a, t)
                                                          for t in self.TYPES]:
            ENV.redis("PEXPIRE", k, day - 1000)
        nxt = make(1, later[-1].ms + 10, 4000)
        self.deliver(m, nxt, threads=1)
        stored = [it for it in stored + nxt if it.ms >= nxt[-1].ms - day]
        self.assertGreater(ENV.redis("PTTL", rkey), day + 3_000_000)
        self.assertIndexed(a, stored, "after the expiry was renewed")

        # Far newer: everything else is trimmed, the set falls below
        # STORE_INDEX_OFF, and the index goes.
        far = make(3, nxt[-1].ms + 2 * day, 5000)
        self.deliver(m, far, threads=1)
        self.assertNotIndexed(a, "3 events left")
        self.assertTypePages(m, a, far, (1, 50), "without an index")
        # ... and comes back from STORE_INDEX_MIN on.
        again = make(self.INDEX_MIN, far[-1].ms + 1, 6000, step=7)
        self.deliver(m, again)
        self.assertIndexed(a, far + again, "rebuilt")
        self.assertTypePages(m, a, far + again, (20,), "rebuilt")

    FILL = """
local zkey, ikey, ckey = KEYS[1], KEYS[2], KEYS[3]
for i = 1, tonumber(ARGV[1]) do
  local id = string.format('fill-%06d', i)
  local sc = tonumber(ARGV[2]) + i
  redis.call('ZADD', zkey, sc, '{"id":"' .. id .. '","type":"Delivery","detail":{}}')
  redis.call('ZADD', ikey, sc, '{"id":"' .. id .. '",')
end
redis.call('HINCRBY', ckey, 'type:Delivery', ARGV[1])
return redis.call('ZCARD', zkey)
"""

    def test_index_follows_the_size_cap(self):
        # A recipient at STORE_RCPT_EVENTS_MAX: each new event trims the
        # oldest, from the set, the counts and the index.  The set is
        # filled up directly in Redis (as the store script would have,
        # members of ses.c's layout), older than the delivered events.
        m = self.start()
        a = "capped@example.com"
        items = [Item(("delivery", "complaint")[i % 2], a, T0 + i, 9000 + i)
                 for i in range(self.INDEX_MIN)]
        self.deliver(m, items)
        cap = 100_000
        n = cap - len(items)
        self.assertEqual(ENV.redis("EVAL", self.FILL, 3, f"mailtrail:rcpt:{{{a}}}",
                                   self.index_key(a, "Delivery"),
                                   f"mailtrail:counts:{{{a}}}", n, T0 - 10_000_000), cap)
        newer = [Item("delivery", a, T0 + 5000, 9900), Item("complaint", a, T0 + 5001, 9901)]
        self.deliver(m, newer, threads=1)
        self.assertEqual(ENV.redis("ZCARD", f"mailtrail:rcpt:{{{a}}}"), cap)
        delivery = ENV.redis("ZRANGE", self.index_key(a, "Delivery"), 0, -1)
        self.assertEqual(len(delivery), n - 2 + len(items) // 2 + 1)
        self.assertNotIn(b'{"id":"fill-000001",', delivery, "trimmed, still indexed")
        self.assertNotIn(b'{"id":"fill-000002",', delivery, "trimmed, still indexed")
        self.assertIn(b'{"id":"fill-000003",', delivery)
        s = self.get(m, f"/v1/recipients/{a}")
        self.assertEqual(s["counts"], {"Delivery": len(delivery),
                                       "Complaint": len(items) // 2 + 1})
        complaints = [it for it in items + newer if it.type == "Complaint"]
        pages = self.walk(m, a, len(complaints), filtered=True, type="Complaint")
        self.assertEqual(len(pages), 1, "read through the index")
        self.assertEventsExactly(concat(pages), complaints, "complaints")
        body = self.get_page(m, timeline_path(a, type="Delivery", limit=3), a)
        self.assertEqual([e["id"] for e in body["events"]],
                         [newer[0].id] + [it.id for it in reversed(items)
                                          if it.type == "Delivery"][:2])

    def test_index_of_an_address_tagged_by_its_digest(self):
        # An address that begins with '}' has keys tagged by its SHA-256
        # (README, Redis layout): its index keys too, named like its
        # counts key, which is all the store script knows.
        m = self.start()
        a = "}brace@example.com"
        tag = "sha256:" + hashlib.sha256(a.encode()).hexdigest()
        items = [Item(("delivery", "complaint")[i % 2], a, T0 + i, 8000 + i)
                 for i in range(self.INDEX_MIN + 1)]
        self.deliver(m, items)
        self.assertEqual(ENV.redis("HGET", f"mailtrail:counts:{{{tag}}}{a}", "index"), b"1")
        for etype in ("Delivery", "Complaint"):
            members = ENV.redis("ZRANGE", f"mailtrail:bytype:{{{tag}}}{a}:{etype}", 0, -1)
            self.assertEqual(sorted(x.decode() for x in members),
                             sorted(f'{{"id":"{it.id}",' for it in items if it.type == etype))
        pages = self.walk(m, a, len(items) // 2, filtered=True, type="Complaint")
        self.assertEqual(len(pages), 1, "read through the index")
        self.assertEventsExactly(concat(pages), [it for it in items if it.type == "Complaint"],
                                 "complaints")

    def test_stale_index_is_not_used(self):
        # An index whose size disagrees with the counts (say its key was
        # lost) is not read: the set itself is scanned, 256 entries a read
        # from a score cursor.  Newest first: 100 in distinct ms, 200 in
        # one (the first read ends inside them), 64 more.
        m = self.start()
        a = "stale@example.com"
        times = [T0 + 10_000 - i for i in range(100)] + [T0 + 5000] * 200 \
            + [T0 + 1000 - i for i in range(64)]
        items = [Item(("delivery", "complaint", "bounce-transient")[i % 3], a, ms, 7000 + i)
                 for i, ms in enumerate(times)]
        self.deliver(m, items)
        self.assertIndexed(a, items, "built")
        ENV.redis("DEL", self.index_key(a, "Complaint"))
        self.assertTypePages(m, a, items, (50, 1000), "a lost index key")


# ===================================================================================
class TestAddresses(ApiCase):
    """Case-insensitive lookups of URL-encoded addresses."""

    STORED = "Alice.Example+Tag@Example.COM"
    NORMAL = "alice.example+tag@example.com"

    def seed(self, m):
        display = f"Alice Example <{self.STORED}>"
        items = [Item("bounce-transient", display, T0 + 1000, 1),
                 Item("delivery", self.STORED, T0 + 2000, 2),
                 Item("complaint", display, T0 + 3000, 3),
                 # Not the same mailbox: the tag and the dot matter.
                 Item("delivery", "alice.example@example.com", T0 + 4000, 4),
                 Item("delivery", "aliceexample+tag@example.com", T0 + 5000, 5)]
        self.deliver(m, items, threads=1)
        return items

    def test_lookups(self):
        m = self.start()
        items = self.seed(m)
        mine = items[:3]
        forms = [
            "alice.example+tag@example.com",
            "ALICE.EXAMPLE+TAG%40EXAMPLE.COM",
            "alice.example%2Btag%40example.com",
            "Alice.Example%2BTag@Example.COM",
            "%61lice.example+tag@example.com",
            "ALICE.EXAMPLE%2btag%40example.com",
        ]
        reference = None
        for form in forms:
            with self.subTest(address=form):
                body = self.get_page(m, f"/v1/recipients/{form}/events", self.NORMAL)
                self.assertEventsExactly(body["events"], mine, form)
                self.assertEqual([e["type"] for e in body["events"]],
                                 ["Complaint", "Delivery", "Bounce"])
                self.assertIsNone(body["next_before"])
                for e in body["events"]:
                    self.assertEqual(e["recipient"], self.NORMAL)
                if reference is None:
                    reference = body
                self.assertEqual(body, reference, "the same answer for every spelling")
                s = self.get(m, f"/v1/recipients/{form}")
                self.assertEqual(s["recipient"], self.NORMAL)
                self.assertEqual(s["counts"], {"Bounce": 1, "Delivery": 1, "Complaint": 1})
                self.assertEqual(s["last_event"], reference["events"][0])
                self.assertEqual((s["suppressed"], s["reason"]), (True, "Complaint"))

    def test_plus_is_not_a_space(self):
        m = self.start()
        self.seed(m)
        # '+' in a path is a plus; a space (%20) makes it no address.
        body = self.get(m, "/v1/recipients/alice.example%20tag@example.com/events", 400)
        self.assertEqual(body.get("parameter"), "address")
        # Other mailboxes do not see these events.
        for other, n in (("alice.example@example.com", 1), ("aliceexample+tag@example.com", 1),
                         ("alice.example+tag2@example.com", 0),
                         ("alice.example+tag@example.co", 0)):
            with self.subTest(other=other):
                body = self.get_page(m, timeline_path(other), other)
                self.assertEqual(len(body["events"]), n, body)
                for e in body["events"]:
                    self.assertEqual(e["recipient"], other)

    def test_display_name_in_ses_is_indexed_bare(self):
        m = self.start()
        self.seed(m)
        keys = sorted(k.decode() for k in ENV.redis("KEYS", "mailtrail:rcpt:*"))
        self.assertEqual(keys, sorted(["mailtrail:rcpt:{aliceexample+tag@example.com}",
                                       "mailtrail:rcpt:{alice.example+tag@example.com}",
                                       "mailtrail:rcpt:{alice.example@example.com}"]))


# ===================================================================================
class TestSummary(ApiCase):

    def summary(self, m, address):
        body = self.get(m, f"/v1/recipients/{address}")
        self.assertEqual(sorted(body), ["counts", "last_event", "reason", "reason_text",
                                        "recipient", "suppressed"], body)
        return body

    def newest(self, m, address):
        return self.get_page(m, timeline_path(address), address)["events"][0]

    def test_never_seen(self):
        m = self.start()
        self.deliver(m, [Item("bounce-permanent", "someone@example.com", T0, 1)], threads=1)
        for form, norm in (("never@example.com", "never@example.com"),
                           ("NEVER%40Example.com", "never@example.com")):
            with self.subTest(address=form):
                self.assertEqual(self.get(m, f"/v1/recipients/{form}"),
                                 {"recipient": norm, "counts": {}, "last_event": None,
                                  "suppressed": False, "reason": None, "reason_text": None})
                self.assertEqual(self.get(m, timeline_path(form)),
                                 {"recipient": norm, "events": [], "next_before": None})

    def test_counts_and_suppression(self):
        m = self.start()
        a = "carol@example.com"
        items = [Item("delivery", a, T0 + 1000, 1),
                 Item("delivery", a, T0 + 9000, 2),     # the newest
                 Item("bounce-transient", a, T0 + 3000, 3),
                 Item("delivery", a, T0 + 5000, 4),
                 Item("rendering-failure", a, T0 + 2000, 5)]
        self.deliver(m, items[::-1], threads=1)    # arrival order != time order
        s = self.summary(m, a)
        self.assertEqual(s["counts"], {"Delivery": 3, "Bounce": 1, "Rendering Failure": 1})
        self.assertEqual((s["suppressed"], s["reason"]), (False, None),
                         "deliveries and a transient bounce do not suppress")
        self.assertEqual(s["last_event"]["id"], items[1].id)
        self.assertEqual(s["last_event"], self.newest(m, a))
        self.assertEqual(s["last_event"]["time"], ms_iso(T0 + 9000))

        # A permanent bounce, older than the newest delivery.
        hard = Item("bounce-permanent", a, T0 + 7000, 6)
        self.deliver(m, [hard], threads=1)
        s = self.summary(m, a)
        self.assertEqual(s["counts"], {"Delivery": 3, "Bounce": 2, "Rendering Failure": 1})
        self.assertEqual((s["suppressed"], s["reason"]), (True, "Bounce/Permanent"))
        self.assertEqual(s["last_event"]["id"], items[1].id, "last_event is the newest")
        self.assertEqual(s["recipient"], a)

        # Redelivery (here and through a second copy of mailtrail) changes nothing.
        self.deliver(m, [hard, items[0]], threads=1, expect="duplicate")
        m2 = self.start()
        self.deliver(m2, [hard], threads=1, expect="duplicate")
        self.assertEqual(self.summary(m, a), s)
        self.assertEqual(self.summary(m2, a), s)

        # A newer event becomes the last one.
        newer = Item("complaint", a, T0 + 20000, 7)
        self.deliver(m, [newer], threads=1)
        s = self.summary(m, a)
        self.assertEqual(s["last_event"]["id"], newer.id)
        self.assertEqual(s["last_event"]["type"], "Complaint")
        self.assertEqual(s["counts"], {"Delivery": 3, "Bounce": 2, "Rendering Failure": 1,
                                       "Complaint": 1})
        self.assertEqual((s["suppressed"], s["reason"]), (True, "Complaint"))

    def test_reason_is_the_newest_cause(self):
        m = self.start()
        # dave: the complaint is newer than the permanent bounce, but
        # arrives first.
        dave = [Item("complaint", "dave@example.com", T0 + 2000, 1),
                Item("bounce-permanent", "dave@example.com", T0 + 1000, 2)]
        # erin: the other way round.
        erin = [Item("bounce-permanent", "erin@example.com", T0 + 2000, 3),
                Item("complaint", "erin@example.com", T0 + 1000, 4)]
        # frank: a complaint only; gina: a transient bounce only.
        frank = [Item("complaint", "Frank <Frank@Example.com>", T0, 5)]
        gina = [Item("bounce-transient", "gina@example.com", T0, 6)]
        # hank: later transient bounces and deliveries do not lift it.
        hank = [Item("bounce-permanent", "hank@example.com", T0 + 1000, 7),
                Item("bounce-transient", "hank@example.com", T0 + 2000, 8),
                Item("delivery", "hank@example.com", T0 + 3000, 9)]
        self.deliver(m, dave + erin + frank + gina + hank, threads=1)
        for addr, counts, reason in (
                ("dave@example.com", {"Complaint": 1, "Bounce": 1}, "Complaint"),
                ("erin@example.com", {"Complaint": 1, "Bounce": 1}, "Bounce/Permanent"),
                ("frank@example.com", {"Complaint": 1}, "Complaint"),
                ("gina@example.com", {"Bounce": 1}, None),
                ("hank@example.com", {"Bounce": 2, "Delivery": 1}, "Bounce/Permanent")):
            with self.subTest(address=addr):
                s = self.summary(m, addr)
                self.assertEqual(s["counts"], counts)
                self.assertEqual((s["suppressed"], s["reason"]), (reason is not None, reason))
                self.assertEqual(s["last_event"], self.newest(m, addr))
        self.assertEqual(self.summary(m, "dave@example.com")["last_event"]["id"], dave[0].id)
        self.assertEqual(self.summary(m, "erin@example.com")["last_event"]["id"], erin[0].id)

    def test_retention_trims_events_and_counts(self):
        # A set is trimmed to --retention-days below its own newest event
        # (not the wall clock): what is trimmed leaves the counts and the
        # suppression, also when it arrives out of order.
        m = self.start("--retention-days", "1")
        day = 86400 * 1000
        a = "ivan@example.com"
        key = f"mailtrail:rcpt:{{{a}}}"
        old = [Item("complaint", a, T0, 1), Item("delivery", a, T0 + 1000, 2)]
        self.deliver(m, old, threads=1)
        s = self.summary(m, a)
        self.assertEqual(s["counts"], {"Complaint": 1, "Delivery": 1})
        self.assertEqual((s["suppressed"], s["reason"]), (True, "Complaint"))

        newest = Item("bounce-transient", a, T0 + day + 1500, 3)
        self.deliver(m, [newest], threads=1)
        s = self.summary(m, a)
        self.assertEqual(s["counts"], {"Bounce": 1})
        self.assertEqual((s["suppressed"], s["reason"]), (False, None))
        self.assertEqual(s["last_event"]["id"], newest.id)

        # Out of order: one older than the window is stored and trimmed at
        # once; one inside it stays.
        late = [Item("bounce-permanent", a, T0 + 500, 4), Item("delivery", a, T0 + 2000, 5)]
        self.deliver(m, late, threads=1)
        s = self.summary(m, a)
        self.assertEqual(s["counts"], {"Bounce": 1, "Delivery": 1})
        self.assertEqual((s["suppressed"], s["reason"]), (False, None))
        self.assertEqual(s["last_event"]["id"], newest.id)
        self.assertEqual(sorted(int(x) for x in ENV.redis("ZRANGE", key, 0, -1, "WITHSCORES")[1::2]),
                         [T0 + 2000, T0 + day + 1500])
        # Both keys expire a day (and at most an hour more) after the last
        # write: the expiry is renewed only once it is below a day.
        hour = 3600 * 1000
        keys = (key, f"mailtrail:counts:{{{a}}}")
        for k in keys:
            with self.subTest(key=k):
                self.assertGreater(ENV.redis("PTTL", k), day + hour - 60_000)
                self.assertLessEqual(ENV.redis("PTTL", k), day + hour)
                ENV.redis("PEXPIRE", k, day + 1000)
        self.deliver(m, [Item("delivery", a, T0 + day + 1600, 6)], threads=1)
        for k in keys:
            self.assertGreater(ENV.redis("PTTL", k), day, "renewed too early")
            self.assertLessEqual(ENV.redis("PTTL", k), day + 1000, "renewed too early")
            ENV.redis("PEXPIRE", k, day - 1000)
        self.deliver(m, [Item("delivery", a, T0 + day + 1700, 7)], threads=1)
        for k in keys:
            self.assertGreater(ENV.redis("PTTL", k), day + hour - 60_000, "not renewed")

    def test_event_content(self):
        m = self.start()
        it = Item("bounce-permanent", "Jane Doe <Jane@Example.com>", T0 + 1234, 1)
        self.deliver(m, [it], threads=1)
        ev = self.summary(m, "jane@example.com")["last_event"]
        src = json.loads(it.text)
        self.assertEqual(ev, {
            "id": it.id, "type": "Bounce", "time": ms_iso(T0 + 1234),
            "recipient": "jane@example.com", "topicArn": SnsSigner.TOPIC,
            "mail": {"messageId": src["mail"]["messageId"], "source": "john@example.com",
                     "timestamp": ms_iso(T0 + 1234 - 5000),
                     "destination": ["Jane Doe <Jane@Example.com>"]},
            "detail": {"bounceType": "Permanent", "bounceSubType": "General",
                       "action": "failed", "status": "5.1.1",
                       "diagnosticCode": "smtp; 550 5.1.1 <jane@example.com>... User",
                       "reportingMTA": "dns; email.example.com"}})


# ===================================================================================
class TestForgedTimes(ApiCase):
    """A signed message cannot rewrite the past (issue 11): an event dated
    far ahead is kept under its topic only, and none, however dated, trims
    genuine events or lifts a suppression."""

    DAY = 86400 * 1000

    def summary(self, m, address):
        return self.get(m, f"/v1/recipients/{address}")

    def timeline_ids(self, m, address):
        return [e["id"] for e in self.get_page(m, timeline_path(address), address)["events"]]

    def outcomes(self, m):
        out = []
        for line in m.out_lines:
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if isinstance(o, dict) and o.get("msg") == "sns":
                out.append(o.get("outcome"))
        return out

    def metric(self, m, name):
        r = harness.http_request(m.port, "GET", "/metrics")
        for line in r.body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        self.fail(f"no {name} in /metrics")

    def test_event_dated_9999_changes_nothing(self):
        m = self.start()
        a = "victim@example.com"
        now = int(time.time() * 1000)
        genuine = [Item("bounce-permanent", a, now - (6 - i) * 3600 * 1000, i)
                   for i in range(1, 6)]
        self.deliver(m, genuine, threads=1)
        before = self.summary(m, a)
        self.assertEqual((before["suppressed"], before["reason"], before["counts"]),
                         (True, "Bounce/Permanent", {"Bounce": 5}))

        forged = Item("delivery", a, ms_of("9999-12-31T23:59:59.999Z"), 6)
        self.deliver(m, [forged], threads=1)   # answered 200 "stored": SNS must not retry
        self.assertEqual(self.summary(m, a), before)
        self.assertEqual(sorted(self.timeline_ids(m, a)), sorted(it.id for it in genuine))
        self.assertEqual(ENV.redis("ZCARD", "mailtrail:recent"), 5,
                         "the forged event must not reach the recent feed")
        # Kept, under its topic, with its own id: nothing is dropped.
        kept = [json.loads(x) for x in
                ENV.redis("ZRANGE", f"mailtrail:topic:{{{SnsSigner.TOPIC}}}", 0, -1)]
        self.assertEqual([k["id"] for k in kept], [forged.id])
        self.assertIn("implausible_time", self.outcomes(m))
        self.assertEqual(self.metric(m, "mailtrail_implausible_time_total"), 1)
        # A redelivery adds nothing and is not counted again.
        self.deliver(m, [forged], threads=1, expect="duplicate")
        self.assertEqual(self.metric(m, "mailtrail_implausible_time_total"), 1)

        # A genuine bounce after it is stored and stays.
        later = Item("bounce-permanent", a, now - 60_000, 7)
        self.deliver(m, [later], threads=1)
        ids = self.timeline_ids(m, a)
        self.assertEqual(ids[0], later.id)
        self.assertEqual(len(ids), 6)
        s = self.summary(m, a)
        self.assertEqual((s["suppressed"], s["reason"], s["counts"]),
                         (True, "Bounce/Permanent", {"Bounce": 6}))
        self.assertEqual(s["last_event"]["id"], later.id)

    def test_event_a_day_ahead_trims_nothing(self):
        # Within the day an event may be ahead (clock skew) it is stored,
        # but the retention window ends at now, not at that event: the
        # genuine ones stay, in and out of order.
        m = self.start("--retention-days", "1")
        a = "skew@example.com"
        now = int(time.time() * 1000)
        genuine = [Item("bounce-permanent", a, now - 3 * 3600 * 1000, 1),
                   Item("delivery", a, now - 2 * 3600 * 1000, 2)]
        self.deliver(m, genuine, threads=1)
        ahead = Item("delivery", a, now + self.DAY - 3600 * 1000, 3)
        self.deliver(m, [ahead], threads=1)
        self.assertEqual(len(self.timeline_ids(m, a)), 3)
        s = self.summary(m, a)
        self.assertEqual((s["suppressed"], s["reason"]), (True, "Bounce/Permanent"))
        self.assertEqual(s["counts"], {"Bounce": 1, "Delivery": 2})
        # Arriving after the one ahead (the out-of-order path of the store).
        late = Item("bounce-permanent", a, now - 90 * 60 * 1000, 4)
        self.deliver(m, [late], threads=1)
        self.assertEqual(len(self.timeline_ids(m, a)), 4)
        self.assertEqual(self.summary(m, a)["counts"], {"Bounce": 2, "Delivery": 2})
        # Events older than the window (from now) are still trimmed.
        old = Item("bounce-transient", a, now - self.DAY - 3600 * 1000, 5)
        self.deliver(m, [old], threads=1)
        self.assertNotIn(old.id, self.timeline_ids(m, a))

    def test_events_ahead_do_not_take_over_the_recent_feed(self):
        # The feed keeps its newest STORE_RECENT_MAX entries by score: 10
        # signed bounces to 1,000 recipients each, dated 23 h ahead (inside
        # the day an event may be ahead), fill it.  A genuine bounce sent
        # after them must still be the newest entry, not trimmed at once,
        # and the forged events are still read with their own times.
        with open(os.path.join(os.path.dirname(os.path.dirname(DATA)),
                               "include", "store.h")) as f:
            cap = int(re.search(r"#define STORE_RECENT_MAX (\d+)", f.read()).group(1))
        m = self.start()
        now = int(time.time() * 1000)
        ahead = now + 23 * 3600 * 1000
        forged = [Item("bounce-permanent",
                       [f"f{i}-{j}@example.com" for j in range(1000)], ahead + i, 100 + i)
                  for i in range(cap // 1000)]
        self.deliver(m, forged, threads=2)
        self.assertEqual(ENV.redis("ZCARD", "mailtrail:recent"), cap)
        later = Item("bounce-permanent", "genuine@example.com", int(time.time() * 1000), 200)
        self.deliver(m, [later], threads=1)
        sent = int(time.time() * 1000)
        body = self.get_page(m, "/v1/events?limit=1")
        self.assertEqual([e["id"] for e in body["events"]], [later.id],
                         "the genuine bounce is not the newest entry of the feed")
        top = ENV.redis("ZREVRANGE", "mailtrail:recent", 0, 0, "WITHSCORES")
        self.assertLessEqual(int(float(top[1])), sent, "a feed entry scored in the future")
        self.assertEqual(ENV.redis("ZCARD", "mailtrail:recent"), cap)
        # Every forged event still resolves (a page of the feed lists them
        # with their own times, though the feed places them at their
        # arrival: so not walk(), whose cursor check is by event time),
        # and the genuine one stays on its timeline.
        events, before = [], None
        for _ in range(20):
            body = self.get_page(m, "/v1/events" + q(limit=1000, before=before))
            events += body["events"]
            before = body["next_before"]
            if before is None:
                break
        self.assertEqual(len(events), cap)
        self.assertEqual(events[0]["id"], later.id)
        # (The one trimmed for the genuine bounce is any of them: they share
        # the writer's millisecond in the feed.)
        self.assertLessEqual({e["time"] for e in events[1:]}, {ms_iso(it.ms) for it in forged},
                             "the forged events left in the feed, read with their own times")
        self.assertEqual(self.timeline_ids(m, "genuine@example.com"), [later.id])

    def test_replayed_old_event_into_an_empty_set_stays(self):
        # A payload captured years ago still lands on its timeline.
        m = self.start("--retention-days", "1")
        it = Item("bounce-permanent", "replay@example.com", ms_of("2016-01-27T14:59:38.237Z"), 1)
        self.deliver(m, [it], threads=1)
        self.assertEqual(self.timeline_ids(m, "replay@example.com"), [it.id])
        self.assertTrue(self.summary(m, "replay@example.com")["suppressed"])


# ===================================================================================
class TestRecentFeed(ApiCase):

    def test_feed_pages_across_recipients(self):
        m = self.start()
        rng = random.Random(5)
        addrs = ["a@example.com", "b@example.com", "c@example.org", "d@example.net"]
        items = [Item(rng.choice(list(KINDS)), addrs[i % 4], T0 + 1000 * i, i)
                 for i in range(12)]
        # One bounce for two recipients: two events, one id, one ms.
        pair = Item("bounce-permanent", ["b@example.com", "e@example.com"], T0 + 6500, 50)
        items.append(pair)
        order = list(items)
        rng.shuffle(order)
        self.deliver(m, order, threads=1)
        n_events = 14
        for limit in (1, 5, 14, 1000):
            with self.subTest(limit=limit):
                pages = self.walk(m, None, limit)
                self.assertEventsExactly(concat(pages), items, f"/v1/events limit={limit}")
                if limit == 1:
                    # One event a page, but the two of one millisecond together.
                    self.assertEqual(sorted(len(p) for p, _ in pages), [1] * 12 + [2])
                if limit == 5:
                    self.assertEqual(len(concat(pages)), n_events)
        body = self.get_page(m, "/v1/events?limit=3")
        self.assertEqual([e["time"] for e in body["events"]],
                         [ms_iso(T0 + 11000), ms_iso(T0 + 10000), ms_iso(T0 + 9000)])
        self.assertEqual(body["next_before"], T0 + 9000)
        self.assertEqual([e["recipient"] for e in body["events"]],
                         [addrs[3], addrs[2], addrs[1]])
        # before, and the default limit (50: everything here).
        body = self.get_page(m, f"/v1/events?before={T0 + 6500}")
        self.assertEventsExactly(body["events"], [it for it in items if it.ms < T0 + 6500],
                                 "before")
        self.assertIsNone(body["next_before"])
        body = self.get_page(m, "/v1/events")
        self.assertEventsExactly(body["events"], items, "default limit")
        self.assertIsNone(body["next_before"])
        # Filters on the feed.
        for etype in {it.type for it in items}:
            with self.subTest(type=etype):
                body = self.get_page(m, "/v1/events" + q(type=etype))
                self.assertEventsExactly(body["events"],
                                         [it for it in items if it.type == etype], etype)

    def test_feed_references(self):
        # The feed holds references "<address> <member prefix>"; GET
        # /v1/events reads each event as its recipient's set holds it.
        m = self.start("--retention-days", "1")
        a = "kim@example.com"
        key = f"mailtrail:rcpt:{{{a}}}"
        first = Item("delivery", a, T0, 1)
        self.deliver(m, [first], threads=1)
        prefix = f'{{"id":"{first.id}",'
        self.assertEqual(ENV.redis("ZRANGE", "mailtrail:recent", 0, -1),
                         [f"{a} {prefix}".encode()])
        # Another copy stored other bytes for this message: the feed shows
        # them, and a redelivery adds nothing to it.
        stored = self.get_page(m, "/v1/events")["events"][0]
        other = dict(stored, detail={"written": "by another version"})
        ENV.redis("DEL", key)
        ENV.redis("ZADD", key, T0, json.dumps(other, separators=(",", ":")))
        self.deliver(m, [first], threads=1, expect="duplicate")
        self.assertEqual(self.get_page(m, "/v1/events")["events"], [other])
        # Entries written before references (the EVENT itself) still read;
        # an event trimmed from its recipient's set leaves the feed.
        old = dict(stored, id="written-before-references", recipient="lee@example.com")
        ENV.redis("ZADD", "mailtrail:recent", T0 + 5, json.dumps(old, separators=(",", ":")))
        newer = Item("complaint", "lee@example.com", T0 + 10, 2)
        gone = Item("bounce-permanent", a, T0 + 20, 3)
        self.deliver(m, [newer, gone, Item("delivery", a, T0 + 86400 * 1000 + 30, 4)],
                     threads=1)
        ids = [e["id"] for e in self.get_page(m, "/v1/events")["events"]]
        self.assertEqual(ids[1:], [newer.id, old["id"]])
        self.assertEqual(ENV.redis("ZCARD", "mailtrail:recent"), 5)

    def test_feed_empty(self):
        m = self.start()
        self.assertEqual(self.get_page(m, "/v1/events"), {"events": [], "next_before": None})


# ===================================================================================
class TestMessages(ApiCase):
    """GET /v1/messages/{sesMessageId}: every event of one sent mail,
    grouped by recipient, from the message index written at ingest."""

    DAY = 86400 * 1000
    HOUR = 3600 * 1000

    def start(self, *extra, **kw):
        return super().start("--message-index", *extra, **kw)

    def message(self, m, mail_id, status=200):
        body = self.get(m, f"/v1/messages/{mail_id}", status)
        if status == 200:
            self.assertEqual(sorted(body), ["messageId", "recipients"], body)
            self.assertEqual(body["messageId"], mail_id)
            for g in body["recipients"]:
                self.assertEqual(sorted(g), ["events", "recipient"], g)
        return body

    def grouped(self, body):
        """[(recipient, [(id, type, time ms)])] of an answer."""
        return [(g["recipient"], [(e["id"], e["type"], ms_of(e["time"])) for e in g["events"]])
                for g in body["recipients"]]

    def test_forged_references_do_not_hide_a_mails_recipients(self):
        """Security review: the message index is keyed by mail.messageId
        alone, which whoever gets a message signed chooses (an SES message
        id is no secret: it is in every mail's Message-ID).  Two signed
        deliveries of 1,000 recipients each naming a genuine mail's id and
        a later time used to push its genuine references out of the newest
        2,000 (STORE_MESSAGE_REFS_MAX): the lookup then no longer showed
        the recipient the mail was really sent to.  The cap is first come,
        first kept now: the forged references fill the set up to 2,000 and
        the rest are dropped (counted), the genuine one stays."""
        m = self.start()
        mail = ses_message_id(0x4e00)
        genuine = Item("bounce-permanent", "victim@example.com", T0 + 1000, 1, mail)
        self.deliver(m, [genuine], threads=1)
        forged = [Item("delivery", [f"f{k}-{j}@attacker.example" for j in range(1000)],
                       T0 + 10000 + k, 2 + k, mail) for k in range(2)]
        self.deliver(m, forged, threads=1)
        # The victim's own timeline keeps the event ...
        timeline = self.get_page(m, timeline_path("victim@example.com"),
                                 "victim@example.com")["events"]
        self.assertEqual([e["id"] for e in timeline], [genuine.id])
        # ... and so must the lookup of the mail it came from.
        got = [g["recipient"] for g in self.message(m, mail)["recipients"]]
        self.assertTrue("victim@example.com" in got,
                        f"the genuine recipient is not among the {len(got)} answered")
        self.assertEqual(len(got), 2000)
        self.assertEqual(ENV.redis("ZCARD", f"mailtrail:mail:{{{mail}}}"), 2000)
        self.assertEqual(self.dropped(m), 1)

    def test_grouped_newest_first(self):
        m = self.start()
        mail = ses_message_id(0x4d00)
        other = ses_message_id(0x4d01)
        rcpts = ["b1@example.com", "Bee Two <B2@Example.com>", "b3@example.net"]
        items = [
            Item("delivery", "dora@example.com", T0 + 1000, 1, mail),
            Item("bounce-permanent", rcpts, T0 + 3000, 2, mail),
            Item("delivery", "carl@example.org", T0 + 4000, 3, mail),
            Item("open", "dora@example.com", T0 + 5000, 4, mail),
            Item("bounce-transient", "carl@example.org", T0 + 2000, 5, mail),
            # Another mail to the same recipients: not in the answer.
            Item("complaint", ["dora@example.com", "b1@example.com"], T0 + 6000, 6, other),
        ]
        self.deliver(m, items, threads=1)
        got = self.grouped(self.message(m, mail))
        i = {it.serial: it for it in items}
        expect = [
            ("dora@example.com", [(i[4].id, "Open", T0 + 5000), (i[1].id, "Delivery", T0 + 1000)]),
            ("carl@example.org", [(i[3].id, "Delivery", T0 + 4000),
                                  (i[5].id, "Bounce", T0 + 2000)]),
        ]
        self.assertEqual(got[:2], expect, got)
        # Three recipients' newest events share a millisecond: any order
        # among them, each with its own one event.
        self.assertEqual(sorted(got[2:]), sorted(
            (a, [(i[2].id, "Bounce", T0 + 3000)])
            for a in ("b1@example.com", "b2@example.com", "b3@example.net")), got)
        # The EVENTs are the recipients' own, byte for byte as the timeline
        # returns them.
        body = self.message(m, mail)
        for g in body["recipients"]:
            timeline = self.get_page(m, timeline_path(g["recipient"]), g["recipient"])["events"]
            self.assertEqual(g["events"], [e for e in timeline
                                           if e["mail"]["messageId"] == mail], g["recipient"])
        self.assertEqual(sorted(self.grouped(self.message(m, other))), [
            ("b1@example.com", [(i[6].id, "Complaint", T0 + 6000)]),
            ("dora@example.com", [(i[6].id, "Complaint", T0 + 6000)])])
        # Never seen: an empty answer, not an error.
        self.assertEqual(self.message(m, ses_message_id(0x4dff)),
                         {"messageId": ses_message_id(0x4dff), "recipients": []})

        # Redelivery adds nothing: the same references, the same answer.
        key = f"mailtrail:mail:{{{mail}}}"
        refs = ENV.redis("ZRANGE", key, 0, -1, "WITHSCORES")
        self.assertEqual(len(refs), 2 * 7, refs)
        for r in refs[::2]:
            addr, prefix = r.decode().split(" ", 1)
            self.assertTrue(prefix.startswith('{"id":"') and prefix.endswith('",'), r)
        before = self.message(m, mail)
        self.deliver(m, items[:5], threads=1, expect="duplicate")
        self.assertEqual(ENV.redis("ZRANGE", key, 0, -1, "WITHSCORES"), refs)
        self.assertEqual(self.message(m, mail), before)
        # Kept for the retention period (90 days by default) and at most
        # an hour more.
        ttl = ENV.redis("PTTL", key)
        self.assertGreater(ttl, 90 * self.DAY + self.HOUR - 60_000)
        self.assertLessEqual(ttl, 90 * self.DAY + self.HOUR)

    def test_retention_trim_drops_references(self):
        m = self.start("--retention-days", "1")
        a, b = "ria@example.com", "rob@example.com"
        mail = ses_message_id(0x4e00)
        old = [Item("delivery", [a, b], T0, 1, mail), Item("open", a, T0 + 500, 2, mail)]
        self.deliver(m, old, threads=1)
        self.assertEqual([g["recipient"] for g in self.message(m, mail)["recipients"]], [a, b])
        # A newer event of another mail trims a's events of this mail (more
        # than a day older): a leaves the answer, b stays.
        self.deliver(m, [Item("delivery", a, T0 + self.DAY + 1000, 3)], threads=1)
        got = self.grouped(self.message(m, mail))
        self.assertEqual(got, [(b, [(old[0].id, "Delivery", T0)])])
        self.deliver(m, [Item("complaint", b, T0 + self.DAY + 2000, 4)], threads=1)
        self.assertEqual(self.message(m, mail)["recipients"], [])
        # The index's expiry follows the retention period.
        ttl = ENV.redis("PTTL", f"mailtrail:mail:{{{mail}}}")
        self.assertGreater(ttl, self.DAY + self.HOUR - 60_000)
        self.assertLessEqual(ttl, self.DAY + self.HOUR)

    def dropped(self, m):
        """mailtrail_message_refs_dropped_total."""
        r = harness.http_request(m.port, "GET", "/metrics")
        for line in r.body.decode().splitlines():
            if line.startswith("mailtrail_message_refs_dropped_total "):
                return int(float(line.split()[1]))
        self.fail("no mailtrail_message_refs_dropped_total in /metrics")

    def test_references_capped(self):
        # Three signed notifications of 1,000 recipients each (SES's
        # Send, Delivery and Open of one big mail): 3,000 events, of which
        # the index keeps the first 2,000 to come, whatever their times
        # (the last one is the newest: dropped all the same).
        m = self.start()
        mail = ses_message_id(0x4f00)
        key = f"mailtrail:mail:{{{mail}}}"
        rcpts = [f"u{k:04d}@big.example" for k in range(1000)]
        items = [Item("delivery", rcpts, T0 + 1000, 1, mail),
                 Item("open", rcpts, T0 + 2000, 2, mail),
                 Item("open", rcpts, T0 + 3000, 3, mail)]
        self.assertEqual(self.dropped(m), 0)
        self.deliver(m, items, threads=1)
        self.assertEqual(ENV.redis("ZCARD", key), 2000)
        self.assertEqual(self.dropped(m), 1000)
        body = self.message(m, mail)
        self.assertEqual(len(body["recipients"]), 1000)
        for g in body["recipients"]:
            self.assertEqual([(e["id"], ms_of(e["time"])) for e in g["events"]],
                             [(items[1].id, T0 + 2000), (items[0].id, T0 + 1000)], g)
        # Redeliveries add nothing and count nothing again: of kept
        # references (already there), and of dropped ones (their events
        # are not stored again).
        refs = ENV.redis("ZRANGE", key, 0, -1, "WITHSCORES")
        self.deliver(m, items, threads=1, expect="duplicate")
        self.assertEqual(ENV.redis("ZRANGE", key, 0, -1, "WITHSCORES"), refs)
        self.assertEqual(self.dropped(m), 1000)
        # Five more events, one before every other in time: dropped.
        late = Item("delivery", [f"late{k}@big.example" for k in range(5)], T0, 4, mail)
        self.deliver(m, [late], threads=1)
        self.assertEqual(ENV.redis("ZRANGE", key, 0, -1, "WITHSCORES"), refs)
        self.assertEqual(self.dropped(m), 1005)
        # The expiry is renewed all the same.
        ENV.redis("PEXPIRE", key, 5000)
        self.deliver(m, [Item("open", rcpts[:1], T0 + 4000, 5, mail)], threads=1)
        self.assertGreater(ENV.redis("PTTL", key), 90 * self.DAY)
        self.assertEqual(self.dropped(m), 1006)

    def test_references_cap_exact(self):
        # 2,000 + 5 references in one notification's run and the next: the
        # first 2,000 are kept, exactly 5 dropped; the room left counts
        # what was really added (a redelivered reference takes none).
        m = self.start()
        mail = ses_message_id(0x4f01)
        key = f"mailtrail:mail:{{{mail}}}"
        first = Item("delivery", [f"a{k:04d}@cap.example" for k in range(1000)],
                     T0 + 1000, 1, mail)
        self.deliver(m, [first], threads=1)
        self.deliver(m, [first], threads=1, expect="duplicate")
        self.assertEqual(ENV.redis("ZCARD", key), 1000)
        self.assertEqual(self.dropped(m), 0)
        second = Item("open", [f"a{k:04d}@cap.example" for k in range(1000)],
                      T0 + 2000, 2, mail)
        third = Item("open", [f"b{k}@cap.example" for k in range(5)], T0 + 3000, 3, mail)
        self.deliver(m, [second, third], threads=1)
        self.assertEqual(ENV.redis("ZCARD", key), 2000)
        self.assertEqual(self.dropped(m), 5)
        self.assertEqual([g["recipient"] for g in self.message(m, mail)["recipients"]
                          if g["recipient"].startswith("b")], [])
        ttl = ENV.redis("PTTL", key)
        self.assertGreater(ttl, 90 * self.DAY)
        self.assertLessEqual(ttl, 90 * self.DAY + self.HOUR)

    def test_erasure_forgets_references(self):
        # store_forget_message_refs(), which the erasure route calls before
        # it deletes a recipient's set: that recipient's references leave
        # every message index its events are in; the others stay.  Run
        # through tests/forget_refs (build/tests/), twice: idempotent.
        m = self.start()
        mail, other = ses_message_id(0x5000), ses_message_id(0x5001)
        a, b = "eve@example.com", "fay@example.com"
        items = [Item("delivery", [a, b], T0, 1, mail), Item("open", a, T0 + 10, 2, mail),
                 Item("complaint", a, T0 + 20, 3, other), Item("delivery", b, T0 + 30, 4, other)]
        self.deliver(m, items, threads=1)
        tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(BINARY))),
                            "tests", "forget_refs")
        keys = [f"mailtrail:mail:{{{mail}}}", f"mailtrail:mail:{{{other}}}"]
        self.assertEqual([ENV.redis("ZCARD", k) for k in keys], [3, 2])
        for attempt in (1, 2):
            r = subprocess.run([tool, ENV.redis_url, "mailtrail:", "90", "Eve@Example.com"],
                               capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 0, f"attempt {attempt}: {r.stderr!r}")
            self.assertEqual([ENV.redis("ZRANGE", k, 0, -1) for k in keys],
                             [[f'{b} {{"id":"{items[0].id}",'.encode()],
                              [f'{b} {{"id":"{items[3].id}",'.encode()]], f"attempt {attempt}")
        self.assertEqual(self.grouped(self.message(m, mail)),
                         [(b, [(items[0].id, "Delivery", T0)])])
        # The recipient's own events are the erasure route's to delete.
        self.assertEqual(ENV.redis("ZCARD", f"mailtrail:rcpt:{{{a}}}"), 3)

    def test_bad_ids(self):
        m = self.start()
        for mid in ("has%20space", "a.b", "a_b", "a%2Fb", "x" * 129, "%C3%A9t%C3%A9",
                    "a%00b", "..", "a:b", "%7Bx%7D"):
            with self.subTest(id=mid):
                body = self.get(m, f"/v1/messages/{mid}", 400)
                self.assertEqual(body["parameter"], "messageId", body)
                self.assertEqual(body["status"], "error", body)
        self.message(m, "x" * 128)
        self.message(m, "0-A-z-9")
        self.assertEqual(self.api(m, "/v1/messages/").status, 404)
        self.assertEqual(self.api(m, "/v1/messages").status, 404)
        self.assertEqual(self.api(m, f"/v1/messages/{ses_message_id(1)}/events").status, 400)
        body = self.get(m, f"/v1/messages/{ses_message_id(1)}?limit=5", 400)
        self.assertEqual(body["parameter"], "limit", body)
        # Counted under the route's own label (never the id itself); a bad
        # id, like a bad address, under "other".
        text = m.settled_metrics()
        for status, n in (("200", 2), ("400", 1)):
            self.assertIn(f'mailtrail_http_requests_total{{route="/v1/messages/{{sesMessageId}}",'
                          f'status="{status}"}} {n}\n', text)
        self.assertNotIn(ses_message_id(1), text)


# ===================================================================================

    def test_index_off_by_default(self):
        m = ApiCase.start(self)
        a = "noindex@example.com"
        self.deliver(m, [Item("delivery", a, T0 + 5000, 777001)])
        self.assertEqual(ENV.redis.keys("mailtrail:mail:*"), [])
        r = self.api(m, "/v1/messages/0100018c1a2b3c4d-1a2b3c4d-1a2b-3c4d-5e6f-1a2b3c4d5e6f-000000")
        self.assertEqual(r.status, 404, r)
        self.assertIn(b"--message-index", r.body)


class TestErrors(ApiCase):

    def assertBadParameter(self, m, path, param):  # noqa: N802
        body = self.get(m, path, 400)
        self.assertEqual(sorted(body), ["error", "parameter", "status"], f"GET {path}: {body}")
        self.assertEqual(body["status"], "error", path)
        self.assertEqual(body["parameter"], param, f"GET {path}: {body}")
        self.assertTrue(body["error"].startswith(f"bad parameter '{param}': ")
                        and len(body["error"]) > len(f"bad parameter '{param}': "),
                        f"GET {path}: {body}")
        return body

    def assertError(self, r, status, what):  # noqa: N802
        self.assertEqual(r.status, status, f"{what}: {r!r}")
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"),
                        f"{what}: {r.headers}")
        body = r.json()
        self.assertEqual(sorted(body), ["error", "status"], f"{what}: {body}")
        self.assertEqual(body["status"], "error")
        self.assertIsInstance(body["error"], str)
        self.assertTrue(body["error"], what)
        return body

    def test_bad_parameters(self):
        m = self.start(token=TOKEN)
        a = "/v1/recipients/alice@example.com"
        cases = [
            ("limit", "limit=0"), ("limit", "limit=1001"), ("limit", "limit=x"),
            ("limit", "limit=-1"), ("limit", "limit="), ("limit", "limit=5x"),
            ("limit", "limit=1.5"),
            ("before", "before=abc"), ("before", "before=-5"), ("before", "before=1.5"),
            ("before", "before="),
            ("after", "after=abc"), ("after", "after=-1"),
            ("type", "type=Nope"), ("type", "type="), ("type", "type=Rendering"),
            ("foo", "foo=1"), ("foo", "limit=5&foo=1"),
        ]
        for param, query in cases:
            with self.subTest(query=query):
                self.assertBadParameter(m, f"{a}/events?{query}", param)
                if param != "after":
                    self.assertBadParameter(m, f"/v1/events?{query}", param)
        for query in ("after=5&before=5", "after=6&before=5", "before=5&after=6"):
            with self.subTest(query=query):
                body = self.get(m, f"{a}/events?{query}", 400)
                self.assertIn(body.get("parameter"), ("after", "before"), body)
                self.assertBadParameter(m, f"{a}/events?{query}", body["parameter"])
        with self.subTest("summary takes no parameters"):
            self.assertBadParameter(m, f"{a}?foo=1", "foo")
        # Limits at the edges are fine.
        for query in ("limit=1", "limit=1000", "after=5&before=7", "type=DeliveryDelay"):
            with self.subTest(query=query):
                self.get_page(m, f"{a}/events?{query}", "alice@example.com")

    def test_not_an_address(self):
        m = self.start(token=TOKEN)
        for addr in ("not-an-address", "%3Cscript%3E", "a@", "@example.com",
                     "a@b@example.com", "alice%20smith@example.com", "%22a%22"):
            with self.subTest(address=addr):
                self.assertBadParameter(m, f"/v1/recipients/{addr}/events", "address")
                self.assertBadParameter(m, f"/v1/recipients/{addr}", "address")

    def test_path_not_an_address_after_decoding(self):
        # A '/' cannot be in a domain and a NUL in no address: such a path
        # names no recipient and must not be answered as if it did (e.g. a
        # timeline request answered with some other address's summary).
        m = self.start(token=TOKEN)
        self.deliver(m, [Item("complaint", "alice@example.com", T0, 1)], threads=1)
        for path in ("/v1/recipients/alice@example.com%00x/events",
                     "/v1/recipients/alice@example.com%00",
                     "/v1/recipients/alice@example.com/events/",
                     "/v1/recipients/alice@example.com/events/extra",
                     "/v1/recipients/alice@example.com/"):
            with self.subTest(path=path):
                r = self.api(m, path)
                self.assertIn(r.status, (400, 404), f"{path}: {r!r}")
                if r.status == 400:
                    self.assertBadParameter(m, path, "address")
                else:
                    self.assertError(r, 404, path)

    def test_unknown_routes(self):
        m = self.start(token=TOKEN)
        for path in ("/v1/nope", "/v1/", "/v1", "/v1/recipients", "/v1/events/x",
                     "/v1/recipient/alice@example.com", "/v2/events"):
            with self.subTest(path=path):
                r = self.api(m, path)
                self.assertEqual(r.status, 404, f"{path}: {r!r}")
                if path.startswith("/v1/"):
                    self.assertError(r, 404, path)
        r = self.api(m, "/no-such-asset.js", token=None)
        self.assertEqual(r.status, 404, r)

    def test_methods(self):
        m = self.start(token=TOKEN)
        for method, path in (("POST", "/v1/events"),
                             ("POST", "/v1/recipients/alice@example.com/events"),
                             ("POST", "/v1/recipients/alice@example.com"),
                             ("PUT", "/v1/events"), ("DELETE", "/v1/events"),
                             ("DELETE", "/v1/recipients/alice@example.com/events"),
                             ("POST", "/")):
            with self.subTest(method=method, path=path):
                self.assertError(self.api(m, path, method=method), 405, f"{method} {path}")

    def test_token(self):
        m = self.start("--message-index", token=TOKEN)
        wrong_same_length = "x" * len(TOKEN)
        basic = base64.b64encode(f"user:{TOKEN}".encode()).decode()
        cases = [
            ("no header", None),
            ("wrong token", "Bearer nope"),
            ("right length, wrong token", f"Bearer {wrong_same_length}"),
            ("last byte wrong", f"Bearer {TOKEN[:-1]}X"),
            ("prefix of the token", f"Bearer {TOKEN[:-1]}"),
            ("token plus more", f"Bearer {TOKEN}x"),
            ("token alone, no scheme", TOKEN),
            ("Basic scheme", f"Basic {basic}"),
            ("Basic scheme with the token", f"Basic {TOKEN}"),
            ("empty bearer", "Bearer "),
        ]
        for path in ("/v1/events", "/v1/recipients/alice@example.com/events",
                     "/v1/recipients/alice@example.com",
                     "/v1/recipients/alice@example.com/events?limit=0",
                     "/v1/messages/" + ses_message_id(1), "/v1/messages/not%20an%20id"):
            for what, header in cases:
                with self.subTest(path=path, case=what):
                    h = {"Authorization": header} if header is not None else {}
                    r = self.api(m, path, headers=h, token=None)
                    self.assertError(r, 401, f"{what} {path}")
                    self.assertTrue(r.headers.get("www-authenticate", "").startswith("Bearer"),
                                    f"{what}: {r.headers}")
                    self.assertNotIn(TOKEN.encode(), r.body)
        for path in ("/v1/events", "/v1/recipients/alice@example.com/events",
                     "/v1/recipients/alice@example.com", "/v1/messages/" + ses_message_id(1)):
            with self.subTest(path=path, case="right token"):
                self.get(m, path)
        self.assertFalse(any(TOKEN in ln for ln in m.out_lines + m.err_lines),
                         "the token must never be logged")

    def test_no_token_configured(self):
        m = self.start()
        self.get(m, "/v1/events")
        self.get(m, "/v1/events", headers={"Authorization": "Bearer anything"}, token=None)

    def test_console_assets(self):
        m = self.start(token=TOKEN)
        r = self.api(m, "/", token=None)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("text/html"), r.headers)
        self.assertTrue(r.headers.get("content-security-policy"), r.headers)
        self.assertIn(b"<html", r.body.lower())
        r = self.api(m, "/app.js", token=None)
        self.assertEqual(r.status, 200, r)
        self.assertIn("javascript", r.headers.get("content-type", ""), r.headers)
        self.assertTrue(r.body.strip())
        self.assertIn(b"app.js", self.api(m, "/", token=None).body,
                      "the page loads the console script")


# ===================================================================================
class TestRedisOutage(ApiCase):

    def test_redis_down_then_back(self):
        rs = RedisServer(tempfile.mkdtemp(dir=ENV.tmp, prefix="redis-outage-")).start()
        self.addCleanup(rs.stop)
        m = self.start(redis_url=f"redis://127.0.0.1:{rs.port}/0")
        a = "jane@example.com"
        first = Item("delivery", a, T0 + 1000, 1)
        self.deliver(m, [first], threads=1)
        paths = (timeline_path(a), f"/v1/recipients/{a}", "/v1/events")
        for p in paths:
            self.get(m, p)
        self.assertEqual(len(self.get(m, timeline_path(a))["events"]), 1)

        rs.stop()
        for p in paths:
            with self.subTest(path=p, redis="down"):
                body = self.get(m, p, 503)
                self.assertEqual(body.get("status"), "error", body)
                self.assertIsInstance(body.get("error"), str, body)
        # The console itself does not need Redis.
        self.assertEqual(self.api(m, "/").status, 200)

        rs.start()   # empty again: no persistence
        for p in paths:
            with self.subTest(path=p, redis="back"):
                self.get(m, p)
        self.assertEqual(self.get(m, timeline_path(a)),
                         {"recipient": a, "events": [], "next_before": None})
        second = Item("complaint", a, T0 + 2000, 2)
        self.deliver(m, [second], threads=1)
        body = self.get(m, timeline_path(a))
        self.assertEqual([e["id"] for e in body["events"]], [second.id])
        self.assertEqual(self.get(m, f"/v1/recipients/{a}")["reason"], "Complaint")


class TestStorageFormats(ApiCase):
    """Compact members (include/member.h) answer exactly as the full EVENT
    members that earlier versions stored, and the two forms are one
    message for redelivery."""

    ADDRS = ("sam@example.com", "Kai.Two@Example.COM", "lee@example.com")

    def assertAnswer(self, r, status, st):  # noqa: N802
        self.assertEqual((r.status, r.json().get("status")), (status, st), r.body)

    def config_event(self, name, address, ms, serial):
        """A configuration-set event (Send, Open, Click) for address at ms."""
        with open(os.path.join(DATA, "ses", name)) as f:
            obj = json.load(f)
        mail = obj["mail"]
        mail["messageId"] = f"0100018f{serial:08x}-4eca7ee8-dd82-4f94-8b91-3b4917f769ec-000000"
        mail["destination"] = [address]
        mail["timestamp"] = ms_iso(ms - (0 if obj["eventType"] == "Send" else 60000))
        own = obj.get(obj["eventType"].lower())
        if isinstance(own, dict) and "timestamp" in own:
            own["timestamp"] = ms_iso(ms)
        return ENV.signer.notification(json.dumps(obj, separators=(",", ":")))

    def load(self, m):
        """Delivers every kind of event to ADDRS; returns the messages."""
        sam, kai, lee = self.ADDRS
        items = [Item("delivery", sam, T0 + 1000, 9001),
                 Item("bounce-permanent", sam, T0 + 2000, 9002),
                 Item("complaint", sam, T0 + 3000, 9003),
                 Item("bounce-transient", [sam, kai], T0 + 4000, 9004),
                 Item("delivery", [f"Kai Two <{kai}>", lee], T0 + 5000, 9005),
                 Item("rendering-failure", lee, T0 + 6000, 9006)]
        self.deliver(m, items, threads=1)
        msgs = [self.config_event("awsdoc-event-send.json", lee, T0 + 7000, 9007),
                self.config_event("awsdoc-event-open.json", lee, T0 + 8000, 9008),
                self.config_event("awsdoc-event-click.json", sam, T0 + 9000, 9009)]
        for msg in msgs:
            self.assertAnswer(m.post_sns(msg), 200, "stored")
        return [it.msg for it in items] + msgs

    def answers(self, m):
        """The raw bytes of every answer about ADDRS (timelines, filtered
        pages, summaries, the feed)."""
        out = {}
        paths = ["/v1/events?limit=1000", "/v1/events?type=Bounce"]
        for a in self.ADDRS:
            paths += [timeline_path(a, limit=1000), timeline_path(a, limit=2),
                      timeline_path(a, type="Bounce"), f"/v1/recipients/{a}"]
        for p in paths:
            r = self.api(m, p)
            self.assertEqual(r.status, 200, f"GET {p}: {r!r}")
            out[p] = r.body
        return out

    def to_old_form(self, m, address):
        """Replaces address's compact members by the full EVENTs that the
        API answers for them (the bytes an earlier version stored)."""
        a = normalised(address)
        key = f"mailtrail:rcpt:{{{a}}}"
        events = self.get(m, timeline_path(a, limit=1000))["events"]
        flat = ENV.redis("ZRANGE", key, 0, -1, "WITHSCORES")
        self.assertEqual(len(flat), 2 * len(events))
        ENV.redis("DEL", key)
        for ev in events:
            full = json.dumps(ev, separators=(",", ":"), ensure_ascii=False)
            ENV.redis("ZADD", key, ms_of(ev["time"]), full.encode())
        ENV.redis("PEXPIRE", key, 86400000)
        return key

    def test_old_members_answer_identically(self):
        ENV.redis("FLUSHALL")
        m = self.start()
        self.load(m)
        # Stored compact: no recipient, time or topic ARN in any member.
        for a in self.ADDRS:
            members = ENV.redis("ZRANGE", f"mailtrail:rcpt:{{{normalised(a)}}}", 0, -1)
            self.assertTrue(members)
            for mem in members:
                self.assertNotIn(b'"recipient"', mem)
                self.assertNotIn(b'"time"', mem)
                self.assertNotIn(b"arn:aws:sns", mem)
        new = self.answers(m)
        # The SPEC EVENT, as the API answers it.
        ev = self.get(m, timeline_path("lee@example.com", type="Send"))["events"][0]
        self.assertEqual(list(ev), ["id", "type", "time", "recipient", "topicArn", "mail",
                                    "detail"])
        self.assertEqual(ev["recipient"], "lee@example.com")
        self.assertEqual(ev["topicArn"], SnsSigner.TOPIC)
        self.assertEqual(ev["mail"]["destination"], ["lee@example.com"])
        self.assertEqual(ev["time"], ms_iso(T0 + 7000))
        self.assertEqual(ev["mail"]["timestamp"], ms_iso(T0 + 7000))
        # Another process (nothing in memory: it reads {prefix}topics)
        # answers the same bytes.
        other = self.start()
        self.assertEqual(self.answers(other), new)
        # The same events as full EVENT members, as earlier versions wrote
        # them: every answer is byte for byte the same.
        for a in self.ADDRS:
            self.to_old_form(m, a)
            members = ENV.redis("ZRANGE", f"mailtrail:rcpt:{{{normalised(a)}}}", 0, -1)
            self.assertTrue(all(b'"recipient"' in mem for mem in members))
        old = self.answers(m)
        for p in new:
            self.assertEqual(old[p], new[p], f"GET {p}: old members answer otherwise")

    def test_redelivery_across_formats(self):
        ENV.redis("FLUSHALL")
        m = self.start()
        msgs = self.load(m)
        before = self.answers(m)
        for a in self.ADDRS:
            self.to_old_form(m, a)
        stored = {a: ENV.redis("ZRANGE", f"mailtrail:rcpt:{{{normalised(a)}}}", 0, -1)
                  for a in self.ADDRS}
        # Every message again: already stored (in the old form), nothing added.
        for msg in msgs:
            self.assertAnswer(m.post_sns(msg), 200, "duplicate")
        for a in self.ADDRS:
            self.assertEqual(ENV.redis("ZRANGE", f"mailtrail:rcpt:{{{normalised(a)}}}", 0, -1),
                             stored[a], a)
        self.assertEqual(self.answers(m), before)
        self.assertEqual(self.get(m, "/v1/recipients/sam@example.com")["counts"],
                         {"Bounce": 2, "Click": 1, "Complaint": 1, "Delivery": 1})

    def test_encoding_warning(self):
        # Redis's own thresholds make every recipient's set a skiplist: one
        # warning line at start.  The recommended ones (the harness's), or
        # a Redis that refuses CONFIG (managed Redis): none.
        warn = "redis encoding thresholds make recipients' sets skiplists"
        plain = RedisServer(tempfile.mkdtemp(dir=ENV.tmp, prefix="redis-defaults-"),
                            redis_defaults=True).start()
        self.addCleanup(plain.stop)
        closed = RedisServer(tempfile.mkdtemp(dir=ENV.tmp, prefix="redis-noconfig-"),
                             redis_defaults=True, extra_conf='rename-command CONFIG ""\n').start()
        self.addCleanup(closed.stop)
        m = self.start(redis_url=f"redis://127.0.0.1:{plain.port}/0")
        deadline = time.monotonic() + 10
        while warn not in m.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = [json.loads(x) for x in m.log().splitlines() if warn in x]
        self.assertEqual(len(lines), 1, m.log())
        self.assertEqual(lines[0]["level"], "warn")
        self.assertEqual(lines[0]["zset_max_listpack_value"], "64")
        quiet = [self.start(), self.start(redis_url=f"redis://127.0.0.1:{closed.port}/0")]
        time.sleep(1.0)
        for q_ in quiet:
            self.assertNotIn(warn, q_.log())
            self.assertNotIn("skiplist", q_.log())
        # Both still store and answer.
        it = Item("delivery", "enc@example.com", T0, 9100)
        self.deliver(quiet[1], [it], threads=1)
        self.assertEqual(len(self.get(quiet[1], timeline_path("enc@example.com"))["events"]), 1)


if __name__ == "__main__":
    sys.exit(harness.suite_main(sys.modules[__name__], sys.argv))
