"""LatentwatchTap on small hand-made modules, with a real nats-server; the test plays the sidecar."""

import json
import time
import unittest

import support
from latentwatch_tap import LatentwatchTap, TapError
from latentwatch_tap.nats import NatsClient
from latentwatch_tap.steer import vector_to_base64 as b64

try:
    import torch
except ImportError:  # the tests below fail with the install hint (support.require_torch)
    torch = None

MODEL, HOOK = "test-llm", "blocks.1.hook_resid_post"
FRAMES = "latentwatch.tap.v1.test-llm.blocks_1_hook_resid_post.0"
STEER = "latentwatch.steer.v1.test-llm.blocks_1_hook_resid_post.0"
ACKS = "latentwatch.steer-ack.v1.test-llm.blocks_1_hook_resid_post"


if torch is not None:

    class TupleLayer(torch.nn.Module):
        """Like a Hugging Face decoder layer: returns (hidden_states, extra)."""

        def forward(self, x):
            return (x + 0.0, None)

    class HookPoint(torch.nn.Module):
        """Like a TransformerLens HookPoint: returns the tensor."""

        def forward(self, x):
            return x + 0.0

    class VllmLayer(torch.nn.Module):
        """Like a vLLM decoder layer: returns (hidden_states, residual); the stream is their sum."""

        def forward(self, h, r):
            return (h + 0.0, r + 0.0)


def cmd(cid, rid, op, from_position, d_model=3, until=None, expires=10_000, **kw):
    o = {
        "v": 1, "id": cid, "request_id": rid, "model": MODEL, "hook": HOOK, "d_model": d_model,
        "from_position": from_position, "until_position": until, "issued_at_ms": 1000,
        "expires_at_ms": expires, "monitor": "demo", "rule": "r", "op": op,
    }
    o.update(kw)
    return o


ADD = {"kind": "add", "scale": 2, "vector": b64([1.0, 0.0, -1.0])}


