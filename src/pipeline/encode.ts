/**
 * The encode stage: a batch of decoded frames, their rows gathered into one
 * buffer and encoded with every encoder of a generation, at most
 * `maxBatchTokens` rows per call. Shared by `serve` and offline replay.
 * (Evidence, the second encode of an alert's flagged tokens, is
 * `./evidence.ts`.)
 *
 * @module
 */
import type { Frame } from "../core/frame/format.ts";
import type { Encoder } from "../core/sae.ts";
import { joinTables, type LatentTable } from "../core/latent_rows.ts";

/** A buffer reused across batches by {@linkcode gatherFrames}; grown when too small. */
export interface Scratch {
  data: Float32Array;
}

/**
 * Copy the frames' rows into one contiguous `[n, dIn]` buffer, `n` the
 * frames' tokens. A batch whose rows all come from one frame reads that
 * frame's data directly. With `scratch` the buffer is reused (and grown),
 * otherwise a new one is allocated.
 *
 * @example
 * ```ts
 * import type { Frame } from "../core/frame/format.ts";
 * import { gatherFrames, type Scratch } from "./encode.ts";
 * const scratch: Scratch = { data: new Float32Array(0) };
 * const frames = [{ tokens: 1, data: new Float32Array(2) }, { tokens: 1, data: new Float32Array(2) }] as Frame[];
 * gatherFrames(frames, 2, 2, scratch).length; // 4
 * ```
 */
export function gatherFrames(
  frames: readonly Frame[],
  n: number,
  dIn: number,
  scratch?: Scratch,
): Float32Array {
  let only: Frame | undefined, count = 0;
  for (const f of frames) {
    if (f.tokens === 0) continue;
    only = f;
    count++;
  }
  if (count === 1) return only!.data;
  let x: Float32Array;
  if (scratch) {
    if (scratch.data.length < n * dIn) scratch.data = new Float32Array(n * dIn);
    x = scratch.data;
  } else x = new Float32Array(n * dIn);
  let offset = 0;
  for (const f of frames) {
    if (f.tokens === 0) continue;
    x.set(f.data, offset);
    offset += f.data.length;
  }
  return x.subarray(0, n * dIn);
}

/** Options of {@linkcode encodeFrames}. */
export interface EncodeFramesOptions {
  /** Width of the activations (each frame's `dModel`). */
  dIn: number;
  /** At most this many rows go to one `encode` call (a frame may hold more). */
  maxBatchTokens: number;
  /** Reuse this buffer to gather the frames (see {@linkcode gatherFrames}). */
  scratch?: Scratch;
  /** Called after each encoder has encoded every row, with the number of rows. */
  onEncoded?: (encoder: string, tokens: number) => void;
}

/**
 * Encode every token row of `frames` (in order) with each encoder, at most
 * `maxBatchTokens` rows per call. Resolves with encoder id → a table of one
 * row per token (an encoder's `encodeRows` where it has one: one structure,
 * no object per token); empty when the frames hold no tokens. An encoder's
 * error rejects the whole batch.
 *
 * @example
 * ```ts
 * import type { Frame } from "../core/frame/format.ts";
 * import type { Encoder } from "../core/sae.ts";
 * import { encodeFrames } from "./encode.ts";
 * declare const encoders: Map<string, Encoder>;
 * declare const frames: Frame[];
 * const latents = await encodeFrames(encoders, frames, { dIn: 768, maxBatchTokens: 256 });
 * latents.get("res")!.length; // the frames' tokens
 * ```
 */
export async function encodeFrames(
  encoders: ReadonlyMap<string, Encoder>,
  frames: readonly Frame[],
  opts: EncodeFramesOptions,
): Promise<Map<string, LatentTable>> {
  const { dIn, maxBatchTokens: step } = opts;
  let n = 0;
  for (const f of frames) n += f.tokens;
  const latents = new Map<string, LatentTable>();
  if (n === 0) return latents;
  const x = gatherFrames(frames, n, dIn, opts.scratch);
  for (const [id, encoder] of encoders) {
    const parts: LatentTable[] = [];
    for (let r = 0; r < n; r += step) {
      const m = Math.min(step, n - r);
      // the whole batch in one call: x as it is (gatherFrames sized it), no view
      const rows = m === n ? x : x.subarray(r * dIn, (r + m) * dIn);
      parts.push(await encodeRows(encoder, rows, m));
    }
    latents.set(id, joinTables(parts));
    opts.onEncoded?.(id, n);
  }
  return latents;
}

/** One call's rows, in one structure where the encoder offers it. */
function encodeRows(encoder: Encoder, x: Float32Array, tokens: number): Promise<LatentTable> {
  return encoder.encodeRows ? encoder.encodeRows(x, tokens) : encoder.encode(x, tokens);
}
