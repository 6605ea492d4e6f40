"""Frame v1 encoding, against hand-computed values (docs/frame-format.md)."""

import unittest

import support  # noqa: F401  (puts the package on sys.path)
from latentwatch_tap import frame as fr

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class SubjectsAndPartitions(unittest.TestCase):
    def test_fnv1a_vectors(self):
        self.assertEqual(fr.fnv1a32(b""), 0x811C9DC5)
        self.assertEqual(fr.fnv1a32(b"a"), 0xE40C292C)
        self.assertEqual(fr.fnv1a32(b"foobar"), 0xBF9CF968)

    def test_partition_of(self):
        # 0xe40c292c = 3826002220
        self.assertEqual(fr.partition_of("a", 1000), 220)
        self.assertEqual(fr.partition_of("a", 1), 0)
        # 0xbf9cf968 = 3214735720
        self.assertEqual(fr.partition_of("foobar", 7), 3214735720 % 7)
        self.assertEqual(fr.partition_of("foobar", 7), 0)  # 3214735720 = 7 * 459247960
        self.assertEqual(fr.partition_of("foobar", 1000), 720)

    def test_partition_of_rejects(self):
        with self.assertRaisesRegex(ValueError, "partitions: expected a positive integer, found 0"):
            fr.partition_of("a", 0)

    def test_subjects(self):
        self.assertEqual(
            fr.tap_subject("google/gemma-2-2b", "blocks.6.hook_resid_post", 3),
            "latentwatch.tap.v1.google_gemma-2-2b.blocks_6_hook_resid_post.3",
        )
        self.assertEqual(fr.subject_token("modèle"), "mod_le")
        self.assertEqual(fr.subject_token("a b*>"), "a_b__")
        self.assertEqual(
            fr.steer_subject_filter("gpt2", "blocks.6.hook_resid_post"),
            "latentwatch.steer.v1.gpt2.blocks_6_hook_resid_post.*",
        )
        self.assertEqual(
            fr.steer_ack_subject("gpt2", "blocks.6.hook_resid_post"),
            "latentwatch.steer-ack.v1.gpt2.blocks_6_hook_resid_post",
        )


class Payload(unittest.TestCase):
    def test_bf16_round_to_nearest_even(self):
        self.assertEqual(fr.f32_to_bf16_bits(1 + 2**-8), 0x3F80)  # tie, rounds to even (down)
        self.assertEqual(fr.f32_to_bf16_bits(1 + 3 * 2**-8), 0x3F82)  # tie, rounds to even (up)
        self.assertEqual(fr.f32_to_bf16_bits(0.1), 0x3DCD)  # 0x3dcccccd rounds up
        self.assertEqual(fr.f32_to_bf16_bits(1 + 2**-9), 0x3F80)  # below half: down
        self.assertEqual(fr.f32_to_bf16_bits(-2.0), 0xC000)
        self.assertEqual(fr.f32_to_bf16_bits(0.0), 0x0000)

    def test_bf16_payload(self):
        p = fr.encode_payload([1, -2, 0.5, 3, -0.25, 0], "bf16")
        self.assertEqual(p, bytes.fromhex("803f00c0003f404080be0000"))

    def test_f32_payload(self):
        self.assertEqual(fr.encode_payload([1.0, -2.0], "f32"), bytes.fromhex("0000803f000000c0"))

    def test_f16_payload(self):
        # 1 = 0x3c00, -2 = 0xc000, 65504 = 0x7bff, 1+2^-11 is a tie -> 0x3c00, 1+3*2^-11 -> 0x3c02
        p = fr.encode_payload([1.0, -2.0, 65504.0, 1 + 2**-11, 1 + 3 * 2**-11], "f16")
        self.assertEqual(p, bytes.fromhex("003c00c0ff7b003c023c"))

    def test_non_finite_rejected(self):
        with self.assertRaisesRegex(fr.FrameError, r"payload: expected finite values, found nan at token 1 \(position 8\), element 0"):
            fr.encode_payload([1.0, 2.0, float("nan"), 0.0], "f32", d_model=2, position=7)
        with self.assertRaisesRegex(fr.FrameError, "overflows f16"):
            fr.encode_payload([70000.0], "f16")

    def test_torch_matches(self):
        torch = support.require_torch()
        t = torch.tensor([[1, -2, 0.5], [3, -0.25, 0]], dtype=torch.float32)
        self.assertEqual(fr.encode_payload(t, "bf16"), bytes.fromhex("803f00c0003f404080be0000"))
        t2 = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, 0.1])
        self.assertEqual(fr.encode_payload(t2, "bf16"), bytes.fromhex("803f823fcd3d"))
        t3 = torch.tensor([1.0, -2.0, 65504.0, 1 + 2**-11, 1 + 3 * 2**-11])
        self.assertEqual(fr.encode_payload(t3, "f16"), bytes.fromhex("003c00c0ff7b003c023c"))
        self.assertEqual(fr.encode_payload(torch.tensor([1.0, -2.0]), "f32"), bytes.fromhex("0000803f000000c0"))
        with self.assertRaisesRegex(fr.FrameError, "found inf at token 0"):
            fr.encode_payload(torch.tensor([float("inf")]), "bf16")


