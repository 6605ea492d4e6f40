/**
 * `latentwatch probe score`: score a NumPy array of activations with a
 * linear probe and print one JSON line of scores per token. stdout carries
 * results only; diagnostics go to stderr.
 *
 * @module
 */
import type { LinearProbe, SparseLatents } from "../core/sae.ts";
import { loadProbe } from "../formats/probe.ts";
import { createProbeEncoder } from "../runtime/ort_encoder.ts";
import { parseCommandArgs, usageError } from "./common.ts";
import {
  DEFAULT_BATCH,
  formatF32,
  isUserError,
  positiveInt,
  readActivations,
  writeAll,
} from "./sae_support.ts";
const PROBE_USAGE = `usage:
  latentwatch probe score <probe> --input <acts.npy> [--batch 128]
      score a [T, d_in] array with a linear probe (.npy, .safetensors or .json);
      one JSON line per token: {"token": <i>, "scores": [<s0>, ...]}`;

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
