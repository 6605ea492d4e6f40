import assert from "node:assert/strict";
import { decodeFrame } from "../core/frame/decode.ts";
import { encodeFrame } from "../core/frame/encode.ts";
import { type Frame, FrameError } from "../core/frame/format.ts";
import { tapSubject } from "../core/frame/subjects.ts";
import type { Encoder, SparseLatents } from "../core/sae.ts";
import {
  decodeMonitorFrame,
  encodeFrames,
  gatherFrames,
  type Scratch,
  tokenBatch,
} from "./frames.ts";

const MODEL = "gpt2";
const HOOK = "blocks.6.hook_resid_post";
const D = 2;

function raw(opts: { model?: string; hook?: string; tokens?: number; requestId?: string } = {}) {
  const tokens = opts.tokens ?? 1;
  const data = Float32Array.from({ length: tokens * D }, (_, i) => i + 1);
  const meta = {
    model: opts.model ?? MODEL,
    hook: opts.hook ?? HOOK,
    requestId: opts.requestId ?? "r1",
    position: 0,
    seq: 0,
    dtype: "f32" as const,
  };
  const { headers, payload } = encodeFrame(meta, data, tokens, D);
  return { subject: tapSubject(MODEL, HOOK), headers, data: payload };
}

function frame(rows: number[][], requestId = "r1"): Frame {
  const msg = raw({ tokens: rows.length, requestId });
  const f = decodeFrame(msg.subject, msg.headers, msg.data, { dModel: D });
  f.data = Float32Array.from(rows.flat());
  return f;
}

/** Records every encode call; latent 0 holds each row's first value. */
function recordingEncoder(calls: number[]): Encoder {
  return {
    dIn: D,
    dSae: 1,
    encode(x, tokens) {
      calls.push(tokens);
      const rows: SparseLatents[] = [];
      for (let t = 0; t < tokens; t++) {
        rows.push({ indices: Uint32Array.of(0), values: Float32Array.of(x[t * D]) });
      }
      return Promise.resolve(rows);
    },
    close: () => Promise.resolve(),
  };
}

Deno.test("frames: decodeMonitorFrame accepts the monitor's model and hook, rejects others", () => {
  const expect = { model: MODEL, hook: HOOK, dIn: D };
  assert.equal(decodeMonitorFrame(raw({ tokens: 3 }), expect).tokens, 3);
  for (
    const [msg, field] of [
      [raw({ model: "llama" }), "Lw-Model"],
      [raw({ hook: "blocks.7.hook_resid_post" }), "Lw-Hook"],
    ] as const
  ) {
    assert.throws(() => decodeMonitorFrame(msg, expect), (err) => {
      assert.ok(err instanceof FrameError);
      assert.equal(err.field, field);
      assert.equal(err.requestId, "r1");
      assert.equal(err.subject, msg.subject);
      return true;
    });
  }
  assert.throws(
    () => decodeMonitorFrame(raw(), { ...expect, dIn: 3 }),
    (err) => err instanceof FrameError && err.field === "Lw-Shape",
  );
});

Deno.test("frames: encodeFrames encodes every row in order, at most maxBatchTokens per call", async () => {
  const calls: number[] = [];
  const encoded: [string, number][] = [];
  const frames = [frame([[1, 0], [2, 0], [3, 0]]), frame([]), frame([[4, 0], [5, 0]], "r2")];
  const latents = await encodeFrames(new Map([["a", recordingEncoder(calls)]]), frames, {
    dIn: D,
    maxBatchTokens: 2,
    onEncoded: (id, n) => encoded.push([id, n]),
  });
  assert.deepEqual(calls, [2, 2, 1]);
  assert.deepEqual(encoded, [["a", 5]]);
  assert.deepEqual(latents.get("a")!.map((r) => r.values[0]), [1, 2, 3, 4, 5]);
  assert.equal((await encodeFrames(new Map(), [frame([])], { dIn: D, maxBatchTokens: 2 })).size, 0);
});

Deno.test("frames: gatherFrames reads one frame's rows directly and reuses a scratch buffer", () => {
  const only = frame([[1, 2]]);
  assert.equal(gatherFrames([frame([]), only], 1, D), only.data);
  const scratch: Scratch = { data: new Float32Array(0) };
  const x = gatherFrames([frame([[1, 2]]), frame([[3, 4]])], 2, D, scratch);
  assert.deepEqual([...x], [1, 2, 3, 4]);
  const buffer = scratch.data;
  const y = gatherFrames([frame([[5, 6]]), frame([[7, 8]])], 2, D, scratch);
  assert.equal(scratch.data, buffer);
  assert.deepEqual([...y], [5, 6, 7, 8]);
});

Deno.test("frames: tokenBatch carries the frame's context, only the fields it has", () => {
  const f = frame([[1, 0], [2, 0]]);
  const latents = new Map<string, SparseLatents[]>();
  assert.deepEqual(tokenBatch(f, 3, latents), {
    ctx: { requestId: "r1", model: MODEL, hook: HOOK },
    position: 0,
    tokens: 2,
    latents,
    firstRow: 3,
  });
  const g: Frame = { ...f, tenant: "t", meta: { k: "v" }, phase: "decode", tokenText: ["a", "b"] };
  assert.deepEqual(tokenBatch(g, 0, latents), {
    ctx: {
      requestId: "r1",
      model: MODEL,
      hook: HOOK,
      tenant: "t",
      meta: { k: "v" },
      phase: "decode",
    },
    position: 0,
    tokens: 2,
    latents,
    firstRow: 0,
    tokenText: ["a", "b"],
  });
});