class Headers(unittest.TestCase):
    def test_worked_example(self):
        headers, payload = fr.encode_frame(
            "gpt2", "blocks.6.hook_resid_post", "req-42", 7, 0, "bf16",
            [1, -2, 0.5, 3, -0.25, 0], 2, 3,
            token_ids=[318, 257], token_text=["Hello", " wörld"], phase="prefill", traceparent=TRACEPARENT,
        )
        self.assertEqual(
            list(headers.items()),
            [
                ("Lw-Version", "1"),
                ("Lw-Model", "gpt2"),
                ("Lw-Hook", "blocks.6.hook_resid_post"),
                ("Lw-Request-Id", "req-42"),
                ("Lw-Pos", "7"),
                ("Lw-Seq", "0"),
                ("Lw-Dtype", "bf16"),
                ("Lw-Shape", "2,3"),
                ("Lw-Token-Ids", "318,257"),
                ("Lw-Token-Text", '["Hello"," w\\u00f6rld"]'),
                ("Lw-Phase", "prefill"),
                ("traceparent", TRACEPARENT),
            ],
        )
        self.assertEqual(payload.hex(" "), "80 3f 00 c0 00 3f 40 40 80 be 00 00")
        self.assertEqual(fr.header_wire_bytes(headers), 306)  # as the doc says
        self.assertEqual(fr.header_wire_bytes({"Lw-Version": "1"}), 27)

    def test_end_marker(self):
        h = fr.frame_headers("gpt2", "blocks.6.hook_resid_post", "req-42", 9, 1, "bf16", 0, 3, end=True)
        self.assertEqual(h["Lw-Shape"], "0,3")
        self.assertEqual(h["Lw-End"], "1")
        self.assertEqual(list(h)[-1], "Lw-End")

    def test_token_text_escapes(self):
        self.assertEqual(fr.ascii_json(["😀"]), '["\\ud83d\\ude00"]')
        self.assertEqual(fr.ascii_json(["a\x7fb", "\n"]), '["a\\u007fb","\\n"]')
        self.assertEqual(fr.ascii_json(['"q"']), '["\\"q\\""]')

    def test_tenant_and_meta(self):
        h = fr.frame_headers("m", "h", "r", 0, 0, "f32", 1, 2, tenant="acme", meta={"app": "support-bot"})
        self.assertEqual(h["Lw-Tenant"], "acme")
        self.assertEqual(h["Lw-Meta-app"], "support-bot")

    def test_rejections_name_field_expected_found(self):
        cases = [
            (dict(request_id=""), r"frame: Lw-Request-Id: expected a non-empty printable name .*found \"\" \(empty\)"),
            (dict(model=" gpt2"), r"Lw-Model: expected .* \(has leading or trailing whitespace\)"),
            (dict(hook="a\nb"), r"Lw-Hook: expected .* \(contains a control character\)"),
            (dict(position=-1), r"frame \(request r\): Lw-Pos: expected a non-negative integer, found -1"),
            (dict(dtype="f64"), r"Lw-Dtype: expected one of f32, f16, bf16, found \"f64\""),
            (dict(token_ids=[1]), r"Lw-Token-Ids: expected 2 token ids \(one per token\), found 1"),
            (dict(phase="warmup"), r"Lw-Phase: expected prefill or decode, found \"warmup\""),
            (dict(meta={"App": "x"}), r"Lw-Meta-App: expected a metadata key of \[a-z0-9_-\]\+"),
            (dict(traceparent="00-00000000000000000000000000000000-00f067aa0ba902b7-01"), r"traceparent: expected a W3C"),
        ]
        base = dict(model="m", hook="h", request_id="r", position=0, seq=0, dtype="f32", tokens=2, d_model=3)
        for override, pattern in cases:
            with self.subTest(override=override):
                with self.assertRaisesRegex(fr.FrameError, pattern):
                    fr.frame_headers(**{**base, **override})
        with self.assertRaisesRegex(fr.FrameError, r"frame \(request r\): d_model: expected an integer >= 1, found 0"):
            fr.frame_headers(**{**base, "d_model": 0})


