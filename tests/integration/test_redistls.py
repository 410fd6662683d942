#!/usr/bin/env python3
"""mailtrail on managed-style Redis: TLS (rediss://) and ACL users.

    python3 tests/integration/test_redistls.py <mailtrail-binary> <tests/data>

Debian's own redis-server (built with TLS) is started with `--port 0
--tls-port N` (no plaintext port at all), certificates made here with the
openssl command: a test CA, a server certificate for the DNS name
`localhost` only (so the host name check is seen: 127.0.0.1 is not in it),
a client certificate, and a second, unrelated CA.  Redis has an ACL user
`mailtrail` with exactly the rule README.md gives (read from README.md, so
the documented rule is the tested one), and the default user has another
password.  Checked:

  - rediss://mailtrail:PW@localhost: every kind of SES event stored through
    the store script (adds, redelivery, retention trims, suppression),
    read back through every API route, the suppression index's script
    (its put, and a prune step) and its rebuild, /readyz ready; ACL LOG
    empty (no command mailtrail sends is outside the rule); the connections are
    TLS and authenticated as `mailtrail` (CLIENT LIST);
  - SNI is the URL's host name (a recording TLS server), and none for an IP;
  - the certificate's name is checked: rediss://...@127.0.0.1 fails;
  - a wrong CA, no CA file (the system store does not know the test CA), a
    wrong password, an unknown user: 503 to SNS, /readyz 503, a log line
    that says why, and the password nowhere in logs or /metrics;
  - a client certificate (tls-auth-clients yes): refused without
    --redis-cert/--redis-key, stored with them;
  - TLS files that cannot be used: exit 2 with one line naming the option;
  - redis://mailtrail:PW@ on plaintext Redis: the same ACL user;
  - a Redis Cluster over TLS only (3 masters, tls-cluster yes, port 0,
    the ACL user on every node): events stored on the node that owns each
    recipient's slot, read back through the API, and a MOVED (a slot moved
    after mailtrail loaded the map) followed to the new owner's TLS port.
"""

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import LOOPBACK, HarnessError, Mailtrail, free_port, iso_ms, run, track_child  # noqa: E402
from test_suppressions import supp_bucket  # noqa: E402

BINARY = None
DATA = None
ENV = None

PW = "Mt-pw-7f3c9a1e5b"          # the mailtrail ACL user's password
ADMIN_PW = "Admin-pw-2b8d4e6f0a"  # the default user's (the test's own client)
T0 = 1772438400000  # 2026-03-02T08:00:00Z


