/**
 * The bench's encode/ rows: every shape and weight type against fair NumPy,
 * in interleaved turns spread over {@linkcode ENCODE_PASSES} passes.
 *
 * Why passes: this host's other work slows both vCPUs for stretches longer
 * than a row's turns, the int8 candidates more than NumPy. Taken back to
 * back, all of one row's turns could fall in one such stretch: `--quick`
 * and full then disagreed by 16–21% on a row, each run's turns agreeing
 * among themselves, while NumPy's rows agreed
 * (docs/performance-history.md, thirty-fourth and thirty-fifth sittings). Each pass
 * builds every encoder afresh and takes {@linkcode ENCODE_ROUNDS} turns of
 * each row back to back, so a row's two groups of turns lie a pass apart
 * (about a minute in `--quick`, four in a full run): a slow stretch shorter
 * than that reaches one group, and each side keeps its best confirmed turn
 * over all passes.
 *
 * @module
 */
import { createOrtEncoder } from "../src/runtime/ort_encoder.ts";
import type { SaeWeights } from "../src/core/sae.ts";
import { bf16ToF32, f32ToBf16 } from "../src/core/dtype.ts";
import { writeNpy } from "../src/formats/npy.ts";
import { Rng } from "../src/core/random.ts";
import { bestTurn, ENCODE_ROUNDS, timeEncoder } from "./encode_rows.ts";
import { benchSae, type Shape, SHAPES } from "./bench_sae.ts";
import type { NumpyReport } from "./numpy_child.ts";
import type { BenchResult } from "./run.ts";

/** Passes over every shape; each takes {@linkcode ENCODE_ROUNDS} turns of every row. */
export const ENCODE_PASSES = 2;
/** The batch sizes of the encode rows (the full run's; `--quick` runs a subset). */
export const BATCHES = [1, 16, 128] as const;

type Dtype = "f32" | "bf16";

/**
 * Which weight types and batches `shape` runs: everything in a full run, a
 * subset in `--quick` (the same rows, never shorter versions of them).
 *
 * @example
 * ```ts
 * import { SHAPES } from "./bench_sae.ts";
 * import { encodePlan } from "./encode_section.ts";
 * encodePlan(SHAPES[0], { quick: false }).length; // 2: f32, then bf16
 * ```
 */
export function encodePlan(
  shape: Shape,
  opts: { quick: boolean },
): { dtype: Dtype; batches: number[] }[] {
  const all = [...BATCHES];
  if (!opts.quick) return (["f32", "bf16"] as const).map((dtype) => ({ dtype, batches: all }));
  switch (shape.label) {
    case "topk-768x24576-k32":
      return [{ dtype: "f32", batches: all }];
    case "jumprelu-768x24576":
      return [{ dtype: "f32", batches: all }, { dtype: "bf16", batches: [1, 128] }];
    case "jumprelu-2304x16384":
      return [{ dtype: "f32", batches: [1, 128] }];
    default:
      return []; // 4096x65536: 1 GiB of W_enc, full run only
  }
}

/** Round the SAE's tensors to bf16 in place and mark it bf16, as a loaded bf16 checkpoint is. */
function toBf16(sae: SaeWeights): void {
  const round = (a: Float32Array) => bf16ToF32(f32ToBf16(a), a as Float32Array<ArrayBuffer>);
  for (const a of [sae.wEnc, sae.bEnc, sae.bDec, sae.threshold]) if (a) round(a);
  sae.dtype = "bfloat16";
}

/** Write the SAE's tensors and the bench input as .npy files for the NumPy baseline. */
async function writeBaselineInputs(dir: string, sae: SaeWeights, x: Float32Array): Promise<void> {
  const put = (name: string, data: Float32Array, shape: number[]) =>
    Deno.writeFile(`${dir}/${name}.npy`, writeNpy(data, shape, "f32"));
  await put("W_enc", sae.wEnc, [sae.dIn, sae.dSae]);
  await put("b_enc", sae.bEnc, [sae.dSae]);
  await put("b_dec", sae.applyBDecToInput ? sae.bDec : new Float32Array(sae.dIn), [sae.dIn]);
  if (sae.threshold) await put("threshold", sae.threshold, [sae.dSae]);
  await put("x", x, [x.length / sae.dIn, sae.dIn]);
}

/** What {@linkcode benchEncode} needs from the bench. */
export interface EncodeSectionOptions {
  quick: boolean;
  /** The machine's best measured f32 GEMM, GFLOP/s (`pct_of_peak` of the batch-128 rows). */
  peakGflops: number;
  /** The NumPy child on a job (`bench/numpy_child.ts`); null where NumPy is missing. */
  runNumpy: (job: Record<string, unknown>) => Promise<NumpyReport | null>;
  progress: (msg: string) => void;
}

