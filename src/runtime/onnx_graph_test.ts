import assert from "node:assert/strict";
import onnxProto from "onnx-proto";
import { randomSae } from "../formats/random_sae.ts";
import {
  tiny,
  tinyGated,
  tinyLayerNorm,
  tinyNormRescale,
  tinyTranscoder,
} from "../core/testdata/tiny_sae.ts";
import { buildEncoderGraph, buildEncoderModel, decoderNorms } from "./onnx_graph.ts";

const { onnx } = onnxProto;

function ops(bytes: Uint8Array): string[] {
  return onnx.ModelProto.decode(bytes).graph!.node!.map((n) => n.opType!);
}

Deno.test("buildEncoderModel emits the node sequence of each architecture", () => {
  const base = { dIn: 4, dSae: 6, seed: 1 };
  assert.deepEqual(ops(buildEncoderModel(randomSae({ architecture: "standard", ...base }))), [
    "Sub",
    "MatMul",
    "Add",
    "Relu",
  ]);
  assert.deepEqual(
    ops(
      buildEncoderModel(randomSae({ architecture: "standard", applyBDecToInput: false, ...base })),
    ),
    ["MatMul", "Add", "Relu"],
  );
  assert.deepEqual(ops(buildEncoderModel(randomSae({ architecture: "jumprelu", ...base }))), [
    "Sub",
    "MatMul",
    "Add",
    "Greater",
    "Where",
  ]);
  assert.deepEqual(ops(buildEncoderModel(randomSae({ architecture: "topk", k: 2, ...base }))), [
    "Sub",
    "MatMul",
    "Add",
    "TopK",
    "Relu",
  ]);
  assert.deepEqual(
    ops(
      buildEncoderModel(
        randomSae({ architecture: "topk", k: 2, rescaleActsByDecoderNorm: true, ...base }),
      ),
    ),
    ["Sub", "MatMul", "Add", "Mul", "TopK", "Relu"],
  );
});

Deno.test("buildEncoderModel: opset 17, dynamic batch, weights as raw f32", () => {
  const sae = randomSae({ architecture: "topk", dIn: 4, dSae: 6, k: 3, seed: 2 });
  const model = onnx.ModelProto.decode(buildEncoderModel(sae));
  assert.equal(Number(model.opsetImport![0].version), 17);
  const input = model.graph!.input![0];
  assert.equal(input.name, "x");
  const dims = input.type!.tensorType!.shape!.dim!;
  assert.equal(dims[0].dimParam, "N");
  assert.equal(Number(dims[1].dimValue), 4);
  const wEnc = model.graph!.initializer!.find((t) => t.name === "W_enc")!;
  assert.deepEqual(wEnc.dims!.map(Number), [4, 6]);
  // Copy: decoded bytes may be a Node Buffer view into a shared pool.
  const raw = wEnc.rawData!;
  assert.deepEqual(new Float32Array(new Uint8Array(raw).buffer), sae.wEnc);
  const k = model.graph!.initializer!.find((t) => t.name === "k")!;
  assert.equal(new BigInt64Array(new Uint8Array(k.rawData!).buffer)[0], 3n);
});

Deno.test("decoderNorms are the row norms of W_dec", () => {
  // rows [3, 4] and [0, 0.5] → norms 5 and 0.5
  const sae = randomSae({ architecture: "topk", dIn: 2, dSae: 2, k: 1, seed: 1 });
  sae.wDec = new Float32Array([3, 4, 0, 0.5]);
  assert.deepEqual([...decoderNorms(sae)], [5, 0.5]);
});

Deno.test("buildEncoderModel: gated and normalised graphs", () => {
  assert.deepEqual(ops(buildEncoderModel(tinyGated())), [
    "Sub",
    "MatMul",
    "Add",
    "Greater",
    "Mul",
    "Add",
    "Relu",
    "Where",
  ]);
  assert.deepEqual(ops(buildEncoderModel(tinyNormRescale())), [
    "ReduceSumSquare",
    "Sqrt",
    "Div",
    "Greater",
    "Where",
    "Mul",
    "Sub",
    "MatMul",
    "Add",
    "Relu",
  ]);
  assert.deepEqual(ops(buildEncoderModel(tinyLayerNorm())), [
    "ReduceMean",
    "Sub",
    "ReduceSumSquare",
    "Div",
    "Sqrt",
    "Add",
    "Div",
    "Sub",
    "MatMul",
    "Add",
    "Relu",
  ]);
  // Transcoders never subtract b_dec.
  assert.deepEqual(ops(buildEncoderModel(tinyTranscoder())), ["MatMul", "Add", "Relu"]);
});

Deno.test("buildEncoderGraph: a watched graph holds only the watched columns", () => {
  const sae = tinyGated();
  const g = buildEncoderGraph(sae, { watch: new Uint32Array([2, 0, 2]) }).graph!;
  const init = (name: string) => {
    const t = g.initializer!.find((i) => i.name === name)!;
    return {
      dims: t.dims!.map(Number),
      values: [...new Float32Array(new Uint8Array(t.rawData!).buffer)],
    };
  };
  // W_enc = [[1, −1, 0.5], [2, 0, −1]] → columns {0, 2} = [[1, 0.5], [2, −1]]
  assert.deepEqual(init("W_enc"), { dims: [2, 2], values: [1, 0.5, 2, -1] });
  assert.deepEqual(init("b_gate"), { dims: [2], values: [-2, 1] });
  assert.deepEqual(init("b_mag"), { dims: [2], values: [-1, 0.25] });
  assert.deepEqual(init("exp_r_mag").values.map((v) => Math.round(v * 1e6) / 1e6), [2, 1]);
  assert.equal(Number(g.output![0].type!.tensorType!.shape!.dim![1].dimValue), 2);
  // TopK ignores the watch (membership needs every latent): full W_enc.
  const tk = buildEncoderGraph(tiny({ architecture: "topk", k: 1 }), {
    watch: new Uint32Array([1]),
  });
  assert.deepEqual(tk.graph!.initializer!.find((i) => i.name === "W_enc")!.dims!.map(Number), [
    2,
    3,
  ]);
  // The full graph's W_enc is a view of the SAE's array, not a copy.
  const full = buildEncoderGraph(sae).graph!.initializer!.find((i) => i.name === "W_enc")!;
  assert.equal(full.rawData!.buffer, sae.wEnc.buffer);
});

Deno.test("decoderNorms use the decoder's own width (transcoders: dOut)", () => {
  // tinyTranscoder W_dec rows [1, 0, 0], [0, 1, 0], [0, 0, 2] → norms [1, 1, 2]
  assert.deepEqual([...decoderNorms(tinyTranscoder())], [1, 1, 2]);
});