def readme_acl_rule():
    """The rules after `user mailtrail on >PASSWORD` in README.md."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
    with open(path, encoding="utf-8") as f:
        m = re.search(r"^user mailtrail on >PASSWORD (.+)$", f.read(), re.M)
    if not m:
        raise HarnessError("README.md has no 'user mailtrail on >PASSWORD ...' line")
    return m.group(1).split()




# --- certificates ----------------------------------------------------------------

class TlsPki:
    """Two CAs; a server certificate (DNS:localhost only), a cluster one
    (IP:127.0.0.1, the address cluster nodes announce), a client one."""

    def __init__(self, d):
        self.d = d
        os.makedirs(d, exist_ok=True)
        self.ca, self.ca_key = self._ca("ca")
        self.other_ca, _ = self._ca("other-ca")
        self.server, self.server_key = self._leaf("server", "DNS:localhost")
        self.node, self.node_key = self._leaf("node", "IP:127.0.0.1")
        self.client, self.client_key = self._leaf("client", None)
        # A key that is not the client certificate's.
        self.stray_key = self._key("stray")

    def p(self, name):
        return os.path.join(self.d, name)

    def _key(self, name):
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-out", self.p(name + ".key")])
        return self.p(name + ".key")

    def _ca(self, name):
        key = self._key(name)
        run(["openssl", "req", "-x509", "-new", "-key", key, "-subj", f"/CN=redistls {name}",
             "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", self.p(name + ".pem")])
        return self.p(name + ".pem"), key

    def _leaf(self, name, san):
        key = self._key(name)
        run(["openssl", "req", "-new", "-key", key, "-subj", f"/CN=redistls {name}",
             "-out", self.p(name + ".csr")])
        with open(self.p(name + ".ext"), "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n")
            if san:
                f.write(f"subjectAltName={san}\n")
        run(["openssl", "x509", "-req", "-in", self.p(name + ".csr"), "-CA", self.ca,
             "-CAkey", self.ca_key, "-CAcreateserial", "-days", "2",
             "-extfile", self.p(name + ".ext"), "-out", self.p(name + ".pem")])
        return self.p(name + ".pem"), key

    def client_context(self, host_check=True):
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.check_hostname = host_check
        ctx.load_cert_chain(self.client, self.client_key)
        return ctx


# --- TLS Redis ------------------------------------------------------------------------

class TlsRedis(harness.Redis):
    """harness.Redis over TLS, authenticated as the default user."""

    def __init__(self, port, ctx, host="localhost", password=ADMIN_PW):
        super().__init__(port)
        self.ctx, self.host, self.password = ctx, host, password

    def __call__(self, *args):
        if self.sock is None:
            raw = socket.create_connection((LOOPBACK, self.port), timeout=self.timeout)
            try:
                self.sock = self.ctx.wrap_socket(raw, server_hostname=self.host)
            except (OSError, ssl.SSLError):
                raw.close()
                raise
            self.rfile = self.sock.makefile("rb")
            if self.password:
                harness.Redis.__call__(self, "AUTH", self.password)
        return harness.Redis.__call__(self, *args)


def start_tls_redis(directory, pki, cert, key, extra=()):
    """redis-server with TLS only (port 0), the ACL user of README.md; the
    process, its TLS port and the port of its cluster bus."""
    os.makedirs(directory, exist_ok=True)
    port, bus = free_port(), free_port()
    conf = os.path.join(directory, "redis.conf")
    with open(conf, "w") as f:
        f.write(f"port 0\ntls-port {port}\nbind {LOOPBACK}\nsave \"\"\nappendonly no\n"
                f"dir {directory}\ndaemonize no\n"
                f"tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {pki.ca}\n"
                f"tls-auth-clients optional\n"
                f"user default on >{ADMIN_PW} ~* &* +@all\n"
                f"user mailtrail on >{PW} " + " ".join(readme_acl_rule()) + "\n")
        for line in extra:
            f.write(line.replace("BUS", str(bus)) + "\n")
    log = open(os.path.join(directory, "redis.log"), "ab")
    proc = subprocess.Popen(["redis-server", conf], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    log.close()
    track_child(proc)
    host = "localhost" if cert == pki.server else LOOPBACK
    client = TlsRedis(port, pki.client_context(), host=host)
    deadline = time.monotonic() + 10
    while True:
        try:
            if client("PING") == "PONG":
                return proc, port, client
        except (OSError, EOFError, harness.RedisError):
            client.close()
        if proc.poll() is not None or time.monotonic() > deadline:
            with open(os.path.join(directory, "redis.log"), "rb") as f:
                raise HarnessError(f"TLS redis-server did not start:\n{f.read()[-3000:]!r}")
        time.sleep(0.05)


class SniRecorder:
    """A TLS server that records the server name each client asks for
    (None: no SNI) and then hangs up."""

    def __init__(self, pki):
        self.names = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.server, pki.server_key)
        ctx.sni_callback = lambda sock, name, c: self.names.append(name)
        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn.settimeout(2)
                with self.ctx.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def close(self):
        self.sock.close()


class Trickler:
    """A server that sends its bytes one every 500 ms.  handshake=False: a
    TLS server (the localhost certificate) that does the handshake at full
    speed and answers every command with an error reply, trickled.
    handshake=True: a TCP proxy to the real TLS Redis that trickles
    everything Redis sends, the handshake included."""

    INTERVAL = 0.5

    def __init__(self, pki, handshake=False):
        self.handshake = handshake
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki.server, pki.server_key)
        self.stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _trickle(self, send, data):
        for i in range(len(data)):
            if self.stop.wait(self.INTERVAL):
                return False
            send(data[i:i + 1])
        return True

    def _one(self, conn):
        try:
            if self.handshake:
                up = socket.create_connection((LOOPBACK, ENV.rport))
                def forward():  # mailtrail -> Redis at full speed
                    try:
                        while True:
                            data = conn.recv(65536)
                            if not data:
                                break
                            up.sendall(data)
                    except OSError:
                        pass
                threading.Thread(target=forward, daemon=True).start()
                while True:  # Redis -> mailtrail, a byte at a time
                    data = up.recv(65536)
                    if not data or not self._trickle(conn.sendall, data):
                        break
                up.close()
                return
            conn.settimeout(30)
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                while tls.recv(65536):
                    if not self._trickle(tls.sendall, b"-ERR " + b"x" * 40 + b"\r\n"):
                        break
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


# --- SES events ------------------------------------------------------------------------

def bounce(address, ms, serial, permanent=False):
    t = iso_ms(harness.dt.datetime.fromtimestamp(ms / 1000, harness.dt.timezone.utc))
    return json.dumps({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent" if permanent else "Transient",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": address, "action": "failed",
                                   "status": "5.1.1" if permanent else "4.4.7",
                                   "diagnosticCode": "smtp; 550 no"}],
            "timestamp": t, "feedbackId": f"feedback-{serial}", "reportingMTA": "dsn; a.example"},
        "mail": {"timestamp": t, "messageId": f"ses-{serial}", "source": "sender@example.net",
                 "destination": [address]},
    })


def setUpModule():
    global ENV
    if BINARY is None:
        raise HarnessError("usage: test_redistls.py <mailtrail-binary> <tests/data>")
    ENV = harness.Environment("mailtrail-redistls-")
    ENV.pattern = r"^127\.0\.0\.1:%d$" % ENV.sns.port
    ENV.tls = TlsPki(os.path.join(ENV.tmp, "tls"))
    ENV.rproc, ENV.rport, ENV.rclient = start_tls_redis(
        os.path.join(ENV.tmp, "tls-redis"), ENV.tls, ENV.tls.server, ENV.tls.server_key)
    RedisTlsTest.env = ENV
    RedisTlsClusterTest.env = ENV


def tearDownModule():
    if ENV is not None:
        for p in [ENV.rproc] + list(getattr(ENV, "cluster_procs", [])):
            if p.poll() is None:
                p.kill()
                p.wait()
        ENV.close()


class Base(harness.MailtrailTestCase):
    log_tail = 40

    def start(self, redis_url, *extra):
        args = ["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                "--redis", redis_url,
                "--ca-file", ENV.pki.ca_cert, "--cert-host-pattern", ENV.pattern,
                "--log-format", "json"] + list(extra)
        m = Mailtrail(BINARY, args, env=ENV.child_env(), name=f"mailtrail#{len(self.procs) + 1}")
        self.procs.append(m)
        m.start()
        m.api_port = m.wait_listen_port("api listening")
        self.addCleanup(self.stop, m)
        return m

    def post(self, m, message):
        return m.post_sns(ENV.signer.notification(message))

    def api(self, m, path):
        r = harness.http_request(m.api_port, "GET", path)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def events(self, m, address, **q):
        path = ("/v1/recipients/" + urllib.parse.quote(address, safe="") + "/events"
                + ("?" + urllib.parse.urlencode(q) if q else ""))
        return self.api(m, path)["events"]

    def assertNoSecret(self, m, *secrets):  # noqa: N802
        """No secret in the logs or in /metrics."""
        metrics = m.request("GET", "/metrics").body.decode()
        text = m.log(tail=100000) + metrics
        for s in secrets:
            self.assertNotIn(s, text, "a password in the logs or /metrics")

    def assertUnavailable(self, m, why):  # noqa: N802
        """Redis unreachable as mailtrail is configured: 503 to SNS, /readyz
        503, and log lines saying why."""
        r = self.post(m, bounce("nobody@example.com", T0, 1))
        self.assertEqual(r.status, 503, r)
        r = m.request("GET", "/readyz")
        self.assertEqual(r.status, 503, r)
        # The lines are read from mailtrail's stdout by another thread.
        deadline = time.monotonic() + 5 * harness.TIME_FACTOR
        while True:
            with m._cond:
                lines = [json.loads(x) for x in m.out_lines if x.startswith("{")]
            said = {x.get("msg") for x in lines
                    if why in x.get("error", "") + " " + x.get("detail", "")}
            if {"not ready", "sns"} <= said or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertIn("not ready", said, f"no 'not ready' log line saying {why!r}")
        self.assertIn("sns", said, f"no 'sns' 503 log line saying {why!r}")


def acl_denials(log):
    """ACL LOG entries but the one README expects: the CONFIG GET of the
    encoding thresholds at start, which README's rule leaves out."""
    out = []
    for entry in log:
        fields = dict(zip(entry[::2], entry[1::2]))
        if fields.get(b"object") != b"config|get":
            out.append(entry)
    return out


