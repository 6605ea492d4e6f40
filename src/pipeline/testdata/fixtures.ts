/**
 * Frames and encoders the stage tests share: tap messages of a 2-wide
 * model, frames with given rows, an encoder that records its calls.
 *
 * @module
 */
import { decodeFrame } from "../../core/frame/decode.ts";
import { encodeFrame } from "../../core/frame/encode.ts";
import type { Frame } from "../../core/frame/format.ts";
import { tapSubject } from "../../core/frame/subjects.ts";
import type { Encoder, SparseLatents } from "../../core/sae.ts";
import { type CompiledPolicySet, compilePolicySet } from "../../core/policy/compile.ts";
import { parsePolicyFileDef } from "../../config/policy_file.ts";

export const MODEL = "gpt2";
export const HOOK = "blocks.6.hook_resid_post";
export const D = 2;

/** A tap message of `tokens` rows `1, 2, …`. */
export function raw(
  opts: { model?: string; hook?: string; tokens?: number; requestId?: string } = {},
) {
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

/** A decoded frame holding `rows`. */
export function frame(rows: number[][], requestId = "r1"): Frame {
  const msg = raw({ tokens: rows.length, requestId });
  const f = decodeFrame(msg.subject, msg.headers, msg.data, { dModel: D });
  f.data = Float32Array.from(rows.flat());
  return f;
}

/** Records every encode call; latent 0 holds each row's first value. */
export function recordingEncoder(calls: number[]): Encoder {
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

/** Compile one policy file (YAML) against an SAE `s` of width `dSae`. */
export function policies(yaml: string, dSae = 4): CompiledPolicySet {
  return compilePolicySet(
    [parsePolicyFileDef(yaml, "inline.yaml")],
    new Map([["s", { kind: "sae" as const, dSae }]]),
  );
}

/** Sparse latents of one token: `{index: value}`. */
export function row(values: Record<number, number>): SparseLatents {
  const keys = Object.keys(values).map(Number).sort((a, b) => a - b);
  return { indices: Uint32Array.from(keys), values: Float32Array.from(keys.map((k) => values[k])) };
}
