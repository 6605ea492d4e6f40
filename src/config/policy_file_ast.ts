/**
 * Conversion of a validated policy file (zod output) to the language as data
 * (`src/core/policy/ast.ts`) that `compilePolicySet` compiles, with the line
 * and column of everything it describes. A v1 file becomes a v2 file whose
 * condition is its one test with per-token pooling, scope `both`, an alert
 * action and no suppression.
 *
 * @module
 */
import type { z } from "zod";
import type {
  Action,
  Condition,
  ExceptionDef,
  ListDef,
  MacroDef,
  PolicyFileDef,
  Pool,
  RuleDef,
  SignalRef,
  SourceRef,
  SteerAction,
  Throttle,
  ValueSet,
} from "../core/policy/ast.ts";
import type {
  ActionSchema,
  ConditionIn,
  PolicyFile,
  PolicyFileV2,
  PoolSchema,
  RuleSchema,
  SuppressSchema,
} from "./policy_file_schema.ts";
import type { YamlPath, YamlSource } from "./yaml_source.ts";

/** Converts validated zod output to the AST, with positions. */
export class ToAst {
  constructor(readonly src: YamlSource) {}

  at(path: YamlPath): SourceRef {
    return { file: this.src.file, ...this.src.locate(path) };
  }

  condition(c: ConditionIn, path: YamlPath): Condition {
    const source = this.at(path);
    if ("all" in c) {
      return {
        kind: "all",
        of: c.all.map((x, i) => this.condition(x, [...path, "all", i])),
        source,
      };
    }
    if ("any" in c) {
      return {
        kind: "any",
        of: c.any.map((x, i) => this.condition(x, [...path, "any", i])),
        source,
      };
    }
    if ("not" in c) return { kind: "not", of: this.condition(c.not, [...path, "not"]), source };
    if ("macro" in c) return { kind: "macro", name: c.macro, source };
    let signal: SignalRef;
    if (c.probe !== undefined) signal = { kind: "probe", probe: c.probe, index: c.score ?? 0 };
    else if (c.latent !== undefined) signal = { kind: "latent", sae: c.sae!, index: c.latent };
    else if (c.label !== undefined) signal = { kind: "label", sae: c.sae!, label: c.label };
    else if (c.family !== undefined) {
      signal = {
        kind: "family",
        sae: c.sae!,
        of: c.family.of,
        members: c.family.members ?? { minCosine: c.family.min_cosine! },
        combine: c.family.combine ?? "sum",
      };
    } else {signal = {
        kind: "latents",
        sae: c.sae!,
        indices: valueSetAst(c.latents!) as number[] | { list: string },
      };}
    const op = c.above !== undefined ? "above" : "below";
    return {
      kind: "test",
      signal,
      pool: poolAst(c.pool ?? "token"),
      op,
      threshold: (op === "above" ? c.above : c.below)!,
      source,
      ...(c.name !== undefined ? { name: c.name } : {}),
    };
  }

  rule(r: z.output<typeof RuleSchema>, path: YamlPath): RuleDef {
    const exceptions = r.exceptions.map((e, i): ExceptionDef => {
      const out: ExceptionDef = { source: this.at([...path, "exceptions", i]) };
      if (e.name !== undefined) out.name = e.name;
      if (e.tenant !== undefined) out.tenant = valueSetAst(e.tenant);
      if (e.model !== undefined) out.model = valueSetAst(e.model);
      if (e.metadata !== undefined) {
        out.metadata = Object.fromEntries(
          Object.entries(e.metadata).map(([k, v]) => [k, valueSetAst(v)]),
        );
      }
      return out;
    });
    const throttle: Throttle = {
      suppress: suppressAst(r.suppress),
      dedupKey: r.dedup_key,
    };
    if (r.rate_limit) {
      throttle.rateLimit = { alerts: r.rate_limit.alerts, seconds: r.rate_limit.per_seconds };
    }
    const def: RuleDef = {
      id: r.id,
      title: r.title,
      severity: r.severity,
      tags: r.tags,
      scope: r.scope,
      condition: this.condition(r.when, [...path, "when"]),
      exceptions,
      actions: r.actions.map(actionAst),
      throttle,
      enabled: r.enabled,
      source: this.at(path),
    };
    if (r.description !== undefined) def.description = r.description;
    if (r.redact !== undefined) def.redact = r.redact;
    return def;
  }
}

function valueSetAst(v: (string | number)[] | string): ValueSet {
  return typeof v === "string" ? { list: v } : v;
}

