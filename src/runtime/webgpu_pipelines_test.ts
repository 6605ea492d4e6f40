import assert from "node:assert/strict";
import { fakeGpu } from "./testdata/fake_gpu.ts";
import { WebGpuEncoderConfigError } from "./webgpu_device.ts";
import { compactWgsl, GEMM_TILES, gemmActivateWgsl } from "./webgpu_kernels.ts";
import { tileForRows, WebGpuPipelines } from "./webgpu_pipelines.ts";

/** Workgroup bytes per tiling, by hand: (bm·bk + bk·bn)·4. */
const SHARED = { small: 8192, medium: 12288, large: 16384, deep: 32768, wide: 20480 };

Deno.test("webgpu pipelines: tileForRows picks by batch size at 256 and 1024 rows", () => {
  const picks = [1, 64, 256, 257, 1024, 1025, 65536].map(tileForRows);
  assert.deepEqual(picks, ["small", "small", "small", "medium", "medium", "large", "large"]);
});

Deno.test("webgpu pipelines: one GEMM layout (six read-only, one storage, one uniform) and the compaction, made at once", () => {
  const gpu = fakeGpu();
  const p = new WebGpuPipelines(gpu.device);
  assert.deepEqual(gpu.log, [
    "createBindGroupLayout",
    "createShaderModule",
    "createComputePipeline",
  ]);
  const entries = (p.gemmLayout as unknown as GPUBindGroupLayoutDescriptor).entries;
  const compute = 4; // GPUShaderStage.COMPUTE
  assert.deepEqual([...entries], [
    { binding: 0, visibility: compute, buffer: { type: "read-only-storage" } },
    { binding: 1, visibility: compute, buffer: { type: "read-only-storage" } },
    { binding: 2, visibility: compute, buffer: { type: "read-only-storage" } },
    { binding: 3, visibility: compute, buffer: { type: "read-only-storage" } },
    { binding: 4, visibility: compute, buffer: { type: "read-only-storage" } },
    { binding: 5, visibility: compute, buffer: { type: "read-only-storage" } },
    { binding: 6, visibility: compute, buffer: { type: "storage" } },
    { binding: 7, visibility: compute, buffer: { type: "uniform" } },
  ]);
  const compact = p.compact as unknown as GPUComputePipelineDescriptor;
  assert.equal(compact.layout, "auto");
  assert.equal(compact.compute.entryPoint, "main");
  assert.equal((compact.compute.module as unknown as { code: string }).code, compactWgsl());
});

Deno.test("webgpu pipelines: tileFits against the device's workgroup memory", () => {
  for (const limit of [4096, 8192, 12288, 16384, 32768]) {
    const p = new WebGpuPipelines(
      fakeGpu({ limits: { maxComputeWorkgroupStorageSize: limit } }).device,
    );
    for (const [tile, bytes] of Object.entries(SHARED)) {
      assert.equal(p.tileFits(tile as keyof typeof SHARED), bytes <= limit, `${tile} in ${limit}`);
    }
  }
});

Deno.test("webgpu pipelines: tileFor takes the tiling asked for, else by size, else the largest that fits", () => {
  const at = (limit: number, tile?: "deep" | "wide") =>
    new WebGpuPipelines(
      fakeGpu({ limits: { maxComputeWorkgroupStorageSize: limit } }).device,
      tile,
    );
  const sizes = [100, 500, 2000];
  assert.deepEqual(sizes.map((r) => at(16384).tileFor(r)), ["small", "medium", "large"]);
  // large (16 KiB) does not fit 12 KiB: medium, the largest that does
  assert.deepEqual(sizes.map((r) => at(12288).tileFor(r)), ["small", "medium", "medium"]);
  assert.deepEqual(sizes.map((r) => at(8192).tileFor(r)), ["small", "small", "small"]);
  // nothing fits: small, refused when its pipeline is asked for
  assert.deepEqual(sizes.map((r) => at(4096).tileFor(r)), ["small", "small", "small"]);
  // asked for: taken even where it does not fit
  assert.deepEqual(sizes.map((r) => at(16384, "deep").tileFor(r)), ["deep", "deep", "deep"]);
  assert.deepEqual(sizes.map((r) => at(32768, "wide").tileFor(r)), ["wide", "wide", "wide"]);
});

Deno.test("webgpu pipelines: a GEMM pipeline is compiled once per tiling, on the shared layout", () => {
  const gpu = fakeGpu();
  const p = new WebGpuPipelines(gpu.device);
  gpu.log.length = 0;
  const small = p.gemm("small");
  assert.equal(p.gemm("small"), small);
  const medium = p.gemm("medium");
  assert.notEqual(medium, small);
  assert.deepEqual(gpu.log, [
    "createShaderModule",
    "createPipelineLayout",
    "createComputePipeline",
    "createShaderModule",
    "createPipelineLayout",
    "createComputePipeline",
  ]);
  const d = small as unknown as GPUComputePipelineDescriptor;
  assert.equal(d.compute.entryPoint, "main");
  assert.equal(
    (d.compute.module as unknown as { code: string }).code,
    gemmActivateWgsl(GEMM_TILES.small),
  );
  const layout = d.layout as unknown as GPUPipelineLayoutDescriptor;
  assert.deepEqual([...layout.bindGroupLayouts], [p.gemmLayout]);
});

Deno.test("webgpu pipelines: a tiling past the workgroup memory is refused by name, nothing compiled", () => {
  const gpu = fakeGpu();
  const p = new WebGpuPipelines(gpu.device);
  gpu.log.length = 0;
  assert.throws(
    () => p.gemm("deep"),
    (e) =>
      e instanceof WebGpuEncoderConfigError && e.name === "WebGpuEncoderConfigError" &&
      e.message ===
        "tiling deep needs 32768 bytes of workgroup memory, the device allows 16384",
  );
  assert.deepEqual(gpu.log, []);
});
