import assert from "node:assert/strict";
import { decodeFrame } from "./decode.ts";
import { encodeFrame, frameHeaders, framePayload, headerWireBytes } from "./encode.ts";
import { FrameError } from "./format.ts";
import { BF16_PAYLOAD, META, SUBJ, throwsFrame } from "./_test_utils.ts";

Deno.test("frame: encoder writes exactly the v1 headers and little-endian payload", () => {
  const { headers, payload } = encodeFrame(
    { ...META, tokenIds: [318, 257], phase: "prefill" },
    new Float32Array([1, -2, 0.5, 3, -0.25, 0]),
    2,
    3,
  );
  assert.deepEqual(headers, {
    "Lw-Version": "1",
    "Lw-Model": "gpt2",
    "Lw-Hook": "blocks.6.hook_resid_post",
    "Lw-Request-Id": "req-42",
    "Lw-Pos": "7",
    "Lw-Seq": "0",
    "Lw-Dtype": "bf16",
    "Lw-Shape": "2,3",
    "Lw-Token-Ids": "318,257",
    "Lw-Phase": "prefill",
  });
  assert.deepEqual([...payload], [...BF16_PAYLOAD]);
});

Deno.test("frame: encoder escapes token text to ASCII JSON that survives as a header", () => {
  const text = ["Hello", " wörld", "😀", "a\nb", 'q"\\', "\u007f"];
  const h = frameHeaders(
    { ...META, tokenText: text, endOfRequest: true },
    6,
    1,
  );
  assert.equal(
    h["Lw-Token-Text"],
    String
      .raw`["Hello"," w\u00f6rld","\ud83d\ude00","a\nb","q\"\\","\u007f"]`,
  );
  assert.equal(h["Lw-End"], "1");
  assert.ok(/^[\x20-\x7e]*$/.test(h["Lw-Token-Text"]));
  const { headers, payload } = encodeFrame(
    { ...META, dtype: "f32", tokenText: text },
    new Float32Array(6),
    6,
    1,
  );
  assert.deepEqual(decodeFrame(SUBJ, headers, payload).tokenText, text);
});

Deno.test("frame: encoder validates its input", () => {
  const data = new Float32Array([1, 2, 3, 4, 5, 6]);
  throwsFrame(() => encodeFrame(META, data, 2, 2), "payload", /2·2 = 4 f32 values, found 6/);
  throwsFrame(
    () => encodeFrame({ ...META, tokenIds: [1] }, data, 2, 3),
    "Lw-Token-Ids",
    /2 token ids.*found 1/,
  );
  throwsFrame(
    () => encodeFrame({ ...META, requestId: "r1 " }, data, 2, 3),
    "Lw-Request-Id",
    /whitespace/,
  );
  throwsFrame(
    () => encodeFrame({ ...META, traceparent: "nope" }, data, 2, 3),
    "traceparent",
    /W3C/,
  );
  throwsFrame(() => encodeFrame(META, data, 2.5, 3), "tokens", /non-negative integer/);
  throwsFrame(() => encodeFrame(META, new Float32Array(0), 0, 0), "dModel", /≥ 1/);
  const nan = new Float32Array([1, 2, 3, 4, NaN, 6]);
  throwsFrame(
    () => encodeFrame({ ...META, dtype: "f32" }, nan, 2, 3),
    "payload",
    /found NaN at token 1 \(position 8\), element 1/,
  );
  // 70000 > 65504 (largest f16) rounds to Infinity
  const big = new Float32Array([1, 70000]);
  throwsFrame(
    () => encodeFrame({ ...META, dtype: "f16" }, big, 1, 2),
    "payload",
    /found 70000 \(overflows f16 to ±Infinity\) at token 0 \(position 7\), element 1/,
  );
  // f32 3.4e38 = 0x7f7fc99e; the largest bf16 is 0x7f7f (about 3.39e38), so it rounds up to 0x7f80 = Infinity
  throwsFrame(
    () => encodeFrame(META, new Float32Array([3.4e38]), 1, 1),
    "payload",
    /overflows bf16/,
  );
});

