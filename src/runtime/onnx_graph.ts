/**
 * Builds the ONNX encoder graph of an SAE in-process from its weights, so no
 * Python export step exists and the graph always matches the loaded cfg.
 *
 *   x [N, d_in] ─normalise?─Sub(b_dec)?─MatMul(W_enc)─→ xw [N, d]     (d = d_sae, or |watch|)
 *   normalise: constant_norm_rescale  x·Where(‖x‖ > 0, √d_in/‖x‖, 0)
 *              layer_norm             (x − μ)/(√(Σ(x − μ)²/(d_in − 1)) + 1e-5)
 *   standard:  f = Relu(xw + b_enc)
 *   jumprelu:  f = Where(Greater(h, max(θ, 0)), h, 0)  (= relu(h)·[h > θ]), h = xw + b_enc
 *   gated:     f = Where(Greater(xw + b_gate, 0), Relu(xw·exp(r_mag) + b_mag), 0)
 *   topk:      h' = h · ‖W_dec[i,:]‖ (if rescaling); values, indices = TopK(h', k); Relu(values)
 *
 * Watched latents: for standard, jumprelu and gated every latent depends only
 * on its own encoder column and parameters, so a graph holding only the
 * watched columns `W_enc[:, S]` (and `b_enc[S]`, `θ[S]`, gate parameters of S)
 * computes exactly the same values for S as the full graph. TopK cannot be
 * cut down: whether a latent is in the top k depends on every other latent,
 * so its graph is always the full one ({@linkcode watchIsCheap} says which).
 *
 * @module
 */

import onnxProto from "onnx-proto";
import type { onnx as OnnxTypes } from "onnx-proto";
import { LAYER_NORM_EPS } from "../core/reference_encoder.ts";
import { assertEncodable, canonicalWatch } from "../core/encoder_checks.ts";
import type { SaeWeights } from "../core/sae.ts";
import { encoderColumns, type ProgressFn } from "./matrix.ts";
import { saeDOut } from "../core/sae.ts";

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const ATTR_INT = onnx.AttributeProto.AttributeType.INT;
const ATTR_INTS = onnx.AttributeProto.AttributeType.INTS;

/** Opset the graph targets. */
export const ENCODER_OPSET = 17;
/** Graph input: `float [N, d_in]`. */
export const INPUT_NAME = "x";
/** Dense output of standard, JumpReLU and gated graphs: `float [N, d_sae]` (or `[N, |watch|]`). */
export const DENSE_OUTPUT = "f";
/** TopK outputs: `float [N, k]` (relu'd) and `int64 [N, k]`. */
export const TOPK_VALUES = "topk_values";
export const TOPK_INDICES = "topk_indices";

/**
 * True when a watched-latent graph is cheaper than the full one: standard,
 * JumpReLU and gated SAEs compute only the watched columns. TopK must compute
 * all of `h` to know the top k, so watching saves nothing there.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights;
 * declare const policyLatents: Uint32Array;
 * const watch = watchIsCheap(sae) ? policyLatents : undefined;
 * ```
 */
export function watchIsCheap(sae: SaeWeights): boolean {
  return sae.architecture !== "topk";
}

/** A float initializer whose bytes are a view of `values` (never a copy). */
export function floatInit(
  name: string,
  dims: number[],
  values: Float32Array,
): OnnxTypes.ITensorProto {
  return {
    name,
    dims,
    dataType: FLOAT,
    rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  };
}

/** A tensor value info with a symbolic (string) or fixed (number) shape. */
export function valueInfo(
  name: string,
  elemType: number,
  dims: (number | string)[],
): OnnxTypes.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: {
          dim: dims.map((d) => (typeof d === "string" ? { dimParam: d } : { dimValue: d })),
        },
      },
    },
  };
}

/** A node named after its first output. */
export function node(
  opType: string,
  input: string[],
  output: string[],
  attribute: OnnxTypes.IAttributeProto[] = [],
): OnnxTypes.INodeProto {
  return { opType, input, output, name: output[0], attribute };
}

/** Wrap a graph in an opset-17 model. */
export function modelOf(graph: OnnxTypes.IGraphProto): OnnxTypes.IModelProto {
  return {
    irVersion: 8,
    producerName: "latentwatch",
    opsetImport: [{ domain: "", version: ENCODER_OPSET }],
    graph,
  };
}

/** `‖W_dec[i, :]‖₂` for every latent (rows of `[dSae, dOut]`), accumulated in f64. */
export function decoderNorms(sae: SaeWeights): Float32Array {
  const dOut = saeDOut(sae);
  const norms = new Float32Array(sae.dSae);
  for (let i = 0; i < sae.dSae; i++) {
    let sq = 0;
    for (let j = 0; j < dOut; j++) sq += sae.wDec[i * dOut + j] ** 2;
    norms[i] = Math.sqrt(sq);
  }
  return norms;
}

/** Options for {@linkcode buildEncoderGraph}. */
export interface EncoderGraphOptions {
  /**
   * Latents to compute (any order, duplicates ignored). Standard, JumpReLU and
   * gated graphs then hold only these encoder columns and output `[N, |watch|]`
   * in ascending latent order; a TopK graph stays full (see the module doc).
   */
  watch?: Uint32Array;
  onProgress?: ProgressFn;
}

