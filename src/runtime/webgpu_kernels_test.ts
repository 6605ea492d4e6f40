import assert from "node:assert/strict";
import {
  compactWgsl,
  fitRows,
  GEMM_TILES,
  gemmActivateWgsl,
  PAD_COLS,
  PAD_DEPTH,
  PAD_ROWS,
  tileSharedBytes,
  tileThreads,
} from "./webgpu_kernels.ts";

Deno.test("webgpu kernels: every tiling divides the padding and has whole loads per thread", () => {
  for (const [name, t] of Object.entries(GEMM_TILES)) {
    assert.equal(PAD_ROWS % t.bm, 0, `${name}: rows padding`);
    assert.equal(PAD_COLS % t.bn, 0, `${name}: columns padding`);
    assert.equal(PAD_DEPTH % t.bk, 0, `${name}: depth padding`);
    const { x, y } = tileThreads(t);
    assert.ok(x * y <= 256, `${name}: at most 256 threads (WebGPU's default)`);
    assert.match(gemmActivateWgsl(t), new RegExp(`@workgroup_size\\(${x}, ${y}, 1\\)`));
  }
  assert.throws(
    () => gemmActivateWgsl({ bm: 64, bn: 64, bk: 4, tm: 4, tn: 4 }),
    /do not divide evenly/,
  );
  assert.match(compactWgsl(), /workgroupBarrier/);
});

Deno.test("webgpu kernels: workgroup memory per tiling, against WebGPU's 16 KiB default", () => {
  assert.equal(tileSharedBytes(GEMM_TILES.small), 8192);
  assert.equal(tileSharedBytes(GEMM_TILES.large), 16384);
  assert.equal(tileSharedBytes(GEMM_TILES.deep), 32768);
  assert.equal(tileSharedBytes(GEMM_TILES.wide), 20480);
});

Deno.test("webgpu kernels: fitRows keeps every per-batch buffer within the device's limits", () => {
  const big = {
    maxStorageBufferBindingSize: 2 ** 31,
    maxBufferSize: 2 ** 40,
    maxComputeWorkgroupsPerDimension: 65535,
  };
  const gemma = { dInPad: 2304, dSaePad: 16384, cap: 128 };
  assert.equal(fitRows(4096, gemma, big), 4096, "fits: as asked");
  assert.equal(fitRows(100, gemma, big), 128, "rounded up to the padding");
  // 2^31 / (131072 × 4) = 4096 rows of a 131k-latent SAE
  assert.equal(fitRows(16384, { ...gemma, dSaePad: 131072 }, big), 4096);
  // the 128 MiB default binding: 2048 rows of 16384 latents
  assert.equal(fitRows(8192, gemma, { ...big, maxStorageBufferBindingSize: 2 ** 27 }), 2048);
  assert.equal(
    fitRows(8192, gemma, { ...big, maxBufferSize: 2 ** 26 }),
    1024,
    "the smaller of the two",
  );
  assert.equal(fitRows(1e6, gemma, { ...big, maxComputeWorkgroupsPerDimension: 1000 }), 896);
  assert.equal(fitRows(4096, { ...gemma, dSaePad: 2 ** 24 }, big), 0, "not even 128 rows fit");
});
