/**
 * The first pass of the candidate encoder: an int8 ONNX graph that finds,
 * per token, every latent that can be active (a superset, proven), so the
 * second pass recomputes only those exactly in f32 (`candidate_encoder.ts`).
 *
 *   xp = prepared input (normalise, − b_dec), output as is
 *   q, s, z = DynamicQuantizeLinear(xp)     x̂ = s·(q − z), e = xp − x̂ (TopK: one scale per batch;
 *                                           the others: s = max|xp|/127 per token, z = 128)
 *   a_j = x̂ · (σ_j Ŵ_j)·f_j + c_j           MatMulIntegerToFloat: int8 weights (VNNI),
 *                                           column scaling f and bias c fused
 *
 * With Ŵ_j = round(W_j/σ_j) per column (σ_j = max|W_j|/127), `ew_j = W_j − σ_jŴ_j`:
 *   xp·W_j − x̂·σ_jŴ_j = x̂·ew_j + e·W_j,  |x̂·ew_j| ≤ ‖x̂‖‖ew_j‖,  |e·W_j| ≤ ‖e‖‖W_j‖
 * (Cauchy–Schwarz). One bound per token covers every column (after scaling
 * by f_j): `‖x̂‖·max_j(‖ew_j‖f_j) + ‖e‖·max_j(‖W_j‖f_j)`, plus rounding: an
 * f32 GEMM's own error (≤ γ‖xp‖‖W_j‖, γ = d_in·2⁻²⁴, counted twice: the
 * reference's and ours), the float arithmetic here (2⁻¹⁸‖x̂‖‖σ_jŴ_j‖), all × 1.001.
 *
 * The candidates of a token are the latents with `a_j > cut` (`token_bounds`;
 * `a` is an output for TopK, else computed by the second pass from the int32
 * accumulations `acc`, the scale `x_s` and `columnScale`/`columnBias`):
 * - standard / JumpReLU / gated: f_j = 1/‖W_j‖, c_j = −T_j·f_j with T_j the level
 *   the pre-activation must exceed (`max(θ_j, 0) − b_enc_j`, `−b_enc_j`,
 *   `−b_gate_j`, lowered for rounding); `cut = −bound`;
 * - TopK: f_j the decoder norm when rescaling (else 1), c_j = b_enc_j·f_j, so `a`
 *   is the scores; `cut = kth_largest(a) − 2·bound`: a latent of the true top k
 *   scores at least the true k-th score, itself ≥ kth − bound.
 * Each column's own bound (`bounds`, ≤ the token's) then narrows them down.
 *
 * @module
 */
import onnxProto from "onnx-proto";
import type { onnx as OnnxTypes } from "onnx-proto";
import { assertEncodable } from "../core/encoder_checks.ts";
import type { SaeWeights } from "../core/sae.ts";
import {
  decoderNorms,
  floatInit,
  INPUT_NAME,
  node,
  preprocessInput,
  valueInfo,
} from "./onnx_graph.ts";
import { quantizeColumns, type QuantizedColumns } from "./quantized_columns.ts";

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT8 = onnx.TensorProto.DataType.INT8;
const UINT8 = onnx.TensorProto.DataType.UINT8;
const INT32 = onnx.TensorProto.DataType.INT32;
const INT64 = onnx.TensorProto.DataType.INT64;
const ATTR_INT = onnx.AttributeProto.AttributeType.INT;
const ATTR_INTS = onnx.AttributeProto.AttributeType.INTS;

/** Output: the prepared input, `float [N, d_in]`. */
export const PREPARED_OUTPUT = "xp";
/** Output (TopK, product in the graph): `float [N, d_sae]`, the approximate scores `a`. */
export const APPROX_OUTPUT = "a";
/** Output (other SAEs): `int32 [N, d_sae]`, `a = acc·x_s·columnScale + columnBias`. */
export const ACC_OUTPUT = "acc";
/**
 * Output (with {@linkcode CandidateGraphOptions.externalProduct}):
 * `uint8 [N, d_in]`, the quantized input `q` (zero point 128) whose product
 * `acc = Σ (q − 128)·Ŵ` runs outside the graph (`native_kernels.ts`).
 */
