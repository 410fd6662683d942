#!/usr/bin/env python3
"""Integration tests of the suppression policy beyond Permanent (issue 15).

    python3 tests/integration/test_policy.py <mailtrail-binary> <tests/data>

The real binary against a real redis-server.  The bounces are real SES
payloads from tests/data/ses (test_api.py's "bounce-transient", Mozilla
Relay's Transient/General bounce of the SES mailbox simulator) with their
bounceType, status and diagnosticCode changed per test, signed with the
harness's key as SNS Notifications and POSTed to /sns.

What is checked (README, "Query API", "Bulk suppression check",
"Suppression export"):
- a Transient bounce with status 5.4.4, and an Undetermined one whose
  diagnosticCode names 5.1.10 (no status field), suppress in the summary
  (reason Bounce/Status and its reason_text), the bulk check (before and
  after the index is built) and the export (NDJSON with reason_text, CSV
  BOUNCE); a Transient 5.7.1 (the real Guardian DMARC diagnostic) does not;
  --suppress-statuses none turns it off;
- 5 Transient bounces within 30 days suppress (Bounce/Repeated), 4 do not,
  5 spread over 40 days do not, a delivery after them lifts it (summary,
  check, export);
- existing data is re-evaluated: events written by a mailtrail with the
  policy off, then mailtrail restarted with the default policy, suppress
  without any rewrite (the index is rebuilt under its new marker);
- a forged bounce for one address never changes another's answer (same
  index bucket);
- the index's candidates are verified on the timeline, and a check with no
  candidate reads no timeline;
- bad flag values exit 2 with one line.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import test_api as api  # noqa: E402
import test_suppressions as supp  # noqa: E402
from test_api import Item, ms_iso  # noqa: E402

BINARY = None
DATA = None

TOKEN = api.TOKEN
CHECK = supp.CHECK
DAY = 86400_000
STATUS_544 = ("transient bounce 5.4.4: domain does not exist (unable to route), "
              "a status mailbox providers use for a permanent condition")
STATUS_5110 = ("undetermined bounce 5.1.10: the domain publishes a null MX: it accepts no "
               "mail, a status mailbox providers use for a permanent condition")
REPEATED = "5 soft bounces within 30 days and no delivery since"
# The real diagnostic of tests/data/ses/guardian-event-bounce-transient-general-dmarc-5.7.1-multiline.json.
DMARC = None
OLD_POLICY = ("--suppress-statuses", "none", "--suppress-soft-bounces", "0")


def setUpModule():
    global DMARC
    supp.BINARY, supp.DATA = BINARY, DATA
    supp.setUpModule()
    with open(os.path.join(DATA, "ses",
                           "guardian-event-bounce-transient-general-dmarc-5.7.1-multiline.json")) as f:
        g = json.load(f)
    DMARC = g["bounce"]["bouncedRecipients"][0]
    assert DMARC.get("status") == "5.7.1", DMARC


def tearDownModule():
    supp.tearDownModule()


def now_ms():
    return int(time.time() * 1000)


def soft(address, ms, serial, bounce_type="Transient", status=None, diagnostic=None):
    """A real Transient bounce for address at ms, with its bounceType,
    status and diagnosticCode set (None: absent)."""
    it = Item("bounce-transient", address, ms, serial)
    obj = json.loads(it.text)
    b = obj["bounce"]
    b["bounceType"] = bounce_type
    for r in b["bouncedRecipients"]:
        r.pop("status", None)
        r.pop("diagnosticCode", None)
        if status is not None:
            r["status"] = status
            r["action"] = "failed"
        if diagnostic is not None:
            r["diagnosticCode"] = diagnostic
    it.text = json.dumps(obj, separators=(",", ":"))
    return it


class PolicyCase(supp.SuppressionCase):
    command_calls = supp.IndexTest.command_calls

    def wait_marker(self, marker=None, timeout=20):
        """Waits for the index's marker of a policy (default: the default
        policy's) and returns its name."""
        marker = marker or supp.READY
        deadline = time.monotonic() + timeout * harness.TIME_FACTOR
        while time.monotonic() < deadline:
            if self.env.redis("EXISTS", marker) == 1:
                return marker
            time.sleep(0.05)
        self.fail(f"no marker {marker}: {self.env.redis('KEYS', 'mailtrail:suppidx:ready:*')}")

    def check(self, m, addrs):
        r = harness.http_request(m.api_port, "POST", CHECK, body=json.dumps(addrs),
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r)
        return {x["normalized"]: x for x in r.json()["results"]}

    def summary(self, m, a):
        return self.get(m, f"/v1/recipients/{a}", token=TOKEN)

    def export(self, m, fmt="ndjson"):
        r = self.api(m, f"/v1/suppressions?format={fmt}", token=TOKEN)
        self.assertEqual(r.status, 200, r)
        if fmt == "csv":
            return r.body.decode()
        return {o["address"]: o for o in map(json.loads, r.body.decode().splitlines())}

    def expect(self, m, want):
        """want: address -> (reason, reason_text, time ms) or None, the same
        in the summary, the check and the export."""
        addrs = sorted(want)
        res = self.check(m, addrs)
        exp = self.export(m)
        for a in addrs:
            w = want[a]
            with self.subTest(address=a):
                s = self.summary(m, a)
                if w is None:
                    self.assertEqual((s["suppressed"], s["reason"], s["reason_text"]),
                                     (False, None, None))
                    self.assertEqual((res[a]["suppressed"], res[a]["reason"],
                                      res[a]["reason_text"], res[a]["time"]),
                                     (False, None, None, None))
                    self.assertNotIn(a, exp)
                    continue
                reason, text, ms = w
                self.assertEqual((s["suppressed"], s["reason"], s["reason_text"]),
                                 (True, reason, text))
                self.assertEqual(res[a], {"address": a, "normalized": a, "suppressed": True,
                                          "reason": reason, "reason_text": text,
                                          "time": ms_iso(ms)})
                self.assertEqual(exp.get(a), {"address": a, "reason": reason,
                                              "reason_text": text, "time": ms_iso(ms)})


