/**
 * One rule's condition built from its resolved tree: tests numbered in the
 * rule's table, nested `all` in `all` (and `any` in `any`) merged without
 * recursion, which keeps chains of `any` macros shallow, and each node given
 * a structural id for the lint checks.
 *
 * @module
 */
import { canonical } from "./canonical.ts";
import type { CompiledCondition, CompiledTest } from "./compiled.ts";
import type { Resolved } from "./context.ts";
import type { ConditionLeaf } from "./condition_names.ts";

/** A rule's pooled signals while its condition is built. */
export class TestTable {
  readonly tests: CompiledTest[] = [];
  readonly #byKey = new Map<string, number>();
  slot(t: Omit<CompiledTest, "trigger">, trigger: boolean): number {
    const key = canonical({ e: t.encoder, k: t.kind, i: t.index, p: t.pool, f: t.family ?? null });
    let i = this.#byKey.get(key);
    if (i === undefined) {
      i = this.tests.length;
      this.#byKey.set(key, i);
      this.tests.push({ ...t, trigger });
    } else if (trigger && !this.tests[i].trigger) {
      this.tests[i] = { ...this.tests[i], trigger };
    }
    return i;
  }
}

/**
 * Builds one rule's condition from its resolved form: tests numbered in the
 * rule's {@linkcode TestTable} (a test is a trigger when its signal being
 * high can make the rule hold), nested `all`/`any` merged, and every node
 * given a structural id (equal ids, equal conditions) for the lint checks.
 */
export class ConditionBuilder {
  readonly table = new TestTable();
  /** The rule's leaves in the order the condition reads them (one per written leaf). */
  readonly leaves: ConditionLeaf[] = [];
  readonly #leafOf = new Map<Resolved, number>();
  readonly #ids = new WeakMap<CompiledCondition, number>();
  readonly #keys = new Map<string, number>();

  /** Structural id of a node this builder made. */
  id(c: CompiledCondition): number {
    return this.#ids.get(c)!;
  }

  #intern(c: CompiledCondition, key: string): CompiledCondition {
    let id = this.#keys.get(key);
    if (id === undefined) this.#keys.set(key, id = this.#keys.size);
    this.#ids.set(c, id);
    return c;
  }

  /** The condition of `res`; recursion is as deep as its merged depth (checked by the caller). */
  build(res: Resolved, negated = false): CompiledCondition {
    switch (res.kind) {
      case "leaf": {
        const { signal, sae, pool, op, threshold, source } = res;
        const trigger = sae ? (op === "above") !== negated : !negated;
        const test = this.table.slot({ ...signal, pool }, trigger);
        let cond = this.#leafOf.get(res);
        if (cond === undefined) {
          this.#leafOf.set(res, cond = this.leaves.length);
          this.leaves.push({
            signal,
            test,
            op,
            threshold,
            source,
            ...(res.name !== undefined ? { name: res.name } : {}),
          });
        }
        return this.#intern(
          { kind: "test", test, cond, op, threshold, source },
          `t${test}:${op}:${threshold}`,
        );
      }
      case "not": {
        const of = this.build(res.of, !negated);
        return this.#intern({ kind: "not", of, source: res.source }, `n${this.id(of)}`);
      }
      default: {
        const of: CompiledCondition[] = [];
        const stack: [Resolved[], number][] = [[res.of, 0]];
        while (stack.length > 0) {
          const top = stack[stack.length - 1];
          if (top[1] >= top[0].length) {
            stack.pop();
            continue;
          }
          const x = top[0][top[1]++];
          if (x.kind === res.kind) stack.push([(x as { of: Resolved[] }).of, 0]);
          else of.push(this.build(x, negated));
        }
        const key = `${res.kind}(${of.map((x) => this.id(x)).join(",")})`;
        return this.#intern({ kind: res.kind, of, source: res.source }, key);
      }
    }
  }
}
