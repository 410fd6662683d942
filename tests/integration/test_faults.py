#!/usr/bin/env python3
"""Fault tests of mailtrail: the durable spool, Redis failures, the signing
certificate host failing, and mailtrail itself killed with kill -9.

    python3 tests/integration/test_faults.py <mailtrail-binary> <tests/data>

Every scenario has its own redis-server and mailtrail and is driven by a
client that behaves like SNS (SnsLikeClient: a 2xx or 4xx answer ends a
delivery, a 5xx, a refused connection or no answer within 5 s is retried).
Each prints `sent, acknowledged, stored, duplicates`: acknowledged = the
MessageIds answered 2xx, stored = the MessageIds found in Redis itself (the
recipients' sorted sets), duplicates = MessageIds stored more than once.
Every scenario asserts acknowledged = stored (as sets) and duplicates = 0.
The long scenarios (30 s Redis outages) run concurrently.

MAILTRAIL_TEST_WRAPPER is honoured as in the other suites.  Nothing is ever
skipped.
"""

import collections
import copy
import hashlib
import heapq
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import unittest


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (TIME_FACTOR, HarnessError, RedisServer,  # noqa: E402
                     http_request, iso_ms)

BINARY = None
DATA = None
ENV = None

PREFIX = "mailtrail:"
PATTERN = r"^127\.0\.0\.1:[0-9]+$"
DELIVERY_TEMPLATE = "awsdoc-identity-delivery.json"


def setUpModule():
    global ENV
    if BINARY is None:
        raise HarnessError("usage: test_faults.py <mailtrail-binary> <tests/data>")
    if not os.access(BINARY, os.X_OK):
        raise HarnessError(f"mailtrail binary not found or not executable: {BINARY}")
    ENV = harness.Environment("mailtrail-faults-")
    with open(os.path.join(DATA, "ses", DELIVERY_TEMPLATE), "rb") as f:
        ENV.template = json.loads(f.read())
    FaultCase.env = ENV
    FaultCase.binary = BINARY


def tearDownModule():
    if ENV is not None:
        ENV.close()
    harness.kill_all_children()


# --- deliveries ------------------------------------------------------------------

class Deliveries:
    """Distinct signed Notifications, each one SES Delivery event for one
    recipient (recipients repeat, so sorted sets hold many events)."""

    _serial = 0
    _lock = threading.Lock()

    def __init__(self, tag, cert_url=None):
        self.tag = tag
        self.cert_url = cert_url

    def make(self, n):
        """[(MessageId, body bytes)]"""
        out = []
        base_ms = int(time.time() * 1000) - 3_600_000
        for _ in range(n):
            with Deliveries._lock:
                Deliveries._serial += 1
                k = Deliveries._serial
            rcpt = f"r{k % 23}@{self.tag}.faults.example"
            ses = copy.deepcopy(ENV.template)
            ses["mail"]["messageId"] = f"0100018f{k:08x}-faults-000000"
            ses["mail"]["destination"] = [rcpt]
            ses["mail"]["timestamp"] = iso_ms_of(base_ms + k - 5000)
            ses["delivery"]["recipients"] = [rcpt]
            ses["delivery"]["timestamp"] = iso_ms_of(base_ms + k)
            msg = ENV.signer.notification(json.dumps(ses, separators=(",", ":")),
                                          cert_url=self.cert_url)
            out.append((msg["MessageId"], json.dumps(msg).encode()))
        return out


def iso_ms_of(ms):
    import datetime as dt
    return iso_ms(dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc))


def stored_ids(redis):
    """Counter of MessageIds over every recipient's sorted set, read from
    Redis itself."""
    ids = collections.Counter()
    for key in redis("KEYS", PREFIX + "rcpt:*"):
        for member in redis("ZRANGE", key, 0, -1):
            ids[json.loads(member)["id"]] += 1
    return ids


# --- an SNS-like client ------------------------------------------------------------

class Target:
    """Where the client delivers: the port changes when mailtrail restarts."""

    def __init__(self, port=None):
        self.port = port


