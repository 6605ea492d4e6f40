/**
 * The bench's NumPy child (`bench/numpy_baseline.py`), started with a fair
 * environment: `OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` are removed from
 * the child's environment (only the child's), so OpenBLAS picks the kernels
 * it would pick for this CPU (e.g. its AVX-512 `SkylakeX` kernels) instead of
 * those a machine-wide setting forces (e.g. `Haswell`, AVX2 only). The child
 * reports the BLAS it loaded and the kernel OpenBLAS chose (`blas`), which
 * the bench records in its `machine` record.
 *
 * @module
 */
import type { MatmulPeak } from "./matmul_peak.ts";

/** Variables that force OpenBLAS's kernel choice or cache model; never passed to the child. */
export const OPENBLAS_FORCING_VARIABLES = ["OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"] as const;

/** The BLAS NumPy loaded and the kernel it chose, as the child asked the library at run time. */
export interface NumpyBlas {
  /** `openblas`, or the shared library's file name for another BLAS; null when none was found. */
  library: string | null;
  version: string | null;
  /** OpenBLAS's kernel (`openblas_get_corename`): `Haswell`, `SkylakeX`, `Zen`, …; null when unknown. */
  corename: string | null;
  threads: number | null;
  /** How it was asked: `threadpoolctl`, or the library file and symbol called through ctypes. */
  source: string | null;
}

/** What the child prints. */
export interface NumpyReport {
  numpy?: string;
  blas?: NumpyBlas;
  results: { name: string; tokens_per_s: number }[];
  matmul?: MatmulPeak[];
}

/**
 * `env` without the variables that force OpenBLAS's kernel choice
 * ({@linkcode OPENBLAS_FORCING_VARIABLES}); everything else is kept.
 *
 * @example
 * ```ts
 * const env = fairNumpyEnv({ PATH: "/usr/bin", OPENBLAS_CORETYPE: "Haswell" });
 * // env = { PATH: "/usr/bin" }
 * ```
 */
export function fairNumpyEnv(env: Record<string, string>): Record<string, string> {
  const out = { ...env };
  for (const name of OPENBLAS_FORCING_VARIABLES) delete out[name];
  return out;
}

/** Options of {@linkcode runNumpyChild}. */
export interface NumpyChildOptions {
  /** The job (see `numpy_baseline.py`): `cases`, `matmul`, `seconds`, `warmup_seconds`. */
  job: Record<string, unknown>;
  /** Variables set in the child after the fair environment is made (tests force a kernel with it). */
  extraEnv?: Record<string, string>;
  /** The Python to run (default `python3`). */
  python?: string;
}

/** The NumPy child failed: python3 or NumPy missing, or the script raised. */
export class NumpyChildError extends Error {
  override name = "NumpyChildError";
}

/**
 * Run `bench/numpy_baseline.py` on a job in a fair environment (this
 * process's environment less {@linkcode OPENBLAS_FORCING_VARIABLES}, plus
 * `extraEnv`); throws {@linkcode NumpyChildError} when it cannot run.
 *
 * @example
 * ```ts
 * const report = await runNumpyChild({ job: { cases: [], seconds: 0.1 } });
 * console.log(report.blas?.corename); // "SkylakeX" on an AVX-512 CPU
 * ```
 */
export async function runNumpyChild(opts: NumpyChildOptions): Promise<NumpyReport> {
  const python = opts.python ?? "python3";
  let output: Deno.CommandOutput;
  try {
    const child = new Deno.Command(python, {
      args: [new URL("./numpy_baseline.py", import.meta.url).pathname],
      clearEnv: true,
      env: { ...fairNumpyEnv(Deno.env.toObject()), ...opts.extraEnv },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(JSON.stringify(opts.job)));
    await w.close();
    output = await child.output();
  } catch (cause) {
    throw new NumpyChildError(`could not start ${python} for the NumPy baseline`, { cause });
  }
  const stderr = new TextDecoder().decode(output.stderr).trim();
  if (output.code !== 0) {
    throw new NumpyChildError(
      `${python} bench/numpy_baseline.py exited with ${output.code}: ${stderr.split("\n").at(-1)}`,
      { cause: stderr },
    );
  }
  const text = new TextDecoder().decode(output.stdout);
  try {
    return JSON.parse(text) as NumpyReport;
  } catch (cause) {
    throw new NumpyChildError(
      `bench/numpy_baseline.py printed no JSON report (expected {"results": […]}, found ${
        JSON.stringify(text.slice(0, 80))
      })`,
      { cause },
    );
  }
}