class TapTest(unittest.TestCase):
    def setUp(self):
        support.require_torch()
        self.server = support.NatsServer()
        self.sidecar = NatsClient(self.server.url, name="sidecar")
        self.frames = support.Recorder()
        self.acks = support.Recorder()
        self.frames_sub = self.sidecar.subscribe("latentwatch.tap.v1.>", self.frames)
        self.sidecar.subscribe("latentwatch.steer-ack.v1.>", self.acks)
        self.sidecar.flush()
        self.taps = []

    def tearDown(self):
        for t in self.taps:
            t.close()
        self.sidecar.close()
        self.server.stop()

    def tap(self, **kw):
        kw.setdefault("clock", lambda: 2000.0)
        kw.setdefault("name", "tap-1")
        t = LatentwatchTap(self.server.url, MODEL, HOOK, **kw)
        self.taps.append(t)
        return t

    def send(self, tap, *commands):
        before = tap.stats["commands_received"]
        for c in commands:
            self.sidecar.publish(STEER, json.dumps(c))
        self.sidecar.flush()
        support.wait_until(lambda: tap.stats["commands_received"] >= before + len(commands), what="commands received")

    def settle(self, tap, frames=None, acks=None):
        tap.nc.flush()
        if frames is not None:
            support.wait_until(lambda: len(self.frames.msgs) >= frames, what=f"{frames} frames")
        if acks is not None:
            support.wait_until(lambda: len(self.acks.msgs) >= acks, what=f"{acks} acks")

    @staticmethod
    def rows(msg):
        h = msg.headers
        t, d = (int(v) for v in h["Lw-Shape"].split(","))
        vals = support.decode_payload(msg.data, h["Lw-Dtype"])
        return [vals[i * d:(i + 1) * d] for i in range(t)]

    # ------------------------------------------------------------------ mapping

    def test_hf_left_padding_prefill_decode_end(self):
        tap = self.tap()
        layer = TupleLayer()
        tap.attach(layer)
        x = torch.tensor([[[0.0, 0.0], [1.0, -1.0], [2.0, -2.0]], [[10.0, -10.0], [11.0, -11.0], [12.0, -12.0]]])
        mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
        ids = torch.tensor([[0, 11, 12], [20, 21, 22]])
        crit = tap.stopping_criteria()
        with tap.requests(["req-a", "req-b"], attention_mask=mask, input_ids=ids, eos_token_id=99,
                          decode_token=lambda i: f"<{i}>", tenant="acme", meta={"app": "bot"}):
            layer(x)
            self.assertEqual(crit(torch.tensor([[0, 11, 12, 13], [20, 21, 22, 23]]), None).tolist(), [False, False])
            layer(torch.tensor([[[3.0, -3.0]], [[13.0, -13.0]]]))
            self.assertEqual(crit(torch.tensor([[0, 11, 12, 13, 99], [20, 21, 22, 23, 24]]), None).tolist(),
                             [False, False])
            layer(torch.tensor([[[4.0, -4.0]], [[14.0, -14.0]]]))  # req-a produced EOS: only req-b
        self.settle(tap, frames=7)
        self.assertEqual({m.subject for m in self.frames.msgs}, {FRAMES})
        got = [(m.headers["Lw-Request-Id"], m.headers["Lw-Pos"], m.headers["Lw-Seq"], m.headers["Lw-Shape"],
                m.headers.get("Lw-Token-Ids"), m.headers.get("Lw-Token-Text"), m.headers.get("Lw-Phase"),
                m.headers.get("Lw-End"), self.rows(m)) for m in self.frames.msgs]
        self.assertEqual(got, [
            ("req-a", "0", "0", "2,2", "11,12", '["<11>","<12>"]', "prefill", None, [[1, -1], [2, -2]]),
            ("req-b", "0", "0", "3,2", "20,21,22", '["<20>","<21>","<22>"]', "prefill", None,
             [[10, -10], [11, -11], [12, -12]]),
            ("req-a", "2", "1", "1,2", "13", '["<13>"]', "decode", None, [[3, -3]]),
            ("req-b", "3", "1", "1,2", "23", '["<23>"]', "decode", None, [[13, -13]]),
            ("req-b", "4", "2", "1,2", "24", '["<24>"]', "decode", None, [[14, -14]]),
            ("req-a", "3", "2", "0,2", None, None, None, "1", []),
            ("req-b", "5", "3", "0,2", None, None, None, "1", []),
        ])
        h = self.frames.msgs[0].headers
        self.assertEqual((h["Lw-Version"], h["Lw-Model"], h["Lw-Hook"], h["Lw-Dtype"]), ("1", MODEL, HOOK, "f32"))
        self.assertEqual((h["Lw-Tenant"], h["Lw-Meta-app"]), ("acme", "bot"))
        self.assertEqual(self.frames.msgs[5].headers["Lw-Tenant"], "acme")  # end markers keep the tenant
        self.assertEqual(tap.stats["frames"], 7)
        self.assertEqual(tap.stats["end_markers"], 2)

    def test_recompute_without_kv_cache(self):
        tap = self.tap()
        hp = HookPoint()
        tap.attach(hp)
        with tap.requests(["r1"], input_ids=[[5, 6]]):
            self.send(tap, cmd("c1", "r1", ADD, 1))
            hp(torch.zeros(1, 2, 3))
            tap.feed_tokens([7])
            out = hp(torch.zeros(1, 3, 3))  # the whole sequence again: positions 0, 1, 2
            self.assertEqual(out.tolist(), [[[0, 0, 0], [2, 0, -2], [2, 0, -2]]])  # every token steered
            tap.feed_tokens([8])
            hp(torch.ones(1, 4, 3))
        self.settle(tap, frames=4)
        got = [(m.headers["Lw-Pos"], m.headers["Lw-Shape"], m.headers.get("Lw-Token-Ids"), self.rows(m))
               for m in self.frames.msgs]
        self.assertEqual(got, [  # only new positions are published
            ("0", "2,3", "5,6", [[0, 0, 0], [2, 0, -2]]),
            ("2", "1,3", "7", [[2, 0, -2]]),
            ("3", "1,3", "8", [[3, 1, -1]]),
            ("4", "0,3", None, []),
        ])

    def test_batch_size_mismatch_is_skipped(self):
        tap = self.tap()
        hp = HookPoint()
        tap.attach(hp)
        with tap.requests(["r1", "r2"]):
            out = hp(torch.ones(3, 1, 2))  # e.g. num_return_sequences: no guessing
        self.assertEqual(out.tolist(), torch.ones(3, 1, 2).tolist())
        self.assertEqual((tap.stats["skipped_calls"], tap.stats["frames"], tap.stats["hook_errors"]), (1, 0, 0))

    def test_no_mapping_is_a_no_op(self):
        tap = self.tap()
        hp = HookPoint()
        tap.attach(hp)
        out = hp(torch.ones(1, 2, 3))
        self.assertEqual(out.tolist(), torch.ones(1, 2, 3).tolist())
        self.assertEqual(tap.stats["skipped_calls"], 1)
        self.assertEqual(tap.stats["frames"], 0)

    def test_partitions_and_dtype_and_split(self):
        tap = self.tap(partitions=1000, dtype="bf16")
        hp = HookPoint()
        tap.attach(hp)
        # headers of request "a", one-digit pos/seq/shape, bf16, D=3, prefill: 12 + (10+1+4) + (8+8+4)
        # + (7+24+4) + (13+1+4) + (6+1+4) + (6+1+4) + (8+4+4) + (8+3+4) + (8+7+4) = 172; a token is
        # 6 bytes: two tokens are 184 bytes, three 190
        tap.nc.max_payload = 184
        with tap.requests(["a"]):
            hp(torch.tensor([[[1.0, -2.0, 0.5], [3.0, -0.25, 0.0], [0.1, 1.0, 1.0]]]))
        self.settle(tap, frames=3)
        self.assertEqual({m.subject for m in self.frames.msgs},
                         {"latentwatch.tap.v1.test-llm.blocks_1_hook_resid_post.220"})
        m0, m1, end = self.frames.msgs
        self.assertEqual((m0.headers["Lw-Pos"], m0.headers["Lw-Seq"], m0.headers["Lw-Shape"]), ("0", "0", "2,3"))
        self.assertEqual(m0.data, bytes.fromhex("803f00c0003f404080be0000"))
        self.assertEqual((m1.headers["Lw-Pos"], m1.headers["Lw-Seq"], m1.headers["Lw-Phase"]), ("2", "1", "prefill"))
        self.assertEqual(m1.data, bytes.fromhex("cd3d803f803f"))  # 0.1 rounds up to 0x3dcd
        self.assertEqual((end.headers["Lw-Pos"], end.headers["Lw-Seq"], end.headers["Lw-End"]), ("3", "2", "1"))

    def test_flat_token_map_with_summed_residual(self):
        tap = self.tap()
        layer = VllmLayer()
        tap.attach(layer, sum_outputs=True)
        self.send(tap, cmd("c1", "r1", ADD, 1))
        tap.set_token_map([("r1", 0, 5), ("r1", 1, 6), None, ("r2", 4)])
        self.send(tap, cmd("c2", "r1", ADD, 1, expires=10_000))
        h = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [9.0, 9.0, 9.0], [0.0, 1.0, 0.0]])
        r = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [9.0, 9.0, 9.0], [0.0, 1.0, 0.0]])
        out_h, out_r = layer(h, r)
        # r1 position 1: h + r = [2, 2, 3] + 2*[1, 0, -1] = [4, 2, 1]; h becomes [4, 2, 1] - r = [4, 2, 0]
        self.assertEqual(out_h.tolist(), [[1, 1, 1], [4, 2, 0], [9, 9, 9], [0, 1, 0]])
        self.assertEqual(out_r.tolist(), r.tolist())
        tap.end("r1")
        tap.end("r2")
        self.settle(tap, frames=4, acks=1)
        got = [(m.headers["Lw-Request-Id"], m.headers["Lw-Pos"], m.headers.get("Lw-Token-Ids"), self.rows(m))
               for m in self.frames.msgs]
        self.assertEqual(got, [
            ("r1", "0", "5,6", [[2, 1, 1], [4, 2, 1]]),
            ("r2", "4", None, [[0, 2, 0]]),
            ("r1", "2", None, []),
            ("r2", "5", None, []),
        ])
        # the command sent before r1 was mapped is another replica's: ignored, no ack
        self.assertEqual(tap.stats["commands_ignored"], 1)
        self.assertEqual([(a["id"], a["status"], a.get("position")) for a in self.acks.json()],
                         [("c2", "applied", 1)])

    # ------------------------------------------------------------------ steering

    def test_steering_commands_and_acks(self):
        tap = self.tap()
        hp = HookPoint()
        tap.attach(hp)
        cap_later = {"kind": "cap", "max": 0.0, "direction": b64([0.0, 1.0, 0.0])}
        with tap.requests(["r1"], end_on_exit=False):
            self.send(
                tap,
                cmd("c-add", "r1", ADD, 1),
                cmd("c-add", "r1", ADD, 1),  # the same id again: applied once
                cmd("c-width", "r1", {"kind": "add", "scale": 1, "vector": b64([0.0] * 4)}, 1, d_model=4),
                cmd("c-old", "r1", ADD, 1, expires=1500),  # the tap's clock says 2000
                cmd("c-other", "someone-else", ADD, 0),
                cmd("c-cap", "r1", cap_later, 50),
                {"v": 1, "id": "c-bad", "request_id": "r1", "model": MODEL},
            )
            out = hp(torch.tensor([[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]]))
            self.assertEqual(out.tolist(), [[[1, 2, 3], [3, 2, 1]]])  # position 0 untouched, 1 steered
            out = hp(torch.tensor([[[0.0, 0.0, 0.0]]]))  # decode, position 2
            self.assertEqual(out.tolist(), [[[2, 0, -2]]])
        tap.end("r1")
        self.settle(tap, frames=3, acks=5)
        self.assertEqual(self.rows(self.frames.msgs[0]), [[1, 2, 3], [3, 2, 1]])  # frames carry steered values
        self.assertEqual(self.rows(self.frames.msgs[1]), [[2, 0, -2]])
        acks = {a["id"]: a for a in self.acks.json()}
        self.assertEqual(sorted(acks), ["c-add", "c-bad", "c-cap", "c-old", "c-width"])
        self.assertEqual((acks["c-add"]["status"], acks["c-add"]["position"], acks["c-add"]["tap"]), ("applied", 1, "tap-1"))
        self.assertEqual(acks["c-width"]["status"], "rejected")
        self.assertIn("d_model: expected 3 (the hook's width), found 4", acks["c-width"]["reason"])
        self.assertEqual(acks["c-old"]["status"], "expired")
        self.assertEqual(acks["c-bad"]["status"], "rejected")
        self.assertIn('hook: expected a non-empty string of at most 256 characters, found null', acks["c-bad"]["reason"])
        self.assertEqual(acks["c-cap"]["status"], "not_applied")
        self.assertEqual(len(self.acks.msgs), 5)
        s = tap.stats
        self.assertEqual((s["commands_received"], s["commands_applied"], s["commands_rejected"],
                          s["commands_expired"], s["commands_ignored"], s["commands_not_applied"], s["acks"]),
                         (7, 1, 2, 1, 1, 1, 5))

    def test_late_command_for_ended_request(self):
        tap = self.tap()
        hp = HookPoint()
        tap.attach(hp)
        with tap.requests(["r1"]):
            hp(torch.zeros(1, 1, 3))
        self.send(tap, cmd("late", "r1", ADD, 1))
        self.settle(tap, acks=1)
        self.assertEqual(self.acks.json()[0]["status"], "not_applied")

    def test_bf16_model_rounds_back(self):
        tap = self.tap()
        hp = HookPoint()
        tap.attach(hp)
        add = {"kind": "add", "scale": 1, "vector": b64([2.0**-8, 3 * 2.0**-8, 0.0])}
        with tap.requests(["r1"]):
            self.send(tap, cmd("c1", "r1", add, 0))
            out = hp(torch.ones(1, 1, 3, dtype=torch.bfloat16))
        # 1 + 2^-8 is a tie and rounds to even (1); 1 + 3*2^-8 rounds to 1.015625
        self.assertEqual(out.dtype, torch.bfloat16)
        self.assertEqual(out.float().tolist(), [[[1.0, 1.015625, 1.0]]])
        self.settle(tap, frames=2)
        self.assertEqual(self.rows(self.frames.msgs[0]), [[1.0, 1.015625, 1.0]])

    def test_abort_command(self):
        tap = self.tap()
        layer = TupleLayer()
        tap.attach(layer)
        crit = tap.stopping_criteria()
        with tap.requests(["r1", "r2"], input_ids=torch.tensor([[1, 2], [3, 4]])):
            layer(torch.zeros(2, 2, 3))
            self.send(tap, cmd("stop", "r1", {"kind": "abort", "reason": "prompt injection"}, 2))
            self.assertTrue(tap.aborted("r1"))
            self.assertFalse(tap.aborted("r2"))
            self.assertFalse(tap.should_stop())
            self.assertEqual(crit(torch.tensor([[1, 2, 5], [3, 4, 6]]), None).tolist(), [True, False])
            layer(torch.ones(2, 1, 3))  # HF still runs the aborted row: no frame for it
        self.assertTrue(tap.aborted("r1"))  # remembered after the end
        self.settle(tap, frames=5, acks=1)
        self.assertEqual([(m.headers["Lw-Request-Id"], m.headers["Lw-Pos"], m.headers.get("Lw-End"))
                          for m in self.frames.msgs],
                         [("r1", "0", None), ("r2", "0", None), ("r2", "2", None), ("r1", "2", "1"), ("r2", "3", "1")])
        ack = self.acks.json()[0]
        self.assertEqual((ack["id"], ack["status"], ack["position"]), ("stop", "applied", 2))
        self.assertEqual(tap.stats["aborts"], 1)

    def test_abort_waits_for_its_from_position(self):
        tap = self.tap()
        hp = HookPoint()
        tap.attach(hp)
        with tap.requests(["r1"]):
            hp(torch.zeros(1, 2, 3))  # positions 0, 1
            self.send(tap, cmd("later", "r1", {"kind": "abort"}, 4))
            self.assertFalse(tap.aborted("r1"))  # position 2 may still be generated
            hp(torch.zeros(1, 1, 3))  # position 2
            self.assertFalse(tap.aborted("r1"))
            hp(torch.zeros(1, 1, 3))  # position 3: the next one is 4
            self.assertTrue(tap.aborted("r1"))
        self.settle(tap, acks=1)
        ack = self.acks.json()[0]
        self.assertEqual((ack["id"], ack["status"], ack["position"]), ("later", "applied", 4))

    def test_open_requests_are_bounded(self):
        tap = self.tap(max_open_requests=2)
        for rid in ("a", "b", "c"):
            tap.begin(rid)
        self.assertEqual(tap.stats["requests_evicted"], 1)
        self.send(tap, cmd("x", "a", ADD, 0))  # "a" was ended: acknowledged not_applied
        self.settle(tap, acks=1)
        self.assertEqual(self.acks.json()[0]["status"], "not_applied")

    # ------------------------------------------------------------------ gating

    def sidecar_answers(self, verdict_for):
        """Answer every gated frame with verdict_for(headers) (a dict, or None for no answer)."""

        def on_frame(msg):
            if msg.reply:
                v = verdict_for(msg.headers)
                if v is not None:
                    self.sidecar.publish(msg.reply, json.dumps(v))

        self.sidecar.subscribe("latentwatch.tap.v1.>", on_frame)
        self.sidecar.flush()

    def test_gate_steer_verdict_applies_from_next_step(self):
        def verdict(h):
            rid, seq, pos, t = h["Lw-Request-Id"], int(h["Lw-Seq"]), int(h["Lw-Pos"]), int(h["Lw-Shape"].split(",")[0])
            if seq == 0:
                return {"v": 1, "request_id": rid, "seq": seq, "verdict": "steer",
                        "commands": [cmd("g1", rid, ADD, pos + t)]}
            return {"v": 1, "request_id": rid, "seq": seq, "verdict": "continue", "commands": []}

        self.sidecar_answers(verdict)
        tap = self.tap(gate={"deadline_ms": 2000, "on_timeout": "closed"})
        hp = HookPoint()
        tap.attach(hp)
        with tap.requests(["r1"]):
            out = hp(torch.ones(1, 2, 3))
            self.assertEqual(out.tolist(), [[[1, 1, 1], [1, 1, 1]]])  # the verdict comes after this step
            out = hp(torch.ones(1, 1, 3))
            self.assertEqual(out.tolist(), [[[3, 1, -1]]])  # position 2 steered
            self.assertFalse(tap.aborted("r1"))
        self.settle(tap, frames=3, acks=1)
        self.assertEqual([m.reply is not None for m in self.frames.msgs], [True, True, False])  # end not gated
        self.assertEqual(self.rows(self.frames.msgs[1]), [[3, 1, -1]])
        ack = self.acks.json()[0]
        self.assertEqual((ack["id"], ack["status"], ack["position"]), ("g1", "applied", 2))
        s = tap.stats
        self.assertEqual((s["gate_waits"], s["gate_frames"], s["gate_verdicts"], s["gate_timeouts"],
                          s["fail_open"], s["fail_closed"]), (2, 2, 2, 0, 0, 0))
        self.assertGreater(s["gate_wait_ms_total"], 0)
        self.assertLess(s["gate_wait_ms_max"], 2000)

    def test_gate_abort_verdict(self):
        self.sidecar_answers(lambda h: {
            "v": 1, "request_id": h["Lw-Request-Id"], "seq": int(h["Lw-Seq"]), "verdict": "abort",
            "commands": [cmd("a1", h["Lw-Request-Id"], {"kind": "abort"}, 1)],
        })
        tap = self.tap(gate={"deadline_ms": 2000, "on_timeout": "open"})
        hp = HookPoint()
        tap.attach(hp)
        with tap.requests(["r1"]):
            hp(torch.ones(1, 1, 3))
            self.assertTrue(tap.aborted("r1"))
            self.assertTrue(tap.should_stop())
        self.settle(tap, acks=1)
        ack = self.acks.json()[0]
        self.assertEqual((ack["id"], ack["status"], ack["position"]), ("a1", "applied", 1))

    def test_gate_verdict_for_another_frame_is_a_gate_error(self):
        self.sidecar_answers(lambda h: {
            "v": 1, "request_id": h["Lw-Request-Id"], "seq": int(h["Lw-Seq"]) + 7, "verdict": "continue",
            "commands": [],
        })
        tap = self.tap(gate={"deadline_ms": 2000, "on_timeout": "closed"})
        hp = HookPoint()
        tap.attach(hp)
        with tap.requests(["r1"]):
            hp(torch.ones(1, 1, 3))
            self.assertTrue(tap.aborted("r1"))
        self.assertEqual((tap.stats["gate_errors"], tap.stats["fail_closed"]), (1, 1))

    def no_sidecar(self):
        self.frames_sub.unsubscribe()
        self.sidecar.flush()

    def test_gate_no_responders_fail_open(self):
        self.no_sidecar()
        tap = self.tap(gate={"deadline_ms": 2000, "on_timeout": "open"})
        hp = HookPoint()
        tap.attach(hp)
        t0 = time.monotonic()
        with tap.requests(["r1"]):
            hp(torch.ones(1, 2, 3))
            self.assertFalse(tap.aborted("r1"))
        self.assertLess(time.monotonic() - t0, 1.5)  # NATS answers at once: no wait for the deadline
        s = tap.stats
        self.assertEqual((s["gate_no_responders"], s["gate_timeouts"], s["fail_open"], s["fail_closed"]), (1, 1, 1, 0))

    def test_gate_no_responders_fail_closed(self):
        self.no_sidecar()
        tap = self.tap(gate={"deadline_ms": 2000, "on_timeout": "closed"})
        hp = HookPoint()
        tap.attach(hp)
        crit = tap.stopping_criteria()
        with tap.requests(["r1"]):
            hp(torch.ones(1, 2, 3))
            self.assertTrue(tap.aborted("r1"))
            self.assertEqual(crit(torch.tensor([[1, 2, 3]]), None).tolist(), [True])
        self.assertEqual((tap.stats["fail_closed"], tap.stats["aborts"]), (1, 1))
        self.assertEqual((tap.stats["frames"], tap.stats["end_markers"]), (2, 1))  # the end marker still goes out

    def test_gate_timeout(self):
        self.sidecar_answers(lambda h: None)  # listens, never answers
        tap = self.tap(gate={"deadline_ms": 60, "on_timeout": "open"})
        hp = HookPoint()
        tap.attach(hp)
        with tap.requests(["r1", "r2"]):
            hp(torch.ones(2, 1, 3))  # one wait for both requests
        s = tap.stats
        self.assertEqual((s["gate_waits"], s["gate_frames"], s["gate_timeouts"], s["fail_open"]), (1, 2, 2, 2))
        self.assertGreaterEqual(s["gate_wait_ms_max"], 55)
        self.assertLess(s["gate_wait_ms_max"], 1000)

    def test_gate_error_verdict_fails_closed(self):
        self.sidecar_answers(lambda h: {"v": 1, "request_id": h["Lw-Request-Id"], "seq": int(h["Lw-Seq"]),
                                        "verdict": "error", "commands": [], "reason": "rejected: bad frame"})
        tap = self.tap(gate={"deadline_ms": 2000, "on_timeout": "closed"})
        hp = HookPoint()
        tap.attach(hp)
        with tap.requests(["r1"]):
            hp(torch.ones(1, 1, 3))
            self.assertTrue(tap.aborted("r1"))
        self.assertEqual((tap.stats["gate_errors"], tap.stats["fail_closed"]), (1, 1))

    # ------------------------------------------------------------------ arguments

    def test_argument_errors(self):
        with self.assertRaisesRegex(TapError, "gate.on_timeout: expected 'open' or 'closed', found 'maybe'"):
            self.tap(gate={"deadline_ms": 5, "on_timeout": "maybe"})
        with self.assertRaisesRegex(TypeError, "Lw-Dtype: expected one of f32, f16, bf16"):
            self.tap(dtype="f64")
        tap = self.tap()
        with self.assertRaisesRegex(TapError, r"attention_mask: expected 2 rows \(one per request\), found 1"):
            with tap.requests(["a", "b"], attention_mask=[[1, 1]]):
                pass
        with self.assertRaisesRegex(TapError, "attach: expected a torch.nn.Module, found int"):
            tap.attach(3)


