/**
 * `latentwatch sae family <sae> <latent>`: the latents whose decoder
 * directions carry a concept (a latent's decoder direction, or a probe's
 * direction), by cosine; with recorded traces, the absorption candidates:
 * on tokens where the concept's projection is high but its latent is
 * silent, the latents along the concept that fire there, and the share of
 * those tokens each covers. See docs/policies.md, "Latent families and
 * absorption".
 *
 * @module
 */
import { decodeFrame } from "../core/frame/decode.ts";
import {
  AbsorptionTally,
  decoderCosines,
  familyMembers,
  matrixRow,
  quantile,
  unitVector,
} from "../core/family.ts";
import type { SaeWeights } from "../core/sae.ts";
import { saeDOut } from "../core/sae.ts";
import { loadSae, type LoadSaeOptions, SAE_FORMATS, type SaeFormatName } from "../formats/load.ts";
import { loadProbe } from "../formats/probe.ts";
import { createOrtEncoder } from "../runtime/ort_encoder.ts";
import { EXECUTION_PROVIDERS, type ExecutionProviderSetting } from "../runtime/provider.ts";
import { TraceReader } from "../traces/reader.ts";
import { withLabels } from "./sae_inspect.ts";
import { parseCommandArgs, usageError } from "./common.ts";
import {
  CliInputError,
  DEFAULT_BATCH,
  isUserError,
  nonNegativeInt,
  positiveInt,
  writeAll,
} from "./sae_support.ts";

/** Default `--min-cosine`. */
export const DEFAULT_MIN_COSINE = 0.3;
/** Default `--top`. */
export const DEFAULT_TOP = 20;
/** Default `--quantile`: tokens above this quantile of the projection count as high. */
export const DEFAULT_QUANTILE = 0.99;

/** What `sae family` is asked. */
export interface FamilyOptions {
  /** The concept's latent (absent with `probe`). */
  latent?: number;
  /** `<file>` or `<file>:<score>`: the concept is that probe direction. */
  probe?: string;
  minCosine?: number;
  top?: number;
  labels?: string;
  traces?: string[];
  /** Tokens whose projection is above this are high (instead of `quantile`). */
  projectionAbove?: number;
  quantile?: number;
  provider?: ExecutionProviderSetting;
  batch?: number;
}

/** A latent in the report. */
export interface FamilyLatent {
  index: number;
  cosine: number;
  label?: string;
}

/** What `sae family` found. */
export interface FamilyReport {
  sae: string;
  dSae: number;
  concept: { latent: number; label?: string } | { probe: string; score: number };
  minCosine: number;
  /** Latents with cosine ≥ minCosine (the concept's own latent first, cosine 1), at most `top`. */
  members: FamilyLatent[];
  /** How many latents reach minCosine in all (members may be cut at `top`). */
  reaching: number;
  absorption?: {
    traces: string[];
    tokens: number;
    /** Projection (activation · unit concept direction) above which a token is high. */
    threshold: number;
    rule: string;
    high: number;
    silent: number;
    candidates: (FamilyLatent & { tokens: number; share: number })[];
  };
}

/** The concept direction and its latent (-1 for a probe). */
async function conceptOf(
  sae: SaeWeights,
  opts: FamilyOptions,
): Promise<{ direction: Float32Array; latent: number; concept: FamilyReport["concept"] }> {
  if (opts.probe !== undefined) {
    const m = /^(.*?)(?::(\d+))?$/.exec(opts.probe)!;
    const probe = await loadProbe(m[1]);
    const score = m[2] === undefined ? 0 : Number(m[2]);
    if (score >= probe.n) {
      throw new CliInputError(
        `--probe ${opts.probe}: expected a score below ${probe.n} (the probe's directions), ` +
          `found ${score}`,
      );
    }
    if (probe.dIn !== saeDOut(sae)) {
      throw new CliInputError(
        `--probe ${m[1]}: expected a direction of width ${saeDOut(sae)} (the SAE decoder's), ` +
          `found ${probe.dIn}`,
      );
    }
    return {
      direction: matrixRow(probe.directions, probe.dIn, score),
      latent: -1,
      concept: { probe: m[1], score },
    };
  }
  const latent = opts.latent!;
  if (latent >= sae.dSae) {
    throw new CliInputError(
      `<latent> ${latent}: expected an index below d_sae = ${sae.dSae} (0 … ${sae.dSae - 1})`,
    );
  }
  const label = sae.labels?.get(latent);
  return {
    direction: matrixRow(sae.wDec, saeDOut(sae), latent),
    latent,
    concept: { latent, ...(label !== undefined ? { label } : {}) },
  };
}

