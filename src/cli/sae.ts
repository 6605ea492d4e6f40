/**
 * `latentwatch sae inspect|encode|eval`: look at a downloaded SAE or
 * transcoder, run it over a NumPy array of activations and print one JSON
 * line per token, or measure how well it reconstructs them. Also
 * `latentwatch probe score` ({@linkcode runProbeCommand}) for linear probes.
 *
 * stdout carries results only; every diagnostic (warnings, loading
 * progress, errors) goes to stderr, so the output can be piped straight into
 * `jq` or a file.
 *
 * @module
 */

import type { LinearProbe, SaeWeights, SettingProvenance, SparseLatents } from "../core/sae.ts";
import { saeDOut } from "../core/sae.ts";
import { evaluateReconstruction } from "../core/decode.ts";
import { EncoderConfigError, EncoderInputError } from "../core/reference_encoder.ts";
import { type NpyArray, NpyError, readNpy } from "../formats/npy.ts";
import {
  attachLabels,
  findLabelsNextTo,
  LabelFormatError,
  readNeuronpediaExplanations,
} from "../formats/neuronpedia.ts";
import { loadProbe, ProbeFormatError } from "../formats/probe.ts";
import { loadSae, type LoadSaeOptions, SAE_FORMATS, type SaeFormatName } from "../formats/load.ts";
import { SaeFormatError } from "../formats/errors.ts";
import { TorchCheckpointError, TorchPickleRefusedError } from "../formats/torch_pickle.ts";
import { ZipError } from "../formats/zip.ts";
import { SafetensorsError } from "../formats/safetensors.ts";
import { createOrtEncoder, createProbeEncoder } from "../runtime/ort_encoder.ts";
import {
  EXECUTION_PROVIDERS,
  type ExecutionProviderSetting,
  type ProviderReport,
  providerWithoutModel,
} from "../runtime/provider.ts";
import { parseCommandArgs, usageError } from "./common.ts";

const USAGE = `usage:
  latentwatch sae inspect <path> [--labels P] [--latent N] [--json] [--provider P] [load options]
      format, architecture, kind, d_in, d_sae, d_out, hook, dtype, normalisation,
      b_dec on input, skip connection and label count of an SAE or transcoder,
      and the execution provider its encoder runs on;
      --latent N adds that latent's label and decoder norm ‖W_dec[N,:]‖
  latentwatch sae encode <path> --input <acts.npy> [--batch 128] [--threads N] [--provider P] [load options]
      encode a float32/float16 array of shape [T, d_in]; one JSON line per token:
      {"token": <i>, "latents": [[<index>, <value>], ...]}
  latentwatch sae eval <path> --input <acts.npy> [--target <out.npy>] [--json] [--provider P] [load options]
      reconstruction MSE, fraction of variance unexplained, mean L0 and dead
      latents on that input (--target: what a transcoder should output)

--provider: where onnxruntime runs the encoder: ${EXECUTION_PROVIDERS.join(", ")} (default auto:
WebGPU, then CUDA, then the CPU); a GPU provider that cannot start falls back to
the CPU with a warning saying why (docs/gpu.md).

<path> is an SAE folder or file: SAELens (cfg.json + sae_weights.safetensors),
Gemma Scope (params.npz or its average_l0_* folder), Gemma Scope 2 (config.json +
params.safetensors), sparsify (cfg.json + sae.safetensors), OpenAI or
dictionary_learning (.pt). Load options:
  --format F            skip detection: ${SAE_FORMATS.join(", ")}
  --scaling-factor S    SAELens expected_average_only_in factor when the folder lacks it
  --layer L             Gemma Scope 2 cross-layer transcoder folder: the source layer
Labels: an explanations/ folder (Neuronpedia export) inside the SAE folder is
read automatically; --labels <file or folder> points elsewhere.`;

const PROBE_USAGE = `usage:
  latentwatch probe score <probe> --input <acts.npy> [--batch 128]
      score a [T, d_in] array with a linear probe (.npy, .safetensors or .json);
      one JSON line per token: {"token": <i>, "scores": [<s0>, ...]}`;