class StatusTest(PolicyCase):
    def fixtures(self, t):
        self.deliver(self.m, [
            soft("dns@example.com", t, 1, status="5.4.4",
                 diagnostic="smtp; 550 5.4.4 [dns@example.com] domain not found"),
            soft("nullmx@example.com", t + 1, 2, bounce_type="Undetermined",
                 diagnostic="smtp; 556 5.1.10 Recipient address has null MX"),
            soft("dmarc@example.com", t + 2, 3, status=DMARC["status"],
                 diagnostic=DMARC["diagnosticCode"]),
            soft("ooto@example.com", t + 3, 4),
            # A delivery after a listed status does not lift it (it
            # suppresses like a permanent bounce).
            soft("later@example.com", t + 4, 5, status="5.1.1"),
            Item("delivery", "later@example.com", t + 5, 6),
        ], threads=1)

    def test_listed_statuses_suppress(self):
        t = now_ms() - 3600_000
        self.fixtures(t)
        want = {
            "dns@example.com": ("Bounce/Status", STATUS_544, t),
            "nullmx@example.com": ("Bounce/Status", STATUS_5110, t + 1),
            "dmarc@example.com": None,
            "ooto@example.com": None,
            "later@example.com": ("Bounce/Status", (
                "transient bounce 5.1.1: the mailbox does not exist, a status mailbox "
                "providers use for a permanent condition"), t + 4),
        }
        self.expect(self.m, want)  # from the counts and timelines (no marker yet)
        self.wait_marker()
        self.expect(self.m, want)  # from the index, its entries verified
        csv = self.export(self.m, "csv").split("\r\n")
        self.assertEqual(sorted(csv[1:-1]), ["dns@example.com,BOUNCE", "later@example.com,BOUNCE",
                                             "nullmx@example.com,BOUNCE"])
        # The index holds them as code 2 (a listed status), the others'
        # soft bounces as code 3 (candidates).
        for a, code in (("dns@example.com", 2), ("ooto@example.com", 3),
                        ("dmarc@example.com", 3)):
            self.assertEqual(supp.index_entry(self.env.redis, a) % 32, code, a)

    def test_statuses_none(self):
        m = self.start("--suppress-statuses", "none", token=TOKEN)
        t = now_ms() - 3600_000
        self.deliver(m, [soft("dns@example.com", t, 1, status="5.4.4")], threads=1)
        self.expect(m, {"dns@example.com": None})
        self.wait_marker(supp.policy_marker((), 5, 30))
        m2 = self.start("--suppress-statuses", "5.2.2,5.4.4", token=TOKEN)
        self.expect(m2, {"dns@example.com": ("Bounce/Status", STATUS_544, t)})
        # Its own marker: a flag change rebuilds the index.
        self.wait_marker(supp.policy_marker(("5.2.2", "5.4.4")))
        self.expect(m2, {"dns@example.com": ("Bounce/Status", STATUS_544, t)})


