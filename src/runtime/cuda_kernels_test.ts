import assert from "node:assert/strict";
import { CUDA_KERNELS, cudaKernelSource, segmentsFor } from "./cuda_kernels.ts";

Deno.test("cuda kernels: segments cover every latent once, in whole warps, none empty", () => {
  for (const dSae of [1, 31, 203, 256, 384, 4096, 16384, 65536, 131072]) {
    for (const rows of [1, 7, 64, 128, 300, 1024, 4096, 8192]) {
      const { segs, segLen } = segmentsFor(rows, dSae);
      const what = `${rows} rows × ${dSae} latents: ${segs} × ${segLen}`;
      assert(segLen % 32 === 0 && segLen >= 32, what);
      assert(segs * segLen >= dSae && (segs - 1) * segLen < dSae, what);
      assert(segs === 1 || segLen >= 256, `${what}: no segment below 256 latents`);
      // about 4096 warps (at least 3072 after rounding to whole warps) when the row is wide enough to split
      assert(rows * segs >= Math.min(3072, rows * Math.max(1, Math.floor(dSae / 256))), what);
    }
  }
  assert.deepEqual(segmentsFor(64, 16384), { segs: 64, segLen: 256 });
  assert.deepEqual(segmentsFor(8192, 16384), { segs: 1, segLen: 16384 });
});

Deno.test("cuda kernels: the source defines every kernel the encoder looks up, unmangled", () => {
  const src = cudaKernelSource();
  for (const k of CUDA_KERNELS) {
    assert.match(src, new RegExp(`extern "C" __global__ void ${k}\\(`), k);
  }
});