class RedisTlsTest(Base):

    def setUp(self):
        super().setUp()
        ENV.rclient("FLUSHALL")
        ENV.rclient("ACL", "LOG", "RESET")
        ENV.rclient("CONFIG", "SET", "tls-auth-clients", "optional")

    def url(self, user="mailtrail", password=PW, host="localhost"):
        return f"rediss://{user}:{password}@{host}:{ENV.rport}"

    def acl_denials(self, client):
        return acl_denials(client("ACL", "LOG"))

    def test_tls_acl_user_every_write_and_query(self):
        m = self.start(self.url(), "--redis-ca-file", ENV.tls.ca, "--retention-days", "1",
                       "--message-index")
        self.assertEqual(m.request("GET", "/readyz").status, 200)
        # An entry of the suppression index older than any kept event, in
        # bucket 0: the first write's round trip takes the prune's first
        # step there (its script's HSCAN and HDEL, run as the ACL user).
        pruned = next(a for a in (f"p{i}@example.com" for i in range(1000))
                      if supp_bucket(a) == 0)
        ENV.rclient("HSET", "mailtrail:suppidx:{0}", pruned, 32 * 1000 + 1)
        # Every SES event file of tests/data that is an event.
        stored = 0
        for name in sorted(os.listdir(os.path.join(DATA, "ses"))):
            if not name.endswith(".json") or "MALFORMED" in name or "fragment" in name:
                continue
            with open(os.path.join(DATA, "ses", name), encoding="utf-8") as f:
                text = f.read()
            r = self.post(m, text)
            self.assertEqual(r.status, 200, f"{name}: {r}")
            stored += 1
        self.assertGreater(stored, 20)
        self.assertIsNone(ENV.rclient("HGET", "mailtrail:suppidx:{0}", pruned),
                          "no prune step ran, or it failed")
        # Redelivery, suppression, then a retention trim (2 days later,
        # retention 1 day): every branch of the store script.
        a = "trim@example.com"
        first = ENV.signer.notification(bounce(a, T0, 900001, permanent=True))
        self.assertEqual(m.post_sns(first).json()["status"], "stored")
        self.assertEqual(m.post_sns(first).json()["status"], "duplicate")
        later = ENV.signer.notification(bounce(a, T0 + 2 * 86400 * 1000, 900002))
        r = m.post_sns(later)
        self.assertEqual(r.json()["status"], "stored", r)
        self.assertEqual([e["id"] for e in self.events(m, a)], [later["MessageId"]],
                         "the older event was trimmed")
        # Every query route, with and without filters.
        feed = self.api(m, "/v1/events?limit=1000")["events"]
        self.assertGreater(len(feed), 10)
        self.api(m, "/v1/events?limit=5&before=%d" % (T0 + 1))
        # The message index: written by its script (as the ACL user), read.
        mail = feed[0]["mail"]["messageId"]
        self.assertTrue(ENV.rclient("ZCARD", f"mailtrail:mail:{{{mail}}}"), mail)
        self.assertTrue(self.api(m, f"/v1/messages/{mail}")["recipients"], mail)
        for addr in {e["recipient"] for e in feed}:
            self.assertTrue(self.events(m, addr, limit=1000), addr)
            self.events(m, addr, type="Bounce", limit=3)
            self.events(m, addr, before=T0, after=1)
            summary = self.api(m, "/v1/recipients/" + urllib.parse.quote(addr, safe=""))
            self.assertIn("counts", summary)
        # The routes of issues 13 to 15: deliverability, suppressions,
        # operator status (its notes reach Redis within 2 s), erasure.
        # (The events above are older than --retention-days 1: not counted;
        # a fresh one is, by the store script's stats part.)
        fresh = ENV.signer.notification(bounce("fresh@example.com", int(time.time() * 1000),
                                               900003, permanent=True))
        self.assertEqual(m.post_sns(fresh).json()["status"], "stored")
        self.assertTrue(ENV.rclient("KEYS", "mailtrail:stats:*"), "counted")
        self.assertIn("items", self.api(m, "/v1/health"))
        self.api(m, "/v1/health/series?step=day&name=example.com")
        self.api(m, "/v1/health/domains?window=30d")
        self.api(m, "/v1/health?dimension=domain")
        self.api(m, "/v1/events?domain=example.com")
        r = harness.http_request(m.api_port, "POST", "/v1/suppressions/check",
                                 json.dumps([a, "nobody@example.com"]).encode(),
                                 {"Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r)
        # The index's entries are written by its script's put (and by the
        # rebuild this first check starts, as the ACL user too).
        fa = "fresh@example.com"
        self.assertIsNotNone(ENV.rclient("HGET", f"mailtrail:suppidx:{{{supp_bucket(fa)}}}", fa))
        export = harness.http_request(m.api_port, "GET", "/v1/suppressions?format=csv")
        self.assertEqual(export.status, 200, export)
        time.sleep(2.5 * harness.TIME_FACTOR)
        self.assertTrue(self.api(m, "/v1/status")["topics"])
        r = harness.http_request(m.api_port, "DELETE",
                                 "/v1/recipients/" + urllib.parse.quote(a, safe=""))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.acl_denials(ENV.rclient), [],
                         "README's ACL rule lacks a command mailtrail sends")
        # Stored in the TLS Redis, by the ACL user, over TLS only.
        self.assertTrue(ENV.rclient("KEYS", "mailtrail:rcpt:*"))
        self.assertEqual(self.acl_denials(ENV.rclient), [],
                         "README's ACL rule lacks a command mailtrail sends")
        clients = ENV.rclient("CLIENT", "LIST").decode()
        self.assertRegex(clients, r"user=mailtrail")
        self.assertEqual(m.request("GET", "/readyz").status, 200)
        self.assertNoSecret(m, PW, ADMIN_PW)

    def test_sni_is_the_url_host(self):
        rec = SniRecorder(ENV.tls)
        self.addCleanup(rec.close)
        for host in ("localhost", LOOPBACK):
            m = self.start(f"rediss://mailtrail:{PW}@{host}:{rec.port}",
                           "--redis-ca-file", ENV.tls.ca)
            m.request("GET", "/readyz")
            self.stop(m)
        self.assertIn("localhost", rec.names)
        # An IP address is never sent as SNI (RFC 6066).
        self.assertIn(None, rec.names)
        self.assertEqual(set(rec.names), {"localhost", None})

    def test_trickling_peer_is_cut_at_the_deadline(self):
        # A peer that sends a byte every 500 ms never reaches a per-read
        # timeout; the handshake's and each answer's total deadline cut it.
        # /readyz (one PING, tried once more on a new connection) is then
        # answered 503 within a few seconds, not after the whole trickle.
        for handshake in (False, True):
            with self.subTest(handshake=handshake):
                t = Trickler(ENV.tls, handshake=handshake)
                self.addCleanup(t.close)
                m = self.start(f"rediss://mailtrail:{PW}@localhost:{t.port}",
                               "--redis-ca-file", ENV.tls.ca)
                t0 = time.monotonic()
                r = harness.http_request(m.port, "GET", "/readyz", timeout=60)
                took = time.monotonic() - t0
                print(f"\n    (trickling {'handshake' if handshake else 'answers'}: "
                      f"/readyz {r.status} after {took:.1f} s)", end=" ", flush=True)
                self.assertEqual(r.status, 503, r)
                self.assertLess(took, 8 * harness.TIME_FACTOR)
                self.stop(m)
                t.close()

    def test_host_name_is_checked(self):
        # The certificate names localhost only.
        m = self.start(self.url(host=LOOPBACK), "--redis-ca-file", ENV.tls.ca)
        self.assertUnavailable(m, "certificate verify failed: IP address mismatch")
        self.assertNoSecret(m, PW)

    def test_wrong_ca(self):
        m = self.start(self.url(), "--redis-ca-file", ENV.tls.other_ca)
        self.assertUnavailable(m, "certificate verify failed")
        self.assertNoSecret(m, PW)
        # No CA file: the system store, which does not know the test CA.
        m = self.start(self.url())
        self.assertUnavailable(m, "certificate verify failed")

    def test_wrong_password_or_user(self):
        m = self.start(self.url(password="not-" + PW), "--redis-ca-file", ENV.tls.ca)
        self.assertUnavailable(m, "AUTH as 'mailtrail' on localhost:%d: WRONGPASS" % ENV.rport)
        self.assertNoSecret(m, "not-" + PW, PW)
        m = self.start(self.url(user="nobody"), "--redis-ca-file", ENV.tls.ca)
        self.assertUnavailable(m, "AUTH as 'nobody' on localhost:%d: WRONGPASS" % ENV.rport)
        self.assertNoSecret(m, PW)
        # The default user's password given as the ACL user's: refused too.
        m = self.start(self.url(password=ADMIN_PW), "--redis-ca-file", ENV.tls.ca)
        self.assertUnavailable(m, "WRONGPASS")
        self.assertNoSecret(m, ADMIN_PW)

    def test_client_certificate(self):
        ENV.rclient("CONFIG", "SET", "tls-auth-clients", "yes")
        m = self.start(self.url(), "--redis-ca-file", ENV.tls.ca)
        # TLS 1.3: the server refuses the missing certificate after the
        # client's handshake is done, so the first read says why (the
        # first write may instead find the connection reset).
        self.assertUnavailable(m, "TLS ")
        log = m.log(tail=100000)
        self.assertTrue("TLS read: tlsv13 alert certificate required" in log
                        or "TLS write: Connection reset by peer" in log, log)
        self.stop(m)
        m = self.start(self.url(), "--redis-ca-file", ENV.tls.ca,
                       "--redis-cert", ENV.tls.client, "--redis-key", ENV.tls.client_key)
        self.assertEqual(m.request("GET", "/readyz").status, 200)
        r = self.post(m, bounce("mtls@example.com", T0, 2))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(self.events(m, "mtls@example.com")), 1)

    def test_tls_files_that_cannot_be_used(self):
        cases = [
            (["--redis-ca-file", ENV.tmp + "/no-such-ca.pem"], "--redis-ca-file",
             "No such file"),
            (["--redis-ca-file", ENV.tls.ca, "--redis-cert", ENV.tls.client,
              "--redis-key", ENV.tls.stray_key], "--redis-key", "mismatch"),
            (["--redis-ca-file", ENV.tls.ca, "--redis-cert", ENV.tls.client_key,
              "--redis-key", ENV.tls.client_key], "--redis-cert", "client certificate"),
        ]
        for args, opt, why in cases:
            r = subprocess.run([BINARY, "--listen", "127.0.0.1:0", "--redis", self.url()] + args,
                               capture_output=True, timeout=10, env=ENV.child_env())
            err = r.stderr.decode()
            self.assertEqual(r.returncode, 2, err)
            self.assertIn(opt, err)
            self.assertIn(why, err)
            self.assertEqual(len(err.strip().splitlines()), 1, err)
            self.assertNotIn(PW, err + r.stdout.decode())

    def test_plaintext_acl_user(self):
        ENV.redis("ACL", "SETUSER", "mailtrail", "reset", "on", ">" + PW, *readme_acl_rule())
        self.addCleanup(ENV.redis, "ACL", "DELUSER", "mailtrail")
        ENV.redis("ACL", "LOG", "RESET")
        m = self.start(f"redis://mailtrail:{PW}@127.0.0.1:{ENV.redis_server.port}/3")
        self.assertEqual(m.request("GET", "/readyz").status, 200)
        for i in range(5):
            r = self.post(m, bounce(f"plain{i}@example.com", T0 + i, 100 + i, permanent=i == 0))
            self.assertEqual(r.status, 200, r)
        self.assertEqual(len(self.events(m, "plain0@example.com")), 1)
        self.assertTrue(self.api(m, "/v1/recipients/plain0%40example.com")["suppressed"])
        self.assertEqual(len(self.api(m, "/v1/events")["events"]), 5)
        self.assertEqual(acl_denials(ENV.redis("ACL", "LOG")), [])
        ENV.redis("SELECT", "3")
        try:
            self.assertEqual(len(ENV.redis("KEYS", "mailtrail:rcpt:*")), 5)
        finally:
            ENV.redis("SELECT", "0")
        self.assertNoSecret(m, PW)
        # The same user with a wrong password.
        m2 = self.start(f"redis://mailtrail:x{PW}@127.0.0.1:{ENV.redis_server.port}")
        self.assertUnavailable(m2, "WRONGPASS")
        self.assertNoSecret(m2, PW)


