#!/usr/bin/env python3
"""mailtrail benchmark (not part of the test suite: timings are machine noise
on shared hosts; this prints numbers, it asserts only that they are sane).

    python3 tests/bench/bench.py [options] MAILTRAIL_BINARY TESTS_DATA_DIR

Everything runs on 127.0.0.1 with free ports in one temporary directory; a
private redis-server and mailtrail are started and every child (redis-server,
mailtrail, wrk) is killed on exit.  The load generator is wrk (one process
per measurement) with tests/bench/post.lua and tests/bench/report.lua.

What is measured:
  1. POST /sns ingest of unique signed notifications (SignatureVersion 2,
     one permanent bounce for a distinct recipient each) at 1, 8 and 32
     connections: req/s, p50, p99, stored vs duplicate (from GET /metrics).
  2. POST /sns redelivery: one already stored body again and again.
  3. Seeding one recipient with --seed events through the webhook (itself an
     ingest row: one hot sorted set), then GET .../events?limit=50,
     ?limit=1000 and the recipient summary at 8 connections.
  4. mailtrail VmRSS / VmHWM at idle and after the load; Redis used_memory
     per stored event.
  5. GET /healthz as the HTTP baseline.

Signing: SHA256withRSA PKCS#1 v1.5 through libcrypto (ctypes) when it can be
loaded, else in pure Python with CRT (about 7 ms a body here, 20x slower);
the two give identical bytes (v1.5 is deterministic) and the first bodies
are checked against each other and with `openssl dgst -sha256 -verify`.
"""

import argparse
import atexit
import base64
import ctypes
import ctypes.util
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402  (RedisServer, Redis, string_to_sign, iso_ms, ...)

LOOPBACK = harness.LOOPBACK
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
# Matches mailtrail's default --cert-host-pattern; the file is preloaded in
# --cert-cache-dir under its URL's file name, so nothing is ever fetched.
CERT_NAME = "SimpleNotificationService-bench.pem"
CERT_URL = "https://sns.us-east-1.amazonaws.com/" + CERT_NAME
UNSUB_URL = ("https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn="
             + TOPIC + ":0000")
BOUNCE_TEMPLATE = "ses/awsdoc-identity-bounce-permanent-general-with-dsn.json"
HOT = "hot@bench.example"

_tmp = {"dir": None, "keep": False}


def log(msg):
    print(msg, flush=True)


def cleanup():
    harness.kill_all_children()
    if _tmp["dir"] and not _tmp["keep"]:
        shutil.rmtree(_tmp["dir"], ignore_errors=True)


def run(cmd, **kw):
    return harness.run(cmd, **kw)


# --- signing ------------------------------------------------------------------

SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


class PyRsa:
    """SHA256withRSA (EMSA-PKCS1-v1_5) from the key numbers, CRT pow."""

    NAMES = {"modulus": "n", "privateExponent": "d", "prime1": "p", "prime2": "q",
             "exponent1": "dp", "exponent2": "dq", "coefficient": "qinv"}

    def __init__(self, key_path):
        text = run(["openssl", "rsa", "-in", key_path, "-text", "-noout"]).stdout.decode()
        hexes, cur, e = {}, None, None
        for line in text.splitlines():
            if line.startswith(" "):
                if cur:
                    hexes[cur] += line.strip().replace(":", "")
                continue
            label = line.split(":", 1)[0]
            cur = self.NAMES.get(label)
            if cur:
                hexes[cur] = ""
            if label == "publicExponent":
                e = int(line.split()[1])
        k = {name: int(h, 16) for name, h in hexes.items()}
        self.n, self.e, self.d = k["n"], e, k["d"]
        self.p, self.q, self.dp, self.dq, self.qinv = (k["p"], k["q"], k["dp"],
                                                       k["dq"], k["qinv"])
        if self.p * self.q != self.n or pow(pow(2, self.e, self.n), self.d, self.n) != 2:
            raise harness.HarnessError("RSA key numbers parsed from openssl are inconsistent")
        self.k = (self.n.bit_length() + 7) // 8

    def sign(self, data):
        t = SHA256_PREFIX + hashlib.sha256(data).digest()
        em = b"\x00\x01" + b"\xff" * (self.k - len(t) - 3) + b"\x00" + t
        m = int.from_bytes(em, "big")
        m1 = pow(m, self.dp, self.p)
        m2 = pow(m, self.dq, self.q)
        h = (self.qinv * (m1 - m2)) % self.p
        return (m2 + h * self.q).to_bytes(self.k, "big")


