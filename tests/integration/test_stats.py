#!/usr/bin/env python3
"""Integration tests of the deliverability counters written at ingest
(issue 13; README "Deliverability counters").

    python3 tests/integration/test_stats.py <mailtrail-binary> <tests/data> [TestClass ...]

The real binary against a real redis-server (and, in ClusterStatsTest, a
real Redis Cluster of three masters and three replicas, as
test_cluster.py starts it).  Every event is a real SES payload from
tests/data/ses (event publishing with sourceArn and a configuration set,
identity notifications without one, a transient bounce of another
identity), with the recipients and the event time set per test, wrapped in
an SNS Notification signed with the test key and POSTed to /sns.

What is checked, against counts computed by hand (FIXTURE, EXPECTED):
- the hash {prefix}stats:{<code>:<YYYYMMDD>} of each dimension (identity,
  configuration set, recipient domain) holds exactly the hourly and daily
  fields expected, and :names the names (score 0); counted: Send,
  Delivery, Bounce by bounce type (Permanent, Transient, Undetermined),
  Complaint; a Subscription counts nothing; a redelivery counts nothing;
  the configuration set only when the mail has one; an invalid identity,
  configuration set or recipient domain counts under "(other)";
- both keys of a dimension-day expire at the end of the day +
  --retention-days + 1 day, and an event whose day ended more than
  --retention-days ago is stored but not counted;
- the cap (MAILTRAIL_TEST_STATS_NAMES_MAX, a test-only environment
  variable, makes it 3): new names past it count as "(other)", names
  already listed go on counting under their own;
- mailtrail_identity_events_total{identity,type} in /metrics;
- the same counts in a Redis Cluster (another round trip); in both, a
  failing counter write (a foreign string at one stats key) leaves the
  deliveries stored (200), counted in mailtrail_stats_write_failures_total
  and logged.
"""

import copy
import datetime as dt
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import HarnessError, Mailtrail, iso_ms  # noqa: E402

BINARY = None
DATA = None
ENV = None

DAY_MS = 86400 * 1000
HOUR_MS = 3600 * 1000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
PREFIX = "mailtrail:"


def ms_iso(ms):
    return iso_ms(EPOCH + dt.timedelta(milliseconds=ms))


def day_of(ms):
    return (EPOCH + dt.timedelta(milliseconds=ms)).strftime("%Y%m%d")


def today_start():
    now = int(time.time() * 1000)
    return now - now % DAY_MS


# The fixture's day: two days ago (UTC), inside the default retention.
DAY0 = today_start() - 2 * DAY_MS
H03 = DAY0 + 3 * HOUR_MS + 10 * 60 * 1000
H15 = DAY0 + 15 * HOUR_MS + 20 * 60 * 1000

# template -> what it says (read off the files in tests/data/ses):
#   event publishing, sourceArn .../identity/sender@example.com, configuration set ConfigSet
#   guardian: sourceArn .../identity/deploydomain.co.uk, SESConfigurationSet-DFsgSHGDH
#   awsdoc-identity-*: sourceArn .../identity/example.com, no configuration set
SEND = "awsdoc-event-send.json"
DELIVERY = "awsdoc-event-delivery.json"
BOUNCE = "awsdoc-event-bounce.json"              # Permanent
COMPLAINT = "awsdoc-event-complaint.json"
SUBSCRIPTION = "awsdoc-event-subscription.json"
TRANSIENT = "guardian-event-bounce-transient-general-dmarc-5.7.1-multiline.json"
ID_DELIVERY = "awsdoc-identity-delivery.json"
ID_BOUNCE = "awsdoc-identity-bounce-permanent-general-with-dsn.json"


def template(name):
    with open(os.path.join(DATA, "ses", name), "rb") as f:
        obj = json.loads(f.read())
    if "Message" in obj:
        obj = json.loads(obj["Message"])
    return copy.deepcopy(obj)


def ses_event(name, addresses, ms, serial, edit=None):
    """The SES JSON of template `name` for these recipients at ms."""
    obj = template(name)
    t = ms_iso(ms)
    mail = obj["mail"]
    mail["messageId"] = f"0100018e{serial:08x}-4eca7ee8-dd82-4f94-8b91-3b4917f769ec-000000"
    mail["destination"] = list(addresses)
    mail["timestamp"] = t
    if "bounce" in obj:
        b = obj["bounce"]
        b["bouncedRecipients"] = [dict(b["bouncedRecipients"][0], emailAddress=a)
                                  for a in addresses]
        b["timestamp"] = t
    elif "delivery" in obj:
        obj["delivery"]["recipients"] = list(addresses)
        obj["delivery"]["timestamp"] = t
    elif "complaint" in obj:
        obj["complaint"]["complainedRecipients"] = [{"emailAddress": a} for a in addresses]
        obj["complaint"]["timestamp"] = t
    elif "subscription" in obj:
        obj["subscription"]["timestamp"] = t
    if edit:
        edit(obj)
    return json.dumps(obj, separators=(",", ":"))


