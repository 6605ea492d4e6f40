"""The client and the tap across nats-server restarts (a real server, stopped with SIGTERM and started
again on the same port): reconnect, resubscribe, the outage buffer and its counted drops, gating."""

import os
import signal
import time
import unittest

import support
from latentwatch_tap import LatentwatchTap
from latentwatch_tap import nats as n
from latentwatch_tap.reconnect import Backoff, OutageBuffer

try:
    import torch
except ImportError:
    torch = None

FAST = dict(reconnect_wait=0.01, reconnect_wait_max=0.05)


class Client(unittest.TestCase):
    def setUp(self):
        self.server = support.NatsServer()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.server.stop()

    def client(self, url=None, **kw):
        for k, v in FAST.items():
            kw.setdefault(k, v)
        c = n.NatsClient(url or self.server.url, **kw)
        self.clients.append(c)
        return c

    def outage(self, *clients):
        self.server.kill()
        support.wait_until(lambda: not any(c.connected for c in clients), what="the clients to see the outage")

    def test_held_publishes_arrive_in_order_after_the_restart_and_subscriptions_come_back(self):
        pub, sub = self.client(), self.client(reconnect_wait=0.005, reconnect_wait_max=0.01)
        got = support.Recorder()
        sub.subscribe("lw.r", got)
        sub.flush()
        pub.publish("lw.r", b"before")
        pub.flush()
        support.wait_until(lambda: len(got.msgs) == 1)
        self.outage(pub, sub)
        for i in range(50):
            pub.publish("lw.r", f"during-{i}", headers={"I": str(i)})
        self.assertEqual(pub.buffered[0], 50)
        self.assertEqual(pub.stats["buffered"], 50)
        with self.assertRaisesRegex(n.NatsConnectionError, r"expected a connection, found none \(reconnecting\)"):
            pub.request("lw.r", b"x", timeout=5.0)
        self.server.start()
        self.assertTrue(sub.wait_connected(5) and pub.wait_connected(5))
        sub.flush()  # the subscription is back before anything new is published
        pub.publish("lw.r", b"after")
        pub.flush()
        support.wait_until(lambda: any(m.data == b"after" for m in got.msgs), what="the publish after the restart")
        self.assertEqual((pub.stats["disconnects"], pub.stats["reconnects"], pub.stats["dropped"]), (1, 1, 0))
        self.assertEqual(pub.stats["replayed"], 50)
        self.assertEqual(pub.buffered, (0, 0))
        # the replay may have reached the server before `sub` subscribed again: what arrived is in order
        data = [m.data.decode() for m in got.msgs]
        during = [d for d in data if d.startswith("during-")]
        self.assertEqual(during, [f"during-{i}" for i in range(50 - len(during), 50)])
        self.assertEqual(data[0], "before")
        self.assertEqual(data[-1], "after")

    def test_replay_reaches_a_subscriber_that_is_back_first(self):
        sub = self.client(reconnect_wait=0.002, reconnect_wait_max=0.005)
        pub = self.client(reconnect_wait=0.3, reconnect_wait_max=0.3, reconnect_jitter=0)
        got = support.Recorder()
        sub.subscribe("lw.first", got)
        sub.flush()
        self.outage(pub, sub)
        for i in range(20):
            pub.publish("lw.first", str(i))
        self.server.start()
        self.assertTrue(sub.wait_connected(5))
        sub.flush()
        self.assertTrue(pub.wait_connected(5))
        pub.flush()
        support.wait_until(lambda: len(got.msgs) == 20, what="the 20 held publishes")
        self.assertEqual([m.data for m in got.msgs], [str(i).encode() for i in range(20)])

    def test_a_full_buffer_drops_and_counts(self):
        pub = self.client(reconnect_buffer_msgs=5, reconnect_buffer_bytes=1 << 20)
        self.outage(pub)
        for i in range(5):
            pub.publish("lw.full", str(i))
        with self.assertRaisesRegex(n.ReconnectBufferFullError, r"found it full \(5 messages, \d+ bytes held; limits 5"):
            pub.publish("lw.full", "5")
        with self.assertRaises(n.ReconnectBufferFullError):
            pub.publish("lw.full", "6")
        self.assertEqual((pub.stats["buffered"], pub.stats["dropped"]), (5, 2))
        self.assertGreater(pub.stats["dropped_bytes"], 0)

    def test_byte_bound_and_zero_buffer(self):
        a = self.client(reconnect_buffer_bytes=40)
        b = self.client(reconnect_buffer_bytes=0)
        self.outage(a, b)
        a.publish("lw.b", b"x" * 10)  # PUB lw.b 10\r\n + 10 + 2 = 25 bytes
        with self.assertRaises(n.ReconnectBufferFullError):
            a.publish("lw.b", b"x" * 10)
        with self.assertRaises(n.ReconnectBufferFullError):
            b.publish("lw.b", b"")
        self.assertEqual((a.stats["buffered"], a.stats["dropped"], b.stats["dropped"]), (1, 1, 1))

    def test_request_in_flight_fails_at_once_when_the_connection_drops(self):
        c = self.client()
        c.subscribe("lw.silent", lambda m: None)
        c.flush()
        p = c.request_async("lw.silent", b"x")
        t0 = time.monotonic()
        self.server.kill()
        with self.assertRaisesRegex(n.NatsConnectionError, "lost"):
            p.result(5.0)
        self.assertLess(time.monotonic() - t0, 2.0)

    def test_server_list_in_turn(self):
        dead = f"nats://127.0.0.1:{support.free_port()}"
        c = self.client([dead, self.server.url])
        self.assertEqual(c.server_info["port"], self.server.port)
        other = support.NatsServer()
        try:
            c2 = self.client(f"{self.server.url},{other.url}")
            self.server.kill()
            # wait_connected can answer before the client has noticed the kill: wait for the move
            deadline = time.monotonic() + 5
            while c2.server_info["port"] != other.port and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertTrue(c2.wait_connected(5))
            self.assertEqual(c2.server_info["port"], other.port)  # the next one in the list
        finally:
            other.stop()
        with self.assertRaisesRegex(n.NatsConnectionError, "expected one of the servers to answer, found none: "
                                                           "connect to 127.0.0.1"):
            n.NatsClient([dead, dead.replace("nats:", "nats:")], connect_timeout=1.0)

    def test_gives_up_after_max_attempts_and_counts_what_was_held(self):
        c = self.client(max_reconnect_attempts=2, reconnect_wait=0.01, reconnect_wait_max=0.01)
        self.server.kill()
        support.wait_until(lambda: not c.connected)
        try:
            c.publish("lw.g", b"held")
        except n.NatsConnectionError:
            pass  # already gave up: also fine
        support.wait_until(lambda: c.closed, what="the client to give up")
        with self.assertRaisesRegex(n.NatsConnectionError, "gave up reconnecting after 2 passes"):
            c.publish("lw.g", b"x")
        self.assertEqual(c.stats["buffered"], c.stats["dropped"])
        self.assertGreaterEqual(c.stats["reconnect_attempts"], 2)

    def test_a_silent_server_is_declared_dead_by_unanswered_pings(self):
        c = self.client(ping_interval=0.05, max_pings_out=2, connect_timeout=0.3)
        os.kill(self.server.proc.pid, signal.SIGSTOP)
        try:
            support.wait_until(lambda: c.stats["disconnects"] == 1, timeout=5, what="the stale connection to drop")
        finally:
            os.kill(self.server.proc.pid, signal.SIGCONT)
        self.assertTrue(c.wait_connected(5))
        c.flush()
        self.assertEqual(c.stats["reconnects"], 1)

    def test_replay_delay_holds_and_close_during_it_counts_the_held_as_dropped(self):
        sub = self.client(reconnect_wait=0.002, reconnect_wait_max=0.005)
        got = support.Recorder()
        sub.subscribe("lw.delay", got)
        sub.flush()
        c = self.client(replay_delay=0.5)
        self.outage(c, sub)
        c.publish("lw.delay", b"1")
        self.server.start()
        self.assertTrue(sub.wait_connected(5))
        sub.flush()
        t0 = time.monotonic()
        self.assertTrue(c.wait_connected(5))
        c.flush()
        support.wait_until(lambda: len(got.msgs) == 1, what="the held publish after the delay")
        self.assertGreater(time.monotonic() - t0, 0.3)  # held while the delay ran
        d = self.client(replay_delay=5.0)
        self.outage(d)
        d.publish("lw.delay", b"2")
        self.server.start()
        time.sleep(0.3)  # connected again, in the delay
        t0 = time.monotonic()
        d.close()
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertTrue(d.closed)
        self.assertEqual((d.stats["dropped"], d.stats["replayed"]), (1, 0))

    def test_backoff_and_buffer_arguments(self):
        b = Backoff(base=0.1, cap=1.0, jitter=0.5)
        for i in range(10):
            d = b.delay(i)
            full = min(1.0, 0.1 * 2**i)
            self.assertTrue(full / 2 <= d <= full, (i, d))
        with self.assertRaisesRegex(n.NatsArgumentError, "reconnect_wait_max: expected at least reconnect_wait"):
            Backoff(base=1.0, cap=0.5)
        with self.assertRaisesRegex(n.NatsArgumentError, "reconnect_buffer_msgs: expected an integer >= 0, found -1"):
            OutageBuffer(max_msgs=-1)
        with self.assertRaisesRegex(n.NatsArgumentError, "url: expected scheme nats:// or tls://, found 'http'"):
            n.NatsClient("http://127.0.0.1:1")


