/**
 * Builds the ONNX encoder graph of an SAE in-process from its weights, so no
 * Python export step exists and the graph always matches the loaded cfg.
 *
 *   x [N, d_in] ─Sub(b_dec)?─MatMul(W_enc)─Add(b_enc)─→ h [N, d_sae]
 *   standard: f = Relu(h)
 *   jumprelu: f = Where(Greater(h, max(threshold, 0)), h, 0)  (= relu(h)·[h > threshold])
 *   topk:     h' = h · ‖W_dec[i,:]‖ (if rescaling); values, indices = TopK(h', k); Relu(values)
 *
 * @module
 */

import onnxProto from "onnx-proto";
import type { onnx as OnnxTypes } from "onnx-proto";
import type { SaeWeights } from "../core/sae.ts";

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const ATTR_INT = onnx.AttributeProto.AttributeType.INT;

/** Opset the graph targets. */
export const ENCODER_OPSET = 17;
/** Graph input: `float [N, d_in]`. */
export const INPUT_NAME = "x";
/** Dense output of standard and JumpReLU graphs: `float [N, d_sae]`. */
export const DENSE_OUTPUT = "f";
/** TopK outputs: `float [N, k]` (relu'd) and `int64 [N, k]`. */
export const TOPK_VALUES = "topk_values";
export const TOPK_INDICES = "topk_indices";

function floatInit(name: string, dims: number[], values: Float32Array): OnnxTypes.ITensorProto {
  return {
    name,
    dims,
    dataType: FLOAT,
    rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  };
}

function valueInfo(
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

function node(
  opType: string,
  input: string[],
  output: string[],
  attribute: OnnxTypes.IAttributeProto[] = [],
): OnnxTypes.INodeProto {
  return { opType, input, output, name: output[0], attribute };
}

/** `‖W_dec[i, :]‖₂` for every latent, accumulated in f64. */
export function decoderNorms(sae: SaeWeights): Float32Array {
  const norms = new Float32Array(sae.dSae);
  for (let i = 0; i < sae.dSae; i++) {
    let sq = 0;
    for (let j = 0; j < sae.dIn; j++) sq += sae.wDec[i * sae.dIn + j] ** 2;
    norms[i] = Math.sqrt(sq);
  }
  return norms;
}

/**
 * Serialise the encoder of `sae` as an ONNX model (opset 17, dynamic batch
 * dimension `N`). Weights are embedded as f32 initializers.
 *
 * @throws {TypeError} when a JumpReLU SAE has no threshold or a TopK SAE no k
 *
 * @example
 * ```ts
 * import * as ort from "onnxruntime-node";
 * const session = await ort.InferenceSession.create(buildEncoderModel(sae));
 * ```
 */
export function buildEncoderModel(sae: SaeWeights): Uint8Array {
  const { dIn, dSae } = sae;
  const nodes: OnnxTypes.INodeProto[] = [];
  const inits: OnnxTypes.ITensorProto[] = [
    floatInit("W_enc", [dIn, dSae], sae.wEnc),
    floatInit("b_enc", [dSae], sae.bEnc),
  ];
  let input = INPUT_NAME;
  if (sae.applyBDecToInput) {
    inits.push(floatInit("b_dec", [dIn], sae.bDec));
    nodes.push(node("Sub", [INPUT_NAME, "b_dec"], ["x_centered"]));
    input = "x_centered";
  }
  nodes.push(node("MatMul", [input, "W_enc"], ["x_W_enc"]));
  nodes.push(node("Add", ["x_W_enc", "b_enc"], ["h"]));

  const outputs: OnnxTypes.IValueInfoProto[] = [];
  switch (sae.architecture) {
    case "standard":
      nodes.push(node("Relu", ["h"], [DENSE_OUTPUT]));
      outputs.push(valueInfo(DENSE_OUTPUT, FLOAT, ["N", dSae]));
      break;
    case "jumprelu": {
      if (!sae.threshold) throw new TypeError(`${sae.source}: jumprelu SAE has no threshold`);
      // relu(h)·[h > θ] equals h·[h > max(θ, 0)] exactly (both are h when h > max(θ, 0)
      // and 0 otherwise), so one comparison and one select replace four full passes.
      const gate = sae.threshold.map((t) => Math.max(t, 0));
      inits.push(floatInit("threshold", [dSae], gate));
      inits.push(floatInit("zero", [], new Float32Array([0])));
      nodes.push(node("Greater", ["h", "threshold"], ["above"]));
      nodes.push(node("Where", ["above", "h", "zero"], [DENSE_OUTPUT]));
      outputs.push(valueInfo(DENSE_OUTPUT, FLOAT, ["N", dSae]));
      break;
    }
    case "topk": {
      const k = sae.k;
      if (k === undefined) throw new TypeError(`${sae.source}: topk SAE has no k`);
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

  const model: OnnxTypes.IModelProto = {
    irVersion: 8,
    producerName: "latentwatch",
    opsetImport: [{ domain: "", version: ENCODER_OPSET }],
    graph: {
      name: `sae_encoder_${sae.architecture}`,
      node: nodes,
      initializer: inits,
      input: [valueInfo(INPUT_NAME, FLOAT, ["N", dIn])],
      output: outputs,
    },
  };
  return onnx.ModelProto.encode(model).finish();
}
