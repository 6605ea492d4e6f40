import assert from "node:assert/strict";
import { decodeFrame } from "./decode.ts";
import { encodeFrame, headerWireBytes } from "./encode.ts";
import { partitionOf, tapSubject } from "./subjects.ts";
import { BF16_PAYLOAD, hdrs, META, SUBJ, throwsFrame } from "./_test_utils.ts";
const decode = (h: Record<string, string>, p: Uint8Array = BF16_PAYLOAD, dModel?: number) =>
  decodeFrame(SUBJ, h, p, dModel === undefined ? undefined : { dModel });

Deno.test("frame: decodes a bf16 frame with every optional header", () => {
  const f = decode(hdrs({
    "Lw-Token-Ids": "318,257",
    "Lw-Token-Text": '["Hello"," w\\u00f6rld"]',
    "Lw-Phase": "prefill",
    "Lw-Tenant": "acme",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "congo=t61rcWkgMzE",
  }));
  assert.equal(f.model, "gpt2");
  assert.equal(f.hook, "blocks.6.hook_resid_post");
  assert.equal(f.requestId, "req-42");
  assert.equal(f.position, 7);
  assert.equal(f.seq, 0);
  assert.equal(f.dtype, "bf16");
  assert.equal(f.tokens, 2);
  assert.equal(f.dModel, 3);
  assert.deepEqual([...f.data], [1, -2, 0.5, 3, -0.25, 0]);
  assert.deepEqual(f.tokenIds, [318, 257]);
  assert.deepEqual(f.tokenText, ["Hello", " wörld"]);
  assert.equal(f.phase, "prefill");
  assert.equal(f.tenant, "acme");
  assert.equal(f.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  assert.equal(f.tracestate, "congo=t61rcWkgMzE");
  assert.equal(f.endOfRequest, false);
});

Deno.test("frame: header names match case-insensitively; unknown headers are ignored", () => {
  const h: Record<string, string> = {};
  for (const [k, v] of Object.entries(hdrs())) h[k.toLowerCase()] = v;
  h["LW-SHAPE"] = h["lw-shape"];
  delete h["lw-shape"];
  h["Nats-Msg-Id"] = "x";
  const f = decode(h);
  assert.equal(f.tokens, 2);
  assert.equal(f.requestId, "req-42");
});

Deno.test("frame: the same header twice in different case is refused", () => {
  throwsFrame(() => decode(hdrs({ "lw-pos": "8" })), "Lw-Pos", /found 2 \(Lw-Pos, lw-pos\)/);
});

Deno.test("frame: a header the bus saw twice, or a metadata header in two spellings, is refused", () => {
  assert.throws(
    () => decodeFrame(SUBJ, hdrs(), BF16_PAYLOAD, { repeated: ["Lw-Seq"] }),
    /Lw-Seq: expected one header, found 2 \(Lw-Seq, Lw-Seq\)/,
  );
  assert.throws(
    () => decodeFrame(SUBJ, hdrs({ "lw-seq": "0" }), BF16_PAYLOAD, { repeated: ["Lw-Seq"] }),
    /found 3 \(Lw-Seq, lw-seq, Lw-Seq\)/,
  );
  assert.throws(
    () => decode(hdrs({ "Lw-Meta-app": "a", "lw-meta-APP": "b" })),
    /Lw-Meta-app: expected one header, found 2 \(Lw-Meta-app, lw-meta-APP\)/,
  );
  assert.throws(
    () =>
      decodeFrame(SUBJ, hdrs({ "Lw-Meta-app": "a" }), BF16_PAYLOAD, { repeated: ["Lw-Meta-app"] }),
    /Lw-Meta-app: expected one header, found 2/,
  );
  // a repeated header the decoder does not read is no reason to refuse the frame
  assert.equal(decodeFrame(SUBJ, hdrs({ X: "1" }), BF16_PAYLOAD, { repeated: ["X"] }).tokens, 2);
  assert.deepEqual(decode(hdrs({ "lw-meta-App": "a" })).meta, { app: "a" });
});

Deno.test("frame: f32 payload at an aligned offset is a zero-copy view; misaligned is copied", () => {
  const buf = new ArrayBuffer(4 + 8 + 2);
  const bytes = new Uint8Array(buf);
  // 1.5 = 0x3fc00000, -4 = 0xc0800000
  bytes.set([0, 0, 0xc0, 0x3f, 0, 0, 0x80, 0xc0], 4);
  const h = hdrs({ "Lw-Dtype": "f32", "Lw-Shape": "1,2" });
  const aligned = decode(h, new Uint8Array(buf, 4, 8));
  assert.deepEqual([...aligned.data], [1.5, -4]);
  assert.equal(aligned.data.buffer, buf);
  assert.equal(aligned.data.byteOffset, 4);

  const odd = new Uint8Array(buf, 2, 8);
  odd.set([0, 0, 0xc0, 0x3f, 0, 0, 0x80, 0xc0]);
  const copied = decode(h, odd);
  assert.deepEqual([...copied.data], [1.5, -4]);
  assert.notEqual(copied.data.buffer, buf);
});

Deno.test("frame: copyData copies even an aligned f32 payload, so its bytes can be reused", () => {
  const buf = new ArrayBuffer(16);
  const bytes = new Uint8Array(buf, 4, 8);
  bytes.set([0, 0, 0xc0, 0x3f, 0, 0, 0x80, 0xc0]); // 1.5, -4
  const h = hdrs({ "Lw-Dtype": "f32", "Lw-Shape": "1,2" });
  const f = decodeFrame(SUBJ, h, bytes, { dModel: 2, copyData: true });
  bytes.fill(0xff); // the bus reads the next message into the same bytes
  assert.deepEqual([...f.data], [1.5, -4]);
  assert.notEqual(f.data.buffer, buf);
  assert.equal(f.data.byteOffset % 4, 0);
});

Deno.test("frame: widened f16/bf16 values do not view the payload", () => {
  const p = new Uint8Array([0x00, 0x3c, 0x00, 0xb8]); // f16 1, -0.5
  const f = decode(hdrs({ "Lw-Dtype": "f16", "Lw-Shape": "1,2" }), p);
  p.fill(0);
  assert.deepEqual([...f.data], [1, -0.5]);
});

Deno.test("frame: f16 payload is widened", () => {
  // f16: 1 = 0x3c00, -0.5 = 0xb800, 65504 = 0x7bff
  const p = new Uint8Array([0x00, 0x3c, 0x00, 0xb8, 0xff, 0x7b]);
  const f = decode(hdrs({ "Lw-Dtype": "f16", "Lw-Shape": "1,3" }), p);
  assert.deepEqual([...f.data], [1, -0.5, 65504]);
});

Deno.test("frame: end marker with no tokens, and end flag on a frame with tokens", () => {
  const end = decode(
    hdrs({ "Lw-Shape": "0,3", "Lw-End": "1", "Lw-Seq": "4", "Lw-Token-Ids": "" }),
    new Uint8Array(0),
  );
  assert.equal(end.endOfRequest, true);
  assert.equal(end.tokens, 0);
  assert.equal(end.data.length, 0);
  assert.equal(end.seq, 4);
  assert.deepEqual(end.tokenIds, []);
  assert.equal(decode(hdrs({ "Lw-End": "true" })).endOfRequest, true);
  assert.equal(decode(hdrs({ "Lw-End": "0" })).endOfRequest, false);
  throwsFrame(() => decode(hdrs({ "Lw-End": "yes" })), "Lw-End", /found "yes"/);
});

Deno.test("frame: error message names subject, request, field, expected and found", () => {
  const e = throwsFrame(() => decode(hdrs({ "Lw-Shape": "3,x" })), "Lw-Shape", /./);
  assert.equal(
    e.message,
    `frame on '${SUBJ}' (request req-42): Lw-Shape: expected "T,D" with integers T ≥ 0 and D ≥ 1, found "3,x"`,
  );
  assert.equal(e.subject, SUBJ);
  assert.equal(e.requestId, "req-42");
  assert.equal(e.found, '"3,x"');
});

Deno.test("frame: version must be 1", () => {
  throwsFrame(() => decode(hdrs({ "Lw-Version": "2" })), "Lw-Version", /expected "1", found "2"/);
  const e = throwsFrame(
    () => decode(hdrs({ "Lw-Version": undefined })),
    "Lw-Version",
    /found no header/,
  );
  assert.equal(e.requestId, "req-42");
});

Deno.test("frame: names are non-empty, printable and at most 256 characters", () => {
  const e = throwsFrame(
    () => decode(hdrs({ "Lw-Request-Id": "" })),
    "Lw-Request-Id",
    /^frame on '[^']+': Lw-Request-Id: .*found "" \(empty\)/,
  );
  assert.equal(e.requestId, undefined);
  throwsFrame(() => decode(hdrs({ "Lw-Model": "gp\u0007t2" })), "Lw-Model", /control character/);
  throwsFrame(() => decode(hdrs({ "Lw-Hook": undefined })), "Lw-Hook", /found no header/);
  throwsFrame(
    () => decode(hdrs({ "Lw-Request-Id": "x".repeat(257) })),
    "Lw-Request-Id",
    /257 characters/,
  );
  assert.equal(decode(hdrs({ "Lw-Request-Id": "é".repeat(256) })).requestId.length, 256);
  throwsFrame(() => decode(hdrs({ "Lw-Tenant": " acme" })), "Lw-Tenant", /whitespace/);
});

