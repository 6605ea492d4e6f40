/**
 * The GPU bench: gemma-2-2b's 16k JumpReLU SAE shape (2304 → 16384, the CPU
 * bench's seeded weights) encoded on the GPU, checked against the f64
 * reference encoder, and timed three ways, each beside PyTorch/cuBLAS on the
 * same GPU in the same run:
 *
 * - kernel throughput: tokens/s of the GEMM, activation and compaction on
 *   tokens already on the device, per tiling and batch;
 * - host to host: tokens/s of `encode()` on batches from host memory, with
 *   uploads and readbacks overlapped (`inFlight` batches);
 * - one decode step for 64 concurrent requests: `encode(x, 64)` latency,
 *   p50 and p99.
 *
 * onnxruntime's WebGPU provider is timed too where it starts. Writes
 * `<out>/gpu.json` and prints a table. Targets (issue 17): ≥ 1,000,000
 * tokens/s full encode, ≤ 1 ms per 64-request decode step.
 *
 * Usage: `deno run -A bench/gpu.ts [--out DIR] [--seconds N] [--dry]` (`--dry`: a small
 * shape, to try the script without a GPU).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { benchSae, SHAPES } from "./bench_sae.ts";
import { quantile } from "../src/core/family.ts";
import { Rng } from "../src/core/random.ts";
import { referenceEncode, referencePreActivations } from "../src/core/reference_encoder.ts";
import type { Encoder, SaeWeights, SparseLatents } from "../src/core/sae.ts";
import { writeNpy } from "../src/formats/npy.ts";
import { findPythonWithTorch } from "../support/python.ts";
import { createWebGpuEncoder, type WebGpuEncoder } from "../src/runtime/webgpu_encoder.ts";
import { GEMM_TILES, type GemmTileName } from "../src/runtime/webgpu_kernels.ts";
import { createCudaEncoder, type CudaEncoder } from "../src/runtime/cuda_encoder.ts";

const { values: args } = parseArgs({
  options: {
    out: { type: "string", default: "bench/results" },
    seconds: { type: "string" },
    // A small shape and batches, to try the whole script where there is no GPU (lavapipe).
    dry: { type: "boolean", default: false },
  },
});
const DRY = args.dry!;
const SECONDS = Number(args.seconds ?? 2);
const progress = (msg: string) => console.error(`gpu bench: ${msg}`);
const report: Record<string, unknown> = { started: new Date().toISOString() };
const errors: string[] = [];

async function attempt<T>(what: string, f: () => Promise<T>): Promise<T | undefined> {
  try {
    return await f();
  } catch (e) {
    const msg = `${what}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
    progress(`FAILED ${msg}`);
    errors.push(msg);
    return undefined;
  }
}

async function command(cmd: string, cmdArgs: string[]) {
  const out = await new Deno.Command(cmd, { args: cmdArgs, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`${cmd} exited ${out.code}: ${dec.decode(out.stderr).slice(-600)}`);
  }
  return dec.decode(out.stdout);
}

/** Active-set mismatches and value errors against the f64 reference, first `tokens` tokens. */
function checkAgainstReference(
  sae: SaeWeights,
  x: Float32Array,
  tokens: number,
  got: SparseLatents[],
) {
  const want = referenceEncode(sae, x, tokens);
  let active = 0, setMismatches = 0, edgeFlips = 0, maxRelErr = 0;
  for (let t = 0; t < tokens; t++) {
    const h = referencePreActivations(sae, x.subarray(t * sae.dIn, (t + 1) * sae.dIn));
    const g = new Map<number, number>();
    got[t].indices.forEach((i, n) => g.set(i, got[t].values[n]));
    const w = new Map<number, number>();
    want[t].indices.forEach((i, n) => w.set(i, want[t].values[n]));
    active += w.size;
    for (const i of new Set([...g.keys(), ...w.keys()])) {
      if (g.has(i) !== w.has(i)) {
        const edge = Math.abs(h[i] - (sae.threshold?.[i] ?? 0));
        if (edge <= 1e-4 * (1 + Math.abs(h[i]))) edgeFlips++;
        else setMismatches++;
        continue;
      }
      maxRelErr = Math.max(maxRelErr, Math.abs(g.get(i)! - w.get(i)!) / (1 + Math.abs(w.get(i)!)));
    }
  }
  return {
    tokens,
    active,
    setMismatches,
    edgeFlips,
    maxRelErr,
    ok: setMismatches === 0 && maxRelErr <= 1e-4,
  };
}

