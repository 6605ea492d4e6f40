/**
 * `deno task bench [--quick]`: latentwatch's performance record.
 *
 * - encode/…: SAE encode throughput through onnxruntime (CPU) at batch 1, 16
 *   and 128, against NumPy computing the same thing the way SAELens does, on
 *   the same weights and inputs, in the same run (ratio = latentwatch / NumPy).
 * - e2e/…: tokens/s through `serve` (a real nats-server, the TypeScript tap,
 *   micro-batching, encode, policies, JetStream alerts) at saturation.
 * - watched/…: encoding only 16, 64 or 256 watched latents (exact for JumpReLU),
 *   ratio against the full encode of the same SAE in the same run.
 * - policy/…: policy evaluation per token with 1, 100 and 1000 rules.
 *
 * Writes `bench/results/latest.json` and prints a table.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { cpus, totalmem } from "node:os";
import * as ort from "onnxruntime-node";
import { randomSae } from "../src/formats/random_sae.ts";
import { createOrtEncoder } from "../src/runtime/ort_encoder.ts";
import type { Encoder, SaeArchitecture, SaeWeights } from "../src/core/sae.ts";
import { writeNpy } from "../src/formats/npy.ts";
import { Rng } from "../src/core/random.ts";
import { benchServe } from "./e2e.ts";
import { benchGate } from "./gate.ts";
import { benchPythonGate } from "./python_gate.ts";
import { encodeChart } from "./chart.ts";
import { benchPolicy } from "./policy.ts";

/** One row of the results file. */
export interface BenchResult {
  name: string;
  tokens_per_s: number;
  baseline_tokens_per_s: number | null;
  ratio: number | null;
  p50_ms: number | null;
  p99_ms: number | null;
  rss_mb: number | null;
}

const { values } = parseArgs({
  args: Deno.args,
  options: { quick: { type: "boolean" }, out: { type: "string" } },
});
const quick = values.quick ?? false;
const seconds = quick ? 0.4 : 2;
const outPath = values.out ?? new URL("./results/latest.json", import.meta.url).pathname;

const SHAPES: { arch: SaeArchitecture; dIn: number; dSae: number; k?: number; label: string }[] = [
  { arch: "topk", dIn: 768, dSae: 24576, k: 32, label: "topk-768x24576-k32" },
  { arch: "jumprelu", dIn: 768, dSae: 24576, label: "jumprelu-768x24576" },
];
const BATCHES = [1, 16, 128];

