#!/usr/bin/env python3
"""Security review reproduction (not a CI test): the memory one bulk check
costs when its candidates' timelines are large.

    NR=64 NE=1000 python3 tests/bench/policy_read_memory.py build/src/mailtrail tests/data

Delivers NE signed Transient bounces (status 5.1.1, so each address is a
Bounce/Status candidate), each naming the same NR recipients, with every
detail string at its cut (about 5 KB a compact member), then POSTs one
check of the NR addresses and prints mailtrail's VmRSS before and its
VmHWM after.  The policy reads each candidate's newest 1,000 events,
STORE_POLICY_READS_MAX (64) timelines a round trip, and holds the replies
at once: on the review machine (a4aad35) NR=64 NE=1000 took mailtrail
from 26 MB to a 693 MB peak (Redis: 394 MB of data, and the same replies
in its output buffer), first check 4.5 s, then 1.8 s each.  1,000 signed
messages of about 100 KB plant it; every check, export step or index
rebuild that reads those addresses pays it again, concurrent ones add up.
"""
import json, os, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
import harness
import test_api as api
from test_api import Item, T0, ms_iso
import test_suppressions as ts

NR = int(os.environ.get("NR", "8"))
NE = int(os.environ.get("NE", "1000"))

def big_bounce(addresses, ms, serial):
    obj = api.ENV.template("relay-identity-bounce-transient-general-ooto-no-dsn.json")
    b = obj["bounce"]
    b["bouncedRecipients"] = [{"emailAddress": a, "action": "failed", "status": "5.1.1",
                               "diagnosticCode": "smtp; 550 5.1.1 " + "x" * 1100} for a in addresses]
    b["timestamp"] = ms_iso(ms)
    b["reportingMTA"] = "dns; " + "m" * 1100
    b["remoteMtaIp"] = "1" * 1100
    m = obj["mail"]
    m["timestamp"] = ms_iso(ms - 5000)
    m["messageId"] = api.ses_message_id(serial)
    m["source"] = "s" * 240 + "@example.com"
    m["destination"] = [f"{'d' * 240}{k}@example.com" for k in range(10)]
    return json.dumps(obj, separators=(",", ":"))

class Amp(ts.SuppressionCase):
    def vm(self, field):
        with open(f"/proc/{self.m.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])

    def test_amp(self):
        addrs = [f"victim{k}@example.com" for k in range(NR)]
        items = []
        for j in range(NE):
            it = Item("bounce-transient", addrs, T0 + 1000 + j, j + 1)
            it.text = big_bounce(addrs, T0 + 1000 + j, j + 1)
            items.append(it)
        t = time.time()
        self.deliver(self.m, items, threads=4)
        print("delivered in", time.time() - t, file=sys.stderr)
        mem = api.ENV.redis("INFO", "memory")
        print([l for l in (mem.decode() if isinstance(mem, bytes) else mem).split("\r\n") if l.startswith("used_memory_human")], file=sys.stderr)
        r = api.ENV.redis("ZRANGE", f"mailtrail:rcpt:{{{addrs[0]}}}", 0, 0)
        print("member bytes", len(r[0]), file=sys.stderr)
        print("VmRSS before any check", self.vm("VmRSS"), "VmHWM", self.vm("VmHWM"), file=sys.stderr)
        t0 = time.time(); self.post_check(addrs); print("first check", time.time() - t0, "VmHWM", self.vm("VmHWM"), file=sys.stderr)  # warm (rebuild)
        time.sleep(2)
        self.post_check(addrs)
        with open(f"/proc/{self.m.proc.pid}/clear_refs", "w") as f:
            f.write("5")
        before = self.vm("VmHWM")
        t = time.time()
        body = self.post_check(addrs)
        print("check took", time.time() - t, "VmHWM before", before, "after", self.vm("VmHWM"), "kB", file=sys.stderr)
        print(body["results"][0], file=sys.stderr)

BINARY = DATA = None
def setUpModule():
    ts.BINARY, ts.DATA = BINARY, DATA
    ts.setUpModule()
def tearDownModule():
    ts.tearDownModule()
if __name__ == "__main__":
    sys.exit(harness.suite_main(sys.modules[__name__], sys.argv))
