/**
 * NVRTC through Deno's FFI: CUDA C++ compiled at run time to a CUBIN for
 * the device's own architecture, loaded as a module, its kernels looked up
 * by name. Used by `cuda_ffi.ts`.
 *
 * @module
 */
import { CudaError } from "./cuda_errors.ts";

/** NVRTC's symbols, as `cuda_ffi.ts` opens the library. */
export const NVRTC = {
  nvrtcVersion: { parameters: ["buffer", "buffer"], result: "i32" },
  nvrtcCreateProgram: {
    parameters: ["buffer", "buffer", "buffer", "i32", "pointer", "pointer"],
    result: "i32",
  },
  nvrtcCompileProgram: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  nvrtcGetProgramLogSize: { parameters: ["pointer", "buffer"], result: "i32" },
  nvrtcGetProgramLog: { parameters: ["pointer", "buffer"], result: "i32" },
  nvrtcGetCUBINSize: { parameters: ["pointer", "buffer"], result: "i32" },
  nvrtcGetCUBIN: { parameters: ["pointer", "buffer"], result: "i32" },
  nvrtcDestroyProgram: { parameters: ["buffer"], result: "i32" },
  nvrtcGetErrorString: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The driver calls compiling needs (a subset of `cuda_ffi.ts`'s). */
interface DriverCalls {
  cuModuleLoadData(module: BigUint64Array, image: Uint8Array): number;
  cuModuleGetFunction(f: BigUint64Array, module: Deno.PointerValue, name: Uint8Array): number;
  cuModuleUnload(module: Deno.PointerValue): number;
}

/** A NUL-terminated copy of `s`. */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Compile `source` for `arch` (`sm_90`) and return the named kernels. */
export function compileKernels(c: {
  rtc: Deno.DynamicLibrary<typeof NVRTC>["symbols"];
  cu: DriverCalls;
  check: (what: string, code: number) => void;
  source: string;
  kernels: string[];
  arch: string;
}): Map<string, Deno.PointerObject> {
  const { rtc, cu, check } = c;
  const rtcCheck = (what: string, code: number, log = "") => {
    if (code === 0) return;
    const msg = rtc.nvrtcGetErrorString(code);
    const text = msg ? Deno.UnsafePointerView.getCString(msg) : `nvrtcResult ${code}`;
    throw new CudaError(`${what}: ${text}${log ? `\n${log}` : ""}`);
  };
  const handle = new BigUint64Array(1);
  rtcCheck(
    "nvrtcCreateProgram",
    rtc.nvrtcCreateProgram(handle, cString(c.source), cString("latentwatch.cu"), 0, null, null),
  );
  const prog = Deno.UnsafePointer.create(handle[0]);
  try {
    const opts = [cString(`--gpu-architecture=${c.arch}`), cString("--fmad=false")];
    const optPtrs = new BigUint64Array(
      opts.map((o) => BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(o)))),
    );
    const compiled = rtc.nvrtcCompileProgram(prog, opts.length, optPtrs);
    const size = new BigUint64Array(1);
    let log = "";
    if (compiled !== 0) {
      rtc.nvrtcGetProgramLogSize(prog, size);
      const buf = new Uint8Array(Number(size[0]));
      rtc.nvrtcGetProgramLog(prog, buf);
      log = new TextDecoder().decode(buf.subarray(0, Math.max(0, buf.indexOf(0))));
    }
    rtcCheck(`nvrtcCompileProgram for ${c.arch}`, compiled, log);
    rtcCheck("nvrtcGetCUBINSize", rtc.nvrtcGetCUBINSize(prog, size));
    const cubin = new Uint8Array(Number(size[0]));
    rtcCheck("nvrtcGetCUBIN", rtc.nvrtcGetCUBIN(prog, cubin));
    const mod = new BigUint64Array(1);
    check("cuModuleLoadData", cu.cuModuleLoadData(mod, cubin));
    const module = Deno.UnsafePointer.create(mod[0]);
    const out = new Map<string, Deno.PointerObject>();
    try {
      for (const k of c.kernels) {
        const f = new BigUint64Array(1);
        check(`cuModuleGetFunction ${k}`, cu.cuModuleGetFunction(f, module, cString(k)));
        out.set(k, Deno.UnsafePointer.create(f[0])!);
      }
    } catch (e) {
      cu.cuModuleUnload(module); // a kernel missing from the module: nothing of it is kept
      throw e;
    }
    return out;
  } finally {
    rtc.nvrtcDestroyProgram(handle);
  }
}