class Splitting(unittest.TestCase):
    # Headers of model "m", hook "h", request "r", one-digit pos/seq/tokens, f32, D=3:
    # 12 + (10+1+4) + (8+1+4) + (7+1+4) + (13+1+4) + (6+1+4) + (6+1+4) + (8+3+4) + (8+3+4) = 122 bytes;
    # one token is 3 * 4 = 12 bytes.
    def test_split_by_tokens(self):
        values = [float(i) for i in range(15)]  # 5 tokens of 3
        frames = fr.split_frames("m", "h", "r", 0, 0, "f32", values, 5, 3, max_payload=122 + 24)
        self.assertEqual([(h["Lw-Pos"], h["Lw-Seq"], h["Lw-Shape"]) for h, _ in frames],
                         [("0", "0", "2,3"), ("2", "1", "2,3"), ("4", "2", "1,3")])
        self.assertEqual(fr.header_wire_bytes(frames[0][0]), 122)
        self.assertEqual(support.decode_payload(frames[1][1], "f32"), [6.0, 7.0, 8.0, 9.0, 10.0, 11.0])

    def test_split_slices_token_ids_and_continues_seq(self):
        values = [0.0] * 9
        frames = fr.split_frames("m", "h", "r", 10, 4, "f32", values, 3, 3, max_payload=10_000,
                                 token_ids=[5, 6, 7])
        self.assertEqual(len(frames), 1)
        self.assertEqual(frames[0][0]["Lw-Token-Ids"], "5,6,7")
        self.assertEqual(frames[0][0]["Lw-Seq"], "4")
        # "Lw-Token-Ids: 5" costs 12 + 1 + 4 = 17 bytes: one token is 122 + 17 + 12 = 151 bytes,
        # two are 122 + 19 + 24 = 165
        frames = fr.split_frames("m", "h", "r", 0, 0, "f32", values, 3, 3, max_payload=164,
                                 token_ids=[5, 6, 7])
        self.assertEqual([h["Lw-Token-Ids"] for h, _ in frames], ["5", "6", "7"])

    def test_one_token_too_large(self):
        with self.assertRaises(fr.FrameTooLargeError) as cm:
            fr.split_frames("m", "h", "r", 0, 0, "f32", [0.0] * 6, 2, 3, max_payload=133)
        self.assertIn("found 134 bytes for one token (headers 122 + payload 12)", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
