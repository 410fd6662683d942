#!/usr/bin/env python3
"""mailtrail deliverability API benchmark: 30 days of hourly counters.

    python3 tests/bench/health.py [options] MAILTRAIL_BINARY TESTS_DATA_DIR

Like query.py, everything runs on 127.0.0.1 through the integration
harness: a private redis-server and mailtrail with its query API on a
loopback port.

1. Seeds the counters straight into the key layout of README "Redis
   layout" (it is a benchmark of the reads; the writes are bench.py's):
   --days (30) UTC days ending with the current hour, for --identities (20)
   sending identities with all 11 count types in every hour, and
   --domains (1,000) recipient domains, each with events in 4 hours of each
   day (Send and Delivery, a permanent bounce in one domain of 7, a
   complaint in one of 50), and their :names sorted sets.  One HSET per
   day key, through redis-cli --pipe.
2. For each request below, drives GET with wrk (tests/bench/get.lua) over
   --conns keep-alive connections for --seconds, then over one connection
   for --alone-seconds, and reads latency p50/p99, Redis's own time per
   request (INFO commandstats: the sum of usec of every command over the
   requests) and mailtrail's CPU per request (query.py's measure()).  One
   answer of each is checked first (200, its size).
   Requests: GET /v1/health (the identities), /v1/health/series (one
   identity, 30 days, step hour, and step day), /v1/health/domains
   (window 30d and 24h), and /v1/health?dimension=domain (1,000 names).

It prints one line per figure and a Markdown table; the exit status is 1
when a check failed.
"""

import argparse
import atexit
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import bench  # noqa: E402
import harness  # noqa: E402
import query  # noqa: E402  (Api, measure)

HOUR = 3_600_000
DAY = 86_400_000
TYPES = ["Send", "Delivery", "Bounce/Permanent", "Bounce/Transient", "Bounce/Undetermined",
         "Complaint", "Reject", "DeliveryDelay", "Open", "Click", "Rendering Failure"]
