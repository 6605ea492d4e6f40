import assert from "node:assert/strict";
import type { Alert } from "../core/alert.ts";
import type { Encoder } from "../core/sae.ts";
import { Evidence, MAX_EVIDENCE_TOKENS, topLatents } from "./evidence.ts";
import { frame, row } from "./testdata/fixtures.ts";

const alertAt = (positions: number[], sae = "s") =>
  ({
    requestId: "r1",
    latent: { sae, index: 0 },
    evidence: positions.map((position) => ({ position, value: 1 })),
  }) as unknown as Alert;

/** Latent i of a token is its input value i. */
const identity: Encoder = {
  dIn: 2,
  dSae: 2,
  encode: (x, n) =>
    Promise.resolve(Array.from({ length: n }, (_, t) => row({ 0: x[t * 2], 1: x[t * 2 + 1] }))),
  close: () => Promise.resolve(),
};

Deno.test("evidence: the flagged tokens' strongest latents, from the ring, labelled", async () => {
  const ev = new Evidence({ topLatents: 1, ringTokens: 16, dIn: 2 });
  ev.remember([frame([[1, 4], [5, 2]])]);
  const alert = alertAt([0, 1, 7]);
  const report = await ev.attach([alert], {
    encoders: new Map([["s", identity]]),
    labels: new Map([["s", new Map([[1, "one"]])]]),
  });
  assert.deepEqual(alert.evidence[0].topLatents, [{ index: 1, value: 4, label: "one" }]);
  assert.deepEqual(alert.evidence[1].topLatents, [{ index: 0, value: 5 }]);
  assert.equal(alert.evidence[2].topLatents, undefined);
  assert.deepEqual(report, { tokens: new Map([["s", 2]]), notInRing: 1, failures: [] });
});

Deno.test("evidence: off, a probe, an encode error: alerts as they were, failures reported", async () => {
  const off = new Evidence({ topLatents: 0, ringTokens: 16, dIn: 2 });
  assert.equal(off.enabled, false);
  const failing: Encoder = { ...identity, encode: () => Promise.reject(new Error("boom")) };
  const ev = new Evidence({ topLatents: 2, ringTokens: 16, dIn: 2 });
  ev.remember([frame([[1, 4]])]);
  const alert = alertAt([0]);
  const report = await ev.attach([alert], { encoders: new Map([["s", failing]]) });
  assert.equal(alert.evidence[0].topLatents, undefined);
  assert.equal(report.failures[0].error.message, "boom");
  assert.equal(report.failures[0].tokens, 1);
  assert.ok(MAX_EVIDENCE_TOKENS > 0);
  assert.deepEqual(topLatents(row({ 3: 1, 4: 9, 5: 2 }), 2), [
    { index: 4, value: 9 },
    { index: 5, value: 2 },
  ]);
});
