/**
 * What the steering tests share: small assertions and a command to vary.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { SteerCommand } from "./protocol.ts";

/** A Float32Array of the arguments. */
export const f32 = (...v: number[]) => new Float32Array(v);
/** Deep equality. */
export const assertEquals = (a: unknown, b: unknown) => assert.deepEqual(a, b);
/** `a` within `tol` of `b`. */
export const assertAlmostEquals = (a: number, b: number, tol: number) =>
  assert.ok(Math.abs(a - b) <= tol, `expected ${b} ± ${tol}, found ${a}`);

/** Run `fn`, expect it to throw an instance of `cls` whose message contains `part`; return the error. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  cls: new (...args: never[]) => E,
  part: string,
): E {
  try {
    fn();
  } catch (err) {
    assert.ok(
      err instanceof cls,
      `expected ${cls.name}, found ${(err as Error).name}: ${(err as Error).message}`,
    );
    assert.ok(
      err.message.includes(part),
      `expected a message containing ${JSON.stringify(part)}, found ${JSON.stringify(err.message)}`,
    );
    return err;
  }
  throw new assert.AssertionError({
    message: `expected ${cls.name} containing ${JSON.stringify(part)}, nothing thrown`,
  });
}

/** A valid command with `op`, fields overridden by `extra`. */
export function command(op: SteerCommand["op"], extra: Partial<SteerCommand> = {}): SteerCommand {
  return {
    id: "c1",
    requestId: "req-1",
    model: "m",
    hook: "blocks.0",
    dModel: 2,
    fromPosition: 4,
    untilPosition: null,
    issuedAtMs: 1000,
    expiresAtMs: 6000,
    op,
    ...extra,
  };
}
