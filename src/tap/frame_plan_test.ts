import assert from "node:assert/strict";
import { encodedBlockOf } from "../bus/header_template.ts";
import { encodeHeaderBlock } from "../bus/nats_headers.ts";
import { ByteSlab } from "../core/byte_slab.ts";
import { decodeFrame } from "../core/frame/decode.ts";
import { frameHeaders } from "../core/frame/encode.ts";
import { FrameError } from "../core/frame/format.ts";
import {
  checkFrameNames,
  checkTapCall,
  encodePlannedFrames,
  endOfRequestFrame,
  type FramePlanContext,
  FrameTooLargeError,
  planFrames,
  type TapCall,
} from "./frame_plan.ts";
import { rememberStepHeaders, type StepHeaders } from "./step_headers.ts";

const names = { model: "gpt2", hook: "blocks.6.hook_resid_post", dtype: "f32" as const };

function call(tokens: number, dModel: number, extra: TapCall["extra"] = {}): TapCall {
  const activations = new Float32Array(tokens * dModel).map((_, i) => i);
  return { requestId: "req-1", position: 10, activations, tokens, dModel, extra };
}

function ctx(maxPayload: number, firstSeq = 0): FramePlanContext {
  return { ...names, maxPayload, firstSeq };
}

/** Bytes of a frame on the wire: the NATS header block as the bus writes it, plus its payload. */
const wireBytes = (headers: Record<string, string>, n: number, dModel: number) =>
  encodeHeaderBlock(headers).byteLength + n * dModel * 4;

Deno.test("frame plan: a call is checked field by field", () => {
  const bad: Array<[string, TapCall]> = [
    ["tokens", { ...call(1, 4), tokens: -1 }],
    ["tokens", { ...call(1, 4), tokens: 1.5 }],
    ["dModel", { ...call(1, 4), dModel: 0 }],
    ["activations", { ...call(1, 4), activations: new Float32Array(3) }],
    ["tokenIds", call(2, 4, { tokenIds: [1] })],
    ["tokenText", call(2, 4, { tokenText: ["a", "b", "c"] })],
  ];
  for (const [field, c] of bad) {
    assert.throws(() => checkTapCall(c), (err) => err instanceof FrameError && err.field === field);
  }
  checkTapCall(call(2, 4, { tokenIds: [1, 2], tokenText: ["a", "b"] }));
  checkTapCall(call(0, 4));
});

Deno.test("frame plan: frames cover the call in order, each as large as fits", () => {
  const dModel = 16;
  const tokenText = Array.from({ length: 40 }, (_, i) => `tok${i}`);
  const c = call(40, dModel, { tokenText, tokenIds: tokenText.map((_, i) => i), phase: "prefill" });
  const max = 700;
  const { frames, key } = planFrames(c, ctx(max, 3));
  assert.equal(key, null); // token ids and text: no template
  assert.ok(frames.length > 1);
  let next = 0;
  frames.forEach(({ start, n, headers }, i) => {
    assert.equal(start, next);
    next += n;
    assert.ok(wireBytes(headers, n, dModel) <= max, `frame ${i} fits`);
    const decoded = decodeFrame(
      "latentwatch.tap.v1.gpt2.blocks_6_hook_resid_post.0",
      headers,
      new Uint8Array(n * dModel * 4),
    );
    assert.deepEqual([decoded.position, decoded.seq, decoded.tokens], [10 + start, 3 + i, n]);
    assert.deepEqual(decoded.tokenText, tokenText.slice(start, start + n));
    if (start + n < 40) {
      // one more token would not have fit: the frame is as large as it can be
      const end = start + n + 1;
      const bigger = frameHeaders(
        {
          ...names,
          requestId: "req-1",
          position: 10 + start,
          seq: 3 + i,
          tokenIds: c.extra.tokenIds!.slice(start, end),
          tokenText: tokenText.slice(start, end),
          phase: "prefill",
        },
        n + 1,
        dModel,
      );
      assert.ok(wireBytes(bigger, n + 1, dModel) > max, `frame ${i} could not hold ${n + 1}`);
    }
  });
  assert.equal(next, 40);
});

Deno.test("frame plan: a token that cannot fit is FrameTooLargeError", () => {
  assert.throws(
    () => planFrames(call(2, 768), ctx(2000)),
    (err) =>
      err instanceof FrameTooLargeError && err.position === 10 && err.payloadBytes === 768 * 4 &&
      err.maxPayload === 2000,
  );
});