/** Host-to-host tokens/s: keep `inFlight` batches of `batch` tokens going for SECONDS. */
async function hostThroughput(enc: Encoder, x: Float32Array, batch: number, inFlight: number) {
  await enc.encode(x, batch);
  let tokens = 0;
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  const lane = async () => {
    while (performance.now() < deadline) {
      await enc.encode(x, batch);
      tokens += batch;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return tokens / ((performance.now() - t0) / 1000);
}

/** p50/p99 of `encode(x, 64)`, one step at a time, as a decode loop would call it. */
async function decodeStepLatency(enc: Encoder, x: Float32Array, steps = 500) {
  const times: number[] = [];
  for (let i = 0; i < steps + 30; i++) {
    const t0 = performance.now();
    await enc.encode(x.subarray((i % 8) * 64 * enc.dIn), 64);
    if (i >= 30) times.push(performance.now() - t0);
  }
  return { p50_ms: quantile(times, 0.5), p99_ms: quantile(times, 0.99), steps };
}

const shape = SHAPES.find((s) => s.label === "jumprelu-2304x16384")!;
const sae = DRY ? benchSae({ ...shape, dIn: 256, dSae: 2048 }) : benchSae(shape);
const BIG = DRY ? 512 : 8192;
const BATCHES = DRY ? [64, 512] : [64, 1024, 4096, 8192];
const x = new Rng(3).fillGaussian(new Float32Array(BIG * sae.dIn));
const flopPerToken = 2 * sae.dIn * sae.dSae;
report.shape = { label: shape.label, dIn: sae.dIn, dSae: sae.dSae, flop_per_token: flopPerToken };
report.nvidia_smi = await attempt("nvidia-smi", () =>
  command("nvidia-smi", [
    "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total",
    "--format=csv,noheader",
  ]).then((s) => s.trim()));
const rows: Record<string, unknown>[] = [];
report.rows = rows;

progress("deno-webgpu: device and pipelines");
const enc = await attempt(
  "deno-webgpu encoder",
  () => createWebGpuEncoder(sae, { maxRows: BIG, inFlight: 3, cap: 128 }),
);
if (enc) await denoWebGpu(enc);

async function denoWebGpu(enc: WebGpuEncoder) {
  report.adapter = enc.adapter;
  progress(`adapter ${JSON.stringify(enc.adapter)}`);
  const first = await enc.encode(x, 64);
  report.check_deno_webgpu = checkAgainstReference(sae, x, 16, first);
  progress(`check ${JSON.stringify(report.check_deno_webgpu)}`);
  for (const tile of Object.keys(GEMM_TILES) as GemmTileName[]) {
    if (!enc.tileFits(tile)) {
      progress(`kernels ${tile}: skipped, more workgroup memory than the device allows`);
      continue;
    }
    for (const batch of BATCHES) {
      const repeats = Math.max(3, Math.round(40_000 / batch));
      const secs = await enc.timeKernels(batch, repeats, tile);
      rows.push({
        engine: "deno-webgpu",
        what: "kernels",
        tile,
        batch,
        tokens_per_s: (batch * repeats) / secs,
      });
      progress(`kernels ${tile} b${batch}: ${((batch * repeats) / secs).toFixed(0)} tokens/s`);
    }
  }
  for (const batch of BATCHES.slice(1)) {
    const tps = await hostThroughput(enc, x, batch, 3);
    rows.push({
      engine: "deno-webgpu",
      what: "host-to-host",
      batch,
      in_flight: 3,
      tokens_per_s: tps,
    });
    progress(`host-to-host b${batch}: ${tps.toFixed(0)} tokens/s`);
  }
  for (const tile of ["small", "medium", "wide"] as GemmTileName[]) {
    if (!enc.tileFits(tile)) continue;
    const one = await createWebGpuEncoder(sae, { maxRows: 64, inFlight: 1, tile });
    const lat = await decodeStepLatency(one, x);
    await one.close();
    rows.push({ engine: "deno-webgpu", what: "decode-step-64", tile, ...lat });
    progress(
      `decode step 64 (${tile}): p50 ${lat.p50_ms.toFixed(3)} p99 ${lat.p99_ms.toFixed(3)} ms`,
    );
  }
  report.deno_webgpu_stats = enc.stats();
  await enc.close();
}

await attempt("onnxruntime webgpu", async () => {
  const { createOrtEncoder } = await import("../src/runtime/ort_encoder.ts");
  const ort = await createOrtEncoder(sae, { provider: "webgpu", fullEncode: "f32" });
  try {
    report.ort_provider = { provider: ort.provider, note: ort.providerNote ?? null };
    progress(`onnxruntime provider ${ort.provider} ${ort.providerNote ?? ""}`);
    if (ort.provider !== "webgpu") return;
    report.check_ort_webgpu = checkAgainstReference(sae, x, 16, await ort.encode(x, 16));
    for (const batch of BATCHES.slice(1, 3)) {
      const tps = await hostThroughput(ort, x, batch, 1);
      rows.push({ engine: "ort-webgpu", what: "host-to-host", batch, tokens_per_s: tps });
      progress(`ort host-to-host b${batch}: ${tps.toFixed(0)} tokens/s`);
    }
    rows.push({
      engine: "ort-webgpu",
      what: "decode-step-64",
      ...(await decodeStepLatency(ort, x, 200)),
    });
  } finally {
    await ort.close();
  }
});

await attempt("torch baseline", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lw-gpu-" });
  const put = (name: string, data: Float32Array, shape: number[]) =>
    Deno.writeFile(`${dir}/${name}.npy`, writeNpy(data, shape, "f32"));
  await put("W_enc", sae.wEnc, [sae.dIn, sae.dSae]);
  await put("b_enc", sae.bEnc, [sae.dSae]);
  await put("b_dec", sae.bDec, [sae.dIn]);
  await put("threshold", sae.threshold!, [sae.dSae]);
  const big = Math.min(4096, BIG);
  await put("x", x.subarray(0, big * sae.dIn), [big, sae.dIn]);
  const script = new URL("./gpu/torch_baseline.py", import.meta.url).pathname;
  const python = await findPythonWithTorch();
  if (!python) throw new Error("no Python with torch found (PYTHON, python3, /usr/bin/python3)");
  const out = await command(python, [script, dir, String(big)]);
  const torch = JSON.parse(out.trim().split("\n").at(-1)!);
  report.torch = torch;
  const clock = Number(String(report.nvidia_smi ?? "").split(",")[3]?.trim().split(" ")[0]);
  if (torch.sms && clock) {
    const peak = torch.sms * 128 * 2 * clock * 1e6;
    report.f32_peak = {
      flop_per_s: peak,
      derivation: `${torch.sms} SMs × 128 FP32 lanes × 2 FLOP (FMA) × ${clock} MHz max SM clock`,
      tokens_per_s_at_peak: peak / flopPerToken,
    };
  }
  for (const r of torch.rows) {
    rows.push({
      engine: `torch-${r.precision}`,
      what: "kernels",
      batch: big,
      tokens_per_s: r.tokens_per_s,
      exact: r.exact,
    });
    rows.push({
      engine: `torch-${r.precision}`,
      what: "decode-step-64",
      p50_ms: r.p50_ms,
      p99_ms: r.p99_ms,
      exact: r.exact,
    });
  }
  await Deno.remove(dir, { recursive: true });
});

// Last, and with what came before already on disk: a fault in a native call ends the process.
await writeReport();
progress("cuda-ffi: driver, cuBLAS and NVRTC");
for (const precision of ["f32", "bf16x3", "auto"] as const) {
  const cuda = await attempt(
    `cuda-ffi ${precision} encoder`,
    () => Promise.resolve(createCudaEncoder(sae, { maxRows: BIG, precision })),
  );
  if (cuda) await attempt(`cuda-ffi ${precision} bench`, () => cudaFfi(cuda));
}

/** The CUDA encoder (cuBLAS + our kernels through FFI): the same three measures. */
async function cudaFfi(enc: CudaEncoder) {
  const engine = `cuda-ffi-${enc.precision}`;
  report.cuda_device = enc.device;
  progress(`${engine} device ${JSON.stringify(enc.device)}`);
  // 64 tokens run the segmented path; 4096 (or the dry run's largest batch) one pass per token
  const check = checkAgainstReference(sae, x, 16, await enc.encode(x, 64));
  const big = Math.min(4096, BIG);
  report[`check_${engine}_b${big}`] = checkAgainstReference(sae, x, 16, await enc.encode(x, big));
  report[`check_${engine}`] = check;
  progress(`${engine} check ${JSON.stringify(check)}`);
  for (const batch of DRY ? BATCHES : [64, 128, 256, 512, 1024, 4096, 8192]) {
    const repeats = Math.max(5, Math.round(400_000 / batch));
    const tps = (batch * repeats) / enc.timeKernels(batch, repeats);
    rows.push({ engine, what: "kernels", batch, tokens_per_s: tps });
    progress(`${engine} kernels b${batch}: ${tps.toFixed(0)} tokens/s`);
    if (batch >= 1024 || DRY) {
      // the GEMM alone: what the activation and compaction add is the difference
      const gemm = (batch * repeats) / enc.timeKernels(batch, repeats, "gemm");
      rows.push({ engine, what: "kernels-gemm-only", batch, tokens_per_s: gemm });
      progress(`${engine} GEMM alone b${batch}: ${gemm.toFixed(0)} tokens/s`);
    }
  }
  for (const batch of BATCHES.slice(1)) {
    const before = enc.stats();
    const tps = await hostThroughput(enc, x, batch, 1);
    const after = enc.stats();
    const n = after.batches - before.batches;
    // ms per batch of each step of encode(): where host to host loses to the kernels
    const split = Object.fromEntries(
      (Object.keys(after.ms) as (keyof typeof after.ms)[]).map((k) => [
        k,
        Number(((after.ms[k] - before.ms[k]) / n).toFixed(3)),
      ]),
    );
    rows.push({ engine, what: "host-to-host", batch, tokens_per_s: tps, ms_per_batch: split });
    progress(
      `${engine} host-to-host b${batch}: ${tps.toFixed(0)} tokens/s, ms ${JSON.stringify(split)}`,
    );
  }
  const lat = await decodeStepLatency(enc, x, 2000);
  rows.push({ engine, what: "decode-step-64", ...lat });
  progress(
    `${engine} decode step 64: p50 ${lat.p50_ms.toFixed(3)} p99 ${lat.p99_ms.toFixed(3)} ms`,
  );
  const stats = enc.stats();
  report[`${engine}_stats`] = { ...stats, candidates_per_token: stats.candidates / stats.tokens };
  await enc.close();
}

await writeReport(new Date().toISOString());

async function writeReport(finished?: string) {
  report.errors = errors;
  report.finished = finished ?? null;
  await Deno.mkdir(args.out!, { recursive: true });
  await Deno.writeTextFile(`${args.out}/gpu.json`, JSON.stringify(report, null, 2) + "\n");
}
console.log(`| engine | measure | tile | batch | tokens/s | p50 ms | p99 ms |`);
console.log(`|---|---|---|---:|---:|---:|---:|`);
const fmt = (v: unknown, d = 0) => typeof v === "number" ? v.toFixed(d) : "";
for (const r of rows) {
  console.log(
    `| ${r.engine} | ${r.what} | ${r.tile ?? ""} | ${r.batch ?? 64} | ${fmt(r.tokens_per_s)} | ${
      fmt(r.p50_ms, 3)
    } | ${fmt(r.p99_ms, 3)} |`,
  );
}
if (errors.length) console.log(`errors:\n${errors.join("\n")}`);
Deno.exit(0);