def undetermined(obj):
    obj["bounce"]["bounceType"] = "Undetermined"


def invalid_names(obj):
    obj["mail"]["sourceArn"] = "arn:aws:ses:us-east-1:123456789012:identity/bad{name}.com"
    obj["mail"]["tags"]["ses:configuration-set"] = ["bad set"]


# (template, recipients, time, edit): the hand-computed EXPECTED below
# follows from these, event by event.
FIXTURE = [
    (SEND, ["a@one.example", "b@two.example"], H03, None),
    (DELIVERY, ["a@one.example"], H03, None),
    (BOUNCE, ["b@two.example"], H15, None),
    (TRANSIENT, ["c@two.example"], H15, None),
    (ID_DELIVERY, ["d@one.example", "E@Three.Example"], H03, None),
    (ID_BOUNCE, ["f@one.example"], H15, undetermined),
    (COMPLAINT, ["a@one.example"], H15, None),
    (SUBSCRIPTION, ["a@one.example"], H15, None),      # not counted
    (SEND, ["g@[192.0.2.1]"], H03, invalid_names),     # all three (other)
]


def fields(name, hourly):
    """{field: n} of one name: hourly = {(HH, type): n}, with the daily
    fields (<name>|*|<type>) summed from them."""
    out = {}
    for (hh, t), n in hourly.items():
        out[f"{name}|{hh}|{t}"] = n
        out[f"{name}|*|{t}"] = out.get(f"{name}|*|{t}", 0) + n
    return out


def expected():
    """{code: (hash, names)} for the fixture's day, counted by hand."""
    i = {}
    i.update(fields("sender@example.com", {("03", "Send"): 2, ("03", "Delivery"): 1,
                                           ("15", "Bounce/Permanent"): 1,
                                           ("15", "Complaint"): 1}))
    i.update(fields("deploydomain.co.uk", {("15", "Bounce/Transient"): 1}))
    i.update(fields("example.com", {("03", "Delivery"): 2, ("15", "Bounce/Undetermined"): 1}))
    i.update(fields("(other)", {("03", "Send"): 1}))
    i_names = {"sender@example.com": 5, "deploydomain.co.uk": 1, "example.com": 3,
               "(other)": 1}
    c = {}
    c.update(fields("ConfigSet", {("03", "Send"): 2, ("03", "Delivery"): 1,
                                  ("15", "Bounce/Permanent"): 1, ("15", "Complaint"): 1}))
    c.update(fields("SESConfigurationSet-DFsgSHGDH", {("15", "Bounce/Transient"): 1}))
    c.update(fields("(other)", {("03", "Send"): 1}))
    c_names = {"ConfigSet": 5, "SESConfigurationSet-DFsgSHGDH": 1, "(other)": 1}
    d = {}
    d.update(fields("one.example", {("03", "Send"): 1, ("03", "Delivery"): 2,
                                    ("15", "Complaint"): 1, ("15", "Bounce/Undetermined"): 1}))
    d.update(fields("two.example", {("03", "Send"): 1, ("15", "Bounce/Permanent"): 1,
                                    ("15", "Bounce/Transient"): 1}))
    d.update(fields("three.example", {("03", "Delivery"): 1}))
    d.update(fields("(other)", {("03", "Send"): 1}))
    d_names = {"one.example": 5, "two.example": 3, "three.example": 1, "(other)": 1}
    return {"i": (i, i_names), "c": (c, c_names), "d": (d, d_names)}


# mailtrail_identity_events_total of the fixture (identity, type label).
EXPECTED_METRICS = {
    ("sender@example.com", "Send"): 2, ("sender@example.com", "Delivery"): 1,
    ("sender@example.com", "BouncePermanent"): 1, ("sender@example.com", "Complaint"): 1,
    ("deploydomain.co.uk", "BounceTransient"): 1, ("example.com", "Delivery"): 2,
    ("example.com", "BounceUndetermined"): 1, ("(other)", "Send"): 1,
}


def stats_key(code, day):
    return f"{PREFIX}stats:{{{code}:{day}}}"


def as_counts(reply):
    """HGETALL / ZRANGE WITHSCORES reply -> {str: int}."""
    it = iter(reply)
    return {k.decode(): int(float(v)) for k, v in zip(it, it)}


def identity_metrics(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r'^mailtrail_identity_events_total\{identity="((?:[^"\\]|\\.)*)",'
                     r'type="([A-Za-z]+)"\} (\d+)$', line)
        if m:
            out[(m.group(1), m.group(2))] = int(m.group(3))
    return out


