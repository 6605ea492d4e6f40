"""Steering commands: validation with reasons, and each operation's arithmetic on hand-made vectors."""

import json
import unittest

import support
from latentwatch_tap import steer as st

b64 = st.vector_to_base64


def command(**over):
    o = {
        "v": 1,
        "id": "c1",
        "request_id": "r1",
        "model": "m",
        "hook": "h",
        "d_model": 3,
        "from_position": 8,
        "until_position": None,
        "issued_at_ms": 1000,
        "expires_at_ms": 6000,
        "monitor": "demo",
        "rule": "rule-1",
        "op": {"kind": "add", "scale": 2, "vector": b64([1.0, 0.0, -1.0])},
    }
    o.update(over)
    return o


class Base64(unittest.TestCase):
    def test_known_encoding(self):
        self.assertEqual(st.vector_to_base64([1.0]), "AACAPw==")
        self.assertEqual(st.vector_from_base64("AACAPw==", 1), (1.0,))
        # -2.0 = c0000000, 0.5 = 3f000000 -> bytes 00 00 00 c0 00 00 00 3f
        self.assertEqual(st.vector_from_base64("AAAAwAAAAD8=", 2), (-2.0, 0.5))

    def test_rejects(self):
        with self.assertRaisesRegex(st.SteerProtocolError, r"op.vector: expected 3 f32 values \(12 bytes, d_model 3\), found 4 bytes"):
            st.vector_from_base64("AACAPw==", 3, "op.vector")
        with self.assertRaisesRegex(st.SteerProtocolError, "expected valid base64"):
            st.vector_from_base64("AACAPw", 1)  # padding missing
        with self.assertRaisesRegex(st.SteerProtocolError, "expected finite values, found nan at index 0"):
            st.vector_from_base64("AADAfw==", 1)  # 0x7fc00000