/** Every token of the traces' frames (d_in wide), in recorded order. */
async function* traceTokens(paths: string[], dIn: number): AsyncGenerator<Float32Array> {
  for (const path of paths) {
    for await (const record of await TraceReader.open(path)) {
      let frame;
      try {
        frame = decodeFrame(record.subject, record.headers, record.data);
      } catch (err) {
        throw new CliInputError(
          `${path}: record ${record.record}: expected a valid frame, found: ${
            (err as Error).message
          }`,
          { cause: err },
        );
      }
      if (frame.tokens === 0) continue;
      if (frame.dModel !== dIn) {
        throw new CliInputError(
          `${path}: record ${record.record}: expected activations of width ${dIn} (the SAE's ` +
            `d_in), found ${frame.dModel}`,
        );
      }
      for (let t = 0; t < frame.tokens; t++) yield frame.data.slice(t * dIn, (t + 1) * dIn);
    }
  }
}

/**
 * The family of a concept in the SAE at `path` (see the module doc).
 *
 * @example
 * ```ts
 * const r = await saeFamily("saes/res12", {}, { latent: 4123, minCosine: 0.4 });
 * r.members.map((m) => m.index);
 * ```
 */
export async function saeFamily(
  path: string,
  load: LoadSaeOptions,
  opts: FamilyOptions,
): Promise<FamilyReport> {
  const sae = await withLabels(await loadSae(path, load), path, opts.labels);
  const { direction, latent, concept } = await conceptOf(sae, opts);
  const cosines = decoderCosines(sae.wDec, saeDOut(sae), direction);
  const minCosine = opts.minCosine ?? DEFAULT_MIN_COSINE;
  const named = (index: number, cosine: number): FamilyLatent => {
    const label = sae.labels?.get(index);
    return { index, cosine, ...(label !== undefined ? { label } : {}) };
  };
  const all = familyMembers(cosines, { minCosine });
  const report: FamilyReport = {
    sae: path,
    dSae: sae.dSae,
    concept,
    minCosine,
    members: all.slice(0, opts.top ?? DEFAULT_TOP).map((m) => named(m.index, m.cosine)),
    reaching: all.length,
  };
  if (!opts.traces || opts.traces.length === 0) return report;
  if (saeDOut(sae) !== sae.dIn) {
    throw new CliInputError(
      "--traces: expected an SAE (decoder and activations of one width), found a transcoder",
    );
  }
  const u = unitVector(direction);
  const projections: number[] = [];
  for await (const x of traceTokens(opts.traces, sae.dIn)) {
    let p = 0;
    for (let j = 0; j < x.length; j++) p += x[j] * u[j];
    projections.push(p);
  }
  const q = opts.quantile ?? DEFAULT_QUANTILE;
  const threshold = opts.projectionAbove ?? quantile(projections, q);
  const rule = opts.projectionAbove !== undefined
    ? `projection > ${opts.projectionAbove} (--projection-above)`
    : `projection > its ${q} quantile over the traces' tokens (--quantile)`;
  const tally = new AbsorptionTally({ latent, cosines });
  const encoder = await createOrtEncoder(sae, { provider: opts.provider ?? "auto" });
  try {
    const batch = opts.batch ?? DEFAULT_BATCH;
    let pending: Float32Array[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      const x = new Float32Array(pending.length * sae.dIn);
      pending.forEach((row, i) => x.set(row, i * sae.dIn));
      for (const row of await encoder.encode(x, pending.length)) tally.add(row);
      pending = [];
    };
    let t = 0;
    for await (const x of traceTokens(opts.traces, sae.dIn)) {
      if (projections[t++] > threshold) pending.push(x);
      if (pending.length >= batch) await flush();
    }
    await flush();
  } finally {
    await encoder.close();
  }
  const found = tally.report(opts.top ?? DEFAULT_TOP);
  report.absorption = {
    traces: opts.traces,
    tokens: projections.length,
    threshold,
    rule,
    high: found.high,
    silent: found.silent,
    candidates: found.candidates.map((c) => ({
      ...named(c.index, c.cosine),
      tokens: c.tokens,
      share: c.share,
    })),
  };
  return report;
}

const f3 = (v: number) => v.toFixed(3);

/**
 * The report as text: members by cosine, then the absorption candidates.
 *
 * @example
 * ```ts
 * formatFamilyReport({ sae: "s", dSae: 4, concept: { latent: 0 }, minCosine: 0.3,
 *   members: [{ index: 0, cosine: 1 }], reaching: 1 });
 * ```
 */
export function formatFamilyReport(r: FamilyReport): string {
  const name = (l: FamilyLatent) => `${l.index}${l.label !== undefined ? ` "${l.label}"` : ""}`;
  const concept = "latent" in r.concept
    ? `latent ${name({ index: r.concept.latent, cosine: 1, ...r.concept })}'s decoder direction`
    : `probe ${r.concept.probe} score ${r.concept.score}`;
  let out = `${r.sae} (d_sae ${r.dSae}): concept = ${concept}\n`;
  out += `decoder cosine ≥ ${r.minCosine}: ${r.reaching} latent${r.reaching === 1 ? "" : "s"}` +
    (r.reaching > r.members.length ? ` (top ${r.members.length} shown)` : "") + "\n";
  for (const m of r.members) out += `  ${f3(m.cosine)}  ${name(m)}\n`;
  const a = r.absorption;
  if (a) {
    out +=
      `absorption on ${a.tokens} tokens of ${a.traces.length} trace${
        a.traces.length === 1 ? "" : "s"
      }: ${a.high} high (${a.rule}; threshold ${f3(a.threshold)}), ` +
      `${a.silent} of them with the concept's latent silent\n`;
    if (a.candidates.length === 0) out += "  no latent along the concept fires there\n";
    for (const c of a.candidates) {
      out += `  ${(100 * c.share).toFixed(1).padStart(5)}% of silent tokens (${c.tokens})  ` +
        `cosine ${f3(c.cosine)}  ${name(c)}\n`;
    }
  }
  return out;
}

