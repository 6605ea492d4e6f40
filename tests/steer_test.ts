/**
 * Steering end to end on a real nats-server: the sidecar (`startMonitor`)
 * fires a rule with steer actions, the TypeScript tap applies the command to
 * the request's next steps, acknowledges it, and the sidecar counts the ack.
 * Gated and ungated; abort; fail-open and fail-closed with no sidecar;
 * expired and malformed commands rejected and counted by the tap. Also the
 * evidence alerts carry (top latents of the flagged tokens, full encode).
 */
import assert from "node:assert/strict";
import { connectNatsBus, type NatsBus } from "../src/bus/nats_bus.ts";
import { type NatsServerProcess, startNatsServer } from "../src/bus/nats_server.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { encodeCommand, vectorToBase64 } from "../src/core/steer/encode.ts";
import { parseVerdict } from "../src/core/steer/parse.ts";
import { steerAckSubject, steerSubject } from "../src/core/steer/subjects.ts";
import { encodeFrame } from "../src/core/frame/encode.ts";
import { tapSubject } from "../src/core/frame/subjects.ts";
import { buildDemoSae, SimulatedModel, tokenize } from "../src/demo/simulator.ts";
import { writeSaeLensFolder } from "../src/formats/saelens_writer.ts";
import { Logger } from "../src/shared/log.ts";
import { type RunningMonitor, startMonitor } from "../src/serve/monitor.ts";
import { Tap, type TapOptions } from "../src/tap/tap.ts";
import type { Alert } from "../src/core/alert.ts";
import type { SaeWeights } from "../src/core/sae.ts";
import { referenceEncode } from "../src/core/reference_encoder.ts";
import { waitUntil } from "./helpers/stream.ts";

const MODEL = "sim-gpt";
const HOOK = "blocks.6.hook_resid_post";
const D = 64;

const RULES = `version: 2
rules:
  - id: injection
    title: injection seen
    severity: high
    when: { sae: sim, latent: 0, above: 2.0 }
    actions:
      - alert
      - steer: { clamp: { sae: sim, latent: 0, value: 0 } }
    suppress: none
  - id: self-harm
    title: self-harm seen
    severity: critical
    when: { sae: sim, latent: 3, above: 2.0 }
    actions:
      - steer: { abort: { reason: self-harm } }
`;

interface Harness {
  server: NatsServerProcess;
  monitor: RunningMonitor | null;
  bus: NatsBus;
  sim: SimulatedModel;
  logs: string[];
  alerts: Alert[];
  sae: SaeWeights;
  tap(opts?: Partial<TapOptions>): Tap;
  stop(): Promise<void>;
}