export const QUANTIZED_OUTPUT = "x_q";
/**
 * Output: the input's quantization scale `x_s`: `[N, 1]`, one per token, or
 * one float for the batch (TopK with the product in the graph).
 */
export const SCALE_OUTPUT = "x_s";
/**
 * Output: `float [N, 5]` per token: `‖x̂‖`, `‖e‖`, `‖xp‖`, the uniform bound and
 * the cut: the candidates are the latents with `a_j > cut` (`−bound`; TopK:
 * `kth − 2·bound`), and of those, the ones whose own column bound passes.
 */
export const TOKEN_OUTPUT = "token_bounds";

/** TopK's cut is lowered by this, relative and absolute, for rounding (`topkCut`, `topkCutOf`). */
const TOPK_CUT_SLACK = 1e-5;
/** Relative inflation of every bound term, for the float arithmetic that computes it. */
const INFLATE = 1.001;

/**
 * Per-column factors of the tight bound (scaled as the GEMM's columns):
 * `bound_j = ‖x̂‖·hat_j + ‖e‖·err_j + ‖xp‖·x_j ≤` the token's uniform bound.
 */
export interface ColumnBounds {
  hat: Float64Array;
  err: Float64Array;
  x: Float64Array;
}

/** The graph and what the second pass needs of the weights. */
export interface CandidateGraph {
  model: OnnxTypes.IModelProto;
  columns: QuantizedColumns;
  bounds: ColumnBounds;
  /** `σ_j·f_j`: with `x_s`, the scale of column j's accumulations (`ACC_OUTPUT`). */
  columnScale: Float64Array;
  /** `bias'_j` (f32), added after scaling. */
  columnBias: Float32Array;
}

/** Options for {@linkcode buildCandidateGraph}. */
export interface CandidateGraphOptions {
  /**
   * Leave the int8 product out and output the quantized input
   * (`QUANTIZED_OUTPUT`) instead of `acc` or `a`, for a faster kernel to
   * compute the same integers (default false). The input is then quantized
   * per token for TopK too, and TopK's `cut` column holds `−bound` until the
   * caller, who has the scores, replaces it with `kth − 2·bound` lowered as
   * here (`topkCutOf`).
   */
  externalProduct?: boolean;
}

/**
 * The candidate graph of `sae` (see the module doc) and its quantized columns.
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights;
 * const { model } = buildCandidateGraph(sae);
 * model.graph!.output!.map((o) => o.name); // ["xp", "acc", "x_s", "token_bounds"]
 * ```
 */
