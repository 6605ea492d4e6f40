import assert from "node:assert/strict";
import type { Frame } from "../core/frame/format.ts";
import type { SteerAction } from "../core/policy/ast.ts";
import type { Firing } from "../core/policy/engine.ts";
import type { SteerOp } from "../core/steer/protocol.ts";
import { gateVerdict, SteerPlanner, type SteerSkip } from "./steer_plan.ts";

const CLAMP: SteerAction = { kind: "clamp", sae: "s", latent: 0, value: 0 } as SteerAction;
const ABORT: SteerAction = { kind: "abort" } as SteerAction;
const frame = {
  requestId: "r",
  model: "m",
  hook: "h",
  position: 4,
  tokens: 2,
  seq: 1,
} as Frame;
const firing = (steer: SteerAction[], alert = true) =>
  ({ rule: { id: "rule" }, requestId: "r", positions: [4], steer, alert }) as unknown as Firing;
const ops = new Map<SteerAction, SteerOp>([
  [CLAMP, { kind: "clamp" } as unknown as SteerOp],
  [ABORT, { kind: "abort" } as unknown as SteerOp],
]);

Deno.test("steer plan: commands from the token after the frame, once per rule action and request", () => {
  const p = new SteerPlanner({ monitor: "mon", dIn: 8, ttlMs: 100 });
  const skipped: SteerSkip[] = [];
  const [c] = p.plan(
    { frame, firing: firing([CLAMP]), id: "a1", steerOps: ops, now: 1000 },
    skipped,
  );
  assert.equal(c.id, "a1-s0");
  assert.equal(c.fromPosition, 6);
  assert.equal(c.expiresAtMs, 1100);
  assert.equal(c.alertId, "a1");
  assert.equal(c.monitor, "mon");
  assert.equal(c.dModel, 8);
  assert.deepEqual(
    p.plan({ frame, firing: firing([CLAMP]), id: "a2", steerOps: ops, now: 1 }, skipped),
    [],
  );
  assert.deepEqual(skipped, [{ reason: "repeat", rule: "rule" }]);
  p.forget("r");
  assert.equal(
    p.plan({ frame, firing: firing([CLAMP], false), id: "a3", steerOps: ops, now: 1 }, skipped)[0]
      .alertId,
    undefined,
    "a steer-only firing names no alert",
  );
});

Deno.test("steer plan: disabled and unresolved actions are skipped with their reason", () => {
  const skipped: SteerSkip[] = [];
  const off = new SteerPlanner({ monitor: "m", dIn: 8, enabled: false });
  assert.deepEqual(
    off.plan({ frame, firing: firing([CLAMP, ABORT]), id: "a", now: 0 }, skipped),
    [],
  );
  const on = new SteerPlanner({ monitor: "m", dIn: 8 });
  assert.deepEqual(on.plan({ frame, firing: firing([CLAMP]), id: "a", now: 0 }, skipped), []);
  assert.deepEqual(skipped, [
    { reason: "disabled", rule: "rule", actions: 2 },
    { reason: "unresolved", rule: "rule", requestId: "r", action: CLAMP },
  ]);
});

Deno.test("steer plan: a gated frame's verdict is abort, steer or continue", () => {
  const p = new SteerPlanner({ monitor: "m", dIn: 8 });
  const cmds = p.plan(
    { frame, firing: firing([CLAMP, ABORT]), id: "a", steerOps: ops, now: 0 },
    [],
  );
  assert.equal(gateVerdict(frame, cmds).verdict, "abort");
  assert.equal(gateVerdict(frame, cmds.slice(0, 1)).verdict, "steer");
  assert.deepEqual(gateVerdict(frame, []), {
    requestId: "r",
    seq: 1,
    verdict: "continue",
    commands: [],
  });
});
