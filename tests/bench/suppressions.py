#!/usr/bin/env python3
"""Bulk suppression check benchmark: POST /v1/suppressions/check with 1,000
addresses a request, 8 concurrent callers (issue 14's target: p99 at most
10 ms on this machine).

    python3 tests/bench/suppressions.py [options] MAILTRAIL_BINARY

A private redis-server (the integration harness's) is loaded with counts
hashes for --recipients addresses (a quarter complaints, a quarter
permanent bounces, half not suppressed; the deciding events spread over
the last 95 days, so that some are near or past the end of the default
90-day retention window and the check verifies them in their counts
hashes), in the format the store's put script writes, as data written
before the suppression index; mailtrail runs against it with a token, and
the first check starts the index's rebuild, which the benchmark waits for
(--no-index: it does not wait, and the run reads the counts hashes); wrk
(tests/bench/check.lua) drives --conns keep-alive connections on as many
threads for --seconds, each request a body of 1,000 addresses drawn from
the pool (a tenth of them unknown, a few invalid).  Before the run one
answer is checked against what was loaded (a fast wrong answer is not a
result).  --candidates F: that share of the not-suppressed half instead has
soft bounces in its timeline (a real-shaped EVENT a bounce, Transient 4.2.2,
a day apart; one in two has five: suppressed as Bounce/Repeated, the others
three) and the index entry ingest writes for a soft bounce (code 3): each
such address in a body is a candidate the check verifies on its timeline
(README, "Bulk suppression check").  Prints the latency percentiles and requests a second; exits 1
when p99 is over --p99-ms or any answer was not 200.
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
DAY = 86400_000


def resp(*args):
    parts = [str(a).encode() for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def supp_bucket(address):
    """The suppression index's bucket (store.h, store_supp_bucket)."""
    h = 2166136261
    for c in address.encode():
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h % 64


# The index's marker under the default policy (policy.c, policy_digest).
MARKER = "mailtrail:suppidx:ready:2-781565ed"