Deno.test("frame: Lw-Pos and Lw-Seq are required non-negative safe integers", () => {
  for (const bad of ["-1", "1.5", "", "0x10", "9007199254740992"]) {
    throwsFrame(() => decode(hdrs({ "Lw-Pos": bad })), "Lw-Pos", /non-negative integer/);
  }
  assert.equal(decode(hdrs({ "Lw-Pos": "9007199254740991" })).position, 9007199254740991);
  throwsFrame(() => decode(hdrs({ "Lw-Seq": undefined })), "Lw-Seq", /found no header/);
  throwsFrame(() => decode(hdrs({ "Lw-Seq": "a" })), "Lw-Seq", /found "a"/);
});

Deno.test("frame: dtype and shape", () => {
  throwsFrame(() => decode(hdrs({ "Lw-Dtype": "f64" })), "Lw-Dtype", /f32, f16, bf16.*"f64"/);
  throwsFrame(() => decode(hdrs({ "Lw-Shape": "2,0" })), "Lw-Shape", /found "2,0"/);
  throwsFrame(() => decode(hdrs({ "Lw-Shape": "6" })), "Lw-Shape", /found "6"/);
  throwsFrame(() => decode(hdrs({ "Lw-Shape": " 2,3" })), "Lw-Shape", /found " 2,3"/);
  throwsFrame(() => decode(hdrs(), BF16_PAYLOAD, 768), "Lw-Shape", /D = 768.*found "2,3"/);
  assert.equal(decode(hdrs(), BF16_PAYLOAD, 3).dModel, 3);
});

