/**
 * `latentwatch sae inspect|encode|eval`: look at a downloaded SAE or
 * transcoder, run it over a NumPy array of activations and print one JSON
 * line per token, or measure how well it reconstructs them. This module
 * parses the command line and dispatches to `sae_inspect.ts`,
 * `sae_encode.ts` and `sae_eval.ts`; `latentwatch probe score` is
 * `probe.ts`.
 *
 * stdout carries results only; every diagnostic (warnings, loading
 * progress, errors) goes to stderr, so the output can be piped straight into
 * `jq` or a file.
 *
 * @module
 */
import { type LoadSaeOptions, SAE_FORMATS, type SaeFormatName } from "../formats/load.ts";
import { EXECUTION_PROVIDERS, type ExecutionProviderSetting } from "../runtime/provider.ts";
import { parseCommandArgs, usageError } from "./common.ts";
import { encode } from "./sae_encode.ts";
import { evaluate } from "./sae_eval.ts";
import { inspect } from "./sae_inspect.ts";
import { runSaeFamily } from "./sae_family.ts";
import {
  CliInputError,
  DEFAULT_BATCH,
  isUserError,
  nonNegativeInt,
  positiveInt,
  progressReporter,
} from "./sae_support.ts";
const USAGE = `usage:
  latentwatch sae inspect <path> [--labels P] [--latent N] [--json] [--provider P] [--verbose] [load options]
      format, architecture, kind, d_in, d_sae, d_out, hook, dtype, normalisation,
      b_dec on input, skip connection and label count of an SAE or transcoder,
      and the execution provider its encoder runs on;
      --latent N adds that latent's label and decoder norm ‖W_dec[N,:]‖; when auto finds
      no GPU provider, provider_note says so in one line (--verbose: every reason)
  latentwatch sae encode <path> --input <acts.npy> [--batch 128] [--threads N] [--provider P] [load options]
      encode a float32/float16 array of shape [T, d_in]; one JSON line per token:
      {"token": <i>, "latents": [[<index>, <value>], ...]}
  latentwatch sae eval <path> --input <acts.npy> [--target <out.npy>] [--json] [--provider P] [load options]
      reconstruction MSE, fraction of variance unexplained, mean L0 and dead
      latents on that input (--target: what a transcoder should output)
  latentwatch sae family <path> <latent> | --probe <file>[:score] [--min-cosine 0.3] [--top 20]
      [--traces <trace>...] [--json]
      the latents whose decoder carries the concept, by cosine; with --traces the
      absorption candidates (latentwatch sae family --help)

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
  if (args[0] === "family") return await runSaeFamily(args.slice(1));
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
    verbose: { type: "boolean" },
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
      return await inspect(path, {
        load,
        ...(values.labels !== undefined ? { labels: values.labels } : {}),
        ...(latent !== undefined ? { latent } : {}),
        json: values.json ?? false,
        provider,
        verbose: values.verbose ?? false,
      });
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
