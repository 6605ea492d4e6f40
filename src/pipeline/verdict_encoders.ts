/**
 * The encoders a gated frame's verdict waits for: for each signal the
 * steering rules read (core/policy/verdict_rules.ts), an encoder of just
 * the latents those rules read where the generation's encoder is a watched
 * one wider than that, else the generation's encoder itself (a TopK SAE is
 * encoded in full, a probe is one product). `serve` encodes a batch with
 * gated frames with these first, answers the frames, and then encodes the
 * rest (docs/steering.md, "What a gated step waits for").
 *
 * @module
 */
import type { CompiledPolicySet } from "../core/policy/compiled.ts";
import { ruleParts, verdictEncoderIds, verdictLatents } from "../core/policy/verdict_rules.ts";
import type { Encoder } from "../core/sae.ts";

/** What {@linkcode verdictEncoders} needs. */
export interface VerdictEncodersInput {
  policies: CompiledPolicySet;
  /** The generation's encoders, by id. */
  encoders: ReadonlyMap<string, Encoder>;
  /** The latents each watched encoder of `encoders` computes (an id absent: it computes all). */
  watched: ReadonlyMap<string, Uint32Array>;
  /** The generation this one replaces: its verdict encoders are reused where they fit. */
  previous?: { encoders: ReadonlyMap<string, Encoder>; watched: ReadonlyMap<string, Uint32Array> };
  /** Open a watched encoder of SAE `id` for `latents`. */
  open: (id: string, latents: Uint32Array) => Promise<Encoder>;
}

/** The verdict encoders of a generation, and the latents each one of its own watches. */
export interface VerdictEncoders {
  /** Signal id → the encoder a gated frame's verdict waits for. */
  encoders: Map<string, Encoder>;
  /** Signal id → the latents of the encoders opened for the verdict (not the shared ones). */
  watched: Map<string, Uint32Array>;
}

/**
 * Whether an encoder built for latents `a` (absent: none was) computes
 * exactly latents `b`, so it can be reused.
 *
 * @example
 * ```ts
 * sameLatents(Uint32Array.of(3, 7), Uint32Array.of(3, 7)); // true
 * ```
 */
export function sameLatents(a: Uint32Array | undefined, b: Uint32Array): boolean {
  return a !== undefined && a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * The verdict encoders of a policy set, or undefined when the set does not
 * divide (every rule steers, or there are none): then a gated frame waits
 * for the whole evaluation anyway. A set with no steering rule gets an empty
 * map: its gated frames are answered before anything is encoded.
 *
 * @example
 * ```ts
 * import type { CompiledPolicySet } from "../core/policy/compiled.ts";
 * import type { Encoder } from "../core/sae.ts";
 * import { verdictEncoders } from "./verdict_encoders.ts";
 * declare const policies: CompiledPolicySet, encoders: Map<string, Encoder>;
 * declare const watched: Map<string, Uint32Array>;
 * declare const openWatched: (id: string, latents: Uint32Array) => Promise<Encoder>;
 * const verdict = await verdictEncoders({ policies, encoders, watched, open: openWatched });
 * verdict?.encoders.get("res"); // what a gated step's verdict is encoded with
 * ```
 */
export async function verdictEncoders(
  input: VerdictEncodersInput,
): Promise<VerdictEncoders | undefined> {
  const { policies, encoders, watched, previous } = input;
  if (ruleParts(policies).rest === 0) return undefined;
  const out: VerdictEncoders = { encoders: new Map(), watched: new Map() };
  for (const id of verdictEncoderIds(policies)) {
    const main = encoders.get(id);
    if (!main) continue; // an encoder the generation left out (nothing to encode it with)
    const all = watched.get(id);
    const latents = verdictLatents(policies, id);
    if (all === undefined || latents.length >= all.length) {
      out.encoders.set(id, main); // one encode serves both passes
      continue;
    }
    const reuse = previous?.encoders.get(id);
    const encoder = reuse && sameLatents(previous!.watched.get(id), latents)
      ? reuse
      : await input.open(id, latents);
    out.encoders.set(id, encoder);
    out.watched.set(id, latents);
  }
  return out;
}
