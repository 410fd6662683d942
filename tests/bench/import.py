#!/usr/bin/env python3
"""mailtrail import benchmark: captured notifications a second, from local
files into a local Redis.

    python3 tests/bench/import.py [options] MAILTRAIL_BINARY TESTS_DATA_DIR

Signs N distinct SNS Notifications of SES events with bench.py's generator
(deliveries, bounces, complaints; SignatureVersion 1 and 2; 1 to 3
recipients), writes them as NDJSON files of --per-file lines (and the same
gzip-compressed), puts the signing certificate in a --cert-cache-dir under
its URL's file name (no download), starts its own redis-server, then runs
`mailtrail import` over the files: once plain, once .gz, each into an empty
Redis, then the plain files again (every message a duplicate).  After each
storing run it checks that every notification has all its events in Redis
and that the summary counted them all (exit 1 otherwise).  Prints one line
per run: messages a second, wall and CPU time of mailtrail and
redis-server, peak RSS of mailtrail.
"""

import argparse
import atexit
import gzip
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import bench  # noqa: E402  (Bodies, write_bodies, check_stored, ...)
import harness  # noqa: E402


def cpu_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def run_import(b, files, label, expect_stored):
    redis_cpu0 = cpu_of(b.env.redis_server.proc.pid)
    out_path = os.path.join(b.env.tmp, "import.out")
    with open(out_path, "w+") as out, open(out_path + ".err", "w+") as err:
        t0 = time.monotonic()
        p = subprocess.Popen([b.binary, "import", "--redis", b.env.redis_url, "--topic", bench.TOPIC,
                              "--cert-host-pattern", "^" + re.escape(b.env.sns.authority) + "$",
                              "--cert-cache-dir", b.certs] + files,
                             stdout=out, stderr=err, env=b.env.child_env())
        # The import's own CPU time (wait4 on its pid, not all children);
        # its peak RSS from /proc (ru_maxrss would count the forked
        # Python's pages before exec).
        hwm = 0
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    m = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
                hwm = max(hwm, int(m.group(1))) if m else hwm
            except OSError:
                pass
            time.sleep(0.02)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        r = subprocess.CompletedProcess(p.args, p.returncode, out.read(), err.read())
    cpu = ru.ru_utime + ru.ru_stime
    rss = hwm / 1024
    redis_cpu = cpu_of(b.env.redis_server.proc.pid) - redis_cpu0
    counts = dict(re.findall(r"^(stored|duplicate|rejected|failed): (\d+)$", r.stdout, re.M))
    n = b.args.bodies
    want = {"stored": n, "duplicate": 0} if expect_stored else {"stored": 0, "duplicate": n}
    for k, v in want.items():
        if int(counts.get(k, -1)) != v:
            raise bench.CheckFailed(f"{label}: {k} {counts.get(k)} != {v}\n{r.stdout}{r.stderr[-2000:]}")
    if r.returncode != 0:
        raise bench.CheckFailed(f"{label}: exit {r.returncode}\n{r.stdout}")
    if expect_stored:
        missing = bench.check_stored(b, range(n))
        if missing:
            raise bench.CheckFailed(f"{label}: {len(missing)} notifications lack events")
    bench.log(f"{label}: {n / wall:,.0f} messages/s ({n} in {wall:.2f} s); CPU s per 1,000: "
              f"mailtrail {cpu / n * 1000:.3f}, redis-server {redis_cpu / n * 1000:.3f}; "
              f"mailtrail peak RSS {rss:.1f} MiB")
    return n / wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("data_dir")
    ap.add_argument("--bodies", type=int, default=50000, help="notifications (default 50000)")
    ap.add_argument("--per-file", type=int, default=5000, help="lines per file (default 5000)")
    ap.add_argument("--recipients", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3, help="plain runs (default 3; median shown)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    b = bench.Bench()
    b.args = a
    b.binary = os.path.abspath(a.binary)
    harness.install_signal_handlers()
    atexit.register(harness.kill_all_children)
    b.env = env = harness.Environment("mailtrail-bench-import-")
    atexit.register(env.close)
    cert_url = env.signer.cert_url()
    b.certs = os.path.join(env.tmp, "certs")
    os.makedirs(b.certs)
    shutil.copy(env.pki.signing_cert, os.path.join(b.certs, cert_url.rsplit("/", 1)[1]))

    t0 = time.monotonic()
    b.gen = bench.Bodies(a.data_dir, cert_url, a.recipients,
                         harness.iso_to_ms(harness.now_iso()), a.seed)
    all_path = os.path.join(env.tmp, "all.ndjson")
    bench.write_bodies(b.gen, env.pki.signing_key, a.bodies, all_path, os.cpu_count() or 1)
    plain_dir, gz_dir = os.path.join(env.tmp, "plain"), os.path.join(env.tmp, "gz")
    os.makedirs(plain_dir)
    os.makedirs(gz_dir)
    with open(all_path, "rb") as src:
        lines = src.readlines()
    for k in range(0, len(lines), a.per_file):
        part = b"".join(lines[k:k + a.per_file])
        with open(os.path.join(plain_dir, f"part-{k:09d}.ndjson"), "wb") as f:
            f.write(part)
        with gzip.open(os.path.join(gz_dir, f"part-{k:09d}.ndjson.gz"), "wb", 6) as f:
            f.write(part)
    size = os.path.getsize(all_path)
    bench.log(f"signed {a.bodies} notifications in {time.monotonic() - t0:.1f} s, "
              f"{size / a.bodies:.0f} bytes each; {len(os.listdir(plain_dir))} files of "
              f"{a.per_file} lines; machine: {bench.cpu_model()}, {os.cpu_count()} CPUs; "
              f"build: {bench.build_type(b.binary)}")

    rates = []
    for k in range(a.runs):
        env.redis("FLUSHALL")
        rates.append(run_import(b, [plain_dir], f"plain NDJSON run {k + 1}", True))
    env.redis("FLUSHALL")
    gz_rate = run_import(b, [gz_dir], "gzip NDJSON", True)
    dup_rate = run_import(b, [plain_dir], "again (all duplicate)", False)
    rates.sort()
    bench.log(f"RESULT import: median {rates[len(rates) // 2]:,.0f} messages/s plain "
              f"({' / '.join(f'{r:,.0f}' for r in rates)}), {gz_rate:,.0f}/s gzip, "
              f"{dup_rate:,.0f}/s all duplicate")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bench.CheckFailed as e:
        print(f"CHECK FAILED: {e}", file=sys.stderr)
        sys.exit(1)