def metric(text, name):
    m = re.search(r"^" + name + r" (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


class Environment(harness.Environment):
    def __init__(self):
        super().__init__("mailtrail-stats-")
        self.pattern = r"^127\.0\.0\.1:%d$" % self.sns.port


def setUpModule():
    global ENV
    if BINARY is None:
        raise HarnessError("usage: test_stats.py <mailtrail-binary> <tests/data>")
    ENV = Environment()
    StatsCase.env = ENV
    StatsCase.binary = BINARY


def tearDownModule():
    if ENV is not None:
        cluster = getattr(ENV, "cluster", None)
        if cluster is not None:
            cluster.stop()
        ENV.close()
    harness.kill_all_children()


class StatsCase(harness.MailtrailTestCase):
    log_tail = 30

    def start(self, *extra, redis_args=None, env=None):
        args = ["--listen", "127.0.0.1:0",
                "--ca-file", ENV.pki.ca_cert, "--cert-host-pattern", ENV.pattern,
                "--log-format", "json"]
        args += redis_args or ["--redis", ENV.redis_url]
        return self.launch(args + list(extra), env=env)

    def post(self, m, text, expect="stored", msg=None):
        msg = msg or ENV.signer.notification(text)
        r = m.post_sns(msg)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json().get("status"), expect, r)
        return msg

    def deliver_fixture(self, m):
        sent = []
        for serial, (name, rcpts, ms, edit) in enumerate(FIXTURE, 1):
            sent.append(self.post(m, ses_event(name, rcpts, ms, serial, edit)))
        # A redelivery (SNS sends a message again): counts nothing.
        self.post(m, None, expect="duplicate", msg=sent[2])
        self.post(m, None, expect="duplicate", msg=sent[0])

    def metrics_text(self, m):
        r = m.request("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        return r.body.decode()

    def check_fixture(self, client_of):
        """client_of(key) -> the Redis client that holds key."""
        day = day_of(DAY0)
        for code, (want, want_names) in expected().items():
            key = stats_key(code, day)
            got = as_counts(client_of(key)("HGETALL", key))
            self.assertEqual(got, want, f"{key}")
            names = as_counts(client_of(key)("ZRANGE", key + ":names", 0, -1, "WITHSCORES"))
            # :names lists the names (score 0), nothing more.
            self.assertEqual(names, {n: 0 for n in want_names}, f"{key}:names")


class StatsTest(StatsCase):

    def test_fixture_counts(self):
        """The hand-computed counts of every dimension; redeliveries count
        nothing; the keys' expiry; the Prometheus counters."""
        m = self.start()
        self.deliver_fixture(m)
        self.check_fixture(lambda key: ENV.redis)
        # Exactly the six keys of the day, no other stats key.
        day = day_of(DAY0)
        keys = sorted(k.decode() for k in ENV.redis("KEYS", PREFIX + "stats:*"))
        self.assertEqual(keys, sorted(stats_key(c, day) + s for c in "icd"
                                      for s in ("", ":names")))
        # Expiry: end of the day + 90 days (the default retention) + 1 day.
        want = DAY0 + DAY_MS + 91 * DAY_MS
        for k in keys:
            self.assertEqual(ENV.redis("PEXPIRETIME", k), want, k)
        self.assertEqual(identity_metrics(self.metrics_text(m)), EXPECTED_METRICS)

    def test_retention(self):
        """An event whose day ended more than --retention-days ago is
        stored but not counted; a younger one is, with keys that expire at
        the end of its day + retention + 1 day."""
        m = self.start("--retention-days", "2")
        old = today_start() - 4 * DAY_MS + 5 * HOUR_MS   # its day ended 3 days ago
        young = today_start() - 2 * DAY_MS + 5 * HOUR_MS  # ended 1 day ago
        self.post(m, ses_event(BOUNCE, ["a@one.example"], old, 1))
        self.post(m, ses_event(BOUNCE, ["b@one.example"], young, 2))
        self.assertEqual(ENV.redis("KEYS", stats_key("*", day_of(old)) + "*"), [])
        key = stats_key("d", day_of(young))
        self.assertEqual(as_counts(ENV.redis("HGETALL", key)),
                         {"one.example|05|Bounce/Permanent": 1,
                          "one.example|*|Bounce/Permanent": 1})
        want = today_start() - DAY_MS + 3 * DAY_MS
        for code in "icd":
            for k in (stats_key(code, day_of(young)), stats_key(code, day_of(young)) + ":names"):
                self.assertEqual(ENV.redis("PEXPIRETIME", k), want, k)

    def test_cap(self):
        """Past the cap (3 here) a new name counts as (other), a listed
        one under its own name."""
        m = self.start(env={"MAILTRAIL_TEST_STATS_NAMES_MAX": "3"})
        rcpts = [f"r@d{n}.example" for n in range(1, 6)]
        self.post(m, ses_event(SEND, rcpts, H03, 1))
        self.post(m, ses_event(DELIVERY, ["r@d1.example", "r@d5.example"], H03, 2))
        key = stats_key("d", day_of(H03))
        names = as_counts(ENV.redis("ZRANGE", key + ":names", 0, -1, "WITHSCORES"))
        self.assertEqual(names, {"d1.example": 0, "d2.example": 0, "d3.example": 0,
                                 "(other)": 0})
        got = as_counts(ENV.redis("HGETALL", key))
        self.assertEqual(got["(other)|03|Send"], 2)
        self.assertEqual(got["(other)|*|Delivery"], 1)
        self.assertEqual(got["d1.example|*|Delivery"], 1)
        self.assertNotIn("d5.example|*|Delivery", got)
        # A name past the cap leaves no field of its own.
        self.assertFalse([f for f in got if f.startswith(("d4.", "d5."))], got)
        # One identity and one configuration set: under the cap.
        self.assertEqual(as_counts(ENV.redis("ZRANGE", stats_key("i", day_of(H03)) + ":names",
                                             0, -1, "WITHSCORES")),
                         {"sender@example.com": 0})


    def test_write_failure(self):
        """A counter write that fails (a string where the domain hash
        should be) fails no delivery: the events are stored, the other
        dimensions counted, the failure counted and logged."""
        m = self.start()
        key = stats_key("d", day_of(H03))
        ENV.redis("SET", key, "not a hash")
        self.post(m, ses_event(SEND, ["a@one.example", "b@two.example"], H03, 1))
        self.assertEqual(ENV.redis("ZCARD", PREFIX + "rcpt:{a@one.example}"), 1)
        ikey = stats_key("i", day_of(H03))
        self.assertEqual(as_counts(ENV.redis("HGETALL", ikey)),
                         {"sender@example.com|03|Send": 2, "sender@example.com|*|Send": 2})
        text = self.metrics_text(m)
        self.assertEqual(metric(text, "mailtrail_stats_write_failures_total"), 2)
        deadline = time.monotonic() + 5 * harness.TIME_FACTOR
        while not any("not counted" in line for line in m.out_lines + m.err_lines):
            self.assertLess(time.monotonic(), deadline, "no log line for the failure")
            time.sleep(0.05)


class ClusterStatsTest(StatsCase):
    """The same counts in a Redis Cluster, written in a second round trip."""

    @classmethod
    def setUpClass(cls):
        import test_cluster
        cls.tc = test_cluster
        if getattr(ENV, "cluster", None) is None:
            ENV.cluster = test_cluster.Cluster(os.path.join(ENV.tmp, "cluster"))

    def setUp(self):
        self.procs = []
        for h in self.env.hosts:
            h.clear()
        for p in ENV.cluster.masters():
            ENV.cluster.c(p)("FLUSHALL")

    def client_of(self, key):
        tag = key[key.index("{") + 1:key.index("}")]
        return ENV.cluster.c(ENV.cluster.owner(self.tc.crc16(tag.encode()) % 16384))

    def start_cluster(self):
        url = f"redis://:{self.tc.PASSWORD}@127.0.0.1:{ENV.cluster.ports[0]}"
        return self.start(redis_args=["--redis", url, "--redis-cluster"])

    def test_cluster_counts(self):
        m = self.start_cluster()
        self.deliver_fixture(m)
        self.check_fixture(self.client_of)
        key = stats_key("i", day_of(DAY0))
        self.assertEqual(self.client_of(key)("PEXPIRETIME", key), DAY0 + 92 * DAY_MS)
        text = self.metrics_text(m)
        self.assertEqual(identity_metrics(text), EXPECTED_METRICS)
        self.assertEqual(metric(text, "mailtrail_stats_write_failures_total"), 0)

    def test_cluster_write_failure(self):
        """A counter write that fails (a string where the domain hash
        should be) fails no delivery; it is counted and logged."""
        m = self.start_cluster()
        key = stats_key("d", day_of(H03))
        self.client_of(key)("SET", key, "not a hash")
        self.post(m, ses_event(SEND, ["a@one.example", "b@two.example"], H03, 1))
        text = self.metrics_text(m)
        self.assertEqual(metric(text, "mailtrail_stats_write_failures_total"), 2)
        # The other dimensions are counted.
        ikey = stats_key("i", day_of(H03))
        self.assertEqual(as_counts(self.client_of(ikey)("HGETALL", ikey)),
                         {"sender@example.com|03|Send": 2, "sender@example.com|*|Send": 2})
        deadline = time.monotonic() + 5 * harness.TIME_FACTOR
        while not any("not counted" in line for line in m.out_lines + m.err_lines):
            self.assertLess(time.monotonic(), deadline, "no log line for the failure")
            time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(harness.suite_main(sys.modules[__name__], sys.argv))
