/**
 * Rule test cases with given values: a `*.test.yaml` test that states its
 * request (tenant, model, metadata, phase), its tokens and the value of
 * each signal per token, instead of replaying a recorded trace. The values
 * are checked against the monitor's encoders (SAE or probe id, latent index
 * below `d_sae`, label, finite numbers, SAE latents ≥ 0, one value per
 * token) with `file:line:col` errors; `./policy_case_run.ts` runs them
 * through the policy engine. The `request:` schema is shared with
 * recorded-trace cases, whose requests it overrides.
 *
 * @module
 */
import { z } from "zod";
import type { ConfigIssue } from "../config/errors.ts";
import { expectMessage, type YamlSource } from "../config/yaml_source.ts";
import { META_KEY } from "../core/frame/format.ts";
import type { SignalInfo } from "../core/policy/compiled.ts";
import { closestLabel } from "../core/policy/signals.ts";
import { choiceOf, isMapping } from "../shared/schema.ts";

const NAME = expectMessage("a non-empty string");
const INDEX = expectMessage("an integer ≥ 0");
const NUMBER = expectMessage("a finite number");

/** The `request:` of a test: who the request is (every key optional). */
export const CaseRequestSchema = z.strictObject({
  /** Request id (given values: default `test`; a trace: only that request is overridden). */
  id: z.string().min(1, { error: NAME }).optional(),
  tenant: z.string().min(1, { error: NAME }).optional(),
  model: z.string().min(1, { error: NAME }).optional(),
  /** `Lw-Meta-*` keys (lower case) → value. */
  meta: z.record(
    z.string().regex(META_KEY, {
      error: expectMessage("a metadata key ([a-z0-9_-]+, lower case)"),
    }),
    z.string({ error: expectMessage("a string") }),
  ).optional(),
  /** Given values only: `prefill` (prompt) or `decode` (generation); absent counts for both. */
  phase: z.enum(["prefill", "decode"]).optional(),
});

/** One signal's values in a given-values case. */
export const CaseSignalSchema = z.strictObject({
  sae: z.string().min(1, { error: NAME }).optional(),
  latent: z.int({ error: INDEX }).min(0, { error: INDEX }).optional(),
  label: z.string().min(1, { error: NAME }).optional(),
  probe: z.string().min(1, { error: NAME }).optional(),
  score: z.int({ error: INDEX }).min(0, { error: INDEX }).optional(),
  /** One value per token, or `{position: value}` (other tokens 0). */
  values: choiceOf([
    z.array(z.number({ error: NUMBER })),
    z.record(z.string(), z.number({ error: NUMBER })),
  ], {
    expected: "a list of numbers (one per token) or a mapping position → number",
    choose: (v) => Array.isArray(v) ? 0 : isMapping(v) ? 1 : -1,
  }),
});

/** The request part of a test, as written. */
export type CaseRequest = z.infer<typeof CaseRequestSchema>;
/** A signal of a given-values case, as written. */
export type CaseSignal = z.infer<typeof CaseSignalSchema>;

/** A given-values case resolved against the monitor's encoders. */
export interface GivenCase {
  request: CaseRequest & { id: string };
  /** Token count. */
  length: number;
  /** Token text, when the test gives it. */
  tokens?: string[];
  /** Encoder id → latent (or score) index → value per token. */
  values: Map<string, Map<number, number[]>>;
}

/** Where a given-values case is in its file, and what it says. */
export interface GivenCaseSource {
  src: YamlSource;
  /** YAML path of the test (`["tests", i]`). */
  at: readonly (string | number)[];
  request?: CaseRequest;
  tokens?: string[] | number;
  signals: CaseSignal[];
}

/** Request id of a given-values case without `request.id`. */
export const GIVEN_REQUEST_ID = "test";

/**
 * Check a given-values case against the monitor's encoders and build its
 * values; every problem is an issue at its `file:line:col`.
 *
 * @example
 * ```ts
 * import { parseYamlSource } from "../config/yaml_source.ts";
 * import { resolveGivenCase } from "./policy_cases.ts";
 * const src = parseYamlSource("tests:\n  - signals: [{sae: res, latent: 2, values: [0, 3]}]\n", "t.yaml");
 * const r = resolveGivenCase(
 *   { src, at: ["tests", 0], signals: [{ sae: "res", latent: 2, values: [0, 3] }] },
 *   new Map([["res", { kind: "sae", dSae: 16 }]]),
 * );
 * r.issues; // []
 * r.case?.values.get("res")?.get(2); // [0, 3]
 * ```
 */