class LibcryptoRsa:
    """The same signature through libcrypto's EVP_DigestSign (ctypes)."""

    def __init__(self, key_path):
        name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
        lc = ctypes.CDLL(name)
        vp = ctypes.c_void_p
        lc.BIO_new_mem_buf.restype = vp
        lc.BIO_new_mem_buf.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lc.BIO_free.argtypes = [vp]
        lc.PEM_read_bio_PrivateKey.restype = vp
        lc.PEM_read_bio_PrivateKey.argtypes = [vp, vp, vp, vp]
        lc.EVP_MD_CTX_new.restype = vp
        lc.EVP_MD_CTX_free.argtypes = [vp]
        lc.EVP_sha256.restype = vp
        lc.EVP_DigestSignInit.argtypes = [vp, vp, vp, vp, vp]
        lc.EVP_DigestSign.argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t),
                                      ctypes.c_char_p, ctypes.c_size_t]
        with open(key_path, "rb") as f:
            pem = f.read()
        bio = lc.BIO_new_mem_buf(pem, len(pem))
        self.pkey = lc.PEM_read_bio_PrivateKey(bio, None, None, None)
        lc.BIO_free(bio)
        if not self.pkey:
            raise OSError("libcrypto could not read the key")
        self.lc = lc
        self.md = lc.EVP_sha256()
        self.buf = ctypes.create_string_buffer(1024)

    def sign(self, data):
        lc = self.lc
        ctx = lc.EVP_MD_CTX_new()
        n = ctypes.c_size_t(len(self.buf))
        try:
            if (lc.EVP_DigestSignInit(ctx, None, self.md, None, self.pkey) != 1 or
                    lc.EVP_DigestSign(ctx, self.buf, ctypes.byref(n), data, len(data)) != 1):
                raise OSError("EVP_DigestSign failed")
        finally:
            lc.EVP_MD_CTX_free(ctx)
        return self.buf.raw[:n.value]


# --- bodies ---------------------------------------------------------------------