class SnsLikeClient:
    """Delivers the way SNS does.  Every message is its own delivery: a 2xx
    answer acknowledges it, a 4xx ends it too (SNS drops the message), a
    5xx, a refused or broken connection, or no answer within TIMEOUT s is
    retried after a backoff (0.5 s doubling to 4 s) until GIVE_UP s after
    the first attempt (SNS gives up after an hour).  WORKERS deliveries run
    at once."""

    TIMEOUT = 5.0
    GIVE_UP = 150.0
    WORKERS = 6

    def __init__(self, target):
        self.target = target
        self.cond = threading.Condition()
        self.heap = []  # (due, seq, message id, body, first attempt, tries)
        self.seq = 0
        self.busy = 0
        self.feeding = True
        self.sent = 0
        self.acked, self.rejected, self.given_up = set(), set(), set()
        self.answers = collections.Counter()  # status code, or "timeout"/"error"
        self.threads = [threading.Thread(target=self._work, daemon=True)
                        for _ in range(self.WORKERS)]
        for t in self.threads:
            t.start()

    def feed(self, deliveries, rate):
        """Hands deliveries over at `rate` per second (in this thread)."""
        start = time.monotonic()
        for i, (mid, body) in enumerate(deliveries):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.add(mid, body)

    def add(self, mid, body):
        with self.cond:
            now = time.monotonic()
            self.sent += 1
            self.seq += 1
            heapq.heappush(self.heap, (now, self.seq, mid, body, now, 0))
            self.cond.notify()

    def finish(self, timeout):
        """No more messages; waits until every delivery has ended."""
        with self.cond:
            self.feeding = False
            self.cond.notify_all()
        for t in self.threads:
            t.join(timeout)
            if t.is_alive():
                raise AssertionError("the SNS-like client did not finish in time")

    def _attempt(self, body):
        conn = http.client.HTTPConnection(harness.LOOPBACK, self.target.port,
                                          timeout=self.TIMEOUT)
        try:
            conn.request("POST", "/sns", body=body, headers={
                "Content-Type": "text/plain; charset=UTF-8",
                "x-amz-sns-message-type": "Notification"})
            r = conn.getresponse()
            r.read()
            return r.status
        except (socket.timeout, TimeoutError):
            return "timeout"
        except (OSError, http.client.HTTPException):
            return "error"
        finally:
            conn.close()

    def _work(self):
        while True:
            with self.cond:
                while True:
                    now = time.monotonic()
                    if self.heap and self.heap[0][0] <= now:
                        due, seq, mid, body, first, tries = heapq.heappop(self.heap)
                        self.busy += 1
                        break
                    if not self.feeding and not self.heap and self.busy == 0:
                        self.cond.notify_all()
                        return
                    self.cond.wait(min(self.heap[0][0] - now, 0.5) if self.heap else 0.5)
            answer = self._attempt(body)
            with self.cond:
                self.busy -= 1
                self.answers[answer] += 1
                now = time.monotonic()
                if isinstance(answer, int) and answer < 300:
                    self.acked.add(mid)
                elif isinstance(answer, int) and answer < 500:
                    self.rejected.add(mid)
                elif now - first >= self.GIVE_UP:
                    self.given_up.add(mid)
                else:
                    backoff = min(0.5 * 2 ** tries, 4.0)
                    heapq.heappush(self.heap, (now + backoff, seq, mid, body, first, tries + 1))
                self.cond.notify_all()


# --- journal files, written here the way src/spool.c writes them -----------------

def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def journal_record(body, spooled_ms=0):
    head = struct.pack("<Iq", len(body), spooled_ms)
    return b"\xffMTJ" + head + struct.pack("<I", crc32c(head + body)) + body


def journal_files(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".journal"))


# --- the cases ----------------------------------------------------------------------

class FaultCase(harness.MailtrailTestCase):
    """Own redis-servers and mailtrails per test (the shared one of the
    Environment stays untouched)."""

    log_tail = 80

    def setUp(self):
        super().setUp()
        self.servers = []

    def tearDown(self):
        for r in self.servers:
            r.stop()
        super().tearDown()

    def redis_server(self, name, durable=False):
        r = RedisServer(os.path.join(ENV.tmp, f"{self.id()}-{name}-redis"), durable=durable)
        self.servers.append(r)
        return r

    def spool_dir(self, name=""):
        d = os.path.join(ENV.tmp, f"{self.id()}-{name}-spool")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def args(self, redis, *extra, listen="127.0.0.1:0"):
        return ["--listen", listen, "--api-listen", "off",
                "--redis", f"redis://127.0.0.1:{redis.port}/0",
                "--ca-file", ENV.pki.ca_cert, "--cert-host-pattern", PATTERN,
                "--log-format", "json"] + list(extra)

    def mailtrail(self, redis, *extra, listen="127.0.0.1:0", name=None):
        return self.launch(self.args(redis, *extra, listen=listen), name=name)

    def kill9(self, m):
        """kill -9: nothing is flushed or closed."""
        m.kill()
        m._stopped = True  # no SIGTERM check for this one

    def run_fails(self, *args):
        """Runs mailtrail expecting exit 2; returns stderr."""
        import subprocess
        r = subprocess.run(harness.WRAPPER + [BINARY] + list(args), capture_output=True,
                           env=ENV.child_env(), timeout=30 * TIME_FACTOR)
        self.assertEqual(r.returncode, 2, f"expected exit 2: {r!r}")
        err = r.stderr.decode()
        self.assertEqual(err.count("\n"), 1, f"expected one line on stderr: {err!r}")
        self.assertEqual(r.stdout, b"", "nothing on stdout")
        return err

    def readyz(self, m):
        r = http_request(m.port, "GET", "/readyz")
        return r.status, r.json()

    def metrics(self, m):
        r = http_request(m.port, "GET", "/metrics")
        self.assertEqual(r.status, 200)
        out = {}
        for line in r.body.decode().splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, value = line.split()
                out[name] = int(value)
        return out

    def wait_drained(self, m, timeout=60.0):
        deadline = time.monotonic() + timeout * TIME_FACTOR
        while time.monotonic() < deadline:
            status, body = self.readyz(m)
            if status == 200 and body["spool"]["records"] == 0:
                return body
            time.sleep(0.1)
        self.fail(f"the spool did not drain within {timeout} s: {self.readyz(m)}")

    def log_lines(self, m, msg):
        out = []
        for line in list(m.out_lines):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("msg") == msg:
                out.append(obj)
        return out

    def post(self, m, body):
        return http_request(m.port, "POST", "/sns", body,
                            {"Content-Type": "text/plain; charset=UTF-8",
                             "x-amz-sns-message-type": "Notification"})

    def assertStoredExactly(self, redis, ids):  # noqa: N802
        stored = stored_ids(redis.client)
        dups = sorted(i for i, c in stored.items() if c > 1)
        self.assertEqual(dups, [], "MessageIds stored twice")
        self.assertEqual(set(stored), set(ids), "stored MessageIds differ from the acknowledged")