class TapAcrossRestart(unittest.TestCase):
    """The tap with a gate during an outage: the failure mode at once, the frame held, never past the deadline."""

    MODEL, HOOK = "test-llm", "blocks.1.hook_resid_post"

    def setUp(self):
        support.require_torch()
        self.server = support.NatsServer()
        self.sidecar = n.NatsClient(self.server.url, name="sidecar", reconnect_wait=0.002, reconnect_wait_max=0.005)
        self.frames = support.Recorder()
        self.sidecar.subscribe("latentwatch.tap.v1.>", self.frames)
        self.sidecar.flush()

    def tearDown(self):
        self.sidecar.close()
        self.server.stop()

    def run_gated(self, mode):
        tap = LatentwatchTap(self.server.url, self.MODEL, self.HOOK, gate={"deadline_ms": 300, "on_timeout": mode},
                             nats_options=dict(reconnect_wait=0.2, reconnect_wait_max=0.2, reconnect_jitter=0))
        try:
            layer = torch.nn.Identity()
            tap.attach(layer)
            self.server.kill()
            support.wait_until(lambda: not tap.nc.connected)
            with tap.requests([f"r-{mode}"], input_ids=torch.tensor([[1, 2]])):
                t0 = time.monotonic()
                layer(torch.ones(1, 2, 3))
                waited = time.monotonic() - t0
                aborted = tap.aborted(f"r-{mode}")
            self.server.start()
            self.assertTrue(self.sidecar.wait_connected(5))
            self.sidecar.flush()
            self.assertTrue(tap.nc.wait_connected(5))
            tap.nc.flush()
            support.wait_until(lambda: len(self.frames.msgs) >= 2, what="the held frame and the end marker")
            return tap.stats, waited, aborted
        finally:
            tap.close()

    def test_fail_open_and_fail_closed_during_an_outage(self):
        s, waited, aborted = self.run_gated("open")
        self.assertLess(waited, 0.3)  # no verdict can come: not even the deadline is waited
        self.assertFalse(aborted)
        self.assertEqual((s["gate_offline"], s["fail_open"], s["fail_closed"], s["gate_frames"]), (1, 1, 0, 0))
        self.assertEqual((s["nats_buffered"], s["nats_replayed"], s["nats_dropped"]), (2, 2, 0))
        self.frames.msgs.clear()
        s, waited, aborted = self.run_gated("closed")
        self.assertLess(waited, 0.3)
        self.assertTrue(aborted)
        self.assertEqual((s["gate_offline"], s["fail_closed"]), (1, 1))
        seqs = [int(m.headers["Lw-Seq"]) for m in self.frames.msgs]
        self.assertEqual(seqs, [0, 1])  # the gated frame was held and sent, then the end marker


if __name__ == "__main__":
    unittest.main()
