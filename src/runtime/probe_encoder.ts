/**
 * Linear probes as encoders: `s = x @ Wᵀ + b` (MatMul + Add), through a
 * Sigmoid for a logistic link, run by onnxruntime (on the CPU, or the
 * execution provider `opts.provider` picks). Every direction is
 * reported for every token, index i = direction i, zero scores included, so
 * the output equals {@linkcode referenceProbe}.
 *
 * @module
 */

import type { onnx as OnnxTypes } from "onnx-proto";
import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import { checkEncodeInput, EncoderConfigError } from "../core/encoder_checks.ts";
import type { Encoder, LinearProbe, SparseLatents } from "../core/sae.ts";
import { floatInit, INPUT_NAME, modelOf, node, valueInfo } from "./onnx_graph.ts";
import { openProviderSession, type ProviderSession } from "./session.ts";
import type { ExecutionProvider, ExecutionProviderSetting, ProviderReport } from "./provider.ts";

/** Graph output of a probe: `float [N, n]`. */
export const PROBE_OUTPUT = "scores";

/**
 * The probe's graph. Directions are stored `[n, dIn]`; the graph needs
 * `[dIn, n]` for `x @ W`, so they are transposed once here (probes are small).
 *
 * @throws {EncoderConfigError} when the arrays disagree with `n` and `dIn`
 *
 * @example
 * ```ts
 * import type { LinearProbe } from "../core/sae.ts";
 * declare const probe: LinearProbe;
 * const model = buildProbeGraph(probe);
 * ```
 */
export function buildProbeGraph(probe: LinearProbe): OnnxTypes.IModelProto {
  const { dIn, n } = probe;
  if (probe.directions.length !== n * dIn || probe.bias.length !== n) {
    throw new EncoderConfigError(
      `${probe.source}: expected directions [${n}, ${dIn}] and bias [${n}], found ${probe.directions.length} and ${probe.bias.length} values`,
    );
  }
  const w = new Float32Array(dIn * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dIn; j++) w[j * n + i] = probe.directions[i * dIn + j];
  }
  const logistic = probe.link === "logistic";
  const nodes = [
    node("MatMul", [INPUT_NAME, "W"], ["xw"]),
    node("Add", ["xw", "b"], [logistic ? "logit" : PROBE_OUTPUT]),
  ];
  if (logistic) nodes.push(node("Sigmoid", ["logit"], [PROBE_OUTPUT]));
  return modelOf({
    name: `probe_${probe.link}`,
    node: nodes,
    initializer: [floatInit("W", [dIn, n], w), floatInit("b", [n], probe.bias)],
    input: [valueInfo(INPUT_NAME, onnxProto.onnx.TensorProto.DataType.FLOAT, ["N", dIn])],
    output: [valueInfo(PROBE_OUTPUT, onnxProto.onnx.TensorProto.DataType.FLOAT, ["N", n])],
  });
}

/**
 * Open an onnxruntime session on a linear probe; `dSae` of the encoder is the
 * number of directions. `provider` as for `createOrtEncoder` (default `cpu`).
 *
 * @throws {TypeError | RangeError} for an unknown provider name
 *
 * @example
 * ```ts
 * import type { LinearProbe } from "../core/sae.ts";
 * declare const probe: LinearProbe, x: Float32Array;
 * const enc = await createProbeEncoder(probe);
 * const [scores] = await enc.encode(x, 1); // indices 0..n−1, one score each
 * enc.provider; // "cpu"
 * ```
 */
export async function createProbeEncoder(
  probe: LinearProbe,
  opts: { intraOpThreads?: number; provider?: ExecutionProviderSetting; spinning?: boolean } = {},
): Promise<Encoder & ProviderReport> {
  const opened = await openProviderSession(buildProbeGraph(probe), {
    provider: opts.provider ?? "cpu",
    intraOpThreads: opts.intraOpThreads,
    spinning: opts.spinning,
  });
  return new ProbeEncoder(opened, probe);
}

class ProbeEncoder implements Encoder, ProviderReport {
  readonly dIn: number;
  readonly dSae: number;
  readonly provider: ExecutionProvider;
  readonly providerNote?: string;
  readonly providerFallback: boolean;
  readonly #session: ort.InferenceSession;

  constructor(opened: ProviderSession, probe: LinearProbe) {
    this.#session = opened.session;
    this.provider = opened.provider;
    if (opened.providerNote !== undefined) this.providerNote = opened.providerNote;
    this.providerFallback = opened.providerFallback;
    this.dIn = probe.dIn;
    this.dSae = probe.n;
  }

  async encode(x: Float32Array, tokens: number): Promise<SparseLatents[]> {
    const len = checkEncodeInput(x, tokens, this.dIn);
    if (tokens === 0) return [];
    const input = new ort.Tensor("float32", x.subarray(0, len), [tokens, this.dIn]);
    const out = await this.#session.run({ [INPUT_NAME]: input });
    // Copy once out of onnxruntime's buffer; rows are views of the copy.
    const scores = (out[PROBE_OUTPUT].data as Float32Array).slice();
    const n = this.dSae;
    const indices = new Uint32Array(tokens * n);
    for (let p = 0; p < indices.length; p++) indices[p] = p % n;
    return Array.from({ length: tokens }, (_, t) => ({
      indices: indices.subarray(t * n, (t + 1) * n),
      values: scores.subarray(t * n, (t + 1) * n),
    }));
  }

  async close(): Promise<void> {
    await this.#session.release();
  }
}
