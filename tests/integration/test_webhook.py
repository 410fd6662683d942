#!/usr/bin/env python3
"""Integration tests of the mailtrail SNS webhook (SPEC.md, "Webhook listener").

    python3 tests/integration/test_webhook.py <mailtrail-binary> <tests/data>

The real binary runs against a real redis-server on a free loopback port and a
local HTTPS "SNS" host with its own test CA, started here.  Every outbound
request mailtrail makes is recorded, so the tests assert what was and what was
NOT fetched.  Each mailtrail is started with proxy variables pointing at an
"egress guard" recorder (loopback excepted), so an attempt to reach anything
outside 127.0.0.1 is seen (if the program's HTTP client honours the usual
proxy variables, as libcurl does by default) and fails the test.

MAILTRAIL_TEST_WRAPPER (e.g. "valgrind --error-exitcode=99 -q") is put in
front of every mailtrail command.  Nothing is ever skipped: a missing tool or
binary is a failure.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (TIME_FACTOR, HarnessError,  # noqa: E402
                     RedisServer, SnsSigner, WebHost, event_from_member, iso_to_ms, now_iso,
                     pem_body, string_to_sign)

BINARY = None
DATA = None
ENV = None

MISSING_PEM = "/SimpleNotificationService-missing.pem"
OLD_PEM = "/SimpleNotificationService-old.pem"
ALLOWED_TOPIC = "arn:aws:sns:us-east-1:123456789012:allowed"
# The options of SPEC.md (all of them, in this build).
SPEC_OPTIONS = ("--listen", "--tls-cert", "--tls-key", "--api-listen", "--api-token",
                "--redis", "--redis-prefix", "--redis-cluster", "--cert-host-pattern", "--ca-file",
                "--cert-cache-dir", "--spool-dir", "--spool-max-bytes", "--topic", "--max-age",
                "--auto-confirm",
                "--retention-days", "--keep-headers", "--max-body", "--log-format",
                "--log-level", "--version", "--help")


class Environment(harness.Environment):
    """The shared fixtures, plus two more recording hosts."""

    def __init__(self):
        super().__init__("mailtrail-it-")
        tls = self.pki.server_context()
        pem = self.pki.read(self.pki.signing_cert)
        # Plain HTTP on a port the host pattern ALSO allows: only the scheme
        # check stands between mailtrail and this recorder.
        self.plain = WebHost("plain-http")
        # Same CA, same files, but a port the host pattern does not allow: a
        # check that ignores the port would fetch from here.
        self.decoy = WebHost("decoy", tls)
        for h in (self.sns, self.plain, self.decoy):
            for path in (SnsSigner.CERT_PATH, "/cert", "/SimpleNotificationService-test.txt"):
                h.set_file(path, pem)
            h.set_file(OLD_PEM, self.pki.read(self.pki.old_cert))
        self.hosts += [self.plain, self.decoy]
        self.pattern = (r"^(127\.0\.0\.1:(%d|%d)|sns\.[a-z0-9-]+\.amazonaws\.com)$"
                        % (self.sns.port, self.plain.port))
        # The query API listener defaults to a fixed port (127.0.0.1:8081),
        # which concurrent copies would fight over; these tests do not use
        # it (test_api.py does), so it is turned off.
        self.api_off = ["--api-listen", "off"]


def setUpModule():
    global ENV
    if BINARY is None:
        raise HarnessError("usage: test_webhook.py <mailtrail-binary> <tests/data>")
    if not os.access(BINARY, os.X_OK):
        raise HarnessError(f"mailtrail binary not found or not executable: {BINARY}")
    if not os.path.isfile(os.path.join(DATA, "real-sns", "EXPECTED")):
        raise HarnessError(f"not the tests/data directory: {DATA}")
    ENV = Environment()
    MailtrailCase.env = ENV
    MailtrailCase.binary = BINARY


def tearDownModule():
    if ENV is not None:
        ENV.close()
    harness.kill_all_children()


def ses(name):
    """A bare SES JSON file as SES would put it in Message (compact)."""
    with open(os.path.join(DATA, "ses", name), "rb") as f:
        return json.dumps(json.loads(f.read()), separators=(",", ":"))


def body_of(msg):
    return json.dumps(msg).encode()


class MailtrailCase(harness.MailtrailTestCase):
    """Starts mailtrail processes for one test (see MailtrailTestCase), and
    resets what the fake SNS host serves."""

    def setUp(self):
        super().setUp()
        self.redis = ENV.redis
        ENV.sns.set_file(MISSING_PEM, None)
        ENV.sns.fail_tokens.clear()
        ENV.sns.redirects.clear()
        self.signer = ENV.signer

    # --- mailtrail -------------------------------------------------------------------

    def start(self, *extra, pattern="test", redis_url=None, env=None, name=None):
        args = ["--listen", "127.0.0.1:0"] + ENV.api_off + [
                "--redis", redis_url or ENV.redis_url,
                "--ca-file", ENV.pki.ca_cert, "--log-format", "json"]
        if pattern == "test":
            pattern = ENV.pattern
        if pattern is not None:
            args += ["--cert-host-pattern", pattern]
        args += list(extra)
        return self.launch(args, env=env, name=name)

    # --- assertions --------------------------------------------------------------------

    def assertAnswer(self, resp, status, st=None):  # noqa: N802
        self.assertEqual(resp.status, status, f"unexpected answer {resp!r}")
        try:
            body = resp.json()
        except ValueError:
            self.fail(f"answer body is not JSON: {resp.body!r}")
        self.assertIsInstance(body, dict, f"answer body is not a JSON object: {resp.body!r}")
        if st is not None:
            self.assertEqual(body.get("status"), st, f"answer body {resp.body!r}")
        if status >= 400:
            self.assertEqual(body.get("status"), "error", f"answer body {resp.body!r}")
            self.assertIsInstance(body.get("error"), str, f"answer body {resp.body!r}")
        return body

    def assertNothingStored(self):  # noqa: N802
        self.assertEqual(self.redis.keys("mailtrail:*"), [], "expected nothing stored")

    def assertNoRequests(self, *hosts):  # noqa: N802
        for h in hosts:
            self.assertEqual(h.requests(), [], f"{h.name} must not have been contacted")

    def confirm_gets(self, host=None):
        return [r for r in (host or ENV.sns).requests()
                if "Action=ConfirmSubscription" in r.path]

    def cert_gets(self, path=SnsSigner.CERT_PATH):
        return ENV.sns.gets_of(path)

    def events(self, address):
        """[(EVENT dict, score)] of one recipient, oldest first."""
        out, topics = [], self.redis.topics()
        for member, score in self.redis.zrange_withscores(f"mailtrail:rcpt:{{{address}}}"):
            try:
                out.append((event_from_member(member, address, score, topics), score))
            except ValueError:
                self.fail(f"member of rcpt:{{{address}}} is not JSON: {member!r}")
        return out

    def one_event(self, address):
        evs = self.events(address)
        self.assertEqual(len(evs), 1, f"expected exactly one event for {address}: {evs}")
        return evs[0]

    def check_event(self, ev, score, msg, etype, recipient, time_iso, ses_obj):
        self.assertEqual(ev.get("id"), msg["MessageId"], ev)
        self.assertEqual(ev.get("type"), etype, ev)
        self.assertEqual(ev.get("time"), time_iso, ev)
        self.assertEqual(score, iso_to_ms(time_iso), "score must be the event time in ms")
        self.assertEqual(ev.get("recipient"), recipient, ev)
        self.assertEqual(ev.get("topicArn"), msg["TopicArn"], ev)
        mail = ev.get("mail")
        self.assertIsInstance(mail, dict, ev)
        self.assertEqual(mail.get("messageId"), ses_obj["mail"]["messageId"], ev)
        self.assertEqual(mail.get("timestamp"), ses_obj["mail"]["timestamp"], ev)
        self.assertEqual(mail.get("destination"), ses_obj["mail"]["destination"], ev)
        self.assertNotIn("commonHeaders", mail, "headers are stored only with --keep-headers")
        self.assertNotIn("headers", mail, "raw headers must not be stored")
        detail = ev.get("detail")
        self.assertIsInstance(detail, dict, ev)
        return detail

    def topic_items(self, topic):
        out = []
        for member, score in self.redis.zrange_withscores(f"mailtrail:topic:{{{topic}}}"):
            out.append((json.loads(member), score))
        return out


# ===================================================================================
class TestHarness(MailtrailCase):
    """The fixtures themselves, so a failure elsewhere is the program's."""

    def test_signature_verifies_with_openssl(self):
        for version in ("1", "2"):
            msg = self.signer.notification("hello \U0001F600", subject="Grüße",
                                           version=version)
            d = tempfile.mkdtemp(dir=ENV.tmp)
            with open(os.path.join(d, "data"), "wb") as f:
                f.write(string_to_sign(msg))
            with open(os.path.join(d, "sig"), "wb") as f:
                f.write(__import__("base64").b64decode(msg["Signature"]))
            pub = harness.run(["openssl", "x509", "-in", ENV.pki.signing_cert,
                               "-pubkey", "-noout"]).stdout
            with open(os.path.join(d, "pub"), "wb") as f:
                f.write(pub)
            r = harness.run(["openssl", "dgst", "-sha1" if version == "1" else "-sha256",
                             "-verify", os.path.join(d, "pub"), "-signature",
                             os.path.join(d, "sig"), os.path.join(d, "data")], check=False)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_redis_cli_and_hosts(self):
        self.assertEqual(ENV.redis_server.cli("PING").stdout.strip(), b"PONG")
        r = harness.http_request(ENV.sns.port, "GET", SnsSigner.CERT_PATH,
                                 tls_context=ENV.pki.client_context())
        self.assertEqual(r.status, 200)
        self.assertEqual(len(self.cert_gets()), 1)


