#!/usr/bin/env python3
"""mailtrail ingest benchmark: verified and stored SNS notifications a second.

    python3 tests/bench/bench.py [options] MAILTRAIL_BINARY TESTS_DATA_DIR

(tests/bench/run builds a release binary and calls this.)  Everything runs
on 127.0.0.1 with free ports, in one temporary directory, through the
integration harness (tests/integration/harness.py): its test PKI, a private
redis-server, and its local HTTPS "SNS" host that serves the signing
certificate, which mailtrail fetches once (--cert-host-pattern allows only
that host, --ca-file trusts only the test CA).

1. Generates N distinct SNS Notifications of SES events (deliveries,
   bounces, complaints mixed; SignatureVersion 1 and 2 alternating; 1 to 3
   recipients out of a pool of thousands), signed with the test key through
   libcrypto (ctypes); the first of each version is also checked with
   `openssl dgst -verify`.
2. Measures the machine's own limit: `openssl speed -seconds 3 rsa2048`
   (one core, and -multi with every core).
3. Drives mailtrail with wrk (tests/bench/post.lua) over keep-alive
   connections: three full-speed runs over plain HTTP, one run at a fixed
   rate (tests/bench/rate.lua: Lua delay(), since Debian's wrk has no -R),
   and one full-speed run over HTTPS with mailtrail terminating TLS.  Redis
   is emptied before each run, so every run stores every body anew.
4. After every run, checks in Redis that each notification that was sent
   has all its events stored (fails loudly otherwise: a fast wrong answer
   is not a result), and reads mailtrail's peak RSS (VmHWM, reset before
   each run through /proc/PID/clear_refs) and the CPU time of mailtrail,
   redis-server and wrk.

It prints one line per figure; the exit status is 1 when a check failed.
"""

import argparse
import atexit
import base64
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402  (Environment, iso_ms, string_to_sign, ...)

LOOPBACK = harness.LOOPBACK
TOPIC = harness.SnsSigner.TOPIC
TEMPLATES = {
    "Delivery": "ses/awsdoc-identity-delivery.json",
    "Bounce": "ses/awsdoc-identity-bounce-permanent-general-with-dsn.json",
    "Complaint": "ses/awsdoc-identity-complaint-with-feedback-report.json",
}
# Out of 20 notifications: what a sending account reports most.
MIX = ["Delivery"] * 14 + ["Bounce"] * 4 + ["Complaint"] * 2
PREFIX = "mailtrail:"


def log(msg):
    print(msg, flush=True)


class CheckFailed(Exception):
    pass


# --- signing ------------------------------------------------------------------

class Signer:
    """SHA1withRSA / SHA256withRSA (PKCS#1 v1.5) through libcrypto's
    EVP_DigestSign, by ctypes (harness.LibcryptoRsa): about 4,000
    signatures a second a core, where an openssl process per body would
    take hours."""

    def __init__(self, key_path):
        try:
            self.rsa = {"1": harness.LibcryptoRsa(key_path, "sha1"),
                        "2": harness.LibcryptoRsa(key_path, "sha256")}
        except OSError as e:
            raise harness.HarnessError(f"libcrypto signing unavailable: {e}") from e

    def sign(self, data, version):
        return base64.b64encode(self.rsa[version].sign(data)).decode("ascii")


def openssl_verifies(pki, tbs, sig_b64, version, directory):
    pub = os.path.join(directory, "signing.pub")
    if not os.path.exists(pub):
        harness.run(["openssl", "x509", "-in", pki.signing_cert, "-pubkey", "-noout",
                     "-out", pub])
    tbs_path, sig_path = os.path.join(directory, "t.bin"), os.path.join(directory, "s.bin")
    with open(tbs_path, "wb") as f:
        f.write(tbs)
    with open(sig_path, "wb") as f:
        f.write(base64.b64decode(sig_b64))
    r = harness.run(["openssl", "dgst", {"1": "-sha1", "2": "-sha256"}[version], "-verify",
                     pub, "-signature", sig_path, tbs_path], check=False)
    return b"Verified OK" in r.stdout


