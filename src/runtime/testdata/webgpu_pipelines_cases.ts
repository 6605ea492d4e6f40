/**
 * The cases of `../webgpu_pipelines_test.ts`, each run in its own Deno process
 * on the adapter Deno finds (`webgpu_harness.ts` says why): the pipelines are
 * compiled by the real driver and run on tiny hand-made inputs.
 *
 * Usage: `deno run -A src/runtime/testdata/webgpu_pipelines_cases.ts <case>`:
 * prints `case <case>: ok` when the case passed.
 *
 * @module
 */
import assert from "node:assert/strict";
import { deviceWith, readBack, runCaseFromArgs, type WebGpuCases } from "./webgpu_harness.ts";
import {
  guarded,
  requestWebGpuDevice,
  USAGE,
  WebGpuEncodeError,
  WebGpuEncoderConfigError,
} from "../webgpu_device.ts";
import { gpuBuffer } from "../webgpu_buffers.ts";
import { GEMM_TILES, type GemmTileName } from "../webgpu_kernels.ts";
import { WebGpuPipelines } from "../webgpu_pipelines.ts";

const { STORAGE, COPY_SRC, COPY_DST, UNIFORM } = USAGE;

/** The cases by name. */
export const CASES: WebGpuCases = new Map();

/** Workgroup bytes per tiling, by hand: (bm·bk + bk·bn)·4. */
const SHARED: Record<GemmTileName, number> = {
  small: 8192,
  medium: 12288,
  large: 16384,
  deep: 32768,
  wide: 20480,
};
const TILES = Object.keys(SHARED) as GemmTileName[];

/** Batch sizes either side of tileForRows' bounds (256 and 1024 rows). */
const SIZES = [100, 500, 2000];

CASES.set(
  "the GEMM layout and the compaction pipeline are made at once; the layout wants a uniform at 7",
  async () => {
    const { device } = await requestWebGpuDevice();
    try {
      const made = guarded(device, "the pipelines", () => new WebGpuPipelines(device));
      await made.checked;
      const p = made.value;
      assert.ok(p.gemmLayout instanceof GPUBindGroupLayout);
      assert.ok(p.compact instanceof GPUComputePipeline);
      // the compaction's own layout, from its WGSL: dense, idx, val, count, dims
      const buf = (usage: number) => gpuBuffer(device, 64, usage);
      const compactGroup = guarded(device, "a compaction bind group", () =>
        device.createBindGroup({
          layout: p.compact.getBindGroupLayout(0),
          entries: [STORAGE, STORAGE, STORAGE, STORAGE, UNIFORM].map((u, binding) => ({
            binding,
            resource: { buffer: buf(u) },
          })),
        }));
      await compactGroup.checked;
      // the GEMM layout: storage buffers at 0‥6, a uniform at 7 (a storage buffer there is refused)
      const gemmGroup = (last: number) =>
        guarded(
          device,
          `a GEMM bind group, binding 7 of usage ${last}`,
          () =>
            device.createBindGroup({
              layout: p.gemmLayout,
              entries: [...new Array(7).fill(STORAGE), last].map((u, binding) => ({
                binding,
                resource: { buffer: buf(u) },
              })),
            }),
        );
      await gemmGroup(UNIFORM).checked;
      await assert.rejects(gemmGroup(STORAGE).checked, WebGpuEncodeError);
    } finally {
      device.destroy();
    }
  },
);

/** The GEMM's tiny problem: 64 tokens × 32 inputs × 128 latents, integers only (exact in f32). */
const M = 64, K = 32, N = 128;
const xAt = (r: number, k: number) => ((r * 3 + k * 5) % 7) - 3;
const wAt = (k: number, j: number) => ((k * 2 + j * 3) % 5) - 2;
const biasAt = (j: number) => (j % 3) - 1;
const thrAt = (j: number) => (j % 4) * 3;
const bdecAt = (k: number) => k % 2;
const shiftAt = (r: number) => (r % 3) - 1;
const scaleAt = (r: number) => 1 + (r % 2);

