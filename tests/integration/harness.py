"""Fixtures for the mailtrail integration tests.

Everything runs on 127.0.0.1 with ports picked by the kernel (bind port 0 and
read it back), in one temporary directory, and every child process is killed
on exit, even when a test or the set-up fails.  Python 3.11 standard library
only, plus the openssl, redis-server and redis-cli commands.

Pieces:
  Pki            test CA, TLS server cert for 127.0.0.1, SNS signing keys/certs
                 (openssl CLI, generated at test time)
  RedisServer    a real redis-server from a generated config
  Redis          a small RESP client
  WebHost        a recording HTTP(S) host (the fake SNS endpoint, decoys, and
                 the egress guard that plays an outbound proxy)
  SilentHost     a host that accepts connections and never answers
  Mailtrail      the program under test: start, wait for "listening", drain
                 its output, stop with SIGTERM
  SnsSigner      builds and signs SNS envelopes exactly as SPEC.md says
"""

import atexit
import base64
import ctypes
import ctypes.util
import datetime as dt
import http.client
import json
import os
import random
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import unittest
import threading
import time
import urllib.parse
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK = "127.0.0.1"

# Slow wrappers (valgrind) get proportionally longer waits.
WRAPPER = shlex.split(os.environ.get("MAILTRAIL_TEST_WRAPPER", ""))
TIME_FACTOR = 5.0 if WRAPPER else 1.0


class HarnessError(RuntimeError):
    """A fixture could not be set up: never a skip, always a failure."""


def require_command(name):
    path = shutil.which(name)
    if path is None:
        raise HarnessError(f"required command '{name}' not found in PATH: "
                           f"install it, these tests are never skipped")
    return path


# free_port() picks below the kernel's ephemeral range (32768-60999 on
# Debian): a port taken from that range can be handed out again to a
# port-0 listener or an outgoing connection before the server we meant it
# for binds it (or rebinds it after a restart), which failed test runs.
_PORT_LOW, _PORT_HIGH = 20000, 32767
_port_random = random.Random(os.getpid() ^ time.monotonic_ns())


def free_port():
    """A port that was free a moment ago (only for servers we cannot ask,
    like redis-server; our own servers bind port 0 directly)."""
    for _ in range(200):
        port = _port_random.randint(_PORT_LOW, _PORT_HIGH)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise HarnessError(f"no free port in {_PORT_LOW}-{_PORT_HIGH}")


# --- children: all of them are killed at exit --------------------------------

_children = set()
_children_lock = threading.Lock()


def track_child(proc):
    """Kill proc at exit (and on SIGTERM/SIGINT) if it still runs."""
    with _children_lock:
        _children.add(proc)


def _unregister(proc):
    with _children_lock:
        _children.discard(proc)


def kill_all_children():
    with _children_lock:
        procs = list(_children)
        _children.clear()
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass


atexit.register(kill_all_children)


def _on_signal(signum, frame):
    kill_all_children()
    raise SystemExit(128 + signum)


def install_signal_handlers():
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _on_signal)


def run_module_tests(module, names=()):
    """Runs a test module's cases, or only those named (e.g. a class),
    verbose, children killed at the end; the exit status: 0 only when some
    ran and all passed."""
    install_signal_handlers()
    started = time.monotonic()
    try:
        runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout)
        loader = unittest.defaultTestLoader
        tests = (loader.loadTestsFromNames(names, module) if names
                 else loader.loadTestsFromModule(module))
        result = runner.run(tests)
        print(f"total {time.monotonic() - started:.1f} s", file=sys.stderr)
        return 0 if result.testsRun and result.wasSuccessful() else 1
    finally:
        kill_all_children()


def run(cmd, check=True, **kw):
    """Run a short command; on failure raise with its output."""
    r = subprocess.run(cmd, capture_output=True, **kw)
    if check and r.returncode != 0:
        raise HarnessError(f"command failed ({r.returncode}): {shlex.join(cmd)}\n"
                           f"stdout: {r.stdout!r}\nstderr: {r.stderr!r}")
    return r


# --- time ---------------------------------------------------------------------

def iso_ms(t):
    """datetime (UTC) -> 'YYYY-MM-DDTHH:MM:SS.mmmZ' as SNS and EVENT write it."""
    t = t.astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def now_iso(offset_seconds=0):
    return iso_ms(dt.datetime.now(dt.timezone.utc)
                  + dt.timedelta(seconds=offset_seconds))


