/**
 * What the workbench shows of the loaded traces: request summaries, one
 * request's tokens with the policies' signals and its strongest latents,
 * a latent's page, and fuzzy label search (fuse.js).
 *
 * @module
 */
import Fuse from "fuse.js";
import type { CompiledPolicySet, CompiledTest } from "../core/policy/compile.ts";
import { conditionLeaves } from "../core/policy/condition_values.ts";
import { familyValue } from "../core/family.ts";
import { latentValue } from "../traces/calibrate.ts";
import type { Evaluation, StoredRequest, TraceStore } from "./trace_source.ts";

/** One line of the request list. */
export interface RequestSummary {
  id: string;
  tokens: number;
  alerts: number;
  rules: string[];
  tenant?: string;
  /** The first 200 characters of the request's text. */
  text: string;
}

/** A request's text: its tokens joined by spaces. */
export function requestText(r: StoredRequest): string {
  return r.tokens.join(" ");
}

/** The summary of `r` given an evaluation. */
export function summarize(r: StoredRequest, ev: Evaluation): RequestSummary {
  const firings = ev.byRequest.get(r.id) ?? [];
  return {
    id: r.id,
    tokens: r.tokens.length,
    alerts: firings.filter((f) => f.alert).length,
    rules: [...new Set(firings.map((f) => f.rule))],
    ...(r.tenant !== undefined ? { tenant: r.tenant } : {}),
    text: requestText(r).slice(0, 200),
  };
}

/** A rule's threshold on one signal. */
export interface Threshold {
  rule: string;
  op: "above" | "below";
  value: number;
}

/** One signal a rule condition reads, valued per token. */
export interface SignalView {
  key: string;
  label: string;
  sae?: string;
  probe?: string;
  latent?: number;
  values: number[];
  thresholds: Threshold[];
}

/** The value of `encoder`'s latent (or probe score) `index` per token of `r`; a family's value with `family`. */
export function signalValues(
  store: TraceStore,
  r: StoredRequest,
  encoder: string,
  index: number,
  family?: CompiledTest["family"],
): number[] {
  return r.tokens.map((_, pos) => {
    const row = store.row(r.refs[pos], encoder);
    // a family test reads its members' activations weighted by decoder cosine
    return family ? (row ? familyValue(row, family) : 0) : latentValue(row, index);
  });
}

/** The signals the rules of `set` read, per token of `r`, with each rule's thresholds. */
export function requestSignals(
  store: TraceStore,
  r: StoredRequest,
  set: CompiledPolicySet,
): SignalView[] {
  const out = new Map<string, SignalView>();
  const labels = store.monitor.generation.labels;
  for (const rule of set.rules) {
    for (const leaf of conditionLeaves(rule.condition)) {
      const t = rule.tests[leaf.test];
      const kind = t.kind === "probe" ? "probe" : t.family ? "family" : "sae";
      const key = `${kind}:${t.encoder}:${t.index}${t.family ? `:${t.family.members}` : ""}`;
      let s = out.get(key);
      if (!s) {
        const label = t.label ?? labels?.get(t.encoder)?.get(t.index) ?? "";
        s = {
          key,
          label,
          ...(t.kind === "probe" ? { probe: t.encoder } : { sae: t.encoder }),
          latent: t.index,
          values: signalValues(store, r, t.encoder, t.index, t.family),
          thresholds: [],
        };
        out.set(key, s);
      }
      if (
        !s.thresholds.some((x) =>
          x.rule === rule.id && x.op === leaf.op && x.value === leaf.threshold
        )
      ) {
        s.thresholds.push({ rule: rule.id, op: leaf.op, value: leaf.threshold });
      }
    }
  }
  return [...out.values()];
}

/** A strong latent of a request, valued per token. */
export interface LatentRow {
  sae: string;
  latent: number;
  label: string;
  values: number[];
}

/** The `limit` latents of each SAE with the highest activation anywhere in `r`. */
export function strongestLatents(store: TraceStore, r: StoredRequest, limit = 16): LatentRow[] {
  const out: LatentRow[] = [];
  for (const sae of store.monitor.models.saes.keys()) {
    const best = new Map<number, number>();
    for (const ref of r.refs) {
      const row = store.row(ref, sae);
      if (!row) continue;
      row.indices.forEach((l, i) => {
        if (row.values[i] > (best.get(l) ?? 0)) best.set(l, row.values[i]);
      });
    }
    const top = [...best].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, limit);
    for (const [latent] of top) {
      out.push({
        sae,
        latent,
        label: labelOf(store, sae, latent),
        values: signalValues(store, r, sae, latent),
      });
    }
  }
  return out;
}

/** A latent's label ("" when the monitor loads none for it). */
export function labelOf(store: TraceStore, sae: string, latent: number): string {
  return store.monitor.models.saes.get(sae)?.labels?.get(latent) ?? "";
}