export function buildCandidateGraph(
  sae: SaeWeights,
  opts: CandidateGraphOptions = {},
): CandidateGraph {
  assertEncodable(sae);
  const { dIn, dSae } = sae;
  const external = opts.externalProduct === true;
  const columns = quantizeColumns(sae.wEnc, dIn, dSae);
  const nodes: OnnxTypes.INodeProto[] = [];
  const inits: OnnxTypes.ITensorProto[] = [];
  const ms = (n: OnnxTypes.INodeProto) => ({ ...n, domain: "com.microsoft" });
  const axesLast = (keep: number): OnnxTypes.IAttributeProto[] => [
    { name: "axes", type: ATTR_INTS, ints: [-1] },
    { name: "keepdims", type: ATTR_INT, i: keep },
  ];
  const vector = (name: string, values: ArrayLike<number>) =>
    inits.push(floatInit(name, [values.length], Float32Array.from(values)));

  const input = preprocessInput(sae, nodes, inits);
  nodes.push(node("Identity", [input], [PREPARED_OUTPUT]));
  if (!external) {
    inits.push({
      name: "w_q",
      dims: [dIn, dSae],
      dataType: INT8,
      rawData: new Uint8Array(columns.q.buffer, columns.q.byteOffset, columns.q.byteLength),
    });
  }
  const topk = sae.architecture === "topk";
  // the graph's TopK product takes one input scale; a product outside it takes one per token
  const batchScale = topk && !external;
  if (batchScale) {
    // one scale per batch: MatMulIntegerToFloat below takes a scalar input scale
    nodes.push(node("DynamicQuantizeLinear", [PREPARED_OUTPUT], ["x_q", "x_s", "x_z"]));
  } else {
    // one scale per token, symmetric: q = 128 + round(xp/s), s = max|xp|/127 (a token's own
    // range, not the batch's widest, so ‖e‖ is smaller); the sums are scaled per token later
    const constant = (name: string, v: number) =>
      inits.push(floatInit(name, [], new Float32Array([v])));
    constant("q_levels", 127);
    constant("q_tiny", 1e-30);
    constant("q_mid", 128);
    constant("q_lo", 0);
    constant("q_hi", 255);
    inits.push({ name: "x_z", dims: [], dataType: UINT8, rawData: new Uint8Array([128]) });
    nodes.push(node("Abs", [PREPARED_OUTPUT], ["x_abs"]));
    nodes.push(node("ReduceMax", ["x_abs"], ["x_amax"], axesLast(1)));
    nodes.push(node("Div", ["x_amax", "q_levels"], ["x_s_raw"]));
    nodes.push(node("Max", ["x_s_raw", "q_tiny"], ["x_s"]));
    nodes.push(node("Div", [PREPARED_OUTPUT, "x_s"], ["x_scaled"]));
    nodes.push(node("Round", ["x_scaled"], ["x_round"]));
    nodes.push(node("Add", ["x_round", "q_mid"], ["x_shift"]));
    nodes.push(node("Clip", ["x_shift", "q_lo", "q_hi"], ["x_clip"]));
    nodes.push(node("Cast", ["x_clip"], ["x_q"], [{ name: "to", type: ATTR_INT, i: UINT8 }]));
  }
  // x̂ = s·(q − z) and e = xp − x̂, exactly as quantized; their norms per token
  nodes.push(node("Cast", ["x_q"], ["x_qf"], [{ name: "to", type: ATTR_INT, i: FLOAT }]));
  nodes.push(node("Cast", ["x_z"], ["x_zf"], [{ name: "to", type: ATTR_INT, i: FLOAT }]));
  nodes.push(node("Sub", ["x_qf", "x_zf"], ["x_qc"]));
  nodes.push(node("Mul", ["x_qc", "x_s"], ["x_hat"]));
  nodes.push(node("Sub", [PREPARED_OUTPUT, "x_hat"], ["x_err"]));
  nodes.push(node("ReduceL2", ["x_hat"], ["n_hat"], axesLast(1)));
  nodes.push(node("ReduceL2", ["x_err"], ["n_err"], axesLast(1)));
  nodes.push(node("ReduceL2", [PREPARED_OUTPUT], ["n_x"], axesLast(1)));
  const scaled = sae.architecture === "topk" ? topkScale(sae) : levelScale(sae, columns.norm);
  // per-token bound = n_hat·(max_j E'_j + 2⁻¹⁸ max_j Ŵn'_j) + (n_err + n_x·2γ)·max_j W'_j,
  // every per-column factor scaled as the matmul's columns are (see levelScale, topkScale)
  const gamma2 = 2 * dIn * 2 ** -24 / (1 - dIn * 2 ** -24);
  const bounds: ColumnBounds = {
    hat: new Float64Array(dSae),
    err: new Float64Array(dSae),
    x: new Float64Array(dSae),
  };
  for (let j = 0; j < dSae; j++) {
    const f = scaled.factor[j];
    bounds.hat[j] = (columns.errNorm[j] + 2 ** -18 * columns.qNorm[j]) * f * INFLATE;
    bounds.err[j] = columns.norm[j] * f * INFLATE;
    bounds.x[j] = columns.norm[j] * f * gamma2 * INFLATE;
  }
  const max = (a: Float64Array) => a.reduce((m, v) => Math.max(m, v), 0);
  const scalar = (name: string, v: number) =>
    inits.push(floatInit(name, [], new Float32Array([v])));
  // f32 rounding up of the maxima keeps the uniform bound ≥ every column's
  scalar("c_hat", max(bounds.hat) * INFLATE);
  scalar("c_err", max(bounds.err) * INFLATE);
  scalar("c_x", max(bounds.x) * INFLATE);
  nodes.push(node("Mul", ["n_hat", "c_hat"], ["b_hat"]));
  nodes.push(node("Mul", ["n_err", "c_err"], ["b_err"]));
  nodes.push(node("Mul", ["n_x", "c_x"], ["b_x"]));
  nodes.push(node("Sum", ["b_hat", "b_err", "b_x"], ["bound"]));
  const columnScale = Float64Array.from(columns.scale, (sc, j) => sc * scaled.factor[j]);
  if (batchScale) {
    // a' = x̂·(σ_j·f_j Ŵ_j) + bias'_j: the int8 GEMM with the column scaling and bias fused,
    // as TopK's k-th score is needed here
    vector("w_scale", columnScale);
    vector("w_bias", scaled.bias);
    nodes.push(ms(node("MatMulIntegerToFloat", [
      "x_q",
      "w_q",
      "x_s",
      "w_scale",
      "x_z",
      "",
      "w_bias",
    ], [APPROX_OUTPUT])));
    topkCut(sae, nodes, inits, axesLast);
  } else {
    // the exact int32 accumulations (the fastest int8 GEMM); the second pass scales them:
    // a'_j = acc_j·x_s·σ_j·f_j + bias'_j
    if (!external) nodes.push(node("MatMulInteger", ["x_q", "w_q", "x_z"], [ACC_OUTPUT]));
    nodes.push(node("Neg", ["bound"], ["cut"]));
  }
  nodes.push(node("Concat", ["n_hat", "n_err", "n_x", "bound", "cut"], [TOKEN_OUTPUT], [
    { name: "axis", type: ATTR_INT, i: 1 },
  ]));
  return {
    columns,
    bounds,
    columnScale,
    columnBias: scaled.bias,
    model: {
      irVersion: 8,
      producerName: "latentwatch",
      opsetImport: [{ domain: "", version: 17 }, { domain: "com.microsoft", version: 1 }],
      graph: {
        name: `sae_candidates_${sae.architecture}`,
        node: nodes,
        initializer: inits,
        input: [valueInfo(INPUT_NAME, FLOAT, ["N", dIn])],
        output: [
          valueInfo(PREPARED_OUTPUT, FLOAT, ["N", dIn]),
          batchScale
            ? valueInfo(APPROX_OUTPUT, FLOAT, ["N", dSae])
            : external
            ? valueInfo(QUANTIZED_OUTPUT, UINT8, ["N", dIn])
            : valueInfo(ACC_OUTPUT, INT32, ["N", dSae]),
          batchScale
            ? valueInfo(SCALE_OUTPUT, FLOAT, [])
            : valueInfo(SCALE_OUTPUT, FLOAT, ["N", 1]),
          valueInfo(TOKEN_OUTPUT, FLOAT, ["N", 5]),
        ],
      },
    },
  };
}

