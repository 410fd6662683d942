#!/usr/bin/env python3
"""Integration tests of the operator status view, GET /v1/status (issue 15).

    python3 tests/integration/test_status.py <mailtrail-binary> <tests/data>

The real binary runs against a real redis-server on a free loopback port and
a local HTTPS "SNS" host (its own test CA).  Every wiring fault is driven for
real, as SNS (or whoever posts) would cause it, and must show up in
GET /v1/status with its plain-language hint: a raw delivery (the
x-amz-sns-rawdelivery header, and a bare SES JSON body), an unconfirmed
subscription (--auto-confirm no), a confirmation that cannot be completed,
a refused subscription and a notification of a topic not in --topic, a
certificate host that refuses connections; accepted deliveries and
confirmed subscriptions are shown as such; two mailtrail processes on one
Redis show the same picture; the bounds (topics capped, ARNs checked, keys
bounded); the "no delivery for 24 h" hint; the API token.

MAILTRAIL_TEST_WRAPPER is put in front of every mailtrail command.  Nothing
is ever skipped: a missing tool or binary is a failure.
"""

import json
import os
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import TIME_FACTOR, HarnessError, Mailtrail  # noqa: E402

BINARY = None
DATA = None
ENV = None

TOKEN = "mt-status-token-5e2a9c1d7b3f4a60"
OURS = "arn:aws:sns:eu-west-1:123456789012:ses-events"
THEIRS = "arn:aws:sns:eu-west-1:999999999999:someone-else"
PREFIX = "mailtrail:"


class Environment(harness.Environment):
    def __init__(self):
        super().__init__("mailtrail-status-")
        # A port that refuses connections: bound, never listening.
        self.closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.closed.bind(("127.0.0.1", 0))
        self.closed_port = self.closed.getsockname()[1]
        self.pattern = r"^127\.0\.0\.1:(%d|%d)$" % (self.sns.port, self.closed_port)

    def close(self):
        self.closed.close()
        super().close()


def setUpModule():
    global ENV
    if BINARY is None:
        raise HarnessError("usage: test_status.py <mailtrail-binary> <tests/data>")
    if not os.access(BINARY, os.X_OK):
        raise HarnessError(f"mailtrail binary not found or not executable: {BINARY}")
    ENV = Environment()
    StatusCase.env = ENV
    StatusCase.binary = BINARY


def tearDownModule():
    if ENV is not None:
        ENV.close()
    harness.kill_all_children()


def ses(name="awsdoc-identity-bounce-permanent-general-with-dsn.json"):
    with open(os.path.join(DATA, "ses", name), "rb") as f:
        return json.dumps(json.loads(f.read()), separators=(",", ":"))


