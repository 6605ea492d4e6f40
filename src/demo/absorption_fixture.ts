/**
 * A planted feature-absorption fixture: a tiny SAE in which a parent concept
 * ("starts with E", direction `p = e0`) is absorbed into a child latent
 * ("elephant") on some tokens, and requests of activations with and without
 * the concept, written as a real SAELens folder, trace and monitor. Used by
 * the family tests and by `tools/absorption_recall.ts`.
 *
 * The SAE (standard ReLU, `d_in` 16, `d_sae` 8, no biases on the input):
 * - latent 0, parent: decoder `p`, encoder `p − 2·e1`: fires on the plain
 *   concept and is silent where the child's direction is present as well;
 * - latent 1, child: decoder `normalize(p + e1)` (cosine 1/√2 with the
 *   parent), encoder `e1`, bias −0.3;
 * - latent 2, a distractor: decoder `0.4·p + 0.917·e2` (cosine ≈ 0.4),
 *   encoder `e2`, bias −0.3;
 * - latents 3..7: decoder and encoder `e3..e7`, bias −0.3 (unrelated).
 *
 * Tokens: benign ones hold unrelated latents (each of e2..e7 with
 * probability 0.15, magnitude 0.5..3) and Gaussian noise (σ 0.15) on every
 * dimension; a concept token adds `a·p` (a in 2..4), and an absorbed one
 * adds `b·e1` too (b = a·(0.8..1.2)), which silences the parent.
 *
 * @module
 */
import { encodeFrame } from "../core/frame/encode.ts";
import { tapSubject } from "../core/frame/subjects.ts";
import { Rng } from "../core/random.ts";
import type { SaeWeights } from "../core/sae.ts";
import { writeSaeLensFolder } from "../formats/saelens_writer.ts";
import { TraceWriter } from "../traces/writer.ts";

/** Widths and latents of the fixture SAE. */
export const ABSORPTION = {
  dIn: 16,
  dSae: 8,
  parent: 0,
  child: 1,
  distractor: 2,
  model: "sim-gpt",
  hook: "blocks.6.hook_resid_post",
  labels: ["starts with E", "elephant", "grey things", "l3", "l4", "l5", "l6", "l7"],
} as const;

/**
 * The fixture SAE (see the module doc).
 *
 * @example
 * ```ts
 * const sae = absorptionSae();
 * sae.wDec.subarray(16, 32); // the child's decoder row: (1/√2, 1/√2, 0, …)
 * ```
 */
export function absorptionSae(): SaeWeights {
  const { dIn, dSae } = ABSORPTION;
  const wEnc = new Float32Array(dIn * dSae); // [dIn, dSae]
  const wDec = new Float32Array(dSae * dIn); // [dSae, dIn]
  const bEnc = new Float32Array(dSae).fill(-0.3);
  const enc = (latent: number, dim: number, v: number) => wEnc[dim * dSae + latent] = v;
  const dec = (latent: number, dim: number, v: number) => wDec[latent * dIn + dim] = v;
  enc(0, 0, 1);
  enc(0, 1, -2);
  bEnc[0] = 0;
  dec(0, 0, 1);
  enc(1, 1, 1);
  dec(1, 0, Math.SQRT1_2);
  dec(1, 1, Math.SQRT1_2);
  enc(2, 2, 1);
  dec(2, 0, 0.4);
  dec(2, 2, Math.sqrt(1 - 0.16));
  for (let l = 3; l < dSae; l++) {
    enc(l, l, 1);
    dec(l, l, 1);
  }
  return {
    format: "saelens",
    architecture: "standard",
    dIn,
    dSae,
    hookName: ABSORPTION.hook,
    modelName: ABSORPTION.model,
    dtype: "float32",
    applyBDecToInput: false,
    wEnc,
    bEnc,
    wDec,
    bDec: new Float32Array(dIn),
    source: "absorption-fixture",
  };
}

/** One request of the fixture. */
export interface AbsorptionRequest {
  id: string;
  /** `[tokens, d_in]` activations. */
  x: Float32Array;
  tokens: number;
  /** Positions carrying the parent concept, and whether each is absorbed. */
  concept: { position: number; absorbed: boolean }[];
}

/** Options of {@linkcode absorptionRequests}. */
export interface AbsorptionRequestOptions {
  /** Requests with the concept (1 to 3 concept tokens each). */
  positives: number;
  benign: number;
  seed: number;
  /** Tokens per request (default 24). */
  tokens?: number;
  /** Probability a concept token is absorbed (default 0.5). */
  absorbedShare?: number;
  /** Prefix of request ids (default "r"). */
  prefix?: string;
}

/**
 * Requests of the fixture: `positives` first (ids `<prefix>-pos-<i>`), then
 * `benign` (`<prefix>-benign-<i>`), deterministic for a seed.
 *
 * @example
 * ```ts
 * const reqs = absorptionRequests({ positives: 2, benign: 3, seed: 1 });
 * reqs[0].concept.length > 0; // true
 * ```
 */