class Parse(unittest.TestCase):
    def test_valid_command(self):
        cmd = st.parse_command(json.dumps(command()).encode(), model="m", hook="h", d_model=3)
        self.assertEqual((cmd.id, cmd.request_id, cmd.from_position, cmd.until_position), ("c1", "r1", 8, None))
        self.assertEqual(cmd.op.kind, "add")
        self.assertEqual(cmd.op.scale, 2.0)
        self.assertEqual(cmd.op.vector, (1.0, 0.0, -1.0))
        self.assertEqual((cmd.monitor, cmd.rule, cmd.alert_id), ("demo", "rule-1", None))
        self.assertTrue(cmd.covers(8))
        self.assertFalse(cmd.covers(7))

    def test_until_and_expiry(self):
        cmd = st.parse_command(command(until_position=10))
        self.assertEqual([cmd.covers(p) for p in (7, 8, 9, 10)], [False, True, True, False])
        self.assertFalse(st.is_expired(cmd, 6000))
        self.assertTrue(st.is_expired(cmd, 6001))

    def test_rejections(self):
        unit = b64([0.0, 1.0, 0.0])
        cases = [
            (command(v=2), "v: expected 1, found 2"),
            (command(id=""), "id: expected a non-empty string of at most 256 characters, found the string \"\""),
            (command(id="x" * 257), "id: expected a non-empty string of at most 256 characters"),
            (command(request_id=5), "request_id: expected a non-empty string of at most 256 characters, found a number"),
            (command(model="other"), 'model: expected "m", found "other"'),
            (command(hook="other"), 'hook: expected "h", found "other"'),
            (command(d_model=4), "d_model: expected 3 (the hook's width), found 4"),
            (command(d_model=0), "d_model: expected an integer ≥ 1, found 0"),
            (command(from_position=-1), "from_position: expected an integer ≥ 0, found -1"),
            (command(from_position=1.5), "from_position: expected an integer ≥ 0, found 1.5"),
            (command(until_position=8), "until_position: expected an integer ≥ 9, found 8"),
            (command(expires_at_ms=999), "expires_at_ms: expected an integer ≥ 1000, found 999"),
            (command(issued_at_ms="now"), 'issued_at_ms: expected an integer ≥ 0, found the string "now"'),
            (command(op=None), "op: expected an object with a kind, found null"),
            (command(op={"kind": "boost"}), 'op.kind: expected one of clamp, ablate, add, cap, abort, found the string "boost"'),
            (command(op={"kind": "add", "scale": "x", "vector": b64([0, 0, 0])}), 'op.scale: expected a finite number, found the string "x"'),
            (command(op={"kind": "add", "scale": 1, "vector": b64([0, 0])}), r"op.vector: expected 3 f32 values (12 bytes, d_model 3), found 8 bytes"),
            (command(op={"kind": "cap", "max": 1, "direction": b64([1.0, 1.0, 0.0])}), "op.direction: expected a unit vector (‖direction‖ = 1), found ‖direction‖ = 1.414"),
            (command(op={"kind": "clamp", "value": 0, "latent": {"sae": "s", "index": 0}, "direction": unit}), "op.read: expected an object {w, b, threshold}, found null"),
            (command(op={"kind": "clamp", "value": 0, "read": {"w": unit, "b": 0, "threshold": 0}, "direction": unit}), "op.latent: expected an object {sae, index}, found null"),
            (command(op={"kind": "ablate", "latent": {"sae": "s", "index": -1}, "read": {"w": unit, "b": 0, "threshold": 0}, "direction": unit}), "op.latent.index: expected an integer ≥ 0, found -1"),
            (command(op={"kind": "abort", "reason": 3}), "op.reason: expected a string, found a number"),
            (command(monitor=""), "monitor: expected a non-empty string"),
        ]
        for obj, reason in cases:
            with self.subTest(reason=reason):
                with self.assertRaises(st.SteerProtocolError) as cm:
                    st.parse_command(obj, model="m", hook="h", d_model=3)
                self.assertIn(reason, str(cm.exception))
                self.assertTrue(cm.exception.reason.startswith(cm.exception.field + ": expected "))

    def test_location_in_message(self):
        with self.assertRaises(st.SteerProtocolError) as cm:
            st.parse_command(command(d_model=4), d_model=3)
        self.assertEqual(
            str(cm.exception), "steering (command c1, request r1): d_model: expected 3 (the hook's width), found 4"
        )
        self.assertEqual((cm.exception.field, cm.exception.command_id, cm.exception.request_id), ("d_model", "c1", "r1"))

    def test_not_json(self):
        with self.assertRaisesRegex(st.SteerProtocolError, "payload: expected a UTF-8 JSON steering command"):
            st.parse_command(b"{nope")
        with self.assertRaisesRegex(st.SteerProtocolError, "payload: expected steering command, found an array"):
            st.parse_command(b"[]")

    def test_verdict(self):
        good = command(id="g")
        bad = command(id="b", d_model=4)
        v, rejected = st.parse_verdict(json.dumps(
            {"v": 1, "request_id": "r1", "seq": 3, "verdict": "steer", "commands": [good, bad]}
        ), d_model=3)
        self.assertEqual((v.request_id, v.seq, v.verdict), ("r1", 3, "steer"))
        self.assertEqual([c.id for c in v.commands], ["g"])
        self.assertEqual(rejected[0][0]["id"], "b")
        self.assertIn("d_model: expected 3", str(rejected[0][1]))
        with self.assertRaisesRegex(st.SteerProtocolError, 'verdict: expected one of continue, steer, abort, error, found the string "maybe"'):
            st.parse_verdict(b'{"v":1,"request_id":"r1","seq":0,"verdict":"maybe","commands":[]}')

    def test_ack(self):
        self.assertEqual(
            st.encode_ack("c1", "r1", "applied", position=8, tap="t"),
            b'{"v":1,"id":"c1","request_id":"r1","status":"applied","position":8,"tap":"t"}',
        )
        with self.assertRaisesRegex(ValueError, "ack status: expected one of applied, rejected, expired, not_applied"):
            st.encode_ack("c1", "r1", "done")