# --- bodies ---------------------------------------------------------------------

class Bodies:
    """Builds notification i (deterministic in i and the seed) and the
    (MessageId, recipients) it must leave in Redis."""

    def __init__(self, data_dir, cert_url, recipients, base_ms, seed):
        self.templates = {}
        for kind, path in TEMPLATES.items():
            with open(os.path.join(data_dir, path)) as f:
                self.templates[kind] = json.load(f)
        self.cert_url = cert_url
        self.unsub = cert_url.rsplit("/", 1)[0] + "/?Action=Unsubscribe&SubscriptionArn=" + TOPIC
        self.pool = [f"user{i:05d}@bench{i % 7}.example" for i in range(recipients)]
        self.base_ms = base_ms
        self.seed = seed

    def expected(self, i):
        rnd = random.Random(self.seed * 1000003 + i)
        kind = MIX[rnd.randrange(len(MIX))]
        k = 1 if kind != "Delivery" else rnd.choice((1, 1, 1, 2, 3))
        rcpts = rnd.sample(self.pool, k)
        return kind, f"b{self.seed:07d}-0000-4000-8000-{i:012d}", rcpts

    def one(self, i, signer):
        kind, msg_id, rcpts = self.expected(i)
        t = self.base_ms + i * 7
        iso = harness.iso_ms(_utc(t))
        ses = json.loads(json.dumps(self.templates[kind]))
        mail = ses["mail"]
        mail["timestamp"] = harness.iso_ms(_utc(t - 2000))
        mail["messageId"] = f"0100018c{i:016x}-bench-000000"
        mail["destination"] = rcpts
        mail["commonHeaders"]["to"] = rcpts
        if kind == "Delivery":
            ses["delivery"]["recipients"] = rcpts
            ses["delivery"]["timestamp"] = iso
        elif kind == "Bounce":
            b = ses["bounce"]
            b["timestamp"] = iso
            b["feedbackId"] = f"0100018d{i:016x}-feedback"
            if i % 3 == 0:
                b["bounceType"], b["bounceSubType"] = "Transient", "MailboxFull"
            b["bouncedRecipients"] = [{"emailAddress": r, "action": "failed", "status": "5.1.1",
                                       "diagnosticCode": f"smtp; 550 5.1.1 <{r}>... User unknown"}
                                      for r in rcpts]
        else:
            c = ses["complaint"]
            c["timestamp"] = iso
            c["feedbackId"] = f"0100018e{i:016x}-feedback"
            c["complainedRecipients"] = [{"emailAddress": r} for r in rcpts]
        version = "1" if i % 2 else "2"
        msg = {"Type": "Notification", "MessageId": msg_id, "TopicArn": TOPIC,
               "Subject": "Amazon SES Email Event Notification" if i % 4 == 1 else None,
               "Message": json.dumps(ses, separators=(",", ":")),
               "Timestamp": iso, "SignatureVersion": version, "Signature": "",
               "SigningCertURL": self.cert_url, "UnsubscribeURL": self.unsub}
        if msg["Subject"] is None:
            del msg["Subject"]
        tbs = harness.string_to_sign(msg)
        msg["Signature"] = signer.sign(tbs, version)
        return json.dumps(msg), tbs


def _utc(ms):
    import datetime as dt
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


_GEN = {}


def _sign_range(args):
    lo, hi, path = args
    gen, signer = _GEN["bodies"], _GEN.get("signer")
    if signer is None:
        signer = _GEN["signer"] = Signer(_GEN["key"])
    with open(path, "w") as f:
        for i in range(lo, hi):
            f.write(gen.one(i, signer)[0])
            f.write("\n")


def _worker_init():
    # A forked signer must not run the parent's clean-up (it would stop the
    # parent's redis-server): default signal handling, no inherited key.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    _GEN.pop("signer", None)