function poolAst(p: z.output<typeof PoolSchema>): Pool {
  if (p === "token") return { kind: "token" };
  if ("max" in p) return { kind: "max", window: p.max };
  if ("mean" in p) return { kind: "mean", window: p.mean };
  if ("rolling_mean_max" in p) return { kind: "rolling_mean_max", window: p.rolling_mean_max };
  if ("ema" in p) return { kind: "ema", halfLife: p.ema.half_life };
  return { kind: "count", window: p.count.window, above: p.count.above };
}

function suppressAst(s: z.output<typeof SuppressSchema>): Throttle["suppress"] {
  if (s === "request" || s === "none") return { kind: s };
  if ("tokens" in s) return { kind: "tokens", n: s.tokens };
  return { kind: "seconds", s: s.seconds };
}

function directionAst(
  d: { sae?: string; latent?: number; vector?: number[] },
): { sae: string; latent: number } | { vector: number[] } {
  return d.vector !== undefined ? { vector: d.vector } : { sae: d.sae!, latent: d.latent! };
}

function actionAst(a: z.output<typeof ActionSchema>): Action {
  if (a === "alert") return { kind: "alert" };
  const s = a.steer;
  let steer: SteerAction;
  if (s === "abort") steer = { kind: "abort" };
  else if ("clamp" in s) steer = { kind: "clamp", ...s.clamp };
  else if ("ablate" in s) steer = { kind: "ablate", ...s.ablate };
  else if ("add" in s) steer = { kind: "add", scale: s.add.scale, direction: directionAst(s.add) };
  else if ("cap" in s) steer = { kind: "cap", max: s.cap.max, direction: directionAst(s.cap) };
  else {steer = s.abort.reason !== undefined
      ? { kind: "abort", reason: s.abort.reason }
      : { kind: "abort" };}
  return { kind: "steer", steer };
}

/**
 * The AST of a validated v1 policy file read from `src`.
 *
 * @example
 * ```ts
 * import { parseYamlSource } from "./yaml_source.ts";
 * import { PolicyFileSchema } from "./policy_file_schema.ts";
 * import { validateYaml } from "./yaml_source.ts";
 * const src = parseYamlSource("version: 1\nrules: []\n", "p.yaml");
 * policyFileV1Ast(validateYaml(PolicyFileSchema, src), src).rules; // []
 * ```
 */
export function policyFileV1Ast(parsed: PolicyFile, src: YamlSource): PolicyFileDef {
  const file = src.file;
  const rules = parsed.rules.map((r, i): RuleDef => {
    const path = ["rules", i];
    const w = r.when;
    const signal: SignalRef = w.probe !== undefined
      ? { kind: "probe", probe: w.probe, index: w.score ?? 0 }
      : { kind: "latent", sae: w.sae!, index: w.latent! };
    const rule: RuleDef = {
      id: r.id,
      title: r.title,
      severity: r.severity,
      tags: [],
      scope: "both",
      condition: {
        kind: "test",
        signal,
        pool: { kind: "token" },
        op: "above",
        threshold: w.above,
        source: { file, ...src.locate([...path, "when"]) },
      },
      exceptions: [],
      actions: [{ kind: "alert" }],
      // v1 raised one alert per frame where the rule held
      throttle: { suppress: { kind: "none" }, dedupKey: "{request_id}" },
      enabled: true,
      source: { file, ...src.locate(path) },
    };
    if (r.description !== undefined) rule.description = r.description;
    return rule;
  });
  return { file, version: 1, rules, macros: [], lists: [] };
}

/**
 * The AST of a validated v2 policy file read from `src`.
 *
 * @example
 * ```ts
 * import { parseYamlSource } from "./yaml_source.ts";
 * import { PolicyFileV2Schema } from "./policy_file_schema.ts";
 * import { validateYaml } from "./yaml_source.ts";
 * const src = parseYamlSource("version: 2\nrules: []\n", "p.yaml");
 * policyFileV2Ast(validateYaml(PolicyFileV2Schema, src), src).lists; // []
 * ```
 */
export function policyFileV2Ast(parsed: PolicyFileV2, src: YamlSource): PolicyFileDef {
  const file = src.file;
  const ast = new ToAst(src);
  const lists = parsed.lists.map((l, i): ListDef => ({
    name: l.list,
    items: l.items,
    source: ast.at(["lists", i]),
  }));
  const macros = parsed.macros.map((m, i): MacroDef => ({
    name: m.macro,
    condition: ast.condition(m.when, ["macros", i, "when"]),
    source: ast.at(["macros", i]),
  }));
  const rules = parsed.rules.map((r, i) => ast.rule(r, ["rules", i]));
  return { file, version: 2, rules, macros, lists };
}