/** One shape and weight type in one pass: its rows' turns folded into `kept`. */
async function encodeTurns(opts: {
  shape: Shape;
  sae: SaeWeights;
  label: string;
  batches: number[];
  x: Float32Array;
  pass: number;
  kept: Map<string, BenchResult>;
  section: EncodeSectionOptions;
}): Promise<number> {
  const { shape, sae, label, batches, x, pass, kept, section } = opts;
  section.progress(`${label}: ONNX graph and session (pass ${pass} of ${ENCODE_PASSES})`);
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-bench-npy-" });
  try {
    const enc = await createOrtEncoder(sae, { fullEncode: "auto" }); // serve's default path
    try {
      await writeBaselineInputs(dir, sae, x);
      for (let r = 1; r <= ENCODE_ROUNDS; r++) {
        const round = (pass - 1) * ENCODE_ROUNDS + r;
        const turn: BenchResult[] = [];
        for (const b of batches) {
          const xb = x.subarray(0, b * sae.dIn);
          turn.push(await timeEncoder(`encode/${label}/b${b}`, enc, xb, b));
        }
        section.progress(
          `NumPy baseline for ${label}, turn ${round} of ${
            ENCODE_PASSES * ENCODE_ROUNDS
          } (python3)`,
        );
        const cases = turn.map((t, i) => ({
          name: t.name,
          architecture: shape.arch,
          weights: dir,
          k: shape.k ?? 0,
          batch: batches[i],
        }));
        const report = await section.runNumpy({ cases });
        const base = new Map(report?.results.map((t) => [t.name, t.tokens_per_s]) ?? []);
        for (const t of turn) {
          kept.set(t.name, bestTurn(kept.get(t.name), t, base.get(t.name) ?? null, round));
          const b = base.get(t.name);
          section.progress(
            `${t.name} turn ${round}: ${Math.round(t.tokens_per_s)} tokens/s (${t.path}), ` +
              `NumPy ${b === undefined ? "—" : Math.round(b)}`,
          );
        }
      }
      const bMax = BATCHES[BATCHES.length - 1];
      const active = (await enc.encode(x, bMax)).reduce((a, t) => a + t.indices.length, 0);
      return active / bMax;
    } finally {
      await enc.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The encode/ rows: each shape and weight type of {@linkcode encodePlan},
 * latentwatch's `serve` default against fair NumPy in interleaved turns over
 * {@linkcode ENCODE_PASSES} passes; each row with its GFLOP/s, ratio, L0 and
 * (batch 128) share of the measured peak.
 *
 * @example
 * ```ts ignore
 * import { benchEncode } from "./encode_section.ts";
 * declare const runNumpy: Parameters<typeof benchEncode>[0]["runNumpy"];
 * const rows = await benchEncode({ quick: true, peakGflops: 190, runNumpy, progress: console.error });
 * rows[0].name; // "encode/topk-768x24576-k32-f32/b1"
 * ```
 */
export async function benchEncode(opts: EncodeSectionOptions): Promise<BenchResult[]> {
  const kept = new Map<string, BenchResult>();
  const l0 = new Map<string, number>();
  for (let pass = 1; pass <= ENCODE_PASSES; pass++) {
    for (const s of SHAPES) {
      const runs = encodePlan(s, opts);
      if (runs.length === 0) {
        if (pass === 1) opts.progress(`${s.label}: skipped in --quick`);
        continue;
      }
      opts.progress(`building ${s.label} (seeded random weights, pass ${pass})`);
      // the same seeded weights every pass: bf16 rounds them in place after the f32 rows
      const sae = benchSae(s);
      const x = new Rng(3).fillGaussian(new Float32Array(Math.max(...BATCHES) * s.dIn));
      for (const { dtype, batches } of runs) {
        if (dtype === "bf16") toBf16(sae);
        const label = `${s.label}-${dtype}`;
        const mean = await encodeTurns({
          shape: s,
          sae,
          label,
          batches,
          x,
          pass,
          kept,
          section: opts,
        });
        l0.set(label, mean);
        opts.progress(`${label}: mean L0 ${mean.toFixed(1)} on the bench input`);
      }
    }
  }
  return [...kept.values()].map((r) => finishRow(r, l0, opts.peakGflops));
}

/**
 * A row with its derived figures: GFLOP/s, the baseline's, ratio, L0 and
 * (batch 128) share of the peak.
 *
 * @example
 * ```ts
 * import { finishRow } from "./encode_section.ts";
 * const row = { name: "encode/jumprelu-768x24576-f32/b1", tokens_per_s: 1000, baseline_tokens_per_s: 500, ratio: null, p50_ms: 1, p99_ms: 2, rss_mb: 0 };
 * finishRow(row, new Map([["jumprelu-768x24576-f32", 40]]), 200).ratio; // 2
 * ```
 */
export function finishRow(
  r: BenchResult,
  l0: Map<string, number>,
  peakGflops: number,
): BenchResult {
  const label = r.name.split("/")[1];
  const shape = SHAPES.find((s) => label.startsWith(`${s.label}-`))!;
  const flopPerToken = 2 * shape.dIn * shape.dSae;
  const b = r.baseline_tokens_per_s;
  const gflops = r.tokens_per_s * flopPerToken / 1e9;
  return {
    ...r,
    gflops,
    ...(r.name.endsWith("/b128")
      ? { pct_of_peak: peakGflops > 0 ? gflops / peakGflops : null }
      : {}),
    baseline_gflops: b === null ? null : b * flopPerToken / 1e9,
    ratio: b === null ? null : r.tokens_per_s / b,
    l0: l0.get(label),
  };
}
