"""Print frames made by the Python encoder as JSON, for the cross-language check in python_tap_test.ts.

Output: a JSON array of {"case", "subject", "headers", "payload" (base64)}. Inputs are fixed here
and repeated, as known values, in the Deno test that decodes them with src/core/frame/decode.ts.
"""

import base64
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from latentwatch_tap import frame as fr  # noqa: E402

MODEL, HOOK = "google/gemma-2-2b", "blocks.6.hook_resid_post"
VALUES = [1.0, -2.0, 0.5, 3.0, -0.25, 0.0, 0.1, 1e-3, -7.5]  # 3 tokens of 3
IDS = [318, 257, 7]
TEXT = ["Hello", " wörld", "😀\n\x7f"]


def main() -> None:
    out = []
    for dtype in ("f32", "bf16", "f16"):
        rid = f"req-{dtype}"
        # a max payload that holds the largest single token, and no two: three frames
        one = max(
            fr.header_wire_bytes(fr.frame_headers(
                MODEL, HOOK, rid, 5 + i, i, dtype, 1, 3, token_ids=[IDS[i]], token_text=[TEXT[i]],
                phase="prefill", tenant="acme", meta={"app": "support-bot"},
            )) + 3 * fr.BYTES_PER_ELEMENT[dtype]
            for i in range(3)
        )
        frames = fr.split_frames(
            MODEL, HOOK, rid, 5, 0, dtype, VALUES, 3, 3, max_payload=one + 2,
            token_ids=IDS, token_text=TEXT, phase="prefill", tenant="acme", meta={"app": "support-bot"},
        )
        end = fr.frame_headers(MODEL, HOOK, rid, 8, len(frames), dtype, 0, 3, end=True)
        frames.append((end, b""))
        subject = fr.tap_subject(MODEL, HOOK, fr.partition_of(rid, 16))
        for headers, payload in frames:
            out.append({
                "case": dtype,
                "subject": subject,
                "headers": headers,
                "payload": base64.b64encode(payload).decode("ascii"),
            })
    try:
        import torch  # the torch path must give the same bytes as the pure Python path
    except ImportError:
        torch = None
    if torch is not None:
        h, p = fr.encode_frame(MODEL, HOOK, "req-torch", 0, 0, "bf16",
                               torch.tensor(VALUES).reshape(3, 3), 3, 3)
        out.append({"case": "torch-bf16", "subject": fr.tap_subject(MODEL, HOOK, 0), "headers": h,
                    "payload": base64.b64encode(p).decode("ascii")})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