def cpu_ms(pid):
    """User and system CPU of a process so far, in ms."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--recipients", type=int, default=200_000)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--bodies", type=int, default=64)
    ap.add_argument("--p99-ms", type=float, default=10.0)
    ap.add_argument("--candidates", type=float, default=0.0,
                    help="share of the not-suppressed half with soft bounces (0..1)")
    ap.add_argument("--no-index", action="store_true",
                    help="do not wait for the suppression index's rebuild")
    a = ap.parse_args()
    for c in ("wrk", "redis-server", "redis-cli"):
        harness.require_command(c)
    harness.install_signal_handlers()
    tmp = tempfile.mkdtemp(prefix="mailtrail-bench-supp-")
    rs = harness.RedisServer(os.path.join(tmp, "redis")).start()
    m = None
    try:
        rnd = random.Random(14)
        pool, want, out = [], {}, bytearray()
        t0 = int(time.time() * 1000) - 95 * DAY
        for i in range(a.recipients):
            addr = f"user{i}.{rnd.randrange(10**6)}@example{i % 50}.com"
            pool.append(addr)
            key = f"mailtrail:counts:{{{addr}}}"
            if i % 4 == 0:
                out += resp("HSET", key, "type:Complaint", 1, "suppress:Complaint", 1,
                            "last:Complaint", t0 + rnd.randrange(95 * DAY))
                want[addr] = "Complaint"
            elif i % 4 == 1:
                out += resp("HSET", key, "type:Bounce", 1, "suppress:Bounce/Permanent", 1,
                            "last:Bounce/Permanent", t0 + rnd.randrange(95 * DAY))
                want[addr] = "Bounce/Permanent"
            elif i % 4 == 2 and rnd.random() < a.candidates:
                n = 5 if rnd.random() < 0.5 else 3
                now = int(time.time() * 1000) - 3600_000
                out += resp("HSET", key, "type:Bounce", n)
                for j in range(n):
                    ms = now - j * DAY
                    ev = {"id": f"bench-{i}-{j}", "type": "Bounce", "recipient": addr,
                          "detail": {"bounceType": "Transient", "bounceSubType": "General",
                                     "status": "4.2.2",
                                     "diagnosticCode": "smtp; 452 4.2.2 mailbox full"}}
                    out += resp("ZADD", f"mailtrail:rcpt:{{{addr}}}", ms,
                                json.dumps(ev, separators=(",", ":")))
                out += resp("HSET", f"mailtrail:suppidx:{{{supp_bucket(addr)}}}", addr,
                            now * 32 + 3)
                want[addr] = "Bounce/Repeated" if n == 5 else None
            else:
                out += resp("HSET", key, "type:Delivery", 2)
                want[addr] = None
        p = subprocess.run(["redis-cli", "-p", str(rs.port), "--pipe"], input=bytes(out),
                           capture_output=True)
        if p.returncode != 0 or b"errors: 0" not in p.stdout:
            raise SystemExit(f"loading failed: {p.stdout!r} {p.stderr!r}")

        bodies = []
        for _ in range(a.bodies):
            body = [rnd.choice(pool) if rnd.random() < 0.9 else
                    f"unknown{rnd.randrange(10**9)}@example.net" for _ in range(995)]
            body += ["not an address", "", "Someone <" + rnd.choice(pool).upper() + ">",
                     "a@", "x" * 300]
            bodies.append(body)
        bodies_file = os.path.join(tmp, "bodies.ndjson")
        with open(bodies_file, "w") as f:
            for b in bodies:
                f.write(json.dumps(b) + "\n")

        m = harness.Mailtrail(a.binary, ["--listen", "127.0.0.1:0", "--api-listen",
                                         "127.0.0.1:0", "--redis",
                                         f"redis://127.0.0.1:{rs.port}/0", "--api-token",
                                         TOKEN, "--any-topic"],
                              env=harness.guarded_env(1, {"MAILTRAIL_TOPIC": ""}))
        m.start()
        port = m.wait_listen_port("api listening")
        # Correctness first.
        r = harness.http_request(port, "POST", "/v1/suppressions/check",
                                 body=json.dumps(bodies[0]),
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        if r.status != 200:
            raise SystemExit(f"check answered {r!r}")
        res = r.json()["results"]
        for given, got in zip(bodies[0][:995], res):
            w = want.get(given)
            if got.get("reason") != w or got.get("suppressed") != (w is not None):
                raise SystemExit(f"wrong answer for {given}: {got}, want {w}")
        if [("error" in x) for x in res[995:]] != [True, True, False, True, True]:
            raise SystemExit(f"wrong answers for the invalid entries: {res[995:]}")
        if not a.no_index:
            began = time.monotonic()
            while rs.client("EXISTS", MARKER) != 1:
                if time.monotonic() - began > 300:
                    raise SystemExit("the suppression index was not rebuilt in 300 s")
                time.sleep(0.1)
            print(f"suppression index rebuilt from {a.recipients} counts hashes in "
                  f"{time.monotonic() - began:.1f} s")
            # The same answer from the index.
            r = harness.http_request(port, "POST", "/v1/suppressions/check",
                                     body=json.dumps(bodies[0]),
                                     headers={"Authorization": f"Bearer {TOKEN}"})
            if r.status != 200 or r.json()["results"] != res:
                raise SystemExit(f"the index answers otherwise: {r!r}")
        failed = False
        for conns in sorted({1, a.conns}):
            cpu0 = (cpu_ms(m.proc.pid), cpu_ms(rs.proc.pid))
            cmd = ["wrk", "-t", str(conns), "-c", str(conns), "-d", f"{a.seconds}s",
                   "--timeout", "5s", "-s", os.path.join(HERE, "check.lua"),
                   f"http://127.0.0.1:{port}", "--", bodies_file, TOKEN]
            w = subprocess.run(cmd, capture_output=True, text=True)
            cpu1 = (cpu_ms(m.proc.pid), cpu_ms(rs.proc.pid))
            if w.returncode != 0:
                raise SystemExit(f"wrk failed: {w.stderr}")
            done = int(re.search(r"(\d+) requests in", w.stdout).group(1))
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", w.stdout).group(1))
            pct = {k: float(v) for k, v in re.findall(r"^p([\d.]+) ([\d.]+) ms", w.stdout, re.M)}
            non200 = int(re.search(r"^non-200 (\d+)", w.stdout, re.M).group(1))
            print(f"bulk check, 1,000 addresses a request, {conns} caller(s), "
                  f"{a.recipients} recipients in Redis, candidates {a.candidates:g}: p50 {pct['50']:.2f} ms, "
                  f"p90 {pct['90']:.2f} ms, p99 {pct['99']:.2f} ms, {rps:.0f} requests/s; "
                  f"CPU a request: mailtrail {(cpu1[0] - cpu0[0]) / max(done, 1):.2f} ms, "
                  f"redis-server {(cpu1[1] - cpu0[1]) / max(done, 1):.2f} ms; "
                  f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
            if non200:
                print(f"FAIL: {non200} answers not 200")
                failed = True
            if conns == a.conns and pct["99"] > a.p99_ms:
                print(f"FAIL: p99 {pct['99']:.2f} ms over {a.p99_ms} ms")
                failed = True
        return 1 if failed else 0
    finally:
        if m is not None:
            m.stop()
        rs.stop()
        harness.kill_all_children()


if __name__ == "__main__":
    sys.exit(main())
