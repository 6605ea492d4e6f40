/**
 * Random SAEs for every architecture × normalisation × kind the encoders
 * support, built on `randomSae` (a fixture module: importing it registers no
 * tests). `randomSae` knows standard, jumprelu and topk; gated SAEs,
 * normalisation, transcoders and skip connections are added here.
 *
 * @module
 */
import { randomSae } from "../../formats/random_sae.ts";
import { Rng } from "../random.ts";
import type { InputNormalization, SaeArchitecture, SaeKind, SaeWeights } from "../sae.ts";

/** What {@linkcode randomVariant} builds. */
export interface Variant {
  architecture: SaeArchitecture;
  normalize?: InputNormalization;
  kind?: SaeKind;
  /** Transcoders only: add a `[dIn, dOut]` skip connection. */
  skip?: boolean;
  rescale?: boolean;
  applyBDec?: boolean;
}

/** A short label for test messages, e.g. `gated/layer_norm/transcoder+skip`. */
export function variantName(v: Variant): string {
  return [
    v.architecture + (v.rescale ? "+rescale" : ""),
    v.normalize ?? "none",
    (v.kind ?? "sae") + (v.skip ? "+skip" : "") + (v.applyBDec === false ? "-bdec" : ""),
  ].join("/");
}

/**
 * A random SAE of the variant. Gated parameters: `b_gate` is randomSae's
 * `b_enc` (so about as many gates open as standard latents fire), `r_mag ~
 * N(0, 0.3²)`, `b_mag ~ N(−0.1, 0.05²)`. Transcoders get `dOut = dIn + 3`.
 *
 * @example
 * ```ts
 * const sae = randomVariant({ architecture: "gated", normalize: "layer_norm" }, 16, 40, 1);
 * ```
 */
export function randomVariant(v: Variant, dIn: number, dSae: number, seed: number): SaeWeights {
  const transcoder = v.kind === "transcoder";
  const base = randomSae({
    architecture: v.architecture === "gated" ? "standard" : v.architecture,
    dIn,
    dSae,
    seed,
    k: Math.max(1, Math.floor(dSae / 8)),
    rescaleActsByDecoderNorm: v.rescale,
    applyBDecToInput: transcoder ? false : v.applyBDec,
  });
  const rng = new Rng(seed * 7919 + 1);
  const sae: SaeWeights = { ...base, normalize: v.normalize ?? "none" };
  if (v.architecture === "gated") {
    sae.architecture = "gated";
    sae.gated = {
      bGate: base.bEnc,
      rMag: rng.fillGaussian(new Float32Array(dSae), 0.3),
      bMag: rng.fillGaussian(new Float32Array(dSae), 0.05).map((b) => b - 0.1),
    };
    sae.bEnc = new Float32Array(dSae);
  }
  if (transcoder) {
    const dOut = dIn + 3;
    sae.kind = "transcoder";
    sae.dOut = dOut;
    sae.wDec = rng.fillGaussian(new Float32Array(dSae * dOut), 1 / Math.sqrt(dOut));
    sae.bDec = rng.fillGaussian(new Float32Array(dOut), 0.1);
    if (v.skip) sae.wSkip = rng.fillGaussian(new Float32Array(dIn * dOut), 0.2);
  }
  return sae;
}

/** Every architecture × normalisation, plus transcoders with and without skip. */
export const VARIANTS: Variant[] = [
  ...(["standard", "jumprelu", "topk", "gated"] as const).flatMap((architecture) =>
    (["none", "constant_norm_rescale", "layer_norm"] as const).map((normalize) => ({
      architecture,
      normalize,
    }))
  ),
  { architecture: "standard", applyBDec: false },
  { architecture: "topk", rescale: true },
  { architecture: "topk", rescale: true, normalize: "layer_norm" },
  { architecture: "jumprelu", kind: "transcoder" },
  { architecture: "jumprelu", kind: "transcoder", skip: true, normalize: "layer_norm" },
  { architecture: "gated", kind: "transcoder", skip: true, normalize: "constant_norm_rescale" },
];
