import assert from "node:assert/strict";
import onnxProto from "onnx-proto";
import { randomSae } from "../formats/random_sae.ts";
import { buildEncoderModel, decoderNorms } from "./onnx_graph.ts";

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
