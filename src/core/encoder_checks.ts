/**
 * The checks the encoders share: that an SAE's fields fit its architecture
 * and dimensions (the reference encoder and the onnxruntime graphs, plain
 * and int8, call `assertEncodable` first, so a bad SAE fails alike in each),
 * that an input holds the tokens it claims (the onnxruntime, probe, CUDA and
 * WebGPU encoders; the reference encoder words its own), and that watched
 * latents are in range.
 *
 * @module
 */
import type { SaeWeights } from "./sae.ts";
import { saeDOut } from "./sae.ts";

/**
 * An SAE whose fields cannot be encoded as given (missing or contradictory parameters).
 *
 * @example
 * ```ts
 * const err = new EncoderConfigError("sae.safetensors: jumprelu SAE needs threshold");
 * err instanceof TypeError; // true
 * ```
 */
export class EncoderConfigError extends TypeError {
  override name = "EncoderConfigError";
}

/**
 * An input (activations, token count, watched latents) of the wrong size or range.
 *
 * @example
 * ```ts
 * const err = new EncoderInputError("watched latent 9 is out of range: expected < 8");
 * err instanceof RangeError; // true
 * ```
 */
export class EncoderInputError extends RangeError {
  override name = "EncoderInputError";
}

/**
 * Check an encoder's input: `tokens` a non-negative integer and `x` at least
 * `tokens × dIn` values. Returns `tokens × dIn`; throws
 * {@linkcode EncoderInputError} saying what was expected and found.
 *
 * @example
 * ```ts
 * checkEncodeInput(new Float32Array(8), 2, 4); // 8
 * ```
 */
export function checkEncodeInput(x: Float32Array, tokens: number, dIn: number): number {
  if (!Number.isSafeInteger(tokens) || tokens < 0) {
    throw new EncoderInputError(
      `encode: expected a non-negative integer token count, found ${tokens}`,
    );
  }
  const n = tokens * dIn;
  if (x.length < n) {
    throw new EncoderInputError(
      `encode: expected at least ${tokens} × ${dIn} = ${n} values, found ${x.length}`,
    );
  }
  return n;
}

/**
 * Check that `sae` has everything its architecture, kind and normalisation
 * need, with the lengths its dimensions imply. Both encoders call this first,
 * so a bad SAE fails the same way everywhere.
 *
 * @throws {EncoderConfigError} naming the field, what was expected and what was found
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "./sae.ts";
 * declare const sae: SaeWeights;
 * assertEncodable(sae); // throws before any work if, e.g., a transcoder subtracts b_dec
 * ```
 */
export function assertEncodable(sae: SaeWeights): void {
  const { dIn, dSae, source } = sae;
  const dOut = saeDOut(sae);
  const len = (field: string, a: ArrayLike<number> | undefined, want: number, shape: string) => {
    if (!a) throw new EncoderConfigError(`${source}: ${sae.architecture} SAE needs ${field}`);
    if (a.length !== want) {
      throw new EncoderConfigError(
        `${source}: ${field} should be ${shape} = ${want} values, found ${a.length}`,
      );
    }
  };
  // The kind decides what dOut must be, so check it before the lengths that depend on it.
  if ((sae.kind ?? "sae") === "sae" && dOut !== dIn) {
    throw new EncoderConfigError(
      `${source}: an SAE reconstructs its input; expected dOut ${dIn}, found ${dOut}`,
    );
  }
  len("wEnc", sae.wEnc, dIn * dSae, `[${dIn}, ${dSae}]`);
  len("bEnc", sae.bEnc, dSae, `[${dSae}]`);
  len("wDec", sae.wDec, dSae * dOut, `[${dSae}, ${dOut}]`);
  len("bDec", sae.bDec, dOut, `[${dOut}]`);
  if (sae.wSkip) len("wSkip", sae.wSkip, dIn * dOut, `[${dIn}, ${dOut}]`);
  if ((sae.kind ?? "sae") === "transcoder" && sae.applyBDecToInput) {
    // SAELens's transcoder config raises on this too (PR #516): b_dec is an output bias.
    throw new EncoderConfigError(
      `${source}: a transcoder never subtracts b_dec from its input; expected applyBDecToInput false, found true`,
    );
  }
  if (sae.normalize === "layer_norm" && dIn < 2) {
    throw new EncoderConfigError(
      `${source}: layer_norm uses the unbiased std; expected dIn ≥ 2, found ${dIn}`,
    );
  }
  switch (sae.architecture) {
    case "standard":
      break;
    case "jumprelu":
      len("threshold", sae.threshold, dSae, `[${dSae}]`);
      break;
    case "topk":
      if (sae.k === undefined || !Number.isInteger(sae.k) || sae.k < 1 || sae.k > dSae) {
        throw new EncoderConfigError(
          `${source}: topk SAE needs an integer k in 1..${dSae}, found ${sae.k}`,
        );
      }
      break;
    case "gated":
      len("gated.bGate", sae.gated?.bGate, dSae, `[${dSae}]`);
      len("gated.rMag", sae.gated?.rMag, dSae, `[${dSae}]`);
      len("gated.bMag", sae.gated?.bMag, dSae, `[${dSae}]`);
      break;
    default:
      throw new EncoderConfigError(
        `${source}: expected architecture standard, jumprelu, topk or gated, found ${
          String((sae as { architecture: unknown }).architecture)
        }`,
      );
  }
}

/**
 * The watched latents as a sorted, duplicate-free index list.
 *
 * @throws {EncoderInputError} when an index is not below `dSae`
 *
 * @example
 * ```ts
 * canonicalWatch(new Uint32Array([5, 1, 5]), 8); // Uint32Array [1, 5]
 * ```
 */
export function canonicalWatch(watch: Uint32Array, dSae: number): Uint32Array {
  const sorted = Uint32Array.from(new Set(watch)).sort();
  for (const i of sorted) {
    if (i >= dSae) {
      throw new EncoderInputError(`watched latent ${i} is out of range: expected < ${dSae}`);
    }
  }
  return sorted;
}
