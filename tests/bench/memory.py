#!/usr/bin/env python3
"""mailtrail Redis memory benchmark: bytes of Redis per stored event.

    python3 tests/bench/memory.py [options] MAILTRAIL_BINARY TESTS_DATA_DIR

Loads the typical mix of issue 12 THROUGH MAILTRAIL (signed SNS
notifications posted to /sns with wrk, as tests/bench/bench.py does) into a
private redis-server and reads its `used_memory` before and after:

  --recipients (default 20,000) recipients, each sent one mail: a Send, then
  a Delivery (95%) or a Bounce (5%, two thirds of them permanent), an Open
  (45%), a Click (10%) and a Complaint (5%): 2.6 events a recipient on
  average, one recipient per notification, in time order (the SES
  configuration-set event templates of tests/data, fresh ids and times).

The redis-server runs with the encoding thresholds that README recommends
(--redis-settings recommended, the default) or Redis's own defaults
(--redis-settings default).  Prints bytes per event and per recipient, the
key count, and, like bench.py, the CPU seconds of mailtrail and redis-server
per 1,000 notifications.  Every posted notification is checked in Redis.
"""

import argparse
import atexit
import hashlib
import json
import os
import random
import re
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import bench  # noqa: E402  (Signer, write_bodies, Mailtrail, wrk_run, ...)
import harness  # noqa: E402

TOPIC = harness.SnsSigner.TOPIC
TEMPLATES = {k: f"ses/awsdoc-event-{k.lower()}.json"
             for k in ("Send", "Delivery", "Bounce", "Open", "Click", "Complaint")}
# What README's "Redis memory" section recommends (and deploy/ sets).
RECOMMENDED = harness.RedisServer.RECOMMENDED.strip().replace("\n", ", ")


class MixBodies:
    """Notification i (deterministic in the seed) and what it must leave in
    Redis, in the shape bench.wrk_run() expects."""

    def __init__(self, data_dir, cert_url, recipients, now_ms, seed):
        self.templates = {}
        for kind, path in TEMPLATES.items():
            with open(os.path.join(data_dir, path)) as f:
                self.templates[kind] = json.load(f)
        self.cert_url = cert_url
        self.unsub = cert_url.rsplit("/", 1)[0] + "/?Action=Unsubscribe&SubscriptionArn=" + TOPIC
        self.seed = seed
        rnd = random.Random(seed)
        span = recipients * 500  # one mail every half second
        base = now_ms - span - 3_600_000
        events = []
        for r in range(recipients):
            t = base + r * 500 + rnd.randrange(500)
            events.append((t, r, "Send", 0))
            if rnd.random() < 0.95:
                events.append((t + 1500 + rnd.randrange(3000), r, "Delivery", 0))
            else:
                events.append((t + 1200 + rnd.randrange(3000), r, "Bounce",
                               1 if rnd.random() < 2 / 3 else 0))
            if rnd.random() < 0.45:
                t_open = t + 60_000 + rnd.randrange(1_200_000)
                events.append((t_open, r, "Open", 0))
                if rnd.random() < 0.10 / 0.45:
                    events.append((t_open + 5000 + rnd.randrange(60_000), r, "Click", 0))
            if rnd.random() < 0.05:
                events.append((t + 600_000 + rnd.randrange(600_000), r, "Complaint", 0))
        events.sort()
        self.events = events
        self.recipients = recipients
        self.mail_ts = {}

    def address(self, r):
        return f"user{r:06d}@customer{r % 97}.example"

    def expected(self, i):
        t, r, kind, _ = self.events[i]
        return kind, f"{self.seed:08x}-0000-4000-8000-{i:012d}", [self.address(r)]

    def one(self, i, signer):
        t, r, kind, permanent = self.events[i]
        _, msg_id, rcpts = self.expected(i)
        ses = json.loads(json.dumps(self.templates[kind]))
        mail = ses["mail"]
        send_t = t if kind == "Send" else t - 2000  # near enough: not indexed
        mail["timestamp"] = harness.iso_ms(bench._utc(send_t))
        h = hashlib.sha1(f"{self.seed} {r}".encode()).hexdigest()  # SES's own form
        mail["messageId"] = (f"0100018c{h[:8]}-{h[8:16]}-{h[16:20]}-4{h[21:24]}-{h[24:28]}-"
                             f"{h[28:40]}-000000")
        mail["destination"] = rcpts
        mail.get("commonHeaders", {})["to"] = rcpts
        iso = harness.iso_ms(bench._utc(t))
        obj = ses.get(kind.lower())
        if kind == "Delivery":
            obj["timestamp"], obj["recipients"] = iso, rcpts
        elif kind == "Bounce":
            obj["timestamp"] = iso
            if not permanent:
                obj["bounceType"], obj["bounceSubType"] = "Transient", "MailboxFull"
            obj["bouncedRecipients"] = [
                {"emailAddress": a, "action": "failed", "status": "5.1.1",
                 "diagnosticCode": f"smtp; 550 5.1.1 <{a}>... User unknown"} for a in rcpts]
        elif kind == "Complaint":
            obj["timestamp"] = iso
            obj["complainedRecipients"] = [{"emailAddress": a} for a in rcpts]
        elif kind in ("Open", "Click"):
            obj["timestamp"] = iso
        version = "1" if i % 2 else "2"
        msg = {"Type": "Notification", "MessageId": msg_id, "TopicArn": TOPIC,
               "Message": json.dumps(ses, separators=(",", ":")),
               "Timestamp": harness.iso_ms(bench._utc(t + 300)), "SignatureVersion": version,
               "Signature": "", "SigningCertURL": self.cert_url, "UnsubscribeURL": self.unsub}
        tbs = harness.string_to_sign(msg)
        msg["Signature"] = signer.sign(tbs, version)
        return json.dumps(msg), tbs