export function resolveGivenCase(
  c: GivenCaseSource,
  signals: ReadonlyMap<string, SignalInfo>,
): { case?: GivenCase; issues: ConfigIssue[] } {
  const issues: ConfigIssue[] = [];
  const issue = (path: (string | number)[], reason: string, at?: "key") =>
    issues.push({ file: c.src.file, ...c.src.locate([...c.at, ...path], at), reason });
  const length = typeof c.tokens === "number"
    ? c.tokens
    : c.tokens?.length ?? c.signals.find((s) => Array.isArray(s.values))?.values.length;
  if (length === undefined) {
    issue(
      ["signals"],
      "expected 'tokens' (the token texts or their number) or a list of values per token, " +
        "found only sparse values",
    );
    return { issues };
  }
  const out = new Map<string, Map<number, number[]>>();
  for (const [j, s] of c.signals.entries()) {
    const at = (key: string) => ["signals", j, key];
    const target = signalTarget(s, signals, (key, reason) => issue(at(key), reason));
    if (!target) continue;
    const { encoder, index, info, what } = target;
    const values = new Array<number>(length).fill(0);
    const check = (v: number, path: (string | number)[]) => {
      if (info.kind === "sae" && v < 0) {
        issue(
          path,
          `expected a value ≥ 0 (${what}: SAE latents are 0 or positive), found ${v}`,
        );
        return false;
      }
      return true;
    };
    if (Array.isArray(s.values)) {
      if (s.values.length !== length) {
        issue(
          at("values"),
          `expected ${length} values (one per token), found ${s.values.length}`,
        );
        continue;
      }
      s.values.forEach((v, k) => {
        if (check(v, [...at("values"), k])) values[k] = v;
      });
    } else {
      for (const [key, v] of Object.entries(s.values)) {
        const pos = Number(key);
        if (!/^\d+$/.test(key) || pos >= length) {
          issue(
            [...at("values"), key],
            `expected a token position in 0..${length - 1}, found '${key}'`,
            "key",
          );
          continue;
        }
        if (check(v, [...at("values"), key])) values[pos] = v;
      }
    }
    let m = out.get(encoder);
    if (!m) out.set(encoder, m = new Map());
    if (m.has(index)) {
      issue(["signals", j], `${what} is given twice; expected one entry per signal`);
      continue;
    }
    m.set(index, values);
  }
  if (issues.length > 0) return { issues };
  return {
    issues,
    case: {
      request: { ...c.request, id: c.request?.id ?? GIVEN_REQUEST_ID },
      length,
      ...(Array.isArray(c.tokens) ? { tokens: c.tokens } : {}),
      values: out,
    },
  };
}

/** The encoder and index a signal entry names, or null after reporting why not. */
function signalTarget(
  s: CaseSignal,
  signals: ReadonlyMap<string, SignalInfo>,
  issue: (key: string, reason: string) => void,
): { encoder: string; index: number; info: SignalInfo; what: string } | null {
  const fail = (key: string, reason: string): null => {
    issue(key, reason);
    return null;
  };
  const known = (kind: SignalInfo["kind"]) =>
    [...signals].filter(([, i]) => i.kind === kind).map(([id]) => id).join(", ") || "none";
  if ((s.sae === undefined) === (s.probe === undefined)) {
    return fail(
      s.sae !== undefined ? "probe" : "values",
      "expected either 'sae' with 'latent' or 'label', or 'probe' (with 'score')",
    );
  }
  if (s.probe !== undefined) {
    if (s.latent !== undefined || s.label !== undefined) {
      return fail(
        s.latent !== undefined ? "latent" : "label",
        "expected 'score' (not a latent) with 'probe'",
      );
    }
    const info = signals.get(s.probe);
    if (!info || info.kind !== "probe") {
      return fail(
        "probe",
        `unknown probe '${s.probe}'; expected one the monitor loads (${known("probe")})`,
      );
    }
    const index = s.score ?? 0;
    if (index >= info.dSae) {
      return fail(
        "score",
        `expected a score index in 0..${info.dSae - 1} (probe '${s.probe}'), found ${index}`,
      );
    }
    return { encoder: s.probe, index, info, what: `probe '${s.probe}' score ${index}` };
  }
  const sae = s.sae!;
  const info = signals.get(sae);
  if (!info || info.kind !== "sae") {
    return fail("sae", `unknown SAE '${sae}'; expected one the monitor loads (${known("sae")})`);
  }
  if (s.score !== undefined) {
    return fail("score", "expected 'latent' or 'label' (not 'score') with 'sae'");
  }
  if ((s.latent === undefined) === (s.label === undefined)) {
    return fail(
      s.latent !== undefined ? "label" : "sae",
      "expected one of 'latent' or 'label' with 'sae'",
    );
  }
  if (s.label !== undefined) {
    const want = s.label.trim().toLowerCase();
    const found = [...info.labels ?? []].filter(([, l]) => l.trim().toLowerCase() === want);
    if (found.length !== 1) {
      return fail(
        "label",
        found.length === 0
          ? `unknown latent label '${s.label}' for SAE '${sae}'; expected a loaded label ` +
            `(matched exactly, ignoring case)${hint(s.label, info)}`
          : `latent label '${s.label}' of SAE '${sae}' is ambiguous: expected one latent, found ` +
            found.map(([i]) => i).join(", "),
      );
    }
    const index = found[0][0];
    return { encoder: sae, index, info, what: `SAE '${sae}' latent ${index} "${s.label}"` };
  }
  const index = s.latent!;
  if (index >= info.dSae) {
    return fail(
      "latent",
      `expected a latent index in 0..${
        info.dSae - 1
      } (SAE '${sae}' has d_sae ${info.dSae}), found ${index}`,
    );
  }
  return { encoder: sae, index, info, what: `SAE '${sae}' latent ${index}` };
}

/** A "did you mean" for an unknown label, or why there is none. */
function hint(label: string, info: SignalInfo): string {
  if (!info.labels?.size) return " (the SAE has no labels loaded)";
  const close = closestLabel(label, info.labels.values());
  return close ? ` (did you mean '${close}'?)` : "";
}
