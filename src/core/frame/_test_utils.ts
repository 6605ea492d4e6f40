/**
 * What the frame tests share: a valid header set, its bf16 payload, the
 * encoder's metadata and an assertion on {@linkcode FrameError}s.
 *
 * @module
 */
import assert from "node:assert/strict";
import { FrameError } from "./format.ts";

/** The subject of the frames these tests decode. */
export const SUBJ = "latentwatch.tap.v1.gpt2.blocks_6_hook_resid_post.0";

/** A valid v1 header set for a [2, 3] bf16 frame; override fields per test. */
export function hdrs(over: Record<string, string | undefined> = {}): Record<string, string> {
  const base: Record<string, string | undefined> = {
    "Lw-Version": "1",
    "Lw-Model": "gpt2",
    "Lw-Hook": "blocks.6.hook_resid_post",
    "Lw-Request-Id": "req-42",
    "Lw-Pos": "7",
    "Lw-Seq": "0",
    "Lw-Dtype": "bf16",
    "Lw-Shape": "2,3",
    ...over,
  };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) out[k] = v;
  return out;
}

/** bf16 of [1, -2, 0.5, 3, -0.25, 0], little-endian: 0x3f80 0xc000 0x3f00 0x4040 0xbe80 0x0000 */
export const BF16_PAYLOAD = new Uint8Array([
  0x80,
  0x3f,
  0x00,
  0xc0,
  0x00,
  0x3f,
  0x40,
  0x40,
  0x80,
  0xbe,
  0,
  0,
]);

/** assert.throws with a FrameError on `field` whose message matches `re`. */
export function throwsFrame(fn: () => unknown, field: string, re: RegExp): FrameError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof FrameError, `expected a FrameError, got ${caught}`);
  assert.ok(caught instanceof TypeError);
  assert.equal(caught.field, field, caught.message);
  assert.match(caught.message, re);
  return caught;
}

/** Encoder metadata matching {@linkcode hdrs}. */
export const META = {
  model: "gpt2",
  hook: "blocks.6.hook_resid_post",
  requestId: "req-42",
  position: 7,
  seq: 0,
  dtype: "bf16" as const,
};