# ===================================================================================
class TestNotifications(MailtrailCase):

    def test_bounce_v1_two_of_three_recipients(self):
        m = self.start()
        text = ses("awsdoc-identity-bounce-permanent-general-no-dsn-two-recipients.json")
        sobj = json.loads(text)
        msg = self.signer.notification(text, version="1")
        self.assertAnswer(m.post_sns(msg), 200, "stored")
        for rcpt in ("jane@example.com", "richard@example.com"):
            ev, score = self.one_event(rcpt)
            detail = self.check_event(ev, score, msg, "Bounce", rcpt,
                                      "2016-01-27T14:59:38.237Z", sobj)
            self.assertEqual(ev["mail"].get("source"), "john@example.com")
            self.assertEqual(detail.get("bounceType"), "Permanent")
            self.assertEqual(detail.get("bounceSubType"), "General")
            for absent in ("diagnosticCode", "action", "status", "reportingMTA"):
                self.assertNotIn(absent, detail, "absent SES fields must not be invented")
        self.assertEqual(self.events("mary@example.com"), [],
                         "mary was a destination but did not bounce")
        self.assertEqual(self.redis("ZCARD", "mailtrail:rcpt:{mary@example.com}"), 0)

    def test_bounce_v2_event_publishing_with_dsn(self):
        m = self.start()
        text = ses("awsdoc-event-bounce.json")
        msg = self.signer.notification(text, version="2",
                                       subject="Amazon SES Email Event Notification")
        self.assertAnswer(m.post_sns(msg), 200, "stored")
        ev, score = self.one_event("recipient@example.com")
        detail = self.check_event(ev, score, msg, "Bounce", "recipient@example.com",
                                  "2017-08-05T00:41:02.669Z", json.loads(text))
        self.assertEqual(detail.get("bounceType"), "Permanent")
        self.assertEqual(detail.get("bounceSubType"), "General")
        self.assertEqual(detail.get("action"), "failed")
        self.assertEqual(detail.get("status"), "5.1.1")
        self.assertEqual(detail.get("diagnosticCode"), "smtp; 550 5.1.1 user unknown")
        self.assertEqual(detail.get("reportingMTA"), "dsn; mta.example.com")

    def test_delivery_v1(self):
        m = self.start()
        text = ses("awsdoc-identity-delivery.json")
        msg = self.signer.notification(text)
        self.assertAnswer(m.post_sns(msg), 200, "stored")
        ev, score = self.one_event("jane@example.com")
        detail = self.check_event(ev, score, msg, "Delivery", "jane@example.com",
                                  "2016-01-27T14:59:38.237Z", json.loads(text))
        self.assertEqual(detail.get("smtpResponse"), "250 ok:  Message 64111812 accepted")
        self.assertEqual(detail.get("processingTimeMillis"), 546)
        self.assertEqual(detail.get("reportingMTA"), "a8-70.smtp-out.amazonses.com")
        self.assertEqual(detail.get("remoteMtaIp"), "127.0.2.0")

    def test_complaint_v2_only_complained_recipient(self):
        m = self.start()
        text = ses("awsdoc-identity-complaint-with-feedback-report.json")
        msg = self.signer.notification(text, version="2")
        self.assertAnswer(m.post_sns(msg), 200, "stored")
        ev, score = self.one_event("richard@example.com")
        detail = self.check_event(ev, score, msg, "Complaint", "richard@example.com",
                                  "2016-01-27T14:59:38.237Z", json.loads(text))
        self.assertEqual(detail.get("complaintFeedbackType"), "abuse")
        self.assertEqual(detail.get("userAgent"), "AnyCompany Feedback Loop (V0.01)")
        self.assertEqual(self.events("jane@example.com"), [])
        self.assertEqual(self.events("mary@example.com"), [])

    def test_redelivery_is_duplicate(self):
        m = self.start()
        text = ses("awsdoc-identity-bounce-permanent-general-no-dsn-two-recipients.json")
        msg = self.signer.notification(text)
        self.assertAnswer(m.post_sns(msg), 200, "stored")
        self.assertAnswer(m.post_sns(msg), 200, "duplicate")
        # SNS re-signs nothing on redelivery, but a redelivery may come through
        # another copy of mailtrail: still one event.
        m2 = self.start()
        self.assertAnswer(m2.post_sns(msg), 200, "duplicate")
        for rcpt in ("jane@example.com", "richard@example.com"):
            self.assertEqual(self.redis("ZCARD", f"mailtrail:rcpt:{{{rcpt}}}"), 1)

    def test_redelivery_to_a_differently_configured_copy(self):
        # During a rolling change (here --keep-headers turned on) a copy
        # builds different EVENT bytes for the same message: the message
        # is still recognised as stored, and nothing doubles.
        m = self.start()
        msg = self.signer.notification(ses("awsdoc-identity-delivery.json"))
        self.assertAnswer(m.post_sns(msg), 200, "stored")
        m2 = self.start("--keep-headers")
        self.assertAnswer(m2.post_sns(msg), 200, "duplicate")
        self.assertEqual(self.redis("ZCARD", "mailtrail:rcpt:{jane@example.com}"), 1)
        self.assertEqual(self.redis("ZCARD", "mailtrail:recent"), 1)
        # Recognised by the store itself, without a marker key.
        self.assertEqual(self.redis.keys("mailtrail:msg:*"), [])

    def test_redelivery_recognised_by_id_and_event_time(self):
        # Whatever bytes another copy or version stored for a message
        # (here an EVENT written by hand with other content), a redelivery
        # at the same event time adds nothing; the same id at another time
        # is another event.  Likewise under a topic.
        m = self.start()
        msg = self.signer.notification(ses("awsdoc-identity-delivery.json"))
        key = "mailtrail:rcpt:{jane@example.com}"
        stored = {"id": msg["MessageId"], "type": "Delivery",
                  "time": "2016-01-27T14:59:38.237Z", "recipient": "jane@example.com",
                  "detail": {"written": "by another version"}}
        self.redis("ZADD", key, iso_to_ms(stored["time"]), json.dumps(stored, separators=(",", ":")))
        self.assertAnswer(m.post_sns(msg), 200, "duplicate")
        self.assertEqual(self.redis("ZCARD", key), 1)
        # The recent feed gets a reference to the event (a write cut short
        # may have missed it), once: its recipient and the member's prefix
        # (test_api reads the event as stored through it).
        self.assertEqual(self.redis("ZRANGE", "mailtrail:recent", 0, -1, "WITHSCORES"),
                         [f'jane@example.com {{"id":"{msg["MessageId"]}",'.encode(),
                          str(iso_to_ms(stored["time"])).encode()])
        other = dict(stored, id=msg["MessageId"] + "0")
        self.redis("DEL", key)
        self.redis("ZADD", key, iso_to_ms(stored["time"]), json.dumps(other, separators=(",", ":")))
        self.assertAnswer(m.post_sns(msg), 200, "stored")
        self.assertEqual(self.redis("ZCARD", key), 2, "an id that merely begins alike is another")

        raw = self.signer.notification("not an SES event")
        topic_key = f"mailtrail:topic:{{{raw['TopicArn']}}}"
        self.redis("ZADD", topic_key, iso_to_ms(raw["Timestamp"]),
                   json.dumps({"id": raw["MessageId"], "message": "as stored before"},
                              separators=(",", ":")))
        self.assertAnswer(m.post_sns(raw), 200, "duplicate")
        self.assertEqual(self.redis("ZCARD", topic_key), 1)

    def test_recipient_normalised(self):
        m = self.start()
        sobj = json.loads(ses("awsdoc-event-bounce.json"))
        sobj["bounce"]["bouncedRecipients"][0]["emailAddress"] = "Alice Example <Alice@Example.COM>"
        sobj["mail"]["destination"] = ["Alice Example <Alice@Example.COM>"]
        msg = self.signer.notification(json.dumps(sobj))
        self.assertAnswer(m.post_sns(msg), 200, "stored")
        ev, _ = self.one_event("alice@example.com")
        self.assertEqual(ev.get("recipient"), "alice@example.com")
        self.assertEqual([k for k in self.redis.keys("mailtrail:rcpt:*")],
                         ["mailtrail:rcpt:{alice@example.com}"])

    def test_keep_headers(self):
        m = self.start("--keep-headers")
        text = ses("awsdoc-identity-delivery.json")
        msg = self.signer.notification(text)
        self.assertAnswer(m.post_sns(msg), 200, "stored")
        ev, _ = self.one_event("jane@example.com")
        ch = ev["mail"].get("commonHeaders")
        self.assertIsInstance(ch, dict, f"--keep-headers must store mail.commonHeaders: {ev}")
        self.assertEqual(ch.get("subject"), "Hello")
        self.assertIn("from", ch)
        self.assertIn("to", ch)

    def test_non_ses_message_kept_under_topic(self):
        m = self.start()
        msg = self.signer.notification("hello")
        self.assertAnswer(m.post_sns(msg), 200, "stored")
        self.assertEqual(self.redis.keys("mailtrail:rcpt:*"), [])
        items = self.topic_items(msg["TopicArn"])
        self.assertEqual(len(items), 1, items)
        item, score = items[0]
        self.assertEqual(item.get("id"), msg["MessageId"])
        self.assertEqual(item.get("message"), "hello")
        self.assertEqual(score, iso_to_ms(msg["Timestamp"]))
        self.assertAnswer(m.post_sns(msg), 200, "duplicate")
        self.assertEqual(len(self.topic_items(msg["TopicArn"])), 1)

    def test_subject_null_is_not_signed(self):
        m = self.start()
        msg = self.signer.notification("subject is null", with_subject_null=True)
        self.assertIsNone(msg["Subject"])
        self.assertAnswer(m.post_sns(msg), 200, "stored")

    def test_non_ascii_escaped_subject_and_message(self):
        m = self.start()
        text = "h\u00e9llo \U0001F600 \u2713"
        msg = self.signer.notification(text, subject="Gr\u00fc\u00dfe \u2013 \u00e4")
        body = json.dumps(msg, ensure_ascii=True).encode()
        self.assertIn(rb"\ud83d\ude00", body, "the body must carry a surrogate pair escape")
        self.assertAnswer(m.post_sns(body), 200, "stored")
        items = self.topic_items(msg["TopicArn"])
        self.assertEqual(len(items), 1, items)
        self.assertEqual(items[0][0].get("message"), text)

    def test_non_ascii_raw_utf8(self):
        m = self.start()
        text = "h\u00e9llo \U0001F600"
        msg = self.signer.notification(text, subject="\u00c4rger")
        body = json.dumps(msg, ensure_ascii=False).encode("utf-8")
        self.assertAnswer(m.post_sns(body), 200, "stored")
        self.assertEqual(self.topic_items(msg["TopicArn"])[0][0].get("message"), text)

    def test_non_ascii_inside_ses_event(self):
        m = self.start()
        sobj = json.loads(ses("awsdoc-event-bounce.json"))
        diag = "smtp; 550 5.1.1 Benutzer unbekannt \u00fc \U0001F600"
        sobj["bounce"]["bouncedRecipients"][0]["diagnosticCode"] = diag
        # Message holds raw UTF-8; the envelope escapes it (\u00fc, \ud83d\ude00).
        msg = self.signer.notification(json.dumps(sobj, ensure_ascii=False))
        self.assertAnswer(m.post_sns(json.dumps(msg, ensure_ascii=True).encode()), 200, "stored")
        ev, _ = self.one_event("recipient@example.com")
        self.assertEqual(ev["detail"].get("diagnosticCode"), diag)

    def test_redis_prefix(self):
        m = self.start("--redis-prefix", "mt2:")
        self.assertAnswer(m.post_sns(self.signer.notification(
            ses("awsdoc-identity-delivery.json"))), 200, "stored")
        self.assertNothingStored()
        self.assertEqual(self.redis("ZCARD", "mt2:rcpt:{jane@example.com}"), 1)

    def test_old_message_accepted_without_max_age(self):
        m = self.start()
        msg = self.signer.notification("an hour old", timestamp=now_iso(-3600))
        self.assertAnswer(m.post_sns(msg), 200, "stored")


