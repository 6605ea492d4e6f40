/**
 * What a monitor runs, loaded from its config: the models and generations
 * (`../pipeline/models.ts`, `../pipeline/generation.ts`, shared with the
 * offline tools) and the policies, compiled here, in a worker on hot reload.
 *
 * @module
 */
import { type CompiledPolicySet, compilePolicySet } from "../core/policy/compile.ts";
import type { PolicyFileDef } from "../core/policy/ast.ts";
import type { MonitorConfig } from "../config/monitor.ts";
import { readPolicyFile } from "../config/policy_file.ts";
import { formatProblem, PolicyCompileError } from "../core/policy/compile.ts";
import { formatIssue } from "../config/errors.ts";
import type { Logger } from "../shared/log.ts";
import { type MonitorModels, monitorSignals } from "../pipeline/models.ts";
import { type PolicyCompiler, PolicyWorkerError } from "./policy_compiler.ts";

export {
  allEncoders,
  buildGeneration,
  type BuildGenerationOptions,
  type BuiltGeneration,
  closeUnused,
  type Generation,
} from "../pipeline/generation.ts";
export {
  loadMonitorModels,
  loadMonitorSae,
  type MonitorModels,
  monitorSignals,
} from "../pipeline/models.ts";

/**
 * Load and compile the policy files of `config` against its SAEs and probes.
 * Throws (every problem with file:line) when a file is invalid; nothing is
 * changed then. Warnings are logged. With `compiler`, the files are read and
 * compiled in its worker, off the event loop (what a hot reload does). Only
 * when the worker cannot start at all are they compiled here instead; a
 * worker that crashed, timed out or answered with an unexpected error
 * throws its {@linkcode PolicyWorkerError} (a reload is refused, the
 * running set stays), so a policy set that kills the worker never stalls the
 * event loop.
 *
 * @example
 * ```ts
 * import type { MonitorConfig } from "../config/monitor.ts";
 * import type { MonitorModels } from "../pipeline/models.ts";
 * import { Logger } from "../shared/log.ts";
 * import { PolicyCompiler } from "./policy_compiler.ts";
 * declare const config: MonitorConfig;
 * declare const models: MonitorModels;
 * const log = new Logger();
 * const policies = await compileMonitorPolicies(config, models, log);
 * const again = await compileMonitorPolicies(config, models, log, new PolicyCompiler());
 * ```
 */
export async function compileMonitorPolicies(
  config: Pick<MonitorConfig, "policies">,
  models: MonitorModels,
  log?: Logger,
  compiler?: PolicyCompiler,
): Promise<CompiledPolicySet> {
  const signals = monitorSignals(models);
  if (compiler) {
    try {
      const { set, fileWarnings } = await compiler.compile(config.policies, signals);
      for (const w of fileWarnings) log?.warn("policy.warning", { warning: w });
      for (const w of set.warnings) log?.warn("policy.warning", { warning: formatProblem(w) });
      return set;
    } catch (err) {
      // family tests read the SAE decoder, which stays on this thread
      const needsDecoder = err instanceof PolicyCompileError &&
        err.problems.some((p) => p.code === "no-decoder");
      if (needsDecoder) log?.info("policies.compile_in_thread", { why: "family tests" });
      else if (!(err instanceof PolicyWorkerError) || err.kind !== "unavailable") throw err;
      else {
        log?.warn("policies.worker_unavailable", {
          error: err.message,
          note: "compiling in-thread",
        });
      }
    }
  }
  const files: PolicyFileDef[] = [];
  for (const file of config.policies) {
    const { def, warnings } = await readPolicyFile(file);
    files.push(def);
    for (const w of warnings) log?.warn("policy.warning", { warning: formatIssue(w) });
  }
  const set = compilePolicySet(files, signals);
  for (const w of set.warnings) log?.warn("policy.warning", { warning: formatProblem(w) });
  return set;
}
