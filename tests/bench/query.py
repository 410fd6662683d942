#!/usr/bin/env python3
"""mailtrail query benchmark: pages of a 100,000-event recipient.

    python3 tests/bench/query.py [options] MAILTRAIL_BINARY TESTS_DATA_DIR

(tests/bench/run-query builds a release binary and calls this.)  Like
bench.py, everything runs on 127.0.0.1 through the integration harness: a
private redis-server, the local HTTPS "SNS" host serving the signing
certificate, and mailtrail with its query API on a loopback port.

1. Loads one recipient with --events distinct notifications (default
   100,000: STORE_RCPT_EVENTS_MAX, the most one recipient holds) through
   mailtrail itself, the way production data arrives: signed SNS
   Notifications POSTed to /sns by wrk (bench.py's post.lua), so Redis holds
   exactly what mailtrail writes (members, counts, and whatever index its
   store script keeps).  Mix: 80% Delivery, 19.5% Bounce, 0.5% Complaint,
   event times 7 ms apart.  Checks every one is in Redis.
2. For each query below, drives GET with wrk (get.lua) over --conns
   keep-alive connections for --seconds, then over one connection for
   --alone-seconds, and reads: latency p50/p99; Redis's own time per request
   (INFO commandstats, reset before each run: the sum of usec of every
   command, divided by the requests); redis-server's and mailtrail's CPU
   per request (utime+stime from /proc/PID/stat over the run, divided by
   the requests).  Every answer must be 200 (wrk counts the others), and
   one answer per query is checked: the page's size and types.
   Queries: the default page (50 events, no filter); type=Delivery (the
   common type), type=Bounce and type=Complaint (the rare one), limit 50;
   and type=Complaint from the middle of the timeline (before=).

It prints one line per figure; the exit status is 1 when a check failed.
"""

import argparse
import atexit
import json
import os
import random
import re
import shlex
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import bench  # noqa: E402  (Bodies, Signer, write_bodies, wrk_run, cpu_seconds, ...)
import harness  # noqa: E402

ADDRESS = "busy.recipient@bench.example"
LOOPBACK = harness.LOOPBACK


class OneRecipient(bench.Bodies):
    """bench.Bodies, every notification for ADDRESS, the query mix."""

    def expected(self, i):
        rnd = random.Random(self.seed * 1000003 + i)
        r = rnd.random()
        kind = "Complaint" if r < 0.005 else "Bounce" if r < 0.2 else "Delivery"
        return kind, f"{self.seed:08x}-0000-4000-8000-{i:012d}", [ADDRESS]


class Api(bench.Mailtrail):
    """bench.Mailtrail that also reads the port of --api-listen."""

    def __init__(self, *args):
        super().__init__(*args)
        deadline = time.monotonic() + 10
        self.api_port = None
        while self.api_port is None and time.monotonic() < deadline:
            with open(self.out, errors="replace") as f:
                m = re.search(r'"msg":"api listening".*?"listen":"127\.0\.0\.1:(\d+)"', f.read())
            if m:
                self.api_port = int(m.group(1))
            else:
                time.sleep(0.05)
        if self.api_port is None:
            raise harness.HarnessError(f"no api listening line:\n{self.tail()}")


def redis_command_usec(env):
    """Sum of usec over every command in INFO commandstats, and calls."""
    text = env.redis("INFO", "commandstats").decode()
    usec = calls = 0
    for m in re.finditer(r"^cmdstat_(\w+):calls=(\d+),usec=(\d+),", text, re.M):
        if m.group(1) in ("info", "config"):
            continue
        calls += int(m.group(2))
        usec += int(m.group(3))
    return usec, calls


