"""TLS (a throwaway CA and server certificate made with openssl) and user/password or token auth,
against real nats-servers configured with them."""

import os
import shutil
import subprocess
import tempfile
import unittest

import support
from latentwatch_tap import LatentwatchTap
from latentwatch_tap import nats as n


def make_pki(d: str) -> None:
    """ca.pem/ca.key, server.pem/server.key for 127.0.0.1 and localhost, client.pem/client.key,
    and other-ca.pem (a CA that signed nothing here)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise AssertionError("openssl is missing: `apt-get install openssl`")

    def run(*args):
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN=latentwatch test {ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.pem")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    for leaf in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={leaf}", "-keyout", f"{leaf}.key",
            "-out", f"{leaf}.csr")
        run("x509", "-req", "-in", f"{leaf}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", "san.ext", "-out", f"{leaf}.pem")


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.d = cls.tmp.name
        make_pki(cls.d)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def server(self, verify=False, extra=""):
        p = lambda f: os.path.join(self.d, f)  # noqa: E731
        conf = (f'tls {{\n  cert_file: "{p("server.pem")}"\n  key_file: "{p("server.key")}"\n'
                f'  ca_file: "{p("ca.pem")}"\n  verify: {"true" if verify else "false"}\n  timeout: 2\n}}\n{extra}')
        s = support.NatsServer(conf)
        self.addCleanup(s.stop)
        return s

    def ca(self, name="ca.pem"):
        return {"ca_file": os.path.join(self.d, name)}

    def test_tls_url_publish_and_receive(self):
        s = self.server()
        url = s.url.replace("nats://", "tls://")
        a = n.NatsClient(url, tls=self.ca())
        b = n.NatsClient(url, tls=self.ca())
        try:
            self.assertTrue(a.server_info.get("tls_required"))
            self.assertEqual(a._sock.version()[:3], "TLS")
            got = support.Recorder()
            b.subscribe("lw.tls", got)
            b.flush()
            a.publish("lw.tls", b"secret frame", headers={"Lw-Seq": "0"})
            a.flush()
            support.wait_until(lambda: len(got.msgs) == 1)
            self.assertEqual((got.msgs[0].data, got.msgs[0].headers), (b"secret frame", {"Lw-Seq": "0"}))
            # and across a restart, the upgrade happens again
            s.kill()
            support.wait_until(lambda: not a.connected)
            a.publish("lw.tls", b"held")
            s.start()
            self.assertTrue(a.wait_connected(5) and b.wait_connected(5))
            a.flush()
            self.assertEqual((a.stats["reconnects"], a.stats["replayed"]), (1, 1))
        finally:
            a.close()
            b.close()

    def test_tls_required_by_the_server_upgrades_a_nats_url(self):
        s = self.server()
        with n.NatsClient(s.url, tls=self.ca()) as c:
            c.flush()
            self.assertEqual(c._sock.version()[:3], "TLS")

    def test_wrong_ca_fails_clearly(self):
        s = self.server()
        with self.assertRaisesRegex(n.NatsTlsError, r"tls handshake with 127\.0\.0\.1:\d+: expected a certificate "
                                                    r"for '127\.0\.0\.1' signed by .*other-ca\.pem, found: "
                                                    r"unable to get local issuer certificate"):
            n.NatsClient(s.url.replace("nats:", "tls:"), tls=self.ca("other-ca.pem"), connect_timeout=2)
        # without a CA: the system's, which never signed this one
        with self.assertRaisesRegex(n.NatsTlsError, "the system's CAs"):
            n.NatsClient(s.url, connect_timeout=2)

    def test_wrong_name_fails_clearly(self):
        s = self.server()
        with self.assertRaisesRegex(n.NatsTlsError, "expected a certificate for 'nats.example' .*found: "
                                                    "Hostname mismatch"):
            n.NatsClient(s.url, tls={**self.ca(), "server_hostname": "nats.example"}, connect_timeout=2)

    def test_tls_url_against_a_plain_server(self):
        s = support.NatsServer()
        self.addCleanup(s.stop)
        with self.assertRaisesRegex(n.NatsTlsError, "expected a server that offers TLS, found none in its INFO"):
            n.NatsClient(s.url.replace("nats:", "tls:"), tls=self.ca(), connect_timeout=2)

    def test_client_certificate(self):
        s = self.server(verify=True)
        with n.NatsClient(s.url, tls={**self.ca(), "cert_file": os.path.join(self.d, "client.pem"),
                                      "key_file": os.path.join(self.d, "client.key")}) as c:
            c.flush()
        with self.assertRaisesRegex(n.NatsTlsError, "found a TLS alert: .*wants tls cert_file and key_file"):
            n.NatsClient(s.url, tls=self.ca(), connect_timeout=2)

    def test_bad_tls_options(self):
        with self.assertRaisesRegex(n.NatsArgumentError, "tls.ca_file: expected a readable file, found '/nope'"):
            n.NatsClient("tls://127.0.0.1:1", tls={"ca_file": "/nope"})
        with self.assertRaisesRegex(n.NatsArgumentError, r"tls: expected keys among .*found \['cafile'\]"):
            n.NatsClient("tls://127.0.0.1:1", tls={"cafile": "x"})

    def test_the_tap_over_tls_with_a_password(self):
        s = self.server(extra='authorization { users = [ { user: tap, password: "tap-secret" } ] }\n')
        sink = n.NatsClient(s.url, user="tap", password="tap-secret", tls=self.ca())
        self.addCleanup(sink.close)
        got = support.Recorder()
        sink.subscribe("latentwatch.tap.v1.>", got)
        sink.flush()
        tap = LatentwatchTap([s.url.replace("nats:", "tls:")], "m", "h", user="tap", password="tap-secret",
                             tls=self.ca(), steering=False)
        torch = support.require_torch()
        try:
            layer = torch.nn.Identity()
            tap.attach(layer)
            with tap.requests(["r1"], input_ids=torch.tensor([[1, 2]])):
                layer(torch.ones(1, 2, 3))
            tap.nc.flush()
            support.wait_until(lambda: len(got.msgs) == 2, what="the frame and the end marker")
            self.assertEqual([m.headers["Lw-Request-Id"] for m in got.msgs], ["r1", "r1"])
            self.assertEqual(tap.stats["frames"], 2)
        finally:
            tap.close()


class Auth(unittest.TestCase):
    def test_token(self):
        s = support.NatsServer('authorization { token: "s3cret-token" }\n')
        self.addCleanup(s.stop)
        with n.NatsClient(s.url, token="s3cret-token") as c:
            c.flush()
        with n.NatsClient(s.url.replace("nats://", "nats://s3cret-token@")) as c:  # the URL form
            c.flush()
        with self.assertRaisesRegex(n.NatsServerError, r"connect to nats://127\.0\.0\.1:\d+: expected PONG, "
                                                       r"found -ERR 'Authorization Violation'"):
            n.NatsClient(s.url, token="wrong", connect_timeout=2)
        with self.assertRaisesRegex(n.NatsServerError, "Authorization Violation"):
            n.NatsClient(s.url, connect_timeout=2)

    def test_user_password_and_reconnect_with_them(self):
        s = support.NatsServer('authorization { users = [ { user: tap, password: "pw" } ] }\n')
        self.addCleanup(s.stop)
        with self.assertRaisesRegex(n.NatsServerError, "Authorization Violation"):
            n.NatsClient(s.url, user="tap", password="wrong", connect_timeout=2)
        c = n.NatsClient(s.url, user="tap", password="pw", reconnect_wait=0.01, reconnect_wait_max=0.02)
        try:
            s.kill()
            support.wait_until(lambda: not c.connected)
            s.start()
            self.assertTrue(c.wait_connected(5))
            c.flush()
        finally:
            c.close()

    def test_wrong_password_on_reconnect_is_counted_and_retried(self):
        conf = 'authorization {{ users = [ {{ user: tap, password: "{pw}" }} ] }}\n'
        s = support.NatsServer(conf.format(pw="pw"))
        self.addCleanup(s.stop)
        c = n.NatsClient(s.url, user="tap", password="pw", reconnect_wait=0.01, reconnect_wait_max=0.02)
        try:
            s.kill()
            with open(s.args[-1], "w") as f:  # the operator changed the password meanwhile
                f.write(conf.format(pw="new"))
            s.start()
            support.wait_until(lambda: "Authorization Violation" in (c.last_error or ""), what="the refusal")
            n0 = c.stats["reconnect_attempts"]
            support.wait_until(lambda: c.stats["reconnect_attempts"] >= n0 + 2, what="more attempts")
            self.assertFalse(c.connected)
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main()