class Bodies:
    """Signed SNS Notification envelopes, one JSON object per line."""

    def __init__(self, pki_dir, data_dir, base_ms):
        self.key = os.path.join(pki_dir, "signing.key")
        self.pub = os.path.join(pki_dir, "signing.pub")
        self.py = PyRsa(self.key)
        try:
            self.fast = LibcryptoRsa(self.key)
            self.signer_name = "libcrypto EVP_DigestSign via ctypes (checked against pure Python)"
        except OSError as e:
            log(f"libcrypto via ctypes unavailable ({e}); signing in pure Python (slow)")
            self.fast = None
            self.signer_name = "pure Python RSA-CRT"
        self.base_ms = base_ms
        self.seq = 0
        self.checked = 0
        with open(os.path.join(data_dir, BOUNCE_TEMPLATE), "rb") as f:
            ses = json.load(f)
        # A real SES bounce (AWS docs sample, with headers), reduced to one
        # recipient; placeholders are filled per body.
        ses["bounce"]["bouncedRecipients"] = [{
            "emailAddress": "@@RCPT@@", "status": "5.1.1", "action": "failed",
            "diagnosticCode": "smtp; 550 5.1.1 <@@RCPT@@>... User unknown"}]
        ses["bounce"]["timestamp"] = "@@TIME@@"
        ses["bounce"]["feedbackId"] = "@@FEEDBACK@@"
        ses["mail"]["timestamp"] = "@@TIME@@"
        ses["mail"]["messageId"] = "@@SESID@@"
        ses["mail"]["destination"] = ["@@RCPT@@"]
        self.template = json.dumps(ses, separators=(",", ":"))

    def _sign(self, data):
        if self.fast is None:
            return self.py.sign(data)
        sig = self.fast.sign(data)
        if self.checked < 3:  # v1.5 is deterministic: both must agree
            if sig != self.py.sign(data):
                raise harness.HarnessError("libcrypto and pure-Python signatures differ")
        return sig

    def one(self, rcpt, t_ms=None):
        self.seq += 1
        n = self.seq
        t_ms = self.base_ms + n if t_ms is None else t_ms
        iso = harness.iso_ms(_utc(t_ms))
        message = (self.template.replace("@@RCPT@@", rcpt).replace("@@TIME@@", iso)
                   .replace("@@SESID@@", f"0100018bench{n:012d}-bench-000000")
                   .replace("@@FEEDBACK@@", f"0100018bfeed{n:012d}-feed-000000"))
        msg = {"Type": "Notification",
               "MessageId": f"b0000000-0000-4000-8000-{n:012d}",
               "TopicArn": TOPIC,
               "Message": message,
               "Timestamp": iso,
               "SignatureVersion": "2",
               "Signature": "",
               "SigningCertURL": CERT_URL,
               "UnsubscribeURL": UNSUB_URL}
        tbs = harness.string_to_sign(msg)
        msg["Signature"] = base64.b64encode(self._sign(tbs)).decode("ascii")
        if self.checked < 3:
            self._openssl_verify(tbs, msg["Signature"])
            self.checked += 1
        return json.dumps(msg)

    def _openssl_verify(self, tbs, sig_b64):
        d = os.path.dirname(self.key)
        with open(os.path.join(d, "check.tbs"), "wb") as f:
            f.write(tbs)
        with open(os.path.join(d, "check.sig"), "wb") as f:
            f.write(base64.b64decode(sig_b64))
        r = run(["openssl", "dgst", "-sha256", "-verify", self.pub, "-signature",
                 os.path.join(d, "check.sig"), os.path.join(d, "check.tbs")])
        if b"Verified OK" not in r.stdout:
            raise harness.HarnessError(f"openssl does not verify our signature: {r.stdout!r}")

    def write(self, path, recipients):
        with open(path, "w") as f:
            for rcpt in recipients:
                f.write(self.one(rcpt))
                f.write("\n")
        return len(recipients)

    def write_files(self, jobs, workers):
        """jobs: [(path, [recipient, ...]), ...].  Signs in `workers` forked
        processes (chunks with their own MessageId/time ranges), then joins
        the chunks in order, so each file's bodies follow one another."""
        tasks, parts = [], {}
        for path, rcpts in jobs:
            parts[path] = []
            for i in range(0, len(rcpts), 2000):
                part = f"{path}.part{i // 2000:04d}"
                parts[path].append(part)
                tasks.append((part, rcpts[i:i + 2000], self.seq))
                self.seq += len(rcpts[i:i + 2000])
        if workers > 1 and self.fast is not None:
            import multiprocessing
            global _GEN
            _GEN = self
            with multiprocessing.get_context("fork").Pool(workers, _worker_init) as pool:
                pool.map(_write_chunk, tasks, chunksize=1)
        else:
            for t in tasks:
                _write_chunk(t, self)
        for path, plist in parts.items():
            with open(path, "wb") as out:
                for part in plist:
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out)
                    os.unlink(part)


_GEN = None


def _worker_init():
    # A forked signer must not run the parent's clean-up (it would kill the
    # parent's redis-server and mailtrail): default signal handling.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    if _GEN.fast is not None:
        _GEN.fast = LibcryptoRsa(_GEN.key)  # its own key handle


def _write_chunk(task, gen=None):
    path, rcpts, seq0 = task
    gen = gen or _GEN
    gen.seq = seq0
    gen.write(path, rcpts)


def _utc(ms):
    import datetime as dt
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


# --- processes ----------------------------------------------------------------------

def make_signing_cert(d):
    key, cert, pub = (os.path.join(d, n) for n in ("signing.key", "signing.pem", "signing.pub"))
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
         "-out", cert, "-subj", "/CN=sns.amazonaws.com", "-days", "3650",
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-addext", "keyUsage=critical,digitalSignature"])
    run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub])
    return cert