def ms_to_iso(ms):
    """ms since the epoch -> 'YYYY-MM-DDTHH:MM:SS.mmmZ'."""
    return iso_ms(dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc)
                  + dt.timedelta(milliseconds=ms % 1000))


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def event_from_member(member, recipient, score, topics):
    """The EVENT (a dict, keys in SPEC order) of a member of recipient's
    set at score: a compact member (include/member.h) rebuilt, written
    here apart from src/member.c so that each checks the other; a full one
    (what versions before compact members stored) as it is.  topics: the
    {prefix}topics hash (Redis.topics())."""
    m = json.loads(member)
    if "time" in m or "t" not in m:
        return m
    mail = {}
    if "m" in m:
        mail["messageId"] = m["m"]
    elif "p" in m:
        raw = "".join(f"{_B64URL.index(c):06b}" for c in m["p"][:32])
        h = "".join(f"{int(raw[i:i + 4], 2):x}" for i in range(0, 192, 4))
        mail["messageId"] = "-".join([h[:16], h[16:24], h[24:28], h[28:32], h[32:36],
                                      h[36:48], m["p"][32:]])
    if "s" in m:
        mail["source"] = m["s"]
    ts = m.get("ts", 0)
    if ts is not None:
        mail["timestamp"] = ts if isinstance(ts, str) else ms_to_iso(score + ts)
    rcpt = m.get("r", recipient)
    d = m.get("d", [rcpt])
    if d != 0:
        mail["destination"] = d
    if "n" in m:
        mail["destinationCount"] = m["n"]
    if "h" in m:
        mail["commonHeaders"] = m["h"]
    arn = topics.get(m["t"])
    return {"id": m["id"], "type": m["type"], "time": ms_to_iso(score), "recipient": rcpt,
            "topicArn": None if arn is None else json.loads('"' + arn + '"'),
            "mail": mail, "detail": m.get("x", {})}


def iso_to_ms(s):
    """'2016-01-27T14:59:38.237Z' -> ms since the epoch."""
    t = dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
    t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp()) * 1000 + t.microsecond // 1000


# --- PKI ----------------------------------------------------------------------

