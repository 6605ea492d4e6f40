/**
 * Every launch the CUDA encoder makes passes its kernel exactly the
 * parameters the kernel's source declares, in order and width (a 64-bit
 * pointer or integer, a 32-bit int or float). A mismatch would not be caught
 * by the driver: the kernel would read garbage. Runs without a GPU, against a
 * recording test double of the CUDA runtime (named as such: it stands in for
 * the device, which this machine does not have).
 */
import assert from "node:assert/strict";
import type { CudaRuntime } from "./cuda_ffi.ts";
import { CUDA_KERNELS, cudaKernelSource } from "./cuda_kernels.ts";
import { type EncodeBuffers, EncodeLaunches } from "./cuda_launch.ts";

/** Each kernel's parameter widths in bytes, read from the CUDA source. */
function declaredWidths(): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const re = /extern "C" __global__ void (\w+)\(([^)]*)\)/g;
  for (const m of cudaKernelSource().matchAll(re)) {
    const widths = m[2].split(",").map((p) => {
      const t = p.trim();
      if (t.includes("*") || t.startsWith("unsigned long long")) return 8;
      if (/^(int|float|unsigned) /.test(t)) return 4;
      throw new Error(`${m[1]}: unexpected parameter ${t}`);
    });
    out.set(m[1], widths);
  }
  return out;
}

interface Recorded {
  kernel: string;
  grid: number;
  block: number;
  widths: number[];
}

/** Test double of the CUDA runtime: records launches and GEMMs, touches no device. */
function recordingRuntime(calls: Recorded[], gemms: string[]): CudaRuntime {
  return {
    device: {} as CudaRuntime["device"],
    alloc: () => 0n,
    free: () => {},
    upload: () => {},
    download: () => {},
    compile: () => new Map(),
    launch: (kernel, { grid, block }, args) =>
      calls.push({
        kernel: Deno.UnsafePointerView.getCString(kernel),
        grid,
        block,
        widths: args.map((a) => a.byteLength),
      }),
    sgemmRowMajor: (g) => gemms.push(`f32 ${g.n}x${g.k}x${g.m}`),
    gemmBf16RowMajor: (g) => gemms.push(`bf16 ${g.n}x${g.k}x${g.m}`),
    synchronize: () => {},
  };
}

Deno.test("cuda launches: every kernel gets the parameters its source declares", () => {
  const declared = declaredWidths();
  assert.deepEqual([...declared.keys()].sort(), [...CUDA_KERNELS].sort());
  // the "kernels" are their own names as C strings, so the double can say which was launched
  const names = new Map(
    CUDA_KERNELS.map((k) => {
      const bytes = new TextEncoder().encode(k + "\0");
      return [k, Deno.UnsafePointer.of(bytes)!] as const;
    }),
  );
  const buffers: EncodeBuffers = {
    x: 1n,
    xt: 2n,
    norm: 3n,
    h: 4n,
    segCount: 5n,
    bias: 6n,
    thr: 7n,
    bdec: 8n,
    w: 9n,
    split: {
      wStacked: 10n,
      wT: 11n,
      wNorm: 12n,
      xStacked: 13n,
      xNorm: 14n,
      segCandidates: 15n,
      bound: 1e-3,
    },
  };
  const seen = new Set<string>();
  for (const rows of [64, 8192]) { // segmented and one-pass
    for (const split of [false, true]) {
      const calls: Recorded[] = [];
      const gemms: string[] = [];
      const launches = new EncodeLaunches({
        cuda: recordingRuntime(calls, gemms),
        kernels: names,
        buffers,
        dIn: 2304,
        dSae: 16384,
        normalize: true,
        prep: true,
      });
      launches.encode(rows, { split, cap: 128, out: 100n });
      launches.compact(rows, { split, cap: 256, out: 200n }, true);
      assert.deepEqual(gemms, [split ? `bf16 ${rows}x6912x16384` : `f32 ${rows}x2304x16384`]);
      for (const c of calls) {
        seen.add(c.kernel);
        assert.deepEqual(
          c.widths,
          declared.get(c.kernel),
          `${c.kernel} (${rows} rows, split ${split})`,
        );
        assert.equal(c.block, 256);
        assert(c.grid >= 1, `${c.kernel}: a grid`);
      }
    }
  }
  assert.deepEqual([...seen].sort(), [...CUDA_KERNELS].sort(), "every kernel was launched");
});
