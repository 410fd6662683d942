#!/usr/bin/env python3
"""mailtrail on a real Redis Cluster (--redis-cluster).

Starts six redis-server processes on free loopback ports (cluster-enabled,
password set), joins them with `redis-cli --cluster create ...
--cluster-replicas 1` (3 masters, 3 replicas), and runs mailtrail with the
first node as its seed.  Then:

  placement  signed deliveries for 300 recipients (3 per message, so most
             messages touch several nodes): each recipient's keys are on the
             node that owns their slot (asked directly), and read back
             through the API;
  ask        a slot half-migrated by hand (MIGRATING/IMPORTING, some keys
             moved): writes follow ASK, then MOVED once the slot has moved;
  reshard    the slots of every recipient of one master move to another
             while an SNS-like client keeps posting;
  failover   CLUSTER FAILOVER on a replica while the client keeps posting;
  kill       a master is killed (SIGKILL) while the client keeps posting,
             and its replica takes over.
  braces     recipients whose addresses hold braces ('}x@example.com'):
             stored, their keys in one slot, read back, and drained from
             a spool.
  messages   the message index (its own hash tag: the SES message id) is
             written with events of recipients on every master, and
             GET /v1/messages/{id} reads them back across the slots.

The SNS-like client retries on 5xx or a timeout and stops on 2xx/4xx, as
SNS does.  Each load phase prints sent / acknowledged / stored / duplicates
and asserts acknowledged = stored = sent and no duplicate event.

Usage: test_cluster.py <mailtrail-binary> <tests/data>
"""

import hashlib
import http.client
import json
import os
import random
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

import harness
from harness import LOOPBACK, HarnessError, Mailtrail, free_port, iso_ms, run, track_child

BINARY = None
DATA = None
ENV = None

PASSWORD = "clu5ter-secret"
NODE_TIMEOUT_MS = 1000
T0 = 1772438400000  # 2026-03-02T08:00:00Z: event times count up from here
SNS_TIMEOUT = 15.0  # SNS gives up on an answer after about 15 s


def crc16(data):
    """CRC16-XMODEM, as Redis Cluster hashes keys (checked below against
    CLUSTER KEYSLOT)."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def rcpt_key(address):
    return f"mailtrail:rcpt:{{{address}}}"


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def journal_record(body):
    """One spool journal record (spool.h), spooled at time 0."""
    head = struct.pack("<Iq", len(body), 0)
    return b"\xffMTJ" + head + struct.pack("<I", crc32c(head + body)) + body


def recipient_key(kind, address):
    """mailtrail's name for a recipient's key of this kind: the address is
    the hash tag, except where Redis would read an empty tag from it (it
    begins with '}'): then a digest of it is."""
    if address.startswith("}"):
        tag = "sha256:" + hashlib.sha256(address.encode()).hexdigest()
        return f"mailtrail:{kind}:{{{tag}}}{address}"
    return f"mailtrail:{kind}:{{{address}}}"


def slot_of_address(address):
    """The slot of a recipient's keys (the hash tag is the address)."""
    return crc16(address.encode()) % 16384


class Node(harness.Redis):
    """A client of one cluster node that authenticates every connection."""

    def __call__(self, *args):
        if self.sock is None:
            harness.Redis.__call__(self, "AUTH", PASSWORD)
        return harness.Redis.__call__(self, *args)


