/**
 * What the live pipeline (`./pipeline.ts`) and offline replay
 * (`../traces/offline.ts`) do alike with tap frames: decode one strictly
 * for a monitor, encode a batch of them with every encoder, and hand a
 * frame's rows to the policy engine.
 *
 * @module
 */
import { decodeFrame } from "../core/frame/decode.ts";
import { type Frame, FrameError } from "../core/frame/format.ts";
import type { TokenBatch } from "../core/policy/engine.ts";
import type { Encoder, SparseLatents } from "../core/sae.ts";
import type { HeaderProblem } from "../bus/bus.ts";

/** A tap message as received or recorded: subject, headers, payload. */
export interface RawFrame {
  subject: string;
  headers: Record<string, string>;
  data: Uint8Array;
  /** Header names given more than once with the same spelling (see `BusMessage`). */
  repeatedHeaders?: string[];
  /** The header block could not be read in full (see `BusMessage`). */
  headerProblem?: HeaderProblem;
}

/** What a monitor accepts: its model, hook and activation width. */
export interface FrameExpect {
  model: string;
  hook: string;
  dIn: number;
}

/**
 * Decode `msg` strictly (`decodeFrame` with `dModel = dIn`) and check it is
 * for the monitor's model and hook. Throws {@linkcode FrameError} otherwise
 * (field `Lw-Model` or `Lw-Hook` for the checks here; `header_syntax`,
 * `header_name` or `header_encoding` for a header block the bus could not
 * read in full). A header the bus saw twice is rejected by the decoder.
 *
 * @example
 * ```ts
 * const frame = decodeMonitorFrame(msg, { model: "gpt2", hook: "blocks.6.hook_resid_post", dIn: 768 });
 * ```
 */
export function decodeMonitorFrame(msg: RawFrame, expect: FrameExpect): Frame {
  if (msg.headerProblem) {
    const id = msg.headers["Lw-Request-Id"];
    throw new FrameError(
      msg.headerProblem.reason,
      "a header block of NATS/1.0 lines `Name: value` (name printable ASCII, value UTF-8)",
      msg.headerProblem.detail,
      {
        subject: msg.subject,
        ...(typeof id === "string" && readableName(id) ? { requestId: id } : {}),
      },
    );
  }
  const frame = decodeFrame(msg.subject, msg.headers, msg.data, {
    dModel: expect.dIn,
    ...(msg.repeatedHeaders ? { repeated: msg.repeatedHeaders } : {}),
  });
  const where = { subject: msg.subject, requestId: frame.requestId };
  if (frame.model !== expect.model) {
    throw new FrameError(
      "Lw-Model",
      JSON.stringify(expect.model),
      JSON.stringify(frame.model),
      where,
    );
  }
  if (frame.hook !== expect.hook) {
    throw new FrameError("Lw-Hook", JSON.stringify(expect.hook), JSON.stringify(frame.hook), where);
  }
  return frame;
}

/** A request id worth naming in a log line: short, printable, no surrounding whitespace. */
function readableName(s: string): boolean {
  // deno-lint-ignore no-control-regex
  return s.length > 0 && s.length <= 256 && !/[\u0000-\u001f\u007f-\u009f]/.test(s) &&
    s.trim() === s;
}

/** A buffer reused across batches by {@linkcode gatherFrames}; grown when too small. */
export interface Scratch {
  data: Float32Array;
}

/**
 * Copy the frames' rows into one contiguous `[n, dIn]` buffer, `n` the
 * frames' tokens. A batch whose rows all come from one frame reads that
 * frame's data directly. With `scratch` the buffer is reused (and grown),
 * otherwise a new one is allocated.
 */
export function gatherFrames(
  frames: readonly Frame[],
  n: number,
  dIn: number,
  scratch?: Scratch,
): Float32Array {
  const withTokens = frames.filter((f) => f.tokens > 0);
  if (withTokens.length === 1) return withTokens[0].data;
  let x: Float32Array;
  if (scratch) {
    if (scratch.data.length < n * dIn) scratch.data = new Float32Array(n * dIn);
    x = scratch.data;
  } else x = new Float32Array(n * dIn);
  let offset = 0;
  for (const f of withTokens) {
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
 * `maxBatchTokens` rows per `encode` call. Resolves with encoder id → one
 * entry per row; empty when the frames hold no tokens. An encoder's error
 * rejects the whole batch.
 *
 * @example
 * ```ts
 * const latents = await encodeFrames(encoders, frames, { dIn: 768, maxBatchTokens: 256 });
 * latents.get("res")!.length; // the frames' tokens
 * ```
 */
export async function encodeFrames(
  encoders: ReadonlyMap<string, Encoder>,
  frames: readonly Frame[],
  opts: EncodeFramesOptions,
): Promise<Map<string, SparseLatents[]>> {
  const { dIn, maxBatchTokens: step } = opts;
  const n = frames.reduce((s, f) => s + f.tokens, 0);
  const latents = new Map<string, SparseLatents[]>();
  if (n === 0) return latents;
  const x = gatherFrames(frames, n, dIn, opts.scratch);
  for (const [id, encoder] of encoders) {
    let rows: SparseLatents[] = [];
    for (let r = 0; r < n; r += step) {
      const m = Math.min(step, n - r);
      const part = await encoder.encode(x.subarray(r * dIn, (r + m) * dIn), m);
      rows = rows.length === 0 ? part : rows.concat(part);
    }
    latents.set(id, rows);
    opts.onEncoded?.(id, n);
  }
  return latents;
}

/**
 * The policy engine's input for one frame: its request context and its
 * tokens, whose rows start at `firstRow` of `latents`.
 *
 * @example
 * ```ts
 * const firings = engine.evaluate(tokenBatch(frame, 0, latents));
 * ```
 */
export function tokenBatch(
  frame: Frame,
  firstRow: number,
  latents: ReadonlyMap<string, SparseLatents[]>,
): TokenBatch {
  return {
    ctx: {
      requestId: frame.requestId,
      model: frame.model,
      hook: frame.hook,
      ...(frame.tenant !== undefined ? { tenant: frame.tenant } : {}),
      ...(frame.meta !== undefined ? { meta: frame.meta } : {}),
      ...(frame.phase !== undefined ? { phase: frame.phase } : {}),
    },
    position: frame.position,
    tokens: frame.tokens,
    latents,
    firstRow,
    ...(frame.tokenText !== undefined ? { tokenText: frame.tokenText } : {}),
  };
}
