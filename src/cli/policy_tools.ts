/**
 * `latentwatch policy test` and `latentwatch policy calibrate`: the offline
 * policy tools, run over recorded traces (`docs/traces.md`).
 *
 * - `policy test <path>...`: run the rule tests in `<name>.test.yaml` files
 *   (a trace, a monitor, the alerts expected and those expected not to
 *   fire), print PASS/FAIL per test and a summary like `opa test`.
 * - `policy calibrate --monitor <file> --traces <t>... --target-fpr <f>`:
 *   suggest each rule's threshold for a false-positive target from benign
 *   traces, with the alert rates at the current and suggested thresholds.
 *
 * Both are documented in `docs/traces.md`.
 *
 * @module
 */
import { runCalibrate } from "./policy_calibrate.ts";
import { runTests } from "./policy_test_cmd.ts";

export {
  calibrate,
  type CalibrationReport,
  type RateAt,
  type RuleCalibration,
} from "./policy_calibrate_run.ts";
export { loadPolicyTests, type PolicyTest, PolicyTestFileSchema } from "./policy_test_cmd.ts";

/**
 * Run `policy test|calibrate ...` and return the exit code. Called by
 * `src/cli/policy.ts`.
 *
 * @example
 * ```ts
 * const code = await runPolicyTool("test", ["policies/demo.test.yaml"]); // 0: every test passed
 * ```
 */
export async function runPolicyTool(sub: "test" | "calibrate", args: string[]): Promise<number> {
  return sub === "test" ? await runTests(args) : await runCalibrate(args);
}
