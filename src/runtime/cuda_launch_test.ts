/**
 * Every launch the CUDA encoder makes passes its kernel exactly the
 * parameters the kernel's source declares: as many, in order, of the
 * declared width and type, and the right buffer or number for each declared
 * name. A mismatch would not be caught by the driver: the kernel would read
 * garbage. Runs without a GPU, against a recording test double of the CUDA
 * runtime (named as such: it stands in for the device this machine lacks).
 */
import assert from "node:assert/strict";
import type { CudaRuntime } from "./cuda_ffi.ts";
import { CUDA_KERNELS, cudaKernelSource, segmentsFor } from "./cuda_kernels.ts";
import { type EncodeBuffers, EncodeLaunches } from "./cuda_launch.ts";

type ParamType = "ptr" | "u64" | "int" | "float";

/** Each kernel's parameters (type, name), read from the CUDA source. */
function declared(): Map<string, { type: ParamType; name: string }[]> {
  const out = new Map<string, { type: ParamType; name: string }[]>();
  const re = /extern "C" __global__ void (\w+)\(([^)]*)\)/g;
  for (const m of cudaKernelSource().matchAll(re)) {
    out.set(
      m[1],
      m[2].split(",").map((p) => {
        const t = p.trim().replace(/\s+/g, " ");
        const name = t.split(" ").at(-1)!;
        if (t.includes("*")) return { type: "ptr", name };
        if (t.startsWith("unsigned long long")) return { type: "u64", name };
        if (t.startsWith("int ")) return { type: "int", name };
        if (t.startsWith("float ")) return { type: "float", name };
        throw new Error(`${m[1]}: unexpected parameter ${t}`);
      }),
    );
  }
  return out;
}

interface Recorded {
  kernel: string;
  grid: number;
  block: number;
  args: ArrayBufferView[];
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
      calls.push({ kernel: Deno.UnsafePointerView.getCString(kernel), grid, block, args }),
    sgemmRowMajor: (g) => gemms.push(`f32 ${g.a}·${g.b}→${g.c} ${g.n}x${g.k}x${g.m}`),
    gemmBf16RowMajor: (g) => gemms.push(`bf16 ${g.a}·${g.b}→${g.c} ${g.n}x${g.k}x${g.m}`),
    synchronize: () => {},
  };
}

function decode(a: ArrayBufferView, type: ParamType): bigint | number {
  const view = new DataView(a.buffer, a.byteOffset, a.byteLength);
  if (type === "ptr" || type === "u64") {
    assert.equal(a.byteLength, 8, `a ${type} is 8 bytes`);
    return view.getBigUint64(0, true);
  }
  assert.equal(a.byteLength, 4, `an ${type} is 4 bytes`);
  assert(type === "float" ? a instanceof Float32Array : a instanceof Int32Array, `${type} typed`);
  return type === "float" ? view.getFloat32(0, true) : view.getInt32(0, true);
}

const B: EncodeBuffers = {
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
    bound: 0.001,
  },
};
const D_IN = 2304, D_SAE = 16384;

/** What each parameter name must receive, for a batch of `rows` with room for `cap` at `out`. */
function expected(kernel: string, rows: number, cap: number, out: bigint) {
  const { segs, segLen } = segmentsFor(rows, D_SAE);
  const idx = out + BigInt(rows * 4);
  const s = B.split!;
  return new Map<string, bigint | number>([
    // lw_prep reads the input as sent and writes x̃; every later kernel reads x̃ as "x"
    ["x", kernel === "lw_prep" ? B.x : B.xt],
    ["xt", B.xt],
    ["bdec", B.bdec],
    ["norm", B.norm],
    ["n", BigInt(rows * D_IN)],
    ["has_norm", 1],
    ["xcat", s.xStacked],
    ["xnorm", s.xNorm],
    ["h", B.h],
    ["bias", B.bias],
    ["thr", B.thr],
    ["wt", s.wT],
    ["wnorm", s.wNorm],
    ["bound", Math.fround(s.bound)],
    ["rows", rows],
    ["d_sae", D_SAE],
    ["d_in", D_IN],
    ["seg_len", segLen],
    ["segs", segs],
    ["seg_count", B.segCount],
    ["seg_cands", s.segCandidates],
    ["cands", s.segCandidates],
    ["cap", cap],
    ["count", out],
    ["idx", idx],
    ["val", idx + BigInt(rows * cap * 4)],
  ]);
}