const progress = (msg: string) => console.error(`bench: ${msg}`);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** A seeded SAE of `shape` with trained-like sparsity (about 60 active latents per token). */
function benchSae(shape: (typeof SHAPES)[number]): SaeWeights {
  const sae = randomSae({
    architecture: shape.arch,
    dIn: shape.dIn,
    dSae: shape.dSae,
    k: shape.k,
    seed: 1,
  });
  if (sae.threshold) {
    // h is about N(0, 1) on Gaussian input: θ ∈ [2.6, 3.0] keeps ~0.25% of latents, as trained SAEs do
    const rng = new Rng(5);
    for (let i = 0; i < sae.threshold.length; i++) sae.threshold[i] = 2.6 + 0.4 * rng.uniform();
  }
  return sae;
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

async function numpyBaseline(
  shape: (typeof SHAPES)[number],
  weights: string,
): Promise<Map<string, number>> {
  const cases = BATCHES.map((b) => ({
    name: `encode/${shape.label}/b${b}`,
    architecture: shape.arch,
    weights,
    k: shape.k ?? 0,
    batch: b,
  }));
  progress(`NumPy baseline for ${shape.label} (same weights and inputs, python3)`);
  try {
    const child = new Deno.Command("python3", {
      args: [new URL("./numpy_baseline.py", import.meta.url).pathname],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(JSON.stringify({ cases, seconds })));
    await w.close();
    const { code, stdout, stderr } = await child.output();
    if (code !== 0) throw new Error(new TextDecoder().decode(stderr));
    const res = JSON.parse(new TextDecoder().decode(stdout)) as {
      results: { name: string; tokens_per_s: number }[];
    };
    return new Map(res.results.map((r) => [r.name, r.tokens_per_s]));
  } catch (err) {
    progress(
      `NumPy baseline unavailable (${(err as Error).message.split("\n")[0]}); ratios left empty`,
    );
    return new Map();
  }
}

/** Time `enc` on `x` (`b` tokens) for the configured seconds: throughput and latency percentiles. */
async function timeEncoder(
  name: string,
  enc: Encoder,
  x: Float32Array,
  b: number,
): Promise<BenchResult> {
  for (let i = 0; i < 3; i++) await enc.encode(x, b);
  const lat: number[] = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end || lat.length < 5) {
    const t0 = performance.now();
    await enc.encode(x, b);
    lat.push(performance.now() - t0);
  }
  const total = lat.reduce((a, v) => a + v, 0);
  lat.sort((a, v) => a - v);
  return {
    name,
    tokens_per_s: (b * lat.length) / (total / 1000),
    baseline_tokens_per_s: null,
    ratio: null,
    p50_ms: percentile(lat, 50),
    p99_ms: percentile(lat, 99),
    rss_mb: Deno.memoryUsage().rss / 2 ** 20,
  };
}

/**
 * Watched-latent encode: only the encoder columns rules read (exact for
 * JumpReLU), with 16, 64 and 256 watched latents, against the full encode of
 * the same SAE in the same run (ratio = watched / full).
 */
async function benchWatched(full: BenchResult[]): Promise<BenchResult[]> {
  const shape = SHAPES.find((s) => s.arch === "jumprelu")!;
  const sae = benchSae(shape);
  const xAll = new Rng(3).fillGaussian(new Float32Array(Math.max(...BATCHES) * shape.dIn));
  const rng = new Rng(11);
  const out: BenchResult[] = [];
  for (const w of [16, 64, 256]) {
    const watch = new Set<number>();
    while (watch.size < w) watch.add(Math.floor(rng.uniform() * shape.dSae));
    progress(`watched encode: ${w} of ${shape.dSae} latents`);
    const enc = await createOrtEncoder(sae, { watch: Uint32Array.from(watch).sort() });
    for (const b of [1, 128]) {
      const r = await timeEncoder(
        `watched/${shape.label}-w${w}/b${b}`,
        enc,
        xAll.subarray(0, b * shape.dIn),
        b,
      );
      const base = full.find((f) => f.name === `encode/${shape.label}/b${b}`);
      if (base) {
        r.baseline_tokens_per_s = base.tokens_per_s;
        r.ratio = r.tokens_per_s / base.tokens_per_s;
      }
      out.push(r);
      progress(`${r.name}: ${Math.round(r.tokens_per_s)} tokens/s`);
    }
    await enc.close();
  }
  return out;
}

async function benchEncode(): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  for (const s of SHAPES) {
    progress(`building ${s.label} (seeded random weights) and its ONNX graph`);
    const sae = benchSae(s);
    const xAll = new Rng(3).fillGaussian(new Float32Array(Math.max(...BATCHES) * s.dIn));
    const enc = await createOrtEncoder(sae);
    for (const b of BATCHES) {
      const name = `encode/${s.label}/b${b}`;
      out.push(await timeEncoder(name, enc, xAll.subarray(0, b * s.dIn), b));
      progress(`${name}: ${Math.round(out[out.length - 1].tokens_per_s)} tokens/s`);
    }
    const l0 = (await enc.encode(xAll, BATCHES[BATCHES.length - 1]))
      .reduce((a, t) => a + t.indices.length, 0) / BATCHES[BATCHES.length - 1];
    progress(`${s.label}: mean L0 ${l0.toFixed(1)} on the bench input`);
    await enc.close();
    const dir = await Deno.makeTempDir({ prefix: "latentwatch-bench-npy-" });
    try {
      await writeBaselineInputs(dir, sae, xAll);
      const base = await numpyBaseline(s, dir);
      for (const r of out) {
        const b = base.get(r.name);
        if (b !== undefined) {
          r.baseline_tokens_per_s = b;
          r.ratio = r.tokens_per_s / b;
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  return out;
}

function machine() {
  let cpu = cpus()[0]?.model ?? "unknown";
  try {
    const m = /model name\s*:\s*(.*)/.exec(Deno.readTextFileSync("/proc/cpuinfo"));
    if (m) cpu = m[1];
  } catch { /* not Linux */ }
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memory_gb: Math.round(totalmem() / 2 ** 30),
    os: `${Deno.build.os}-${Deno.build.arch}`,
    deno: Deno.version.deno,
    onnxruntime: ort.env.versions.node ?? "unknown",
    provider: "cpu",
    quick,
    date: new Date().toISOString(),
  };
}

function table(results: BenchResult[]): string {
  const f = (v: number | null, d = 0) => v === null ? "—" : v.toFixed(d);
  const rows = results.map((r) =>
    `| ${r.name} | ${f(r.tokens_per_s)} | ${f(r.baseline_tokens_per_s)} | ${
      r.ratio === null ? "—" : `${r.ratio.toFixed(2)}×`
    } | ${f(r.p50_ms, 2)} | ${f(r.p99_ms, 2)} | ${f(r.rss_mb)} |`
  );
  return [
    "| benchmark | tokens/s | baseline tokens/s | ratio | p50 ms | p99 ms | RSS MB |",
    "|---|---:|---:|---:|---:|---:|---:|",
    ...rows,
  ].join("\n");
}

const results: BenchResult[] = await benchEncode();
results.push(...await benchWatched(results));
results.push(...await benchServe({ quick, progress, architecture: "topk" }));
results.push(...await benchServe({ quick, progress, architecture: "jumprelu" }));
results.push(...await benchGate({ quick, progress }));
results.push(...await benchPythonGate({ quick, progress }));
progress("policy evaluation with 1, 100 and 1000 rules");
results.push(...await benchPolicy({ quick }));

const report = { machine: machine(), results };
await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
await Deno.writeTextFile(outPath, JSON.stringify(report, null, 2) + "\n");
const chartPath = outPath.replace(/\.json$/, "") + "-encode.svg";
await Deno.writeTextFile(chartPath, encodeChart(results));
console.log(table(results));
console.log(
  `\nmachine: ${report.machine.cpu}, ${report.machine.cores} cores; written to ${outPath} and ${chartPath}`,
);