def write_bodies(gen, key, n, path, workers):
    """Signs bodies 0..n-1 into path, one per line, in `workers` processes."""
    import multiprocessing
    _GEN.update(bodies=gen, key=key)
    step = 5000
    parts = [(lo, min(n, lo + step), f"{path}.{lo:09d}") for lo in range(0, n, step)]
    with multiprocessing.get_context("fork").Pool(workers, _worker_init) as pool:
        pool.map(_sign_range, parts, chunksize=1)
    with open(path, "wb") as out:
        for _, _, p in parts:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out)
            os.unlink(p)


# --- processes ----------------------------------------------------------------------

def proc_status(pid):
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                vals[k] = int(v.split()[0])
    return vals


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    """CPU of waited-for children (wrk) of this process."""
    t = os.times()
    return t.children_user + t.children_system


class Mailtrail:
    """mailtrail with its JSON log (one line per request, as in production)
    in a file; the port is read back from the "listening" line."""

    def __init__(self, binary, args, directory, env, name):
        self.cmd = [binary] + args
        self.out = os.path.join(directory, f"{name}.log")
        with open(self.out, "wb") as o:
            self.proc = subprocess.Popen(self.cmd, stdout=o, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env)
        harness.track_child(self.proc)
        self.port = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.port is None:
            if self.proc.poll() is not None:
                raise harness.HarnessError(f"mailtrail exited ({self.proc.returncode}):\n"
                                           f"{self.tail()}")
            with open(self.out, errors="replace") as f:
                m = re.search(r'"msg":"listening".*?"listen":"127\.0\.0\.1:(\d+)"', f.read())
            if m:
                self.port = int(m.group(1))
            else:
                time.sleep(0.05)
        if self.port is None:
            raise harness.HarnessError(f"mailtrail did not start listening:\n{self.tail()}")

    def tail(self, n=20):
        with open(self.out, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def reset_peak(self):
        # "5" resets the peak RSS (VmHWM) to the current RSS (proc(5)).
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")

    def metrics(self):
        r = harness.http_request(self.port, "GET", "/metrics")
        out = {}
        for line in r.body.decode().splitlines():
            m = re.match(r"^(mailtrail_\w+)(\{[^}]*\})? (\d+)$", line)
            if m:
                out[m.group(1) + (m.group(2) or "")] = int(m.group(3))
                if m.group(2):  # a labelled family also gives its total
                    out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(3))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.returncode != 0:
            raise CheckFailed(f"mailtrail exited with {self.proc.returncode}:\n{self.tail()}")


def openssl_speed(multi):
    cmd = ["openssl", "speed", "-seconds", "3"]
    if multi > 1:
        cmd += ["-multi", str(multi)]
    out = harness.run(cmd + ["rsa2048"], check=False).stdout.decode(errors="replace")
    m = re.search(r"^rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)\s*$", out, re.M)
    return float(m.group(2)) if m else float("nan")


# --- one run ----------------------------------------------------------------------

class Run:
    """One wrk run against one mailtrail: what was sent, answered, stored."""

    def __init__(self, label, tls):
        self.label, self.tls = label, tls