Deno.test("frame: payload length must be T·D·bytes; says truncated or too long", () => {
  throwsFrame(
    () => decode(hdrs(), BF16_PAYLOAD.subarray(0, 10)),
    "payload",
    /expected 2·3·2 = 12 bytes .*found 10 bytes \(truncated\)/,
  );
  throwsFrame(
    () => decode(hdrs(), new Uint8Array(14)),
    "payload",
    /12 bytes.*found 14 bytes \(too long\)/,
  );
  throwsFrame(
    () => decode(hdrs({ "Lw-Dtype": "f32" })),
    "payload",
    /2·3·4 = 24 bytes.*found 12 bytes \(truncated\)/,
  );
});

Deno.test("frame: NaN and ±Infinity are refused with token and element index", () => {
  const p = BF16_PAYLOAD.slice();
  p.set([0xc0, 0x7f], 10); // token 1, element 2 := bf16 NaN 0x7fc0
  throwsFrame(
    () => decode(hdrs(), p),
    "payload",
    /expected finite values, found NaN at token 1 \(position 8\), element 2/,
  );
  const f16 = new Uint8Array([0x00, 0x3c, 0x00, 0xfc]); // 1, -Infinity
  throwsFrame(
    () => decode(hdrs({ "Lw-Dtype": "f16", "Lw-Shape": "2,1" }), f16),
    "payload",
    /found -Infinity at token 1 \(position 8\), element 0/,
  );
  const f32 = new Uint8Array([0, 0, 0x80, 0x7f]); // +Infinity
  throwsFrame(
    () => decode(hdrs({ "Lw-Dtype": "f32", "Lw-Shape": "1,1" }), f32),
    "payload",
    /found Infinity at token 0 \(position 7\), element 0/,
  );
});

Deno.test("frame: token ids and token text must match the token count", () => {
  throwsFrame(
    () => decode(hdrs({ "Lw-Token-Ids": "1,2,3" })),
    "Lw-Token-Ids",
    /expected 2 comma-separated.*found 3/,
  );
  throwsFrame(
    () => decode(hdrs({ "Lw-Token-Ids": "1,-2" })),
    "Lw-Token-Ids",
    /found "-2" at index 1/,
  );
  throwsFrame(() => decode(hdrs({ "Lw-Token-Ids": "1," })), "Lw-Token-Ids", /found "" at index 1/);
  const bad = throwsFrame(
    () => decode(hdrs({ "Lw-Token-Text": '["a"' })),
    "Lw-Token-Text",
    /invalid JSON/,
  );
  assert.ok(bad.cause instanceof SyntaxError);
  throwsFrame(
    () => decode(hdrs({ "Lw-Token-Text": '["a"]' })),
    "Lw-Token-Text",
    /array of 2 strings.*found an array of 1/,
  );
  throwsFrame(
    () => decode(hdrs({ "Lw-Token-Text": '["a",1]' })),
    "Lw-Token-Text",
    /found number at index 1/,
  );
  // decoders accept raw UTF-8 too
  assert.deepEqual(decode(hdrs({ "Lw-Token-Text": '["ü","x"]' })).tokenText, ["ü", "x"]);
});