_CA_CNF = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = copy
email_in_dn = no
[ policy_any ]
commonName = supplied
[ server_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
[ signing_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
"""


class LibcryptoRsa:
    """RSA PKCS#1 v1.5 signatures through libcrypto's EVP_DigestSign
    (ctypes): the same bytes as `openssl dgst -sign`, without a process per
    signature (tests that sign thousands of deliveries need that)."""

    def __init__(self, key_path, digest="sha256"):
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
        lc.EVP_sha1.restype = vp
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
        self.md = {"sha1": lc.EVP_sha1, "sha256": lc.EVP_sha256}[digest]()
        self.buf = ctypes.create_string_buffer(1024)
        self.lock = threading.Lock()

    def sign(self, data):
        lc = self.lc
        with self.lock:
            ctx = lc.EVP_MD_CTX_new()
            n = ctypes.c_size_t(len(self.buf))
            try:
                if (lc.EVP_DigestSignInit(ctx, None, self.md, None, self.pkey) != 1 or
                        lc.EVP_DigestSign(ctx, self.buf, ctypes.byref(n), data, len(data)) != 1):
                    raise OSError("EVP_DigestSign failed")
            finally:
                lc.EVP_MD_CTX_free(ctx)
            return self.buf.raw[:n.value]


class Pki:
    """Test CA + server certificate for 127.0.0.1 + SNS signing certificates.

    openssl 3.0's `req -x509` cannot back-date a certificate, so certificates
    with explicit validity windows are issued through `openssl ca`.
    """

    def __init__(self, directory):
        self.dir = directory
        self._signers = {}  # (key path, digest) -> LibcryptoRsa, or False
        os.makedirs(os.path.join(directory, "newcerts"))
        open(os.path.join(directory, "index.txt"), "w").close()
        with open(os.path.join(directory, "serial"), "w") as f:
            f.write("1000\n")
        self.cnf = self._path("ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(_CA_CNF.format(dir=directory))

        # Test CA (for TLS only: the SNS host and mailtrail's own listener).
        self.ca_key = self._genkey("ca.key")
        self.ca_cert = self._path("ca.pem")
        run(["openssl", "req", "-x509", "-new", "-key", self.ca_key,
             "-subj", "/CN=mailtrail test CA", "-days", "3650",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", self.ca_cert])

        # TLS server certificate for IP 127.0.0.1.
        self.server_key = self._genkey("server.key")
        self.server_cert = self._issue("server", self.server_key,
                                       "/CN=127.0.0.1", "server_ext",
                                       "20200101000000Z", "20491231000000Z",
                                       selfsign=False)

        # SNS signing certificates: self-signed, CN sns.amazonaws.com.
        self.signing_key = self._genkey("signing.key")
        self.signing_cert = self._issue("signing", self.signing_key,
                                        "/CN=sns.amazonaws.com", "signing_ext",
                                        "20200101000000Z", "20491231000000Z")
        # Valid only during 2020: used with message Timestamps inside and
        # outside that window (validity is judged at the Timestamp).
        self.old_key = self._genkey("old.key")
        self.old_cert = self._issue("old", self.old_key,
                                    "/CN=sns.amazonaws.com", "signing_ext",
                                    "20200101000000Z", "20210101000000Z")
        # A key whose certificate is never served: signatures made with it
        # must not verify against signing_cert.
        self.rogue_key = self._genkey("rogue.key")

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _genkey(self, name, bits=2048):
        path = self._path(name)
        run(["openssl", "genpkey", "-algorithm", "RSA",
             "-pkeyopt", f"rsa_keygen_bits:{bits}", "-out", path])
        return path

    def signing_pair(self, name, bits=2048, cn="sns.amazonaws.com"):
        """A new self-signed signing certificate (key path, cert path),
        valid 2020-2049, for certificates mailtrail must refuse (a short
        key, a name that is not SNS's).  Every certificate the harness
        serves by default names sns.amazonaws.com, as AWS's do."""
        key = self._genkey(name + ".key", bits)
        return key, self._issue(name, key, "/CN=" + cn, "signing_ext",
                                "20200101000000Z", "20491231000000Z")

    def _issue(self, name, key, subj, ext, start, end, selfsign=True):
        csr = self._path(name + ".csr")
        out = self._path(name + ".pem")
        run(["openssl", "req", "-new", "-key", key, "-subj", subj, "-out", csr])
        cmd = ["openssl", "ca", "-batch", "-notext", "-config", self.cnf,
               "-extensions", ext, "-startdate", start, "-enddate", end,
               "-in", csr, "-out", out]
        if selfsign:
            cmd += ["-selfsign", "-keyfile", key]
        else:
            cmd += ["-cert", self.ca_cert, "-keyfile", self.ca_key]
        run(cmd)
        return out

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def sign(self, data, key, version):
        """SignatureVersion "1" = SHA1withRSA, "2" = SHA256withRSA; base64.
        In process through libcrypto; the openssl command checks the first
        signature of each kind (and signs when libcrypto cannot be loaded)."""
        digest = {"1": "sha1", "2": "sha256"}[version]
        signer = self._signers.get((key, digest))
        if signer is None:
            try:
                signer = LibcryptoRsa(key, digest)
            except OSError:
                signer = False
            self._signers[(key, digest)] = signer
            check = run(["openssl", "dgst", "-" + digest, "-sign", key], input=data).stdout
            if signer and signer.sign(data) != check:
                raise HarnessError("libcrypto and openssl signatures differ")
        sig = signer.sign(data) if signer else run(
            ["openssl", "dgst", "-" + digest, "-sign", key], input=data).stdout
        return base64.b64encode(sig).decode("ascii")

    def client_context(self):
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        return ctx

    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        return ctx


def pem_body(pem_bytes):
    """The base64 of the first certificate in a PEM, whitespace removed (to
    compare certificates independent of line wrapping)."""
    text = pem_bytes.decode("ascii", "replace")
    begin = text.index("-----BEGIN CERTIFICATE-----") + len("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----")
    return "".join(text[begin:end].split())


# --- Redis ----------------------------------------------------------------------

class RedisError(Exception):
    pass


class Redis:
    """Minimal RESP2 client: enough for FLUSHALL, KEYS, ZRANGE, PING."""

    def __init__(self, port, timeout=5.0):
        self.port = port
        self.timeout = timeout
        self.sock = None
        self.rfile = None

    def close(self):
        if self.sock is not None:
            try:
                self.rfile.close()
                self.sock.close()
            finally:
                self.sock = self.rfile = None

    def __call__(self, *args):
        if self.sock is None:
            self.sock = socket.create_connection((LOOPBACK, self.port),
                                                 timeout=self.timeout)
            self.rfile = self.sock.makefile("rb")
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        payload = b"*%d\r\n" % len(parts) + b"".join(
            b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        try:
            self.sock.sendall(payload)
            return self._read()
        except (OSError, EOFError):
            self.close()
            raise

    def _read(self):
        line = self.rfile.readline()
        if not line.endswith(b"\r\n"):
            raise EOFError("redis connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.rfile.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RedisError(f"unexpected RESP line {line!r}")

    # conveniences
    def keys(self, pattern="*"):
        return sorted(k.decode() for k in self("KEYS", pattern))

    def topics(self, prefix="mailtrail:"):
        """{prefix}topics: the compact members' topic references -> ARN
        (JSON text between the quotes)."""
        flat = self("HGETALL", prefix + "topics")
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    def zrange_withscores(self, key):
        """[(member_bytes, score_int), ...] lowest score first."""
        flat = self("ZRANGE", key, 0, -1, "WITHSCORES")
        return [(flat[i], int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]


class RedisServer:
    """A real redis-server on 127.0.0.1 with a generated config."""

    # The encoding thresholds README ("Redis memory") recommends and
    # deploy/ sets: recipients' sets and counts hashes stay listpacks.
    RECOMMENDED = ("zset-max-listpack-entries 128\nzset-max-listpack-value 1024\n"
                   "hash-max-listpack-entries 128\nhash-max-listpack-value 64\n")

    def __init__(self, directory, port=None, durable=False, redis_defaults=False,
                 extra_conf=""):
        """durable: an append-only file synced on every write, so that a
        kill -9 and a start again lose nothing Redis acknowledged.
        redis_defaults: Redis's own encoding thresholds instead of
        RECOMMENDED; extra_conf: more redis.conf lines."""
        require_command("redis-server")
        require_command("redis-cli")
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.port = port or free_port()
        self.aof = (["--appendonly", "yes", "--appendfsync", "always"] if durable
                    else ["--appendonly", "no"])
        self.proc = None
        self.conf = os.path.join(directory, "redis.conf")
        with open(self.conf, "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\nsave \"\"\n"
                    f"appendonly no\ndir {directory}\ndaemonize no\n"
                    f"protected-mode yes\n"
                    + ("" if redis_defaults else self.RECOMMENDED) + extra_conf)
        self.client = Redis(self.port)

    def start(self, timeout=10.0):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            ["redis-server", self.conf, "--port", str(self.port),
             "--bind", LOOPBACK, "--save", ""] + self.aof + ["--dir", self.dir],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        track_child(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"redis-server exited ({self.proc.returncode}); "
                                   f"log:\n{self.log()}")
            try:
                if self.client("PING") == "PONG":
                    return self
            except (OSError, EOFError, RedisError):
                self.client.close()
            time.sleep(0.05)
        raise HarnessError(f"redis-server on port {self.port} did not answer PING "
                           f"within {timeout}s; log:\n{self.log()}")

    def stop(self):
        self.client.close()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            _unregister(self.proc)
            self.proc = None

    def cli(self, *args):
        """The same through redis-cli (used once to prove the CLI works)."""
        return run(["redis-cli", "-h", LOOPBACK, "-p", str(self.port)] + list(args))

    def log(self):
        try:
            with open(os.path.join(self.dir, "redis.log"), "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"


# --- recording web hosts --------------------------------------------------------

class Request:
    __slots__ = ("method", "path", "host")

    def __init__(self, method, path, host):
        self.method, self.path, self.host = method, path, host

    def __repr__(self):
        return f"{self.method} {self.path} (Host: {self.host})"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sns-test-host"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _handle(self):
        host = self.server.webhost
        host._record(Request(self.command, self.path, self.headers.get("Host")))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, ctype, body = host.respond(self.command, self.path)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", body.decode())
            body = b"moved\n"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_CONNECT = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client hanging up mid-answer (mailtrail capping a cert body) is
        # expected; anything else is printed.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class WebHost:
    """An HTTP(S) server in a thread that records every request and answers
    from a table of files.  Used as the fake SNS host (TLS), as decoys a
    broken URL check would reach, and as an egress guard (outbound proxy)."""

    CONFIRM_XML = (b'<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
                   b"<ConfirmSubscriptionResult><SubscriptionArn>arn:aws:sns:us-east-1:123456789012:"
                   b"test:0000</SubscriptionArn></ConfirmSubscriptionResult>"
                   b"</ConfirmSubscriptionResponse>\n")

    def __init__(self, name, tls_context=None):
        self.name = name
        self.files = {}          # path (no query) -> bytes, answered 200
        self.fail_tokens = set()  # ConfirmSubscription Token values answered 500
        self.redirects = {}      # path -> Location, answered 302
        self.deny_all = False
        self._lock = threading.Lock()
        self._requests = []
        self.httpd = _Server((LOOPBACK, 0), _Handler)
        self.httpd.webhost = self
        if tls_context is not None:
            # Handshake in the handler thread, so one stuck client cannot
            # block the accept loop.
            self.httpd.socket = tls_context.wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls_context is not None else "http"
        self.authority = f"{LOOPBACK}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       name=f"webhost-{name}", daemon=True)
        self.thread.start()

    def url(self, path):
        return f"{self.scheme}://{self.authority}{path}"

    def _record(self, req):
        with self._lock:
            self._requests.append(req)

    def requests(self):
        with self._lock:
            return list(self._requests)

    def clear(self):
        with self._lock:
            self._requests.clear()

    def gets_of(self, path):
        return [r for r in self.requests() if r.method == "GET" and r.path == path]

    def respond(self, method, raw_path):
        if self.deny_all:
            return 403, "text/plain", b"denied by test egress guard\n"
        if raw_path in self.redirects:
            return 302, "text/plain", self.redirects[raw_path]
        parsed = urllib.parse.urlsplit(raw_path)
        if method in ("GET", "HEAD"):
            with self._lock:
                body = self.files.get(parsed.path)
            if body is not None:
                return 200, "application/x-pem-file", body
            q = urllib.parse.parse_qs(parsed.query)
            if parsed.path == "/" and q.get("Action") == ["ConfirmSubscription"]:
                if set(q.get("Token", [])) & self.fail_tokens:
                    return 500, "text/plain", b"internal error\n"
                return 200, "text/xml", self.CONFIRM_XML
        return 404, "text/plain", b"not found\n"

    def set_file(self, path, body):
        with self._lock:
            if body is None:
                self.files.pop(path, None)
            else:
                self.files[path] = body

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class SilentHost:
    """A host that accepts TCP connections and never answers: a
    certificate host that hangs (mailtrail's download then waits for its
    own timeout).  Connections are held open until close()."""

    def __init__(self, name="silent"):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.authority = f"{LOOPBACK}:{self.port}"
        self._lock = threading.Lock()
        self._conns = []
        self._closed = False
        self.thread = threading.Thread(target=self._accept, name=f"silent-{name}",
                                       daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    c.close()
                    return
                self._conns.append(c)

    def url(self, path):
        return f"https://{self.authority}{path}"

    def connections(self):
        with self._lock:
            return len(self._conns)

    def requests(self):  # nothing is ever read: MailtrailTestCase context
        return []

    def clear(self):
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            c.close()

    def close(self):
        with self._lock:
            self._closed = True
        self.clear()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# --- HTTP client ------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<HTTP {self.status} {self.body[:300]!r}>"


def http_request(port, method, path, body=None, headers=None, tls_context=None,
                 timeout=None):
    timeout = timeout or 30.0 * TIME_FACTOR
    if tls_context is not None:
        conn = http.client.HTTPSConnection(LOOPBACK, port, timeout=timeout,
                                           context=tls_context)
    else:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


# --- mailtrail -----------------------------------------------------------------------

class Mailtrail:
    """One mailtrail process.  stdout/stderr are drained by threads so the
    pipes never block; log() returns what was captured."""

    def __init__(self, binary, args, env=None, name="mailtrail"):
        self.binary = binary
        self.args = list(args)
        self.cmd = WRAPPER + [binary] + self.args
        self.env = env
        self.name = name
        self.proc = None
        self.port = None
        self.out_lines = []
        self.err_lines = []
        self._cond = threading.Condition()
        self._threads = []

    def _drain(self, stream, sink):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                sink.append(line)
                self._cond.notify_all()
        stream.close()
        with self._cond:
            self._cond.notify_all()

    def start(self, timeout=10.0):
        if not os.access(self.binary, os.X_OK):
            raise HarnessError(f"mailtrail binary not found or not executable: {self.binary}")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=self.env)
        track_child(self.proc)
        for stream, sink in ((self.proc.stdout, self.out_lines),
                             (self.proc.stderr, self.err_lines)):
            t = threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
            t.start()
            self._threads.append(t)
        self.port = self.wait_listen_port("listening", timeout)
        return self

    def request(self, method, path, body=None, headers=None, tls_context=None):
        return http_request(self.port, method, path, body, headers, tls_context)

    def settled_metrics(self, timeout=10.0):
        """/metrics as text once every earlier request is counted: a
        request is counted when libmicrohttpd reports it complete, which
        can be just after its client read the answer (a streamed one's
        last byte included), so asked again until only the scrape itself
        is in flight (the last text after timeout)."""
        deadline = time.monotonic() + timeout * TIME_FACTOR
        while True:
            text = self.request("GET", "/metrics").body.decode()
            if ("\nmailtrail_http_requests_in_flight 1\n" in text
                    or time.monotonic() > deadline):
                return text
            time.sleep(0.02)

    def wait_listen_port(self, msg, timeout=10.0):
        """The port of the first log line {"msg":msg,"listen":"127.0.0.1:PORT"}
        (e.g. msg="api listening" for the --api-listen listener), waiting
        for it after start()."""
        deadline = time.monotonic() + timeout * TIME_FACTOR
        with self._cond:
            while True:
                for line in self.out_lines:
                    port = _listening_port(line, msg)
                    if port is not None:
                        return port
                if self.proc is None or self.proc.poll() is not None:
                    rc = None if self.proc is None else self.proc.returncode
                    raise HarnessError(
                        f"{self.name} exited with {rc} before logging \"{msg}\"\n"
                        f"command: {shlex.join(self.cmd)}\n{self.log()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessError(
                        f"{self.name} did not log a \"{msg}\" line with "
                        f"\"listen\":\"127.0.0.1:PORT\" within {timeout * TIME_FACTOR}s\n"
                        f"command: {shlex.join(self.cmd)}\n{self.log()}")
                self._cond.wait(min(left, 0.2))

    def post_sns(self, body, msg_type="Notification", extra_headers=None,
                 tls_context=None):
        headers = {"Content-Type": "text/plain; charset=UTF-8"}
        if msg_type is not None:
            headers["x-amz-sns-message-type"] = msg_type
        if extra_headers:
            headers.update(extra_headers)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        return self.request("POST", "/sns", body, headers, tls_context)

    def stop(self, timeout=10.0):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout * TIME_FACTOR)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = None
        for t in self._threads:
            t.join(timeout=5)
        _unregister(self.proc)
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            _unregister(self.proc)

    def log(self, tail=60):
        with self._cond:
            out = self.out_lines[-tail:]
            err = self.err_lines[-tail:]
        return (f"--- {self.name} stdout (last {len(out)} lines) ---\n" + "\n".join(out)
                + f"\n--- {self.name} stderr (last {len(err)} lines) ---\n" + "\n".join(err))


def _listening_port(line, msg="listening"):
    """The port of a JSON log line {"msg":msg,"listen":"127.0.0.1:PORT"}."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("msg") != msg:
        return None
    listen = obj.get("listen")
    if not isinstance(listen, str) or not listen.startswith(LOOPBACK + ":"):
        return None
    try:
        port = int(listen.rsplit(":", 1)[1])
    except ValueError:
        return None
    return port if port > 0 else None


# --- SNS envelopes ----------------------------------------------------------------------

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                       "TopicArn", "Type")


def string_to_sign(msg):
    """The canonical string of SPEC.md, UTF-8 encoded."""
    fields = NOTIFICATION_FIELDS if msg["Type"] == "Notification" else CONFIRMATION_FIELDS
    out = []
    for k in fields:
        if k == "Subject" and msg.get("Subject") is None:
            continue
        out.append(f"{k}\n{msg[k]}\n")
    return "".join(out).encode("utf-8")


class SnsSigner:
    """Builds SNS envelopes (field order as SNS writes them) and signs them."""

    TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
    CERT_PATH = "/SimpleNotificationService-test.pem"

    def __init__(self, pki, sns_host):
        self.pki = pki
        self.host = sns_host
        self._n = 0
        self._lock = threading.Lock()

    def new_id(self):
        with self._lock:
            self._n += 1
            n = self._n
        return f"00000000-0000-4000-8000-{os.getpid() % 100000:05d}{n:07d}"

    def cert_url(self, path=None):
        return self.host.url(path or self.CERT_PATH)

    def notification(self, message, subject=None, topic=None, timestamp=None,
                     message_id=None, version="1", cert_url=None, key=None,
                     sign=True, with_subject_null=False):
        msg = {"Type": "Notification",
               "MessageId": message_id or self.new_id(),
               "TopicArn": topic or self.TOPIC}
        if subject is not None:
            msg["Subject"] = subject
        elif with_subject_null:
            msg["Subject"] = None
        msg["Message"] = message
        msg["Timestamp"] = timestamp or now_iso()
        msg["SignatureVersion"] = version
        msg["Signature"] = ""
        msg["SigningCertURL"] = cert_url or self.cert_url()
        msg["UnsubscribeURL"] = self.host.url(
            "/?Action=Unsubscribe&SubscriptionArn=" + msg["TopicArn"] + ":0000")
        if sign:
            self.sign(msg, key=key)
        return msg

    def confirmation(self, msg_type="SubscriptionConfirmation", topic=None,
                     subscribe_url=None, token=None, timestamp=None,
                     version="1", cert_url=None, sign=True):
        topic = topic or self.TOPIC
        token = token or ("2336412f37fb687f5d51e6e2425" + self.new_id().replace("-", ""))
        if subscribe_url is None:
            subscribe_url = self.host.url(
                "/?Action=ConfirmSubscription&TopicArn=" + topic + "&Token=" + token)
        verb = ("subscribe to the topic" if msg_type == "SubscriptionConfirmation"
                else "deactivate subscription")
        msg = {"Type": msg_type,
               "MessageId": self.new_id(),
               "Token": token,
               "TopicArn": topic,
               "Message": f"You have chosen to {verb} {topic}.\n"
                          f"To confirm the subscription, visit the SubscribeURL "
                          f"included in this message.",
               "SubscribeURL": subscribe_url,
               "Timestamp": timestamp or now_iso(),
               "SignatureVersion": version,
               "Signature": "",
               "SigningCertURL": cert_url or self.cert_url()}
        if sign:
            self.sign(msg)
        return msg

    def sign(self, msg, key=None, version=None):
        version = version or msg["SignatureVersion"]
        msg["Signature"] = self.pki.sign(string_to_sign(msg),
                                         key or self.pki.signing_key, version)
        return msg


# mailtrail refuses to start without --topic (or --any-topic).  Unless a
# test says otherwise, it accepts the topics of the test signer's account
# (SnsSigner.TOPIC and the others the tests make up there): an ARN pattern,
# as a deployment restricted to its own AWS account would use.  Given as
# MAILTRAIL_TOPIC, so a --topic or --any-topic flag of a test replaces it.
DEFAULT_TOPIC = "arn:aws:sns:*:123456789012:*"


def guarded_env(guard_port, extra=None):
    """The environment for a mailtrail under test: no MAILTRAIL_* from the
    caller except MAILTRAIL_TOPIC=DEFAULT_TOPIC (unless extra sets
    MAILTRAIL_TOPIC or MAILTRAIL_ANY_TOPIC; "" unsets it), and every proxy
    variable pointing at the egress guard on guard_port, so any attempt to
    reach a host outside 127.0.0.1 is seen (and refused) there."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MAILTRAIL_")
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    proxy = f"http://127.0.0.1:{guard_port}"
    for k in ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env[k] = proxy
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    extra = dict(extra or {})
    if "MAILTRAIL_TOPIC" not in extra and "MAILTRAIL_ANY_TOPIC" not in extra:
        env["MAILTRAIL_TOPIC"] = DEFAULT_TOPIC
    env.update(extra)
    for k in [k for k, v in env.items() if k.startswith("MAILTRAIL_") and v == ""]:
        del env[k]
    return env


class Environment:
    """The fixtures every integration suite shares: a temp dir, the test
    PKI, a real redis-server, the local HTTPS "SNS" host serving the signing
    certificate, the egress guard, and a signer.  Suites add their own hosts
    to self.hosts."""

    def __init__(self, prefix):
        for cmd in ("openssl", "redis-server", "redis-cli"):
            require_command(cmd)
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        # Removed even if the set-up below fails half-way.
        atexit.register(shutil.rmtree, self.tmp, True)
        self.pki = Pki(os.path.join(self.tmp, "pki"))
        self.redis_server = RedisServer(os.path.join(self.tmp, "redis")).start()
        self.redis = self.redis_server.client
        self.redis_url = f"redis://127.0.0.1:{self.redis_server.port}/0"
        # The fake SNS host, allowed by the test host pattern.
        self.sns = WebHost("sns", self.pki.server_context())
        self.sns.set_file(SnsSigner.CERT_PATH, self.pki.read(self.pki.signing_cert))
        # Outbound proxy for everything not on loopback; answers 403, records.
        self.guard = WebHost("egress-guard")
        self.guard.deny_all = True
        self.hosts = [self.sns, self.guard]
        self.signer = SnsSigner(self.pki, self.sns)

    def child_env(self, extra=None):
        return guarded_env(self.guard.port, extra)

    def close(self):
        for h in self.hosts:
            h.close()
        self.redis_server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def suite_main(module, argv):
    """main() of a suite run as `suite.py <mailtrail-binary> <tests/data>
    [TestClass ...]`: sets module.BINARY and module.DATA, then
    run_module_tests."""
    if len(argv) < 3:
        print(module.__doc__, file=sys.stderr)
        return 2
    module.BINARY = os.path.abspath(argv[1])
    module.DATA = os.path.abspath(argv[2])
    return run_module_tests(module, argv[3:])


class MailtrailTestCase(unittest.TestCase):
    """What every integration test case does: a clean Redis and clean
    recording hosts per test, no request ever past the egress guard,
    mailtrail processes stopped with exit 0 on SIGTERM asserted, and
    failure messages that carry the hosts' requests, the Redis keys and the
    processes' logs.  env is the suite's Environment, set by setUpModule."""

    env = None
    binary = None  # the mailtrail under test, set by setUpModule
    log_tail = None  # lines of each log shown on failure (None: all)
    procs = ()

    def setUp(self):
        self.procs = []
        self.env.redis("FLUSHALL")
        for h in self.env.hosts:
            h.clear()

    def tearDown(self):
        self.assertEqual(self.env.guard.requests(), [],
                         "mailtrail tried to reach a host outside 127.0.0.1")

    def _formatMessage(self, msg, standardMsg):  # noqa: N802 - unittest hook
        return super()._formatMessage(msg, standardMsg) + "\n" + self.context()

    def context(self):
        parts = ["=== context ==="]
        for h in self.env.hosts:
            parts.append(f"{h.name} ({h.authority}) saw: {h.requests()}")
        try:
            parts.append(f"redis keys: {self.env.redis.keys()}")
        except Exception as e:  # noqa: BLE001 - context only
            parts.append(f"redis keys: unavailable ({e})")
        for m in list(self.procs) + list(getattr(type(self), "class_procs", [])):
            parts.append(f"command: {shlex.join(m.cmd)}")
            parts.append(m.log() if self.log_tail is None else m.log(tail=self.log_tail))
        return "\n".join(parts)

    def launch(self, args, env=None, name=None):
        """Starts a mailtrail (guarded environment) that is stopped, and
        checked to exit 0 on SIGTERM, when the test ends."""
        m = Mailtrail(self.binary, args, env=self.env.child_env(env),
                      name=name or f"mailtrail#{len(self.procs) + 1}")
        self.procs.append(m)
        try:
            m.start()
        except Exception:
            m.kill()
            raise
        self.addCleanup(self.stop, m)
        return m

    def stop(self, m):
        if m.proc is None or getattr(m, "_stopped", False):
            return
        m._stopped = True
        alive = m.proc.poll() is None
        rc = m.stop()
        self.assertTrue(alive, f"{m.name} had already exited with {rc} before SIGTERM")
        self.assertEqual(rc, 0, f"{m.name} must exit 0 within 10 s of SIGTERM "
                                f"(None = had to be killed)")

