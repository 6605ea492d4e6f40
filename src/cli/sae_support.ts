/**
 * What the `latentwatch sae` and `latentwatch probe` subcommands share:
 * which errors are the user's (message only, exit 1), flag parsing, the
 * loading-progress reporter, where the encoder runs, reading activations and
 * writing results to stdout.
 *
 * @module
 */
import type { SaeWeights } from "../core/sae.ts";
import { EncoderConfigError, EncoderInputError } from "../core/encoder_checks.ts";
import { type NpyArray, NpyError, readNpy } from "../formats/npy.ts";
import { LabelFormatError } from "../formats/neuronpedia.ts";
import { ProbeFormatError } from "../formats/probe.ts";
import type { LoadSaeOptions } from "../formats/load.ts";
import { SaeFormatError } from "../formats/errors.ts";
import { TorchCheckpointError, TorchPickleRefusedError } from "../formats/torch_pickle.ts";
import { ZipError } from "../formats/zip.ts";
import { SafetensorsError } from "../formats/safetensors.ts";
import { createOrtEncoder } from "../runtime/ort_encoder.ts";
import { cudaAvailability, cudaEncoderTakes, withCudaNote } from "../runtime/cuda_choice.ts";
import {
  type ExecutionProviderSetting,
  type ProviderReport,
  providerWithoutModel,
} from "../runtime/provider.ts";
/** Input the user can fix: reported on stderr with exit code 1. */
export class CliInputError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CliInputError";
  }
}

/** Errors that describe a bad file or argument, not a bug: message only, exit 1. */
export function isUserError(e: unknown): e is Error {
  return e instanceof CliInputError || e instanceof SaeFormatError || e instanceof NpyError ||
    e instanceof SafetensorsError || e instanceof LabelFormatError ||
    e instanceof ProbeFormatError || e instanceof EncoderConfigError ||
    e instanceof EncoderInputError || e instanceof TorchCheckpointError ||
    e instanceof TorchPickleRefusedError || e instanceof ZipError;
}

/** Tokens per encoder call unless `--batch` says otherwise. */
export const DEFAULT_BATCH = 128;

/**
 * Loading progress is drawn on stderr when stderr is a terminal, or when the
 * weights pass this size (so a log of a big load shows it is not stuck).
 * `LATENTWATCH_PROGRESS_MIN_BYTES` overrides it (tests use 0).
 */
const PROGRESS_MIN_BYTES = 256 * 1024 * 1024;

/** `raw` as a positive integer (`fallback` when absent); else a {@linkcode CliInputError} naming `flag`. */
export function positiveInt(flag: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new CliInputError(`${flag}: expected a positive integer, found '${raw}'`);
  }
  return n;
}

/** `raw` as a latent index (an integer ≥ 0); else a {@linkcode CliInputError} naming `flag`. */
export function nonNegativeInt(flag: string, raw: string): number {
  const n = raw.trim() === "" ? NaN : Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new CliInputError(`${flag}: expected a latent index (an integer ≥ 0), found '${raw}'`);
  }
  return n;
}

/**
 * A loading-progress callback that draws on stderr, or undefined when
 * nobody would see it. On a terminal one line is redrawn (throttled); in a
 * log, large loads print a line per quarter so the log is not flooded.
 */
export function progressReporter(): LoadSaeOptions["onProgress"] {
  const env = Deno.env.get("LATENTWATCH_PROGRESS_MIN_BYTES");
  const minBytes = env !== undefined && env !== "" ? Number(env) : PROGRESS_MIN_BYTES;
  const tty = Deno.stderr.isTerminal();
  const utf8 = new TextEncoder();
  let lastDraw = 0;
  let lastQuarter = -1;
  let lastPhase = "";
  return (done, total, phase) => {
    if (total <= 0 || (!tty && total < minBytes)) return;
    const pct = Math.min(100, Math.floor((done / total) * 100));
    const mib = (n: number) => (n / 1048576).toFixed(0);
    const text = `loading: ${phase} ${pct}% (${mib(done)}/${mib(total)} MiB)`;
    if (phase !== lastPhase) {
      lastPhase = phase;
      lastQuarter = -1;
    }
    if (tty) {
      const now = Date.now();
      if (done < total && now - lastDraw < 100) return;
      lastDraw = now;
      Deno.stderr.writeSync(utf8.encode(`\r\x1b[2K${text}${done >= total ? "\n" : ""}`));
      return;
    }
    const quarter = Math.floor(pct / 25);
    if (quarter === lastQuarter) return;
    lastQuarter = quarter;
    Deno.stderr.writeSync(utf8.encode(`${text}\n`));
  };
}