LOOPBACK = harness.LOOPBACK


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def ymd(ms):
    return time.strftime("%Y%m%d", time.gmtime(ms // 1000))


def seed(path, prefix, now, days, identities, domains):
    """Writes the RESP commands of the counters to path; returns the
    number of hash fields."""
    first = now // DAY * DAY - (days - 1) * DAY
    last_hour = now // HOUR * HOUR
    fields_total = 0
    with open(path, "wb") as f:
        for d in range(days):
            day = first + d * DAY
            hours = [h for h in range(24) if day + h * HOUR <= last_hour]
            for code, names in (("i", identities), ("d", domains)):
                key = f"{prefix}stats:{{{code}:{ymd(day)}}}"
                fields, totals = {}, {}
                for n, name in enumerate(names):
                    if code == "i":
                        active = hours
                    else:
                        active = [h for h in ((n + d) % 24, (n * 7 + d) % 24, (n * 13 + 5) % 24,
                                              (n + 12) % 24) if h in hours]
                    for h in active:
                        if code == "i":
                            counts = {t: 1 + (n + h + i) % 9 for i, t in enumerate(TYPES)}
                            counts["Send"] = 200 + (n * h) % 50
                            counts["Delivery"] = 190 + (n * h) % 40
                        else:
                            counts = {"Send": 3 + (n + h) % 5, "Delivery": 3 + (n + h) % 4}
                            if n % 7 == 0:
                                counts["Bounce/Permanent"] = 1
                            if n % 50 == 0:
                                counts["Complaint"] = 1
                        for t, v in counts.items():
                            fields[f"{name}|{h:02d}|{t}"] = v
                            daily = f"{name}|*|{t}"
                            fields[daily] = fields.get(daily, 0) + v
                            totals[name] = totals.get(name, 0) + v
                if not fields:
                    continue
                fields_total += len(fields)
                items = list(fields.items())
                for i in range(0, len(items), 5000):
                    f.write(resp("HSET", key, *[x for kv in items[i:i + 5000] for x in kv]))
                f.write(resp("ZADD", key + ":names", *[x for name, s in totals.items()
                                                        for x in (s, name)]))
    return fields_total


def check(b, path, key, n):
    r = harness.http_request(b.mt.api_port, "GET", path)
    if r.status != 200:
        raise bench.CheckFailed(f"GET {path}: {r.status} {r.body[:300]!r}")
    body = r.json()
    if len(body[key]) != n:
        raise bench.CheckFailed(f"GET {path}: {len(body[key])} {key}, expected {n}")
    return len(r.body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("data_dir")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--identities", type=int, default=20)
    ap.add_argument("--domains", type=int, default=1000)
    ap.add_argument("--conns", type=int, default=8, help="keep-alive connections (default 8)")
    ap.add_argument("--seconds", type=int, default=5, help="length of each run (default 5)")
    ap.add_argument("--alone-seconds", type=int, default=3,
                    help="length of each one-connection run (default 3; 0: none)")
    a = ap.parse_args()

    b = bench.Bench()
    b.commands = []
    b.nproc = os.cpu_count() or 1
    binary = os.path.abspath(a.binary)
    for c in ("wrk", "redis-server", "redis-cli"):
        harness.require_command(c)
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    harness.install_signal_handlers()
    atexit.register(harness.kill_all_children)
    b.env = env = harness.Environment("mailtrail-hbench-")
    atexit.register(env.close)
    b.mt = mt = query.Api(binary, ["--listen", f"{LOOPBACK}:0", "--api-listen", f"{LOOPBACK}:0",
                                   "--redis", env.redis_url, "--topic", bench.TOPIC,
                                   "--max-connections-per-ip", "0", "--log-format", "json"],
                          env.tmp, env.child_env(), "mailtrail")
    bench.log(f"mailtrail pid {mt.proc.pid} ({bench.build_type(binary)}), redis-server pid "
              f"{env.redis_server.proc.pid}; {b.nproc} CPUs ({bench.cpu_model()}); load "
              f"average at start {loadavg}")

    now = int(time.time() * 1000)
    identities = [f"sender{i}.bench.example" for i in range(a.identities)]
    domains = [f"rcpt{i}.example" for i in range(a.domains)]
    t0 = time.monotonic()
    path = os.path.join(env.tmp, "seed.resp")
    nfields = seed(path, "mailtrail:", now, a.days, identities, domains)
    with open(path, "rb") as f:
        p = subprocess.run(["redis-cli", "-p", str(env.redis_server.port), "--pipe"], stdin=f,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0 or b"errors: 0" not in p.stdout:
        raise bench.CheckFailed(f"redis-cli --pipe: {p.stdout.decode(errors='replace')}")
    mem = env.redis("INFO", "memory").decode()
    used = re.search(r"^used_memory:(\d+)", mem, re.M).group(1)
    bench.log(f"seeded {a.days} days: {a.identities} identities x 11 types every hour, "
              f"{a.domains} domains in 4 hours a day: {nfields} hash fields, Redis "
              f"{int(used) / 1e6:.0f} MB, in {time.monotonic() - t0:.1f}s")

    first = now // DAY * DAY - (a.days - 1) * DAY
    hours = (now // HOUR * HOUR - first) // HOUR + 1
    series = f"/v1/health/series?name={identities[0]}&from={first}&to={now}"
    cases = [("GET /v1/health (20 identities, 30 days)", "/v1/health", "items", a.identities),
             (f"GET /v1/health/series step=hour ({hours} points)", series, "points", hours),
             (f"GET /v1/health/series step=day ({a.days} points)", series + "&step=day", "points",
              a.days),
             ("GET /v1/health/domains?window=30d", "/v1/health/domains?window=30d", "domains",
              min(20, (a.domains + 6) // 7)),
             ("GET /v1/health/domains?window=24h", "/v1/health/domains?window=24h", "domains",
              None),
             ("GET /v1/health?dimension=domain (1,000 names)",
              "/v1/health?dimension=domain&limit=1000", "items", a.domains)]
    results = []
    for label, p, key, n in cases:
        if n is None:
            n = len(harness.http_request(mt.api_port, "GET", p).json()[key])
        size = check(b, p, key, n)
        bench.log(f"{label}: answer {size} bytes")
        row = [query.measure(b, label, p, a.conns, a.seconds)]
        if a.alone_seconds:
            row.append(query.measure(b, label, p, 1, a.alone_seconds))
        results.append(row)
    mt.stop()

    print()
    print(f"{a.days} days of hourly counters ({a.identities} identities x 11 types, "
          f"{a.domains} domains); {a.conns} connections, {a.seconds} s each; "
          f"{bench.build_type(binary)}; {b.nproc} CPUs ({bench.cpu_model()})")
    print(f"| request | p50 / p99 ms, {a.conns} conns | p50 / p99 ms alone | Redis ms a request "
          "| mailtrail CPU ms a request |")
    print("|---|---|---|---|---|")
    for row in results:
        r = row[0]
        alone = f"{row[1]['p50']:.2f} / {row[1]['p99']:.2f}" if len(row) > 1 else "-"
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