class Mailtrail:
    """mailtrail with its JSON log in a file (one line per request, as in
    production), ports read back from the "listening" lines."""

    def __init__(self, binary, args, directory):
        self.cmd = [binary] + args
        self.out = os.path.join(directory, "mailtrail.log")
        self.err = os.path.join(directory, "mailtrail.err")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTRAIL_")}
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen(self.cmd, stdout=o, stderr=e,
                                         stdin=subprocess.DEVNULL, env=env)
        harness.track_child(self.proc)
        self.port = self.api_port = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (self.port is None or self.api_port is None):
            if self.proc.poll() is not None:
                raise harness.HarnessError(f"mailtrail exited ({self.proc.returncode}):\n"
                                           + self.tail())
            with open(self.out, errors="replace") as f:
                for line in f:
                    self.port = self.port or harness._listening_port(line, "listening")
                    self.api_port = self.api_port or harness._listening_port(line, "api listening")
            time.sleep(0.05)
        if self.port is None or self.api_port is None:
            raise harness.HarnessError("mailtrail did not log both listening lines:\n"
                                       + self.tail())

    def tail(self):
        out = []
        for p in (self.out, self.err):
            try:
                with open(p, errors="replace") as f:
                    out.append("".join(f.readlines()[-20:]))
            except OSError:
                pass
        return "\n".join(out)

    def status(self):
        """VmRSS, VmHWM (KiB) and Threads from /proc/PID/status."""
        vals = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "Threads"):
                    vals[k] = int(v.split()[0])
        return vals

    def metrics(self):
        r = harness.http_request(self.port, "GET", "/metrics")
        out = {}
        for line in r.body.decode().splitlines():
            m = re.match(r"^(mailtrail_\w+)(\{[^}]*\})? (\d+)$", line)
            if m:
                out[m.group(1) + (m.group(2) or "")] = int(m.group(3))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def build_type(binary):
    """From the meson build dir that holds the binary (build/src/mailtrail)."""
    p = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(binary))),
                     "meson-info", "intro-buildoptions.json")
    try:
        with open(p) as f:
            opts = {o["name"]: o["value"] for o in json.load(f)}
        s = f"{opts.get('buildtype')} (-O{opts.get('optimization')}"
        if opts.get("b_sanitize") not in (None, "none"):
            s += f", sanitize={opts['b_sanitize']}"
        if opts.get("b_ndebug") not in (None, "false"):
            s += f", ndebug={opts['b_ndebug']}"
        return s + ")"
    except (OSError, ValueError, KeyError):
        return "unknown (no meson-info next to the binary)"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- wrk -------------------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class Wrk:
    def __init__(self, directory, pids):
        self.dir = directory
        self.pids = pids          # {"mt": pid, "redis": pid}: CPU per request
        self.commands = []
        self.n = 0

    def run(self, url, conns, duration, script=None, script_args=(), threads=None):
        threads = threads or max(1, min(conns, os.cpu_count() or 1))
        duration = max(1, int(round(duration)))
        cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s",
               "--latency", "-s", script or os.path.join(HERE, "report.lua"), url]
        if script_args:
            cmd += ["--"] + [str(a) for a in script_args]
        self.commands.append(shlex.join(cmd))
        self.n += 1
        out_path = os.path.join(self.dir, f"wrk-{self.n}.out")
        cpu0 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        with open(out_path, "wb") as out:
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
            harness.track_child(p)
            try:
                p.wait(timeout=duration + 60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise harness.HarnessError(f"wrk did not finish: {shlex.join(cmd)}")
        with open(out_path, errors="replace") as f:
            text = f.read()
        m = re.search(r"^WRK_RESULT (\{.*\})$", text, re.M)
        if p.returncode != 0 or not m:
            raise harness.HarnessError(f"wrk failed ({p.returncode}): {shlex.join(cmd)}\n{text}")
        r = json.loads(m.group(1))
        for k, p in self.pids.items():  # CPU time per answered request, us
            r["cpu_" + k] = ((cpu_seconds(p) - cpu0[k]) * 1e6 / r["requests"]
                             if r["requests"] else float("nan"))
        r["threads"], r["conns"] = threads, conns
        # POST runs: from the first request to the last answer (a thread
        # that ran out of bodies stops early; wrk's duration is always -d).
        r["secs"] = r["active_us"] / 1e6
        r["rps"] = r["requests"] / r["secs"] if r["secs"] else 0.0
        r["errors"] = (r["err_connect"] + r["err_read"] + r["err_write"]
                       + r["err_timeout"])
        return r


# --- the benchmark ------------------------------------------------------------------------

def redis_used_memory(client):
    info = client("INFO", "memory").decode()
    return int(re.search(r"^used_memory:(\d+)", info, re.M).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("binary")
    ap.add_argument("data_dir")
    ap.add_argument("--bodies", type=int, default=int(os.environ.get("BENCH_BODIES", 50000)),
                    help="unique bodies for the ingest runs (split 20/40/40 over c=1/8/32)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_SEED", 10000)),
                    help="events seeded into one recipient for the query runs")
    ap.add_argument("--duration", type=float, default=float(os.environ.get("BENCH_DURATION", 5)),
                    help="seconds per measurement (ingest runs stop early when "
                         "their bodies are used up)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (bodies, logs) to re-run commands")
    a = ap.parse_args()

    t_start = time.monotonic()
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    binary = os.path.abspath(a.binary)
    data_dir = os.path.abspath(a.data_dir)
    for c in ("wrk", "openssl", "redis-server", "redis-cli"):
        harness.require_command(c)
    if not os.access(binary, os.X_OK):
        sys.exit(f"not an executable: {binary}")

    tmp = tempfile.mkdtemp(prefix="mailtrail-bench-")
    _tmp["dir"], _tmp["keep"] = tmp, a.keep
    atexit.register(cleanup)
    harness.install_signal_handlers()
    dur = a.duration
    nproc = os.cpu_count() or 1

    # --- PKI, Redis, mailtrail --------------------------------------------------
    pki = os.path.join(tmp, "pki")
    cache = os.path.join(tmp, "cert-cache")
    os.makedirs(pki)
    os.makedirs(cache)
    cert = make_signing_cert(pki)
    shutil.copy(cert, os.path.join(cache, CERT_NAME))
    # The cert's notBefore is "now" (whole seconds); message Timestamps must
    # come after it (validity is judged at the Timestamp).
    base_ms = (int(time.time()) + 2) * 1000

    redis = harness.RedisServer(os.path.join(tmp, "redis")).start()
    rc = redis.client
    mt_args = ["--listen", f"{LOOPBACK}:0", "--api-listen", f"{LOOPBACK}:0",
               "--redis", f"redis://{LOOPBACK}:{redis.port}/0",
               "--cert-cache-dir", cache, "--log-format", "json"]
    mt = Mailtrail(binary, mt_args, tmp)
    log(f"mailtrail pid {mt.proc.pid}: webhook 127.0.0.1:{mt.port}, "
        f"api 127.0.0.1:{mt.api_port}; redis-server 127.0.0.1:{redis.port}; tmp {tmp}")

    # --- bodies -----------------------------------------------------------------
    t0 = time.monotonic()
    gen = Bodies(pki, data_dir, base_ms)
    warm = gen.one("warmup@bench.example")
    for _ in range(2):  # the self-checks (pure Python, openssl) of the signer
        gen.one("check@bench.example")
    shares = [("c1", 1, 0.2), ("c8", 8, 0.4), ("c32", 32, 0.4)]
    files, jobs, rcpt_n = {}, [], 0
    for name, _, share in shares:
        n = max(nproc, int(a.bodies * share))
        files[name] = os.path.join(tmp, f"bodies-{name}.txt")
        jobs.append((files[name], [f"user{i:06d}@bench.example"
                                   for i in range(rcpt_n, rcpt_n + n)]))
        rcpt_n += n
    files["seed"] = os.path.join(tmp, "bodies-seed.txt")
    jobs.append((files["seed"], [HOT] * a.seed))
    gen.write_files(jobs, nproc)
    gen_secs = time.monotonic() - t0
    log(f"generated {gen.seq} signed bodies in {gen_secs:.1f}s with {gen.signer_name} "
        f"in {nproc} processes; {os.path.getsize(files['c8']) // len(jobs[1][1])} bytes each")

    # Warm-up: loads the cert from --cert-cache-dir; its body is the
    # redelivery body later.
    r = harness.http_request(mt.port, "POST", "/sns", warm.encode(),
                             {"Content-Type": "text/plain; charset=UTF-8",
                              "x-amz-sns-message-type": "Notification"})
    if r.status != 200 or r.json().get("status") != "stored":
        raise harness.HarnessError(f"warm-up POST not stored: {r}\n{mt.tail()}")
    conn_hdr = {"POST /sns": r.headers.get("connection", "-")}
    conn_hdr["GET /healthz"] = harness.http_request(mt.port, "GET", "/healthz").headers.get(
        "connection", "-")
    conn_hdr["GET /v1/..."] = harness.http_request(
        mt.api_port, "GET", "/v1/recipients/warmup%40bench.example").headers.get("connection", "-")
    with open(os.path.join(tmp, "bodies-dup.txt"), "w") as f:
        f.write(warm + "\n")
    time.sleep(1.0)
    idle = mt.status()
    mem0 = redis_used_memory(rc)

    wrk = Wrk(tmp, {"mt": mt.proc.pid, "redis": redis.proc.pid})
    rows = []
    sns_url = f"http://{LOOPBACK}:{mt.port}/sns"
    post = os.path.join(HERE, "post.lua")

    def row(label, r, note=""):
        rows.append((label, r, note))
        log(f"  {label:<44} c={r['conns']:<3} {r['rps']:>9.0f} req/s  "
            f"p50 {r['p50_us'] / 1000:7.2f} ms  p99 {r['p99_us'] / 1000:7.2f} ms  {note}")

    # --- 5. baseline ------------------------------------------------------------
    log("GET /healthz (HTTP baseline)")
    for c in (1, 8):
        r = wrk.run(f"http://{LOOPBACK}:{mt.port}/healthz", c, min(dur, 3))
        row("GET /healthz", r, f"non-2xx {r['err_status']}")

    # --- 1. unique ingest -----------------------------------------------------------
    log("POST /sns, unique signed bounces (one new recipient each)")
    ingest_total = {"stored": 0, "dup": 0}
    for name, c, _ in shares:
        before = mt.metrics()
        threads = max(1, min(c, nproc))
        r = wrk.run(sns_url, c, dur, script=post,
                    script_args=(files[name], threads, "stop"), threads=threads)
        after = mt.metrics()
        stored = (after["mailtrail_events_stored_total"]
                  - before["mailtrail_events_stored_total"])
        dup = (after["mailtrail_events_duplicate_total"]
               - before["mailtrail_events_duplicate_total"])
        ingest_total["stored"] += stored
        ingest_total["dup"] += dup
        r["stored"], r["dup"] = stored, dup
        row("POST /sns unique (new recipient each)", r,
            f"stored {stored}, dup {dup}, non-200 {r['non200']}, "
            f"bodies {r['bodies_loaded']}")
    mem1 = redis_used_memory(rc)
    rss_after_ingest = mt.status()

    # Cross-check Redis against the metrics.
    prefix = "mailtrail:"
    sum_script = ("local n, s = 0, 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                  "n = n + 1 s = s + redis.call('ZCARD', k) end return {n, s}")
    nkeys, zsum = rc("EVAL", sum_script, 0, prefix + "rcpt:{*")
    m_all = mt.metrics()
    stored_total = m_all["mailtrail_events_stored_total"]
    check_ingest = (f"Redis: {nkeys} rcpt keys holding {zsum} events; metrics "
                    f"events_stored_total {stored_total} (incl. 1 warm-up)")
    log("  " + check_ingest)
    if zsum != stored_total or nkeys != stored_total:
        log("  !! MISMATCH between Redis and the stored counter")
    sample = rc("KEYS", prefix + "rcpt:{user00001*")[:10]
    per_rcpt = [rc("MEMORY", "USAGE", k, "SAMPLES", "0") +
                rc("MEMORY", "USAGE", k.replace(b"rcpt:", b"counts:"), "SAMPLES", "0")
                for k in sample]
    recent_bytes = rc("MEMORY", "USAGE", prefix + "recent", "SAMPLES", "0")
    recent_n = rc("ZCARD", prefix + "recent")

    # --- 2. redelivery --------------------------------------------------------------
    log("POST /sns, the same (already stored) body again and again")
    before = mt.metrics()
    r = wrk.run(sns_url, 8, dur, script=post,
                script_args=(os.path.join(tmp, "bodies-dup.txt"), 0),
                threads=min(8, nproc))
    after = mt.metrics()
    dstored = after["mailtrail_events_stored_total"] - before["mailtrail_events_stored_total"]
    ddup = after["mailtrail_events_duplicate_total"] - before["mailtrail_events_duplicate_total"]
    row("POST /sns redelivery (same body)", r,
        f"stored {dstored}, dup {ddup}, non-200 {r['non200']}")

    # --- 3. seed one recipient, then query -----------------------------------------------
    log(f"POST /sns, {a.seed} events for one recipient ({HOT}): seeding for the queries")
    before = mt.metrics()
    mem_s0 = redis_used_memory(rc)
    r = wrk.run(sns_url, 8, max(dur, 30), script=post,
                script_args=(files["seed"], min(8, nproc), "stop"), threads=min(8, nproc))
    after = mt.metrics()
    sstored = after["mailtrail_events_stored_total"] - before["mailtrail_events_stored_total"]
    sdup = after["mailtrail_events_duplicate_total"] - before["mailtrail_events_duplicate_total"]
    row("POST /sns unique, one recipient (0 -> N)", r,
        f"stored {sstored}, dup {sdup}, non-200 {r['non200']}")
    hot_key = f"{prefix}rcpt:{{{HOT}}}"
    hot_n = rc("ZCARD", hot_key)
    mem_s1 = redis_used_memory(rc)
    hot_bytes = rc("MEMORY", "USAGE", hot_key, "SAMPLES", "0")
    log(f"  ZCARD {hot_key} = {hot_n}")
    if hot_n != a.seed:
        log(f"  !! expected {a.seed} events in {hot_key}")

    addr = urllib.parse.quote(HOT, safe="")
    api = f"http://{LOOPBACK}:{mt.api_port}"
    queries = [("GET events?limit=50", f"/v1/recipients/{addr}/events?limit=50", 50),
               ("GET events?limit=1000", f"/v1/recipients/{addr}/events?limit=1000", 1000),
               ("GET recipient summary", f"/v1/recipients/{addr}", None)]
    log(f"Queries on {HOT} ({hot_n} events)")
    for label, path, want in queries:
        resp = harness.http_request(mt.api_port, "GET", path)
        body = resp.json()
        if want is not None:
            ok = resp.status == 200 and len(body.get("events", [])) == min(want, hot_n)
            note = f"{len(resp.body)} B/answer"
        else:
            ok = resp.status == 200 and body.get("counts", {}).get("Bounce") == hot_n
            note = f"counts {body.get('counts')}, suppressed {body.get('suppressed')}"
        if not ok:
            log(f"  !! unexpected answer to {path}: {resp.status} {resp.body[:300]!r}")
        r = wrk.run(api + path, 8, dur)
        row(label + f" ({hot_n} held)", r, note + f", non-2xx {r['err_status']}")

    after_all = mt.status()
    m_final = mt.metrics()
    fetches = m_final.get("mailtrail_cert_fetches_total", 0)
    mt.stop()
    redis.stop()

    # --- report -------------------------------------------------------------------------
    total_secs = time.monotonic() - t_start
    ver = run(["wrk", "-v"], check=False).stdout.decode(errors="replace").split("\n")[0]
    rver = run(["redis-server", "--version"]).stdout.decode().strip()
    print()
    print("=" * 100)
    print("mailtrail benchmark")
    print(f"  machine   : nproc {nproc}, CPU {cpu_model()}, {platform.platform()}; "
          f"load average at start {loadavg}")
    print(f"  mailtrail : {binary}, build type {build_type(binary)}")
    print(f"  tools     : {ver.strip()}; {rver}")
    print("  note      : load generator, mailtrail and redis-server share the same "
          f"{nproc} CPU(s); everything on 127.0.0.1")
    print(f"  bodies    : {gen.seq} signed (SignatureVersion 2, RSA-2048) in {gen_secs:.1f}s "
          f"with {gen.signer_name}")
    print()
    hdr = (f"{'measurement':<42}{'conns':>6}{'secs':>6}{'requests':>9}{'req/s':>8}"
           f"{'p50 ms':>8}{'p99 ms':>8}{'err':>4}{'mt us':>7}{'rds us':>7}  notes")
    print(hdr)
    print("-" * len(hdr))
    for label, r, note in rows:
        print(f"{label:<42}{r['conns']:>6}{r['secs']:>6.1f}{r['requests']:>9}"
              f"{r['rps']:>8.0f}{r['p50_us'] / 1000:>8.2f}{r['p99_us'] / 1000:>8.2f}"
              f"{r['errors']:>4}{r['cpu_mt']:>7.0f}{r['cpu_redis']:>7.0f}  {note}")
    print("  err: socket errors and timeouts; mt us / rds us: CPU time (user+sys) of "
          "mailtrail / redis-server per answered request")
    print()
    print("memory")
    print(f"  mailtrail VmRSS/VmHWM idle after start : {idle['VmRSS'] / 1024:.1f} / "
          f"{idle['VmHWM'] / 1024:.1f} MiB ({idle['Threads']} threads)")
    print(f"  after the unique-ingest runs           : {rss_after_ingest['VmRSS'] / 1024:.1f}"
          f" / {rss_after_ingest['VmHWM'] / 1024:.1f} MiB")
    print(f"  after all load                         : {after_all['VmRSS'] / 1024:.1f} / "
          f"{after_all['VmHWM'] / 1024:.1f} MiB ({after_all['Threads']} threads)")
    st = ingest_total["stored"]
    if st:
        print(f"  Redis used_memory delta / event, distinct recipients: "
              f"{(mem1 - mem0) / st:.0f} B ({(mem1 - mem0) / 1048576:.1f} MiB for {st} events; "
              f"includes the 'recent' feed, {recent_n} events = {recent_bytes / 1048576:.1f} MiB)")
    if per_rcpt:
        print(f"  MEMORY USAGE per one-event recipient (rcpt zset + counts hash): "
              f"{sum(per_rcpt) / len(per_rcpt):.0f} B (sample of {len(per_rcpt)})")
    if sstored:
        print(f"  Redis used_memory delta / event, one recipient: "
              f"{(mem_s1 - mem_s0) / sstored:.0f} B; MEMORY USAGE of its zset / events: "
              f"{hot_bytes / max(1, hot_n):.0f} B")
    print()
    print("checks")
    print(f"  {check_ingest}")
    print(f"  {hot_key}: ZCARD {hot_n} (expected {a.seed})")
    print("  'Connection' header of the answers (close = wrk opens a new connection, and "
          "mailtrail a new thread, per request): "
          + ", ".join(f"{k}: {v}" for k, v in conn_hdr.items()))
    print(f"  cert fetches over the network: {fetches} (expected 0: cert from --cert-cache-dir)")
    print(f"  final metrics: stored {m_final['mailtrail_events_stored_total']}, duplicate "
          f"{m_final['mailtrail_events_duplicate_total']}")
    print()
    print("reproduce")
    print(f"  {shlex.join(['python3', os.path.relpath(__file__), a.binary, a.data_dir, '--keep'])}"
          "   # keeps the bodies and logs in the temp dir")
    print(f"  redis-server --port {redis.port} --bind 127.0.0.1 --save '' --appendonly no")
    print(f"  {shlex.join([binary] + mt_args)}")
    print("  (the wrk runs, in order; ports as in this run)")
    for c in wrk.commands:
        print(f"  {c}")
    print()
    print(f"total benchmark time: {total_secs:.0f}s"
          + (f"; temp dir kept: {tmp}" if a.keep else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
