/**
 * Reading the tensors of a Gemma Scope JumpReLU SAE or transcoder, shared by
 * Gemma Scope 1 and 2: `w_enc [d_in, d_sae]`, `w_dec [d_sae, d_out]`,
 * `b_enc`, `b_dec` and `threshold` under the names each version uses, with
 * no transposes and no `b_dec` subtraction.
 *
 * @module
 */
import type { SaeWeights } from "../core/sae.ts";
import { SaeFormatError } from "./errors.ts";
import { type SaeLoadOptions, type TensorSource, WeightReader } from "./weights.ts";

/** The stored names of a JumpReLU SAE's tensors. */
export interface JumpReluNames {
  wEnc: string;
  wDec: string;
  bEnc: string;
  bDec: string;
  threshold: string;
}

/** Read a JumpReLU SAE/transcoder stored `w_enc [d_in, d_sae]`, `w_dec [d_sae, d_out]` (no transposes). */
export async function readJumpRelu(
  source: TensorSource,
  o: {
    names: JumpReluNames;
    what: string;
    configPath: string;
    width: number | null;
    widthFrom: string;
    skipName?: string;
    /** CLT: take `w_dec[:, layer, :]` of a `[d_sae, n_layers, d_out]` decoder. */
    cltLayer?: number;
    onProgress?: SaeLoadOptions["onProgress"];
  },
): Promise<SaeWeights> {
  const n = o.names;
  const encShape = source.info(n.wEnc)?.shape;
  const decShape = source.info(n.wDec)?.shape;
  // Annotated so the never-returning r.missing() narrows below.
  const r: WeightReader = new WeightReader(source, {
    what: o.what,
    configPath: o.configPath,
    wanted: [n.wEnc, n.wDec, n.bEnc, n.bDec, n.threshold, ...(o.skipName ? [o.skipName] : [])],
    onProgress: o.onProgress,
  });
  if (!encShape) r.missing(n.wEnc, { shape: [NaN, NaN], dims: "[d_in, d_sae]" });
  if (encShape.length !== 2) {
    throw new SaeFormatError(
      `${source.path}: tensor '${n.wEnc}' has shape [${encShape}], expected [d_in, d_sae] (2-D)`,
    );
  }
  const [dIn, dSae] = encShape;
  if (o.width !== null && dSae !== o.width) {
    throw new SaeFormatError(
      `${source.path}: tensor '${n.wEnc}' has shape [${encShape}], expected d_sae = ${o.width} from ${o.widthFrom}`,
    );
  }
  const clt = o.cltLayer !== undefined;
  if (!decShape) r.missing(n.wDec, { shape: [dSae, NaN], dims: "[d_sae, d_out]" });
  const dOut = decShape[decShape.length - 1];
  if (clt && (decShape.length !== 3 || o.cltLayer! >= decShape[1])) {
    throw new SaeFormatError(
      `${source.path}: tensor '${n.wDec}' has shape [${decShape}], expected [d_sae, n_layers, d_out] = [${dSae}, >${o.cltLayer}, d_out] for source layer ${o.cltLayer} of a cross-layer transcoder`,
    );
  }
  const wEnc = await r.f32(n.wEnc, { shape: [dIn, dSae], dims: "[d_in, d_sae]" });
  const wDec = clt
    ? await r.f32(n.wDec, {
      shape: [dSae, decShape[1], dOut],
      dims: "[d_sae, n_layers, d_out]",
      layout: { select: o.cltLayer! },
    })
    : await r.f32(n.wDec, { shape: [dSae, dOut], dims: "[d_sae, d_out]" });
  const sae: SaeWeights = {
    format: "gemma-scope",
    architecture: "jumprelu",
    dIn,
    dSae,
    hookName: null,
    modelName: null,
    dtype: diskDtype(r.dtype(n.wEnc)),
    // Gemma Scope never subtracts b_dec from the input (§2.1).
    applyBDecToInput: false,
    wEnc,
    bEnc: await r.f32(n.bEnc, { shape: [dSae], dims: "[d_sae]" }),
    wDec,
    bDec: await r.f32(n.bDec, { shape: [dOut], dims: "[d_out]" }),
    threshold: await r.f32(n.threshold, { shape: [dSae], dims: "[d_sae]" }),
    source: source.path,
  };
  if (dOut !== dIn) {
    sae.kind = "transcoder";
    sae.dOut = dOut;
  }
  if (o.skipName) {
    // affine_skip_connection is [d_in, d_out] and used as x @ A, untransposed
    // (the Gemma Scope 2 tutorial); our wSkip has the same meaning.
    sae.wSkip = await r.f32(o.skipName, { shape: [dIn, dOut], dims: "[d_in, d_out]" });
  }
  return sae;
}

function diskDtype(d: string | undefined): SaeWeights["dtype"] {
  if (d === "F16" || d === "f16") return "float16";
  if (d === "BF16") return "bfloat16";
  return "float32";
}