# ===================================================================================
class TestSubscriptions(MailtrailCase):

    def test_confirmation_is_confirmed(self):
        m = self.start()
        for version in ("1", "2"):
            with self.subTest(version=version):
                ENV.sns.clear()
                msg = self.signer.confirmation(version=version)
                self.assertAnswer(m.post_sns(msg, "SubscriptionConfirmation"), 200, "confirmed")
                path = msg["SubscribeURL"][len(f"https://{ENV.sns.authority}"):]
                self.assertEqual(len(ENV.sns.gets_of(path)), 1,
                                 "the SNS host must have seen exactly one GET of SubscribeURL")
        self.assertEqual(self.redis.keys("mailtrail:rcpt:*"), [])

    def test_auto_confirm_no(self):
        m = self.start("--auto-confirm", "no")
        msg = self.signer.confirmation()
        body = self.assertAnswer(m.post_sns(msg, "SubscriptionConfirmation"), 200)
        self.assertNotIn(body.get("status"), ("error", "confirmed"), body)
        self.assertEqual(self.confirm_gets(), [], "--auto-confirm no must not confirm")

    def test_unsubscribe_is_noted_never_visited(self):
        m = self.start()
        msg = self.signer.confirmation("UnsubscribeConfirmation")
        self.assertAnswer(m.post_sns(msg, "UnsubscribeConfirmation"), 200, "noted")
        self.assertEqual(self.confirm_gets(), [],
                         "visiting an UnsubscribeConfirmation's SubscribeURL subscribes again")

    def test_confirm_failure_is_transient(self):
        m = self.start()
        msg = self.signer.confirmation(token="fail-me")
        ENV.sns.fail_tokens.add("fail-me")
        self.assertAnswer(m.post_sns(msg, "SubscriptionConfirmation"), 503)
        self.assertEqual(len(self.confirm_gets()), 1)

    def _rejected_subscribe_url(self, url, *quiet_hosts):
        m = self.start()
        msg = self.signer.confirmation(subscribe_url=url)
        self.assertAnswer(m.post_sns(msg, "SubscriptionConfirmation"), 403)
        self.assertEqual(self.confirm_gets(), [])
        self.assertNoRequests(*quiet_hosts)
        self.assertNothingStored()

    def test_subscribe_url_other_port(self):
        self._rejected_subscribe_url(ENV.decoy.url(
            "/?Action=ConfirmSubscription&TopicArn=x&Token=decoy"), ENV.decoy)

    def test_subscribe_url_userinfo(self):
        self._rejected_subscribe_url(
            f"https://sns.us-east-1.amazonaws.com@{ENV.sns.authority}"
            "/?Action=ConfirmSubscription&TopicArn=x&Token=userinfo")

    def test_subscribe_url_http(self):
        self._rejected_subscribe_url(ENV.plain.url(
            "/?Action=ConfirmSubscription&TopicArn=x&Token=plain"), ENV.plain)

    def test_subscribe_url_changed_after_signing(self):
        m = self.start()
        msg = self.signer.confirmation()
        msg["SubscribeURL"] = ENV.sns.url("/?Action=ConfirmSubscription&TopicArn=x&Token=forged")
        self.assertAnswer(m.post_sns(msg, "SubscriptionConfirmation"), 403)
        self.assertEqual(self.confirm_gets(), [])

    def test_confirmation_of_other_topic_contacts_nothing(self):
        m = self.start("--topic", ALLOWED_TOPIC)
        msg = self.signer.confirmation()
        self.assertAnswer(m.post_sns(msg, "SubscriptionConfirmation"), 403)
        self.assertNoRequests(ENV.sns)


