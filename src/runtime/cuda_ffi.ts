/**
 * CUDA through Deno's FFI: the driver API (`libcuda`), cuBLAS and NVRTC,
 * loaded once per process, with the few calls the CUDA encoder
 * (`cuda_encoder.ts`) makes and every status checked. No npm package and no
 * compiler: the driver ships with the GPU, cuBLAS and NVRTC with the CUDA
 * toolkit or its Python wheels.
 *
 * Libraries are looked for in the folders of `LATENTWATCH_CUDA_LIBS`
 * (colon-separated), `CUDA_HOME/lib64`, `/usr/local/cuda/lib64`, then by
 * name on the loader's path (`LD_LIBRARY_PATH`, `ldconfig`).
 *
 * @module
 */

export { CudaError, CudaUnavailableError } from "./cuda_errors.ts";
import { CudaError, CudaUnavailableError } from "./cuda_errors.ts";
import { compileKernels, NVRTC } from "./cuda_nvrtc.ts";

const CU = {
  cuInit: { parameters: ["u32"], result: "i32" },
  cuDriverGetVersion: { parameters: ["buffer"], result: "i32" },
  cuDeviceGetCount: { parameters: ["buffer"], result: "i32" },
  cuDeviceGet: { parameters: ["buffer", "i32"], result: "i32" },
  cuDeviceGetName: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cuDeviceGetAttribute: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cuDevicePrimaryCtxRetain: { parameters: ["buffer", "i32"], result: "i32" },
  cuCtxSetCurrent: { parameters: ["pointer"], result: "i32" },
  cuCtxSynchronize: { parameters: [], result: "i32" },
  cuMemAlloc_v2: { parameters: ["buffer", "usize"], result: "i32" },
  cuMemFree_v2: { parameters: ["u64"], result: "i32" },
  cuMemcpyHtoD_v2: { parameters: ["u64", "buffer", "usize"], result: "i32" },
  cuMemcpyDtoH_v2: { parameters: ["buffer", "u64", "usize"], result: "i32" },
  cuModuleLoadData: { parameters: ["buffer", "buffer"], result: "i32" },
  cuModuleUnload: { parameters: ["pointer"], result: "i32" },
  cuModuleGetFunction: { parameters: ["buffer", "pointer", "buffer"], result: "i32" },
  cuLaunchKernel: {
    parameters: [
      "pointer", // function
      "u32",
      "u32",
      "u32", // grid
      "u32",
      "u32",
      "u32", // block
      "u32", // dynamic shared memory
      "pointer", // stream (null: the legacy default stream, which cuBLAS uses too)
      "buffer", // kernelParams
      "pointer", // extra
    ],
    result: "i32",
  },
  cuGetErrorName: { parameters: ["i32", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The first parameters of both GEMMs: handle, transa, transb, m, n, k. */
const GEMM_SHAPE = ["pointer", "i32", "i32", "i32", "i32", "i32"] as const;

const CUBLAS = {
  cublasCreate_v2: { parameters: ["buffer"], result: "i32" },
  cublasSetMathMode: { parameters: ["pointer", "i32"], result: "i32" },
  cublasGemmEx: {
    parameters: [
      ...GEMM_SHAPE,
      ...["buffer", "u64", "i32", "i32"] as const, // alpha, A, Atype, lda
      ...["u64", "i32", "i32"] as const, // B, Btype, ldb
      ...["buffer", "u64", "i32", "i32"] as const, // beta, C, Ctype, ldc
      ...["i32", "i32"] as const, // computeType, algo
    ],
    result: "i32",
  },
  cublasSgemm_v2: {
    parameters: [
      ...GEMM_SHAPE,
      ...["buffer", "u64", "i32"] as const, // alpha, A, lda
      ...["u64", "i32"] as const, // B, ldb
      ...["buffer", "u64", "i32"] as const, // beta, C, ldc
    ],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/**
 * cuBLAS's default math: compute and intermediate precision at least that of the
 * operands, so an f32 GEMM never runs on TF32 (unless `NVIDIA_TF32_OVERRIDE=1` forces it).
 */
const CUBLAS_DEFAULT_MATH = 0;
const CUDA_R_32F = 0;
const CUDA_R_16BF = 14;
const CUBLAS_COMPUTE_32F = 68;
const CUBLAS_GEMM_DEFAULT = -1;
const CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;

/** What the process's CUDA device is. */
export interface CudaDeviceReport {
  name: string;
  /** Compute capability, e.g. `"9.0"`. */
  computeCapability: string;
  multiprocessors: number;
  /** The driver's CUDA version, e.g. `"13.0"`. */
  driver: string;
  /** NVRTC's version, e.g. `"13.0"`. */
  nvrtc: string;
  /** The files the libraries were loaded from (or the names the loader resolved). */
  libraries: { cuda: string; cublas: string; nvrtc: string };
}

/** A device pointer (`CUdeviceptr`). */
export type DevicePtr = bigint;

/** The loaded libraries and the primary context of device 0, current on this thread. */
export interface CudaRuntime {
  readonly device: CudaDeviceReport;
  /** Allocate `bytes` of device memory. */
  alloc(bytes: number): DevicePtr;
  free(ptr: DevicePtr): void;
  /** Copy `src` (all of it) to the device at `dst`; returns when the copy is done. */
  upload(dst: DevicePtr, src: ArrayBufferView): void;
  /** Copy `dst.byteLength` bytes from the device at `src`, after all work before it. */
  download(dst: ArrayBufferView, src: DevicePtr): void;
  /** Compile CUDA C++ for this device (NVRTC) and return its kernels by name. */
  compile(source: string, kernels: string[]): Map<string, Deno.PointerObject>;
  /** Launch a kernel on the default stream; `args` are each argument's bytes, in order. */
  launch(
    kernel: Deno.PointerObject,
    launch: { grid: number; block: number },
    args: ArrayBufferView[],
  ): void;
  /** `C[n×m] = A·B` row-major f32 (`A` `[n, k]`, `B` `[k, m]`), exact f32 (no TF32). */
  sgemmRowMajor(
    g: { a: DevicePtr; b: DevicePtr; c: DevicePtr; n: number; k: number; m: number },
  ): void;
  /**
   * `C[n×m] = A·B` row-major with bf16 operands (`A` `[n, k]`, `B` `[k, m]`,
   * as bf16 bits) and f32 accumulation and result, on the tensor cores.
   */
  gemmBf16RowMajor(
    g: { a: DevicePtr; b: DevicePtr; c: DevicePtr; n: number; k: number; m: number },
  ): void;
  /** Wait for all work on the device. */
  synchronize(): void;
}

let runtime: CudaRuntime | undefined;
let failure: Error | undefined;

/**
 * The process's CUDA runtime, loaded on first use.
 *
 * @throws {CudaUnavailableError} saying which library or device is missing
 * @example
 * ```ts
 * try {
 *   console.log(cudaRuntime().device.name);
 * } catch (e) {
 *   if (!(e instanceof CudaUnavailableError)) throw e;
 * }
 * ```
 */
export function cudaRuntime(): CudaRuntime {
  if (runtime) return runtime;
  if (failure) throw failure;
  try {
    runtime = loadRuntime();
    return runtime;
  } catch (e) {
    // remembered either way: a second attempt would retain the primary context again
    if (e instanceof Error) failure = e;
    throw e;
  }
}

/** Folders searched before the loader's own path, in order. */
export function cudaLibraryDirs(
  env: (name: string) => string | undefined = Deno.env.get,
): string[] {
  const dirs = (env("LATENTWATCH_CUDA_LIBS") ?? "").split(":").filter((d) => d !== "");
  const home = env("CUDA_HOME") ?? env("CUDA_PATH");
  if (home) dirs.push(`${home}/lib64`);
  dirs.push("/usr/local/cuda/lib64");
  return dirs;
}

function openFirst<S extends Deno.ForeignLibraryInterface>(
  what: string,
  names: string[],
  symbols: S,
): { lib: Deno.DynamicLibrary<S>; path: string } {
  const tried: string[] = [];
  const paths = [
    ...cudaLibraryDirs().flatMap((d) => names.map((n) => `${d}/${n}`)).filter(exists),
    ...names,
  ];
  for (const path of paths) {
    try {
      // cuBLAS needs cuBLASLt, NVRTC its builtins: open them first from the same folder.
      if (path.includes("/")) preloadCompanions(path);
      return { lib: Deno.dlopen(path, symbols), path };
    } catch (e) {
      tried.push(
        `${path}: ${
          (e as Error).message.split("\n")[0].replace(/^(Could not open library: )+/, "")
        }`,
      );
    }
  }
  throw new CudaUnavailableError(
    `cannot load ${what} (tried ${tried.join("; ")}); set LATENTWATCH_CUDA_LIBS to its folder`,
  );
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

const companions: Deno.DynamicLibrary<Record<string, never>>[] = [];
function preloadCompanions(path: string): void {
  const dir = path.slice(0, path.lastIndexOf("/"));
  const base = path.slice(dir.length + 1);
  const prefix = base.startsWith("libcublas.")
    ? "libcublasLt.so"
    : base.startsWith("libnvrtc.")
    ? "libnvrtc-builtins.so"
    : undefined;
  if (!prefix) return;
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.name.startsWith(prefix)) {
      try {
        companions.push(Deno.dlopen(`${dir}/${entry.name}`, {}));
        return;
      } catch { /* the loader may still find it by name */ }
    }
  }
}

const SONAMES = {
  cublas: ["libcublas.so.13", "libcublas.so.12", "libcublas.so"],
  nvrtc: ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
};

function loadRuntime(): CudaRuntime {
  const cuda = openFirst("the CUDA driver (libcuda.so.1)", ["libcuda.so.1", "libcuda.so"], CU);
  const cu = cuda.lib.symbols;
  const i32 = new Int32Array(1);
  const errName = (code: number) => {
    const p = new BigUint64Array(1);
    if (cu.cuGetErrorName(code, p) !== 0 || p[0] === 0n) return `CUresult ${code}`;
    return Deno.UnsafePointerView.getCString(Deno.UnsafePointer.create(p[0])!);
  };
  const check = (what: string, code: number) => {
    if (code !== 0) throw new CudaError(`${what}: ${errName(code)} (${code})`);
  };
  const initCode = cu.cuInit(0);
  if (initCode !== 0) {
    throw new CudaUnavailableError(
      `cuInit failed: ${errName(initCode)}: no usable NVIDIA GPU or driver`,
    );
  }
  check("cuDeviceGetCount", cu.cuDeviceGetCount(i32));
  if (i32[0] < 1) throw new CudaUnavailableError("the CUDA driver reports no device");
  check("cuDeviceGet", cu.cuDeviceGet(i32, 0));
  const dev = i32[0];
  const attr = (
    a: number,
  ) => (check(`cuDeviceGetAttribute ${a}`, cu.cuDeviceGetAttribute(i32, a, dev)), i32[0]);
  const major = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
  const minor = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
  const sms = attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
  const nameBuf = new Uint8Array(256);
  check("cuDeviceGetName", cu.cuDeviceGetName(nameBuf, 256, dev));
  const name = new TextDecoder().decode(nameBuf.subarray(0, nameBuf.indexOf(0)));
  check("cuDriverGetVersion", cu.cuDriverGetVersion(i32));
  const driver = `${Math.floor(i32[0] / 1000)}.${(i32[0] % 1000) / 10}`;
  const handle = new BigUint64Array(1);
  check("cuDevicePrimaryCtxRetain", cu.cuDevicePrimaryCtxRetain(handle, dev));
  check("cuCtxSetCurrent", cu.cuCtxSetCurrent(Deno.UnsafePointer.create(handle[0])));

  const cublas = openFirst("cuBLAS", SONAMES.cublas, CUBLAS);
  const nvrtc = openFirst("NVRTC", SONAMES.nvrtc, NVRTC);
  const blas = cublas.lib.symbols;
  const rtc = nvrtc.lib.symbols;
  const blasCheck = (what: string, status: number) => {
    if (status !== 0) throw new CudaError(`${what}: cuBLAS status ${status}`);
  };
  blasCheck("cublasCreate", blas.cublasCreate_v2(handle));
  const blasHandle = Deno.UnsafePointer.create(handle[0]);
  blasCheck("cublasSetMathMode", blas.cublasSetMathMode(blasHandle, CUBLAS_DEFAULT_MATH));
  const v = [new Int32Array(1), new Int32Array(1)];
  rtc.nvrtcVersion(v[0], v[1]);

  const compiled = new Map<string, Map<string, Deno.PointerObject>>();
  const one = new Float32Array([1]);
  const zero = new Float32Array([0]);
  return {
    device: {
      name,
      computeCapability: `${major}.${minor}`,
      multiprocessors: sms,
      driver,
      nvrtc: `${v[0][0]}.${v[1][0]}`,
      libraries: { cuda: cuda.path, cublas: cublas.path, nvrtc: nvrtc.path },
    },
    alloc(bytes) {
      const p = new BigUint64Array(1);
      check(`cuMemAlloc ${bytes} bytes`, cu.cuMemAlloc_v2(p, BigInt(Math.max(bytes, 4))));
      return p[0];
    },
    free(ptr) {
      check("cuMemFree", cu.cuMemFree_v2(ptr));
    },
    upload(dst, src) {
      check(
        `cuMemcpyHtoD ${src.byteLength} bytes`,
        cu.cuMemcpyHtoD_v2(dst, src, BigInt(src.byteLength)),
      );
    },
    download(dst, src) {
      check(
        `cuMemcpyDtoH ${dst.byteLength} bytes`,
        cu.cuMemcpyDtoH_v2(dst, src, BigInt(dst.byteLength)),
      );
    },
    compile(source, kernels) {
      // One module per source for the life of the process: encoders of the same kernels share it.
      const key = `${kernels.join(",")}\n${source}`;
      let found = compiled.get(key);
      if (!found) {
        found = compileKernels({ rtc, cu, check, source, kernels, arch: `sm_${major}${minor}` });
        compiled.set(key, found);
      }
      return found;
    },
    launch(kernel, { grid, block }, args) {
      const params = new BigUint64Array(args.length);
      args.forEach((a, i) =>
        params[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(a)))
      );
      check(
        `cuLaunchKernel grid ${grid} block ${block}`,
        cu.cuLaunchKernel(kernel, grid, 1, 1, block, 1, 1, 0, null, params, null),
      );
    },
    sgemmRowMajor({ a, b, c, n, k, m }) {
      // Column-major cuBLAS computes Cᵀ[m×n] = Bᵀ[m×k]·Aᵀ[k×n]: row-major B, A and C as they are.
      blasCheck(
        `cublasSgemm ${n}×${k}·${k}×${m}`,
        blas.cublasSgemm_v2(blasHandle, 0, 0, m, n, k, one, b, m, a, k, zero, c, m),
      );
    },
    gemmBf16RowMajor({ a, b, c, n, k, m }) {
      blasCheck(
        `cublasGemmEx bf16 ${n}×${k}·${k}×${m}`,
        blas.cublasGemmEx(
          blasHandle,
          0,
          0,
          m,
          n,
          k,
          one,
          b,
          CUDA_R_16BF,
          m,
          a,
          CUDA_R_16BF,
          k,
          zero,
          c,
          CUDA_R_32F,
          m,
          CUBLAS_COMPUTE_32F,
          CUBLAS_GEMM_DEFAULT,
        ),
      );
    },
    synchronize() {
      check("cuCtxSynchronize", cu.cuCtxSynchronize());
    },
  };
}