/** Usage of `latentwatch sae family`. */
export const FAMILY_USAGE = `usage:
  latentwatch sae family <sae> <latent> [--min-cosine ${DEFAULT_MIN_COSINE}] [--top ${DEFAULT_TOP}] [--json]
  latentwatch sae family <sae> --probe <probe file>[:score] [...]
      [--traces <trace>... [--quantile ${DEFAULT_QUANTILE} | --projection-above X]]
      [--labels P] [--format F] [--provider P] [--batch ${DEFAULT_BATCH}]
  The latents whose decoder direction carries a concept (the latent's decoder
  direction, or the probe's direction), by cosine, labels shown when the SAE has
  them. With --traces (recorded traces): on tokens whose projection on the
  concept (activation · unit direction) is high, by default above its
  ${DEFAULT_QUANTILE} quantile over the traces, and where the concept's latent is silent,
  the latents along the concept (cosine > 0) that fire there and the share of
  those tokens each covers: absorption candidates for a 'family:' test
  (docs/policies.md, "Latent families and absorption").`;

function numberIn(flag: string, raw: string | undefined, ok: (v: number) => boolean, what: string) {
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(v) || !ok(v)) {
    throw new CliInputError(`${flag}: expected ${what}, found '${raw}'`);
  }
  return v;
}

/**
 * Run `latentwatch sae family` with the arguments after `family`; returns the
 * exit code (0 ok, 1 bad input, 2 usage).
 *
 * @example
 * ```ts
 * const code = await runSaeFamily(["saes/res12", "4123", "--min-cosine", "0.4"]);
 * ```
 */
export async function runSaeFamily(args: string[]): Promise<number> {
  const parsed = parseCommandArgs("latentwatch sae family", FAMILY_USAGE, args, {
    probe: { type: "string" },
    "min-cosine": { type: "string" },
    top: { type: "string" },
    traces: { type: "string", multiple: true },
    quantile: { type: "string" },
    "projection-above": { type: "string" },
    labels: { type: "string" },
    format: { type: "string", short: "f" },
    provider: { type: "string" },
    batch: { type: "string" },
    json: { type: "boolean" },
  });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const usage = (why: string) => usageError("latentwatch sae family", FAMILY_USAGE, why);
  const [path, ...rest] = positionals;
  if (!path) return usage("missing <sae>");
  const latentArg = values.probe === undefined ? rest.shift() : undefined;
  if (values.probe === undefined && latentArg === undefined) {
    return usage("missing <latent> (or --probe <file>)");
  }
  // `--traces a b c`: parseArgs takes one value per flag; the rest arrive as positionals
  if (rest.length > 0 && !values.traces) return usage(`unexpected arguments: ${rest.join(" ")}`);
  const traces = [...(values.traces ?? []), ...rest];
  if (values.format !== undefined && !(SAE_FORMATS as readonly string[]).includes(values.format)) {
    return usage(`--format: expected one of ${SAE_FORMATS.join(", ")}, found '${values.format}'`);
  }
  const provider = (values.provider ?? "auto") as ExecutionProviderSetting;
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(provider)) {
    return usage(
      `--provider: expected one of ${EXECUTION_PROVIDERS.join(", ")}, found '${provider}'`,
    );
  }
  try {
    const opts: FamilyOptions = {
      probe: values.probe,
      latent: latentArg === undefined ? undefined : nonNegativeInt("<latent>", latentArg),
      minCosine: numberIn(
        "--min-cosine",
        values["min-cosine"],
        (v) => v > -1 && v <= 1,
        "a cosine in (-1, 1]",
      ),
      top: values.top === undefined ? undefined : positiveInt("--top", values.top, DEFAULT_TOP),
      labels: values.labels,
      traces,
      quantile: numberIn(
        "--quantile",
        values.quantile,
        (v) => v > 0 && v < 1,
        "a fraction in (0, 1)",
      ),
      projectionAbove: numberIn(
        "--projection-above",
        values["projection-above"],
        () => true,
        "a number",
      ),
      provider,
      batch: positiveInt("--batch", values.batch, DEFAULT_BATCH),
    };
    const load: LoadSaeOptions = { format: values.format as SaeFormatName | undefined };
    const report = await saeFamily(path, load, opts);
    if (values.json) console.log(JSON.stringify(report));
    else await writeAll(new TextEncoder().encode(formatFamilyReport(report)));
    return 0;
  } catch (e) {
    if (isUserError(e)) {
      console.error(`latentwatch sae family: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
