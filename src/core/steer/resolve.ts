/**
 * Resolving a policy's steer action against loaded SAEs: whether an SAE can
 * be steered by latent, a latent's read-out and decoder direction, and the
 * operation (with its vectors) a policy action becomes for one hook. Pure:
 * imports nothing outside `src/core`.
 *
 * @module
 */
import type { SteerAction } from "../policy/ast.ts";
import { saeDOut, type SaeWeights } from "../sae.ts";
import { type LatentRead, type SteerOp, SteerResolveError } from "./protocol.ts";

/**
 * Why latent-based steering cannot be expressed for `sae` (null when it can).
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../sae.ts";
 * declare const sae: SaeWeights;
 * steerableProblem({ ...sae, normalize: "layer_norm" }); // "its input is normalised per token (layer_norm) ..."
 * ```
 */
export function steerableProblem(sae: SaeWeights): string | null {
  if ((sae.kind ?? "sae") === "transcoder") {
    return "it is a transcoder: its decoder writes another hook than the one it reads";
  }
  if ((sae.normalize ?? "none") !== "none") {
    return `its input is normalised per token (${sae.normalize}), so a latent is not an affine read-out of the activation`;
  }
  if (sae.architecture === "gated") {
    return "it is a gated SAE: a latent's value depends on a separate gate, not one affine read-out";
  }
  return null;
}

/**
 * The read-out and decoder direction of latent `index` of `sae` (see
 * `docs/steering.md`): `w` the encoder column, `b` the encoder bias (minus
 * `w·b_dec` when the SAE subtracts `b_dec` from its input), the JumpReLU
 * threshold (0 otherwise), and the decoder row.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../sae.ts";
 * declare const sae: SaeWeights;
 * const { read, direction } = latentVectors(sae, "demo-res", 0);
 * ```
 */
export function latentVectors(
  sae: SaeWeights,
  saeId: string,
  index: number,
): { read: LatentRead; direction: Float32Array } {
  const problem = steerableProblem(sae);
  if (problem) {
    throw new SteerResolveError(`SAE ${saeId}: cannot steer by latent: ${problem}`);
  }
  if (!Number.isSafeInteger(index) || index < 0 || index >= sae.dSae) {
    throw new SteerResolveError(
      `SAE ${saeId}: latent: expected an index in [0, ${sae.dSae}), found ${index}`,
    );
  }
  const { dIn, dSae } = sae;
  const dOut = saeDOut(sae);
  const w = new Float32Array(dIn);
  for (let j = 0; j < dIn; j++) w[j] = sae.wEnc[j * dSae + index];
  let b = sae.bEnc[index];
  if (sae.applyBDecToInput) {
    let s = 0;
    for (let j = 0; j < dIn; j++) s += w[j] * sae.bDec[j];
    b -= s;
  }
  const threshold = sae.architecture === "jumprelu" && sae.threshold ? sae.threshold[index] : 0;
  const direction = sae.wDec.slice(index * dOut, (index + 1) * dOut);
  return { read: { w, b, threshold }, direction };
}

function unit(v: Float32Array, what: string): Float32Array {
  let norm = 0;
  for (const x of v) norm += x * x;
  norm = Math.sqrt(norm);
  if (!(norm > 0) || !Number.isFinite(norm)) {
    throw new SteerResolveError(`${what}: expected a non-zero direction, found norm ${norm}`);
  }
  return v.map((x) => x / norm);
}

/**
 * Turn a policy's steer action into an operation with its vectors, for a
 * hook `dModel` wide. `saes` maps SAE ids to loaded weights. Throws
 * {@linkcode SteerResolveError} naming the SAE and what is wrong.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../sae.ts";
 * declare const saes: Map<string, SaeWeights>;
 * const op = resolveSteerAction({ kind: "clamp", sae: "demo-res", latent: 0, value: 0 }, saes, 64);
 * ```
 */
export function resolveSteerAction(
  action: SteerAction,
  saes: ReadonlyMap<string, SaeWeights>,
  dModel: number,
): SteerOp {
  const sae = (id: string): SaeWeights => {
    const s = saes.get(id);
    if (!s) {
      throw new SteerResolveError(
        `steer ${action.kind}: expected the id of a loaded SAE (${
          [...saes.keys()].join(", ") || "none"
        }), found ${JSON.stringify(id)}`,
      );
    }
    if (s.dIn !== dModel) {
      throw new SteerResolveError(
        `SAE ${id}: expected d_in ${dModel} (the hook's width), found ${s.dIn}`,
      );
    }
    return s;
  };
  const direction = (d: { sae: string; latent: number } | { vector: number[] }, what: string) => {
    if ("vector" in d) {
      if (d.vector.length !== dModel) {
        throw new SteerResolveError(
          `${what}: expected a vector of ${dModel} values (the hook's width), found ${d.vector.length}`,
        );
      }
      return { vector: Float32Array.from(d.vector) };
    }
    return {
      vector: latentVectors(sae(d.sae), d.sae, d.latent).direction,
      latent: { sae: d.sae, index: d.latent },
    };
  };
  switch (action.kind) {
    case "clamp":
    case "ablate": {
      const { read, direction } = latentVectors(sae(action.sae), action.sae, action.latent);
      const latent = { sae: action.sae, index: action.latent };
      return action.kind === "clamp"
        ? { kind: "clamp", value: action.value, latent, read, direction }
        : { kind: "ablate", latent, read, direction };
    }
    case "add": {
      const d = direction(action.direction, "steer add");
      return {
        kind: "add",
        scale: action.scale,
        vector: d.vector,
        ...(d.latent ? { latent: d.latent } : {}),
      };
    }
    case "cap": {
      const d = direction(action.direction, "steer cap");
      return {
        kind: "cap",
        max: action.max,
        direction: unit(d.vector, "steer cap"),
        ...(d.latent ? { latent: d.latent } : {}),
      };
    }
    case "abort":
      return { kind: "abort", ...(action.reason !== undefined ? { reason: action.reason } : {}) };
  }
}