Deno.test("frame: f16 and bf16 encoding rounds to nearest even", () => {
  // f16 around 1: ulp 2^-10. 1 + 2^-11 ties to 1 (even); 1 + 3·2^-11 ties to 1 + 2^-9.
  // bf16 around 1: ulp 2^-7. 1 + 2^-8 ties to 1; 1 + 3·2^-8 ties to 1 + 2^-6.
  // 0.1: f16 0x2e66 = 0.0999755859375; bf16 0x3dcd = 0.10009765625
  const values = new Float32Array([1 + 2 ** -11, 1 + 3 * 2 ** -11, 0.1]);
  const f16 = encodeFrame({ ...META, dtype: "f16" }, values, 1, 3);
  assert.deepEqual([...f16.payload], [0x00, 0x3c, 0x02, 0x3c, 0x66, 0x2e]);
  assert.deepEqual(
    [...decodeFrame(SUBJ, f16.headers, f16.payload).data],
    [1, 1.001953125, 0.0999755859375],
  );
  const bvalues = new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 0.1]);
  const bf16 = encodeFrame(META, bvalues, 1, 3);
  assert.deepEqual([...bf16.payload], [0x80, 0x3f, 0x82, 0x3f, 0xcd, 0x3d]);
  assert.deepEqual(
    [...decodeFrame(SUBJ, bf16.headers, bf16.payload).data],
    [1, 1.015625, 0.10009765625],
  );
});

Deno.test("frame: f32 encoding is a view of the input", () => {
  const data = new Float32Array([1, 2]);
  const { payload } = encodeFrame({ ...META, dtype: "f32" }, data, 1, 2);
  assert.equal(payload.buffer, data.buffer);
  assert.deepEqual([...payload], [0, 0, 0x80, 0x3f, 0, 0, 0, 0x40]);
});

Deno.test("frame: headerWireBytes counts the NATS header block in UTF-8 bytes", () => {
  assert.equal(headerWireBytes({}), 0);
  const wire = "NATS/1.0\r\nA: b\r\nLw-Model: gpt2\r\n\r\n";
  assert.equal(headerWireBytes({ A: "b", "Lw-Model": "gpt2" }), wire.length);
  assert.equal(headerWireBytes({ A: "ö" }), "NATS/1.0\r\nA: xx\r\n\r\n".length);
});

Deno.test("framePayload: the payload encodeFrame makes, checked the same way", () => {
  const data = Float32Array.from([1, -2, 0.1, 65504, 3.5, -0]);
  for (const dtype of ["f32", "f16", "bf16"] as const) {
    const meta = { model: "m", hook: "h", requestId: "r", position: 4, seq: 0, dtype };
    const whole = encodeFrame(meta, data, 3, 2).payload;
    const alone = framePayload(meta, data, 3, 2);
    assert.deepEqual([...alone], [...whole], dtype);
  }
  // f32 is a view of the caller's data, as encodeFrame's is
  const view = framePayload({ requestId: "r", position: 0, dtype: "f32" }, data, 3, 2);
  assert.equal(view.buffer, data.buffer);
  // bf16 of 1 and -2: 0x3f80, 0xc000, little-endian (an independent spelling of the bits)
  assert.deepEqual(
    [...framePayload({ requestId: "r", position: 0, dtype: "bf16" }, data.subarray(0, 2), 1, 2)],
    [0x80, 0x3f, 0x00, 0xc0],
  );
  const refused = (f: () => unknown, field: string, pattern: RegExp) =>
    assert.throws(
      f,
      (e) => e instanceof FrameError && e.field === field && pattern.test(e.message),
    );
  refused(
    () =>
      framePayload({ requestId: "r", position: 7, dtype: "f16" }, Float32Array.of(1, 70000), 1, 2),
    "payload",
    /overflows f16/,
  );
  refused(
    () => framePayload({ requestId: "r", position: 0, dtype: "f32" }, data, 2, 2),
    "payload",
    /4 f32 values/,
  );
  refused(
    // deno-lint-ignore no-explicit-any
    () => framePayload({ requestId: "r", position: 0, dtype: "f8" as any }, data, 3, 2),
    "Lw-Dtype",
    /one of f32, f16, bf16/,
  );
});
