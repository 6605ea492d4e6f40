/**
 * Building and loading latentwatch's native CPU kernels (`native/kernels.c`):
 * compiled on first use with the system's C compiler (`$CC`, else `cc`)
 * into a cache folder, one file per source and flags, and opened through
 * Deno's FFI once per process. `native_kernels.ts` wraps the kernels.
 *
 * @module
 */

/** Compiler flags: only the instruction sets the kernel uses, so the library runs on any CPU with them. */
const CFLAGS = [
  ...["-O3", "-ffp-contract=off", "-shared", "-fPIC"],
  ...["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"],
];
/** The CPU flags (`/proc/cpuinfo`) the kernel needs. */
const CPU_FLAGS = ["avx512f", "avx512bw", "avx512vl", "avx512_vnni"];
// each worker-thread kernel twice: called here, and on an FFI worker thread (a promise)
const GEMM_ARGS = ["buffer", "i32", "i32", "buffer", "i32", "buffer", "i32", "i32"] as const;
const TOPK_ARGS = [
  ...["buffer", "i32", "i32", "i32"],
  ...["buffer", "buffer", "buffer", "i32", "buffer", "buffer"],
] as const;
const DOTS_ARGS = ["buffer", "buffer", "i32", "i32", "i32", "buffer"] as const;
const SELECT_ARGS = [
  ...["buffer", "i32", "i32", "i32", "i32", "buffer", "buffer", "buffer", "i32"],
  ...["buffer", "buffer", "buffer", "buffer", "i32", "buffer", "buffer", "buffer"],
] as const;

const SYMBOLS = {
  lw_packed_bytes: { parameters: ["i32", "i32"], result: "i64" },
  lw_pack: { parameters: ["buffer", "i32", "i32", "buffer"], result: "void" },
  lw_prepared_bytes: { parameters: ["i32", "i32"], result: "i64" },
  lw_prepare: { parameters: ["buffer", "i32", "i32", "buffer"], result: "void" },
  lw_gemm: { parameters: GEMM_ARGS, result: "void" },
  lw_gemm_async: { name: "lw_gemm", parameters: GEMM_ARGS, result: "void", nonblocking: true },
  lw_topk_scores: { parameters: TOPK_ARGS, result: "void" },
  lw_topk_scores_async: {
    name: "lw_topk_scores",
    parameters: TOPK_ARGS,
    result: "void",
    nonblocking: true,
  },
  lw_select: { parameters: SELECT_ARGS, result: "void" },
  lw_select_async: {
    name: "lw_select",
    parameters: SELECT_ARGS,
    result: "void",
    nonblocking: true,
  },
  lw_dots: { parameters: DOTS_ARGS, result: "void" },
  lw_dots_async: { name: "lw_dots", parameters: DOTS_ARGS, result: "void", nonblocking: true },
  lw_sgemm: {
    parameters: [
      ...["buffer", "i32", "i32", "buffer", "i32", "i32"],
      ...["buffer", "buffer", "buffer", "buffer", "i32"],
    ],
    result: "void",
  },
} as const;

/** The opened library and its symbols. */
export type NativeLibrary = Deno.DynamicLibrary<typeof SYMBOLS>;

/** Whether the native kernel loaded, and if not, why. */
export type NativeKernelsStatus =
  | { available: true; library: string }
  | { available: false; reason: string };

/** The native kernel could not be used; `message` says what was expected and what was found. */
export class NativeKernelsUnavailableError extends Error {
  override name = "NativeKernelsUnavailableError";
}

let loading: Promise<{ lib: NativeLibrary; path: string } | NativeKernelsUnavailableError> | null =
  null;

/** `auto`, `require` or `off`: `execution.native_kernels` (docs/monitor-config.md). */
export type NativeKernelsSetting = "auto" | "require" | "off";

/** The native-kernel settings, for configuration checks. */
export const NATIVE_KERNELS_SETTINGS = ["auto", "require", "off"] as const;

/**
 * Why the native kernels do not run under `setting` (undefined: they load
 * and may run): `off` says so, `auto` gives the reason they cannot load,
 * and `require` throws it as a {@linkcode NativeKernelsUnavailableError}.
 *
 * @example
 * ```ts
 * await nativeKernelsReason("off"); // "execution.native_kernels is off"
 * ```
 */
export async function nativeKernelsReason(
  setting: NativeKernelsSetting,
): Promise<string | undefined> {
  if (setting === "off") return "execution.native_kernels is off";
  const status = await nativeKernelsStatus();
  if (status.available) return undefined;
  if (setting === "require") throw new NativeKernelsUnavailableError(status.reason);
  return status.reason;
}

/**
 * Compile (once, cached on disk by the source's hash) and load the kernel.
 * The result is shared by the whole process.
 *
 * @example
 * ```ts
 * const status = await nativeKernelsStatus();
 * status.available ? status.library : status.reason;
 * ```
 */
export async function nativeKernelsStatus(): Promise<NativeKernelsStatus> {
  const got = await loadLibrary();
  return got instanceof Error
    ? { available: false, reason: got.message }
    : { available: true, library: got.path };
}

