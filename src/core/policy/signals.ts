/**
 * Signal tests resolved: a test's signal (latent, label, latent list or
 * probe) to concrete `(encoder, index)` signals the monitor loads, its
 * pooling and threshold checked.
 *
 * @module
 */
import type { Pool, SignalRef, SignalTest, SourceRef } from "./ast.ts";
import type { SignalInfo } from "./compiled.ts";
import type { ProblemCode } from "./problems.ts";
import { resolveFamily } from "./family_signal.ts";
import {
  type Ctx,
  namedList,
  node,
  problem,
  type Resolved,
  type ResolvedSignal,
  someNames,
} from "./context.ts";

function labelsOf(ctx: Ctx, encoder: string, info: SignalInfo): Map<string, number[]> {
  let m = ctx.labelIndex.get(encoder);
  if (!m) {
    m = new Map();
    for (const [i, label] of info.labels ?? []) {
      const k = label.trim().toLowerCase();
      const list = m.get(k);
      if (list) list.push(i);
      else m.set(k, [i]);
    }
    ctx.labelIndex.set(encoder, m);
  }
  return m;
}

/** A label compared for "did you mean": lower case, without whitespace. */
function normalizeLabel(label: string): string {
  return label.toLowerCase().replace(/\s+/g, "");
}

/**
 * The loaded label closest to `label` by edit distance on normalized text
 * (case and whitespace ignored), when it is close: at most 1 edit for short
 * labels, about one in four characters for longer ones. The first of equally
 * close labels wins; labels whose length alone rules them out are skipped, so
 * the work is bounded by the label count times the label's length.
 *
 * @example
 * ```ts
 * closestLabel("prompt injecton", ["prompt injection", "French text"]); // "prompt injection"
 * closestLabel("PromptInjection", ["prompt injection"]); // "prompt injection"
 * ```
 */
export function closestLabel(label: string, labels: Iterable<string>): string | undefined {
  const needle = normalizeLabel(label);
  if (needle.length === 0) return undefined;
  const limit = Math.max(1, Math.floor(needle.length / 4));
  let best: string | undefined;
  let bestD = limit + 1;
  for (const l of labels) {
    const n = normalizeLabel(l);
    if (Math.abs(n.length - needle.length) >= bestD) continue;
    const d = boundedEditDistance(needle, n, bestD - 1);
    if (d < bestD) [best, bestD] = [l, d];
    if (bestD === 0) break;
  }
  return best;
}

/**
 * Levenshtein distance of `a` and `b`, or `max + 1` once it is known to exceed `max`.
 *
 * @example
 * ```ts
 * boundedEditDistance("emial", "email", 2); // 2
 * ```
 */
export function boundedEditDistance(a: string, b: string, max: number): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let low = i;
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      low = Math.min(low, cur[j]);
    }
    if (low > max) return max + 1;
    prev = cur;
  }
  return Math.min(prev[b.length], max + 1);
}