def info_memory(redis):
    text = redis("INFO", "memory")
    text = text.decode() if isinstance(text, bytes) else text
    return {k: v for k, _, v in (line.partition(":") for line in text.splitlines()) if v}


def sample_keys(redis, pattern):
    """Of up to 2,000 keys matching pattern (SCAN): how many have each
    encoding, and their average MEMORY USAGE."""
    enc, cursor, seen, usage = {}, b"0", 0, 0
    while seen < 2000:
        cursor, keys = redis("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        for k in keys:
            e = redis("OBJECT", "ENCODING", k)
            e = e.decode() if isinstance(e, bytes) else e
            enc[e] = enc.get(e, 0) + 1
            usage += int(redis("MEMORY", "USAGE", k, "SAMPLES", "0"))
            seen += 1
        if cursor in (b"0", "0"):
            break
    return f"{enc}, MEMORY USAGE {usage / max(seen, 1):.0f} bytes on average"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("data_dir")
    ap.add_argument("--recipients", type=int, default=20000)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--redis-settings", choices=("recommended", "default"),
                    default="recommended")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    for c in ("wrk", "redis-server", "redis-cli"):
        harness.require_command(c)
    harness.install_signal_handlers()
    atexit.register(harness.kill_all_children)

    b = bench.Bench()
    b.runs, b.commands, b.mt_tls = [], [], None
    b.nproc = os.cpu_count() or 1
    b.env = env = harness.Environment("mailtrail-mem-")
    b.tmp = env.tmp
    atexit.register(env.close)
    if a.redis_settings == "default":
        # The harness's redis-server runs with the recommended thresholds.
        old = env.redis_server
        old.stop()
        env.redis_server = harness.RedisServer(old.dir + "-defaults", port=old.port,
                                               redis_defaults=True).start()
        env.redis = env.redis_server.client
    cert_url = env.signer.cert_url()
    mt = bench.Mailtrail(binary, ["--listen", f"{harness.LOOPBACK}:0", "--api-listen", "off",
                                  "--redis", env.redis_url, "--cert-host-pattern",
                                  "^" + re.escape(env.sns.authority) + "$", "--ca-file",
                                  env.pki.ca_cert, "--topic", TOPIC, "--log-format", "json"],
                         b.tmp, env.child_env(), "mailtrail")
    b.gen = MixBodies(a.data_dir, cert_url, a.recipients,
                      harness.iso_to_ms(harness.now_iso()), a.seed)
    n = len(b.gen.events)
    b.args = argparse.Namespace(bodies=n, rate_seconds=0)
    t0 = time.monotonic()
    b.bodies = os.path.join(b.tmp, "bodies.txt")
    bench.write_bodies(b.gen, env.pki.signing_key, n, b.bodies, b.nproc)
    print(f"signed {n} notifications ({n / a.recipients:.2f} events a recipient) in "
          f"{time.monotonic() - t0:.1f}s", flush=True)

    signer = bench.Signer(env.pki.signing_key)  # warm-up: fetches the certificate
    warm = MixBodies(a.data_dir, cert_url, 1, harness.iso_to_ms(harness.now_iso()), a.seed + 1)
    r = harness.http_request(mt.port, "POST", "/sns", warm.one(0, signer)[0].encode(),
                             {"Content-Type": "text/plain; charset=UTF-8",
                              "x-amz-sns-message-type": "Notification"})
    if r.status != 200:
        raise bench.CheckFailed(f"warm-up POST answered {r.status} {r.body!r}\n{mt.tail()}")
    env.redis("FLUSHALL")
    before = int(info_memory(env.redis)["used_memory"])
    run = bench.wrk_run(b, mt, "load", a.conns)
    mem = info_memory(env.redis)
    after = int(mem["used_memory"])
    keys = env.redis("DBSIZE")
    zenc = sample_keys(env.redis, bench.PREFIX + "rcpt:*")
    henc = sample_keys(env.redis, bench.PREFIX + "counts:*")
    members = env.redis("ZRANGE", bench.PREFIX + "rcpt:{" + b.gen.address(0) + "}", 0, -1)
    mt.stop()
    per_k = lambda cpu: cpu * 1000 / run.sent  # noqa: E731
    cfg = RECOMMENDED if a.redis_settings == "recommended" else "Redis defaults"
    print()
    print(f"machine: {bench.cpu_model()}, {b.nproc} cores; redis-server "
          f"{mem.get('redis_version', '') or harness.run(['redis-server', '--version']).stdout.decode().split()[2]}"
          f" ({cfg}); mailtrail {binary} ({bench.build_type(binary)})")
    print(f"events: {run.sent} notifications, one event each, {a.recipients} recipients "
          f"(Send/Delivery/Bounce/Open/Click/Complaint); keys {keys}; rcpt sets {zenc}, "
          f"counts hashes {henc}")
    print(f"members of {b.gen.address(0)}: " + ", ".join(f"{len(m)} bytes" for m in members)
          + f"; the first: {members[0].decode(errors='replace') if members else None}")
    print(f"Redis used_memory: {before:,} before, {after:,} after: "
          f"{(after - before) / run.sent:,.0f} bytes per event, "
          f"{(after - before) / a.recipients:,.0f} per recipient")
    print(f"CPU seconds per 1,000 notifications: mailtrail {per_k(run.cpu_mt):.3f}, "
          f"redis-server {per_k(run.cpu_redis):.3f}")
    shutil.rmtree(b.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bench.CheckFailed as e:
        print(f"\nMEMORY BENCHMARK CHECK FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
