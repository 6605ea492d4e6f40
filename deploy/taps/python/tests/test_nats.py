"""The small NATS client against a real nats-server (127.0.0.1, a free port, stopped in tearDown)."""

import threading
import time
import unittest

import support
from latentwatch_tap import nats as n


class Client(unittest.TestCase):
    def setUp(self):
        self.server = support.NatsServer()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.server.stop()

    def client(self, **kw):
        c = n.NatsClient(self.server.url, **kw)
        self.clients.append(c)
        return c

    def test_info_and_max_payload(self):
        c = self.client()
        self.assertEqual(c.max_payload, 1024 * 1024)  # nats-server's default
        self.assertTrue(c.server_info["headers"])

    def test_pub_sub_with_headers(self):
        a, b = self.client(), self.client()
        got = support.Recorder()
        b.subscribe("lw.test.*", got)
        b.flush()
        a.publish("lw.test.x", b"\x00\x01payload\r\n", headers={"Lw-Version": "1", "Lw-Token-Text": '["a b"]'})
        a.publish("lw.test.y", "plain")
        a.publish("lw.test.z", b"")
        a.flush()
        support.wait_until(lambda: len(got.msgs) == 3, what="3 messages")
        m1, m2, m3 = got.msgs
        self.assertEqual((m1.subject, m1.data), ("lw.test.x", b"\x00\x01payload\r\n"))
        self.assertEqual(m1.headers, {"Lw-Version": "1", "Lw-Token-Text": '["a b"]'})
        self.assertIsNone(m1.status)
        self.assertEqual((m2.subject, m2.data, m2.headers), ("lw.test.y", b"plain", None))
        self.assertEqual(m3.data, b"")

    def test_unsubscribe(self):
        a = self.client()
        got = support.Recorder()
        sub = a.subscribe("lw.u", got)
        a.publish("lw.u", b"1")
        a.flush()
        support.wait_until(lambda: len(got.msgs) == 1)
        sub.unsubscribe()
        a.publish("lw.u", b"2")
        a.flush()
        a.flush()
        self.assertEqual(len(got.msgs), 1)

    def test_request_reply(self):
        service, caller = self.client(), self.client()

        def answer(msg):
            service.publish(msg.reply, b"re:" + msg.data, headers={"X-Seq": msg.headers["X-Seq"]})

        service.subscribe("lw.svc", answer)
        service.flush()
        reply = caller.request("lw.svc", b"ping", headers={"X-Seq": "7"}, timeout=2.0)
        self.assertEqual(reply.data, b"re:ping")
        self.assertEqual(reply.headers["X-Seq"], "7")
        self.assertTrue(reply.subject.startswith("_INBOX."))
        # several in flight at once, each answered on its own inbox
        pending = [caller.request_async("lw.svc", str(i), {"X-Seq": str(i)}) for i in range(5)]
        self.assertEqual([p.result(2.0).data for p in pending], [f"re:{i}".encode() for i in range(5)])

    def test_no_responders(self):
        c = self.client()
        t0 = time.monotonic()
        with self.assertRaisesRegex(n.NoRespondersError, "expected a responder, found none"):
            c.request("lw.nobody", b"x", timeout=5.0)
        self.assertLess(time.monotonic() - t0, 2.0)  # answered by the server, not by the timeout

    def test_timeout(self):
        c = self.client()
        c.subscribe("lw.silent", lambda m: None)
        c.flush()
        t0 = time.monotonic()
        with self.assertRaises(TimeoutError) as cm:
            c.request("lw.silent", b"x", timeout=0.1)
        self.assertIsInstance(cm.exception, n.NatsTimeoutError)
        self.assertIn("expected a reply within 0.1 s, found none", str(cm.exception))
        self.assertGreaterEqual(time.monotonic() - t0, 0.1)

    def test_max_payload_and_arguments(self):
        c = self.client()
        c.max_payload = 100
        with self.assertRaisesRegex(n.MaxPayloadError, r"expected at most 100 bytes \(max_payload\), found 101"):
            c.publish("lw.big", b"x" * 101)
        with self.assertRaisesRegex(n.NatsArgumentError, "subject: expected dot-separated tokens without whitespace, found 'a b'"):
            c.publish("a b", b"")
        with self.assertRaisesRegex(n.NatsArgumentError, "expected a value without CR or LF"):
            c.publish("lw.h", b"", headers={"X": "a\r\nb"})
        with self.assertRaisesRegex(n.NatsArgumentError, "payload: expected bytes or str, found int"):
            c.publish("lw.h", 5)

    def test_server_ping_answered_and_concurrent_publishers(self):
        a, b = self.client(), self.client()
        got = support.Recorder()
        b.subscribe("lw.many", got)
        b.flush()

        def pub(k):
            for i in range(200):
                a.publish("lw.many", f"{k}:{i}", headers={"K": str(k)})

        threads = [threading.Thread(target=pub, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        a.flush()
        support.wait_until(lambda: len(got.msgs) == 800, what="800 messages")
        self.assertTrue(all(m.data.decode().split(":")[0] == m.headers["K"] for m in got.msgs))

    def test_closed_connection_without_reconnect(self):
        c = self.client(reconnect=False)
        self.server.kill()
        support.wait_until(lambda: c.closed, what="the client to see the connection closed")
        with self.assertRaisesRegex(n.NatsConnectionError, "expected an open connection, found it closed"):
            c.publish("lw.x", b"")

    def test_connect_refused(self):
        with self.assertRaisesRegex(n.NatsConnectionError, "connect to 127.0.0.1"):
            n.NatsClient(f"nats://127.0.0.1:{support.free_port()}", connect_timeout=1.0)


class Permissions(unittest.TestCase):
    CONFIG = """
authorization {
  users = [
    { user: tap, password: tap-secret,
      permissions: { publish: { allow: ["latentwatch.tap.>"] }, subscribe: { allow: ["_INBOX.>"] } } }
  ]
}
"""

    def setUp(self):
        self.server = support.NatsServer(self.CONFIG)

    def tearDown(self):
        self.server.stop()

    def test_permission_violation_reported(self):
        errors = []
        c = n.NatsClient(self.server.url, user="tap", password="tap-secret", on_error=errors.append)
        try:
            c.publish("latentwatch.tap.v1.m.h.0", b"ok")
            c.publish("latentwatch.steer.v1.m.h.0", b"not allowed")
            c.flush()
            support.wait_until(lambda: c.errors == 1, what="one -ERR")
            self.assertIn("Permissions Violation for Publish to", errors[0])
            self.assertIn("latentwatch.steer.v1.m.h.0", c.last_error)
            self.assertFalse(c.closed)  # a permission error does not end the connection
        finally:
            c.close()

    def test_credentials_in_url(self):
        c = n.NatsClient(self.server.url.replace("nats://", "nats://tap:tap-secret@"))
        c.close()

    def test_bad_password(self):
        with self.assertRaisesRegex(n.NatsServerError, "Authorization Violation"):
            n.NatsClient(self.server.url, user="tap", password="wrong", connect_timeout=2.0)


if __name__ == "__main__":
    unittest.main()