class Cluster:
    """Six redis-server processes joined as 3 masters + 3 replicas."""

    def __init__(self, directory, count=6):
        for cmd in ("redis-server", "redis-cli"):
            harness.require_command(cmd)
        self.dir = directory
        self.ports = []
        while len(self.ports) < count:
            p = free_port()
            if p <= 55535 and p not in self.ports:  # redis-server's limit
                self.ports.append(p)
        self.bus_ports = {}
        self.procs = {}
        self.clients = {}
        for p in self.ports:
            self._start(p)
        run(["redis-cli", "-a", PASSWORD, "--no-auth-warning", "--cluster", "create"]
            + [f"{LOOPBACK}:{p}" for p in self.ports]
            + ["--cluster-replicas", "1", "--cluster-yes"])
        self.wait_stable()

    def _start(self, port):
        d = os.path.join(self.dir, str(port))
        os.makedirs(d, exist_ok=True)
        bus = self.bus_ports.setdefault(port, free_port())
        with open(os.path.join(d, "redis.log"), "ab") as log:
            proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", LOOPBACK, "--dir", d,
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-port", str(bus),
                 "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                 "--save", "", "--appendonly", "no", "--daemonize", "no",
                 "--requirepass", PASSWORD, "--masterauth", PASSWORD],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        track_child(proc)
        self.procs[port] = proc
        self.clients[port] = Node(port)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.clients[port]("PING") == "PONG":
                    return
            except (OSError, EOFError, harness.RedisError):
                self.clients[port].close()
            if proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"cluster node {port} did not start:\n{self.log(port)}")
            time.sleep(0.05)

    def log(self, port):
        try:
            with open(os.path.join(self.dir, str(port), "redis.log"), "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def alive(self):
        return [p for p in self.ports if self.procs[p].poll() is None]

    def c(self, port):
        return self.clients[port]

    def nodes(self, port=None):
        """{port: {"id", "flags", "master"}} as node `port` sees them."""
        port = port or self.alive()[0]
        out = {}
        for line in self.c(port)("CLUSTER", "NODES").decode().splitlines():
            parts = line.split()
            addr = parts[1].split("@")[0]
            out[int(addr.rsplit(":", 1)[1])] = {
                "id": parts[0], "flags": set(parts[2].split(",")), "master": parts[3]}
        return out

    def slot_map(self, port=None):
        """[(lo, hi, master port)] as node `port` sees them."""
        port = port or self.alive()[0]
        return sorted((int(r[0]), int(r[1]), int(r[2][1])) for r in self.c(port)("CLUSTER", "SLOTS"))

    def owner(self, slot):
        for lo, hi, p in self.slot_map():
            if lo <= slot <= hi:
                return p
        raise AssertionError(f"slot {slot} has no owner")

    def masters(self):
        return sorted({p for _, _, p in self.slot_map()})

    def replica_of(self, master):
        nodes = self.nodes()
        mid = nodes[master]["id"]
        for p, n in nodes.items():
            if n["master"] == mid and "fail" not in n["flags"] and p in self.alive():
                return p
        raise AssertionError(f"master {master} has no live replica: {nodes}")

    def wait_stable(self, timeout=30.0):
        """Every live node says cluster_state:ok and agrees on the slot map."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                states = [self.c(p)("CLUSTER", "INFO").decode() for p in self.alive()]
                maps = {tuple(self.slot_map(p)) for p in self.alive()}
                last = (states, maps)
                if all("cluster_state:ok" in s for s in states) and len(maps) == 1 \
                        and sum(hi - lo + 1 for lo, hi, _ in next(iter(maps))) == 16384:
                    return
            except (OSError, EOFError, harness.RedisError) as e:
                last = e
            time.sleep(0.1)
        raise HarnessError(f"cluster not stable within {timeout}s: {last}")

    def events(self, address):
        """The EVENT ids stored for a recipient, asked of its slot's owner."""
        owner = self.owner(slot_of_address(address))
        return [json.loads(m)["id"] for m in self.c(owner)("ZRANGE", rcpt_key(address), 0, -1)]

    def move_slot(self, slot, src, dst, keys_first=None):
        """Migrates a slot as redis-cli --cluster reshard does.  With
        keys_first, stops half-way after moving those keys and returns a
        function that finishes the move."""
        ids = {p: n["id"] for p, n in self.nodes().items()}
        self.c(dst)("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
        self.c(src)("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])

        def migrate(keys):
            if keys:
                self.c(src)("MIGRATE", LOOPBACK, dst, "", 0, 5000, "AUTH", PASSWORD,
                            "KEYS", *keys)

        def finish():
            while True:
                keys = self.c(src)("CLUSTER", "GETKEYSINSLOT", slot, 100)
                if not keys:
                    break
                migrate(keys)
            for p in [dst, src] + [m for m in self.masters() if m not in (src, dst)]:
                self.c(p)("CLUSTER", "SETSLOT", slot, "NODE", ids[dst])

        if keys_first is not None:
            migrate(keys_first)
            return finish
        finish()
        return None

    def stop(self):
        for p, proc in self.procs.items():
            self.clients[p].close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def bounce(addresses, ms, serial, mail_id=None):
    """An SES bounce notification for these recipients at event time ms,
    of the mail mail_id (default: one of its own)."""
    t = iso_ms(harness.dt.datetime.fromtimestamp(ms / 1000, harness.dt.timezone.utc))
    return json.dumps({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Transient", "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": a, "action": "failed", "status": "4.4.7",
                                   "diagnosticCode": "smtp; 450 try later"} for a in addresses],
            "timestamp": t, "feedbackId": f"feedback-{serial}",
            "reportingMTA": "dsn; a.example.net"},
        "mail": {"timestamp": t, "messageId": mail_id or f"ses-{serial}",
                 "source": "sender@example.net",
                 "destination": list(addresses)},
    })


