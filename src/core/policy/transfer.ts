/**
 * A compiled set as a value: assembled from its rules (the per-latent index
 * built on first use), and carried to another thread as plain data and
 * rebuilt there.
 *
 * @module
 */
import type { CompiledPolicySet, CompiledRule, SignalInfo } from "./compiled.ts";
import { compileEval } from "./closures.ts";
import { buildIndex, type EncoderIndex } from "./encoder_index.ts";
import type { PolicyWarning } from "./problems.ts";

/** A set from its rules; the per-latent index is built on first use. */
export function policySet(
  rules: CompiledRule[],
  warnings: PolicyWarning[],
  version: string,
  signals: ReadonlyMap<string, SignalInfo>,
): CompiledPolicySet {
  let index: Map<string, EncoderIndex> | undefined;
  const built = () => index ??= buildIndex(rules, signals);
  const encoderIds = [...new Set(rules.flatMap((r) => r.tests.map((t) => t.encoder)))].sort();
  return {
    rules,
    encoderIds,
    warnings,
    version,
    get index() {
      return built();
    },
    watchedLatents: (id) => built().get(id)?.watched.slice() ?? new Uint32Array(0),
  };
}

/**
 * A compiled set as plain data (no closures, no index), which structured
 * clone can carry from a worker: see {@linkcode policySetData} and
 * {@linkcode hydratePolicySet}.
 */
export interface CompiledPolicyData {
  rules: Omit<CompiledRule, "holds">[];
  warnings: PolicyWarning[];
  version: string;
}

/**
 * The plain data of a compiled set, to send to another thread.
 *
 * @example
 * ```ts
 * import type { PolicyFileDef } from "./ast.ts";
 * import { compilePolicySet, type SignalInfo } from "./compile.ts";
 * declare const files: PolicyFileDef[], signals: ReadonlyMap<string, SignalInfo>;
 * declare const worker: Worker;
 * worker.postMessage(policySetData(compilePolicySet(files, signals)));
 * ```
 */
export function policySetData(set: CompiledPolicySet): CompiledPolicyData {
  return {
    rules: set.rules.map(({ holds: _, ...rule }) => rule),
    warnings: [...set.warnings],
    version: set.version,
  };
}

/**
 * A compiled set again from its data ({@linkcode policySetData}), for the
 * same `signals`: each rule's evaluation closure is rebuilt (linear in the
 * size of its condition, which compile has bounded).
 *
 * @example
 * ```ts
 * import type { PolicyFileDef } from "./ast.ts";
 * import { compilePolicySet, type SignalInfo } from "./compile.ts";
 * declare const files: PolicyFileDef[], signals: ReadonlyMap<string, SignalInfo>;
 * const set = hydratePolicySet(policySetData(compilePolicySet(files, signals)), signals);
 * ```
 */
export function hydratePolicySet(
  data: CompiledPolicyData,
  signals: ReadonlyMap<string, SignalInfo>,
): CompiledPolicySet {
  const rules = data.rules.map((r) => ({
    ...r,
    holds: compileEval(r.condition, r.tests, false),
  }));
  return policySet(rules, data.warnings, data.version, signals);
}