/** How the int8 GEMM's columns are scaled (`factor`) and biased for one architecture. */
interface ColumnScaling {
  factor: Float64Array;
  bias: Float32Array;
}

/**
 * Standard, JumpReLU, gated: column j divided by `W_j = ‖W_enc[:, j]‖`, its
 * bias `−T_j/W_j` (T_j the level the pre-activation must exceed, lowered
 * for f32 rounding), so `a'_j + bound > 0` with one bound per token:
 * `(a_j − T_j)/W_j + bound_j/W_j`, and `bound_j/W_j ≤` the token's bound.
 */
function levelScale(sae: SaeWeights, norms: Float64Array): ColumnScaling {
  const { dSae } = sae;
  const bias = sae.architecture === "gated" ? sae.gated!.bGate : sae.bEnc;
  const factor = new Float64Array(dSae);
  const out = new Float32Array(dSae);
  for (let j = 0; j < dSae; j++) {
    factor[j] = norms[j] > 0 ? 1 / norms[j] : 1;
    const level = (sae.architecture === "jumprelu" ? Math.max(sae.threshold![j], 0) : 0) - bias[j];
    const lowered = level - 2 ** -20 * (1 + Math.abs(level) + Math.abs(bias[j]));
    out[j] = -lowered * factor[j];
  }
  return { factor, bias: out };
}