export function absorptionRequests(opts: AbsorptionRequestOptions): AbsorptionRequest[] {
  const rng = new Rng(opts.seed);
  const T = opts.tokens ?? 24;
  const share = opts.absorbedShare ?? 0.5;
  const prefix = opts.prefix ?? "r";
  const { dIn } = ABSORPTION;
  const out: AbsorptionRequest[] = [];
  for (let r = 0; r < opts.positives + opts.benign; r++) {
    const positive = r < opts.positives;
    const x = new Float32Array(T * dIn);
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < dIn; j++) x[t * dIn + j] = 0.15 * rng.gaussian();
      for (let l = 2; l < 8; l++) {
        if (rng.uniform() < 0.15) x[t * dIn + l] += 0.5 + 2.5 * rng.uniform();
      }
    }
    const concept: AbsorptionRequest["concept"] = [];
    if (positive) {
      const n = 1 + Math.floor(rng.uniform() * 3);
      const positions = new Set<number>();
      while (positions.size < n) positions.add(Math.floor(rng.uniform() * T));
      for (const position of [...positions].sort((a, b) => a - b)) {
        const a = 2 + 2 * rng.uniform();
        const absorbed = rng.uniform() < share;
        x[position * dIn] += a;
        if (absorbed) x[position * dIn + 1] += a * (0.8 + 0.4 * rng.uniform());
        concept.push({ position, absorbed });
      }
    }
    const id = `${prefix}-${positive ? "pos" : "benign"}-${positive ? r : r - opts.positives}`;
    out.push({ id, x, tokens: T, concept });
  }
  return out;
}

/**
 * Write `requests` as a trace: one prefill frame per request, then its end marker.
 *
 * @example
 * ```ts
 * await writeAbsorptionTrace("/tmp/a.trace", absorptionRequests({ positives: 1, benign: 1, seed: 1 }));
 * ```
 */
export async function writeAbsorptionTrace(
  path: string,
  requests: AbsorptionRequest[],
): Promise<void> {
  const { model, hook, dIn } = ABSORPTION;
  const w = await TraceWriter.create(path, { monitor: "absorption", model, hook });
  const subject = tapSubject(model, hook);
  for (const r of requests) {
    const meta = { model, hook, requestId: r.id, dtype: "f32" as const };
    const frames: [Float32Array, number, boolean][] = [
      [r.x, r.tokens, false],
      [new Float32Array(0), 0, true],
    ];
    frames.forEach(([data, n, end], seq) => {
      const { headers, payload } = encodeFrame(
        { ...meta, position: end ? r.tokens : 0, seq, endOfRequest: end },
        data,
        n,
        dIn,
      );
      w.write({ subject, headers, data: payload });
    });
  }
  await w.close();
}

/** Neuronpedia explanations rows for the fixture's labels. */
function explanationRows(): string {
  return ABSORPTION.labels.map((description, index) =>
    JSON.stringify({ modelId: ABSORPTION.model, layer: "6-res", index: `${index}`, description })
  ).join("\n") + "\n";
}

/**
 * Write the fixture SAE (SAELens folder `sae/` with an `explanations/`
 * export of its labels), a probe along the parent concept (`probe.json`,
 * id `concept`: score = activation · p), the policy YAML given, and
 * `monitor.yaml` reading them, under `dir`. Returns the monitor file's path.
 *
 * @example
 * ```ts
 * const dir = await Deno.makeTempDir();
 * await writeAbsorptionMonitor(dir, "version: 2\nrules: []\n"); // `${dir}/monitor.yaml`
 * ```
 */
export async function writeAbsorptionMonitor(dir: string, policyYaml: string): Promise<string> {
  await writeSaeLensFolder(`${dir}/sae`, absorptionSae());
  await Deno.mkdir(`${dir}/sae/explanations`, { recursive: true });
  await Deno.writeTextFile(`${dir}/sae/explanations/0.jsonl`, explanationRows());
  const direction = Array.from({ length: ABSORPTION.dIn }, (_, j) => j === 0 ? 1 : 0);
  await Deno.writeTextFile(`${dir}/probe.json`, JSON.stringify({ direction, bias: 0 }));
  await Deno.writeTextFile(`${dir}/policies.yaml`, policyYaml);
  const path = `${dir}/monitor.yaml`;
  await Deno.writeTextFile(
    path,
    `monitor: absorption\nmodel: ${ABSORPTION.model}\nhook: ${ABSORPTION.hook}\n` +
      `saes: [{id: res, path: ./sae}]\nprobes: [{id: concept, path: ./probe.json}]\n` +
      `policies: [./policies.yaml]\n` +
      `batching: {max_batch_tokens: 256, max_queue_tokens: 1024}\n`,
  );
  return path;
}

/**
 * A policy file with a rule on the parent latent alone (`parent-only`) and
 * one on its family (`parent-family`: members by `min_cosine`), both per
 * token, at the thresholds given.
 *
 * @example
 * ```ts
 * absorptionPolicy({ single: 1, family: 1, minCosine: 0.5 });
 * ```
 */
export function absorptionPolicy(
  t: { single: number; family: number; minCosine: number; combine?: "sum" | "max" },
): string {
  return `version: 2
rules:
  - id: parent-only
    title: Parent concept (latent alone)
    severity: medium
    when: {sae: res, latent: ${ABSORPTION.parent}, above: ${t.single}}
    actions: [alert]
  - id: parent-family
    title: Parent concept (family)
    severity: medium
    when:
      sae: res
      family: {of: ${ABSORPTION.parent}, min_cosine: ${t.minCosine}, combine: ${t.combine ?? "sum"}}
      above: ${t.family}
    actions: [alert]
`;
}