def measure(b, label, path, conns, seconds):
    env, mt = b.env, b.mt
    env.redis("CONFIG", "RESETSTAT")
    cmd = ["wrk", "-t", str(min(conns, b.nproc)), "-c", str(conns), "-d", f"{seconds}s",
           "--timeout", "30s", "-s", os.path.join(HERE, "get.lua"),
           f"http://{LOOPBACK}:{mt.api_port}", "--", path]
    b.commands.append(shlex.join(cmd))
    cpu0 = (bench.cpu_seconds(mt.proc.pid), bench.cpu_seconds(env.redis_server.proc.pid))
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL)
    cpu1 = (bench.cpu_seconds(mt.proc.pid), bench.cpu_seconds(env.redis_server.proc.pid))
    text = p.stdout.decode(errors="replace")
    m = re.search(r"^QUERY_RESULT (\{.*\})$", text, re.M)
    if p.returncode != 0 or not m:
        raise bench.CheckFailed(f"wrk failed ({p.returncode}): {shlex.join(cmd)}\n{text}")
    w = json.loads(m.group(1))
    n = w["requests"]
    errors = {k: w[k] for k in ("connect", "read", "write", "timeout") if w[k]}
    if n == 0 or w["non2xx"] or errors:
        raise bench.CheckFailed(f"{label}: {n} requests, {w['non2xx']} not 2xx, "
                                f"socket errors {errors}")
    usec, calls = redis_command_usec(env)
    r = {"label": label, "conns": conns, "requests": n, "rps": n / (w["duration_us"] / 1e6),
         "p50": w["p50_us"] / 1000, "p99": w["p99_us"] / 1000, "max": w["max_us"] / 1000,
         "redis_cmd_ms": usec / n / 1000, "redis_calls": calls / n,
         "redis_cpu_ms": (cpu1[1] - cpu0[1]) / n * 1000,
         "mt_cpu_ms": (cpu1[0] - cpu0[0]) / n * 1000}
    # Requests wrk gave up on may still be running: let mailtrail finish
    # them before the next run counts its CPU and connections.
    time.sleep(min(15.0, r["max"] / 1000 + 0.5))
    bench.log(f"  {label}, {conns} connection{'s' if conns > 1 else ''}: {n} requests "
              f"({r['rps']:,.0f}/s); p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, max "
              f"{r['max']:.2f} ms; Redis {r['redis_cmd_ms']:.3f} ms of commands "
              f"({r['redis_calls']:.1f} a request), redis-server CPU {r['redis_cpu_ms']:.3f} "
              f"ms, mailtrail CPU {r['mt_cpu_ms']:.3f} ms a request")
    return r