# ===================================================================================
class TestRejectedSignatures(MailtrailCase):
    """Genuineness failures: 403 (or 400 for a wrong type), nothing stored."""

    def post_rejected(self, m, msg, status=403, msg_type="Notification"):
        body = msg if isinstance(msg, bytes) else body_of(msg)
        self.assertAnswer(m.post_sns(body, msg_type), status)
        self.assertNothingStored()

    def test_message_changed_after_signing(self):
        m = self.start()
        msg = self.signer.notification(ses("awsdoc-identity-delivery.json"))
        msg["Message"] = msg["Message"].replace("jane@example.com", "eve@example.com")
        self.post_rejected(m, msg)

    def test_subject_added_after_signing(self):
        m = self.start()
        msg = self.signer.notification("hello")
        msg["Subject"] = "injected"
        self.post_rejected(m, msg)

    def test_signed_with_another_key(self):
        m = self.start()
        msg = self.signer.notification("hello", key=ENV.pki.rogue_key)
        self.post_rejected(m, msg)

    def test_sha1_signature_labelled_version_2(self):
        m = self.start()
        msg = self.signer.notification("hello", version="1")
        msg["SignatureVersion"] = "2"
        self.post_rejected(m, msg)

    def test_signature_version_missing(self):
        m = self.start()
        msg = self.signer.notification("hello")
        del msg["SignatureVersion"]
        self.post_rejected(m, msg, 403)

    def test_signature_version_3(self):
        m = self.start()
        msg = self.signer.notification("hello")
        msg["SignatureVersion"] = "3"
        self.post_rejected(m, msg, 403)

    def test_signature_version_number(self):
        m = self.start()
        msg = self.signer.notification("hello", version="1")
        msg["SignatureVersion"] = 1  # a lax reader would verify this fine
        self.post_rejected(m, msg, 400)

    def test_signature_not_base64(self):
        m = self.start()
        msg = self.signer.notification("hello")
        msg["Signature"] = "!!!! this is not base64 ####"
        self.post_rejected(m, msg, 403)

    def test_signature_empty(self):
        m = self.start()
        msg = self.signer.notification("hello")
        msg["Signature"] = ""
        self.post_rejected(m, msg, 403)

    def test_cert_not_valid_at_timestamp(self):
        m = self.start()
        # signing_cert is valid from 2020-01-01: a 2019 message cannot be its.
        msg = self.signer.notification("too early", timestamp="2019-06-01T12:00:00.000Z")
        self.post_rejected(m, msg)
        old = ENV.signer.cert_url(OLD_PEM)
        # old_cert expired on 2021-01-01: fine for a 2020 message...
        ok = self.signer.notification("in 2020", timestamp="2020-06-01T12:00:00.000Z",
                                      cert_url=old, key=ENV.pki.old_key)
        self.assertAnswer(m.post_sns(ok), 200, "stored")
        # ...but not for a 2022 one.
        self.redis("FLUSHALL")
        late = self.signer.notification("in 2022", timestamp="2022-06-01T12:00:00.000Z",
                                        cert_url=old, key=ENV.pki.old_key)
        self.post_rejected(m, late)

    def test_raw_delivery(self):
        m = self.start()
        body = ses("awsdoc-identity-delivery.json").encode()
        r = m.post_sns(body, msg_type=None, extra_headers={"x-amz-sns-rawdelivery": "true"})
        self.assertAnswer(r, 403)
        self.assertNothingStored()
        self.assertNoRequests(ENV.sns)


# ===================================================================================
class TestRejectedCertUrls(MailtrailCase):
    """SigningCertURL is not signed: it is checked before anything is fetched.
    Every message here is correctly signed by the served test certificate, so
    a check that let the URL through would answer 200 (and be seen fetching)."""

    def reject(self, url, *quiet_hosts):
        m = self.start()
        msg = self.signer.notification(ses("awsdoc-identity-delivery.json"), cert_url=url)
        self.assertAnswer(m.post_sns(msg), 403)
        self.assertNothingStored()
        self.assertNoRequests(ENV.sns, *quiet_hosts)

    def test_http_scheme(self):
        self.reject(ENV.plain.url(SnsSigner.CERT_PATH), ENV.plain)

    def test_host_suffix(self):
        self.reject("https://sns.us-east-1.amazonaws.com.evil.example/x.pem", ENV.guard)

    def test_user_info(self):
        self.reject(f"https://sns.us-east-1.amazonaws.com@{ENV.sns.authority}"
                    f"{SnsSigner.CERT_PATH}")

    def test_pem_only_in_query(self):
        self.reject(ENV.sns.url("/cert?x=.pem"))

    def test_pem_only_in_fragment(self):
        self.reject(ENV.sns.url("/cert#.pem"))

    def test_not_pem(self):
        self.reject(ENV.sns.url("/SimpleNotificationService-test.txt"))

    def test_other_port(self):
        self.reject(ENV.decoy.url(SnsSigner.CERT_PATH), ENV.decoy)


# ===================================================================================
class TestRejectedRequests(MailtrailCase):
    """Envelope and HTTP level rejections; nothing stored, nothing fetched."""

    def post(self, m, body, status, msg_type="Notification"):
        self.assertAnswer(m.post_sns(body, msg_type), status)
        self.assertNothingStored()

    def test_body_over_max_body(self):
        m = self.start("--max-body", "4096")
        msg = self.signer.notification("x" * 5000)
        self.assertGreater(len(body_of(msg)), 4096)
        self.post(m, body_of(msg), 413)
        self.assertNoRequests(ENV.sns)
        small = self.signer.notification("x" * 1500)
        self.assertLess(len(body_of(small)), 4096)
        self.assertAnswer(m.post_sns(small), 200, "stored")

    def test_malformed_json(self):
        m = self.start()
        self.post(m, b'{"Type": "Notification", "MessageId": ', 400)

    def test_json_array(self):
        m = self.start()
        self.post(m, json.dumps([self.signer.notification("hello")]).encode(), 400)

    def test_duplicate_keys(self):
        m = self.start()
        msg = self.signer.notification("hello")
        text = body_of(msg).decode()
        # The same value twice: the signature verifies whichever one a lax
        # parser keeps, so only the duplicate check can reject it.
        dup = text.replace('"Message": "hello"', '"Message": "hello", "Message": "hello"', 1)
        self.assertNotEqual(dup, text)
        self.post(m, dup.encode(), 400)

    def test_non_string_message_id(self):
        m = self.start()
        msg = self.signer.notification("hello", message_id="5")
        msg["MessageId"] = 5
        self.post(m, body_of(msg), 400)

    def test_required_field_missing(self):
        m = self.start()
        msg = self.signer.notification("hello")
        del msg["TopicArn"]
        self.post(m, body_of(msg), 400)

    def test_unknown_type(self):
        m = self.start()
        msg = self.signer.notification("hello", sign=False)
        msg["Type"] = "Foo"
        # Signed as if Foo were a Notification, so only the Type check rejects it.
        sig_fields = dict(msg, Type="Notification")
        data = string_to_sign(sig_fields).replace(b"Type\nNotification\n", b"Type\nFoo\n")
        msg["Signature"] = ENV.pki.sign(data, ENV.pki.signing_key, "1")
        self.post(m, body_of(msg), 400, msg_type="Foo")

    def test_header_disagrees_with_type(self):
        m = self.start()
        msg = self.signer.notification("hello")
        self.post(m, body_of(msg), 400, msg_type="SubscriptionConfirmation")

    def test_get_sns_is_405(self):
        m = self.start()
        self.assertAnswer(m.request("GET", "/sns"), 405)

    def test_other_path_is_404(self):
        m = self.start()
        msg = self.signer.notification("hello")
        r = m.request("POST", "/nope", body_of(msg),
                      {"Content-Type": "text/plain; charset=UTF-8",
                       "x-amz-sns-message-type": "Notification"})
        self.assertAnswer(r, 404)
        self.assertNothingStored()


# ===================================================================================
class TestTopicsAndAge(MailtrailCase):

    def test_topic_not_allowed_fetches_nothing(self):
        m = self.start("--topic", ALLOWED_TOPIC)
        msg = self.signer.notification(ses("awsdoc-identity-delivery.json"))
        self.assertAnswer(m.post_sns(msg), 403)
        self.assertNothingStored()
        self.assertNoRequests(ENV.sns)
        ok = self.signer.notification(ses("awsdoc-identity-delivery.json"), topic=ALLOWED_TOPIC)
        self.assertAnswer(m.post_sns(ok), 200, "stored")

    def test_topic_list_from_environment(self):
        other = "arn:aws:sns:eu-west-1:123456789012:other"
        m = self.start(env={"MAILTRAIL_TOPIC": f"{other},{ALLOWED_TOPIC}"})
        self.assertAnswer(m.post_sns(self.signer.notification("a", topic=ALLOWED_TOPIC)),
                          200, "stored")
        self.assertAnswer(m.post_sns(self.signer.notification("b", topic=other)),
                          200, "stored")
        self.redis("FLUSHALL")
        ENV.sns.clear()
        self.assertAnswer(m.post_sns(self.signer.notification("c")), 403)
        self.assertNothingStored()
        self.assertNoRequests(ENV.sns)

    def test_max_age(self):
        m = self.start("--max-age", "60")
        old = self.signer.notification(ses("awsdoc-identity-delivery.json"),
                                       timestamp=now_iso(-3600))
        self.assertAnswer(m.post_sns(old), 403)
        self.assertNothingStored()
        fresh = self.signer.notification(ses("awsdoc-identity-delivery.json"))
        self.assertAnswer(m.post_sns(fresh), 200, "stored")
        self.one_event("jane@example.com")