/** Resolve a signal reference to concrete `(encoder, index)` pairs; `null` after a problem. */
function resolveSignal(
  ctx: Ctx,
  rule: string | undefined,
  sig: SignalRef,
  source: SourceRef,
): ResolvedSignal[] | null {
  const encoder = sig.kind === "probe" ? sig.probe : sig.sae;
  const info = ctx.signals.get(encoder);
  const want = sig.kind === "probe" ? "probe" : "sae";
  const bad = (code: ProblemCode, reason: string) => {
    problem(ctx, rule, source, code, reason);
    return null;
  };
  if (!info) {
    const known = [...ctx.signals].filter(([, i]) => i.kind === want).map(([k]) => k);
    return bad(
      "unknown-encoder",
      `unknown ${want === "sae" ? "SAE" : "probe"} '${encoder}'; expected one the monitor loads (${
        someNames(known)
      })`,
    );
  }
  if (info.kind !== want) {
    return bad(
      "wrong-encoder-kind",
      want === "probe"
        ? `expected a probe, found SAE '${encoder}' (read its latents with 'sae:' and 'latent:')`
        : `expected an SAE, found probe '${encoder}' (read its scores with 'probe:')`,
    );
  }
  let indices: readonly unknown[];
  if (sig.kind === "family") return resolveFamily(ctx, rule, sig, source, info);
  if (sig.kind === "label") {
    if (!info.labels || info.labels.size === 0) {
      return bad(
        "no-labels",
        `latent label '${sig.label}': SAE '${encoder}' has no labels loaded; expected a latent index`,
      );
    }
    const found = labelsOf(ctx, encoder, info).get(sig.label.trim().toLowerCase()) ?? [];
    if (found.length === 0) {
      const needle = sig.label.trim().toLowerCase();
      const near = [...info.labels].filter(([, l]) => l.toLowerCase().includes(needle)).slice(0, 3);
      const close = closestLabel(sig.label, info.labels.values());
      return bad(
        "unknown-label",
        `unknown latent label '${sig.label}' for SAE '${encoder}'; expected a loaded label ` +
          `(matched exactly, ignoring case)` +
          (close !== undefined ? ` (did you mean '${close}'?)` : "") +
          (near.length
            ? `; labels containing it: ${near.map(([i, l]) => `${i} '${l}'`).join(", ")}`
            : ""),
      );
    }
    if (found.length > 1) {
      return bad(
        "ambiguous-label",
        `latent label '${sig.label}' of SAE '${encoder}' is ambiguous: expected one latent, found ` +
          `${found.length} (${
            found.slice(0, 10).map((i) => `${i} '${info.labels!.get(i)}'`).join(", ")
          }); use 'latent:' with an index`,
      );
    }
    // a label names a loaded latent: in range by construction
    return [{ encoder, kind: "latent", index: found[0], label: info.labels.get(found[0])! }];
  } else if (sig.kind === "latents") {
    const list = Array.isArray(sig.indices)
      ? sig.indices
      : namedList(ctx, sig.indices.list, source, rule);
    if (list === null) return null;
    if (list.length === 0) {
      return bad("list-item", "expected at least one latent, found an empty list");
    }
    if (Array.isArray(sig.indices) && list.length > ctx.limits.listItems) {
      return bad(
        "limit",
        `expected at most ${ctx.limits.listItems} latents in a list (limit listItems), found ` +
          `${list.length}`,
      );
    }
    indices = list;
  } else {
    indices = [sig.index];
  }
  const what = want === "sae" ? "latent" : "score";
  let ok = true;
  for (const i of indices) {
    if (typeof i === "number" && Number.isInteger(i) && i >= ctx.limits.latentIndex) {
      ok = false;
      problem(
        ctx,
        rule,
        source,
        "latent-index",
        `expected a ${what} index below ${ctx.limits.latentIndex} (limit latentIndex), found ${i}`,
      );
    } else if (typeof i !== "number" || !Number.isInteger(i) || i < 0 || i >= info.dSae) {
      ok = false;
      problem(
        ctx,
        rule,
        source,
        "latent-range",
        want === "sae"
          ? `expected a latent index in 0..${
            info.dSae - 1
          } (SAE '${encoder}' has d_sae ${info.dSae}), found ${JSON.stringify(i)}`
          : `expected a score index in 0..${
            info.dSae - 1
          } (probe '${encoder}' has ${info.dSae} scores), found ${JSON.stringify(i)}`,
      );
    }
  }
  if (!ok) return null;
  return [...new Set(indices as number[])].map((index) => ({
    encoder,
    kind: want === "sae" ? "latent" as const : "probe" as const,
    index,
    ...(want === "sae" && info.labels?.has(index) ? { label: info.labels.get(index)! } : {}),
  }));
}

function checkPool(ctx: Ctx, rule: string | undefined, pool: Pool, source: SourceRef): boolean {
  const bad = (reason: string) => {
    problem(ctx, rule, source, "pool", reason);
    return false;
  };
  if ("window" in pool && (!Number.isInteger(pool.window) || pool.window < 1)) {
    return bad(`${pool.kind}: expected a window of at least 1 token, found ${pool.window}`);
  }
  if (pool.kind === "ema" && (!Number.isFinite(pool.halfLife) || pool.halfLife <= 0)) {
    return bad(`ema: expected a half-life > 0 tokens, found ${pool.halfLife}`);
  }
  if (pool.kind === "count" && !Number.isFinite(pool.above)) {
    return bad(`count: expected a finite 'above', found ${pool.above}`);
  }
  return true;
}

export function resolveTest(ctx: Ctx, rule: string | undefined, test: SignalTest): Resolved | null {
  const signals = resolveSignal(ctx, rule, test.signal, test.source);
  let ok = signals !== null;
  ok = checkPool(ctx, rule, test.pool, test.source) && ok;
  const sae = test.signal.kind !== "probe";
  const bad = (code: ProblemCode, reason: string) => {
    ok = false;
    problem(ctx, rule, test.source, code, reason);
  };
  if (!Number.isFinite(test.threshold)) {
    bad("threshold", `expected a finite threshold, found ${test.threshold}`);
  } else if (sae && test.op === "above" && test.threshold < 0) {
    bad(
      "fires-every-token",
      `expected an 'above' threshold ≥ 0 for an SAE latent, found ${test.threshold}: ` +
        "a latent that is not active reads 0 and pooled latents are never negative, " +
        "so this test would hold on every token",
    );
  }
  if (sae && test.pool.kind === "count" && test.pool.above < 0) {
    bad(
      "fires-every-token",
      `count: expected 'above' ≥ 0 for an SAE latent, found ${test.pool.above}: ` +
        "a latent that is not active reads 0, so every token would count",
    );
  }
  if (!ok || signals === null) return null;
  const { pool, op, threshold, source } = test;
  const named = (signal: ResolvedSignal) =>
    test.name === undefined
      ? {}
      : { name: signals.length === 1 ? test.name : `${test.name}.${signal.index}` };
  const leaves: Resolved[] = signals.map((signal) => ({
    kind: "leaf",
    signal,
    sae,
    pool,
    op,
    threshold,
    source,
    size: 1,
    depth: 1,
    ...named(signal),
  }));
  return leaves.length === 1 ? leaves[0] : node("any", leaves, source);
}