def check_answer(b, path, etype, limit, before=None):
    """One answer: 200, `limit` events (the set has enough of each type),
    newest first, of the type asked, below before."""
    r = harness.http_request(b.mt.api_port, "GET", path)
    if r.status != 200:
        raise bench.CheckFailed(f"GET {path}: {r.status} {r.body[:200]!r}")
    body = r.json()
    ev = body["events"]
    times = [harness.iso_to_ms(e["time"]) for e in ev]
    ok = (len(ev) == limit and times == sorted(times, reverse=True)
          and (etype is None or {e["type"] for e in ev} == {etype})
          and (before is None or max(times) < before)
          and body["next_before"] == times[-1] and body["recipient"] == ADDRESS)
    if not ok:
        raise bench.CheckFailed(f"GET {path}: unexpected page: {len(ev)} events, "
                                f"types {sorted({e['type'] for e in ev})}, next_before "
                                f"{body['next_before']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("data_dir")
    ap.add_argument("--events", type=int, default=100000,
                    help="events of the one recipient (default 100000)")
    ap.add_argument("--conns", type=int, default=32, help="keep-alive connections (default 32)")
    ap.add_argument("--seconds", type=int, default=10, help="length of each run (default 10)")
    ap.add_argument("--alone-seconds", type=int, default=3,
                    help="length of each one-connection run (default 3; 0: none)")
    ap.add_argument("--seed", type=int, default=1, help="body generator seed")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()

    b = bench.Bench()
    b.args, b.runs, b.commands = a, [], []
    a.bodies, a.rate_seconds = a.events, 0
    b.nproc = os.cpu_count() or 1
    binary = os.path.abspath(a.binary)
    for c in ("wrk", "redis-server", "redis-cli"):
        harness.require_command(c)
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    harness.install_signal_handlers()
    atexit.register(harness.kill_all_children)
    b.env = env = harness.Environment("mailtrail-qbench-")
    b.tmp = env.tmp
    if a.keep:
        env.tmp = os.path.join(env.tmp, "nonexistent")  # env.close() removes nothing
    atexit.register(env.close)
    cert_url = env.signer.cert_url()
    b.mt_tls = None
    b.mt = b_mt = Api(binary, ["--listen", f"{LOOPBACK}:0", "--api-listen", f"{LOOPBACK}:0",
                               "--redis", env.redis_url, "--cert-host-pattern",
                               "^" + re.escape(env.sns.authority) + "$",
                               "--ca-file", env.pki.ca_cert, "--topic", bench.TOPIC,
                               "--max-connections-per-ip", "0", "--log-format", "json"],
                      b.tmp, env.child_env(), "mailtrail")
    bench.log(f"mailtrail pid {b_mt.proc.pid} ({bench.build_type(binary)}), "
              f"redis-server pid {env.redis_server.proc.pid}; {b.nproc} CPUs "
              f"({bench.cpu_model()}); load average at start {loadavg}")

    # --- load ---------------------------------------------------------------------------
    t0 = time.monotonic()
    now = harness.iso_to_ms(harness.now_iso())
    b.gen = OneRecipient(a.data_dir, cert_url, 1, now - 7 * a.events, a.seed)
    b.bodies = os.path.join(b.tmp, "bodies.txt")
    bench.write_bodies(b.gen, env.pki.signing_key, a.events, b.bodies, b.nproc)
    bench.log(f"signed {a.events} notifications for {ADDRESS} in "
              f"{time.monotonic() - t0:.1f}s")
    r = harness.http_request(b_mt.port, "POST", "/sns", open(b.bodies, "rb").readline().strip(),
                             {"Content-Type": "text/plain; charset=UTF-8",
                              "x-amz-sns-message-type": "Notification"})
    if r.status != 200:
        raise bench.CheckFailed(f"warm-up POST answered {r.status}\n{b_mt.tail()}")
    t0 = time.monotonic()
    bench.wrk_run(b, b_mt, "load", a.conns)
    key = f"{bench.PREFIX}rcpt:{{{ADDRESS}}}"
    held = env.redis("ZCARD", key)
    counts = {k.decode(): int(v) for k, v in
              zip(*[iter(env.redis("HGETALL", f"{bench.PREFIX}counts:{{{ADDRESS}}}"))] * 2)}
    mem = env.redis("MEMORY", "USAGE", key, "SAMPLES", "0")
    bench.log(f"loaded through mailtrail in {time.monotonic() - t0:.1f}s: {held} events in "
              f"{key} ({mem / held:.0f} bytes each), counts {counts}")
    if held != a.events:
        raise bench.CheckFailed(f"{held} events stored, {a.events} sent")
    index_keys = [k for k in env.redis("KEYS", f"{bench.PREFIX}bytype:*")]
    index_bytes = sum(env.redis("MEMORY", "USAGE", k, "SAMPLES", "0") for k in index_keys)
    bench.log(f"type index: {len(index_keys)} keys, {index_bytes / held:.0f} bytes an event")

    # --- queries ------------------------------------------------------------------------
    q = urllib.parse.quote(ADDRESS, safe="@")
    base = f"/v1/recipients/{q}/events"
    mid = now - 7 * a.events // 2
    cases = [("default page (50, no filter)", base, None, 50, None),
             ("type=Delivery&limit=50 (80%)", base + "?type=Delivery&limit=50", "Delivery",
              50, None),
             ("type=Bounce&limit=50 (19.5%)", base + "?type=Bounce&limit=50", "Bounce", 50,
              None),
             ("type=Complaint&limit=50 (0.5%)", base + "?type=Complaint&limit=50",
              "Complaint", 50, None),
             ("type=Complaint&limit=50&before=<middle>",
              base + f"?type=Complaint&limit=50&before={mid}", "Complaint", 50, mid)]
    results = []
    for label, path, etype, limit, before in cases:
        check_answer(b, path, etype, limit, before)
        bench.log(label)
        row = [measure(b, label, path, a.conns, a.seconds)]
        if a.alone_seconds:
            row.append(measure(b, label, path, 1, a.alone_seconds))
        results.append(row)
    b_mt.stop()

    print()
    print(f"{a.events} events of one recipient; {a.conns} connections, {a.seconds} s each; "
          f"{bench.build_type(binary)}; {b.nproc} CPUs ({bench.cpu_model()})")
    print("| query | p50 / p99 ms, 32 conns | p50 ms alone | Redis ms a request "
          "| mailtrail CPU ms a request |")
    print("|---|---|---|---|---|")
    for row in results:
        r = row[0]
        alone = f"{row[1]['p50']:.2f}" if len(row) > 1 else "-"
        print(f"| {r['label']} | {r['p50']:.2f} / {r['p99']:.2f} | {alone} | "
              f"{r['redis_cmd_ms']:.3f} | {r['mt_cpu_ms']:.3f} |")
    print("wrk commands:")
    for c in b.commands:
        print("  " + c)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bench.CheckFailed as e:
        print(f"CHECK FAILED: {e}", file=sys.stderr)
        sys.exit(1)