def wrk_run(bench, mt, label, conns, rate=0):
    """Empties Redis, drives mailtrail with every body once, then checks
    that Redis holds every sent notification.  Returns a Run."""
    a, rc = bench.args, bench.env.redis
    rc("FLUSHALL")
    mem0 = redis_used_memory(rc)
    threads = min(conns, bench.nproc)
    scheme = "https" if mt is bench.mt_tls else "http"
    url = f"{scheme}://{LOOPBACK}:{mt.port}/sns"
    script = os.path.join(HERE, "rate.lua" if rate else "post.lua")
    body_file = bench.rate_bodies if rate else bench.bodies
    n_bodies = a.rate_seconds * rate if rate else a.bodies
    limit = int(n_bodies / (rate or 1000)) + 30  # seconds: 1,000/s or the fixed rate
    done = os.path.join(bench.tmp, f"done-{len(bench.commands) + 1}")
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{limit}s",
           "--timeout", "15s", "--latency", "-s", script, url, "--", body_file, str(threads),
           done]
    if rate:
        cmd.append(str(rate))
    bench.commands.append(shlex.join(cmd))
    mt.reset_peak()
    cpu0 = (cpu_seconds(mt.proc.pid), cpu_seconds(bench.env.redis_server.proc.pid),
            children_cpu_seconds())
    out_path = os.path.join(bench.tmp, f"wrk-{len(bench.commands)}.out")
    with open(out_path, "wb") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        harness.track_child(p)
        # wrk sleeps for all of -d even when every thread has stopped; a
        # SIGINT ends the sleep and it reports as usual.
        while p.poll() is None:
            if all(os.path.exists(f"{done}.{k}") for k in range(threads)):
                p.send_signal(signal.SIGINT)
                p.wait()
                break
            time.sleep(0.05)
    cpu1 = (cpu_seconds(mt.proc.pid), cpu_seconds(bench.env.redis_server.proc.pid),
            children_cpu_seconds())
    st = proc_status(mt.proc.pid)
    with open(out_path, errors="replace") as f:
        text = f.read()
    m = re.search(r"^WRK_RESULT (\{.*\})$", text, re.M)
    if p.returncode != 0 or not m:
        raise CheckFailed(f"wrk failed ({p.returncode}): {shlex.join(cmd)}\n{text}")
    w = json.loads(m.group(1))

    r = Run(label, mt is bench.mt_tls)
    r.conns, r.rate = conns, rate
    r.secs = w["active_us"] / 1e6
    r.p50, r.p99, r.max = w["p50_us"] / 1000, w["p99_us"] / 1000, w["max_us"] / 1000
    r.requests = w["requests"]
    r.errors = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"]
    r.non200 = sum(t["non200"] for t in w["threads"])
    # Thread k sent bodies k, k+T, k+2T, ...: its first min(sent, n).
    sent_ids = []
    for k, t in enumerate(w["threads"]):
        sent_ids.extend(range(k, k + threads * min(t["sent"], t["n"]), threads))
    r.sent = len(sent_ids)
    r.extra = r.requests - r.sent
    r.rps = r.sent / r.secs if r.secs else 0.0
    r.rss, r.hwm = st["VmRSS"] / 1024, st["VmHWM"] / 1024
    r.cpu_mt, r.cpu_redis, r.cpu_wrk = (b - a_ for a_, b in zip(cpu0, cpu1))
    r.events = sum(len(bench.gen.expected(i)[2]) for i in sent_ids)
    r.mem_per_event = (redis_used_memory(rc) - mem0) / r.events if r.events else float("nan")
    r.missing = check_stored(bench, sent_ids)
    # A request answered other than 200, or not answered (socket error,
    # timeout), may be missing; every other one must be there.
    r.ok = r.sent == n_bodies and len(r.missing) <= r.non200 + r.errors
    r.err_kinds = ", ".join(f"{k[4:]} {w[k]}" for k in ("err_connect", "err_read", "err_write",
                                                       "err_timeout") if w[k])
    log(f"  {label}: {r.sent} notifications in {r.secs:.2f}s = {r.rps:,.0f}/s; p50 {r.p50:.2f} "
        f"ms, p99 {r.p99:.2f} ms, max {r.max:.2f} ms; non-200 {r.non200}, socket errors "
        f"{r.errors}{' (' + r.err_kinds + ')' if r.errors else ''}; VmHWM {r.hwm:.1f} MiB, VmRSS {r.rss:.1f} MiB; in Redis: "
        f"{r.sent - len(r.missing)} of {r.sent}" + ("" if r.ok else "  <-- CHECK FAILED"))
    bench.runs.append(r)
    if not r.ok:
        raise CheckFailed(
            f"{label}: sent {r.sent} of {n_bodies} bodies, {r.non200} answers other than 200, "
            f"{r.errors} socket errors, yet {len(r.missing)} sent notifications missing from "
            f"Redis or incomplete there (first: {r.missing[:5]}); wrk output in {out_path}")
    return r