class StatusCase(harness.MailtrailTestCase):
    log_tail = 40

    def start(self, *extra, topic=OURS, token=TOKEN, name=None):
        args = ["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                "--redis", ENV.redis_url, "--ca-file", ENV.pki.ca_cert,
                "--cert-host-pattern", ENV.pattern, "--log-format", "json"]
        if token:
            args += ["--api-token", token]
        args += list(extra)
        m = Mailtrail(self.binary, args,
                      env=ENV.child_env({"MAILTRAIL_TOPIC": topic}),
                      name=name or f"mailtrail#{len(self.procs) + 1}")
        self.procs.append(m)
        try:
            m.start()
            m.api_port = m.wait_listen_port("api listening")
        except Exception:
            m.kill()
            raise
        self.addCleanup(self.stop, m)
        return m

    def status(self, m, token=TOKEN):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = harness.http_request(m.api_port, "GET", "/v1/status", headers=headers)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("content-type"), "application/json")
        return r.json()

    @staticmethod
    def topic(st, name):
        for t in st["topics"]:
            if t["topic"] == name:
                return t
        return None

    def wait_topic(self, m, name, pred, timeout=8.0):
        """The status of topic name once pred(topic) holds (the other
        copies flush every 2 s)."""
        deadline = time.monotonic() + timeout * TIME_FACTOR
        while True:
            st = self.status(m)
            t = self.topic(st, name)
            if t is not None and pred(t):
                return st, t
            if time.monotonic() > deadline:
                self.fail(f"topic {name} never matched: {json.dumps(st, indent=1)}")
            time.sleep(0.2)

    def assert_hint(self, t, *words):
        for h in t["hints"]:
            if all(w in h for w in words):
                return h
        self.fail(f"no hint with {words} in {t['hints']}")

    # --- the wiring faults --------------------------------------------------------------

    def test_raw_delivery_with_header_is_recognised_and_explained(self):
        m = self.start()
        # What SNS posts with RawMessageDelivery on: the bare SES JSON, the
        # topic only in a header.
        r = m.post_sns(ses(), extra_headers={"x-amz-sns-rawdelivery": "true",
                                             "x-amz-sns-topic-arn": OURS})
        self.assertEqual(r.status, 403, r)
        st = self.status(m)
        t = self.topic(st, OURS)
        self.assertIsNotNone(t, st)
        self.assertEqual(t["refused"]["hour"], {"raw_delivery": 1})
        self.assertEqual(t["refused"]["day"], {"raw_delivery": 1})
        self.assertIs(t["accepted"], True)
        self.assertIs(t["verified"], False)
        self.assertIsNone(t["last_accepted"])
        self.assertEqual(t["last_refused"]["reason"], "raw_delivery")
        self.assert_hint(t, "raw (unsigned)", "turn off RawMessageDelivery")
        self.assertIn({"topic": OURS, "hint": t["hints"][0]}, st["hints"])

    def test_bare_ses_body_is_raw_and_a_forged_signature_is_not(self):
        m = self.start()
        # No header at all: the body alone says it is not an SNS envelope.
        self.assertEqual(m.post_sns(ses(), msg_type=None).status, 403)
        # A real envelope with a signature that does not verify.
        msg = ENV.signer.notification(ses(), topic=OURS)
        msg["Message"] = msg["Message"].replace("Permanent", "Transient")
        self.assertEqual(m.post_sns(msg).status, 403)
        # An envelope without any signature.
        msg = ENV.signer.notification(ses(), topic=OURS, sign=False)
        del msg["Signature"]
        self.assertEqual(m.post_sns(msg).status, 403)
        st = self.status(m)
        none = self.topic(st, "(none)")
        self.assertEqual(none["refused"]["hour"], {"raw_delivery": 1}, st)
        self.assertIsNone(none["accepted"])
        self.assert_hint(none, "turn off RawMessageDelivery")
        ours = self.topic(st, OURS)
        self.assertEqual(ours["refused"]["hour"], {"bad_signature": 2}, st)
        self.assert_hint(ours, "could not be proven to come from SNS")
        self.assertFalse(any("RawMessageDelivery" in h for h in ours["hints"]), ours)

    def test_unconfirmed_subscription_is_pending_with_its_url(self):
        m = self.start("--auto-confirm", "no")
        # A token as long as SNS's (256 hex digits): the URL is kept whole.
        conf = ENV.signer.confirmation(topic=OURS, token=os.urandom(128).hex())
        self.assertGreater(len(conf["SubscribeURL"]), 350)
        r = m.post_sns(conf, msg_type="SubscriptionConfirmation")
        self.assertEqual(r.status, 200, r)
        t = self.topic(self.status(m), OURS)
        self.assertEqual(t["subscription"]["state"], "pending", t)
        self.assertEqual(t["subscription"]["detail"], conf["SubscribeURL"])
        self.assertIs(t["verified"], True)
        self.assertEqual(t["refused"]["day"], {})
        self.assert_hint(t, "is not confirmed (--auto-confirm no)", conf["SubscribeURL"])
        self.assertEqual(ENV.sns.gets_of("/"), [])  # never visited

    def test_confirmed_subscription_and_accepted_delivery(self):
        m = self.start()
        r = m.post_sns(ENV.signer.confirmation(topic=OURS), msg_type="SubscriptionConfirmation")
        self.assertEqual(r.status, 200, r)
        before = int(time.time() * 1000)
        r = m.post_sns(ENV.signer.notification(ses(), topic=OURS))
        self.assertEqual(r.status, 200, r)
        t = self.topic(self.status(m), OURS)
        self.assertEqual(t["subscription"]["state"], "confirmed", t)
        self.assertEqual(t["deliveries"], {"hour": 1, "day": 1})
        self.assertGreaterEqual(harness.iso_to_ms(t["last_accepted"]), before - 1000)
        self.assertEqual(t["refused"], {"hour": {}, "day": {}})
        self.assertEqual(t["hints"], [])

    def test_confirmation_that_fails_to_complete(self):
        m = self.start()
        conf = ENV.signer.confirmation(topic=OURS)
        ENV.sns.fail_tokens.add(conf["Token"])
        self.addCleanup(ENV.sns.fail_tokens.clear)
        r = m.post_sns(conf, msg_type="SubscriptionConfirmation")
        self.assertEqual(r.status, 503, r)
        t = self.topic(self.status(m), OURS)
        self.assertEqual(t["subscription"]["state"], "failed", t)
        self.assertIn("HTTP status 500", t["subscription"]["detail"])
        self.assertEqual(t["refused"]["hour"], {"confirm_failed": 1})
        self.assert_hint(t, "could not be confirmed", "allow outbound HTTPS")

    def test_refused_subscription_of_a_topic_not_accepted(self):
        m = self.start()
        conf = ENV.signer.confirmation(topic=THEIRS)
        r = m.post_sns(conf, msg_type="SubscriptionConfirmation")
        self.assertEqual(r.status, 403, r)
        t = self.topic(self.status(m), THEIRS)
        self.assertIs(t["accepted"], False, t)
        self.assertIs(t["verified"], False)
        self.assertEqual(t["subscription"]["state"], "refused")
        self.assertEqual(t["subscription"]["detail"], "topic not allowed")
        self.assertEqual(t["refused"]["hour"], {"topic_not_accepted": 1})
        self.assert_hint(t, f"topic {THEIRS} is not in --topic: add it if it is yours")
        self.assert_hint(t, "confirmation of", "was refused")
        self.assertEqual(ENV.sns.requests(), [])  # nothing fetched for it

    def test_notification_of_a_topic_not_accepted(self):
        m = self.start()
        for _ in range(3):
            r = m.post_sns(ENV.signer.notification(ses(), topic=THEIRS))
            self.assertEqual(r.status, 403, r)
        t = self.topic(self.status(m), THEIRS)
        self.assertIs(t["accepted"], False, t)
        self.assertEqual(t["refused"]["hour"], {"topic_not_accepted": 3})
        self.assertIsNone(t["subscription"])
        self.assert_hint(t, f"topic {THEIRS} is not in --topic: add it if it is yours")

    def test_unreachable_certificate_host(self):
        m = self.start()
        url = f"https://127.0.0.1:{ENV.closed_port}/SimpleNotificationService-x.pem"
        r = m.post_sns(ENV.signer.notification(ses(), topic=OURS, cert_url=url))
        self.assertEqual(r.status, 503, r)
        t = self.topic(self.status(m), OURS)
        self.assertEqual(t["refused"]["hour"], {"cert_fetch_failed": 1}, t)
        self.assertEqual(t["cert_host"], f"127.0.0.1:{ENV.closed_port}")
        self.assert_hint(t, "the signing certificate could not be fetched from "
                            f"127.0.0.1:{ENV.closed_port}: allow outbound HTTPS to it")

    # --- shared, bounded, guarded ------------------------------------------------------

    def test_two_processes_show_the_same_status(self):
        a = self.start(name="a")
        b = self.start(name="b")
        self.assertEqual(a.post_sns(ENV.signer.notification(ses(), topic=OURS)).status, 200)
        self.assertEqual(b.post_sns(ses(), extra_headers={
            "x-amz-sns-rawdelivery": "true", "x-amz-sns-topic-arn": OURS}).status, 403)
        self.assertEqual(b.post_sns(ENV.signer.notification(ses(), topic=THEIRS)).status, 403)

        def complete(t):
            return t["deliveries"]["hour"] == 1 and t["refused"]["hour"] == {"raw_delivery": 1}
        sa, _ = self.wait_topic(a, OURS, complete)
        sb, _ = self.wait_topic(b, OURS, complete)
        self.wait_topic(a, THEIRS, lambda t: t["refused"]["hour"] == {"topic_not_accepted": 1})

        def strip(st):
            st = json.loads(json.dumps(st))
            st.pop("time")
            return st
        sa, sb = self.status(a), self.status(b)
        self.assertEqual(strip(sa), strip(sb))

    def test_topics_are_capped_and_checked(self):
        m = self.start()
        # 60 made-up topics, not accepted, each claimed once (the cap for
        # topics only seen unverified is 50), and ARNs that are not ARNs.
        for i in range(60):
            r = m.post_sns(ENV.signer.notification(
                ses(), topic=f"arn:aws:sns:eu-west-1:999999999999:t{i}"))
            self.assertEqual(r.status, 403)
        for bad in ("arn:aws:sns:eu-west-1:1:a b", "x" * 20, "arn:" + "a" * 300,
                    "arn:aws:sns:eu-west-1:1:<script>"):
            msg = ENV.signer.notification(ses(), topic=bad)
            self.assertIn(m.post_sns(msg).status, (400, 403))
        st = self.status(m)
        names = [t["topic"] for t in st["topics"]]
        made_up = [n for n in names if n.startswith("arn:aws:sns:eu-west-1:999999999999:t")]
        self.assertEqual(len(made_up), 50, names)
        other = self.topic(st, "(other)")
        self.assertEqual(other["refused"]["hour"], {"topic_not_accepted": 10}, other)
        none = self.topic(st, "(none)")
        self.assertEqual(sum(none["refused"]["hour"].values()), 4, none)
        self.assertFalse(any("<" in n or " " in n for n in names), names)
        # A verified topic still gets its place.
        self.assertEqual(m.post_sns(ENV.signer.notification(ses(), topic=OURS)).status, 200)
        st = self.status(m)
        self.assertIsNotNone(self.topic(st, OURS))
        # Keys: the topics, unverified, one per topic kept and the hour.
        keys = [k.decode() if isinstance(k, bytes) else k
                for k in ENV.redis("KEYS", PREFIX + "{status}:*")]
        self.assertLessEqual(len(keys), 2 + 100 + 2 + 1, keys)
        self.assertLessEqual(int(ENV.redis("ZCARD", PREFIX + "{status}:unverified")), 50)
        hour_keys = [k for k in keys if ":h:" in k]
        self.assertEqual(len(hour_keys), 1, keys)
        ttl = int(ENV.redis("TTL", hour_keys[0]))
        self.assertTrue(2 * 86400 - 60 <= ttl <= 2 * 86400, ttl)

    def test_a_flood_of_made_up_topics_does_not_hide_a_verified_one(self):
        """Security review: anyone can send deliveries naming made-up
        topics (no signature needed: they are refused, and recorded).
        Between two flushes (2 s) the notes wait in a table of 100 topics;
        100 made-up ones sent just before a genuine delivery used to take
        every place, and the verified topic's delivery was recorded under
        "(other)", so /v1/status never showed it."""
        m = self.start()
        for round_ in range(3):
            for i in range(120):
                r = m.post_sns(ENV.signer.notification(
                    ses(), topic=f"arn:aws:sns:eu-west-1:999999999999:r{round_}x{i}"))
                self.assertEqual(r.status, 403)
            self.assertEqual(m.post_sns(ENV.signer.notification(ses(), topic=OURS)).status, 200)
        t = self.topic(self.status(m), OURS)
        self.assertIsNotNone(t, "the verified topic is missing")
        self.assertEqual(t["deliveries"]["hour"], 3, t)

    def test_silence_after_traffic_gets_a_hint(self):
        m = self.start()
        self.assertEqual(m.post_sns(ENV.signer.notification(ses(), topic=OURS)).status, 200)
        self.wait_topic(m, OURS, lambda t: t["last_accepted"] is not None)
        t = self.topic(self.status(m), OURS)
        self.assertFalse(any("no delivery for 24 h" in h for h in t["hints"]), t)
        # As it would read a day later.
        old = int(time.time() * 1000) - 25 * 3600 * 1000
        ENV.redis("HSET", f"{PREFIX}{{status}}:t:{OURS}", "last_accepted", str(old))
        t = self.topic(self.status(m), OURS)
        self.assert_hint(t, "no delivery for 24 h from a topic that had traffic", OURS)

    def test_recording_costs_no_redis_round_trip_per_delivery(self):
        m = self.start()
        # Every command clients send, as Redis sees it (a script's own
        # commands are marked "lua").
        mon = subprocess.Popen(["redis-cli", "-p", str(ENV.redis_server.port), "monitor"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        harness.track_child(mon)
        self.assertEqual(mon.stdout.readline().strip(), "OK")
        start = time.monotonic()
        for _ in range(60):
            self.assertEqual(m.post_sns(ENV.signer.notification(ses(), topic=OURS)).status, 200)
            self.assertEqual(m.post_sns(ses(), extra_headers={
                "x-amz-sns-rawdelivery": "true", "x-amz-sns-topic-arn": OURS}).status, 403)
        elapsed = time.monotonic() - start
        t = self.topic(self.status(m), OURS)
        self.assertEqual(t["deliveries"]["hour"], 60)
        self.assertEqual(t["refused"]["hour"], {"raw_delivery": 60})
        ENV.redis("ECHO", "end-of-test")
        commands = []  # the status's own: those naming a {status} key
        for line in mon.stdout:
            if "end-of-test" in line:
                break
            if " lua] " not in line and "{status}" in line:
                commands.append(line.split("] ", 1)[1].split(" ", 1)[0].strip('"').upper())
        mon.kill()
        mon.wait()
        harness._unregister(mon)
        # The flushes (one every 2 s, one more for the GET) and the GET's
        # reads (topics, 25 hours, one topic): no command per delivery,
        # accepted or refused (there were 120).
        flushes = commands.count("EVAL")
        self.assertGreaterEqual(flushes, 1, commands)
        self.assertLessEqual(flushes, int(elapsed / 2) + 2, (commands, elapsed))
        self.assertEqual(sorted(c for c in commands if c != "EVAL"),
                         ["HGETALL"] * 26 + ["ZREVRANGE"], commands)

    def test_notes_wait_for_redis_and_go_out_when_it_is_back(self):
        server = harness.RedisServer(os.path.join(ENV.tmp, "redis-outage")).start()
        self.addCleanup(server.stop)
        m = Mailtrail(self.binary, [
            "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
            "--redis", f"redis://127.0.0.1:{server.port}/0", "--api-token", TOKEN,
            "--ca-file", ENV.pki.ca_cert, "--cert-host-pattern", ENV.pattern],
            env=ENV.child_env({"MAILTRAIL_TOPIC": OURS}), name="outage")
        self.procs.append(m)
        m.start()
        m.api_port = m.wait_listen_port("api listening")
        self.addCleanup(self.stop, m)
        server.stop()
        for _ in range(3):
            self.assertEqual(m.post_sns(ses(), extra_headers={
                "x-amz-sns-rawdelivery": "true", "x-amz-sns-topic-arn": OURS}).status, 403)
        r = harness.http_request(m.api_port, "GET", "/v1/status",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(r.status, 503, r)
        time.sleep(2.5 * TIME_FACTOR)  # a flush or two fail meanwhile
        server.start()
        t = self.topic(self.status(m), OURS)
        self.assertEqual(t["refused"]["hour"], {"raw_delivery": 3}, t)

    def test_status_needs_the_token(self):
        m = self.start()
        r = harness.http_request(m.api_port, "GET", "/v1/status")
        self.assertEqual(r.status, 401, r)
        r = harness.http_request(m.api_port, "GET", "/v1/status",
                                 headers={"Authorization": "Bearer wrong-token-000000000"})
        self.assertEqual(r.status, 401, r)
        r = harness.http_request(m.api_port, "POST", "/v1/status",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        self.assertEqual(r.status, 405, r)
        self.assertEqual(self.status(m)["topics"], [])


if __name__ == "__main__":
    sys.exit(harness.suite_main(sys.modules[__name__], sys.argv))