# ===================================================================================
class TestCertificates(MailtrailCase):

    def test_cert_fetched_once_under_concurrency(self):
        m = self.start()
        text = ses("awsdoc-identity-delivery.json")
        msgs = [self.signer.notification(text, version=("1", "2")[i % 2]) for i in range(8)]
        barrier = threading.Barrier(len(msgs))
        results = [None] * len(msgs)

        def deliver(i):
            barrier.wait()
            try:
                results[i] = m.post_sns(msgs[i])
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = e

        threads = [threading.Thread(target=deliver, args=(i,)) for i in range(len(msgs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60 * TIME_FACTOR)
        for i, r in enumerate(results):
            self.assertIsInstance(r, harness.Response, f"request {i}: {r!r}")
            self.assertAnswer(r, 200, "stored")
        for _ in range(3):
            self.assertAnswer(m.post_sns(self.signer.notification(text)), 200, "stored")
        self.assertEqual(len(self.cert_gets()), 1,
                         "the signing certificate must be fetched exactly once")
        self.assertEqual(len(self.events("jane@example.com")), 11)

    def test_made_up_cert_urls_do_not_evict_the_real_cert(self):
        # 70 distinct unknown .pem URLs (more than the 64 cache slots) must
        # not push the certificate in use out of the cache.
        m = self.start()
        text = ses("awsdoc-identity-delivery.json")
        self.assertAnswer(m.post_sns(self.signer.notification(text)), 200, "stored")
        for i in range(70):
            url = ENV.signer.cert_url(f"/SimpleNotificationService-unknown{i}.pem")
            self.assertAnswer(m.post_sns(self.signer.notification(text, cert_url=url)), 503)
        self.assertAnswer(m.post_sns(self.signer.notification(text)), 200, "stored")
        self.assertEqual(len(self.cert_gets()), 1,
                         "the real signing certificate was fetched again")

    def test_failed_fetch_is_503_then_recovers(self):
        m = self.start()
        url = ENV.signer.cert_url(MISSING_PEM)
        msg = self.signer.notification(ses("awsdoc-identity-delivery.json"), cert_url=url)
        self.assertAnswer(m.post_sns(msg), 503)
        self.assertNothingStored()
        self.assertGreaterEqual(len(self.cert_gets(MISSING_PEM)), 1)
        ENV.sns.set_file(MISSING_PEM, ENV.pki.read(ENV.pki.signing_cert))
        t0 = time.monotonic()
        deadline = t0 + 10 * TIME_FACTOR
        while True:
            r = m.post_sns(msg)
            if r.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        self.assertAnswer(r, 200, "stored")
        print(f"\n    (recovered {time.monotonic() - t0:.2f}s after the cert appeared)",
              end=" ", file=sys.stdout, flush=True)
        self.one_event("jane@example.com")

    def test_cert_cache_dir(self):
        cache = tempfile.mkdtemp(dir=ENV.tmp, prefix="certcache-")
        a = self.start("--cert-cache-dir", cache, name="mailtrail-A")
        self.assertAnswer(a.post_sns(self.signer.notification("one")), 200, "stored")
        self.assertEqual(len(self.cert_gets()), 1)
        cached = os.path.join(cache, "SimpleNotificationService-test.pem")
        self.assertTrue(os.path.isfile(cached), f"cache dir holds {os.listdir(cache)}")
        with open(cached, "rb") as f:
            self.assertEqual(pem_body(f.read()),
                             pem_body(ENV.pki.read(ENV.pki.signing_cert)))
        self.stop(a)
        ENV.sns.clear()
        b = self.start("--cert-cache-dir", cache, name="mailtrail-B")
        self.assertAnswer(b.post_sns(self.signer.notification("two")), 200, "stored")
        self.assertNoRequests(ENV.sns)

    def test_bad_certificate_responses(self):
        # A redirect (not followed), an oversized body (capped) and a body
        # that is not a certificate: never 200, nothing stored, and the
        # process keeps serving.
        m = self.start()
        target = "/SimpleNotificationService-test.pem"
        ENV.sns.redirects["/SimpleNotificationService-redirect.pem"] = ENV.sns.url(target).encode()
        ENV.sns.set_file("/SimpleNotificationService-huge.pem",
                         ENV.pki.read(ENV.pki.signing_cert) + b"A" * (8 << 20))
        ENV.sns.set_file("/SimpleNotificationService-garbage.pem", b"this is not a PEM\n")
        self.addCleanup(ENV.sns.set_file, "/SimpleNotificationService-huge.pem", None)
        self.addCleanup(ENV.sns.set_file, "/SimpleNotificationService-garbage.pem", None)
        for name in ("redirect", "huge", "garbage"):
            with self.subTest(cert=name):
                ENV.sns.clear()
                url = ENV.signer.cert_url(f"/SimpleNotificationService-{name}.pem")
                msg = self.signer.notification("hello", cert_url=url)
                r = m.post_sns(msg)
                self.assertIn(r.status, (403, 503), r)
                self.assertAnswer(r, r.status)
                self.assertNothingStored()
                self.assertEqual(self.cert_gets(target), [], "a redirect must not be followed")
        self.assertAnswer(m.post_sns(self.signer.notification("still alive")), 200, "stored")

    def test_certificate_must_be_one_pem_certificate_of_sns(self):
        # Issue 11, item 8: each message is signed with the key of the
        # certificate served, so only the certificate checks refuse it.
        genuine = ENV.pki.read(ENV.pki.signing_cert)
        small_key, small = ENV.pki.signing_pair("small", bits=1024)
        other_key, other = ENV.pki.signing_pair("othername", cn="sns.example.com")
        cases = {  # name: (body served, signing key)
            "html": (b"<html><body><pre>\n" + genuine + b"</pre></body></html>\n", None),
            "two": (genuine + ENV.pki.read(other), None),
            "small": (ENV.pki.read(small), small_key),
            "othername": (ENV.pki.read(other), other_key),
        }
        cache = tempfile.mkdtemp(dir=ENV.tmp, prefix="badcerts-")
        m = self.start("--cert-cache-dir", cache)
        for name, (body, key) in cases.items():
            path = f"/SimpleNotificationService-bad-{name}.pem"
            ENV.sns.set_file(path, body)
            self.addCleanup(ENV.sns.set_file, path, None)
            with self.subTest(cert=name):
                msg = self.signer.notification("hello", cert_url=ENV.signer.cert_url(path),
                                               key=key)
                self.assertAnswer(m.post_sns(msg), 503)
                self.assertNothingStored()
                self.assertFalse(os.path.exists(os.path.join(cache, path[1:])),
                                 "a refused certificate was written to the cache")
        # A file in --cert-cache-dir gets the same checks: an HTML page
        # holding the genuine certificate is not used, the download is.
        with open(os.path.join(cache, "SimpleNotificationService-test.pem"), "wb") as f:
            f.write(cases["html"][0])
        ENV.sns.clear()
        self.assertAnswer(m.post_sns(self.signer.notification("genuine")), 200, "stored")
        self.assertEqual(len(self.cert_gets()), 1, "the bad cache file was used")
        self.assertEqual(ENV.pki.read(os.path.join(cache, "SimpleNotificationService-test.pem")),
                         genuine, "the downloaded certificate replaces the bad file")

    def test_cache_file_name_stays_in_cache_dir(self):
        box = tempfile.mkdtemp(dir=ENV.tmp, prefix="cachebox-")
        cache = os.path.join(box, "cache")
        os.mkdir(cache)
        path = "/sub/..%2Fescape.pem"
        ENV.sns.set_file(path, ENV.pki.read(ENV.pki.signing_cert))
        self.addCleanup(ENV.sns.set_file, path, None)
        m = self.start("--cert-cache-dir", cache)
        r = m.post_sns(self.signer.notification("hello", cert_url=ENV.signer.cert_url(path)))
        self.assertIn(r.status, (200, 403), r)
        self.assertEqual(os.listdir(box), ["cache"],
                         "a cert file was written outside --cert-cache-dir")
        for name in os.listdir(cache):
            self.assertNotIn("/", name)
            self.assertFalse(name.startswith(".."), name)


# ===================================================================================
class TestRedisOutage(MailtrailCase):

    def test_redis_down_then_back(self):
        rs = RedisServer(tempfile.mkdtemp(dir=ENV.tmp, prefix="redis-outage-")).start()
        self.addCleanup(rs.stop)
        m = self.start(redis_url=f"redis://127.0.0.1:{rs.port}/0")
        self.assertEqual(m.request("GET", "/healthz").status, 200)
        self.assertEqual(m.request("GET", "/readyz").status, 200)
        text = ses("awsdoc-identity-delivery.json")
        self.assertAnswer(m.post_sns(self.signer.notification(text)), 200, "stored")

        rs.stop()
        later = self.signer.notification(text)
        self.assertAnswer(m.post_sns(later), 503)
        self.assertEqual(m.request("GET", "/readyz").status, 503)
        self.assertEqual(m.request("GET", "/healthz").status, 200)

        rs.start()
        self.assertAnswer(m.post_sns(later), 200, "stored")
        stored = [json.loads(x) for x in rs.client("ZRANGE", "mailtrail:rcpt:{jane@example.com}", 0, -1)]
        self.assertEqual([e.get("id") for e in stored], [later["MessageId"]])
        self.assertEqual(m.request("GET", "/readyz").status, 200)
        self.assertEqual(m.request("GET", "/healthz").status, 200)

    def test_redis_restarted_between_deliveries(self):
        # Redis restarts while mailtrail is idle: the pooled connection is
        # dead, and the very first delivery afterwards must still be stored
        # (SNS would retry, but nothing needs to fail).
        rs = RedisServer(tempfile.mkdtemp(dir=ENV.tmp, prefix="redis-restart-")).start()
        self.addCleanup(rs.stop)
        m = self.start(redis_url=f"redis://127.0.0.1:{rs.port}/0")
        text = ses("awsdoc-identity-delivery.json")
        self.assertAnswer(m.post_sns(self.signer.notification(text)), 200, "stored")
        rs.stop()
        rs.start()
        later = self.signer.notification(text)
        self.assertAnswer(m.post_sns(later), 200, "stored")
        stored = [json.loads(x) for x in rs.client("ZRANGE", "mailtrail:rcpt:{jane@example.com}", 0, -1)]
        self.assertEqual([e.get("id") for e in stored], [later["MessageId"]])
        rs.stop()
        rs.start()
        self.assertEqual(m.request("GET", "/readyz").status, 200)

    def test_redis_password(self):
        # redis://:password@host:port: AUTH on every new connection; a
        # wrong password is a Redis failure (503, not ready), never a drop.
        rs = RedisServer(tempfile.mkdtemp(dir=ENV.tmp, prefix="redis-auth-")).start()
        self.addCleanup(rs.stop)
        rs.client("CONFIG", "SET", "requirepass", "s3cret pw")
        rs.client("AUTH", "s3cret pw")
        text = ses("awsdoc-identity-delivery.json")
        bad = self.start(redis_url=f"redis://:wrong@127.0.0.1:{rs.port}/0")
        self.assertAnswer(bad.post_sns(self.signer.notification(text)), 503)
        self.assertEqual(bad.request("GET", "/readyz").status, 503)
        good = self.start(redis_url=f"redis://:s3cret pw@127.0.0.1:{rs.port}/2")
        self.assertEqual(good.request("GET", "/readyz").status, 200)
        msg = self.signer.notification(text)
        self.assertAnswer(good.post_sns(msg), 200, "stored")
        self.assertAnswer(good.post_sns(msg), 200, "duplicate")
        rs.client("SELECT", "2")
        stored = [json.loads(x) for x in rs.client("ZRANGE", "mailtrail:rcpt:{jane@example.com}", 0, -1)]
        self.assertEqual([e.get("id") for e in stored], [msg["MessageId"]])

    def test_script_cache_flushed(self):
        # An operator's SCRIPT FLUSH (or a failover to a node without the
        # script) must not fail deliveries.
        m = self.start()
        text = ses("awsdoc-identity-delivery.json")
        self.assertAnswer(m.post_sns(self.signer.notification(text)), 200, "stored")
        self.redis("SCRIPT", "FLUSH")
        self.assertAnswer(m.post_sns(self.signer.notification(text)), 200, "stored")
        self.assertEqual(self.redis("ZCARD", "mailtrail:rcpt:{jane@example.com}"), 2)


# ===================================================================================
class TestProbesAndTls(MailtrailCase):

    def test_probes(self):
        m = self.start()
        self.assertEqual(m.request("GET", "/healthz").status, 200)
        self.assertEqual(m.request("GET", "/readyz").status, 200)
        r = m.request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers.get("content-type", "").startswith("text/plain"), r.headers)
        self.assertTrue(r.body.strip(), "metrics must not be empty")

    def test_webhook_over_https(self):
        m = self.start("--tls-cert", ENV.pki.server_cert, "--tls-key", ENV.pki.server_key)
        ctx = ENV.pki.client_context()
        msg = self.signer.notification(ses("awsdoc-identity-delivery.json"))
        self.assertAnswer(m.post_sns(msg, tls_context=ctx), 200, "stored")
        self.one_event("jane@example.com")
        self.assertEqual(m.request("GET", "/healthz", tls_context=ctx).status, 200)


# ===================================================================================
class TestRealPayloads(MailtrailCase):
    """Real SNS deliveries replayed offline: default host pattern, the real
    (expired) AWS certificates in --cert-cache-dir, nothing ever fetched."""

    def start(self, *extra, **kw):
        # The captures come from the topics of many AWS accounts.
        return super().start("--any-topic", *extra, **kw)

    def real_cache(self):
        cache = tempfile.mkdtemp(dir=ENV.tmp, prefix="realcerts-")
        root = os.path.join(DATA, "real-sns")
        for folder in sorted(os.listdir(root)):
            d = os.path.join(root, folder)
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                if name.startswith("SimpleNotificationService-") and name.endswith(".pem"):
                    dst = os.path.join(cache, name)
                    src = os.path.join(d, name)
                    if os.path.exists(dst):
                        self.assertEqual(ENV.pki.read(dst), ENV.pki.read(src),
                                         f"two different files named {name}")
                    else:
                        shutil.copyfile(src, dst)
        return cache

    def expected(self):
        out = []
        with open(os.path.join(DATA, "real-sns", "EXPECTED")) as f:
            for line in f:
                if line.strip():
                    parts = line.split()
                    out.append((parts[0], parts[1].split("=", 1)[1], parts[-1]))
        self.assertGreaterEqual(len(out), 20)
        return out

    def read(self, rel):
        with open(os.path.join(DATA, "real-sns", rel), "rb") as f:
            return f.read()

    def test_replay_all_captures(self):
        cache = self.real_cache()
        before = {n: ENV.pki.read(os.path.join(cache, n)) for n in os.listdir(cache)}
        m = self.start("--cert-cache-dir", cache, "--auto-confirm", "no", pattern=None)
        missing = []
        for rel, mtype, verdict in self.expected():
            with self.subTest(payload=rel):
                self.redis("FLUSHALL")
                body = self.read(rel)
                cert = json.loads(body)["SigningCertURL"].rsplit("/", 1)[1]
                if not os.path.exists(os.path.join(cache, cert)):
                    missing.append((rel, cert))
                    continue
                r = m.post_sns(body, mtype)
                if verdict == "INVALID":
                    self.assertAnswer(r, 403)
                    self.assertNothingStored()
                elif mtype == "Notification":
                    self.assertAnswer(r, 200, "stored")
                elif mtype == "UnsubscribeConfirmation":
                    self.assertAnswer(r, 200, "noted")
                else:
                    b = self.assertAnswer(r, 200)
                    self.assertNotIn(b.get("status"), ("error", "confirmed"), b)
        if missing:
            print(f"\n    (no certificate in the data for: {missing})", end=" ",
                  file=sys.stderr)
        self.assertNoRequests(ENV.sns, ENV.guard)
        after = {n: ENV.pki.read(os.path.join(cache, n)) for n in os.listdir(cache)}
        self.assertEqual(after, before, "the cert cache dir must not be rewritten")

    def test_real_ses_bounce_and_complaint(self):
        m = self.start("--cert-cache-dir", self.real_cache(), pattern=None)
        body = self.read("django-ses/ses-bounce-notification-no-subject.json")
        env = json.loads(body)
        self.assertAnswer(m.post_sns(body), 200, "stored")
        ev, score = self.one_event("bounce@simulator.amazonses.com")
        detail = self.check_event(ev, score, env, "Bounce", "bounce@simulator.amazonses.com",
                                  "2022-04-01T21:24:49.000Z", json.loads(env["Message"]))
        self.assertEqual(detail.get("bounceType"), "Permanent")
        self.assertEqual(detail.get("diagnosticCode"), "smtp; 550 5.1.1 user unknown")
        self.assertEqual(detail.get("reportingMTA"), "dns; a48-30.smtp-out.amazonses.com")
        self.assertAnswer(m.post_sns(body), 200, "duplicate")
        self.assertEqual(len(self.events("bounce@simulator.amazonses.com")), 1)

        body = self.read("django-ses/ses-complaint-notification.json")
        env = json.loads(body)
        self.assertAnswer(m.post_sns(body), 200, "stored")
        ev, score = self.one_event("complaint@simulator.amazonses.com")
        detail = self.check_event(ev, score, env, "Complaint",
                                  "complaint@simulator.amazonses.com",
                                  "2022-03-28T23:59:33.564Z", json.loads(env["Message"]))
        self.assertEqual(detail.get("complaintFeedbackType"), "abuse")
        self.assertEqual(detail.get("userAgent"), "Amazon SES Mailbox Simulator")
        self.assertNoRequests(ENV.sns, ENV.guard)

    def test_wrong_certificate_under_the_right_name(self):
        cache = tempfile.mkdtemp(dir=ENV.tmp, prefix="wrongcert-")
        body = self.read("aws-sdk-java-v2-sample/sample-message.json")
        name = json.loads(body)["SigningCertURL"].rsplit("/", 1)[1]
        shutil.copyfile(os.path.join(DATA, "real-sns", "aws-sdk-java-v2-sample",
                                     "sns-public-cert.pem"), os.path.join(cache, name))
        m = self.start("--cert-cache-dir", cache, pattern=None)
        self.assertAnswer(m.post_sns(body), 403)
        self.assertNothingStored()

    def test_subject_moved_into_message_id_refused(self):
        # Issue 11, item 5: a real AWS-signed notification with its Subject
        # removed and "\nSubject\n<subject>" appended to its MessageId has
        # the same string to sign, so its signature still verifies; stored,
        # it would be a second copy of the message's events.
        m = self.start("--cert-cache-dir", self.real_cache(), pattern=None)
        body = self.read("django-ses/ses-complaint-notification.json")
        env = json.loads(body)
        self.assertIsNotNone(env.get("Subject"))
        forged = dict(env)
        del forged["Subject"]
        forged["MessageId"] = env["MessageId"] + "\nSubject\n" + env["Subject"]
        self.assertEqual(harness.string_to_sign(forged), harness.string_to_sign(env),
                         "the forged envelope must sign the same bytes")
        self.assertAnswer(m.post_sns(body), 200, "stored")
        b = self.assertAnswer(m.post_sns(json.dumps(forged).encode()), 400)
        self.assertEqual(b["error"], "control character in a signed field", b)
        self.one_event("complaint@simulator.amazonses.com")
        # The same with a MessageId that is not a UUID (no line break).
        odd = dict(env, MessageId=env["MessageId"] + "-x")
        b = self.assertAnswer(m.post_sns(json.dumps(odd).encode()), 400)
        self.assertEqual(b["error"], "MessageId is not a UUID", b)
        self.one_event("complaint@simulator.amazonses.com")
        self.assertNoRequests(ENV.sns, ENV.guard)

    def test_real_subscription_confirmation_not_confirmed(self):
        m = self.start("--cert-cache-dir", self.real_cache(), "--auto-confirm", "no",
                       pattern=None)
        body = self.read("aws-sdk-java-v2-sns-message-manager-7506a1e3/"
                         "test-subscription-confirmation.json")
        b = self.assertAnswer(m.post_sns(body, "SubscriptionConfirmation"), 200)
        self.assertNotIn(b.get("status"), ("error", "confirmed"), b)
        self.assertNoRequests(ENV.sns, ENV.guard)


# ===================================================================================
class TestImplausibleTimes(MailtrailCase):
    """An event time more than a day after the SNS Timestamp (or the
    arrival) goes on no timeline: the message is kept under its topic."""

    def delivery(self, when):
        obj = json.loads(ses("awsdoc-identity-delivery.json"))
        obj["delivery"]["timestamp"] = when
        return json.dumps(obj, separators=(",", ":"))

    def test_judged_by_the_timestamp_not_the_wall_clock(self):
        m = self.start()
        ts = "2021-03-01T10:00:00.000Z"   # the signing cert is valid then
        cases = (("2021-03-01T09:59:00.000Z", True),    # before: as SES stamps it
                 ("2021-03-02T09:59:59.000Z", True),    # a day ahead, just
                 ("2021-03-02T10:00:00.001Z", False),   # past the day (now is years later)
                 ("9999-12-31T23:59:59.999Z", False))
        for when, indexed in cases:
            with self.subTest(event_time=when):
                self.redis("FLUSHALL")
                msg = self.signer.notification(self.delivery(when), timestamp=ts)
                self.assertAnswer(m.post_sns(msg), 200, "stored")
                evs = self.events("jane@example.com")
                raw = self.topic_items(SnsSigner.TOPIC)
                if indexed:
                    self.assertEqual([(e["id"], e["time"]) for e, _ in evs],
                                     [(msg["MessageId"], when)])
                    self.assertEqual(raw, [])
                else:
                    self.assertEqual(evs, [])
                    self.assertEqual([r["id"] for r, _ in raw], [msg["MessageId"]])
                    self.assertEqual(raw[0][0]["message"], msg["Message"])
                    self.assertEqual(raw[0][1], iso_to_ms(ts), "kept at its Timestamp")
                    self.assertEqual(self.redis("ZCARD", "mailtrail:recent"), 0)

    def test_judged_by_the_arrival_when_the_timestamp_is_ahead(self):
        # A Timestamp ahead of this clock does not widen the window.
        m = self.start()
        msg = self.signer.notification(self.delivery(now_iso(86400 + 3600)),
                                       timestamp=now_iso(7200))
        self.assertAnswer(m.post_sns(msg), 200, "stored")
        self.assertEqual(self.events("jane@example.com"), [])
        self.assertEqual(len(self.topic_items(SnsSigner.TOPIC)), 1)


def sanitized(binary):
    """Whether binary was built with AddressSanitizer."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


class TestBoundedWork(MailtrailCase):
    """What one message can make mailtrail and Redis hold (issue 11): every
    EVENT carries a bounded copy of the mail, and a 256 KB message with
    1,000 recipients stays within README's Limits."""

    SNS_MAX = 256 * 1024   # the most an SNS message (Message) can hold

    def start(self, *extra, **kw):
        if sanitized(BINARY):
            # ASan keeps freed memory in a quarantine (256 MiB by default)
            # that would count as peak RSS: keep it small, so that the
            # bounds measure mailtrail's memory as in a normal build.
            kw["env"] = dict(kw.get("env") or {}, ASAN_OPTIONS=(
                os.environ.get("ASAN_OPTIONS", "") +
                ":quarantine_size_mb=4:thread_local_quarantine_size_kb=64").lstrip(":"))
        return super().start(*extra, **kw)

    def test_destination_and_headers_cut(self):
        m = self.start("--keep-headers")
        obj = json.loads(ses("awsdoc-event-bounce.json"))
        obj["mail"]["destination"] = [f"Name {i} <d{i}@example.com>" for i in range(25)]
        obj["mail"]["destination"][3] = "x" * 5000
        headers = obj["mail"]["commonHeaders"]
        headers["subject"] = "s" * 5000
        headers["to"] = [f"t{i}@example.com" for i in range(40)]
        headers["x-custom"] = "not kept"
        obj["bounce"]["reportingMTA"] = "r" * 100000
        text = json.dumps(obj, separators=(",", ":"))
        msg = self.signer.notification(text)
        self.assertAnswer(m.post_sns(msg), 200, "stored")
        ev, _ = self.one_event("recipient@example.com")
        mail = ev["mail"]
        self.assertEqual(len(mail["destination"]), 10)
        self.assertEqual(mail["destination"][:3], obj["mail"]["destination"][:3])
        self.assertEqual(mail["destination"][3], "x" * 256)
        self.assertEqual(mail["destinationCount"], 25)
        ch = mail["commonHeaders"]
        self.assertEqual(ch["subject"], "s" * 512)
        self.assertEqual(ch["to"], headers["to"][:10])
        self.assertNotIn("x-custom", ch)
        self.assertEqual(ev["detail"]["reportingMTA"], "r" * 1024)
        self.assertEqual(ev["detail"]["diagnosticCode"], "smtp; 550 5.1.1 user unknown")

    # --- one 256 KB message with 1,000 bounced recipients ---------------------

    @staticmethod
    def vm_hwm_kib(pid):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise HarnessError("no VmHWM in /proc/PID/status")

    def redis_used_memory(self):
        info = self.redis("INFO", "memory").decode()
        return int(re.search(r"^used_memory:(\d+)", info, re.M).group(1))

    def bounce_1000(self, worst):
        """A bounce of 1,000 recipients filled up to SNS's 256 KB: with a
        long destination list (worst=False, the shape of the issue), or
        with every value that each EVENT repeats as long as it fits
        (worst=True)."""
        ts = now_iso(-60)
        rcpts = [f"r{i:04d}@bounce.example.com" for i in range(1000)]
        if worst:
            entries = [{"emailAddress": a} for a in rcpts]
        else:
            entries = [{"emailAddress": a, "action": "failed", "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown"} for a in rcpts]
        obj = {"notificationType": "Bounce",
               "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                          "bouncedRecipients": entries, "timestamp": ts,
                          "feedbackId": "0100018e-feedback", "reportingMTA": "dsn; mta"},
               "mail": {"timestamp": ts, "source": "sender@example.com",
                        "messageId": "0100018e-message", "destination": list(rcpts),
                        "commonHeaders": {"from": ["sender@example.com"],
                                          "to": rcpts[:50], "subject": "hello"}}}
        if worst:
            # Long values that every EVENT repeats, control characters
            # (6 bytes of JSON each once written) in the longest.
            obj["bounce"]["bounceSubType"] = "\u0001" * 6000
            obj["mail"]["source"] = "s" * 8000
            obj["mail"]["messageId"] = "m" * 8000
            obj["mail"]["destination"] = ["d" * 2000] * 10 + rcpts
            obj["mail"]["commonHeaders"] = {
                "subject": "\u0002" * 3000, "date": "d" * 2000,
                **{k: ["a" * 400] * 12 for k in ("from", "to", "cc", "bcc", "replyTo")}}
        text = json.dumps(obj, separators=(",", ":"))
        self.assertLess(len(text.encode()), self.SNS_MAX, "the base message is too big")
        # Fill what is left with the value the message's shape makes long.
        room = self.SNS_MAX - len(text.encode()) - 64
        if worst:
            obj["bounce"]["reportingMTA"] = "r" * room
        else:
            extra, i = [], 0
            while room > 60:
                e = f"Recipient {i:05d} <x{i:05d}@destination.example.com>"
                extra.append(e)
                room -= len(e) + 3
                i += 1
            obj["mail"]["destination"] += extra
        text = json.dumps(obj, separators=(",", ":"))
        size = len(text.encode())
        self.assertLessEqual(size, self.SNS_MAX)
        self.assertGreater(size, self.SNS_MAX - 2048)
        return text, rcpts

    def measure(self, worst):
        m = self.start("--keep-headers")
        # Warm up: the certificate fetched, Redis connected, the script
        # loaded; then the baselines.
        small = self.signer.notification(ses("awsdoc-identity-delivery.json"))
        self.assertAnswer(m.post_sns(small), 200, "stored")
        text, rcpts = self.bounce_1000(worst)
        msg = self.signer.notification(text)
        body = json.dumps(msg).encode()
        hwm0 = self.vm_hwm_kib(m.proc.pid)
        used0 = self.redis_used_memory()
        t0 = time.monotonic()
        r = m.post_sns(body)
        took = time.monotonic() - t0
        self.assertAnswer(r, 200, "stored")
        hwm1 = self.vm_hwm_kib(m.proc.pid)
        used1 = self.redis_used_memory()
        rss_mib = (hwm1 - hwm0) / 1024
        redis_mib = (used1 - used0) / (1024 * 1024)
        ev, _ = self.one_event(rcpts[999])
        print(f"\n    ({'worst' if worst else 'long destination'}: {len(text)} bytes, "
              f"answered in {took:.2f} s, peak RSS +{rss_mib:.1f} MiB, "
              f"Redis +{redis_mib:.1f} MiB, EVENT {len(json.dumps(ev))} bytes)",
              end=" ", file=sys.stderr)
        if not harness.WRAPPER:   # under valgrind the RSS is valgrind's
            self.assertLess(rss_mib, 64, "peak RSS added by one message")
        self.assertLess(redis_mib, 16, "Redis memory added by one message")
        # The target is < 2 s; the bound is loose for a loaded test machine.
        self.assertLess(took, 5.0 * TIME_FACTOR, "time to answer one message")
        self.assertEqual(len(self.redis.keys("mailtrail:rcpt:{r*@bounce.example.com}")), 1000)
        self.assertEqual(len(ev["mail"]["destination"]), 10)
        self.assertGreater(ev["mail"]["destinationCount"], 1000)

    def test_256k_bounce_1000_recipients_long_destination(self):
        self.measure(worst=False)

    def test_256k_bounce_1000_recipients_worst_shape(self):
        self.measure(worst=True)

    def test_concurrent_large_deliveries_written_a_few_at_a_time(self):
        # Eight such messages at once: each waits with its EVENTs (about
        # 8 MB) for a writer, and a writer formats and buffers a batch of
        # at most WEBHOOK_COMMIT_BYTES_MAX, not all eight together
        # (measured: about +90 MiB; one batch of all eight: about +160;
        # since the deliverability counters, 102 to 110 MiB on an idle
        # machine, at 1dc97ed as now, and 128.7 once in a CI lane).
        m = self.start("--keep-headers")
        small = self.signer.notification(ses("awsdoc-identity-delivery.json"))
        self.assertAnswer(m.post_sns(small), 200, "stored")
        text, _ = self.bounce_1000(worst=True)
        # Under valgrind (the CI runs two valgrind lanes side by side) eight
        # 256 KiB bodies at once are not read within the request deadline
        # (10 s); three still run the concurrent path under memcheck.
        at_once = 3 if harness.WRAPPER else 8
        bodies = [json.dumps(self.signer.notification(text)).encode() for _ in range(at_once)]
        hwm0 = self.vm_hwm_kib(m.proc.pid)
        answers = []

        def post(body):
            answers.append(m.post_sns(body))
        threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rss_mib = (self.vm_hwm_kib(m.proc.pid) - hwm0) / 1024
        print(f"\n    ({at_once} at once: peak RSS +{rss_mib:.1f} MiB)", end=" ", file=sys.stderr)
        for r in answers:
            self.assertAnswer(r, 200, "stored")
        self.assertEqual(len(answers), at_once)
        if not harness.WRAPPER:
            # ASan's redzones and shadow add about a half to these
            # allocations (measured +128 MiB where a plain build adds 70-94).
            bound = 192 if sanitized(BINARY) else 144
            self.assertLess(rss_mib, bound, "peak RSS added by eight large deliveries at once")