/** TopK: columns scaled by the decoder norms when rescaling (the scores), biased by `b_enc·n`. */
function topkScale(sae: SaeWeights): ColumnScaling {
  const n = sae.rescaleActsByDecoderNorm ? decoderNorms(sae) : null;
  const factor = Float64Array.from({ length: sae.dSae }, (_, j) => n ? n[j] : 1);
  return { factor, bias: Float32Array.from(sae.bEnc, (b, j) => b * factor[j]) };
}

/**
 * TopK: `a` is the scores `s`; `cut = kth_largest(s) − 2·bound`: a latent of
 * the true top k has `s_j + bound ≥` the true k-th score `≥ kth − bound`.
 */
function topkCut(
  sae: SaeWeights,
  nodes: OnnxTypes.INodeProto[],
  inits: OnnxTypes.ITensorProto[],
  axesLast: (keep: number) => OnnxTypes.IAttributeProto[],
): void {
  inits.push({
    name: "k",
    dims: [1],
    dataType: INT64,
    rawData: new Uint8Array(new BigInt64Array([BigInt(sae.k!)]).buffer),
  });
  nodes.push(node("TopK", ["a", "k"], ["top_a", "top_i"], [
    { name: "axis", type: ATTR_INT, i: -1 },
  ]));
  nodes.push(node("ReduceMin", ["top_a"], ["kth_a"], axesLast(1)));
  // L = kth − 2·bound, lowered for rounding (relative to |L| and a little absolute)
  inits.push(floatInit("two", [], new Float32Array([2])));
  inits.push(floatInit("slack", [], new Float32Array([TOPK_CUT_SLACK])));
  nodes.push(node("Mul", ["bound", "two"], ["bound_2"]));
  nodes.push(node("Sub", ["kth_a", "bound_2"], ["low_raw"]));
  nodes.push(node("Abs", ["low_raw"], ["low_abs"]));
  nodes.push(node("Mul", ["low_abs", "slack"], ["low_rel"]));
  nodes.push(node("Sum", ["low_rel", "slack"], ["low_slack"]));
  nodes.push(node("Sub", ["low_raw", "low_slack"], ["cut"]));
}

/**
 * TopK's cut from a token's k-th largest approximate score and its bound,
 * in f32 as the graph's `topkCut` computes it: `kth − 2·bound`, lowered by
 * `10⁻⁵·(|·| + 1)` for rounding.
 *
 * @example
 * ```ts
 * topkCutOf(3, 0.5) < 2; // true: 3 − 2·0.5, lowered a little
 * ```
 */
export function topkCutOf(kth: number, bound: number): number {
  const f = Math.fround, slack = f(TOPK_CUT_SLACK);
  const low = f(f(kth) - f(f(bound) * 2));
  return f(low - f(f(Math.abs(low) * slack) + slack));
}