/** Gather `values[S]`. */
function pick(values: Float32Array, watch: Uint32Array | null): Float32Array {
  return watch ? Float32Array.from(watch, (i) => values[i]) : values;
}

/**
 * The nodes that turn the graph input into what `W_enc` multiplies:
 * normalisation (`constant_norm_rescale`, `layer_norm`) and `− b_dec`
 * (SAEs that apply it). Appends to `nodes` and `inits`; returns the name of
 * the prepared input (`x` itself when there is nothing to do).
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights;
 * const nodes: ReturnType<typeof node>[] = [];
 * const inits: ReturnType<typeof floatInit>[] = [];
 * preprocessInput(sae, nodes, inits); // "x", "x_normed" or "x_centered"
 * ```
 */
export function preprocessInput(
  sae: SaeWeights,
  nodes: OnnxTypes.INodeProto[],
  inits: OnnxTypes.ITensorProto[],
): string {
  const { dIn } = sae;
  const scalar = (name: string, v: number) =>
    inits.push(floatInit(name, [], new Float32Array([v])));
  let input = INPUT_NAME;
  const keepdims: OnnxTypes.IAttributeProto[] = [
    { name: "axes", type: ATTR_INTS, ints: [-1] },
    { name: "keepdims", type: ATTR_INT, i: 1 },
  ];
  switch (sae.normalize ?? "none") {
    case "none":
      break;
    case "constant_norm_rescale":
      scalar("sqrt_d_in", Math.sqrt(dIn));
      scalar("zero_n", 0);
      nodes.push(node("ReduceSumSquare", [input], ["x_sumsq"], keepdims));
      nodes.push(node("Sqrt", ["x_sumsq"], ["x_norm"]));
      nodes.push(node("Div", ["sqrt_d_in", "x_norm"], ["x_coeff_raw"]));
      // A zero vector would give 0·∞ = NaN; take c = 0 so it encodes as 0 (as the reference).
      nodes.push(node("Greater", ["x_norm", "zero_n"], ["x_nonzero"]));
      nodes.push(node("Where", ["x_nonzero", "x_coeff_raw", "zero_n"], ["x_coeff"]));
      nodes.push(node("Mul", [input, "x_coeff"], ["x_normed"]));
      input = "x_normed";
      break;
    case "layer_norm":
      // ONNX LayerNormalization uses the biased variance with eps inside the sqrt;
      // SAELens uses torch.std (unbiased) and adds eps to σ, so spell it out.
      scalar("d_in_minus_1", dIn - 1);
      scalar("ln_eps", LAYER_NORM_EPS);
      nodes.push(node("ReduceMean", [input], ["x_mean"], keepdims));
      nodes.push(node("Sub", [input, "x_mean"], ["x_centred"]));
      nodes.push(node("ReduceSumSquare", ["x_centred"], ["x_ss"], keepdims));
      nodes.push(node("Div", ["x_ss", "d_in_minus_1"], ["x_var"]));
      nodes.push(node("Sqrt", ["x_var"], ["x_std"]));
      nodes.push(node("Add", ["x_std", "ln_eps"], ["x_den"]));
      nodes.push(node("Div", ["x_centred", "x_den"], ["x_normed"]));
      input = "x_normed";
      break;
  }
  if (sae.applyBDecToInput && (sae.kind ?? "sae") === "sae") {
    inits.push(floatInit("b_dec", [dIn], sae.bDec));
    nodes.push(node("Sub", [input, "b_dec"], ["x_centered"]));
    input = "x_centered";
  }
  return input;
}

/**
 * The encoder graph of `sae` as an ONNX model object (opset 17, dynamic batch
 * dimension `N`). Float initializers are views of the SAE's arrays, so
 * building it copies no full weight matrix (a watched graph copies only its
 * columns).
 *
 * @throws {EncoderConfigError} for an SAE that {@linkcode assertEncodable} rejects
 * @throws {EncoderInputError} for a watched latent ≥ dSae
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights;
 * const model = buildEncoderGraph(sae, { watch: new Uint32Array([3, 17]) });
 * model.graph!.output![0].name; // "f": [N, 2], latents 3 and 17
 * ```
 */