class RepeatedTest(PolicyCase):
    def test_repeated_soft_bounces(self):
        now = now_ms() - 3600_000
        items, serial = [], 0

        def bounces(a, times):
            nonlocal serial
            for ms in times:
                serial += 1
                items.append(soft(a, ms, serial, status="4.2.2" if serial % 2 else None,
                                  diagnostic="smtp; 452 4.2.2 mailbox full"))

        five = [now - i * 7 * DAY for i in range(5)]  # 28 days
        bounces("five@example.com", five)
        bounces("four@example.com", five[:4])
        bounces("spread@example.com", [now - i * 10 * DAY for i in range(5)])  # 40 days
        bounces("lifted@example.com", five)
        items.append(Item("delivery", "lifted@example.com", now + 1, 100))
        # A delivery before them does not.
        items.append(Item("delivery", "before@example.com", now - 40 * DAY, 101))
        bounces("before@example.com", five)
        # A later soft bounce never lifts a suppression: five within 28
        # days, 40 days ago, then one now (the newest and the fifth newest
        # are 61 days apart, but the older window of five stays).
        bounces("sixth@example.com", [now] + [now - 40 * DAY - i * 7 * DAY for i in range(5)])
        self.deliver(self.m, items, threads=1)
        want = {
            "five@example.com": ("Bounce/Repeated", REPEATED, now),
            "four@example.com": None,
            "spread@example.com": None,
            "lifted@example.com": None,
            "before@example.com": ("Bounce/Repeated", REPEATED, now),
            "sixth@example.com": ("Bounce/Repeated", REPEATED, now - 40 * DAY),
        }
        self.expect(self.m, want)
        self.wait_marker()
        self.expect(self.m, want)
        # A delivery lifts it, also once the index holds the address.
        self.deliver(self.m, [Item("delivery", "five@example.com", now + 2, 102)], threads=1)
        want["five@example.com"] = None
        self.expect(self.m, want)
        # A fifth soft bounce for four@ (after the index was built: its
        # entry is a candidate, code 3) suppresses it.
        self.deliver(self.m, [soft("four@example.com", now + 3, 103)], threads=1)
        want["four@example.com"] = ("Bounce/Repeated", REPEATED, now + 3)
        self.expect(self.m, want)
        # Other flags: 6 within 30 days are needed, or 5 within 45.
        m = self.start("--suppress-soft-bounces", "6", token=TOKEN)
        self.assertIsNone(self.check(m, ["sixth@example.com"])["sixth@example.com"]["reason"])
        m = self.start("--suppress-soft-days", "45", token=TOKEN)
        self.assertEqual(self.summary(m, "spread@example.com")["reason_text"],
                         "5 soft bounces within 45 days and no delivery since")

    def test_candidates_cost(self):
        # With the index built, a check whose addresses have no candidate
        # entry reads no timeline and no counts hash (its HMGETs are the
        # index's, one per bucket); one with candidates reads exactly their
        # timelines and counts, in one round trip.
        t = now_ms() - 3600_000
        items = [Item("bounce-permanent", f"p{i}@example.com", t + i, 10 + i) for i in range(5)]
        items += [soft(f"s{i}@example.com", t + i, 20 + i) for i in range(3)]
        self.deliver(self.m, items, threads=1)
        self.check(self.m, ["x@example.com"])
        self.wait_marker()
        plain = [f"p{i}@example.com" for i in range(5)] + [f"n{i}@example.org" for i in range(500)]
        self.env.redis("CONFIG", "RESETSTAT")
        res = self.check(self.m, plain)
        calls = self.command_calls()
        self.assertEqual((calls.get("zrevrange", 0), calls.get("hmget", 0)),
                         (0, supp.buckets_of(plain)), calls)
        self.assertEqual(res["p0@example.com"]["reason"], "Bounce/Permanent")
        self.env.redis("CONFIG", "RESETSTAT")
        with_soft = plain + [f"s{i}@example.com" for i in range(3)]
        res = self.check(self.m, with_soft)
        calls = self.command_calls()
        self.assertEqual((calls.get("zrevrange", 0), calls.get("hmget", 0)),
                         (3, supp.buckets_of(with_soft) + 3), calls)
        self.assertEqual(res["s0@example.com"]["suppressed"], False)
        # More candidates than one round trip reads (64): five bounces for
        # each of 100 addresses (one SES bounce names them all), the first
        # 64 read with their counts, the others after; all suppressed.
        many = [f"m{i}@example.com" for i in range(100)]
        self.deliver(self.m, [soft(many, t + 100 + j, 30 + j) for j in range(5)], threads=1)
        self.env.redis("CONFIG", "RESETSTAT")
        res = self.check(self.m, many + plain)
        self.assertEqual({(res[a]["reason"], res[a]["time"]) for a in many},
                         {("Bounce/Repeated", ms_iso(t + 104))})
        calls = self.command_calls()
        self.assertEqual((calls.get("zrevrange", 0), calls.get("hmget", 0)),
                         (100, supp.buckets_of(many + plain) + 100), calls)