/** The library, loaded once per process (compiled first if need be), or why it cannot be. */
export function loadLibrary(): Promise<
  { lib: NativeLibrary; path: string } | NativeKernelsUnavailableError
> {
  return loading ??= (async () => {
    try {
      assertCpu();
      const dir = cacheDir();
      const path = await compiledLibrary(dir);
      try {
        return { lib: Deno.dlopen(path, SYMBOLS), path };
      } catch {
        // a damaged or foreign file at the hashed name (a copy cut short): build it again, once
        const again = await compiledLibrary(dir, { rebuild: true });
        return { lib: Deno.dlopen(again, SYMBOLS), path: again };
      }
    } catch (e) {
      return e instanceof NativeKernelsUnavailableError
        ? e
        : new NativeKernelsUnavailableError(`cannot load the native kernels: ${message(e)}`, {
          cause: e,
        });
    }
  })();
}

function message(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/**
 * The CPU flags the kernels need that this machine lacks (`/proc/cpuinfo`;
 * all of them off x86-64 Linux).
 *
 * @example
 * ```ts
 * missingCpuFlags().length === 0; // true where the kernels can run
 * ```
 */
export function missingCpuFlags(): string[] {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") return [...CPU_FLAGS];
  const info = Deno.readTextFileSync("/proc/cpuinfo");
  const flags = new Set((/^flags\s*:(.*)$/m.exec(info)?.[1] ?? "").trim().split(/\s+/));
  return CPU_FLAGS.filter((f) => !flags.has(f));
}

function assertCpu(): void {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new NativeKernelsUnavailableError(
      `the native kernels need x86-64 Linux, found ${Deno.build.arch} ${Deno.build.os}`,
    );
  }
  const missing = missingCpuFlags();
  if (missing.length > 0) {
    throw new NativeKernelsUnavailableError(
      `the native kernels need the CPU flags ${CPU_FLAGS.join(", ")}; this CPU lacks ${
        missing.join(", ")
      }`,
    );
  }
}

/** Where compiled kernels are kept: `$LATENTWATCH_NATIVE_CACHE`, else `$XDG_CACHE_HOME` (absolute) or `~/.cache`. */
function cacheDir(): string {
  const own = Deno.env.get("LATENTWATCH_NATIVE_CACHE");
  if (own) return own;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg?.startsWith("/")) return `${xdg}/latentwatch`;
  const home = Deno.env.get("HOME");
  if (home) return `${home}/.cache/latentwatch`;
  throw new NativeKernelsUnavailableError(
    "the native kernels need a cache folder: set LATENTWATCH_NATIVE_CACHE, XDG_CACHE_HOME or HOME",
  );
}

/** The library's path, compiling it first when no copy of this source and these flags is cached. */
async function compiledLibrary(dir: string, opts: { rebuild?: boolean } = {}): Promise<string> {
  const source = await Deno.readTextFile(new URL("./native/kernels.c", import.meta.url));
  const cc = Deno.env.get("CC") ?? "cc";
  // the file is named by what it was built from: any compiler's build of it will do
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode([source, ...CFLAGS].join("\0"))),
  );
  const hash = [...digest.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const path = `${dir}/kernels-${hash}.so`;
  if (!opts.rebuild) {
    try {
      if ((await Deno.stat(path)).isFile) return path;
    } catch { /* not compiled yet */ }
  }
  await Deno.mkdir(dir, { recursive: true });
  // compile beside the target, then rename: a concurrent process never opens a half-written file
  // (a random name: processes in other PID namespaces may share the folder and the PID)
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  const src = `${tmp}.c`;
  await Deno.writeTextFile(src, source);
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cc, { args: [...CFLAGS, "-o", tmp, src], stderr: "piped" })
      .output();
  } catch (e) {
    await Deno.remove(src).catch(() => {});
    throw new NativeKernelsUnavailableError(
      `the native kernels need a C compiler: cannot run \`${cc}\` (${message(e)})`,
      { cause: e },
    );
  }
  await Deno.remove(src).catch(() => {});
  if (!out.success) {
    await Deno.remove(tmp).catch(() => {});
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(0, 3).join(" | ");
    throw new NativeKernelsUnavailableError(
      `compiling the native kernels with \`${cc}\` failed (exit ${out.code}): ${err}`,
    );
  }
  await Deno.rename(tmp, path);
  return path;
}

/**
 * Build the kernels into `dir` (or find them there) without loading them,
 * whatever this CPU: a prepared folder or image ships them for machines
 * without a compiler (`LATENTWATCH_NATIVE_CACHE` names the folder there).
 * Returns the library's path; the error says why it cannot be built.
 *
 * @example
 * ```ts
 * const path = await buildNativeKernels("/opt/latentwatch/native-kernels");
 * path.endsWith(".so"); // true
 * ```
 */
export async function buildNativeKernels(dir: string): Promise<string> {
  try {
    return await compiledLibrary(dir);
  } catch (e) {
    if (e instanceof NativeKernelsUnavailableError) throw e;
    throw new NativeKernelsUnavailableError(
      `cannot build the native kernels in ${dir}: ${message(e)}`,
      {
        cause: e,
      },
    );
  }
}
