/**
 * `latentwatch sae inspect|encode`: look at an SAE folder, or run it over a
 * NumPy array of activations and print one JSON line per token.
 *
 * stdout carries results only; every diagnostic goes to stderr, so the
 * output can be piped straight into `jq` or a file.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { SaeWeights, SparseLatents } from "../core/sae.ts";
import { NpyError, readNpy } from "../formats/npy.ts";
import { loadSaeLens, SaeFormatError } from "../formats/saelens.ts";
import { SafetensorsError } from "../formats/safetensors.ts";
import { createOrtEncoder } from "../runtime/ort_encoder.ts";

const USAGE = `usage:
  latentwatch sae inspect <path> [--json]
      print format, architecture, d_in, d_sae, hook and dtype of an SAE folder
  latentwatch sae encode <path> --input <acts.npy> [--batch 128] [--threads N]
      encode a float32/float16 array of shape [T, d_in]; one JSON line per token:
      {"token": <i>, "latents": [[<index>, <value>], ...]}

<path> is a SAELens folder (cfg.json + sae_weights.safetensors) or either file in it.`;

/** Input the user can fix: reported on stderr with exit code 1. */
class CliInputError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CliInputError";
  }
}

const DEFAULT_BATCH = 128;

/**
 * Run `latentwatch sae ...` with the arguments after `sae`; returns the exit
 * code (0 ok, 1 bad input, 2 usage).
 *
 * @example
 * ```ts
 * const code = await runSaeCommand(["inspect", "saes/my-sae", "--json"]);
 * ```
 */
export async function runSaeCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        input: { type: "string", short: "i" },
        json: { type: "boolean" },
        batch: { type: "string" },
        threads: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    console.error(`latentwatch sae: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [sub, path, ...extra] = positionals;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if ((sub !== "inspect" && sub !== "encode") || !path || extra.length > 0) {
    const why = !sub
      ? "missing subcommand"
      : sub !== "inspect" && sub !== "encode"
      ? `unknown subcommand '${sub}'`
      : !path
      ? "missing <path>"
      : `unexpected arguments: ${extra.join(" ")}`;
    console.error(`latentwatch sae: ${why}\n\n${USAGE}`);
    return 2;
  }
  try {
    if (sub === "inspect") return await inspect(path, values.json ?? false);
    if (!values.input) {
      console.error(`latentwatch sae encode: missing --input <acts.npy>\n\n${USAGE}`);
      return 2;
    }
    const batch = positiveInt("--batch", values.batch, DEFAULT_BATCH);
    const threads = values.threads === undefined
      ? undefined
      : positiveInt("--threads", values.threads, 1);
    return await encode(path, values.input, batch, threads);
  } catch (e) {
    if (
      e instanceof CliInputError || e instanceof SaeFormatError || e instanceof NpyError ||
      e instanceof SafetensorsError
    ) {
      console.error(`latentwatch sae ${sub}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

function positiveInt(flag: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new CliInputError(`${flag}: expected a positive integer, found '${raw}'`);
  }
  return n;
}

function describe(sae: SaeWeights): Record<string, string | number | null> {
  const info: Record<string, string | number | null> = {
    format: sae.format,
    architecture: sae.architecture,
    d_in: sae.dIn,
    d_sae: sae.dSae,
    hook: sae.hookName,
    dtype: sae.dtype,
    model: sae.modelName,
  };
  if (sae.architecture === "topk") info.k = sae.k ?? null;
  return info;
}

async function inspect(path: string, json: boolean): Promise<number> {
  const info = describe(await loadSaeLens(path));
  if (json) {
    console.log(JSON.stringify(info));
  } else {
    for (const [key, value] of Object.entries(info)) console.log(`${key}: ${value ?? "unknown"}`);
  }
  return 0;
}

/**
 * The shortest decimal with at most 9 significant digits that reads back as
 * the same f32 (6-9 digits; 9 always suffices), in JSON number syntax.
 */
function formatF32(v: number): string {
  if (!Number.isFinite(v)) return "null";
  for (let p = 6; p < 9; p++) {
    const s = v.toPrecision(p);
    if (Math.fround(Number(s)) === v) return String(Number(s));
  }
  return String(Number(v.toPrecision(9)));
}

function formatToken(token: number, l: SparseLatents): string {
  let s = `{"token": ${token}, "latents": [`;
  for (let p = 0; p < l.indices.length; p++) {
    s += `${p === 0 ? "" : ", "}[${l.indices[p]}, ${formatF32(l.values[p])}]`;
  }
  return s + "]}\n";
}

async function writeAll(bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.byteLength) off += await Deno.stdout.write(bytes.subarray(off));
}

async function encode(
  path: string,
  inputPath: string,
  batch: number,
  threads: number | undefined,
): Promise<number> {
  const sae = await loadSaeLens(path);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(inputPath);
  } catch (e) {
    throw new CliInputError(`${inputPath}: cannot read the input array: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const acts = readNpy(bytes, inputPath);
  if (acts.shape.length !== 2 || acts.shape[1] !== sae.dIn) {
    throw new CliInputError(
      `${inputPath}: expected shape [T, d_in] = [T, ${sae.dIn}] (d_in of ${sae.source}), found [${
        acts.shape.join(", ")
      }]`,
    );
  }
  if (acts.dtype === "f64") {
    console.error(`latentwatch sae encode: ${inputPath}: float64 input rounded to float32`);
  }
  const tokens = acts.shape[0];
  const encoder = await createOrtEncoder(sae, { intraOpThreads: threads });
  const utf8 = new TextEncoder();
  try {
    for (let start = 0; start < tokens; start += batch) {
      const n = Math.min(batch, tokens - start);
      const latents = await encoder.encode(
        acts.data.subarray(start * sae.dIn, (start + n) * sae.dIn),
        n,
      );
      let out = "";
      for (let t = 0; t < n; t++) out += formatToken(start + t, latents[t]);
      await writeAll(utf8.encode(out));
    }
  } catch (e) {
    // A closed pipe (`| head`) is a normal way for a reader to stop.
    if (e instanceof Deno.errors.BrokenPipe) return 0;
    throw e;
  } finally {
    await encoder.close();
  }
  return 0;
}
