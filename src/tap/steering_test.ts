import assert from "node:assert/strict";
import { encodeCommand } from "../core/steer/encode.ts";
import { type SteerCommand, type SteerOp } from "../core/steer/protocol.ts";
import { RequestSteering } from "./steering.ts";

const f32 = (...v: number[]) => new Float32Array(v);
const NOW = 1_000_000;

function cmd(id: string, op: SteerOp, extra: Partial<SteerCommand> = {}): Uint8Array {
  return encodeCommand({
    id,
    requestId: "r1",
    model: "m",
    hook: "h",
    dModel: 2,
    fromPosition: 3,
    untilPosition: null,
    issuedAtMs: NOW,
    expiresAtMs: NOW + 5000,
    op,
    ...extra,
  });
}

const serves = (id: string) => id === "r1";
const steering = () =>
  new RequestSteering({ model: "m", hook: "h", dModel: 2, tap: "t", now: () => NOW });

Deno.test("steering: operations apply from from_position, in order received, acknowledged once", () => {
  const s = steering();
  assert.equal(s.receive(cmd("add", { kind: "add", scale: 1, vector: f32(1, 0) }), serves), null);
  // after the add: clamp latent (w=[1,0], b=0) to 0.5 along d=[1,0]
  const clamp: SteerOp = {
    kind: "clamp",
    value: 0.5,
    latent: { sae: "s", index: 0 },
    read: { w: f32(1, 0), b: 0, threshold: 0 },
    direction: f32(1, 0),
  };
  assert.equal(s.receive(cmd("clamp", clamp, { fromPosition: 4 }), serves), null);
  // positions 2, 3, 4 (rows of [3, 2])
  const x = f32(2, 7, 2, 7, 2, 7);
  const acks = s.apply("r1", 2, x, 3, 2);
  // pos 2: untouched; pos 3: add → [3, 7]; pos 4: add → [3, 7], clamp: a = 3 → 3 + (0.5 − 3) = 0.5
  assert.deepEqual([...x], [2, 7, 3, 7, 0.5, 7]);
  assert.deepEqual(acks.map((a) => [a.id, a.status, a.position, a.tap]), [
    ["add", "applied", 3, "t"],
    ["clamp", "applied", 4, "t"],
  ]);
  assert.deepEqual(s.apply("r1", 5, f32(0, 0), 1, 2), []); // applied before: no new ack
  assert.equal(s.stats.applied, 2);
});

Deno.test("steering: until_position ends an operation; the same id twice is applied once", () => {
  const s = steering();
  const add = cmd("a", { kind: "add", scale: 2, vector: f32(0, 1) }, { untilPosition: 4 });
  s.receive(add, serves);
  s.receive(add, serves);
  const x = f32(0, 0, 0, 0);
  s.apply("r1", 3, x, 2, 2);
  assert.deepEqual([...x], [0, 2, 0, 0]);
});

Deno.test("steering: malformed commands are rejected with a reason; expired ones acknowledged as such", () => {
  const s = steering();
  const bad = new TextEncoder().encode(
    JSON.stringify({ v: 1, id: "bad", request_id: "r1", model: "m", hook: "h", d_model: 3 }),
  );
  const ack = s.receive(bad, serves)!;
  assert.equal(ack.status, "rejected");
  assert.match(ack.reason!, /d_model: expected 2 \(the hook's width\), found 3/);
  assert.equal(s.receive(new TextEncoder().encode("garbage"), serves), null); // no id: nothing to ack
  assert.equal(s.stats.rejected, 2);
  const late = cmd("late", { kind: "abort" }, { issuedAtMs: NOW - 9000, expiresAtMs: NOW - 1 });
  assert.equal(s.receive(late, serves)!.status, "expired");
  assert.equal(s.aborted("r1"), null, "an expired abort does not stop the request");
  assert.equal(s.stats.expired, 1);
});

Deno.test("steering: another replica's requests are ignored; ended ones get not_applied", () => {
  const s = steering();
  assert.equal(s.receive(cmd("x", { kind: "abort" }, { requestId: "r9" }), serves), null);
  assert.equal(s.stats.ignored, 1);
  s.receive(
    cmd("pending", { kind: "add", scale: 1, vector: f32(1, 1) }, { fromPosition: 50 }),
    serves,
  );
  const acks = s.end("r1");
  assert.deepEqual(acks.map((a) => [a.id, a.status]), [["pending", "not_applied"]]);
  const after = s.receive(cmd("after", { kind: "abort" }), () => false)!;
  assert.equal(after.status, "not_applied");
  assert.equal(s.activeRequests, 0);
});

Deno.test("steering: abort stops the request at max(from_position, next position)", () => {
  const s = steering();
  const ack = s.receive(cmd("stop", { kind: "abort", reason: "leak" }), serves, () => 7)!;
  assert.deepEqual([ack.status, ack.position], ["applied", 7]);
  assert.deepEqual(s.aborted("r1"), { position: 7, reason: "leak" });
  assert.equal(s.stats.aborted, 1);
});

Deno.test("steering: a command whose window passed before it could apply is acknowledged not_applied", () => {
  const s = steering();
  s.receive(
    cmd("late", { kind: "add", scale: 1, vector: f32(1, 1) }, { untilPosition: 7 }),
    serves,
  );
  const acks = s.apply("r1", 10, f32(0, 0), 1, 2);
  assert.deepEqual(acks.map((a) => [a.id, a.status]), [["late", "not_applied"]]);
  assert.match(acks[0].reason!, /window \[3, 7\) had passed/);
  assert.deepEqual(s.end("r1"), [], "acknowledged once");
});

Deno.test("steering: an abort takes effect from its from_position, not before", () => {
  const s = steering();
  s.receive(cmd("later", { kind: "abort" }, { fromPosition: 100 }), serves, () => 3);
  assert.equal(s.aborted("r1", 4), null);
  assert.deepEqual(s.aborted("r1", 100), { position: 100, reason: "rule ?" });
});

Deno.test("steering: a gate failing open counts; failing closed aborts from the next position", () => {
  const s = steering();
  s.gateFailed("r1", 5, "open", "no NATS connection");
  assert.equal(s.aborted("r1"), null);
  s.gateFailed("r1", 6, "closed", "timeout");
  s.gateFailed("r1", 7, "closed", "timeout"); // already stopped: the first position stands
  assert.equal(s.aborted("r1", 5), null);
  assert.deepEqual(s.aborted("r1", 6), { position: 6, reason: "gate failed closed: timeout" });
  const { gateTimeouts, failOpen, failClosed, aborted } = s.stats;
  assert.deepEqual([gateTimeouts, failOpen, failClosed, aborted], [3, 1, 2, 1]);
});