/** The activations by the formula of `gemmActivateWgsl`, in plain JS: f = h where h > thr and h > 0. */
function expectedActivations(): Float32Array {
  const out = new Float32Array(M * N);
  for (let r = 0; r < M; r++) {
    for (let j = 0; j < N; j++) {
      let h = biasAt(j);
      for (let k = 0; k < K; k++) {
        h += ((xAt(r, k) - shiftAt(r)) * scaleAt(r) - bdecAt(k)) * wAt(k, j);
      }
      out[r * N + j] = h > thrAt(j) && h > 0 ? h : 0;
    }
  }
  return out;
}

CASES.set(
  "a GEMM pipeline is compiled once per tiling and runs its own tile grid on the shared layout",
  async () => {
    const { device } = await requestWebGpuDevice();
    try {
      const p = new WebGpuPipelines(device);
      const small = p.gemm("small");
      assert.equal(p.gemm("small"), small, "the same pipeline, not compiled again");
      const medium = p.gemm("medium");
      assert.notEqual(medium, small);
      assert.equal(p.gemm("medium"), medium);
      assert.equal(p.gemm(p.tileFor(100)), small, "tileFor's choice is the same pipeline");

      const fill = (n: number, f: (i: number) => number) =>
        Float32Array.from({ length: n }, (_, i) => f(i));
      const storage = (a: Float32Array) => gpuBuffer(device, a.byteLength, STORAGE | COPY_DST, a);
      const x = storage(fill(M * K, (i) => xAt(Math.floor(i / K), i % K)));
      const w = storage(fill(K * N, (i) => wAt(Math.floor(i / N), i % N)));
      const bias = storage(fill(N, biasAt));
      const thr = storage(fill(N, thrAt));
      const bdec = storage(fill(K, bdecAt));
      const norm = storage(fill(2 * M, (i) => (i % 2 ? scaleAt : shiftAt)(Math.floor(i / 2))));
      const dense = gpuBuffer(device, M * N * 4, STORAGE | COPY_SRC | COPY_DST);
      const dims = gpuBuffer(device, 16, UNIFORM | COPY_DST);
      device.queue.writeBuffer(dims, 0, new Uint32Array([M, K, N, 0]));
      // one bind group, made on the shared layout, for every tiling's pipeline
      const group = device.createBindGroup({
        layout: p.gemmLayout,
        entries: [x, w, bias, thr, bdec, norm, dense, dims].map((buffer, binding) => ({
          binding,
          resource: { buffer },
        })),
      });
      const want = expectedActivations();
      const active = want.filter((v) => v !== 0).length;
      assert.ok(active > M * N / 8 && active < (M * N * 7) / 8, `active and not (${active})`);
      for (const tile of ["small", "medium"] as const) {
        device.queue.writeBuffer(dense, 0, new Float32Array(M * N).fill(-1));
        const { bm, bn } = GEMM_TILES[tile];
        const run = guarded(device, `the ${tile} GEMM`, () => {
          const enc = device.createCommandEncoder();
          const pass = enc.beginComputePass();
          pass.setPipeline(p.gemm(tile));
          pass.setBindGroup(0, group);
          // the tiling's own grid: a pipeline of another tiling would leave outputs unwritten
          pass.dispatchWorkgroups(N / bn, M / bm);
          pass.end();
          device.queue.submit([enc.finish()]);
        });
        await run.checked;
        const got = new Float32Array(await readBack(device, dense, M * N * 4));
        for (let i = 0; i < M * N; i++) {
          if (got[i] !== want[i]) {
            const at = `token ${Math.floor(i / N)} latent ${i % N}`;
            assert.fail(`${tile}: ${at}: ${got[i]}, want ${want[i]}`);
          }
        }
      }
    } finally {
      device.destroy();
    }
  },
);