/** A latent's page. */
export interface LatentPage {
  sae: string;
  latent: number;
  label: string;
  decoderNorm: number;
  /** Fraction of the loaded tokens where the latent is above 0. */
  density: number;
  top: { request: string; position: number; value: number; context: string[]; focus: number }[];
  nearest: { latent: number; label: string; cosine: number }[];
}

/** Thrown for a latent or SAE the monitor does not have (the API answers 404). */
export class NotFoundError extends Error {
  override name = "NotFoundError";
}

/** Each decoder row's norm, computed once per decoder (latent pages come one after another). */
const NORMS = new WeakMap<Float32Array, Float64Array>();

function decoderNorms(wDec: Float32Array, dSae: number, dOut: number): Float64Array {
  let norms = NORMS.get(wDec);
  if (norms) return norms;
  norms = new Float64Array(dSae);
  for (let l = 0; l < dSae; l++) {
    let s = 0;
    for (let j = 0; j < dOut; j++) s += wDec[l * dOut + j] ** 2;
    norms[l] = Math.sqrt(s);
  }
  NORMS.set(wDec, norms);
  return norms;
}

/** The page of `sae`'s latent `latent` over the loaded traces. */
export function latentPage(
  store: TraceStore,
  sae: string,
  latent: number,
  opts: { top?: number; nearest?: number; context?: number } = {},
): LatentPage {
  const w = store.monitor.models.saes.get(sae);
  if (!w) {
    throw new NotFoundError(
      `no SAE '${sae}' (expected one of: ${[...store.monitor.models.saes.keys()].join(", ")})`,
    );
  }
  if (!Number.isInteger(latent) || latent < 0 || latent >= w.dSae) {
    throw new NotFoundError(`latent ${latent} out of range (expected 0..${w.dSae - 1})`);
  }
  const dOut = w.dOut ?? w.dIn;
  const norms = decoderNorms(w.wDec, w.dSae, dOut);
  // the `keep` nearest, without sorting (or labelling) every latent of the SAE
  const keep = opts.nearest ?? 10;
  const best: { latent: number; cosine: number }[] = [];
  for (let l = 0; l < w.dSae; l++) {
    if (l === latent) continue;
    let dot = 0;
    for (let j = 0; j < dOut; j++) dot += w.wDec[l * dOut + j] * w.wDec[latent * dOut + j];
    const d = norms[l] * norms[latent];
    const cosine = d > 0 ? dot / d : 0;
    if (best.length < keep || cosine > best[best.length - 1].cosine) {
      best.push({ latent: l, cosine });
      best.sort((a, b) => b.cosine - a.cosine);
      if (best.length > keep) best.pop();
    }
  }
  const nearest: LatentPage["nearest"] = best.map((b) => ({
    latent: b.latent,
    label: labelOf(store, sae, b.latent),
    cosine: b.cosine,
  }));
  const ctx = opts.context ?? 5;
  let tokens = 0;
  let active = 0;
  const hits: { r: StoredRequest; position: number; value: number }[] = [];
  for (const r of store.requests.values()) {
    r.refs.forEach((ref, position) => {
      tokens++;
      const v = latentValue(store.row(ref, sae), latent);
      if (v > 0) {
        active++;
        hits.push({ r, position, value: v });
      }
    });
  }
  hits.sort((a, b) => b.value - a.value);
  return {
    sae,
    latent,
    label: labelOf(store, sae, latent),
    decoderNorm: norms[latent],
    density: tokens > 0 ? active / tokens : 0,
    top: hits.slice(0, opts.top ?? 20).map(({ r, position, value }) => {
      const from = Math.max(0, position - ctx);
      return {
        request: r.id,
        position,
        value,
        context: r.tokens.slice(from, position + ctx + 1),
        focus: position - from,
      };
    }),
    nearest: nearest.slice(0, opts.nearest ?? 10),
  };
}

/** A label search hit (score: 0 a perfect match, 1 none). */
export interface LabelHit {
  sae: string;
  latent: number;
  label: string;
  score: number;
}

/** Fuzzy search over the labels of every SAE of the monitor. */
export class LabelIndex {
  readonly #fuse: Fuse<Omit<LabelHit, "score">>;

  constructor(store: TraceStore) {
    const items: Omit<LabelHit, "score">[] = [];
    for (const [sae, w] of store.monitor.models.saes) {
      for (const [latent, label] of w.labels ?? []) items.push({ sae, latent, label });
    }
    this.#fuse = new Fuse(items, {
      keys: ["label"],
      includeScore: true,
      ignoreLocation: true,
      threshold: 0.5,
    });
  }

  /**
   * The best `limit` labels for `q` (typos and spacing tolerated).
   *
   * @example
   * ```ts
   * import { LabelIndex } from "./views.ts";
   * declare const index: LabelIndex;
   * index.search("promt injecton")[0]?.label; // "prompt injection"
   * ```
   */
  search(q: string, limit = 20): LabelHit[] {
    const squeezed = q.trim().replace(/\s+/g, " ");
    if (squeezed === "") return [];
    return this.#fuse.search(squeezed, { limit }).map((r) => ({ ...r.item, score: r.score ?? 0 }));
  }
}