/** Input the user can fix: reported on stderr with exit code 1. */
class CliInputError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CliInputError";
  }
}

/** Errors that describe a bad file or argument, not a bug: message only, exit 1. */
function isUserError(e: unknown): e is Error {
  return e instanceof CliInputError || e instanceof SaeFormatError || e instanceof NpyError ||
    e instanceof SafetensorsError || e instanceof LabelFormatError ||
    e instanceof ProbeFormatError || e instanceof EncoderConfigError ||
    e instanceof EncoderInputError || e instanceof TorchCheckpointError ||
    e instanceof TorchPickleRefusedError || e instanceof ZipError;
}

const DEFAULT_BATCH = 128;

/**
 * Loading progress is drawn on stderr when stderr is a terminal, or when the
 * weights pass this size (so a log of a big load shows it is not stuck).
 * `LATENTWATCH_PROGRESS_MIN_BYTES` overrides it (tests use 0).
 */
const PROGRESS_MIN_BYTES = 256 * 1024 * 1024;

/**
 * Run `latentwatch sae ...` with the arguments after `sae`; returns the exit
 * code (0 ok, 1 bad input, 2 usage).
 *
 * @example
 * ```ts
 * const code = await runSaeCommand(["inspect", "saes/my-sae", "--latent", "42"]);
 * ```
 */