class ExistingDataTest(PolicyCase):
    @classmethod
    def setUpClass(cls):
        cls.m = api.ApiCase.launch(*OLD_POLICY, token=TOKEN)
        cls.class_procs = [cls.m]

    def test_reevaluated_on_read(self):
        # Written by a mailtrail whose policy is the old one (only
        # Permanent and complaints): not suppressed, the index marker is
        # the old one's and holds no entry for them.
        t = now_ms() - 2 * DAY
        items = [soft("dns@example.com", t, 1, status="5.4.4")]
        items += [soft("rep@example.com", t - i * DAY, 10 + i) for i in range(5)]
        items += [Item("bounce-permanent", "perm@example.com", t, 20)]
        self.deliver(self.m, items, threads=1)
        res = self.check(self.m, ["dns@example.com", "rep@example.com", "perm@example.com"])
        self.assertEqual([res[a]["reason"] for a in sorted(res)],
                         [None, "Bounce/Permanent", None])
        self.assertEqual(self.summary(self.m, "dns@example.com")["suppressed"], False)
        self.wait_marker(supp.policy_marker((), 0))
        self.assertIsNone(supp.index_entry(self.env.redis, "dns@example.com"))
        keys_before = sorted(self.env.redis("KEYS", "mailtrail:counts:*"))
        # Restarted with the default policy: the same data, re-evaluated.
        m = self.start(token=TOKEN)
        want = {"dns@example.com": ("Bounce/Status", STATUS_544, t),
                "rep@example.com": ("Bounce/Repeated", REPEATED, t),
                "perm@example.com": ("Bounce/Permanent", "permanent bounce", t)}
        self.expect(m, want)
        self.wait_marker()
        self.assertEqual(supp.READY, "mailtrail:suppidx:ready:2-781565ed")
        self.assertEqual(supp.index_entry(self.env.redis, "dns@example.com"), t * 32 + 2)
        self.expect(m, want)
        self.assertEqual(sorted(self.env.redis("KEYS", "mailtrail:counts:*")), keys_before)


class ForgedTest(PolicyCase):
    def test_one_address_never_changes_another(self):
        t = now_ms() - 3600_000
        victim = "victim@example.com"
        k = supp.supp_bucket(victim)
        same = [a for a in (f"n{i}@example.net" for i in range(5000))
                if supp.supp_bucket(a) == k][:3]
        self.deliver(self.m, [soft(same[0], t - i, 1 + i) for i in range(4)] +
                     [Item("delivery", same[1], t, 10)], threads=1)
        self.check(self.m, ["x@example.com"])
        self.wait_marker()
        # Forged bounces for the victim: a listed status and five soft.
        self.deliver(self.m, [soft(victim, t + 10, 20, status="5.1.1")] +
                     [soft(victim, t + 11 + i, 21 + i) for i in range(5)], threads=1)
        self.expect(self.m, {victim: ("Bounce/Repeated", REPEATED, t + 15),
                             same[0]: None, same[1]: None, same[2]: None})