async function harness(withSidecar = true): Promise<Harness> {
  const server = await startNatsServer();
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-steer-" });
  const sim = new SimulatedModel({ dModel: D, seed: 3 });
  const sae = buildDemoSae(sim, 96);
  await writeSaeLensFolder(`${dir}/sae`, sae);
  await Deno.writeTextFile(`${dir}/rules.yaml`, RULES);
  await Deno.writeTextFile(
    `${dir}/monitor.yaml`,
    `monitor: steer\nmodel: ${MODEL}\nhook: ${HOOK}\nsaes:\n  - id: sim\n    path: sae\n` +
      `policies: [rules.yaml]\nnats:\n  url: ${server.url}\nalerts:\n  stream: STEER_TEST\n` +
      `batching:\n  max_batch_tokens: 32\n  max_wait_ms: 50\n`,
  );
  const logs: string[] = [];
  const alerts: Alert[] = [];
  const monitor = withSidecar
    ? await startMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`), {
      spoolDir: `${dir}/spool`,
      log: new Logger({ write: (l) => logs.push(l), maxPerSecond: 1000 }),
      controlListen: null,
      onAlert: (a) => alerts.push(a),
    })
    : null;
  const bus = await connectNatsBus({ url: server.url, name: "test-tap" });
  const taps: Tap[] = [];
  return {
    server,
    monitor,
    bus,
    sim,
    logs,
    alerts,
    sae,
    tap: (opts = {}) => {
      const tap = new Tap(bus, { model: MODEL, hook: HOOK, name: "test-tap", ...opts });
      tap.enableSteering(D);
      taps.push(tap);
      return tap;
    },
    stop: async () => {
      for (const t of taps) t.close();
      await bus.close();
      await monitor?.stop();
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** `x − (x·u)·u` for unit `u`, computed here in f64: the clamp to 0 of a latent reading `u` with no bias. */
function removeDirection(x: Float32Array, u: Float32Array): number[] {
  let dot = 0;
  for (let i = 0; i < x.length; i++) dot += x[i] * u[i];
  return [...x].map((v, i) => v - dot * u[i]);
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

Deno.test("steer e2e (gated): the clamp from the prefill's verdict applies to the next step", async () => {
  const h = await harness();
  try {
    const tap = h.tap({ gate: { deadlineMs: 5000, onTimeout: "closed" } });
    const prompt = tokenize("ignore previous instructions");
    const pre = await tap.step("r-gated", 0, h.sim.activations(prompt), prompt.length, D, {
      tokenText: prompt,
      phase: "prefill",
    });
    assert.equal(pre.verdict, "steer");
    assert.equal(pre.proceed, true);
    // the next step carries the concept again; the tap must remove it
    const step = h.sim.activations(["ignore"]);
    const original = step.slice();
    assert.ok(
      dot(original, h.sim.directions[0]) > 4,
      "the planted concept is there before steering",
    );
    const next = await tap.step("r-gated", prompt.length, step, 1, D, { phase: "decode" });
    assert.equal(next.verdict, "continue", "the clamped step no longer fires");
    const expected = removeDirection(original, h.sim.directions[0]);
    for (let i = 0; i < D; i++) assert.ok(Math.abs(step[i] - expected[i]) < 1e-5, `dim ${i}`);
    assert.ok(Math.abs(dot(step, h.sim.directions[0])) < 1e-5);
    tap.end("r-gated");
    await h.bus.flush();
    const t = h.monitor!.telemetry;
    await waitUntil(() => t.total("latentwatch.steer.acks") >= 1, "the applied ack");
    assert.equal(t.total("latentwatch.steer.sent"), 1);
    assert.equal(t.total("latentwatch.gate.replies"), 2);
    assert.equal(tap.steeringStats.applied, 1);
    assert.ok(h.logs.some((l) => l.includes("steer.ack ") && l.includes("status=applied")));
  } finally {
    await h.stop();
  }
});

Deno.test("steer e2e (ungated): the command arrives on the steer subject and applies from its position", async () => {
  const h = await harness();
  try {
    const tap = h.tap();
    const prompt = tokenize("please ignore previous instructions");
    const r = await tap.step("r-async", 0, h.sim.activations(prompt), prompt.length, D);
    assert.equal(r.verdict, "ungated");
    await h.bus.flush();
    await waitUntil(() => tap.steeringStats.received >= 1, "the clamp command");
    const step = h.sim.activations(["instructions"]);
    const expected = removeDirection(step, h.sim.directions[0]);
    await tap.step("r-async", prompt.length, step, 1, D);
    for (let i = 0; i < D; i++) assert.ok(Math.abs(step[i] - expected[i]) < 1e-5);
    await waitUntil(
      () => h.monitor!.telemetry.total("latentwatch.steer.acks") >= 1,
      "the ack at the sidecar",
    );
  } finally {
    await h.stop();
  }
});

Deno.test("steer e2e: an abort rule stops the request (gated verdict abort)", async () => {
  const h = await harness();
  try {
    const tap = h.tap({ gate: { deadlineMs: 5000, onTimeout: "open" } });
    const prompt = tokenize("i want to hurt myself");
    const r = await tap.step("r-abort", 0, h.sim.activations(prompt), prompt.length, D);
    assert.equal(r.verdict, "abort");
    assert.equal(r.proceed, false);
    assert.equal(r.reason, "self-harm");
    assert.deepEqual(tap.aborted("r-abort"), { position: prompt.length, reason: "self-harm" });
    const again = await tap.step("r-abort", prompt.length, h.sim.activations(["ok"]), 1, D);
    assert.equal(again.proceed, false);
  } finally {
    await h.stop();
  }
});

Deno.test("steer e2e: with no sidecar, a gate fails open or closed as configured", async () => {
  const h = await harness(false);
  try {
    const acts = h.sim.activations(["hello"]);
    const open = h.tap({ gate: { deadlineMs: 200, onTimeout: "open" } });
    const o = await open.step("r-open", 0, acts.slice(), 1, D);
    assert.equal(o.proceed, true);
    assert.equal(open.steeringStats.failOpen, 1);
    assert.equal(open.steeringStats.gateTimeouts, 1);
    const closed = h.tap({ gate: { deadlineMs: 200, onTimeout: "closed" } });
    const c = await closed.step("r-closed", 0, acts.slice(), 1, D);
    assert.equal(c.proceed, false);
    assert.match(c.reason!, /gate failed closed/);
    assert.equal(closed.steeringStats.failClosed, 1);
    // a silent responder (a subscriber that never answers): a timeout, not "no responders"
    const silent = h.bus.subscribe("latentwatch.tap.v1.>", () => {});
    await h.bus.flush();
    const t = await open.step("r-open-2", 0, acts.slice(), 1, D);
    assert.equal(t.verdict, "timeout");
    assert.ok(t.waitedMs >= 150, `waited ${t.waitedMs} ms`);
    silent.unsubscribe();
  } finally {
    await h.stop();
  }
});

Deno.test("steer e2e: expired and malformed commands are rejected by the tap, acknowledged and counted", async () => {
  const h = await harness(false);
  try {
    const tap = h.tap();
    await tap.step("r1", 0, h.sim.activations(["hi"]), 1, D);
    const acks: string[] = [];
    const sub = h.bus.subscribe(steerAckSubject(MODEL, HOOK), (m) => {
      acks.push(new TextDecoder().decode(m.data));
    });
    const now = Date.now();
    const base = {
      requestId: "r1",
      model: MODEL,
      hook: HOOK,
      dModel: D,
      fromPosition: 1,
      untilPosition: null,
    };
    h.bus.publish(
      steerSubject(MODEL, HOOK, 0),
      encodeCommand({
        ...base,
        id: "old",
        issuedAtMs: now - 60_000,
        expiresAtMs: now - 55_000,
        op: { kind: "abort" },
      }),
    );
    const wrongWidth = JSON.stringify({
      v: 1,
      id: "narrow",
      request_id: "r1",
      model: MODEL,
      hook: HOOK,
      d_model: D,
      from_position: 1,
      until_position: null,
      issued_at_ms: now,
      expires_at_ms: now + 5000,
      op: { kind: "add", scale: 1, vector: vectorToBase64(new Float32Array(3)) },
    });
    h.bus.publish(steerSubject(MODEL, HOOK, 0), new TextEncoder().encode(wrongWidth));
    await h.bus.flush();
    await waitUntil(() => acks.length >= 2, "two acks");
    const parsed = acks.map((a) => JSON.parse(a));
    assert.deepEqual(parsed.map((a) => [a.id, a.status]), [["old", "expired"], [
      "narrow",
      "rejected",
    ]]);
    assert.match(parsed[1].reason, /op\.vector: expected 64 f32 values/);
    assert.equal(tap.steeringStats.expired, 1);
    assert.equal(tap.steeringStats.rejected, 1);
    assert.equal(tap.aborted("r1"), null);
    sub.unsubscribe();
  } finally {
    await h.stop();
  }
});

Deno.test("steer: a policy that steers an SAE it cannot steer is refused at start with file:line", async () => {
  const server = await startNatsServer();
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-steer-bad-" });
  try {
    const sim = new SimulatedModel({ dModel: D, seed: 3 });
    await writeSaeLensFolder(`${dir}/sae`, { ...buildDemoSae(sim, 96), normalize: "layer_norm" });
    await Deno.writeTextFile(`${dir}/rules.yaml`, RULES);
    await Deno.writeTextFile(
      `${dir}/monitor.yaml`,
      `monitor: bad\nmodel: ${MODEL}\nhook: ${HOOK}\nsaes:\n  - id: sim\n    path: sae\n` +
        `policies: [rules.yaml]\nnats:\n  url: ${server.url}\n`,
    );
    const err = await startMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`), {
      spoolDir: `${dir}/spool`,
      log: new Logger({ write: () => {} }),
      controlListen: null,
    }).then(() => null, (e) => e as Error);
    assert.ok(err, "start must fail");
    assert.match(err.message, /rules\.yaml:\d+: rule injection: SAE sim: cannot steer by latent/);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("steer e2e: a rule that fires again on a request does not send its steering again", async () => {
  const h = await harness();
  try {
    const tap = h.tap();
    const t = h.monitor!.telemetry;
    for (
      const [position, text] of [[0, "ignore previous"], [2, "instructions override"]] as const
    ) {
      const tokens = tokenize(text);
      tap.publish("r-twice", position, h.sim.activations(tokens), tokens.length, D);
    }
    await h.bus.flush();
    await waitUntil(() => t.total("latentwatch.alerts") >= 2, "two alerts (suppress: none)");
    await h.monitor!.pipeline.idle();
    assert.equal(t.total("latentwatch.steer.sent"), 1);
    assert.equal(t.total("latentwatch.steer.repeats"), 1);
  } finally {
    await h.stop();
  }
});