/** How `encode` and `eval` run the encoder. */
export interface RunOptions {
  batch: number;
  threads: number | undefined;
  provider: ExecutionProviderSetting;
  /** The subcommand, for warnings. */
  sub: string;
}

/** A provider fallback worth a warning goes to stderr (stdout carries results only). */
export function warnFallback(sub: string, report: ProviderReport): void {
  if (report.providerFallback && report.providerNote) {
    console.error(`latentwatch sae ${sub}: warning: ${report.providerNote}`);
  }
}

/**
 * Where the SAE's encoder runs with `setting`: known without a session when
 * no GPU provider can start here (or `cpu` is asked for); otherwise the
 * encoder is opened, since a GPU provider may still refuse this model.
 */
export async function providerOf(
  sae: SaeWeights,
  setting: ExecutionProviderSetting,
  onProgress: LoadSaeOptions["onProgress"],
): Promise<ProviderReport> {
  // latentwatch's CUDA encoder comes first where it takes the SAE (cuda_choice.ts)
  const cuda = cudaEncoderTakes(sae, setting) ? cudaAvailability() : null;
  const known = cuda?.available ? null : await providerWithoutModel(setting);
  if (known && cuda?.reason) {
    return withCudaNote(known, setting, { reason: cuda.reason, unavailable: true });
  }
  if (known) return known;
  const encoder = await createOrtEncoder(sae, { provider: setting, onProgress });
  await encoder.close();
  return encoder;
}

/**
 * The shortest decimal with at most 9 significant digits that reads back as
 * the same f32 (6-9 digits; 9 always suffices), in JSON number syntax.
 */
export function formatF32(v: number): string {
  if (!Number.isFinite(v)) return "null";
  for (let p = 6; p < 9; p++) {
    const s = v.toPrecision(p);
    if (Math.fround(Number(s)) === v) return String(Number(s));
  }
  return String(Number(v.toPrecision(9)));
}

/** Write all of `bytes` to stdout. */
export async function writeAll(bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.byteLength) off += await Deno.stdout.write(bytes.subarray(off));
}

/**
 * Read a `[T, width]` activation array and refuse non-finite values: a NaN
 * or ±Inf would flow through the encoder into `null` latents (or a NaN MSE)
 * and make every downstream number meaningless.
 */
export async function readActivations(
  inputPath: string,
  width: number,
  what: string,
  of: string,
): Promise<NpyArray> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(inputPath);
  } catch (e) {
    throw new CliInputError(`${inputPath}: cannot read the input array: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const acts = readNpy(bytes, inputPath);
  if (acts.shape.length !== 2 || acts.shape[1] !== width) {
    throw new CliInputError(
      `${inputPath}: expected shape [T, ${what}] = [T, ${width}] (${what} of ${of}), found [${
        acts.shape.join(", ")
      }]`,
    );
  }
  const data = acts.data;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      // float64 beyond the f32 range became ±Infinity when rounded on read.
      const rounded = acts.dtype === "f64" ? " as float32" : "";
      throw new CliInputError(
        `${inputPath}: token ${Math.floor(i / width)}, column ${i % width} is ${
          data[i]
        }${rounded}; expected finite activations`,
      );
    }
  }
  if (acts.dtype === "f64") {
    console.error(`latentwatch: ${inputPath}: float64 input rounded to float32`);
  }
  return acts;
}