LIST_IDS = """
local out = {}
for _, k in ipairs(redis.call('KEYS', ARGV[1] .. 'rcpt:{*')) do
  for _, m in ipairs(redis.call('ZRANGE', k, 0, -1)) do
    local id = string.match(m, '^{"id":"([^"]*)"')
    -- the key names the recipient (compact members leave it out)
    local rc = string.match(m, '"recipient":"([^"]*)"') or string.match(k, 'rcpt:{(.*)}$')
    out[#out + 1] = (id or '?') .. ' ' .. (rc or '?')
  end
end
return out
"""


def redis_used_memory(rc):
    text = rc("INFO", "memory")
    text = text.decode() if isinstance(text, bytes) else text
    return int(re.search(r"^used_memory:(\d+)", text, re.M).group(1))


def check_stored(bench, sent_ids):
    """The MessageIds of sent notifications of which Redis lacks an event
    (one per recipient); also fails on any event Redis holds that was not
    sent."""
    rows = bench.env.redis("EVAL", LIST_IDS, 0, PREFIX)
    held = {row.decode() for row in rows}
    want = set()
    for i in sent_ids:
        _, msg_id, rcpts = bench.gen.expected(i)
        want.update(f"{msg_id} {rc}" for rc in rcpts)
    extra = held - want
    if extra:
        raise CheckFailed(f"Redis holds {len(extra)} events that were never sent: "
                          f"{sorted(extra)[:5]}")
    return sorted({pair.split(" ")[0] for pair in want - held})


# --- the benchmark ------------------------------------------------------------------------

def build_type(binary):
    p = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(binary))),
                     "meson-info", "intro-buildoptions.json")
    try:
        with open(p) as f:
            opts = {o["name"]: o["value"] for o in json.load(f)}
        s = f"{opts.get('buildtype')} -O{opts.get('optimization')}"
        if opts.get("b_sanitize") not in (None, "none"):
            s += f" sanitize={opts['b_sanitize']}"
        return s
    except (OSError, ValueError, KeyError):
        return "unknown build type"


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


