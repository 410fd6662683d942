#!/usr/bin/env python3
"""Integration tests of `mailtrail import` (README "Backfill: mailtrail import").

    python3 tests/integration/test_import.py <mailtrail-binary> <tests/data> [TestClass...]

The real binary imports into a real redis-server: real AWS deliveries of
tests/data/real-sns verified offline with their certificates in a
--cert-cache-dir, and deliveries signed by the harness's test key (the
certificate fetched from the local HTTPS "SNS" host), as documents, NDJSON
and gzip; corrupted, unsigned, badly signed and foreign-topic ones; SES
events with --trusted-ses; the progress output with and without a
terminal (a pty); Redis unavailable; usage errors.
"""

import gzip
import hashlib
import json
import os
import pty
import re
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import TIME_FACTOR, SnsSigner, free_port, now_iso  # noqa: E402

BINARY = None
DATA = None
ENV = None

TRUSTED_TOPIC = "mailtrail:import:trusted-ses"


def setUpModule():
    global ENV
    ENV = harness.Environment("mailtrail-import-")
    ImportTestCase.env = ENV
    ImportTestCase.binary = BINARY


def tearDownModule():
    if ENV:
        ENV.close()


def real_captures():
    """(relative path, verdict) of every capture in real-sns/EXPECTED."""
    out = []
    with open(os.path.join(DATA, "real-sns", "EXPECTED")) as f:
        for line in f:
            parts = line.split()
            if parts:
                out.append((parts[0], parts[-1]))
    return out


def real_topics():
    """--topic patterns for the AWS accounts of the real captures (as
    scripts/dev-run makes them)."""
    accounts = set()
    for rel, _ in real_captures():
        with open(os.path.join(DATA, "real-sns", rel)) as f:
            m = re.search(r'"TopicArn"\s*:\s*"arn:aws[a-z-]*:sns:[^:"]*:(\d{12}):', f.read())
        accounts.add(m.group(1))
    args = []
    for a in sorted(accounts):
        args += ["--topic", f"arn:aws:sns:*:{a}:*"]
    return args


def counts(out):
    """The summary's counts: {"stored": n, ..., "reasons": {reason: n}}."""
    c = {k: int(v) for k, v in re.findall(
        r"^(stored|duplicate|noted|rejected|failed|unreadable files): (\d+)", out, re.M)}
    c["reasons"] = {k: int(v) for k, v in re.findall(r"^  ([^/:][^:]*): (\d+)$", out, re.M)}
    return c


