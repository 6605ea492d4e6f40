import assert from "node:assert/strict";
import { applyOp, readLatent } from "./arithmetic.ts";
import { assertAlmostEquals, assertEquals, f32 } from "./_test_utils.ts";

Deno.test("clamp: the latent reads `value` afterwards along its direction (hand-computed)", () => {
  // w = [1, 0], b = -1, threshold 0; x = [3, 5] → pre 2 → a 2; value 0.5; d = [1, 1]
  const x = f32(3, 5);
  const op = {
    kind: "clamp" as const,
    value: 0.5,
    latent: { sae: "s", index: 0 },
    read: { w: f32(1, 0), b: -1, threshold: 0 },
    direction: f32(1, 1),
  };
  assert.ok(applyOp(op, x, 0, 2));
  // x + (0.5 − 2)·[1, 1] = [1.5, 3.5]
  assertEquals([...x], [1.5, 3.5]);
  // an inactive latent is raised to the value too: x = [0, 0] → pre −1 → a 0
  const y = f32(0, 0);
  applyOp(op, y, 0, 2);
  assertEquals([...y], [0.5, 0.5]);
});

Deno.test("jumprelu read-out: below the threshold the latent is 0", () => {
  const read = { w: f32(1, 0), b: 0, threshold: 2.5 };
  assertEquals(readLatent(read, f32(2, 7)), 0);
  assertEquals(readLatent(read, f32(3, 7)), 3);
});

Deno.test("ablate removes a·d; add adds scale·v; cap limits the projection (hand-computed)", () => {
  const read = { w: f32(0, 1), b: 0, threshold: 0 };
  const x = f32(1, 4, /* row 1 */ 2, 2);
  assert.ok(
    applyOp(
      { kind: "ablate", latent: { sae: "s", index: 1 }, read, direction: f32(0.5, 0.5) },
      x,
      1,
      2,
    ),
  );
  // row 1: a = 2 → [2 − 1, 2 − 1]; row 0 untouched
  assertEquals([...x], [1, 4, 1, 1]);
  applyOp({ kind: "add", scale: -2, vector: f32(1, 0.25) }, x, 0, 2);
  assertEquals([...x.subarray(0, 2)], [-1, 3.5]);
  const c = f32(3, 4);
  const u = f32(0.6, 0.8); // p = 1.8 + 3.2 = 5
  assert.ok(applyOp({ kind: "cap", max: 2, direction: u }, c, 0, 2));
  assertAlmostEquals(c[0], 3 - 3 * 0.6, 1e-6);
  assertAlmostEquals(c[1], 4 - 3 * 0.8, 1e-6);
  // below the cap nothing changes
  assertEquals(applyOp({ kind: "cap", max: 10, direction: u }, c, 0, 2), false);
  assertEquals(applyOp({ kind: "abort" }, c, 0, 2), false);
});