CASES.set(
  "WebGPU's default 16 KiB of workgroup memory: small to large fit, deep and wide are refused by name",
  async () => {
    const adapter = await navigator.gpu.requestAdapter();
    const device = await adapter!.requestDevice(); // WebGPU's default limits
    try {
      assert.equal(device.limits.maxComputeWorkgroupStorageSize, 16384);
      const p = new WebGpuPipelines(device);
      assert.deepEqual(TILES.map((t) => p.tileFits(t)), [true, true, true, false, false]);
      assert.deepEqual(SIZES.map((r) => p.tileFor(r)), ["small", "medium", "large"]);
      // asked for: taken even where it does not fit, and refused when its pipeline is asked for
      const deep = new WebGpuPipelines(device, "deep");
      assert.deepEqual(SIZES.map((r) => deep.tileFor(r)), ["deep", "deep", "deep"]);
      for (const [tile, bytes] of [["deep", 32768], ["wide", 20480]] as const) {
        assert.throws(
          () => p.gemm(tile),
          (e) =>
            e instanceof WebGpuEncoderConfigError && e.name === "WebGpuEncoderConfigError" &&
            e.message ===
              `tiling ${tile} needs ${bytes} bytes of workgroup memory, the device allows 16384`,
        );
      }
      assert.ok(p.gemm("large") instanceof GPUComputePipeline, "what fits still compiles");
    } finally {
      device.destroy();
    }
  },
);

CASES.set("the adapter's own workgroup memory decides which tilings fit", async () => {
  const { device, adapter } = await requestWebGpuDevice();
  try {
    const limit = adapter.limits.maxComputeWorkgroupStorageSize;
    assert.equal(device.limits.maxComputeWorkgroupStorageSize, limit, "asked for in full");
    const p = new WebGpuPipelines(device);
    for (const tile of TILES) assert.equal(p.tileFits(tile), SHARED[tile] <= limit, tile);
    assert.deepEqual(SIZES.map((r) => p.tileFor(r)), ["small", "medium", "large"]);
  } finally {
    device.destroy();
  }
});

// ---------------------------------------------------------------------------
// Test double. WebGPU guarantees every device at least 16 KiB of workgroup
// memory, where "large" (tileForRows' choice above 1024 rows) fits, so
// tileFor's fallback to a smaller tiling cannot be reached on a real device.
// Here a real device (its layout and compaction pipeline really made) is seen
// through a view whose `limits` report less: the one thing that is not real.
// ---------------------------------------------------------------------------

/** `device`, but reporting `bytes` of workgroup memory: a test double for a device below WebGPU's minimum. */
function reportingWorkgroupMemory(device: GPUDevice, bytes: number): GPUDevice {
  const limits = { maxComputeWorkgroupStorageSize: bytes } as GPUSupportedLimits;
  return deviceWith(device, { limits });
}

CASES.set(
  "test double: a device reporting 12, 8 or 4 KiB of workgroup memory gets the largest tiling that fits",
  async () => {
    const { device } = await requestWebGpuDevice();
    try {
      const at = (bytes: number) => new WebGpuPipelines(reportingWorkgroupMemory(device, bytes));
      // large (16 KiB) does not fit 12 KiB: medium, the largest that does
      assert.deepEqual(SIZES.map((r) => at(12288).tileFor(r)), ["small", "medium", "medium"]);
      assert.deepEqual(SIZES.map((r) => at(8192).tileFor(r)), ["small", "small", "small"]);
      // nothing fits: small, refused when its pipeline is asked for
      const none = at(4096);
      assert.deepEqual(SIZES.map((r) => none.tileFor(r)), ["small", "small", "small"]);
      assert.throws(
        () => none.gemm("small"),
        (e) =>
          e instanceof WebGpuEncoderConfigError &&
          e.message === "tiling small needs 8192 bytes of workgroup memory, the device allows 4096",
      );
    } finally {
      device.destroy();
    }
  },
);

if (import.meta.main) await runCaseFromArgs(CASES);
