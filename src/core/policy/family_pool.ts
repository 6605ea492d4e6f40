/**
 * Pooling state of a test, family tests included: a family test's members
 * are pushed one by one on a token (each already weighted by its decoder
 * cosine), and combined (`sum` or `max`) into the token's one value before
 * it enters the pooling. Pure.
 *
 * @module
 */
import type { CompiledTest } from "./compiled.ts";
import { createPoolState, type PoolState } from "./pool.ts";

/**
 * Holds a token's value until every member active on it has been pushed:
 * the value goes into the pooling at the next token's first push or at the
 * first read, whichever comes first (the engine pushes a token's members
 * before it reads).
 */
class CombinePool implements PoolState {
  readonly #inner: PoolState;
  readonly #max: boolean;
  #t = NaN;
  #v = 0;
  #start = 0;
  constructor(inner: PoolState, combine: "sum" | "max") {
    this.#inner = inner;
    this.#max = combine === "max";
  }
  #flush(): void {
    if (Number.isNaN(this.#t)) return;
    this.#inner.push(this.#t, this.#v, this.#start);
    this.#t = NaN;
  }
  push(t: number, v: number, start: number): void {
    if (t === this.#t) {
      this.#v = this.#max ? Math.max(this.#v, v) : this.#v + v;
      return;
    }
    this.#flush();
    [this.#t, this.#v, this.#start] = [t, v, start];
  }
  read(t: number, start: number): number {
    if (this.#t <= t) this.#flush();
    return this.#inner.read(t, start);
  }
}

/**
 * A fresh pooling state for `test`: its pooling, with a family test's
 * members combined per token first.
 *
 * @example
 * ```ts
 * const s = createTestPoolState({
 *   pool: { kind: "token" },
 *   family: { members: [4, 9], weights: [1, 0.5], combine: "sum" },
 * });
 * s.push(3, 2, 0); // latent 4 at 2 (× 1)
 * s.push(3, 3, 0); // latent 9 at 6 (× 0.5, weighted by the engine)
 * s.read(3, 0); // 5
 * ```
 */
export function createTestPoolState(
  test: Pick<CompiledTest, "pool" | "family">,
): PoolState {
  const inner = createPoolState(test.pool);
  return test.family ? new CombinePool(inner, test.family.combine) : inner;
}