class SpoolTest(FaultCase):
    """What the spool does, step by step."""

    def test_spooled_while_redis_is_down_then_drained(self):
        redis = self.redis_server("redis")  # not started: Redis is down
        spool = self.spool_dir()
        m = self.mailtrail(redis, "--spool-dir", spool)
        batch = Deliveries("down").make(20)
        for mid, body in batch:
            r = self.post(m, body)
            self.assertEqual((r.status, r.json()), (200, {"status": "stored"}), r)
        # A line is written before its answer, but read from the pipe by
        # the harness's thread a moment later: wait for the last ones.
        deadline = time.monotonic() + 10 * TIME_FACTOR
        while True:
            spooled = [x for x in self.log_lines(m, "sns") if x.get("outcome") == "spooled"]
            if len(spooled) >= 20 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(len(spooled), 20, "one 'spooled' log line per message")
        self.assertEqual(len(journal_files(spool)), 1)
        status, body = self.readyz(m)
        self.assertEqual(status, 503, "not ready while Redis is down, spool or not")
        self.assertEqual(body["spool"]["records"], 20, body)
        self.assertGreater(body["spool"]["bytes"], sum(len(b) for _, b in batch))
        met = self.metrics(m)
        self.assertEqual((met["mailtrail_spool_records"], met["mailtrail_spool_spooled_total"],
                          met["mailtrail_spool_drained_total"]), (20, 20, 0), met)
        self.assertEqual(met["mailtrail_spool_bytes"], body["spool"]["bytes"])

        redis.start()
        body = self.wait_drained(m)
        self.assertEqual(body["spool"], {"records": 0, "bytes": 0, "max_bytes": 1 << 30,
                                          "stalled": False})
        self.assertStoredExactly(redis, [mid for mid, _ in batch])
        self.assertEqual(journal_files(spool), [], "a drained journal file is deleted")
        met = self.metrics(m)
        self.assertEqual((met["mailtrail_spool_records"], met["mailtrail_spool_drained_total"],
                          met["mailtrail_spool_bytes"]), (0, 20, 0), met)
        self.assertEqual(len(self.log_lines(m, "spool drained")), 20)
        self.assertTrue(self.log_lines(m, "spool drain waiting for redis"))
        self.assertTrue(self.log_lines(m, "spool empty"))
        # Redis is back: a new message goes straight to it.
        mid, body = Deliveries("down").make(1)[0]
        self.assertEqual(self.post(m, body).json(), {"status": "stored"})
        self.assertEqual(len(journal_files(spool)), 0)
        self.assertEqual(stored_ids(redis.client)[mid], 1)
        # A redelivery of a drained message is a duplicate.
        self.assertEqual(self.post(m, batch[0][1]).json(), {"status": "duplicate"})

    def test_full_spool_answers_503(self):
        redis = self.redis_server("redis")
        spool = self.spool_dir()
        m = self.mailtrail(redis, "--spool-dir", spool, "--spool-max-bytes", "65536")
        acked, refused = [], 0
        for mid, body in Deliveries("full").make(60):
            r = self.post(m, body)
            if r.status == 200:
                self.assertEqual(refused, 0, "a full spool stays full until drained")
                acked.append(mid)
            else:
                self.assertEqual((r.status, r.json()["error"]),
                                 (503, "redis unavailable and the spool is full"))
                refused += 1
        self.assertTrue(acked and refused, f"acked {len(acked)}, refused {refused}")
        self.assertLessEqual(self.readyz(m)[1]["spool"]["bytes"], 65536)
        redis.start()
        self.wait_drained(m)
        self.assertStoredExactly(redis, acked)

    def test_restart_drains_what_a_killed_process_left_torn_tail_skipped(self):
        redis = self.redis_server("redis")
        spool = self.spool_dir()
        m = self.mailtrail(redis, "--spool-dir", spool)
        batch = Deliveries("restart").make(10)
        for _, body in batch:
            self.assertEqual(self.post(m, body).status, 200)
        self.kill9(m)
        [name] = journal_files(spool)
        # A torn tail: an append cut short by the crash (never answered).
        torn = journal_record(Deliveries("restart").make(1)[0][1])
        with open(os.path.join(spool, name), "ab") as f:
            f.write(torn[:len(torn) // 2])
        # A file written by hand in the documented format, with a record
        # damaged in the middle: the damaged one is skipped, the next one
        # is found again.
        hand = Deliveries("restart").make(3)
        damaged = bytearray(journal_record(hand[1][1]))
        damaged[40] ^= 0x20
        with open(os.path.join(spool, "00000000099999999999.journal"), "wb") as f:
            f.write(journal_record(hand[0][1]) + bytes(damaged) + journal_record(hand[2][1]))
        redis.start()
        m2 = self.mailtrail(redis, "--spool-dir", spool, name="restarted")
        opened = self.log_lines(m2, "spool open")
        self.assertEqual(opened[0]["records"], "12", opened)
        self.wait_drained(m2)
        self.assertStoredExactly(redis, [mid for mid, _ in batch] + [hand[0][0], hand[2][0]])
        skipped = self.log_lines(m2, "spool skipped a torn or corrupt record")
        self.assertEqual(len(skipped), 2, skipped)
        self.assertEqual(journal_files(spool), [])

    def test_sigterm_while_redis_is_down_keeps_the_spool(self):
        redis = self.redis_server("redis")
        spool = self.spool_dir()
        m = self.mailtrail(redis, "--spool-dir", spool)
        batch = Deliveries("sigterm").make(5)
        for _, body in batch:
            self.assertEqual(self.post(m, body).status, 200)
        deadline = time.monotonic() + 10 * TIME_FACTOR
        while not self.log_lines(m, "spool drain waiting for redis"):
            self.assertLess(time.monotonic(), deadline, "the drainer never tried Redis")
            time.sleep(0.05)
        self.stop(m)  # exit 0 within 10 s: the backing-off drainer stops
        self.assertEqual(len(journal_files(spool)), 1, "the records stay for the next start")
        redis.start()
        m2 = self.mailtrail(redis, "--spool-dir", spool, name="restarted")
        self.assertEqual(self.log_lines(m2, "spool open")[0]["records"], "5")
        self.wait_drained(m2)
        self.assertStoredExactly(redis, [mid for mid, _ in batch])

    def test_spool_directory_errors_exit_2(self):
        redis = self.redis_server("redis")
        spool = self.spool_dir()
        m = self.mailtrail(redis, "--spool-dir", spool)
        err = self.run_fails(*self.args(redis, "--spool-dir", spool))
        self.assertIn("--spool-dir", err)
        self.assertIn("locked by another mailtrail process", err)
        self.stop(m)
        missing = os.path.join(spool, "missing")
        self.assertIn("not a directory", self.run_fails(*self.args(redis, "--spool-dir", missing)))
        self.assertIn("--spool-max-bytes", self.run_fails(
            *self.args(redis, "--spool-dir", spool, "--spool-max-bytes", "1k")))
        if os.geteuid() == 0:
            unwritable = "/sys/kernel"  # refuses new files even to root
        else:
            unwritable = self.spool_dir("readonly")
            os.chmod(unwritable, 0o500)
        self.assertIn("not writable", self.run_fails(
            *self.args(redis, "--spool-dir", unwritable)))
        # A journal numbered so high that the next number would wrap (to
        # 00000000000000000000.journal, once never drained).
        wrap = self.spool_dir("wrap")
        open(os.path.join(wrap, "18446744073709551615.journal"), "wb").close()
        err = self.run_fails(*self.args(redis, "--spool-dir", wrap))
        self.assertIn("--spool-dir", err)
        self.assertIn("18446744073709551615.journal", err)

    def test_refused_record_is_quarantined_and_the_drain_goes_on(self):
        """A spooled record that Redis refuses with an error reply (here
        WRONGTYPE: the recipient's key is a string) is set aside in the
        quarantine file, and the records after it are stored; moved to a
        journal name once the cause is fixed, it is stored too."""
        redis = self.redis_server("redis", durable=True)
        redis.start()
        spool = self.spool_dir()
        batch = Deliveries("quarantine").make(8)
        bad_mid, bad_body = batch[3]
        bad_rcpt = json.loads(json.loads(bad_body)["Message"])["delivery"]["recipients"][0]
        bad_key = f"{PREFIX}rcpt:{{{bad_rcpt}}}"
        redis.client("SET", bad_key, "not a sorted set")
        redis.stop()
        m = self.mailtrail(redis, "--spool-dir", spool)
        for mid, body in batch:
            r = self.post(m, body)
            self.assertEqual((r.status, r.json()), (200, {"status": "stored"}), r)
        redis.start()
        ready = self.wait_drained(m)
        self.assertFalse(ready["spool"]["stalled"], ready)
        self.assertEqual(journal_files(spool), [], "the drain went past the refused record")
        with open(os.path.join(spool, "quarantine"), "rb") as f:
            self.assertEqual(f.read()[20:], bad_body, "the refused record, whole")
        met = self.metrics(m)
        self.assertEqual((met["mailtrail_spool_quarantined_total"],
                          met["mailtrail_spool_drained_total"],
                          met["mailtrail_spool_quarantine_bytes"]),
                         (1, 7, 20 + len(bad_body)), met)
        deadline = time.monotonic() + 10 * TIME_FACTOR
        while not self.log_lines(m, "spool record moved to the quarantine"):
            self.assertLess(time.monotonic(), deadline, "no quarantine log line")
            time.sleep(0.05)
        [aside] = self.log_lines(m, "spool record cannot be stored: set aside")
        self.assertEqual(aside["message_id"], bad_mid)
        self.assertIn("WRONGTYPE", aside["error"])
        log = "\n".join(m.out_lines)
        self.assertNotIn(bad_rcpt, log, "an address in the log (personal data)")
        self.assertEqual(redis.client("TYPE", bad_key), "string")
        # The operator fixes the key and replays the quarantine.
        redis.client("DEL", bad_key)
        self.assertStoredExactly(redis, [mid for mid, _ in batch if mid != bad_mid])
        self.stop(m)
        os.rename(os.path.join(spool, "quarantine"),
                  os.path.join(spool, "00000000000000000000.journal"))
        m2 = self.mailtrail(redis, "--spool-dir", spool, name="replay")
        self.wait_drained(m2)
        self.assertStoredExactly(redis, [mid for mid, _ in batch])

    def test_brace_address_keys_of_an_older_version_stay_readable(self):
        """An address beginning with '}' has new key names (its own hash
        tag is empty); what an older version wrote under the old names on
        a single Redis is read until the first new event arrives.  (Here
        rather than in test_api.py: the drained copy of such a message
        must land under the new names, see test_cluster.py.)"""
        import urllib.parse
        redis = self.redis_server("redis")
        redis.start()
        addr = "}x@example.com"
        old_event = {"id": "00000000-0000-4000-8000-0000000000aa", "type": "Bounce",
                     "time": "2026-01-01T00:00:00.000Z", "recipient": addr,
                     "detail": {"bounceType": "Permanent"}}
        redis.client("ZADD", f"{PREFIX}rcpt:{{{addr}}}", 1767225600000,
                     json.dumps(old_event, separators=(",", ":")))
        redis.client("HSET", f"{PREFIX}counts:{{{addr}}}", "type:Bounce", "1")
        m = self.launch(self.args(redis)[:2] + ["--api-listen", "127.0.0.1:0"]
                        + self.args(redis)[4:])
        api = m.wait_listen_port("api listening")
        path = "/v1/recipients/" + urllib.parse.quote(addr, safe="")

        def ids():
            r = http_request(api, "GET", path + "/events")
            self.assertEqual(r.status, 200, r)
            return [e["id"] for e in r.json()["events"]]

        self.assertEqual(ids(), [old_event["id"]])
        r = http_request(api, "GET", path)
        self.assertEqual(r.json()["counts"], {"Bounce": 1}, r.json())
        ses = copy.deepcopy(ENV.template)
        ses["mail"]["destination"] = [addr]
        ses["delivery"]["recipients"] = [addr]
        msg = ENV.signer.notification(json.dumps(ses))
        r = self.post(m, json.dumps(msg).encode())
        self.assertEqual((r.status, r.json()), (200, {"status": "stored"}), r)
        self.assertEqual(ids(), [msg["MessageId"]], "the new keys once they exist")
        keys = {k.decode() for k in redis.client("KEYS", f"{PREFIX}*")}
        tag = "sha256:" + hashlib.sha256(addr.encode()).hexdigest()
        self.assertLessEqual({f"{PREFIX}rcpt:{{{tag}}}{addr}", f"{PREFIX}counts:{{{tag}}}{addr}"},
                             keys)

    def test_disk_full_answers_503_and_leaves_nothing(self):
        """Appends that the disk refuses (here EFBIG: a file size limit
        below one record, SIGXFSZ ignored) answer 503 and leave no file
        and no record behind; once the disk takes writes again, spooling
        works and nothing acknowledged is lost."""
        import resource
        redis = self.redis_server("redis")  # down
        spool = self.spool_dir()
        script = 'trap "" XFSZ; ulimit -S -f 2; exec "$@"'  # 1024 bytes
        m = harness.Mailtrail("/bin/sh", [], env=ENV.child_env(), name="limited")
        m.cmd = (["/bin/sh", "-c", script, "sh"] + harness.WRAPPER + [BINARY]
                 + self.args(redis, "--spool-dir", spool))
        self.procs.append(m)
        m.start()
        self.addCleanup(self.stop, m)
        for mid, body in Deliveries("diskfull").make(30):
            r = self.post(m, body)
            self.assertEqual((r.status, r.json()["error"]),
                             (503, "redis unavailable and the spool cannot be written"), r)
        self.assertEqual(os.listdir(spool), [], "a failed append leaves nothing behind")
        status, body = self.readyz(m)
        self.assertEqual((body["spool"]["records"], body["spool"]["bytes"]), (0, 0), body)
        self.assertEqual(self.metrics(m)["mailtrail_spool_spooled_total"], 0)
        # The disk frees up.
        resource.prlimit(m.proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        batch = Deliveries("diskfull").make(5)
        for mid, body in batch:
            r = self.post(m, body)
            self.assertEqual((r.status, r.json()), (200, {"status": "stored"}), r)
        self.assertEqual(len(journal_files(spool)), 1)
        redis.start()
        self.wait_drained(m)
        self.assertStoredExactly(redis, [mid for mid, _ in batch])


# --- fault scenarios ------------------------------------------------------------------

class FlakyCertHost:
    """The signing-certificate host, switchable between "down" (nothing
    listens on its port), "slow" (accepts connections and never answers),
    "garbage" (answers 200 with bytes that are no certificate) and "ok"."""

    PATH = "/SimpleNotificationService-flaky.pem"

    def __init__(self, mode):
        self.port = harness.free_port()
        self.tls = ENV.pki.server_context()
        self.pem = ENV.pki.read(ENV.pki.signing_cert)
        self.lock = threading.Lock()
        self.mode = None
        self.listener = None
        self.held = []
        self.set_mode(mode)

    def url(self):
        return f"https://{harness.LOOPBACK}:{self.port}{self.PATH}"

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode
            if mode != "down" and self.listener is None:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((harness.LOOPBACK, self.port))
                s.listen(64)
                s.settimeout(0.2)
                self.listener = s
                threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s):
        while True:
            with self.lock:
                if self.listener is not s or self.mode == "down":
                    self.listener = None if self.listener is s else self.listener
                    s.close()
                    return
            try:
                conn, _ = s.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with self.lock:
            mode = self.mode
            if mode == "slow":
                self.held.append(conn)
                return
        conn.setblocking(True)
        try:
            tls = self.tls.wrap_socket(conn, server_side=True)
            tls.settimeout(10)
            req = b""
            while b"\r\n\r\n" not in req:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                req += chunk
            body = self.pem if mode == "ok" else os.urandom(3000)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-pem-file\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            tls.close()
        except (OSError, ssl.SSLError):
            conn.close()

    def close(self):
        self.set_mode("down")
        with self.lock:
            for c in self.held:
                c.close()
            self.held.clear()


class Scenario:
    """One fault with its own redis-server (durable: an append-only file
    synced on every write), mailtrail, spool directory and SNS-like
    client."""

    def __init__(self, case, name, spool):
        self.case = case
        self.name = name
        self.redis = case.redis_server(name, durable=True)
        self.spool = case.spool_dir(name) if spool else None
        self.target = Target()
        self.client = SnsLikeClient(self.target)
        self.m = None
        self.notes = []
        self.expect = []  # (what, bool)

    def start_mailtrail(self, *extra, same_port=False):
        args = (["--spool-dir", self.spool] if self.spool else []) + list(extra)
        listen = f"127.0.0.1:{self.target.port}" if same_port else "127.0.0.1:0"
        self.m = self.case.mailtrail(self.redis, *args, listen=listen,
                                     name=f"{self.name}#{len(self.case.procs) + 1}")
        self.target.port = self.m.port
        return self.m

    def load(self, n, rate, cert_url=None):
        """Feeds n new deliveries at rate per second, in the background."""
        batch = Deliveries(self.name, cert_url).make(n)
        t = threading.Thread(target=self.client.feed, args=(batch, rate), daemon=True)
        t.start()
        return t

    def counts(self):
        stored = stored_ids(self.redis.client)
        c = self.client
        return {"sent": c.sent, "acknowledged": len(c.acked), "stored": len(stored),
                "duplicates": sum(1 for v in stored.values() if v > 1),
                "rejected": len(c.rejected), "given_up": len(c.given_up),
                "answers": dict(sorted(c.answers.items(), key=str)),
                "acked_ids": set(c.acked), "stored_ids": set(stored)}


class FaultScenariosTest(FaultCase):
    """Every fault at once (each with its own servers), then one table."""

    def sc_redis_killed(self, sc):
        """Redis killed (kill -9) mid-load and started again 30 s later."""
        sc.redis.start()
        sc.start_mailtrail()
        feeder = sc.load(240, rate=8)
        time.sleep(5)
        sc.redis.proc.kill()
        sc.redis.proc.wait()
        time.sleep(30)
        sc.redis.start()
        feeder.join()
        sc.client.finish(SnsLikeClient.GIVE_UP + 30)
        if sc.spool:
            self.note_spool(sc, "messages were acknowledged while Redis was down")
            sc.expect.append(("no 503 with a spool", 503 not in sc.client.answers))
        else:
            sc.expect.append(("503s while Redis was down", sc.client.answers[503] > 0))

    def note_spool(self, sc, what):
        """Once drained: the spool's counts, and that it took messages."""
        self.wait_drained(sc.m)
        met = self.metrics(sc.m)
        sc.notes.append(f"spooled {met['mailtrail_spool_spooled_total']}, "
                        f"drained {met['mailtrail_spool_drained_total']}")
        sc.expect.append((what, met["mailtrail_spool_spooled_total"] > 0))

    def sc_redis_stuck(self, sc, how):
        """Redis stuck for 9 s, longer than the command timeout (2 s per
        command): "pause" is CLIENT PAUSE (no spool: 503), "stop" is SIGSTOP
        (connections still accepted, nothing answered; with a spool: 200)."""
        sc.redis.start()
        sc.start_mailtrail()
        feeder = sc.load(100, rate=10)
        time.sleep(3)
        frozen = time.monotonic()
        if how == "pause":
            sc.redis.client("CLIENT", "PAUSE", 9000)
        else:
            os.kill(sc.redis.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(0.5)
            # A delivery while Redis is stuck, waited for as long as SNS waits.
            t0 = time.monotonic()
            mid, body = Deliveries(sc.name).make(1)[0]
            r = http_request(sc.m.port, "POST", "/sns", body,
                             {"Content-Type": "text/plain; charset=UTF-8"}, timeout=15)
            took = time.monotonic() - t0
            want = 200 if sc.spool else 503
            sc.notes.append(f"a delivery while Redis was stuck: {r.status} after {took:.1f} s")
            sc.expect.append((f"answered {want} inside SNS's 15 s while Redis was stuck",
                              r.status == want and took < 15))
            sc.client.add(mid, body)  # SNS retries a 503; after a 200, harmless
            time.sleep(max(0.0, 9 - (time.monotonic() - frozen)))
        finally:
            if how == "stop":
                os.kill(sc.redis.proc.pid, signal.SIGCONT)
        feeder.join()
        sc.client.finish(SnsLikeClient.GIVE_UP + 30)
        if sc.spool:
            self.note_spool(sc, "messages were spooled while Redis was stuck")

    def sc_cert_host(self, sc, mode):
        """The signing-cert host down, slow or answering garbage for 10 s."""
        host = FlakyCertHost(mode)
        self.addCleanup(host.close)
        sc.redis.start()
        sc.start_mailtrail()
        feeder = sc.load(50, rate=5, cert_url=host.url())
        time.sleep(10)
        host.set_mode("ok")
        feeder.join()
        sc.client.finish(SnsLikeClient.GIVE_UP + 30)
        failed = sc.client.answers[503] + sc.client.answers["timeout"]
        sc.expect.append(("503s or timeouts while the cert host failed", failed > 0))

    def sc_kill9(self, sc):
        """mailtrail killed with kill -9 mid-load (no spool: a 200 is only
        sent once Redis has the message) and started again."""
        sc.redis.start()
        sc.start_mailtrail()
        feeder = sc.load(150, rate=15)
        time.sleep(4)
        self.kill9(sc.m)
        time.sleep(1)
        sc.start_mailtrail(same_port=True)
        feeder.join()
        sc.client.finish(SnsLikeClient.GIVE_UP + 30)
        sc.expect.append(("refused connections while it was down",
                          sc.client.answers["error"] > 0))

    def sc_kill9_spooling(self, sc):
        """mailtrail killed with kill -9 mid-load while it spools (Redis
        down), started again on the same spool."""
        sc.start_mailtrail()  # Redis not started: everything is spooled
        feeder = sc.load(200, rate=20)
        time.sleep(4)
        self.kill9(sc.m)
        time.sleep(1)
        m = sc.start_mailtrail(same_port=True)
        feeder.join()
        sc.client.finish(SnsLikeClient.GIVE_UP + 30)
        left = int(self.log_lines(m, "spool open")[0]["records"])
        sc.notes.append(f"restart found {left} records")
        sc.expect.append(("the restart found the killed process's records", left > 0))
        sc.redis.start()
        self.wait_drained(m)

    def sc_kill9_draining(self, sc):
        """mailtrail killed with kill -9 while it drains, started again on
        the same spool."""
        sc.start_mailtrail()
        sc.load(1000, rate=1000).join()
        sc.client.finish(SnsLikeClient.GIVE_UP + 30)
        sc.redis.start()
        deadline = time.monotonic() + 60 * TIME_FACTOR
        while self.metrics(sc.m)["mailtrail_spool_drained_total"] == 0:
            self.assertLess(time.monotonic(), deadline, "the drainer never started")
            time.sleep(0.005)
        self.kill9(sc.m)
        before = len(stored_ids(sc.redis.client))
        sc.notes.append(f"killed after {before} of 1000 were stored")
        sc.expect.append(("killed mid-drain", 0 < before < 1000))
        m = sc.start_mailtrail(same_port=True)
        self.wait_drained(m)
        redrained = sum(1 for x in self.log_lines(m, "spool drained")
                        if x["outcome"] == "duplicate")
        sc.notes.append(f"re-drained {redrained} as duplicates")

    def test_faults(self):
        plan = [
            ("redis killed 30 s, no spool", False, self.sc_redis_killed),
            ("redis killed 30 s, spool", True, self.sc_redis_killed),
            ("redis CLIENT PAUSE 9 s", False, lambda sc: self.sc_redis_stuck(sc, "pause")),
            ("redis SIGSTOP 9 s, spool", True, lambda sc: self.sc_redis_stuck(sc, "stop")),
            ("cert host down", False, lambda sc: self.sc_cert_host(sc, "down")),
            ("cert host slow", False, lambda sc: self.sc_cert_host(sc, "slow")),
            ("cert host garbage", False, lambda sc: self.sc_cert_host(sc, "garbage")),
            ("kill -9 mid-load, no spool", False, self.sc_kill9),
            ("kill -9 while spooling", True, self.sc_kill9_spooling),
            ("kill -9 while draining", True, self.sc_kill9_draining),
        ]
        results, errors = {}, {}

        def run(name, spool, fn):
            sc = Scenario(self, name.split(",")[0].replace(" ", "-") + ("-spool" if spool else ""),
                          spool)
            try:
                fn(sc)
                results[name] = (sc, sc.counts())
            except BaseException as e:  # noqa: BLE001 - reported below
                errors[name] = e

        threads = [threading.Thread(target=run, args=p, daemon=True) for p in plan]
        for t in threads:
            t.start()
        for t in threads:
            t.join(240 * TIME_FACTOR)

        print(f"\n    {'scenario':30} {'sent':>5} {'acknowledged':>12} {'stored':>6} "
              f"{'duplicates':>10}  answers")
        for name, _, _ in plan:
            if name in results:
                sc, c = results[name]
                print(f"    {name:30} {c['sent']:5} {c['acknowledged']:12} {c['stored']:6} "
                      f"{c['duplicates']:10}  {c['answers']}")
                for note in sc.notes:
                    print(f"    {'':30} {note}")
            else:
                print(f"    {name:30} did not finish: {errors.get(name)!r}")
        for name, _, _ in plan:
            with self.subTest(scenario=name):
                if name not in results:
                    raise errors.get(name) or AssertionError("scenario did not finish")
                sc, c = results[name]
                self.assertEqual(c["duplicates"], 0, "a MessageId stored twice")
                self.assertEqual((c["rejected"], c["given_up"]), (0, 0),
                                 "every delivery must end acknowledged")
                self.assertEqual(c["acknowledged"], c["sent"])
                self.assertEqual(c["acked_ids"], c["stored_ids"],
                                 "acknowledged and stored MessageIds differ")
                for what, ok in sc.expect:
                    self.assertTrue(ok, what)


if __name__ == "__main__":
    sys.exit(harness.suite_main(sys.modules[__name__], sys.argv))