export async function runSaeCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("latentwatch sae", USAGE, args, {
    input: { type: "string", short: "i" },
    target: { type: "string" },
    format: { type: "string", short: "f" },
    labels: { type: "string" },
    latent: { type: "string" },
    "scaling-factor": { type: "string" },
    layer: { type: "string" },
    json: { type: "boolean" },
    batch: { type: "string" },
    threads: { type: "string" },
    provider: { type: "string" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const [sub, path, ...extra] = positionals;
  const known = sub === "inspect" || sub === "encode" || sub === "eval";
  if (!known || !path || extra.length > 0) {
    const why = !sub
      ? "missing subcommand"
      : !known
      ? `unknown subcommand '${sub}'`
      : !path
      ? "missing <path>"
      : `unexpected arguments: ${extra.join(" ")}`;
    return usageError("latentwatch sae", USAGE, why);
  }
  if (values.format !== undefined && !(SAE_FORMATS as readonly string[]).includes(values.format)) {
    console.error(
      `latentwatch sae ${sub}: --format: expected one of ${
        SAE_FORMATS.join(", ")
      }, found '${values.format}'`,
    );
    return 2;
  }
  const provider = (values.provider ?? "auto") as ExecutionProviderSetting;
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(provider)) {
    console.error(
      `latentwatch sae ${sub}: --provider: expected one of ${
        EXECUTION_PROVIDERS.join(", ")
      }, found '${provider}'`,
    );
    return 2;
  }
  const load: LoadSaeOptions = {
    format: values.format as SaeFormatName | undefined,
    onProgress: progressReporter(),
  };
  try {
    const scaling = values["scaling-factor"];
    if (scaling !== undefined) {
      const s = Number(scaling);
      if (!(s > 0) || !Number.isFinite(s)) {
        throw new CliInputError(`--scaling-factor: expected a positive number, found '${scaling}'`);
      }
      load.scalingFactor = s;
    }
    if (values.layer !== undefined) load.layer = nonNegativeInt("--layer", values.layer);
    if (sub === "inspect") {
      const latent = values.latent === undefined
        ? undefined
        : nonNegativeInt("--latent", values.latent);
      return await inspect(path, load, values.labels, latent, values.json ?? false, provider);
    }
    if (!values.input) {
      return usageError(`latentwatch sae ${sub}`, USAGE, "missing --input <acts.npy>");
    }
    const batch = positiveInt("--batch", values.batch, DEFAULT_BATCH);
    const threads = values.threads === undefined
      ? undefined
      : positiveInt("--threads", values.threads, 1);
    if (sub === "eval") {
      return await evaluate(
        path,
        load,
        values.input,
        values.target,
        { batch, threads, provider, sub },
        values.json,
      );
    }
    return await encode(path, load, values.input, { batch, threads, provider, sub });
  } catch (e) {
    if (isUserError(e)) {
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

function nonNegativeInt(flag: string, raw: string): number {
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
function progressReporter(): LoadSaeOptions["onProgress"] {
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

/** Labels from `--labels`, else from an `explanations/` folder next to the SAE, else none. */
async function withLabels(sae: SaeWeights, path: string, labels?: string): Promise<SaeWeights> {
  const from = labels ?? await findLabelsNextTo(path);
  if (from === null) return sae;
  const r = await readNeuronpediaExplanations(from, {
    neuronpediaId: sae.neuronpediaId ?? null,
    onWarning: (m) => console.error(`latentwatch sae: warning: ${m}`),
  });
  if (r.duplicates > 0) {
    console.error(
      `latentwatch sae: ${from}: ${r.duplicates} latents have several explanations; kept the first of each in file order`,
    );
  }
  return attachLabels(sae, r.labels);
}

/** ‖W_dec[i, :]‖₂ over the decoder output width, accumulated in f64. */
function decoderNorm(sae: SaeWeights, i: number): number {
  const dOut = saeDOut(sae);
  let sq = 0;
  for (let j = 0; j < dOut; j++) sq += sae.wDec[i * dOut + j] ** 2;
  return Math.sqrt(sq);
}

type Info = Record<
  string,
  string | number | boolean | null | Record<string, unknown> | SettingProvenance[]
>;

function describe(sae: SaeWeights): Info {
  const transcoder = sae.kind === "transcoder";
  const info: Info = {
    format: sae.format,
    architecture: sae.architecture,
    kind: sae.kind ?? "sae",
    d_in: sae.dIn,
    d_sae: sae.dSae,
    d_out: saeDOut(sae),
    hook: sae.hookName,
  };
  if (transcoder) info.hook_out = sae.hookNameOut ?? null;
  info.dtype = sae.dtype;
  info.normalize = sae.normalize ?? "none";
  info.b_dec_on_input = sae.applyBDecToInput;
  info.skip = sae.wSkip !== undefined;
  info.model = sae.modelName;
  if (sae.architecture === "topk") {
    info.k = sae.k ?? null;
    info.rescale_acts_by_decoder_norm = sae.rescaleActsByDecoderNorm ?? false;
  }
  if (sae.crossLayer) {
    info.cross_layer = `layer ${sae.crossLayer.layer} of ${sae.crossLayer.layers}`;
  }
  if (sae.hookHeadIndex !== undefined) info.hook_head_index = sae.hookHeadIndex;
  if (sae.neuronpediaId) info.neuronpedia = sae.neuronpediaId;
  info.labels = sae.labels?.size ?? 0;
  // Which upstream rule decided each setting the file did not state plainly.
  if (sae.provenance && sae.provenance.length > 0) info.provenance = sae.provenance;
  return info;
}

/** How `encode` and `eval` run the encoder. */
interface RunOptions {
  batch: number;
  threads: number | undefined;
  provider: ExecutionProviderSetting;
  /** The subcommand, for warnings. */
  sub: string;
}

/** A provider fallback worth a warning goes to stderr (stdout carries results only). */
function warnFallback(sub: string, report: ProviderReport): void {
  if (report.providerFallback && report.providerNote) {
    console.error(`latentwatch sae ${sub}: warning: ${report.providerNote}`);
  }
}

/**
 * Where the SAE's encoder runs with `setting`: known without a session when
 * no GPU provider can start here (or `cpu` is asked for); otherwise the
 * encoder is opened, since a GPU provider may still refuse this model.
 */
async function providerOf(
  sae: SaeWeights,
  setting: ExecutionProviderSetting,
  onProgress: LoadSaeOptions["onProgress"],
): Promise<ProviderReport> {
  const known = await providerWithoutModel(setting);
  if (known) return known;
  const encoder = await createOrtEncoder(sae, { provider: setting, onProgress });
  await encoder.close();
  return encoder;
}

async function inspect(
  path: string,
  load: LoadSaeOptions,
  labels: string | undefined,
  latent: number | undefined,
  json: boolean,
  provider: ExecutionProviderSetting,
): Promise<number> {
  const sae = await withLabels(await loadSae(path, load), path, labels);
  const info = describe(sae);
  if (latent !== undefined) {
    if (latent >= sae.dSae) {
      throw new CliInputError(
        `--latent ${latent}: expected an index below d_sae = ${sae.dSae} (0 … ${sae.dSae - 1})`,
      );
    }
    info.latent = {
      index: latent,
      label: sae.labels?.get(latent) ?? null,
      decoder_norm: Number(decoderNorm(sae, latent).toPrecision(9)),
    };
  }
  const where = await providerOf(sae, provider, load.onProgress);
  info.provider = where.provider;
  if (where.providerNote) info.provider_note = where.providerNote;
  if (info.provenance !== undefined) {
    // the rules come after the settings they explain
    const rules = info.provenance;
    delete info.provenance;
    info.provenance = rules;
  }
  if (info.latent !== undefined) {
    // the latent's block stays last
    const block = info.latent;
    delete info.latent;
    info.latent = block;
  }
  if (json) {
    console.log(JSON.stringify(info));
    return 0;
  }
  let text = "";
  for (const [key, value] of Object.entries(info)) {
    if (key === "provenance" && Array.isArray(value)) {
      text += "provenance:\n";
      for (const p of value) text += `  ${p.setting}=${p.value ?? "null"} ${p.rule}\n`;
    } else if (
      key === "latent" && value !== null && typeof value === "object" && !Array.isArray(value)
    ) {
      text += `latent: ${value.index}\n`;
      text += `  label: ${value.label ?? "(none)"}\n`;
      text += `  decoder_norm: ${value.decoder_norm}\n`;
    } else {
      text += `${key}: ${value ?? "unknown"}\n`;
    }
  }
  await writeAll(new TextEncoder().encode(text));
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

/**
 * Read a `[T, width]` activation array and refuse non-finite values: a NaN
 * or ±Inf would flow through the encoder into `null` latents (or a NaN MSE)
 * and make every downstream number meaningless.
 */
async function readActivations(
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

async function encode(
  path: string,
  load: LoadSaeOptions,
  inputPath: string,
  { batch, threads, provider, sub }: RunOptions,
): Promise<number> {
  const sae = await loadSae(path, load);
  const acts = await readActivations(inputPath, sae.dIn, "d_in", sae.source);
  const tokens = acts.shape[0];
  const encoder = await createOrtEncoder(sae, {
    intraOpThreads: threads,
    onProgress: load.onProgress,
    provider,
  });
  warnFallback(sub, encoder);
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

async function evaluate(
  path: string,
  load: LoadSaeOptions,
  inputPath: string,
  targetPath: string | undefined,
  { batch, threads, provider, sub }: RunOptions,
  json: boolean | undefined,
): Promise<number> {
  const sae = await loadSae(path, load);
  const acts = await readActivations(inputPath, sae.dIn, "d_in", sae.source);
  const tokens = acts.shape[0];
  if (tokens === 0) throw new CliInputError(`${inputPath}: expected at least one token, found 0`);
  let target: Float32Array | undefined;
  if (targetPath !== undefined) {
    const t = await readActivations(targetPath, saeDOut(sae), "d_out", sae.source);
    if (t.shape[0] !== tokens) {
      throw new CliInputError(
        `${targetPath}: expected ${tokens} tokens like ${inputPath}, found ${t.shape[0]}`,
      );
    }
    target = t.data;
  } else if (sae.kind === "transcoder") {
    throw new CliInputError(
      `${sae.source} is a transcoder (it predicts ${
        sae.hookNameOut ?? "another activation"
      }, not its input): pass --target <out.npy> with the activations it should output`,
    );
  }
  const encoder = await createOrtEncoder(sae, {
    intraOpThreads: threads,
    onProgress: load.onProgress,
    provider,
  });
  warnFallback(sub, encoder);
  const latents: SparseLatents[] = [];
  try {
    for (let start = 0; start < tokens; start += batch) {
      const n = Math.min(batch, tokens - start);
      latents.push(
        ...await encoder.encode(acts.data.subarray(start * sae.dIn, (start + n) * sae.dIn), n),
      );
    }
  } finally {
    await encoder.close();
  }
  const r = evaluateReconstruction(sae, acts.data, tokens, latents, target);
  const dead = r.deadLatents / r.dSae;
  if (json) {
    console.log(JSON.stringify({
      tokens: r.tokens,
      mse: r.mse,
      fvu: r.fvu,
      mean_l0: r.meanL0,
      dead_latents: r.deadLatents,
      dead_fraction: dead,
      d_sae: r.dSae,
    }));
    return 0;
  }
  const g = (v: number) => Number.isFinite(v) ? String(Number(v.toPrecision(6))) : String(v);
  await writeAll(
    new TextEncoder().encode(
      [
        `tokens: ${r.tokens}`,
        `mse: ${g(r.mse)}`,
        `fvu: ${g(r.fvu)}`,
        `mean_l0: ${g(r.meanL0)}`,
        `dead_latents: ${r.deadLatents} of ${r.dSae} (${g(dead)})`,
        "",
      ].join("\n"),
    ),
  );
  return 0;
}

/** One token's probe scores (every direction, in order) as its JSON line. */
function formatScores(token: number, probe: LinearProbe, scores: SparseLatents): string {
  // The probe encoder reports every direction, zeros included; place them by index all the same.
  const dense = new Float32Array(probe.n);
  for (let p = 0; p < scores.indices.length; p++) dense[scores.indices[p]] = scores.values[p];
  let s = `{"token": ${token}, "scores": [`;
  for (let j = 0; j < probe.n; j++) s += `${j === 0 ? "" : ", "}${formatF32(dense[j])}`;
  return s + "]}\n";
}

/**
 * Run `latentwatch probe ...` with the arguments after `probe`: `score
 * <probe> --input a.npy` prints `{"token": i, "scores": [...]}` per token
 * (one score per probe direction, in file order). Returns the exit code.
 *
 * @example
 * ```ts
 * const code = await runProbeCommand(["score", "probes/refusal.json", "--input", "acts.npy"]);
 * ```
 */
export async function runProbeCommand(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("latentwatch probe", PROBE_USAGE, args, {
    input: { type: "string", short: "i" },
    batch: { type: "string" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const [sub, path, ...extra] = positionals;
  if (sub !== "score" || !path || extra.length > 0 || !values.input) {
    const why = sub !== "score"
      ? (sub ? `unknown subcommand '${sub}'` : "missing subcommand")
      : !path
      ? "missing <probe>"
      : extra.length > 0
      ? `unexpected arguments: ${extra.join(" ")}`
      : "missing --input <acts.npy>";
    return usageError("latentwatch probe", PROBE_USAGE, why);
  }
  try {
    const batch = positiveInt("--batch", values.batch, DEFAULT_BATCH);
    const probe = await loadProbe(path);
    const acts = await readActivations(values.input, probe.dIn, "d_in", probe.source);
    const tokens = acts.shape[0];
    const utf8 = new TextEncoder();
    const encoder = await createProbeEncoder(probe);
    try {
      for (let start = 0; start < tokens; start += batch) {
        const n = Math.min(batch, tokens - start);
        const scores = await encoder.encode(
          acts.data.subarray(start * probe.dIn, (start + n) * probe.dIn),
          n,
        );
        let out = "";
        for (let t = 0; t < n; t++) out += formatScores(start + t, probe, scores[t]);
        await writeAll(utf8.encode(out));
      }
    } finally {
      await encoder.close();
    }
    return 0;
  } catch (e) {
    if (e instanceof Deno.errors.BrokenPipe) return 0;
    if (isUserError(e)) {
      console.error(`latentwatch probe score: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