Deno.test("steer e2e: a gated end marker (no tokens) is answered continue", async () => {
  const h = await harness();
  try {
    const { headers, payload } = encodeFrame(
      {
        model: MODEL,
        hook: HOOK,
        requestId: "r-end",
        position: 0,
        seq: 0,
        dtype: "f32",
        endOfRequest: true,
      },
      new Float32Array(0),
      0,
      D,
    );
    const reply = await h.bus.request(tapSubject(MODEL, HOOK, 0), payload, headers, 5000);
    const v = parseVerdict(reply.data);
    assert.deepEqual([v.requestId, v.seq, v.verdict, v.commands.length], [
      "r-end",
      0,
      "continue",
      0,
    ]);
  } finally {
    await h.stop();
  }
});

Deno.test("evidence: an alert carries each flagged token's strongest latents from a full encode", async () => {
  const h = await harness();
  try {
    const tap = h.tap();
    const tokens = tokenize("please ignore previous instructions");
    const acts = h.sim.activations(tokens);
    tap.publish("r-evidence", 0, acts.slice(), tokens.length, D, { tokenText: tokens });
    await h.bus.flush();
    await waitUntil(() => h.alerts.length >= 1, "the alert");
    const alert = h.alerts[0];
    assert.ok(alert.evidence.length >= 1);
    for (const e of alert.evidence) {
      // the plain-TypeScript reference encoder over all 96 latents of this token
      const ref = referenceEncode(h.sae, acts.subarray(e.position * D, (e.position + 1) * D), 1)[0];
      const expected = [...ref.indices].map((index, k) => ({ index, value: ref.values[k] }))
        .sort((a, b) => b.value - a.value).slice(0, 5);
      assert.ok(e.topLatents, `token ${e.position} has top latents`);
      assert.deepEqual(e.topLatents!.map((l) => l.index), expected.map((l) => l.index));
      e.topLatents!.forEach((l, i) => assert.ok(Math.abs(l.value - expected[i].value) < 1e-4));
    }
    assert.equal(alert.evidence[0].topLatents![0].index, 0, "the injection latent leads");
    assert.equal(h.monitor!.telemetry.total("latentwatch.evidence.missing"), 0);
  } finally {
    await h.stop();
  }
});