class DeployedPermissions(unittest.TestCase):
    """The tap as user `tap` of deploy/nats/accounts.conf, the sidecar as user `latentwatch`."""

    ACCOUNTS = support.os.path.join(support.HERE, "..", "..", "..", "nats", "accounts.conf")
    PASSWORDS = {
        "LATENTWATCH_NATS_PASSWORD": "sidecar-pw",
        "LATENTWATCH_TAP_PASSWORD": "tap-pw",
        "LATENTWATCH_SOC_PASSWORD": "soc-pw",
        "LATENTWATCH_SYS_PASSWORD": "sys-pw",
    }

    def setUp(self):
        support.require_torch()
        self.server = support.NatsServer(config_path=self.ACCOUNTS, env=self.PASSWORDS)
        self.sidecar = NatsClient(self.server.url, user="latentwatch", password="sidecar-pw")
        self.tap = None

    def tearDown(self):
        if self.tap is not None:
            self.tap.close()
        self.sidecar.close()
        self.server.stop()

    def test_tap_user_can_publish_gate_and_ack_but_not_steer(self):
        acks = support.Recorder()
        self.sidecar.subscribe("latentwatch.steer-ack.v1.>", acks)

        def on_frame(msg):
            h = msg.headers
            if msg.reply and h["Lw-Seq"] == "0":
                self.sidecar.publish(msg.reply, json.dumps({
                    "v": 1, "request_id": h["Lw-Request-Id"], "seq": 0, "verdict": "steer",
                    "commands": [cmd("g1", h["Lw-Request-Id"], ADD, 1)],
                }))
            elif msg.reply:
                self.sidecar.publish(msg.reply, json.dumps({
                    "v": 1, "request_id": h["Lw-Request-Id"], "seq": int(h["Lw-Seq"]), "verdict": "continue",
                    "commands": [],
                }))

        self.sidecar.subscribe("latentwatch.tap.>", on_frame)
        self.sidecar.flush()
        self.tap = LatentwatchTap(self.server.url, MODEL, HOOK, user="tap", password="tap-pw",
                                  gate={"deadline_ms": 2000, "on_timeout": "closed"}, clock=lambda: 2000.0)
        hp = HookPoint()
        self.tap.attach(hp)
        with self.tap.requests(["r1"]):
            hp(torch.zeros(1, 1, 3))
            out = hp(torch.zeros(1, 1, 3))
            self.assertEqual(out.tolist(), [[[2, 0, -2]]])
            self.assertFalse(self.tap.aborted("r1"))
        self.tap.nc.flush()
        support.wait_until(lambda: len(acks.msgs) == 1, what="the applied ack")
        self.assertEqual(self.tap.stats["nats_errors"], 0)
        # a tap cannot steer: the server refuses, and the tap counts the -ERR
        self.tap.nc.publish(STEER, json.dumps(cmd("forged", "r1", ADD, 0)))
        self.tap.nc.flush()
        support.wait_until(lambda: self.tap.stats["nats_errors"] == 1, what="a Permissions Violation")
        self.assertIn("Permissions Violation", self.tap.nc.last_error)


if __name__ == "__main__":
    unittest.main()