# --- a TLS cluster --------------------------------------------------------------------

def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot_of(address):
    return crc16(address.encode()) % 16384


class RedisTlsClusterTest(Base):

    def setUp(self):
        self.procs = []
        for h in self.env.hosts:
            h.clear()

    def build_cluster(self):
        pki = ENV.tls
        nodes = []
        ENV.cluster_procs = []
        for i in range(3):
            proc, port, client = start_tls_redis(
                os.path.join(ENV.tmp, f"cluster-{i}"), pki, pki.node, pki.node_key,
                extra=["cluster-enabled yes", "cluster-config-file nodes.conf",
                       "cluster-port BUS", "cluster-node-timeout 2000", "tls-cluster yes"])
            ENV.cluster_procs.append(proc)
            nodes.append((port, client))
        run(["redis-cli", "--tls", "--cacert", pki.ca, "--cert", pki.client, "--key",
             pki.client_key, "-a", ADMIN_PW, "--no-auth-warning", "--cluster", "create"]
            + [f"{LOOPBACK}:{p}" for p, _ in nodes] + ["--cluster-yes"])
        deadline = time.monotonic() + 30
        while True:
            states = [c("CLUSTER", "INFO").decode() for _, c in nodes]
            maps = {tuple(sorted((s[0], s[1], s[2][1]) for s in c("CLUSTER", "SLOTS")))
                    for _, c in nodes}
            if all("cluster_state:ok" in s for s in states) and len(maps) == 1:
                break
            if time.monotonic() > deadline:
                raise HarnessError(f"TLS cluster not ready: {states} {maps}")
            time.sleep(0.1)
        return dict(nodes)

    def owner(self, nodes, slot):
        any_client = next(iter(nodes.values()))
        for lo, hi, master in any_client("CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                return master[1]
        raise AssertionError(f"slot {slot} has no owner")

    def stored_on(self, nodes, address):
        c = nodes[self.owner(nodes, slot_of(address))]
        return c("ZRANGE", f"mailtrail:rcpt:{{{address}}}", 0, -1)

    def test_tls_cluster(self):
        nodes = self.build_cluster()
        seed = next(iter(nodes))
        m = self.start(f"rediss://mailtrail:{PW}@127.0.0.1:{seed}", "--redis-cluster",
                       "--redis-ca-file", ENV.tls.ca)
        self.assertEqual(m.request("GET", "/readyz").status, 200)
        addrs = [f"tls{i}@c{i % 5}.example" for i in range(60)]
        for i, a in enumerate(addrs):
            r = self.post(m, bounce(a, T0 + i, 500 + i))
            self.assertEqual(r.status, 200, r)
        owners = {self.owner(nodes, slot_of(a)) for a in addrs}
        self.assertEqual(owners, set(nodes), "the recipients span every master")
        for a in addrs:
            self.assertEqual(len(self.stored_on(nodes, a)), 1, a)
            self.assertEqual(len(self.events(m, a)), 1, a)

        # MOVED: an empty slot handed to another master after mailtrail
        # loaded the map; the redirect names the new owner's TLS port.
        a = next(f"moved{i}@example.com" for i in range(1000)
                 if self.owner(nodes, slot_of(f"moved{i}@example.com")) == seed)
        slot = slot_of(a)
        dst = next(p for p in nodes if p != seed)
        ids = {p: c("CLUSTER", "MYID").decode() for p, c in nodes.items()}
        nodes[dst]("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[seed])
        nodes[seed]("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
        for p in [dst, seed] + [p for p in nodes if p not in (dst, seed)]:
            nodes[p]("CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
        deadline = time.monotonic() + 10
        while any(self.owner({p: nodes[p]}, slot) != dst for p in nodes):
            self.assertLess(time.monotonic(), deadline, "slot move not seen by every node")
            time.sleep(0.05)
        r = self.post(m, bounce(a, T0, 999))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(nodes[dst]("ZRANGE", f"mailtrail:rcpt:{{{a}}}", 0, -1)), 1)
        self.assertEqual(len(self.events(m, a)), 1)
        for p, c in nodes.items():
            self.assertEqual(acl_denials(c("ACL", "LOG")), [],
                             f"node {p}: README's ACL rule lacks a command")
        self.assertNoSecret(m, PW, ADMIN_PW)


if __name__ == "__main__":
    sys.exit(harness.suite_main(sys.modules[__name__], sys.argv))