class ImportTestCase(harness.MailtrailTestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="imp-", dir=self.env.tmp)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.certs = os.path.join(self.tmp, "certs")
        os.makedirs(self.certs)
        for rel, _ in real_captures():
            d = os.path.join(DATA, "real-sns", os.path.dirname(rel))
            for name in os.listdir(d):
                if name.startswith("SimpleNotificationService-") and name.endswith(".pem"):
                    shutil.copy(os.path.join(d, name), os.path.join(self.certs, name))
        self.last = None

    def context(self):
        text = super().context()
        if self.last is not None:
            text += (f"\n=== last import: exit {self.last.returncode} ===\n"
                     f"stdout:\n{self.last.stdout}\nstderr:\n{self.last.stderr[-4000:]}")
        return text

    def path(self, *parts):
        p = os.path.join(self.tmp, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def write(self, rel, data):
        p = self.path(rel)
        with open(p, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        return p

    def cmd(self, args):
        return harness.WRAPPER + [self.binary, "import", "--redis", self.env.redis_url] + args

    def real_args(self):
        return ["--cert-cache-dir", self.certs] + real_topics()

    def signed_args(self):
        """The harness's signer: its certificate fetched from the local
        HTTPS SNS host."""
        return ["--cert-host-pattern", "^" + re.escape(self.env.sns.authority) + "$",
                "--ca-file", self.env.pki.ca_cert]

    def run_import(self, args, env=None, stdin=None, timeout=120):
        r = subprocess.run(self.cmd(args), input=stdin, capture_output=True, text=True,
                           env=self.env.child_env(env), timeout=timeout * TIME_FACTOR)
        self.last = r
        return r

    def copy_valid_captures(self, into):
        """The VALID real captures (documents), each named after its
        folder; returns how many."""
        n = 0
        for rel, verdict in real_captures():
            if verdict != "VALID":
                continue
            folder, name = rel.split("/")
            shutil.copy(os.path.join(DATA, "real-sns", rel), self.path(into, f"{folder}--{name}"))
            n += 1
        return n

    def notification(self, i, **kw):
        ses = {"notificationType": "Bounce",
               "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                          "bouncedRecipients": [{"emailAddress": f"imp{i}@example.com"}],
                          "timestamp": now_iso()},
               "mail": {"timestamp": now_iso(-5), "messageId": f"0100018c-import-{i:06d}",
                        "source": "sender@example.com",
                        "destination": [f"imp{i}@example.com"]}}
        return self.env.signer.notification(json.dumps(ses), **kw)

    def events_of(self, address):
        """The recipient's events as JSON text, compact members rebuilt
        (harness.event_from_member)."""
        raw = self.env.redis("ZRANGE", f"mailtrail:rcpt:{{{address}}}", 0, -1, "WITHSCORES")
        topics = self.env.redis.topics()
        return [json.dumps(harness.event_from_member(raw[i], address, int(float(raw[i + 1])),
                                                     topics))
                for i in range(0, len(raw), 2)]


class RealCapturesTest(ImportTestCase):

    def test_directory_of_real_captures_stored_then_all_duplicate(self):
        n = self.copy_valid_captures("caps")
        # Walked recursively in name order; names beginning with '.' left out.
        shutil.move(self.path("caps", "django-ses--ses-complaint-notification.json"),
                    self.path("caps", "sub", "deeper", "complaint.json"))
        self.write("caps/.hidden.json", "not json at all")
        r = self.run_import(self.real_args() + [self.path("caps")])
        self.assertEqual(r.returncode, 0)
        c = counts(r.stdout)
        # 3 confirmations (noted: never visited), the rest notifications; the
        # aws-sdk-java v1 and v2 samples are one message (stored once).
        self.assertEqual(c["noted"], 3)
        self.assertEqual(c["stored"] + c["duplicate"], n - 3)
        self.assertEqual(c["rejected"], 0)
        self.assertEqual(c["unreadable files"], 0)
        self.assertIn(f"from {n} of {n} files", r.stdout)
        self.assertEqual((c["stored"], c["duplicate"]), (n - 4, 1))
        self.assertEqual(len(self.events_of("bounce@simulator.amazonses.com")), 1)
        self.assertEqual(len(self.events_of("complaint@simulator.amazonses.com")), 1)
        keys_before = sorted(self.env.redis.keys())

        r = self.run_import(self.real_args() + [self.path("caps")])
        self.assertEqual(r.returncode, 0)
        c2 = counts(r.stdout)
        self.assertEqual(c2["stored"], 0)
        self.assertEqual(c2["duplicate"], c["stored"] + c["duplicate"])
        self.assertEqual(sorted(self.env.redis.keys()), keys_before)
        self.assertEqual(len(self.events_of("bounce@simulator.amazonses.com")), 1)

    def test_ndjson_and_gzip(self):
        lines = []
        for rel, verdict in real_captures():
            if verdict == "VALID" and "confirmation" not in rel and "sconf" not in rel:
                with open(os.path.join(DATA, "real-sns", rel)) as f:
                    lines.append(json.dumps(json.load(f)))
        body = "\n".join(lines[:6]) + "\n\n" + "\r\n".join(lines[6:]) + "\n"
        self.write("in/a.ndjson", body)
        with gzip.open(self.path("in", "b.ndjson.gz"), "wb") as f:
            f.write(body.encode())
        # A pretty-printed document, gzip-compressed, under any name.
        with open(os.path.join(DATA, "real-sns", "django-ses",
                               "ses-bounce-notification-no-subject.json"), "rb") as src:
            with gzip.open(self.path("in", "c.data"), "wb") as f:
                f.write(src.read())
        r = self.run_import(self.real_args() + [self.path("in")])
        self.assertEqual(r.returncode, 0)
        c = counts(r.stdout)
        total = 2 * len(lines) + 1
        self.assertEqual(c["stored"] + c["duplicate"], total)
        # a.ndjson stored them; b.ndjson.gz and c.data hold the same again.
        self.assertGreaterEqual(c["duplicate"], len(lines) + 1)
        self.assertEqual(len(self.events_of("bounce@simulator.amazonses.com")), 1)

    def test_topic_not_allowed(self):
        self.copy_valid_captures("caps")
        r = self.run_import(["--cert-cache-dir", self.certs,
                             "--topic", "arn:aws:sns:us-east-1:364852123998:*", self.path("caps")])
        self.assertEqual(r.returncode, 1)
        c = counts(r.stdout)
        self.assertEqual(c["stored"], 2)  # django-ses's bounce and complaint
        self.assertGreater(c["rejected"], 10)
        self.assertEqual(c["reasons"], {"topic not allowed": c["rejected"]})
        self.assertRegex(r.stdout, r"aws-php-sns-message-validator--http-fixture-1\.json: "
                                   r"rejected: topic not allowed")

    def test_tampered_real_capture_rejected(self):
        for rel, verdict in real_captures():
            if verdict == "INVALID":
                shutil.copy(os.path.join(DATA, "real-sns", rel),
                            self.path("bad", os.path.basename(rel)))
        r = self.run_import(["--cert-cache-dir", self.certs, "--any-topic", self.path("bad")])
        self.assertEqual(r.returncode, 1)
        c = counts(r.stdout)
        self.assertEqual(c["rejected"], 2)
        self.assertEqual(c["reasons"], {"bad signature": 2})
        self.assertIn("locust-original.json:1: rejected: bad signature", r.stdout)
        self.assertEqual(self.env.redis.keys(), [])


class SignedTest(ImportTestCase):

    def test_unsigned_and_bad_signature_rejected_with_names(self):
        good = [json.dumps(self.notification(i)) for i in range(5)]
        unsigned = self.notification(10)
        for k in ("Signature", "SignatureVersion", "SigningCertURL", "Type"):
            unsigned.pop(k)
        forged = self.notification(11, key=self.env.pki.rogue_key)
        self.write("m/1-good.ndjson", "\n".join(good) + "\n")
        self.write("m/2-mixed.ndjson", "\n".join([good[0], json.dumps(unsigned),
                                                   json.dumps(forged)]) + "\n")
        self.write("m/3-forged.json", json.dumps(forged, indent=2))
        r = self.run_import(self.signed_args() + [self.path("m")])
        self.assertEqual(r.returncode, 1)
        c = counts(r.stdout)
        self.assertEqual(c["stored"], 5)
        self.assertEqual(c["duplicate"], 1)
        self.assertEqual(c["rejected"], 3)
        self.assertEqual(c["reasons"], {"raw (unsigned) delivery": 1, "bad signature": 2})
        problems = r.stdout.split("first problems", 1)[1].splitlines()[1:]
        self.assertEqual([p.strip() for p in problems], [
            f"{self.path('m', '2-mixed.ndjson')}:2: rejected: raw (unsigned) delivery",
            f"{self.path('m', '2-mixed.ndjson')}:3: rejected: bad signature",
            f"{self.path('m', '3-forged.json')}: rejected: bad signature",
        ])
        self.assertEqual(len(self.events_of("imp3@example.com")), 1)
        self.assertEqual(self.events_of("imp11@example.com"), [])
        # The certificate was fetched once, from the SNS host.
        self.assertEqual(len(self.env.sns.gets_of(SnsSigner.CERT_PATH)), 1)

    def test_max_age_applies(self):
        old = self.notification(1, timestamp=now_iso(-7200))
        self.write("old.json", json.dumps(old))
        r = self.run_import(self.signed_args() + ["--max-age", "600", self.path("old.json")])
        self.assertEqual(r.returncode, 1)
        self.assertEqual(counts(r.stdout)["reasons"], {"message older than --max-age": 1})
        r = self.run_import(self.signed_args() + [self.path("old.json")])
        self.assertEqual(r.returncode, 0)
        self.assertEqual(counts(r.stdout)["stored"], 1)

    def test_corrupted_files(self):
        msgs = [json.dumps(self.notification(i)) for i in range(4)]
        # A document cut short; an NDJSON file with a cut line among good ones.
        self.write("c/1-truncated.json", json.dumps(json.loads(msgs[0]), indent=2)[:300])
        self.write("c/2-cut-line.ndjson", msgs[1] + "\n" + msgs[2][:200] + "\n" + msgs[3] + "\n")
        # gzip: a header then garbage; a stream cut in the middle.
        self.write("c/3-bad.gz", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + os.urandom(200))
        whole = gzip.compress(("\n".join(msgs) + "\n").encode())
        self.write("c/4-truncated.gz", whole[: len(whole) // 2])
        r = self.run_import(self.signed_args() + [self.path("c")])
        self.assertEqual(r.returncode, 1)
        c = counts(r.stdout)
        self.assertEqual(c["unreadable files"], 2)
        self.assertEqual(c["reasons"], {"body is not a valid JSON object": 2})
        # The truncated stream's whole lines are stored; its cut one is not handed on.
        self.assertEqual(c["stored"], 3)
        self.assertEqual(len(self.events_of("imp1@example.com")), 1)
        self.assertEqual(len(self.events_of("imp3@example.com")), 1)
        self.assertIn(f"{self.path('c', '1-truncated.json')}: rejected: body is not a valid JSON object",
                      r.stdout)
        self.assertIn(f"{self.path('c', '2-cut-line.ndjson')}:2: rejected: body is not a valid JSON object",
                      r.stdout)
        self.assertRegex(r.stdout, re.escape(self.path("c", "3-bad.gz")) + r": unreadable: gzip: ")
        self.assertIn(f"{self.path('c', '4-truncated.gz')}: unreadable: gzip: unexpected end of file",
                      r.stdout)

    def test_gzip_bomb_is_cut_at_max_body(self):
        """512 MiB of decompressed bytes in one line: one message too large,
        never held in memory (peak RSS far below)."""
        path = self.path("bomb.gz")
        co = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = b"{" + b" " * (1 << 20)
        with open(path, "wb") as f:
            for _ in range(512):
                f.write(co.compress(block))
            f.write(co.compress(b"}\n" + json.dumps(self.notification(1)).encode() + b"\n"))
            f.write(co.flush())
        self.assertLess(os.path.getsize(path), 4 << 20)
        p = subprocess.Popen(self.cmd(self.signed_args() + [path]), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=self.env.child_env())
        hwm = 0
        while p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    m = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
                if m:
                    hwm = max(hwm, int(m.group(1)))
            except OSError:
                pass
            time.sleep(0.02)
        out, err = p.communicate()
        self.last = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        self.assertEqual(p.returncode, 1)
        c = counts(out)
        self.assertEqual(c["reasons"], {"body too large": 1})
        self.assertEqual(c["stored"], 1)  # the line after it
        self.assertIn(f"{path}:1: rejected: body too large", out)
        if not harness.WRAPPER:
            self.assertLess(hwm, 64 * 1024, "peak RSS of the import (kB)")

    def test_redis_unavailable_retried_then_failed(self):
        """Tried again after 0.5, 1 and 2 s, then counted as failed; the
        import then stops: what was read and not tried is failed too, the
        files not read are named."""
        line = json.dumps(self.notification(1)) + "\n"
        for k in range(16):
            self.write(f"r/{k:02d}.ndjson", line * 64)
        port = free_port()
        t0 = time.monotonic()
        r = subprocess.run(harness.WRAPPER + [
            self.binary, "import", "--redis", f"redis://127.0.0.1:{port}/0"]
            + self.signed_args() + [self.path("r")],
            capture_output=True, text=True, env=self.env.child_env(), timeout=120 * TIME_FACTOR)
        self.last = r
        took = time.monotonic() - t0
        self.assertEqual(r.returncode, 1)
        c = counts(r.stdout)
        self.assertEqual(c["stored"] + c["duplicate"] + c["rejected"], 0)
        self.assertGreaterEqual(c["failed"], 64)
        self.assertEqual(c["failed"] % 64, 0)
        self.assertEqual(c["reasons"], {"redis unavailable": c["failed"]})
        self.assertGreaterEqual(took, 3.5)
        m = re.search(r"^import: (\d+) messages from (\d+) of 16 files", r.stdout, re.M)
        self.assertEqual(int(m.group(1)), c["failed"])
        read = int(m.group(2))
        self.assertLess(read, 16)
        self.assertIn(f"not read: {16 - read} files (the import stopped: redis unavailable), "
                      f"from {self.path('r', f'{read:02d}.ndjson')} on", r.stdout)
        self.assertRegex(r.stdout, re.escape(f"{self.path('r', '00.ndjson')}:1: failed: redis unavailable")
                         + r" \(connect 127\.0\.0\.1:\d+: Connection refused; tried [34] times\)")


    def test_certificate_fetch_failing_retried_then_failed(self):
        """A certificate that cannot be downloaded: tried again, counted as
        failed; the import goes on with the other files."""
        missing = self.notification(1, cert_url=self.env.sns.url(
            "/SimpleNotificationService-missing.pem"))
        self.write("f/1.json", json.dumps(missing))
        self.write("f/2.json", json.dumps(self.notification(2)))
        t0 = time.monotonic()
        r = self.run_import(self.signed_args() + [self.path("f")])
        took = time.monotonic() - t0
        self.assertEqual(r.returncode, 1)
        c = counts(r.stdout)
        self.assertEqual((c["stored"], c["failed"]), (1, 1))
        self.assertEqual(c["reasons"], {"signing certificate cannot be fetched": 1})
        self.assertRegex(r.stdout, re.escape(self.path("f", "1.json")) +
                         r": failed: signing certificate cannot be fetched \(.*tried 4 times\)")
        self.assertNotIn("not read", r.stdout)
        self.assertGreaterEqual(took, 3.5)
        self.assertGreaterEqual(len(self.env.sns.gets_of("/SimpleNotificationService-missing.pem")), 2)


class TrustedSesTest(ImportTestCase):

    def ses_files(self):
        names = sorted(n for n in os.listdir(os.path.join(DATA, "ses"))
                       if n.startswith("awsdoc-event-"))
        for n in names:
            shutil.copy(os.path.join(DATA, "ses", n), self.path("ses", n))
        # A Firehose export: one compact event per line, gzip-compressed.
        lines = []
        for n in names:
            with open(os.path.join(DATA, "ses", n)) as f:
                ev = json.load(f)
            ev["mail"]["messageId"] += "-firehose"
            lines.append(json.dumps(ev, separators=(",", ":")))
        with gzip.open(self.path("ses", "firehose", "stream-1-2024"), "wb") as f:
            f.write(("\n".join(lines) + "\n").encode())
        return len(names)

    def test_trusted_ses_stored_then_duplicate(self):
        n = self.ses_files()
        # The AWS examples date from 2017: kept with a retention that covers them.
        r = self.run_import(["--trusted-ses", "--retention-days", "36500", self.path("ses")])
        self.assertEqual(r.returncode, 0)
        c = counts(r.stdout)
        self.assertEqual(c["stored"], 2 * n)
        self.assertEqual(c["rejected"], 0)
        evs = [json.loads(e) for e in self.events_of("recipient@example.com")]
        self.assertTrue(evs)
        for e in evs:
            self.assertEqual(e["topicArn"], TRUSTED_TOPIC)
            self.assertRegex(e["id"], r"^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                                      r"[0-9a-f]{12}$")
        self.assertIn("Bounce", {e["type"] for e in evs})
        self.assertEqual(len([e for e in evs if e["type"] == "Bounce"]), 2)
        # The id: SHA-256 of the document's bytes (trimmed), as a version 8 UUID.
        with open(os.path.join(DATA, "ses", "awsdoc-event-bounce.json"), "rb") as f:
            d = bytearray(hashlib.sha256(f.read().strip()).digest()[:16])
        d[6], d[8] = (d[6] & 0x0F) | 0x80, (d[8] & 0x3F) | 0x80
        h = d.hex()
        self.assertIn(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
                      {e["id"] for e in evs if e["type"] == "Bounce"})
        keys = sorted(self.env.redis.keys())
        members = self.events_of("recipient@example.com")
        r = self.run_import(["--trusted-ses", "--retention-days", "36500", self.path("ses")])
        self.assertEqual(r.returncode, 0)
        c = counts(r.stdout)
        self.assertEqual(c["stored"], 0)
        self.assertEqual(c["duplicate"], 2 * n)
        self.assertEqual(sorted(self.env.redis.keys()), keys)
        self.assertEqual(self.events_of("recipient@example.com"), members)

    def test_trusted_ses_topic_and_bad_json(self):
        self.write("t/x.ndjson", '{"eventType":"Bounce"\n')
        shutil.copy(os.path.join(DATA, "ses", "awsdoc-event-bounce.json"), self.path("t", "b.json"))
        r = self.run_import(["--trusted-ses", "--trusted-ses-topic", "backfill-2024",
                             self.path("t")])
        self.assertEqual(r.returncode, 1)
        c = counts(r.stdout)
        self.assertEqual(c["stored"], 1)
        self.assertEqual(c["reasons"], {"body is not a valid JSON object": 1})
        evs = [json.loads(e) for e in self.events_of("recipient@example.com")]
        self.assertEqual({e["topicArn"] for e in evs}, {"backfill-2024"})

    def test_without_trusted_ses_bare_events_are_rejected(self):
        self.ses_files()
        r = self.run_import(["--any-topic", self.path("ses")])
        self.assertEqual(r.returncode, 1)
        c = counts(r.stdout)
        self.assertEqual(c["stored"], 0)
        self.assertEqual(self.env.redis.keys(), [])


class ProgressTest(ImportTestCase):

    def test_plain_lines_without_a_terminal(self):
        """From standard input, fed over about 3.5 s: a line every second
        (--progress-every 1), no carriage return, no ETA (total unknown)."""
        p = subprocess.Popen(self.cmd(self.signed_args() + ["--progress-every", "1", "-"]),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.env.child_env())
        for k in range(4):
            p.stdin.write((json.dumps(self.notification(k)) + "\n").encode())
            p.stdin.flush()
            time.sleep(1.2)
        out, err = p.communicate(timeout=60 * TIME_FACTOR)
        out, err = out.decode(), err.decode()
        self.last = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        self.assertEqual(p.returncode, 0)
        self.assertEqual(counts(out)["stored"], 4)
        lines = [ln for ln in err.splitlines() if ln.startswith("import: files")]
        self.assertGreaterEqual(len(lines), 3)
        self.assertNotIn("\r", err)
        self.assertIn("ETA unknown", lines[-1])
        self.assertRegex(lines[-1], r"messages 4 \(stored 4, duplicate 0, rejected 0, failed 0\)")

    def test_bar_on_a_terminal(self):
        msgs = [json.dumps(self.notification(i)) for i in range(40)]
        for i in range(4):
            self.write(f"p/{i}.ndjson", "\n".join(msgs[i * 10:(i + 1) * 10]) + "\n")
        master, slave = pty.openpty()
        p = subprocess.Popen(self.cmd(self.signed_args() + [self.path("p")]),
                             stdout=subprocess.PIPE, stderr=slave, env=self.env.child_env())
        os.close(slave)
        err = b""
        while True:
            ready, _, _ = select.select([master], [], [], 30 * TIME_FACTOR)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        os.close(master)
        out = p.communicate(timeout=60 * TIME_FACTOR)[0].decode()
        err = err.decode()
        self.last = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        self.assertEqual(p.returncode, 0)
        self.assertEqual(counts(out)["stored"], 40)
        self.assertIn("\r[", err)
        self.assertRegex(err, r"\[#{24}\] 100%  files 4/4  messages 40 \(rejected 0, failed 0\)"
                              r"  \d+/s  ETA 0:00")
        self.assertNotIn("import: files", err)


class UsageTest(ImportTestCase):

    def test_usage_and_configuration_errors_exit_2(self):
        self.write("x.json", "{}")
        for args, text in (([], "no FILE or DIR"),
                           (["--bogus", self.path("x.json")], "unknown option '--bogus'"),
                           (["--progress-every", "0", self.path("x.json")], "--progress-every"),
                           ([self.path("missing.json")], "missing.json"),
                           (["--cert-cache-dir", self.path("nope"), self.path("x.json")],
                            "--cert-cache-dir")):
            r = self.run_import(args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(text, r.stderr)
        # --topic is required (or --any-topic), as for the server.
        r = self.run_import([self.path("x.json")], env={"MAILTRAIL_TOPIC": ""})
        self.assertEqual(r.returncode, 2)
        self.assertIn("--topic", r.stderr)
        self.assertEqual(self.env.redis.keys(), [])

    def test_help(self):
        r = self.run_import(["--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("Usage: mailtrail import [OPTION]... FILE|DIR...", r.stdout)
        self.assertIn("--trusted-ses", r.stdout)
        r = subprocess.run(harness.WRAPPER + [self.binary, "--help"], capture_output=True,
                           text=True, env=self.env.child_env())
        self.assertEqual(r.returncode, 0)
        self.assertIn("mailtrail import [OPTION]... FILE|DIR...", r.stdout)

    def test_server_options_with_values_pass_through(self):
        """--redis URL as two arguments, MAILTRAIL_* variables, '--' before
        operands."""
        self.write("-x.json", json.dumps(self.notification(1)))
        r = subprocess.run(harness.WRAPPER + [
            self.binary, "import", "--log-level", "warn"] + self.signed_args()
            + ["--", self.path("-x.json")],
            capture_output=True, text=True, timeout=60 * TIME_FACTOR,
            env=self.env.child_env({"MAILTRAIL_REDIS": self.env.redis_url}))
        self.last = r
        self.assertEqual(r.returncode, 0)
        self.assertEqual(counts(r.stdout)["stored"], 1)


if __name__ == "__main__":
    sys.exit(harness.suite_main(sys.modules[__name__], sys.argv))
