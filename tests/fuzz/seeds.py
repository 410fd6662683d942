#!/usr/bin/env python3
"""Writes the seed corpora of the harnesses whose input is not a file of
tests/data as it is: fuzz_sign (structured messages), fuzz_url (the
SigningCertURL, SubscribeURL and UnsubscribeURL of the real envelopes) and
fuzz_api (request targets), fuzz_import (files of captures: a limit
byte, a seed byte, then NDJSON or a document) and fuzz_check (bulk check
bodies), all made from tests/data.  Run from the repository root:
    python3 tests/fuzz/seeds.py
The output is committed under tests/fuzz/corpus/{sign,url,api,import,check}/seed-*."""
import glob
import hashlib
import json
import os
import urllib.parse

FIELDS = ["Message", "MessageId", "Signature", "SignatureVersion", "SigningCertURL",
          "Subject", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
          "UnsubscribeURL"]  # enum sns_field order
TYPES = {"Notification": 0, "SubscriptionConfirmation": 1, "UnsubscribeConfirmation": 2}


def write(kind, data):
    d = os.path.join("tests/fuzz/corpus", kind)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:12]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def envelopes():
    for path in sorted(glob.glob("tests/data/real-sns/*/*.json")):
        try:
            env = json.load(open(path, encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(env, dict) and env.get("Type") in TYPES:
            yield env


def url_seeds():
    for env in envelopes():
        for k in ("SigningCertURL", "SubscribeURL", "UnsubscribeURL"):
            if isinstance(env.get(k), str):
                write("url", env[k].encode())


def sign_seeds():
    for env in envelopes():
        parts = []
        for k in FIELDS:
            v = env.get(k)
            parts.append(b"\x1f" if not isinstance(v, str) else v.encode())
        write("sign", bytes([TYPES[env["Type"]]]) + b"\x1e".join(parts))


def addresses():
    found = set()
    for path in sorted(glob.glob("tests/data/ses/*.json")):
        try:
            msg = json.load(open(path, encoding="utf-8"))
        except ValueError:
            continue
        mail = msg.get("mail", {}) if isinstance(msg, dict) else {}
        for a in mail.get("destination", []) if isinstance(mail, dict) else []:
            if isinstance(a, str):
                found.add(a)
    return sorted(found)[:12]


def api_seeds():
    targets = ["/", "/app.js", "/v1/events", "/v1/events?limit=50&before=1764582000123",
               "/v1/events?after=5", "/v1/recipients/alice%40example.com",
               "/v1/recipients/Alice%40Example.com?limit=1",
               "/v1/recipients/a%00b%40example.com/events",
               "/v1/recipients/alice@example.com/events?limit=20&before=1764582000123",
               "/v1/recipients/alice@example.com/events?type=Rendering+Failure&after=1&before=2",
               "/v1/recipients/alice@example.com/events?type=Bounce&after=1764000000000",
               "/v1/recipients/alice@example.com/events?limit=0&foo=bar",
               "/v1/recipients/alice@example.com/events/extra", "/v1/nope",
               "/v1/messages/0100018c1a2b3c4d-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d-000000",
               "/v1/messages/EXAMPLE7c191be45-e9aedb9a?limit=5", "/v1/messages/",
               "/v1/messages/a%2Fb", "/v1/messages/a.b", "/v1/messages/" + "x" * 129]
    for a in addresses():
        q = urllib.parse.quote(a, safe="@")
        targets += [f"/v1/recipients/{q}", f"/v1/recipients/{q}/events?limit=5&type=Delivery"]
    targets += ["/v1/suppressions", "/v1/suppressions?format=csv&since=1764582000123",
                "/v1/suppressions?cursor=18446744073709551615&limit=10000",
                "/v1/suppressions?format=ndjson&limit=0", "/v1/suppressions/check"]
    targets += ["/v1/health", "/v1/health?dimension=configuration-set&limit=1000",
                "/v1/health?dimension=domain&limit=0",
                "/v1/health/series?name=example.com",
                "/v1/health/series?dimension=configuration-set&name=Tx-EU&step=day"
                "&from=1764000000000&to=1764600000000",
                "/v1/health/series?name=Sender%40Example.com&dimension=domain&from=5&to=5",
                "/v1/health/series?name=(other)&from=0&to=7200000000",
                "/v1/health/domains?window=24h&by=complaints&limit=5",
                "/v1/health/domains?window=30d&by=bounces", "/v1/health/domains?by=opens",
                "/v1/events?domain=Example.ORG&type=Bounce&limit=3",
                "/v1/events?domain=a%40b.example"]
    for t in targets:
        write("api", t.encode())


def import_seeds():
    """fuzz_import: byte 0 the limit (255: 64 KiB, else byte + 1), byte 1
    the seed of the piece sizes, then the file."""
    paths = sorted(glob.glob("tests/data/real-sns/*/*.json"))[:4]
    docs = [open(p, "rb").read() for p in paths]
    compact = [json.dumps(json.loads(d)).encode() for d in docs]
    write("import", b"\xff\x07" + b"\n".join(compact) + b"\n")          # NDJSON
    write("import", b"\xff\x2a" + b"\n\n  \r\n" + docs[0])               # blank lines, a document
    write("import", b"\xff\x03" + b"\r\n".join(compact) + b"\r\n\r\n")   # CRLF NDJSON
    write("import", b"\x40\x11" + b"\n".join(compact[:2]))               # lines over 65 bytes
    write("import", b"\x80\x05" + docs[1])                               # a document over 129
    write("import", b"\x10\x09" + b'{"a":1}\n{}\n' + b"x" * 40 + b'\n{"b":2}')  # a long line


def check_seeds():
    """Bodies of POST /v1/suppressions/check: the real addresses, as given
    and with display names, and a few wrong shapes."""
    found = addresses()
    write("check", json.dumps(found).encode())
    write("check", json.dumps([f"Someone <{a}>" for a in found] + ["nope", ""]).encode())
    for body in ['[]', '["a@b.c", 1]', '[["a@b.c"]]', '{"a":"b"}', '["a\\u0000b@c.d"]',
                 '["\\"a,b\\"@example.com"] ']:
        write("check", body.encode())


sign_seeds()
url_seeds()
api_seeds()
import_seeds()
check_seeds()