class PagedTest(PolicyCase):
    """Timelines are read a page of 32 members at a time (store.h,
    STORE_POLICY_PAGE): what decides may be pages deep, and a hostile
    timeline costs a bounded amount of memory."""

    def test_deciding_events_pages_deep(self):
        t = now_ms() - 20 * DAY
        items, serial = [], 1000

        def add(it):
            nonlocal serial
            items.append(it)
            serial += 1

        # A listed status behind 40 opens (two pages of 32).
        add(soft("deep@example.com", t, serial, status="5.1.1"))
        for i in range(40):
            add(Item("open", "deep@example.com", t + 1000 * (i + 1), serial))
        # Five soft bounces, ten opens after each: the fifth is 55 members
        # from the newest.
        for j in range(5):
            add(soft("deeprep@example.com", t + j * 100_000, serial))
            for i in range(10):
                add(Item("open", "deeprep@example.com", t + j * 100_000 + 1000 * (i + 1), serial))
        # The same five, then a delivery, then 40 opens: lifted.
        for j in range(5):
            add(soft("deeplift@example.com", t + j * 100_000, serial))
        add(Item("delivery", "deeplift@example.com", t + 600_000, serial))
        for i in range(40):
            add(Item("open", "deeplift@example.com", t + 700_000 + 1000 * i, serial))
        self.deliver(self.m, items, threads=4)
        want = {
            "deep@example.com": ("Bounce/Status", (
                "transient bounce 5.1.1: the mailbox does not exist, a status mailbox "
                "providers use for a permanent condition"), t),
            "deeprep@example.com": ("Bounce/Repeated", REPEATED, t + 400_000),
            "deeplift@example.com": None,
        }
        self.expect(self.m, want)  # the counts, then the timelines page by page
        self.wait_marker()
        self.expect(self.m, want)  # the index: a first page read with the counts, full

    def test_hostile_timelines_cost_bounded_memory(self):
        # 64 addresses, each a candidate (a listed status), each with NE
        # bounces of about 5 KB stored (every detail string at its cut):
        # the policy held 64 whole timelines at once, NE events each (at
        # NE=1,000 a check took mailtrail from 26 MB to 693 MB); now at
        # most 64 pages of 32.
        ne = 12 if harness.WRAPPER else 120
        addrs = [f"heavy{k}@example.com" for k in range(64)]
        t = now_ms() - 10 * DAY
        items = []
        for j in range(ne):
            it = Item("bounce-transient", addrs, t + j, 5000 + j)
            obj = json.loads(it.text)
            b = obj["bounce"]
            b["bouncedRecipients"] = [{"emailAddress": a, "action": "failed", "status": "5.1.1",
                                       "diagnosticCode": "smtp; 550 5.1.1 " + "x" * 1100}
                                      for a in addrs]
            b["reportingMTA"] = "dns; " + "m" * 1100
            b["remoteMtaIp"] = "1" * 1100
            obj["mail"]["source"] = "s" * 240 + "@example.com"
            obj["mail"]["destination"] = [f"{'d' * 240}{k}@example.com" for k in range(10)]
            it.text = json.dumps(obj, separators=(",", ":"))
            items.append(it)
        self.deliver(self.m, items, threads=4)
        member = self.env.redis("ZRANGE", f"mailtrail:rcpt:{{{addrs[0]}}}", 0, 0)[0]
        self.assertGreater(len(member), 4000)

        def hwm():
            with open(f"/proc/{self.m.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])

        before = hwm()
        res = self.post_check(addrs)["results"]
        self.assertEqual({r["reason"] for r in res}, {"Bounce/Status"})
        self.assertEqual({r["time"] for r in res}, {ms_iso(t + ne - 1)})
        if not harness.WRAPPER:  # valgrind's own memory is not mailtrail's
            grown = hwm() - before
            self.assertLess(grown, 40_000, f"peak RSS grew {grown} kB in one check")


class FlagsTest(api.ApiCase):
    def test_bad_flags_exit_2(self):
        for args in (["--suppress-statuses", "5.1"], ["--suppress-statuses", ""],
                     ["--suppress-statuses", "5.1.1,,5.4.4"], ["--suppress-statuses", "2.0.0"],
                     ["--suppress-soft-bounces", "x"], ["--suppress-soft-bounces", "101"],
                     ["--suppress-soft-days", "0"]):
            with self.subTest(args=args):
                r = subprocess.run([BINARY, "--any-topic"] + args, capture_output=True,
                                   timeout=30, env=self.env.child_env())
                self.assertEqual(r.returncode, 2, r)
                lines = r.stderr.decode().strip().splitlines()
                self.assertEqual(len(lines), 1, lines)
                self.assertIn(f"invalid value for {args[0]}", lines[0])


if __name__ == "__main__":
    sys.exit(harness.suite_main(sys.modules[__name__], sys.argv))