class Bench:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("data_dir")
    ap.add_argument("--bodies", type=int, default=100000,
                    help="distinct notifications per full-speed run (default 100000)")
    ap.add_argument("--recipients", type=int, default=5000,
                    help="distinct recipient addresses (default 5000)")
    ap.add_argument("--conns", type=int, default=32, help="keep-alive connections (default 32)")
    ap.add_argument("--runs", type=int, default=3,
                    help="consecutive full-speed HTTP runs, to see RSS growth (default 3)")
    ap.add_argument("--rate", type=int, default=2000,
                    help="the fixed-rate run's notifications a second (default 2000; 0: none)")
    ap.add_argument("--rate-seconds", type=int, default=10,
                    help="length of the fixed-rate run (default 10)")
    ap.add_argument("--no-tls", action="store_true", help="skip the HTTPS run")
    ap.add_argument("--no-openssl-speed", action="store_true",
                    help="skip `openssl speed` (12 s)")
    ap.add_argument("--seed", type=int, default=1, help="body generator seed")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()

    b = Bench()
    b.args, b.runs, b.commands = a, [], []
    b.nproc = os.cpu_count() or 1
    binary = os.path.abspath(a.binary)
    for c in ("wrk", "openssl", "redis-server", "redis-cli"):
        harness.require_command(c)
    if not os.access(binary, os.X_OK):
        sys.exit(f"not an executable: {binary}")
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    t_start = time.monotonic()
    harness.install_signal_handlers()
    atexit.register(harness.kill_all_children)

    b.env = env = harness.Environment("mailtrail-bench-")
    b.tmp = env.tmp
    if a.keep:
        atexit.unregister(shutil.rmtree)
        env.tmp = os.path.join(env.tmp, "nonexistent")  # env.close() removes nothing
    atexit.register(env.close)
    cert_url = env.signer.cert_url()
    common = ["--api-listen", "off", "--redis", env.redis_url,
              "--cert-host-pattern", "^" + re.escape(env.sns.authority) + "$",
              "--ca-file", env.pki.ca_cert, "--topic", TOPIC, "--log-format", "json"]
    b.mt_tls = None
    mt = Mailtrail(binary, ["--listen", f"{LOOPBACK}:0"] + common, b.tmp,
                   env.child_env(), "mailtrail")
    log(f"mailtrail pid {mt.proc.pid} on 127.0.0.1:{mt.port}; redis-server 127.0.0.1:"
        f"{env.redis_server.port}; signing certificate at {cert_url}; tmp {b.tmp}")

    # --- bodies ---------------------------------------------------------------------
    t0 = time.monotonic()
    b.gen = Bodies(a.data_dir, cert_url, a.recipients, harness.iso_to_ms(harness.now_iso()),
                   a.seed)
    signer = Signer(env.pki.signing_key)
    for i in (0, 1):  # one of each SignatureVersion, checked by openssl itself
        body, tbs = b.gen.one(i, signer)
        msg = json.loads(body)
        if not openssl_verifies(env.pki, tbs, msg["Signature"], msg["SignatureVersion"], b.tmp):
            raise CheckFailed(f"openssl does not verify body {i} (SignatureVersion "
                              f"{msg['SignatureVersion']})")
    b.bodies = os.path.join(b.tmp, "bodies.txt")
    write_bodies(b.gen, env.pki.signing_key, a.bodies, b.bodies, b.nproc)
    b.rate_bodies = os.path.join(b.tmp, "bodies-rate.txt")
    n_rate = a.rate * a.rate_seconds
    if a.rate:
        if n_rate > a.bodies:
            raise SystemExit("--rate x --rate-seconds must not exceed --bodies")
        with open(b.bodies, "rb") as src, open(b.rate_bodies, "wb") as dst:
            for _ in range(n_rate):
                dst.write(src.readline())
    size = os.path.getsize(b.bodies) / a.bodies
    log(f"signed {a.bodies} notifications in {time.monotonic() - t0:.1f}s "
        f"({b.nproc} processes); {size:.0f} bytes each on average")

    # --- the machine's RSA limit (before any load) -----------------------------------
    verify1 = verify_all = float("nan")
    if not a.no_openssl_speed:
        verify1 = openssl_speed(1)
        verify_all = openssl_speed(b.nproc) if b.nproc > 1 else verify1

    # --- runs --------------------------------------------------------------------------
    # Warm-up: the first delivery fetches the certificate from the SNS host.
    r = harness.http_request(mt.port, "POST", "/sns", body.encode(),
                             {"Content-Type": "text/plain; charset=UTF-8",
                              "x-amz-sns-message-type": "Notification"})
    if r.status != 200:
        raise CheckFailed(f"warm-up POST answered {r.status} {r.body!r}\n{mt.tail()}")
    idle = proc_status(mt.proc.pid)
    full = []
    for k in range(a.runs):
        log(f"full speed, HTTP, run {k + 1} of {a.runs}")
        full.append(wrk_run(b, mt, f"HTTP run {k + 1}", a.conns))
    rate_run = None
    if a.rate:
        log(f"fixed rate {a.rate}/s, HTTP")
        rate_run = wrk_run(b, mt, f"HTTP at {a.rate}/s", a.conns, rate=a.rate)
    fetches = mt.metrics().get("mailtrail_cert_fetches_total", 0)
    mt.stop()
    tls_run = None
    if not a.no_tls:
        b.mt_tls = Mailtrail(binary, ["--listen", f"{LOOPBACK}:0", "--tls-cert",
                                      env.pki.server_cert, "--tls-key", env.pki.server_key]
                             + common, b.tmp, env.child_env(), "mailtrail-tls")
        log("full speed, HTTPS (mailtrail terminates TLS)")
        tls_run = wrk_run(b, b.mt_tls, "HTTPS", a.conns)
        b.mt_tls.stop()

    # --- report -------------------------------------------------------------------------
    def per_k(r, cpu):
        return cpu * 1000 / r.sent if r.sent else float("nan")

    best = max(full, key=lambda r: r.rps)
    med = sorted(full, key=lambda r: r.rps)[len(full) // 2]
    ver = harness.run(["wrk", "-v"], check=False).stdout.decode(errors="replace").split("\n")[0]
    print()
    print(f"machine: {cpu_model()}, {b.nproc} cores, {platform.platform()}; load average "
          f"at start {loadavg}; wrk, redis-server and mailtrail all on this machine")
    print(f"mailtrail: {binary} ({build_type(binary)}); {ver.strip()}")
    print(f"notifications: {a.bodies} distinct, signed (SignatureVersion 1 and 2), deliveries/"
          f"bounces/complaints 14:4:2, {a.recipients} recipients; {a.conns} keep-alive "
          f"connections; Redis emptied before each run")
    print()
    print(f"verified and stored/s (HTTP): {med.rps:,.0f} (median of {len(full)} runs: "
          + ", ".join(f"{r.rps:,.0f}" for r in full) + ")")
    print(f"latency at full speed (median run): p50 {med.p50:.2f} ms, p99 {med.p99:.2f} ms, "
          f"max {med.max:.2f} ms")
    if rate_run:
        print(f"latency at a fixed {a.rate}/s (achieved {rate_run.rps:,.0f}/s): p50 "
              f"{rate_run.p50:.2f} ms, p99 {rate_run.p99:.2f} ms, max {rate_run.max:.2f} ms")
    print(f"mailtrail peak RSS (VmHWM) per run: "
          + ", ".join(f"{r.hwm:.1f}" for r in full) + " MiB; RSS after each run: "
          + ", ".join(f"{r.rss:.1f}" for r in full)
          + f" MiB (idle after start {idle['VmRSS'] / 1024:.1f} MiB)")
    print(f"CPU seconds per 1,000 notifications (median run): mailtrail {per_k(med, med.cpu_mt):.3f}, "
          f"redis-server {per_k(med, med.cpu_redis):.3f}, wrk {per_k(med, med.cpu_wrk):.3f}")
    print(f"Redis used_memory per stored event (median run, this mix; the typical mix: "
          f"tests/bench/memory.py): {med.mem_per_event:,.0f} bytes ({med.events} events)")
    if verify1 == verify1:
        # One process measures its own CPU time; -multi measures wall time,
        # so on a busy machine it is the lower figure.
        limit = max(verify_all, b.nproc * verify1)
        print(f"openssl speed -seconds 3 rsa2048, verify/s: {verify1:,.0f} on one core, "
              f"{verify_all:,.0f} with -multi {b.nproc}; mailtrail's rate is "
              f"{med.rps / limit * 100:.0f}% of the {b.nproc}-core limit ({limit:,.0f}/s), "
              f"and its verifies take {med.rps / verify1 * 100:.0f}% of one core")
    if tls_run:
        print(f"verified and stored/s (HTTPS, mailtrail terminating TLS): {tls_run.rps:,.0f} "
              f"({tls_run.rps / med.rps * 100:.0f}% of HTTP); p50 {tls_run.p50:.2f} ms, p99 "
              f"{tls_run.p99:.2f} ms; mailtrail CPU {per_k(tls_run, tls_run.cpu_mt):.3f} s per "
              f"1,000 (HTTP: {per_k(med, med.cpu_mt):.3f})")
    all_runs = full + [r for r in (rate_run, tls_run) if r]
    print(f"every acknowledged notification in Redis: yes, in every run (in Redis/sent: "
          + ", ".join(f"{r.sent - len(r.missing)}/{r.sent}" for r in all_runs)
          + "; non-200 answers: " + ", ".join(str(r.non200) for r in all_runs)
          + "; socket errors: " + ", ".join(str(r.errors) for r in all_runs)
          + f"); certificate fetched {fetches} time(s)")
    growth = full[-1].rss - full[0].rss
    print(f"RSS growth from run 1 to run {len(full)}: {growth:+.1f} MiB (VmRSS), "
          f"{full[-1].hwm - full[0].hwm:+.1f} MiB (VmHWM)")
    print()
    print(f"wrk commands ({b.tmp} holds the bodies with --keep):")
    for c in b.commands:
        print(f"  {c}")
    print(f"total benchmark time: {time.monotonic() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as e:
        print(f"\nBENCHMARK CHECK FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