Deno.test("frame plan: decode steps have a key, and the template serves the third step", () => {
  const slab = new ByteSlab();
  let last: StepHeaders | undefined;
  const blocks: Array<Uint8Array | undefined> = [];
  for (let i = 0; i < 3; i++) {
    const step = { ...call(1, 8, { phase: "decode", tenant: "acme" }), position: 10 + i };
    const { frames, key } = planFrames(step, { ...ctx(1 << 20, i), last });
    assert.equal(key?.tokens, 1);
    assert.equal(frames.length, 1);
    const f = decodeFrame(
      "latentwatch.tap.v1.gpt2.blocks_6_hook_resid_post.0",
      frames[0].headers,
      new Uint8Array(8 * 4),
    );
    assert.deepEqual([f.position, f.seq, f.phase, f.tenant], [10 + i, i, "decode", "acme"]);
    blocks.push(encodedBlockOf(frames[0].headers));
    last = rememberStepHeaders(last, key!, frames[0].headers, slab);
  }
  // the first two steps make their headers; the third is written from the template
  assert.deepEqual(blocks.map((b) => b !== undefined), [false, false, true]);
  // a step with token ids has no key
  assert.equal(planFrames(call(1, 8, { tokenIds: [3] }), ctx(1 << 20)).key, null);
});

Deno.test("frame plan: the end-of-request marker reads back as an end", () => {
  const { headers, payload } = endOfRequestFrame(names, "req-9", {
    seq: 5,
    nextPosition: 17,
    dModel: 768,
    tenant: "acme",
  });
  assert.equal(payload.byteLength, 0);
  const f = decodeFrame("latentwatch.tap.v1.gpt2.blocks_6_hook_resid_post.0", headers, payload);
  assert.deepEqual([f.requestId, f.position, f.seq, f.tokens, f.endOfRequest, f.tenant], [
    "req-9",
    17,
    5,
    0,
    true,
    "acme",
  ]);
});

Deno.test("frame plan: names a frame cannot carry are refused", () => {
  checkFrameNames(names);
  assert.throws(() => checkFrameNames({ ...names, model: "" }), FrameError);
  // @ts-expect-error: a dtype the frame format does not know
  assert.throws(() => checkFrameNames({ ...names, dtype: "f64" }), FrameError);
});

Deno.test("frame plan: encoded frames carry the call's values, f32 copied off the caller's buffer", () => {
  const dModel = 8;
  const c = call(12, dModel, { phase: "prefill" });
  const { frames: plan } = planFrames(c, ctx(400));
  assert.ok(plan.length > 1, "the call spans several frames");
  for (const dtype of ["f32", "bf16"] as const) {
    let copies = 0;
    const copy = (p: Uint8Array) => (copies++, p.slice());
    const planned = dtype === "f32" ? plan : planFrames(c, { ...ctx(400), dtype }).frames;
    const frames = encodePlannedFrames(c, planned, { dtype, copy });
    // the caller reuses its buffer at once: what was encoded must not change
    const sent = c.activations.slice();
    c.activations.fill(-1);
    frames.forEach(({ headers, payload }, i) => {
      const f = decodeFrame("latentwatch.tap.v1.gpt2.blocks_6_hook_resid_post.0", headers, payload);
      const { start, n } = planned[i];
      // values 0..95 are exact in bf16 (at most 8 significant bits)
      assert.deepEqual([...f.data], [...sent.subarray(start * dModel, (start + n) * dModel)]);
    });
    assert.equal(copies, dtype === "f32" ? planned.length : 0, `${dtype}: copies`);
    c.activations.set(sent);
  }
});

Deno.test("frame plan: a non-finite value fails the encode, naming its position", () => {
  const dModel = 8;
  const c = call(12, dModel);
  const { frames: plan } = planFrames(c, ctx(400));
  assert.ok(plan.length > 1, "the call spans several frames");
  // the NaN is in the last frame: the call throws, so the tap sends none of the frames before it
  c.activations[11 * dModel + 2] = Number.NaN;
  assert.throws(
    () => encodePlannedFrames(c, plan, { dtype: "f32", copy: (p) => p }),
    (err: unknown) => {
      assert.ok(err instanceof FrameError, `expected FrameError, found ${err}`);
      assert.match(err.message, /NaN at token \d+ \(position 21\), element 2/);
      return true;
    },
  );
});
