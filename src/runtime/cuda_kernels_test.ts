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

/** Host declarations for the CUDA built-ins the kernels use, so a C++ compiler can check them. */
const HOST_STUBS = `
#include <math.h>
#define __global__
#define __device__
struct lw_dim3 { unsigned x, y, z; };
extern lw_dim3 blockIdx, blockDim, threadIdx;
unsigned __ballot_sync(unsigned mask, bool pred);
int __popc(unsigned v);
int __ffs(int v);
float __shfl_xor_sync(unsigned mask, float v, int lane_mask);
double __shfl_xor_sync(unsigned mask, double v, int lane_mask);
unsigned __float_as_uint(float v);
float __uint_as_float(unsigned v);
float __double2float_ru(double v);
double __dsqrt_ru(double v);

inline int min(int a, int b) { return a < b ? a : b; }
`;

const gxx = await new Deno.Command("g++", { args: ["--version"], stdout: "null", stderr: "null" })
  .output().then((o) => o.success, () => false);

Deno.test({
  name: "cuda kernels: the source compiles as C++ against host declarations of the CUDA built-ins",
  ignore: !gxx, // NVRTC compiles it for real on a GPU machine (bench/gpu/device_run.sh)
  async fn() {
    const check = async (src: string) => {
      const child = new Deno.Command("g++", {
        args: ["-std=c++17", "-fsyntax-only", "-Wall", "-Werror", "-x", "c++", "-"],
        stdin: "piped",
        stderr: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(HOST_STUBS + src));
      await w.close();
      const out = await child.output();
      return { ok: out.success, stderr: new TextDecoder().decode(out.stderr) };
    };
    const good = await check(cudaKernelSource());
    assert(good.ok, good.stderr);
    // the check can fail: a kernel calling something undeclared is refused
    const bad = await check(cudaKernelSource().replace("lw_warp_dot(xr,", "lw_warp_dotx(xr,"));
    assert(!bad.ok && /lw_warp_dotx/.test(bad.stderr), "a misspelt call is caught");
  },
});