Deno.test("frame: phase is prefill or decode", () => {
  assert.equal(decode(hdrs({ "Lw-Phase": "decode" })).phase, "decode");
  throwsFrame(() => decode(hdrs({ "Lw-Phase": "Decode" })), "Lw-Phase", /found "Decode"/);
});

Deno.test("frame: an invalid traceparent is dropped with its tracestate, not fatal", () => {
  for (
    const bad of [
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
      "garbage",
    ]
  ) {
    const f = decode(hdrs({ traceparent: bad, tracestate: "a=b" }));
    assert.equal(f.traceparent, undefined, bad);
    assert.equal(f.tracestate, undefined, bad);
  }
  const future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
  assert.equal(decode(hdrs({ traceparent: future })).traceparent, future);
});

// ---------------------------------------------------------------------------
// docs/frame-format.md: the worked example must stay true

const DOC = Deno.readTextFileSync(new URL("../../../docs/frame-format.md", import.meta.url));

function docBlock(marker: string): string {
  const at = DOC.indexOf(`<!-- example:${marker} -->`);
  assert.ok(at >= 0, `marker ${marker} missing from docs/frame-format.md`);
  const m = /```\n([\s\S]*?)```/.exec(DOC.slice(at));
  assert.ok(m, `no code block after marker ${marker}`);
  return m[1];
}

function docHeaders(marker: string): [string, string][] {
  return docBlock(marker).trim().split("\n").map((line) => {
    const i = line.indexOf(": ");
    return [line.slice(0, i), line.slice(i + 2)];
  });
}

Deno.test("frame: the worked example in docs/frame-format.md decodes as described", () => {
  const headers = Object.fromEntries(docHeaders("headers"));
  const payload = new Uint8Array(
    docBlock("payload").trim().split(/\s+/).map((b) => parseInt(b, 16)),
  );
  assert.deepEqual([...payload], [...BF16_PAYLOAD]);
  const f = decodeFrame(SUBJ, headers, payload, { dModel: 3 });
  assert.deepEqual([...f.data], [1, -2, 0.5, 3, -0.25, 0]);
  assert.deepEqual(f.tokenIds, [318, 257]);
  assert.deepEqual(f.tokenText, ["Hello", " wörld"]);
  assert.equal(f.position, 7);
  assert.equal(f.phase, "prefill");
  assert.equal(headerWireBytes(headers), 306);
  assert.ok(DOC.includes(`HPUB ${SUBJ} 306 318`));
  assert.equal(tapSubject("gpt2", "blocks.6.hook_resid_post", partitionOf("req-42", 1)), SUBJ);

  // and the encoder writes exactly these headers, in this order, and these bytes
  const enc = encodeFrame(
    {
      ...META,
      tokenIds: [318, 257],
      tokenText: ["Hello", " wörld"],
      phase: "prefill",
      traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    },
    new Float32Array([1, -2, 0.5, 3, -0.25, 0]),
    2,
    3,
  );
  assert.deepEqual(Object.entries(enc.headers), docHeaders("headers"));
  assert.deepEqual([...enc.payload], [...payload]);

  const endHeaders = docHeaders("end");
  const end = decodeFrame(SUBJ, Object.fromEntries(endHeaders), new Uint8Array(0));
  assert.deepEqual([end.position, end.seq, end.tokens, end.endOfRequest], [9, 1, 0, true]);
  const encEnd = encodeFrame(
    { ...META, position: 9, seq: 1, endOfRequest: true },
    new Float32Array(0),
    0,
    3,
  );
  assert.deepEqual(Object.entries(encEnd.headers), endHeaders);

  // the error message quoted in the doc is the one the decoder gives
  const err = throwsFrame(
    () => decodeFrame(SUBJ, headers, payload.subarray(0, 10)),
    "payload",
    /truncated/,
  );
  assert.ok(DOC.includes(err.message), err.message);
});

Deno.test("frame: request metadata round-trips as Lw-Meta-<key> headers", () => {
  const { headers, payload } = encodeFrame(
    {
      model: "m",
      hook: "h",
      requestId: "r",
      position: 0,
      seq: 0,
      dtype: "f32",
      meta: { app: "support-bot", region: "eu" },
    },
    new Float32Array([1, 2]),
    1,
    2,
  );
  assert.equal(headers["Lw-Meta-app"], "support-bot");
  assert.equal(headers["Lw-Meta-region"], "eu");
  // header names may arrive in another case
  const { ["Lw-Meta-app"]: app, ...rest } = headers;
  const frame = decodeFrame("s", { ...rest, "LW-META-APP": app }, payload);
  assert.deepEqual(frame.meta, { app: "support-bot", region: "eu" });
  assert.throws(
    () => decodeFrame("s", { ...headers, "Lw-Meta-Bad Key": "x" }, payload),
    /Lw-Meta-Bad Key: expected a metadata key of \[a-z0-9_-\]\+, found "bad key"/,
  );
});