/**
 * The "kernels" are their own names as C strings, so the double can say which was launched;
 * held here so that the pointers to them stay valid.
 */
const KERNEL_NAMES = CUDA_KERNELS.map((k) => new TextEncoder().encode(k + "\0"));

/** Each kernel's name → the pointer the double receives for it. */
function kernelNames(): Map<string, Deno.PointerObject> {
  return new Map(CUDA_KERNELS.map((k, i) => [k, Deno.UnsafePointer.of(KERNEL_NAMES[i])!]));
}

/** Launches of the test buffers through the recording double: what it records, and the launcher. */
function recorded(names: Map<string, Deno.PointerObject>) {
  const calls: Recorded[] = [];
  const gemms: string[] = [];
  const launches = new EncodeLaunches({
    cuda: recordingRuntime(calls, gemms),
    kernels: names,
    buffers: B,
    dIn: D_IN,
    dSae: D_SAE,
    normalize: true,
    prep: true,
  });
  return { calls, gemms, launches };
}

Deno.test("cuda launches: every kernel gets what its source declares, by name, order and type", () => {
  const params = declared();
  assert.deepEqual([...params.keys()].sort(), [...CUDA_KERNELS].sort());
  const names = kernelNames();
  const seen = new Set<string>();
  for (const rows of [64, 8192]) { // segmented, and one pass per token
    for (const split of [false, true]) {
      const { calls, gemms, launches } = recorded(names);
      launches.encode(rows, { split, cap: 128, out: 100n });
      const first = calls.length;
      launches.compact(rows, { split, cap: 256, out: 900n }, true);
      assert.deepEqual(gemms, [
        split ? `bf16 13·10→4 ${rows}x6912x16384` : `f32 2·9→4 ${rows}x2304x16384`,
      ]);
      const { segs } = segmentsFor(rows, D_SAE);
      calls.forEach((c, n) => {
        const what = `${c.kernel} (${rows} rows, split ${split})`;
        seen.add(c.kernel);
        const decl = params.get(c.kernel)!;
        assert.equal(c.args.length, decl.length, `${what}: argument count`);
        const want = n < first
          ? expected(c.kernel, rows, 128, 100n)
          : expected(c.kernel, rows, 256, 900n);
        decl.forEach((p, i) => {
          assert(want.has(p.name), `${what}: no expectation for ${p.name}`);
          assert.equal(decode(c.args[i], p.type), want.get(p.name), `${what}: ${p.name}`);
        });
        assert.equal(c.block, 256);
        const threads = c.kernel === "lw_prep"
          ? rows * D_IN
          : 32 * rows * (c.kernel === "lw_split" ? 1 : segs);
        assert.equal(c.grid, Math.ceil(threads / 256), `${what}: grid`);
      });
    }
  }
  assert.deepEqual([...seen].sort(), [...CUDA_KERNELS].sort(), "every kernel was launched");
});

Deno.test("cuda launches: gemmOnly (the bench's GEMM timing) stops after the GEMM", () => {
  const names = kernelNames();
  for (const split of [false, true]) {
    const { calls, gemms, launches } = recorded(names);
    launches.encode(4096, { split, cap: 128, out: 100n, gemmOnly: true });
    assert.deepEqual(calls.map((c) => c.kernel), split ? ["lw_prep", "lw_split"] : ["lw_prep"]);
    assert.deepEqual(gemms, [split ? "bf16 13·10→4 4096x6912x16384" : "f32 2·9→4 4096x2304x16384"]);
  }
});
