/**
 * Builders for policy tests: rule definitions as a parser would produce
 * them, with short defaults. Test support only.
 *
 * @module
 */
import type {
  Condition,
  ListDef,
  MacroDef,
  PolicyFileDef,
  Pool,
  RuleDef,
  SignalRef,
  SignalTest,
  SourceRef,
} from "./ast.ts";
import type { SparseLatents } from "../sae.ts";
import type { SignalInfo } from "./compiled.ts";

/** A source position in `p.yaml` (or `file`). */
export function at(line: number, file = "p.yaml"): SourceRef {
  return { file, line };
}

/** Latent `index` of SAE `sae` (default `res`). */
export function latent(index: number, sae = "res"): SignalRef {
  return { kind: "latent", sae, index };
}

/** Score `index` of probe `probe` (default `pr`). */
export function probe(index: number, name = "pr"): SignalRef {
  return { kind: "probe", probe: name, index };
}

/** A signal test, `above` by default, per-token pooling by default. */
export function test(
  signal: SignalRef,
  threshold: number,
  opts: { pool?: Pool; op?: "above" | "below"; line?: number } = {},
): SignalTest {
  return {
    kind: "test",
    signal,
    pool: opts.pool ?? { kind: "token" },
    op: opts.op ?? "above",
    threshold,
    source: at(opts.line ?? 10),
  };
}

export const all = (...of: Condition[]): Condition => ({ kind: "all", of, source: at(20) });
export const any = (...of: Condition[]): Condition => ({ kind: "any", of, source: at(21) });
export const not = (of: Condition): Condition => ({ kind: "not", of, source: at(22) });
export const macro = (name: string, line = 23): Condition => ({
  kind: "macro",
  name,
  source: at(line),
});

/** A rule with an alert action, scope both, request suppression, unless overridden. */
export function rule(id: string, condition: Condition, over: Partial<RuleDef> = {}): RuleDef {
  return {
    id,
    title: `rule ${id}`,
    severity: "high",
    tags: [],
    scope: "both",
    condition,
    exceptions: [],
    actions: [{ kind: "alert" }],
    throttle: { suppress: { kind: "request" }, dedupKey: "{request_id}" },
    enabled: true,
    source: at(1),
    ...over,
  };
}

/** A rule that fires on every batch where it holds (no suppression). */
export function everyTime(id: string, condition: Condition, over: Partial<RuleDef> = {}): RuleDef {
  return rule(id, condition, {
    throttle: { suppress: { kind: "none" }, dedupKey: "{request_id}" },
    ...over,
  });
}

/** One policy file. */
export function file(
  rules: RuleDef[],
  opts: { macros?: MacroDef[]; lists?: ListDef[]; name?: string } = {},
): PolicyFileDef {
  return {
    file: opts.name ?? "p.yaml",
    version: 2,
    rules,
    macros: opts.macros ?? [],
    lists: opts.lists ?? [],
  };
}

/** SAE `res` (32 latents, labels on 3, 4, 5, 6) and probe `pr` (2 scores). */
export const SIGNALS: ReadonlyMap<string, SignalInfo> = new Map<string, SignalInfo>([
  [
    "res",
    {
      kind: "sae",
      dSae: 32,
      labels: new Map([[3, "Prompt injection"], [4, "deception"], [5, "Deception"], [6, "code"]]),
    },
  ],
  ["res2", { kind: "sae", dSae: 8 }],
  ["pr", { kind: "probe", dSae: 2 }],
]);

/** A sparse row from `[index, value]` pairs (sorted here). */
export function sparse(pairs: [number, number][]): SparseLatents {
  const sorted = [...pairs].sort((a, b) => a[0] - b[0]);
  return {
    indices: Uint32Array.from(sorted.map(([i]) => i)),
    values: Float32Array.from(sorted.map(([, v]) => v)),
  };
}

/** Rows of one latent taking `values` on successive tokens (0 = inactive). */
export function series(index: number, values: number[]): SparseLatents[] {
  return values.map((v) => sparse(v === 0 ? [] : [[index, v]]));
}

/**
 * A v2 policy file (YAML text) of `n` chained macros: `m0` is one SAE test,
 * `m<i>` is `any` of `m<i-1>` and a test on latent `i`, and one rule uses
 * the last, so its condition expands to `n` tests. The stress case of
 * macro resolution (compile time, reload latency).
 *
 * @example
 * ```ts
 * const text = macroChainYaml(3);
 * text.includes("macro: m2"); // true
 * ```
 */
export function macroChainYaml(
  n: number,
  opts: { sae?: string; rules?: number; dSae?: number } = {},
): string {
  const sae = opts.sae ?? "res";
  // latents wrap around d_sae when given, so any SAE can hold the chain
  const l = (i: number) => opts.dSae ? i % opts.dSae : i;
  const lines = ["version: 2", "macros:"];
  lines.push(`  - macro: m0`, `    when: { sae: ${sae}, latent: 0, above: 1 }`);
  for (let i = 1; i < n; i++) {
    lines.push(
      `  - macro: m${i}`,
      `    when: { any: [{ macro: m${i - 1} }, { sae: ${sae}, latent: ${l(i)}, above: 1 }] }`,
    );
  }
  lines.push("rules:");
  for (let r = 0; r < (opts.rules ?? 1); r++) {
    lines.push(
      `  - id: chain-${r}`,
      `    title: chain ${r}`,
      "    severity: low",
      `    when: { macro: m${n - 1} }`,
    );
  }
  return lines.join("\n") + "\n";
}