class Sender:
    """An SNS-like client: retries each message on 5xx or a timeout until
    it gets a 2xx or 4xx (or, as a test bound, 60 s pass)."""

    def __init__(self, mailtrail, signer):
        self.m = mailtrail
        self.signer = signer
        self.lock = threading.Lock()
        self.serial = 0
        self.sent = []      # (message id, addresses)
        self.acked = []     # (message id, addresses)
        self.refused = []   # (message id, status, body)
        self.retries = 0

    def deliver(self, addresses):
        with self.lock:
            self.serial += 1
            serial = self.serial
        msg = self.signer.notification(bounce(addresses, T0 + serial, serial))
        mid = msg["MessageId"]
        with self.lock:
            self.sent.append((mid, tuple(addresses)))
        body = json.dumps(msg).encode()
        headers = {"Content-Type": "text/plain; charset=UTF-8",
                   "x-amz-sns-message-type": "Notification"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                r = harness.http_request(self.m.port, "POST", "/sns", body, headers,
                                         timeout=SNS_TIMEOUT)
            except (OSError, http.client.HTTPException):
                r = None
            if r is not None and r.status < 500:
                with self.lock:
                    if 200 <= r.status < 300:
                        self.acked.append((mid, tuple(addresses)))
                    else:
                        self.refused.append((mid, r.status, r.body[:200]))
                return r.status
            with self.lock:
                self.retries += 1
            time.sleep(0.05)
        return None


def setUpModule():
    global ENV
    if BINARY is None:
        raise HarnessError("usage: test_cluster.py <mailtrail-binary> <tests/data>")
    ENV = harness.Environment("mailtrail-cluster-")
    ENV.pattern = r"^127\.0\.0\.1:%d$" % ENV.sns.port
    ENV.cluster = Cluster(os.path.join(ENV.tmp, "cluster"))
    ClusterTest.env = ENV


def tearDownModule():
    if ENV is not None:
        ENV.cluster.stop()
        ENV.close()


class ClusterTest(harness.MailtrailTestCase):

    def setUp(self):
        # The shared standalone Redis is not used here; the cluster is
        # built once for the module (each phase leaves it changed).
        self.procs = []
        for h in self.env.hosts:
            h.clear()

    def context(self):
        parts = [super().context()]
        try:
            parts.append(f"cluster nodes: {ENV.cluster.nodes()}")
            parts.append(f"slot map: {ENV.cluster.slot_map()}")
        except Exception as e:  # noqa: BLE001 - context only
            parts.append(f"cluster unavailable: {e}")
        return "\n".join(parts)

    def start(self, password=PASSWORD, seed=None, extra=()):
        seed = seed or ENV.cluster.ports[0]
        args = ["--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                "--redis", f"redis://:{password}@127.0.0.1:{seed}", "--redis-cluster",
                "--ca-file", ENV.pki.ca_cert, "--cert-host-pattern", ENV.pattern,
                "--log-format", "json"] + list(extra)
        m = Mailtrail(BINARY, args, env=ENV.child_env(), name=f"mailtrail#{len(self.procs) + 1}")
        self.procs.append(m)
        m.start()
        m.api_port = m.wait_listen_port("api listening")
        self.addCleanup(self.stop, m)
        return m

    def api_ids(self, m, address):
        path = "/v1/recipients/" + urllib.parse.quote(address, safe="") + "/events?limit=1000"
        r = harness.http_request(m.api_port, "GET", path)
        self.assertEqual(r.status, 200, r)
        return [e["id"] for e in r.json()["events"]]

    def tally(self, name, sender, m):
        """Prints and checks what the phase sent, got acknowledged and stored."""
        expect = {}
        for mid, addrs in sender.sent:
            for a in addrs:
                expect.setdefault(a, set()).add(mid)
        found = {a: ENV.cluster.events(a) for a in expect}
        acked = {mid for mid, _ in sender.acked}
        complete = {mid for mid, addrs in sender.sent
                    if all(mid in found[a] for a in addrs)}
        stored = len(acked & complete)
        duplicates = sum(len(ids) - len(set(ids)) for ids in found.values())
        print(f"  {name:<10} sent {len(sender.sent):4d}  acknowledged {len(acked):4d}  "
              f"stored {stored:4d}  duplicates {duplicates}  "
              f"(5xx/timeouts retried {sender.retries}, recipients {len(expect)})",
              flush=True)
        self.assertEqual(sender.refused, [], "4xx answers to genuine messages")
        self.assertEqual(len(acked), len(sender.sent), "every message acknowledged in the end")
        self.assertEqual(stored, len(acked), f"{name}: acknowledged but not stored: "
                                             f"{sorted(acked - complete)[:5]}")
        self.assertEqual(duplicates, 0)
        # Every stored event reads back through mailtrail's API.
        for a in list(expect)[:60]:
            self.assertEqual(sorted(self.api_ids(m, a)), sorted(found[a]), a)

    def under_load(self, name, m, pool, others, action, threads=2):
        """Runs action() while an SNS-like client posts messages to two
        recipients of pool and one of others, then tallies."""
        sender = Sender(m, ENV.signer)
        stop = threading.Event()
        rnd = random.Random(name)

        def post():
            while not stop.is_set():
                sender.deliver(rnd.sample(pool, 2) + rnd.sample(others, 1))

        workers = [threading.Thread(target=post, daemon=True) for _ in range(threads)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        before = len(sender.acked)
        action()
        time.sleep(1.0)
        stop.set()
        for w in workers:
            w.join(timeout=120)
        self.assertGreater(before, 0, "no traffic before the change")
        self.assertGreater(len(sender.acked), before, "no traffic after the change")
        ENV.cluster.wait_stable()
        self.tally(name, sender, m)
        return sender

    def test_cluster(self):
        cl = ENV.cluster
        m = self.start()
        print(f"\ncluster masters {cl.masters()}, mailtrail seed {cl.ports[0]}", flush=True)

        # --- placement: 300 recipients, three per message ---------------
        recipients = [f"user{i}@r{i % 7}.example" for i in range(300)]
        sender = Sender(m, ENV.signer)
        groups = [recipients[i:i + 3] for i in range(0, 300, 3)]
        threads = [threading.Thread(target=lambda gs=groups[k::4]: [sender.deliver(g) for g in gs])
                   for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for a in recipients[:20]:
            self.assertEqual(cl.c(cl.ports[0])("CLUSTER", "KEYSLOT", rcpt_key(a)), slot_of_address(a))
        by_master = {}
        for a in recipients:
            owner = cl.owner(slot_of_address(a))
            by_master.setdefault(owner, []).append(a)
            # Asked directly: the owner has the key (any other node would
            # answer MOVED).
            self.assertEqual(cl.c(owner)("ZCARD", rcpt_key(a)), 1, a)
            self.assertEqual(cl.c(owner)("HGET", f"mailtrail:counts:{{{a}}}", "type:Bounce"), b"1", a)
        self.assertEqual(sorted(by_master), cl.masters(), "recipients on every master")
        self.tally("placement", sender, m)

        # --- ask: a slot half-way through a migration ------------------
        moved = by_master[cl.masters()[0]][0]
        slot = slot_of_address(moved)
        same_slot = []
        i = 0
        while len(same_slot) < 2:
            a = f"ask{i}@ask.example"
            if slot_of_address(a) == slot:
                same_slot.append(a)
            i += 1
        stays, new = same_slot
        sender = Sender(m, ENV.signer)
        self.assertEqual(sender.deliver([stays]), 200)
        owner = cl.owner(slot)
        dst = next(p for p in cl.masters() if p != owner)
        finish = cl.move_slot(slot, owner, dst,
                              keys_first=[rcpt_key(moved), f"mailtrail:counts:{{{moved}}}"])
        for a in (moved, stays):  # keys moved (ASK), keys not yet moved
            self.assertEqual(sender.deliver([a]), 200, a)
        self.assertEqual(cl.c(dst)("ASKING"), "OK")
        self.assertEqual(cl.c(dst)("ZCARD", rcpt_key(moved)), 2)
        cl.c(dst).close()  # drop the ASKING flag
        # A new recipient's two keys cannot be written on either side
        # until the slot has moved (Redis answers TRYAGAIN): 503 until then,
        # and SNS's retry stores it.
        late = threading.Thread(target=sender.deliver, args=([new],))
        late.start()
        time.sleep(0.5)
        finish()
        late.join()
        cl.wait_stable()
        for a in (moved, new, stays):  # mailtrail's map is stale: MOVED
            self.assertEqual(sender.deliver([a]), 200, a)
        self.assertEqual(cl.owner(slot), dst)
        self.tally("ask", sender, m)

        # --- reshard: every slot of one master's recipients moves -------
        from_m, to_m = cl.masters()[1], cl.masters()[2]
        pool = by_master[from_m]
        others = by_master[to_m]
        slots = sorted({slot_of_address(a) for a in pool})

        def reshard():
            for s in slots:
                cl.move_slot(s, from_m, to_m)
                time.sleep(0.01)

        self.under_load("reshard", m, pool, others, reshard)
        self.assertTrue(all(cl.owner(s) == to_m for s in slots))

        # --- failover: CLUSTER FAILOVER on a replica ----------------------
        target = cl.owner(slot_of_address(pool[0]))
        replica = cl.replica_of(target)
        pool = [a for a in recipients if cl.owner(slot_of_address(a)) == target]
        others = [a for a in recipients if a not in pool]

        def failover():
            self.assertEqual(cl.c(replica)("CLUSTER", "FAILOVER"), "OK")
            deadline = time.monotonic() + 20
            while "master" not in cl.nodes(replica)[replica]["flags"]:
                self.assertLess(time.monotonic(), deadline, "replica not promoted")
                time.sleep(0.05)

        self.under_load("failover", m, pool, others, failover)
        self.assertIn(replica, cl.masters())

        # --- kill: a master dies, its replica takes over -----------------
        victim = replica  # now a master whose replica is the old master
        heir = cl.replica_of(victim)

        def kill():
            # Replication is asynchronous: a write a master acknowledged
            # and died with before its replica saw it is lost by Redis
            # itself.  So writes are paused and the replica catches up
            # first; what is measured is mailtrail's part.
            cl.c(victim)("CLIENT", "PAUSE", 5000, "WRITE")
            deadline = time.monotonic() + 5
            while True:
                mo = _info_int(cl.c(victim)("INFO", "replication"), "master_repl_offset")
                ro = _info_int(cl.c(heir)("INFO", "replication"), "slave_repl_offset")
                if mo == ro:
                    break
                self.assertLess(time.monotonic(), deadline, "replica does not catch up")
                time.sleep(0.02)
            cl.procs[victim].kill()
            cl.procs[victim].wait()
            deadline = time.monotonic() + 30
            while "master" not in cl.nodes(heir)[heir]["flags"]:
                self.assertLess(time.monotonic(), deadline, "replica of the killed master "
                                                             "not promoted")
                time.sleep(0.05)

        pool = [a for a in recipients if cl.owner(slot_of_address(a)) == victim]
        others = [a for a in recipients if a not in pool]
        self.under_load("kill", m, pool, others, kill)
        self.assertIn(heir, cl.masters())
        self.assertNotIn(victim, cl.masters())

        # Every recipient of every phase still reads back whole.
        for a in recipients:
            self.assertEqual(sorted(self.api_ids(m, a)), sorted(cl.events(a)), a)
        # The recent feed (its own slot, written after the recipients'
        # scripts) has each message's event for a recipient once.
        r = harness.http_request(m.api_port, "GET", "/v1/events?limit=1000")
        self.assertEqual(r.status, 200, r)
        pairs = [(e["id"], e["recipient"]) for e in r.json()["events"]]
        self.assertGreater(len(pairs), 900)  # a page never splits a millisecond
        self.assertEqual(len(set(pairs)), len(pairs), "an event twice in the recent feed")

    def test_brace_addresses(self):
        """Addresses with braces are valid (RFC 5322), and a recipient's
        keys must still share one slot: '}x@...' once gave its two keys
        different hash tags (CROSSSLOT: 503 for ever, and a spooled copy
        stalled the drain for ever)."""
        cl = ENV.cluster
        addresses = ["}x@example.com", "{x@example.com", "a}b@example.com",
                     "x{y}@example.com", "}@example.com", "}}{@example.com"]
        m = self.start()
        for k, a in enumerate(addresses):
            msg = ENV.signer.notification(bounce([a], T0 + 10_000 + k, 90_000 + k))
            r = m.post_sns(msg)
            self.assertEqual((r.status, r.json()), (200, {"status": "stored"}), (a, r))
            self.assertEqual(self.api_ids(m, a), [msg["MessageId"]], a)
            r = harness.http_request(m.api_port, "GET", "/v1/recipients/"
                                     + urllib.parse.quote(a, safe=""))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["counts"], {"Bounce": 1}, (a, r.json()))
        # Every key of a recipient is in one slot (Redis's own answer), and
        # addresses whose hash tag holds keep their key names.
        stored = set()
        for p in cl.masters():
            stored.update(k.decode() for k in cl.c(p)("KEYS", "mailtrail:*"))
        for a in addresses:
            names = [recipient_key(kind, a) for kind in ("rcpt", "counts")]
            self.assertLessEqual(set(names), stored, a)
            slots = {cl.c(cl.ports[0])("CLUSTER", "KEYSLOT", k) for k in names}
            self.assertEqual(len(slots), 1, (a, names, slots))
            if not a.startswith("}"):
                self.assertEqual(names[0], rcpt_key(a))

        # Spooled (a journal as a process that found Redis unavailable
        # leaves it, in spool.h's format), then drained at start.
        spool = os.path.join(ENV.tmp, "brace-spool")
        os.makedirs(spool, exist_ok=True)
        msgs, records = [], b""
        for k, a in enumerate(addresses):
            msg = ENV.signer.notification(bounce([a], T0 + 20_000 + k, 91_000 + k))
            msgs.append((a, msg["MessageId"]))
            records += journal_record(json.dumps(msg).encode())
        with open(os.path.join(spool, "00000000000000000001.journal"), "wb") as f:
            f.write(records)
        m2 = self.start(extra=["--spool-dir", spool])
        deadline = time.monotonic() + 30 * harness.TIME_FACTOR
        while True:
            ready = harness.http_request(m2.port, "GET", "/readyz")
            body = ready.json()
            if ready.status == 200 and body["spool"]["records"] == 0:
                break
            self.assertLess(time.monotonic(), deadline, f"spool not drained: {body}")
            time.sleep(0.2)
        self.assertFalse(body["spool"]["stalled"], body)
        for a, mid in msgs:
            self.assertIn(mid, self.api_ids(m2, a), a)

    def test_message_index(self):
        cl = ENV.cluster
        m = self.start(extra=["--message-index"])
        mail = "0100018e0000c1c1-4eca7ee8-dd82-4f94-8b91-3b4917f769ec-000000"
        key = f"mailtrail:mail:{{{mail}}}"
        mslot = crc16(mail.encode()) % 16384
        self.assertEqual(cl.c(cl.ports[0])("CLUSTER", "KEYSLOT", key), mslot)
        # Recipients on every master, none in the index's slot.
        rcpts, owners, i = [], set(), 0
        while len(owners) < len(cl.masters()) or len(rcpts) < 6:
            a = f"m{i}@msg.example"
            i += 1
            if slot_of_address(a) != mslot:
                rcpts.append(a)
                owners.add(cl.owner(slot_of_address(a)))
        half = len(rcpts) // 2
        older = ENV.signer.notification(bounce(rcpts[:half], T0 + 50_000, 95_000, mail))
        newer = ENV.signer.notification(bounce(rcpts[half:], T0 + 50_001, 95_001, mail))
        other = ENV.signer.notification(bounce(rcpts[:2], T0 + 50_002, 95_002))
        for msg in (older, newer, other):
            r = m.post_sns(msg)
            self.assertEqual((r.status, r.json()), (200, {"status": "stored"}), r)
        # The index is on its own slot's owner (asked directly).
        owner = cl.owner(mslot)
        self.assertEqual(cl.c(owner)("ZCARD", key), len(rcpts))
        self.assertGreater(cl.c(owner)("PTTL", key), 0)

        def answer():
            r = harness.http_request(m.api_port, "GET", f"/v1/messages/{mail}")
            self.assertEqual(r.status, 200, r)
            body = r.json()
            self.assertEqual(body["messageId"], mail)
            return [(g["recipient"], [(e["id"], e["mail"]["messageId"]) for e in g["events"]])
                    for g in body["recipients"]]
        got = answer()
        # The newer notification's recipients first (any order among
        # those sharing a millisecond), each with its one event.
        self.assertEqual(sorted(got[:len(rcpts) - half]),
                         [(a, [(newer["MessageId"], mail)]) for a in sorted(rcpts[half:])])
        self.assertEqual(sorted(got[len(rcpts) - half:]),
                         [(a, [(older["MessageId"], mail)]) for a in sorted(rcpts[:half])])
        # A redelivery adds nothing.
        r = m.post_sns(older)
        self.assertEqual((r.status, r.json()), (200, {"status": "duplicate"}), r)
        self.assertEqual(cl.c(owner)("ZCARD", key), len(rcpts))
        self.assertEqual(answer(), got)

    def test_wrong_password(self):
        m = self.start(password="not-the-password")
        msg = ENV.signer.notification(bounce(["nobody@example.com"], T0, 0))
        r = m.post_sns(msg)
        self.assertEqual(r.status, 503, r)
        self.assertEqual(m.request("GET", "/readyz").status, 503)

    def test_suppressions_and_erasure(self):
        """The bulk check reads recipients on every master in one call (a
        pipeline per node); an erasure removes a recipient's keys on its
        node and its entries in the feed (another node's key); the export
        holds every suppressed address of every master."""
        cl = ENV.cluster
        m = self.start(extra=["--api-token", "cluster-token-0123456789"])
        auth = {"Authorization": "Bearer cluster-token-0123456789"}
        addrs = [f"supp{i}@c{i % 5}.example" for i in range(30)] + ["}supp@example.com"]
        kinds = {}
        for k, a in enumerate(addrs):
            kind = ("Permanent", "Complaint", "Transient")[k % 3]
            ms = T0 + 50_000 + k
            msg = json.loads(bounce([a], ms, 95_000 + k))
            if kind == "Permanent":
                msg["bounce"]["bounceType"] = "Permanent"
            elif kind == "Complaint":
                msg = {"notificationType": "Complaint", "mail": msg["mail"],
                       "complaint": {"complainedRecipients": [{"emailAddress": a}],
                                     "timestamp": msg["bounce"]["timestamp"],
                                     "feedbackId": f"complaint-{k}"}}
            kinds[a] = (kind, ms)
            r = m.post_sns(ENV.signer.notification(json.dumps(msg)))
            self.assertEqual((r.status, r.json()), (200, {"status": "stored"}), (a, r))
        owners = {cl.owner(crc16(recipient_key("counts", a).split("{")[1].split("}")[0]
                                 .encode()) % 16384) for a in addrs}
        self.assertGreater(len(owners), 1, "the addresses span several masters")

        body = json.dumps(addrs + ["nobody@c1.example"])
        r = harness.http_request(m.api_port, "POST", "/v1/suppressions/check", body=body,
                                 headers=auth)
        self.assertEqual(r.status, 200, r)
        res = r.json()["results"]
        for a, got in zip(addrs, res):
            kind, ms = kinds[a]
            reason = {"Permanent": "Bounce/Permanent", "Complaint": "Complaint"}.get(kind)
            self.assertEqual((got["normalized"], got["reason"], got["suppressed"]),
                             (a, reason, reason is not None), got)
            if reason:
                self.assertEqual(harness.iso_to_ms(got["time"]), ms)
        self.assertFalse(res[-1]["suppressed"])

        # The export walks every master (test_suppression_export below).
        r = harness.http_request(m.api_port, "GET", "/v1/suppressions?format=csv",
                                 headers=auth)
        self.assertEqual(r.status, 200, r)
        want = sorted(f"{a},{'COMPLAINT' if kinds[a][0] == 'Complaint' else 'BOUNCE'}"
                      for a in addrs if kinds[a][0] != "Transient")
        self.assertEqual(sorted(r.body.decode().split("\r\n")[1:-1]), want)

        gone = [addrs[0], addrs[1], addrs[7], "}supp@example.com"]
        for a in gone:
            r = harness.http_request(m.api_port, "DELETE", "/v1/recipients/"
                                     + urllib.parse.quote(a, safe=""), headers=auth)
            self.assertEqual((r.status, r.json()),
                             (200, {"status": "erased", "keys": 2, "feed_entries": 1}), (a, r))
        left = []
        for p in cl.masters():
            node = cl.c(p)
            for k in node("KEYS", "mailtrail:*"):
                left.append(k)
                if node("TYPE", k) == "zset":
                    left += node("ZRANGE", k, 0, -1)
                elif node("TYPE", k) == "hash":
                    left += node("HGETALL", k)
        for a in gone:
            self.assertEqual([x for x in left if a.encode() in x], [], a)
        kept = [a for a in addrs if a not in gone]
        self.assertTrue(all(any(a.encode() in x for x in left) for a in kept))

    def test_suppression_export(self):
        """GET /v1/suppressions walks every master in turn: streamed, each
        suppressed address exactly once; paged, a cursor that names the
        master (its lowest slot, STORE_SCAN_NODE_BITS) and its SCAN
        cursor, until 0.  The bulk check's index is rebuilt across the
        masters too, and answers as the counts do; the index of the
        version before (sorted sets) is removed from every master."""
        cl = ENV.cluster
        m = self.start(extra=["--api-token", "cluster-token-0123456789"])
        auth = {"Authorization": "Bearer cluster-token-0123456789"}

        def flush():
            for p in cl.masters():
                cl.c(p)("FLUSHALL")
        flush()
        self.addCleanup(flush)
        # 600 counts hashes written as the store script does (data from
        # before the index), on the owner of each one's slot.
        now = int(time.time() * 1000)
        want, owners = {}, set()
        for i in range(600):
            a = f"x{i}@exp{i % 7}.example"
            key = recipient_key("counts", a)
            slot = crc16(key.split("{")[1].split("}")[0].encode()) % 16384
            owners.add(cl.owner(slot))
            node = cl.c(cl.owner(slot))
            if i % 3 == 2:
                node("HSET", key, "type:Delivery", 1)
                continue
            why = "Complaint" if i % 3 == 0 else "Bounce/Permanent"
            node("HSET", key, f"type:{why.split('/')[0]}", 1, f"suppress:{why}", 1,
                 f"last:{why}", now - 1000 - i)
            want[a] = (why, now - 1000 - i)
        self.assertEqual(owners, set(cl.masters()))
        r = harness.http_request(m.api_port, "GET", "/v1/suppressions", headers=auth)
        self.assertEqual(r.status, 200, r)
        lines = [json.loads(x) for x in r.body.decode().splitlines()]
        self.assertEqual(sorted(x["address"] for x in lines), sorted(want))
        for x in lines:
            self.assertEqual((x["reason"], harness.iso_to_ms(x["time"])), want[x["address"]])
        # Pages of 50 keys: the cursor moves from master to master.
        seen, cursor, pages, masters_seen = set(), "0", 0, set()
        while True:
            r = harness.http_request(m.api_port, "GET", f"/v1/suppressions?limit=50&cursor={cursor}",
                                     headers=auth)
            self.assertEqual(r.status, 200, r)
            seen |= {json.loads(x)["address"] for x in r.body.decode().splitlines()}
            cursor = r.headers["mailtrail-next-cursor"]
            pages += 1
            self.assertLess(pages, 1000)
            if cursor == "0":
                break
            masters_seen.add(int(cursor) >> 48)
        self.assertEqual(seen, set(want))
        self.assertEqual(len(masters_seen), len(cl.masters()), masters_seen)
        # A cursor that names no slot: 400.
        r = harness.http_request(m.api_port, "GET", f"/v1/suppressions?cursor={16384 << 48}",
                                 headers=auth)
        self.assertEqual(r.status, 400, r)
        # The index of the version before (sorted sets, every bucket on
        # the owner of its slot, and its marker): not read, removed from
        # every master once the hashes are built.
        for n in range(64):
            cl.c(cl.owner(crc16(str(n).encode()) % 16384))(
                "ZADD", f"mailtrail:supp:{{{n}}}", now * 32 + 1, f"old{n}@example.com")
        old_ready = b"mailtrail:supp:ready:2-781565ed"
        cl.c(cl.owner(crc16(old_ready) % 16384))("SET", old_ready, "1")
        # The bulk check: counts first, then (the index rebuilt from every
        # master) the index.
        body = json.dumps(sorted(want) + ["x2@exp2.example", "none@exp.example"])
        for _ in range(2):
            r = harness.http_request(m.api_port, "POST", "/v1/suppressions/check", body=body,
                                     headers=auth)
            self.assertEqual(r.status, 200, r)
            res = r.json()["results"]
            for a, got in zip(sorted(want), res):
                self.assertEqual((got["reason"], harness.iso_to_ms(got["time"])), want[a], a)
            self.assertEqual([x["suppressed"] for x in res[-2:]], [False, False])
            deadline = time.monotonic() + 20
            ready = cl.c(cl.owner(crc16(b"mailtrail:suppidx:ready:2-781565ed") % 16384))
            while not ready("EXISTS", "mailtrail:suppidx:ready:2-781565ed"):
                self.assertLess(time.monotonic(), deadline, "no index marker")
                time.sleep(0.05)
        entries = sum(cl.c(p)("HLEN", f"mailtrail:suppidx:{{{n}}}") for p in cl.masters()
                      for n in range(64) if cl.owner(crc16(str(n).encode()) % 16384) == p)
        self.assertEqual(entries, len(want))
        deadline = time.monotonic() + 10 * harness.TIME_FACTOR
        while any(cl.c(p)("KEYS", "mailtrail:supp:*") for p in cl.masters()):
            self.assertLess(time.monotonic(), deadline, "the old layout was not removed")
            time.sleep(0.05)


def _info_int(text, field):
    for line in text.decode().splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":", 1)[1])
    raise AssertionError(f"{field} not in INFO: {text!r}")


if __name__ == "__main__":
    sys.exit(harness.suite_main(sys.modules[__name__], sys.argv))