class TestConfiguration(unittest.TestCase):
    """Invalid configuration: exit 2, one stderr line naming the option."""

    def run_mailtrail(self, args, env=None, timeout=10):
        cmd = harness.WRAPPER + [BINARY] + args
        try:
            return subprocess.run(cmd, capture_output=True, env=ENV.child_env(env),
                                  timeout=timeout * TIME_FACTOR, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.fail(f"{' '.join(cmd)} did not exit within {timeout * TIME_FACTOR}s "
                      f"(it accepted the configuration?)\nstdout: {e.stdout!r}\n"
                      f"stderr: {e.stderr!r}")

    def base(self):
        return ENV.api_off + ["--redis", ENV.redis_url, "--log-format", "json"]

    def assertConfigError(self, r, pattern):  # noqa: N802
        err = r.stderr.decode("utf-8", "replace")
        ctx = f"\nexit {r.returncode}\nstdout: {r.stdout!r}\nstderr: {err!r}"
        self.assertEqual(r.returncode, 2, "invalid configuration must exit 2" + ctx)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        self.assertEqual(len(lines), 1, "exactly one stderr line expected" + ctx)
        self.assertRegex(lines[0], re.compile(pattern, re.I), "the line must name the option" + ctx)

    def test_invalid_flags(self):
        cases = [
            (["--listen", "nonsense"], r"listen"),
            (["--listen", "127.0.0.1:0", "--retention-days", "-1"], r"retention-days"),
            (["--listen", "127.0.0.1:0", "--auto-confirm", "maybe"], r"auto-confirm"),
            (["--listen", "127.0.0.1:0", "--tls-cert", ENV.pki.server_cert], r"tls-(key|cert)"),
            (["--listen", "127.0.0.1:0", "--cert-host-pattern", "("], r"cert-host-pattern"),
            (["--listen", "127.0.0.1:0", "--max-body", "12x"], r"max-body"),
            (["--listen", "127.0.0.1:0", "--log-format", "xml"], r"log-format"),
            (["--listen", "127.0.0.1:0", "--no-such-option"], r"no-such-option"),
            (["--listen", "127.0.0.1:0", "--cert-cache-dir", "/nonexistent/certs"],
             r"cert-cache-dir"),
        ]
        for args, pattern in cases:
            with self.subTest(args=args):
                self.assertConfigError(self.run_mailtrail(self.base() + args), pattern)

    def test_invalid_environment(self):
        r = self.run_mailtrail(self.base() + ["--listen", "127.0.0.1:0"],
                               env={"MAILTRAIL_RETENTION_DAYS": "abc"})
        self.assertConfigError(r, r"retention[-_]days")

    def test_help_and_version(self):
        r = self.run_mailtrail(["--help"])
        self.assertEqual(r.returncode, 0, r)
        self.assertIn(b"--redis", r.stdout, "--help must list the options on stdout")
        r = self.run_mailtrail(["--version"])
        self.assertEqual(r.returncode, 0, r)
        self.assertTrue(r.stdout.strip(), "--version must print the version")

    def test_help_lists_spec_options(self):
        r = self.run_mailtrail(["--help"])
        self.assertEqual(r.returncode, 0, r)
        missing = [o for o in SPEC_OPTIONS if o.encode() not in r.stdout]
        self.assertEqual(missing, [], "options of SPEC.md missing from --help")


if __name__ == "__main__":
    sys.exit(harness.suite_main(sys.modules[__name__], sys.argv))