export function buildEncoderGraph(
  sae: SaeWeights,
  opts: EncoderGraphOptions = {},
): OnnxTypes.IModelProto {
  assertEncodable(sae);
  const { dIn, dSae } = sae;
  // Validated for every architecture, even TopK whose graph ignores it.
  const watched = opts.watch ? canonicalWatch(opts.watch, dSae) : null;
  const watch = watched && watchIsCheap(sae) ? watched : null;
  const width = watch ? watch.length : dSae;
  const nodes: OnnxTypes.INodeProto[] = [];
  const inits: OnnxTypes.ITensorProto[] = [];
  const scalar = (name: string, v: number) =>
    inits.push(floatInit(name, [], new Float32Array([v])));

  const input = preprocessInput(sae, nodes, inits);
  inits.unshift(floatInit("W_enc", [dIn, width], encoderColumns(sae, watch, opts.onProgress)));
  nodes.push(node("MatMul", [input, "W_enc"], ["x_W_enc"]));

  const outputs: OnnxTypes.IValueInfoProto[] = [];
  const zero = () => scalar("zero", 0);
  switch (sae.architecture) {
    case "standard":
      inits.push(floatInit("b_enc", [width], pick(sae.bEnc, watch)));
      nodes.push(node("Add", ["x_W_enc", "b_enc"], ["h"]));
      nodes.push(node("Relu", ["h"], [DENSE_OUTPUT]));
      outputs.push(valueInfo(DENSE_OUTPUT, FLOAT, ["N", width]));
      break;
    case "jumprelu": {
      inits.push(floatInit("b_enc", [width], pick(sae.bEnc, watch)));
      nodes.push(node("Add", ["x_W_enc", "b_enc"], ["h"]));
      // relu(h)·[h > θ] equals h·[h > max(θ, 0)] exactly (both are h when h > max(θ, 0)
      // and 0 otherwise), so one comparison and one select replace four full passes.
      const gate = pick(sae.threshold!, watch).map((t) => Math.max(t, 0));
      inits.push(floatInit("threshold", [width], gate));
      zero();
      nodes.push(node("Greater", ["h", "threshold"], ["above"]));
      nodes.push(node("Where", ["above", "h", "zero"], [DENSE_OUTPUT]));
      outputs.push(valueInfo(DENSE_OUTPUT, FLOAT, ["N", width]));
      break;
    }
    case "gated": {
      const { bGate, rMag, bMag } = sae.gated!;
      inits.push(floatInit("b_gate", [width], pick(bGate, watch)));
      // exp(r_mag) once at build time (f64, rounded to f32) instead of per batch.
      inits.push(floatInit("exp_r_mag", [width], pick(rMag, watch).map(Math.exp)));
      inits.push(floatInit("b_mag", [width], pick(bMag, watch)));
      zero();
      nodes.push(node("Add", ["x_W_enc", "b_gate"], ["gate_pre"]));
      nodes.push(node("Greater", ["gate_pre", "zero"], ["gate_open"]));
      nodes.push(node("Mul", ["x_W_enc", "exp_r_mag"], ["mag_scaled"]));
      nodes.push(node("Add", ["mag_scaled", "b_mag"], ["mag_pre"]));
      nodes.push(node("Relu", ["mag_pre"], ["mag"]));
      nodes.push(node("Where", ["gate_open", "mag", "zero"], [DENSE_OUTPUT]));
      outputs.push(valueInfo(DENSE_OUTPUT, FLOAT, ["N", width]));
      break;
    }
    case "topk": {
      const k = sae.k!;
      inits.push(floatInit("b_enc", [dSae], sae.bEnc));
      nodes.push(node("Add", ["x_W_enc", "b_enc"], ["h"]));
      let scores = "h";
      if (sae.rescaleActsByDecoderNorm) {
        inits.push(floatInit("dec_norm", [dSae], decoderNorms(sae)));
        nodes.push(node("Mul", ["h", "dec_norm"], ["h_scaled"]));
        scores = "h_scaled";
      }
      inits.push({
        name: "k",
        dims: [1],
        dataType: INT64,
        rawData: new Uint8Array(new BigInt64Array([BigInt(k)]).buffer),
      });
      // ONNX TopK breaks ties by the lower index, the same rule as the reference.
      nodes.push(
        node("TopK", [scores, "k"], ["topk_raw", TOPK_INDICES], [
          { name: "axis", type: ATTR_INT, i: -1 },
          { name: "largest", type: ATTR_INT, i: 1 },
          { name: "sorted", type: ATTR_INT, i: 1 },
        ]),
      );
      nodes.push(node("Relu", ["topk_raw"], [TOPK_VALUES]));
      outputs.push(
        valueInfo(TOPK_VALUES, FLOAT, ["N", k]),
        valueInfo(TOPK_INDICES, INT64, ["N", k]),
      );
      break;
    }
  }

  return modelOf({
    name: `sae_encoder_${sae.architecture}${watch ? "_watched" : ""}`,
    node: nodes,
    initializer: inits,
    input: [valueInfo(INPUT_NAME, FLOAT, ["N", dIn])],
    output: outputs,
  });
}

/** Total bytes of the initializers' raw data. */
export function initializerBytes(model: OnnxTypes.IModelProto): number {
  let n = 0;
  for (const t of model.graph?.initializer ?? []) n += t.rawData?.byteLength ?? 0;
  return n;
}

/**
 * Serialise the encoder of `sae` as one in-memory ONNX protobuf (weights
 * embedded). Protobuf caps a message at 2 GB, so large SAEs go through
 * {@linkcode writeModelWithExternalData} instead.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights;
 * import * as ort from "onnxruntime-node";
 * const session = await ort.InferenceSession.create(buildEncoderModel(sae));
 * ```
 */
export function buildEncoderModel(sae: SaeWeights, opts: EncoderGraphOptions = {}): Uint8Array {
  return onnx.ModelProto.encode(buildEncoderGraph(sae, opts)).finish();
}
