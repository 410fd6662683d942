#!/usr/bin/env python3
"""Integration tests of `mailtrail check` (issue 15).

    python3 tests/integration/test_check.py <mailtrail-binary> <tests/data>

`mailtrail check` reads the server's configuration and checks it without
serving, one line per check, exit 1 on a failure.  A good configuration
(a real redis-server, a spool directory, the test PKI's TLS pair, a
certificate cache holding the signing certificate, the local HTTPS "SNS"
host as the certificate host, an API token) passes every check; then each
check is broken on its own, the rest staying good, and must be the one
line that fails: Redis unreachable, --redis-cluster against a standalone
server, the spool directory not a directory, a TLS key that does not match
its certificate, a certificate cache that cannot be read, a certificate
host that refuses connections or that --cert-host-pattern does not allow,
an API beyond loopback without a token.  Also: the certificate host is the
region's of --topic, --offline contacts nothing, Redis's default listpack
thresholds are a warning, configuration errors exit 2.

MAILTRAIL_TEST_WRAPPER is put in front of every mailtrail command.  Nothing
is ever skipped: a missing tool or binary is a failure.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import TIME_FACTOR, WRAPPER, HarnessError, RedisServer  # noqa: E402

BINARY = None
DATA = None
ENV = None

TOKEN = "mt-check-token-0a9b8c7d6e5f4a3b"
CHECKS = ("configuration", "redis", "redis-encoding", "spool", "tls", "cert-cache",
          "outbound-https", "api-token")


class Environment(harness.Environment):
    def __init__(self):
        super().__init__("mailtrail-check-")
        self.closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.closed.bind(("127.0.0.1", 0))
        self.closed_port = self.closed.getsockname()[1]
        self.pattern = r"^127\.0\.0\.1:(%d|%d)$" % (self.sns.port, self.closed_port)
        self.spool = os.path.join(self.tmp, "spool")
        os.mkdir(self.spool)
        self.cache = os.path.join(self.tmp, "certs")
        os.mkdir(self.cache)
        shutil.copy(self.pki.signing_cert,
                    os.path.join(self.cache, "SimpleNotificationService-test.pem"))
        # Redis with its own defaults (listpack values of 64 bytes).
        self.plain_redis = RedisServer(os.path.join(self.tmp, "redis-defaults"),
                                       redis_defaults=True).start()

    def close(self):
        self.closed.close()
        self.plain_redis.stop()
        super().close()


def setUpModule():
    global ENV
    if BINARY is None:
        raise HarnessError("usage: test_check.py <mailtrail-binary> <tests/data>")
    if not os.access(BINARY, os.X_OK):
        raise HarnessError(f"mailtrail binary not found or not executable: {BINARY}")
    ENV = Environment()
    CheckCase.env = ENV


def tearDownModule():
    if ENV is not None:
        ENV.close()
    harness.kill_all_children()


class CheckCase(harness.MailtrailTestCase):
    def good(self, **override):
        """The good configuration, as flags; override replaces a flag's
        value (None drops it)."""
        opts = {
            "--redis": ENV.redis_url,
            "--spool-dir": ENV.spool,
            "--tls-cert": ENV.pki.server_cert,
            "--tls-key": ENV.pki.server_key,
            "--cert-cache-dir": ENV.cache,
            "--ca-file": ENV.pki.ca_cert,
            "--cert-host-pattern": ENV.pattern,
            "--cert-host": ENV.sns.authority,
            "--api-listen": "0.0.0.0:0",
            "--api-token": TOKEN,
            "--topic": "arn:aws:sns:eu-west-1:123456789012:ses-events",
        }
        for k, v in override.items():
            opts["--" + k.replace("_", "-")] = v
        args = []
        for k, v in opts.items():
            if v is not None:
                args += [k, v] if v is not True else [k]
        return args

    def check(self, args, env=None):
        cmd = WRAPPER + [BINARY, "check"] + list(args)
        p = subprocess.run(cmd, capture_output=True, text=True,
                           env=ENV.child_env(dict({"MAILTRAIL_TOPIC": ""}, **(env or {}))),
                           timeout=60 * TIME_FACTOR)
        lines = {}
        for line in p.stdout.splitlines():
            m = re.match(r"^(ok|warn|skip|FAIL) +([a-z-]+): (.*)$", line)
            if m:
                lines.setdefault(m.group(2), []).append((m.group(1), m.group(3)))
        self.last = f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        return p.returncode, lines, p.stdout

    def context(self):
        return super().context() + "\n" + getattr(self, "last", "")

    def assert_only_failure(self, lines, name, *words):
        failed = {k for k, v in lines.items() if any(o == "FAIL" for o, _ in v)}
        self.assertEqual(failed, {name})
        text = " | ".join(t for o, t in lines[name] if o == "FAIL")
        for w in words:
            self.assertIn(w, text)

    # --- good -------------------------------------------------------------------------

    def test_good_configuration_passes_every_check(self):
        rc, lines, out = self.check(self.good())
        self.assertEqual(rc, 0)
        self.assertEqual(set(lines), set(CHECKS))
        for name in CHECKS:
            self.assertEqual([o for o, _ in lines[name]], ["ok"], name)
        self.assertRegex(lines["redis"][0][1], r"answers \(version \d+\.\d+\.\d+, standalone\)")
        self.assertIn("zset-max-listpack-value 1024", lines["redis-encoding"][0][1])
        self.assertIn(f"{ENV.spool} writable", lines["spool"][0][1])
        self.assertIn("load and match", lines["tls"][0][1])
        self.assertIn("1 certificates", lines["cert-cache"][0][1])
        self.assertIn(f"{ENV.sns.authority} answers (HTTP status 404)",
                      lines["outbound-https"][0][1])
        self.assertTrue(out.rstrip().endswith("check: ok"))
        # The host was really asked, and nothing was written to Redis.
        self.assertEqual([r.path for r in ENV.sns.requests()], ["/"])
        self.assertEqual(ENV.redis("DBSIZE"), 0)
        self.assertEqual(os.listdir(ENV.spool), [])

    def test_region_of_the_topic_is_the_certificate_host_and_offline_contacts_nothing(self):
        rc, lines, _ = self.check(self.good(cert_host=None, cert_host_pattern=None,
                                            offline=True))
        self.assertEqual(rc, 0)
        self.assertEqual(lines["outbound-https"],
                         [("skip", "--offline (sns.eu-west-1.amazonaws.com matches "
                                   "--cert-host-pattern; not contacted)")])
        # Two regions, and a pattern that allows neither: failed even offline.
        rc, lines, _ = self.check(self.good(cert_host=None, offline=True, topic=None),
                                  env={"MAILTRAIL_TOPIC":
                                       "arn:aws:sns:eu-west-1:123456789012:a,"
                                       "arn:aws-cn:sns:cn-north-1:123456789012:b"})
        self.assertEqual(rc, 1)
        self.assertEqual([o for o, _ in lines["outbound-https"]], ["FAIL", "FAIL"])
        self.assertIn("sns.eu-west-1.amazonaws.com does not match --cert-host-pattern",
                      lines["outbound-https"][0][1])
        self.assertIn("sns.cn-north-1.amazonaws.com.cn does not match",
                      lines["outbound-https"][1][1])
        self.assertEqual(ENV.sns.requests(), [])

    def test_redis_defaults_are_a_warning(self):
        rc, lines, _ = self.check(self.good(
            redis=f"redis://127.0.0.1:{ENV.plain_redis.port}/0"))
        self.assertEqual(rc, 0)
        self.assertEqual(lines["redis-encoding"][0][0], "warn")
        self.assertIn("set zset-max-listpack-value 1024", lines["redis-encoding"][0][1])

    # --- broken, one at a time ---------------------------------------------------------

    def test_redis_unreachable(self):
        rc, lines, out = self.check(self.good(redis=f"redis://127.0.0.1:{ENV.closed_port}/0"))
        self.assertEqual(rc, 1)
        self.assert_only_failure(lines, "redis", "does not answer")
        self.assertTrue(out.rstrip().endswith("check: FAILED"))

    def test_redis_cluster_flag_against_a_standalone_server(self):
        rc, lines, _ = self.check(self.good(redis_cluster=True))
        self.assertEqual(rc, 1)
        self.assert_only_failure(lines, "redis")

    def test_spool_dir_not_a_directory(self):
        path = os.path.join(ENV.tmp, "a-file")
        with open(path, "w") as f:
            f.write("x")
        rc, lines, _ = self.check(self.good(spool_dir=path))
        self.assertEqual(rc, 1)
        self.assert_only_failure(lines, "spool", "is not a directory")

    def test_tls_key_not_matching(self):
        rc, lines, _ = self.check(self.good(tls_key=ENV.pki.signing_key))
        self.assertEqual(rc, 1)
        self.assert_only_failure(lines, "tls")

    def test_cert_cache_unreadable(self):
        rc, lines, _ = self.check(self.good(cert_cache_dir=os.path.join(ENV.tmp, "nowhere")))
        self.assertEqual(rc, 1)
        self.assert_only_failure(lines, "cert-cache", "cannot be read")

    def test_certificate_host_refusing_connections(self):
        rc, lines, _ = self.check(self.good(cert_host=f"127.0.0.1:{ENV.closed_port}"))
        self.assertEqual(rc, 1)
        self.assert_only_failure(lines, "outbound-https",
                                 f"127.0.0.1:{ENV.closed_port} cannot be reached",
                                 "allow outbound HTTPS to it")

    def test_certificate_host_not_allowed_by_the_pattern(self):
        rc, lines, _ = self.check(self.good(cert_host="127.0.0.1:1"))
        self.assertEqual(rc, 1)
        self.assert_only_failure(lines, "outbound-https", "does not match --cert-host-pattern")

    def test_api_beyond_loopback_without_token(self):
        rc, lines, _ = self.check(self.good(api_token=None, api_no_token=True))
        self.assertEqual(rc, 1)
        self.assert_only_failure(lines, "api-token", "beyond loopback")
        # Without the explicit opt-out the configuration itself is refused.
        rc, lines, _ = self.check(self.good(api_token=None))
        self.assertEqual(rc, 2)
        self.assertEqual([o for o, _ in lines["configuration"]], ["FAIL"])

    def test_usage_errors(self):
        rc, _, _ = self.check(["--no-such-option"])
        self.assertEqual(rc, 2)
        rc, _, out = self.check(["--help"])
        self.assertEqual(rc, 0)
        self.assertIn("mailtrail check", out)


if __name__ == "__main__":
    sys.exit(harness.suite_main(sys.modules[__name__], sys.argv))
