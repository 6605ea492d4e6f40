/**
 * A compiled condition turned into the closure the engine calls per token,
 * which also records the witness (the trigger test that made it hold).
 *
 * @module
 */
import type { CompiledCondition, CompiledTest, ConditionEnv } from "./compiled.ts";

/**
 * The condition as a closure. `negated` is static, so leaves know whether
 * they can be the witness (a trigger test outside a `not`); `all`/`any`
 * restore the witness when a branch fails, so it always names a test of the
 * branch that made the rule hold.
 */
export function compileEval(
  c: CompiledCondition,
  tests: readonly CompiledTest[],
  negated: boolean,
): (env: ConditionEnv) => boolean {
  switch (c.kind) {
    case "test": {
      const { test, threshold } = c;
      const witness = !negated && tests[test].trigger;
      if (c.op === "above") {
        return witness
          ? (env) => {
            const v = env.read(test);
            if (!(v > threshold)) return false;
            if (env.witness < 0) {
              env.witness = test;
              env.witnessValue = v;
            }
            return true;
          }
          : (env) => env.read(test) > threshold;
      }
      return witness
        ? (env) => {
          const v = env.read(test);
          if (!(v < threshold)) return false;
          if (env.witness < 0) {
            env.witness = test;
            env.witnessValue = v;
          }
          return true;
        }
        : (env) => env.read(test) < threshold;
    }
    case "not": {
      const inner = compileEval(c.of, tests, !negated);
      return (env) => {
        const w = env.witness;
        const held = inner(env);
        env.witness = w;
        return !held;
      };
    }
    case "all": {
      const of = c.of.map((x) => compileEval(x, tests, negated));
      return (env) => {
        const w = env.witness;
        for (const f of of) {
          if (!f(env)) {
            env.witness = w;
            return false;
          }
        }
        return true;
      };
    }
    case "any": {
      const of = c.of.map((x) => compileEval(x, tests, negated));
      return (env) => {
        const w = env.witness;
        for (const f of of) {
          if (f(env)) return true;
          env.witness = w;
        }
        return false;
      };
    }
  }
}