class Arithmetic(unittest.TestCase):
    def setUp(self):
        self.torch = support.require_torch()

    def t(self, rows):
        return self.torch.tensor(rows, dtype=self.torch.float32)

    def read(self, w, b, threshold):
        return st.LatentRead(tuple(w), b, threshold)

    def test_add(self):
        x = self.t([[1, 2, 3], [0, 0, 0]])
        changed = st.apply_op(st.SteerOp("add", scale=2.0, vector=(1.0, 0.0, -1.0)), x)
        self.assertEqual(x.tolist(), [[3, 2, 1], [2, 0, -2]])
        self.assertEqual(changed.tolist(), [True, True])

    def test_cap(self):
        x = self.t([[5, 3, 0], [5, 0.5, 0], [0, 1, 0]])
        changed = st.apply_op(st.SteerOp("cap", max=1.0, direction=(0.0, 1.0, 0.0)), x)
        # p = 3 > 1: x - (3 - 1)*d; p = 0.5 and p = 1 are not above the max
        self.assertEqual(x.tolist(), [[5, 1, 0], [5, 0.5, 0], [0, 1, 0]])
        self.assertEqual(changed.tolist(), [True, False, False])

    def test_cap_oblique(self):
        x = self.t([[3, 4]])
        st.apply_op(st.SteerOp("cap", max=1.0, direction=(0.6, 0.8)), x)
        # p = 3*0.6 + 4*0.8 = 5; x - 4*(0.6, 0.8) = (0.6, 0.8)
        self.assertAlmostEqual(x[0, 0].item(), 0.6, places=6)
        self.assertAlmostEqual(x[0, 1].item(), 0.8, places=6)

    def test_clamp(self):
        op = st.SteerOp("clamp", value=5.0, read=self.read([1, 0, 0], -1.0, 0.0), direction=(0.0, 1.0, 0.0),
                        latent=st.LatentRef("s", 0))
        x = self.t([[3, 1, 0], [0.5, 1, 0]])
        st.apply_op(op, x)
        # row 0: pre = 3 - 1 = 2 > 0, a = 2: x + (5 - 2)*d = [3, 4, 0]
        # row 1: pre = -0.5, a = 0: x + 5*d = [0.5, 6, 0]
        self.assertEqual(x.tolist(), [[3, 4, 0], [0.5, 6, 0]])

    def test_clamp_jumprelu_threshold(self):
        op = st.SteerOp("clamp", value=0.0, read=self.read([1, 0, 0], -1.0, 2.5), direction=(0.0, 1.0, 0.0))
        x = self.t([[3, 1, 0], [4, 1, 0]])
        changed = st.apply_op(op, x)
        # row 0: pre = 2 <= 2.5, a = 0, value 0: unchanged; row 1: pre = 3 > 2.5: x - 3*d = [4, -2, 0]
        self.assertEqual(x.tolist(), [[3, 1, 0], [4, -2, 0]])
        self.assertEqual(changed.tolist(), [False, True])

    def test_ablate(self):
        op = st.SteerOp("ablate", read=self.read([1, 0, 0], -1.0, 0.0), direction=(0.0, 1.0, 0.0))
        x = self.t([[3, 1, 0], [0.5, 1, 0]])
        changed = st.apply_op(op, x)
        # row 0: a = 2: x - 2*d = [3, -1, 0]; row 1: a = 0: unchanged
        self.assertEqual(x.tolist(), [[3, -1, 0], [0.5, 1, 0]])
        self.assertEqual(changed.tolist(), [True, False])

    def test_abort_changes_nothing(self):
        x = self.t([[1, 2, 3]])
        self.assertEqual(st.apply_op(st.SteerOp("abort"), x).tolist(), [False])
        self.assertEqual(x.tolist(), [[1, 2, 3]])

    def test_rounds_once_to_f32(self):
        # 1 + 2^-30 is not an f32: adding 2^-30 to 1 stays 1 in f32
        x = self.t([[1.0]])
        st.apply_op(st.SteerOp("add", scale=2.0**-30, vector=(1.0,)), x)
        self.assertEqual(x.tolist(), [[1.0]])
        x = self.t([[1.0]])
        st.apply_op(st.SteerOp("add", scale=2.0**-23, vector=(1.0,)), x)
        self.assertEqual(x.tolist(), [[1.0 + 2.0**-23]])


if __name__ == "__main__":
    unittest.main()
