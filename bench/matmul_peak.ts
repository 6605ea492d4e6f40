/**
 * This machine's measured matmul peak: sustained f32 GEMM GFLOP/s of one big
 * `MatMul` (`[m, k] @ [k, n]`, B an initializer as `W_enc` is) through
 * onnxruntime, in the bench's own process with the encoder's session options
 * (CPU provider, onnxruntime's default intra-op threads: one per core). The
 * NumPy side of the same measurement lives in `numpy_baseline.py`.
 *
 * `deno run -A bench/matmul_peak.ts [--quick]` prints one JSON line per shape.
 *
 * @module
 */
import * as ort from "onnxruntime-node";
import { floatInit, modelOf, node, valueInfo } from "../src/runtime/onnx_graph.ts";
import { openSession, sessionOptions } from "../src/runtime/session.ts";

const FLOAT = 1;

/** One measured GEMM shape. */
export interface MatmulPeak {
  shape: [number, number, number];
  gflops: number;
}

/**
 * GEMM shapes the peak is measured on: the 128×4096×8192, the
 * 768→24576 encode's own batch-128 GEMM, and a larger-m one. The same in
 * --quick and full runs: the peak is what `pct_of_peak` divides by, and a
 * --quick run without the larger shape recorded a peak 30% lower, so every
 * batch-128 row's `pct_of_peak` disagreed with the full run's.
 */
export const PEAK_SHAPES: readonly [number, number, number][] = [
  [128, 4096, 8192],
  [128, 768, 24576],
  [1024, 4096, 4096],
];

/** A deterministic fill in [−1, 1) (xorshift32); the values do not matter to a GEMM. */
function fill(a: Float32Array, seed: number): Float32Array {
  let s = seed | 0 || 1;
  for (let i = 0; i < a.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    a[i] = (s >>> 8) / 8388608 - 1;
  }
  return a;
}

/**
 * Time `[m, k] @ [k, n]` through onnxruntime for `seconds` per shape (at
 * least 5 calls), after at least 3 calls and 0.2 s of warm-up.
 *
 * @example
 * ```ts
 * const [p] = await ortMatmulPeak([[128, 4096, 8192]], 1); // p.gflops
 * ```
 */
export async function ortMatmulPeak(
  shapes: [number, number, number][],
  seconds: number,
): Promise<MatmulPeak[]> {
  const out: MatmulPeak[] = [];
  for (const [m, k, n] of shapes) {
    const b = fill(new Float32Array(k * n), 7);
    const model = modelOf({
      name: "matmul_peak",
      node: [node("MatMul", ["a", "b"], ["c"])],
      initializer: [floatInit("b", [k, n], b)],
      input: [valueInfo("a", FLOAT, ["m", k])],
      output: [valueInfo("c", FLOAT, ["m", n])],
    });
    const session = await openSession(model, sessionOptions());
    const a = new ort.Tensor("float32", fill(new Float32Array(m * k), 3), [m, k]);
    // warm-up: at least 3 calls and 0.2 s, as every bench row (bench/run.ts)
    const warm = performance.now() + 200;
    for (let i = 0; i < 3 || performance.now() < warm; i++) await session.run({ a });
    let calls = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000 || calls < 5) {
      await session.run({ a });
      calls++;
    }
    const s = (performance.now() - t0) / 1000;
    out.push({ shape: [m, k, n], gflops: (2 * m * k * n * calls) / s / 1e9 });
    await session.release();
  }
  return out;
}

if (import.meta.main) {
  for (const r of await ortMatmulPeak([...PEAK_SHAPES], 0.5)) {
    console.log(JSON.stringify(r));
  }
}
