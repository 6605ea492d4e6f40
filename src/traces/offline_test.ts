import assert from "node:assert/strict";
import { encodeFrame } from "../core/frame/encode.ts";
import { tapSubject } from "../core/frame/subjects.ts";
import type { PolicyFileDef, RuleDef, SignalTest } from "../core/policy/ast.ts";
import type { Alert } from "../core/alert.ts";
import type { SaeWeights } from "../core/sae.ts";
import { parseMonitorConfig } from "../config/monitor.ts";
import { DEMO_PROMPTS } from "../demo/demo.ts";
import { buildDemoSae, SimulatedModel } from "../demo/simulator.ts";
import { writeSaeLensFolder } from "../formats/saelens_writer.ts";
import { calibrate } from "../cli/policy_tools.ts";
import { suggestThreshold } from "./calibrate.ts";
import { loadOfflineMonitor } from "./offline.ts";
import { type ReplayFiring, replayTrace } from "./replay.ts";
import { writeSimulatedTrace } from "../demo/simulated_trace.ts";
import { TraceWriter } from "./writer.ts";

const HOOK = "blocks.6.hook_resid_post";

/** A v1-style rule (one test, per-token pooling, per-request suppression) as data. */
function rule(
  id: string,
  sae: string,
  latent: number,
  above: number,
  extra: Partial<RuleDef> = {},
): RuleDef {
  return {
    id,
    title: id,
    severity: "high",
    tags: [],
    scope: "both",
    condition: test(sae, latent, above),
    exceptions: [],
    actions: [{ kind: "alert" }],
    throttle: { suppress: { kind: "request" }, dedupKey: "{request_id}" },
    enabled: true,
    source: { file: "p.yaml", line: 1 },
    ...extra,
  };
}

function test(sae: string, latent: number, above: number): SignalTest {
  return {
    kind: "test",
    signal: { kind: "latent", sae, index: latent },
    pool: { kind: "token" },
    op: "above",
    threshold: above,
    source: { file: "p.yaml", line: 2 },
  };
}

const file = (rules: RuleDef[]): PolicyFileDef => ({
  file: "p.yaml",
  version: 2,
  rules,
  macros: [],
  lists: [],
});

async function monitorDir(sae: SaeWeights): Promise<string> {
  const dir = await Deno.makeTempDir();
  await writeSaeLensFolder(`${dir}/sae`, sae);
  await Deno.writeTextFile(`${dir}/p.yaml`, "version: 1\nrules: []\n");
  await Deno.writeTextFile(
    `${dir}/monitor.yaml`,
    `monitor: t\nmodel: sim-gpt\nhook: ${HOOK}\nsaes: [{id: res, path: ./sae}]\npolicies: [./p.yaml]\n` +
      `batching: {max_batch_tokens: 16, max_queue_tokens: 64}\n`,
  );
  return dir;
}

Deno.test("replay: the demo trace gives exactly the alerts the simulator's ground truth predicts", async () => {
  const sim = new SimulatedModel({ dModel: 32, seed: 7 });
  const dir = await monitorDir(buildDemoSae(sim, 16));
  const truth = await writeSimulatedTrace(`${dir}/demo.trace.gz`, sim, DEMO_PROMPTS, {
    dtype: "bf16",
  });
  const ids = ["prompt-injection", "pii.email-address", "secrets.credentials", "self-harm"];
  const config = parseMonitorConfig(
    await Deno.readTextFile(`${dir}/monitor.yaml`),
    `${dir}/monitor.yaml`,
  );
  const m = await loadOfflineMonitor(config, {
    files: [file(ids.map((id, latent) => rule(id, "res", latent, 2.0)))],
  });
  const firings: ReplayFiring[] = [];
  const stats = await replayTrace(m, `${dir}/demo.trace.gz`, { onFiring: (f) => firings.push(f) });
  await m.close();

  // per-request suppression: each concept fires once per request, in the first frame that
  // carries it: the whole prefill frame (all its concept tokens) or a single decode token
  const expected: string[] = [];
  for (const r of truth) {
    for (const [latent, positions] of [...r.concepts].sort((a, b) => a[0] - b[0])) {
      const first = positions[0];
      const inFrame = first < r.promptTokens
        ? positions.filter((p) => p < r.promptTokens)
        : [first];
      expected.push(`${r.id} ${ids[latent]} ${inFrame.join(",")}`);
    }
  }
  const got = firings.map((f) => `${f.requestId} ${f.rule.def.id} ${f.positions.join(",")}`);
  assert.deepStrictEqual(got.sort(), expected.sort());
  assert.equal(expected.length, 5, "injection, e-mail, password, API key, self-harm");
  // every firing has the text of its tokens and a value well above the threshold
  for (const f of firings) {
    assert.ok(f.value > 4, `${f.rule.def.id} value ${f.value}`);
    assert.equal(f.text?.length, f.positions.length);
  }
  const tokens = truth.reduce((s, r) => s + r.tokens.length, 0);
  assert.deepStrictEqual(
    [stats.requests, stats.tokens, stats.rejected, stats.lost, stats.complete],
    [DEMO_PROMPTS.length, tokens, 0, 0, true],
  );
});

Deno.test("replay: frames for another model, or broken, are rejected and counted like serve does", async () => {
  const sim = new SimulatedModel({ dModel: 32, seed: 7 });
  const dir = await monitorDir(buildDemoSae(sim, 16));
  const w = await TraceWriter.create(`${dir}/t.trace`, {
    monitor: "t",
    model: "sim-gpt",
    hook: HOOK,
  });
  const good = encodeFrame(
    { model: "sim-gpt", hook: HOOK, requestId: "r1", position: 0, seq: 0, dtype: "f32" },
    sim.activations(["ignore"]),
    1,
    32,
  );
  const other = encodeFrame(
    { model: "gpt2", hook: HOOK, requestId: "r2", position: 0, seq: 0, dtype: "f32" },
    sim.activations(["ignore"]),
    1,
    32,
  );
  w.write({ subject: tapSubject("sim-gpt", HOOK), ...good, data: good.payload });
  w.write({ subject: tapSubject("gpt2", HOOK), headers: other.headers, data: other.payload });
  w.write({
    subject: tapSubject("sim-gpt", HOOK),
    headers: good.headers,
    data: good.payload.subarray(0, 8),
  });
  await w.close();
  const config = parseMonitorConfig(
    await Deno.readTextFile(`${dir}/monitor.yaml`),
    `${dir}/monitor.yaml`,
  );
  const m = await loadOfflineMonitor(config, { files: [file([rule("pi", "res", 0, 2)])] });
  const rejected: string[] = [];
  const firings: ReplayFiring[] = [];
  const stats = await replayTrace(m, `${dir}/t.trace`, {
    onFiring: (f) => firings.push(f),
    onRejected: (r) => rejected.push(`${r.record.record}: ${r.error.message}`),
  });
  await m.close();
  assert.equal(stats.rejected, 2);
  assert.match(rejected[0], /^2: .*Lw-Model: expected "sim-gpt", found "gpt2"/);
  assert.match(rejected[1], /^3: .*payload: expected .* \(truncated\)/);
  assert.deepStrictEqual(firings.map((f) => [f.requestId, f.positions]), [["r1", [0]]]);
});

/** A ReLU SAE whose latent i is x[i]: pooled values are the activations themselves. */
function identitySae(d: number): SaeWeights {
  const eye = new Float32Array(d * d);
  for (let i = 0; i < d; i++) eye[i * d + i] = 1;
  return {
    format: "saelens",
    architecture: "standard",
    dIn: d,
    dSae: d,
    hookName: HOOK,
    modelName: "sim-gpt",
    dtype: "float32",
    applyBDecToInput: false,
    wEnc: eye,
    bEnc: new Float32Array(d),
    wDec: eye.slice(),
    bDec: new Float32Array(d),
    source: "test",
  };
}

Deno.test("calibrate: hand-checkable quantiles on a benign trace of known values", async () => {
  const dir = await monitorDir(identitySae(2));
  // 10 requests × 100 tokens; latent 0 on token i of request r is r·100 + i + 1 (1..1000),
  // latent 1 is 1 on every token
  const path = `${dir}/benign.trace.gz`;
  const w = await TraceWriter.create(path, { monitor: "t", model: "sim-gpt", hook: HOOK });
  for (let r = 0; r < 10; r++) {
    const x = new Float32Array(200);
    for (let i = 0; i < 100; i++) [x[2 * i], x[2 * i + 1]] = [r * 100 + i + 1, 1];
    const id = `benign-${r}`;
    const meta = { model: "sim-gpt", hook: HOOK, requestId: id, dtype: "f32" as const };
    // a prefill of 60 tokens, then 40 decode steps, then the end marker
    const frames: [number, number, "prefill" | "decode" | undefined][] = [[0, 60, "prefill"]];
    for (let p = 60; p < 100; p++) frames.push([p, 1, "decode"]);
    frames.push([100, 0, undefined]);
    frames.forEach(([pos, n, phase], seq) => {
      const { headers, payload } = encodeFrame(
        { ...meta, position: pos, seq, ...(phase ? { phase } : {}), endOfRequest: n === 0 },
        x.slice(pos * 2, (pos + n) * 2),
        n,
        2,
      );
      w.write({ subject: tapSubject("sim-gpt", HOOK), headers, data: payload });
    });
  }
  await w.close();

  const config = parseMonitorConfig(
    await Deno.readTextFile(`${dir}/monitor.yaml`),
    `${dir}/monitor.yaml`,
  );
  const composite = rule("both-latents", "res", 0, 500, {
    condition: {
      kind: "all",
      of: [test("res", 0, 500), test("res", 1, 0.5)],
      source: { file: "p.yaml", line: 9 },
    },
  });
  const m = await loadOfflineMonitor(config, {
    files: [
      file([
        rule("plain", "res", 0, 500),
        composite,
        rule("gen-only", "res", 0, 500, { scope: "generation" }),
      ]),
    ],
  });
  const report = await calibrate(m, [path], 0.05, ["token", "request"]);
  // at 50% per token, 500 false positives of 1000 tokens are allowed but generation-only is
  // evaluated on 400 tokens: every threshold meets the target; the current 500 is kept (its
  // 200 tokens/1000 as above) and firing wherever evaluated is 400 tokens/1000, every request
  const half = await calibrate(m, [path], 0.5, ["token"]);
  // positives: two traces of one request each, latent 0 at 600 on 4 tokens and at 960 on 4 tokens
  await handTrace(`${dir}/pos-a.trace`, [[0, 0, 4, 600]]);
  await handTrace(`${dir}/pos-b.trace`, [[0, 0, 4, 960]]);
  const withPos = await calibrate(m, [path], 0.05, ["token", "request"], undefined, {
    positives: [`${dir}/pos-a.trace`, `${dir}/pos-b.trace`],
  });
  // --condition: the composite's second test (latent 1, 1 on every token, above 0.5), by index and by name
  const byIndex = await calibrate(m, [path], 0.05, ["token"], undefined, { condition: "2" });
  const byName = await calibrate(m, [path], 0.05, ["token"], undefined, {
    condition: "all[1]",
    rules: ["both-latents"],
  });
  // and by the condition's (default) name, as alerts list it
  const byConditionName = await calibrate(m, [path], 0.05, ["token"], undefined, {
    condition: "res.1",
    rules: ["both-latents"],
  });
  await m.close();
  assert.deepStrictEqual(byIndex.rules[1].conditions, [
    "#1 res.0 at all[0]: res latent 0, per token, above 500 (p.yaml:2)",
    "#2 res.1 at all[1]: res latent 1, per token, above 0.5 (p.yaml:2)",
  ]);
  // every token holds at 0.5; the 51st largest of 1000 ones is 1, and none lies above it
  assert.deepStrictEqual(byIndex.rules[1].current, {
    threshold: 0.5,
    perThousandTokens: 1000,
    perThousandRequests: 1000,
  });
  assert.deepStrictEqual(byIndex.rules[1].suggested?.token, {
    threshold: 1,
    perThousandTokens: 0,
    perThousandRequests: 0,
  });
  assert.match(byIndex.rules[1].note ?? "", /^condition #2 res\.1 at all\[1\] \(res latent 1/);
  // the single-test rules have no condition #2
  assert.equal(byIndex.rules[0].skipped, 'no condition "2" (it has #1 res.0 at test)');
  assert.equal(byName.rules.length, 1);
  assert.deepStrictEqual(byName.rules[0].suggested, byIndex.rules[1].suggested);
  assert.deepStrictEqual(byConditionName.rules[0].suggested, byIndex.rules[1].suggested);
  assert.equal(byConditionName.rules[0].current?.threshold, 0.5);
  assert.equal(withPos.positives?.requests, 2);
  const p0 = withPos.rules[0];
  // current 500: both caught; token-suggested 950: only the 960 one; request-suggested 1000: none
  assert.equal(p0.current?.detectionRate, 1);
  assert.equal(p0.suggested?.token?.detectionRate, 0.5);
  assert.equal(p0.suggested?.request?.detectionRate, 0);
  assert.equal(report.rules[0].current?.detectionRate, undefined);
  assert.deepStrictEqual(half.rules[2].suggested?.token, {
    threshold: 500,
    perThousandTokens: 200,
    perThousandRequests: 500,
    anyThresholdMeets: { perThousandTokens: 400, perThousandRequests: 1000 },
  });
  assert.equal(report.tokens, 1000);
  assert.equal(report.requests, 10);
  const [plain, comp, gen] = report.rules;

  // current threshold 500: tokens 501..1000 hold (500 per 1000); request maxima are
  // 100, 200, ..., 1000, so 5 requests of 10 hold (500 per 1000)
  assert.deepStrictEqual(plain.current, {
    threshold: 500,
    perThousandTokens: 500,
    perThousandRequests: 500,
  });
  // per token, 5%: k = 50 false positives of 1000; the 51st largest value is 950 and 951..1000 lie above
  assert.deepStrictEqual(plain.suggested?.token, {
    threshold: 950,
    perThousandTokens: 50,
    perThousandRequests: 100,
  });
  // per request, 5% of 10 requests: k = 0; the largest request max, 1000, lets none through
  assert.deepStrictEqual(plain.suggested?.request, {
    threshold: 1000,
    perThousandTokens: 0,
    perThousandRequests: 0,
  });
  assert.equal(plain.composite, false);

  assert.equal(comp.composite, true);
  assert.match(
    comp.note ?? "",
    /composite rule: calibrated its trigger test \(res latent 0, per token, above 500/,
  );
  assert.deepStrictEqual(comp.suggested?.token, plain.suggested?.token);

  // generation scope sees decode tokens only: positions 60..99 of each request, values r·100 + 61..100
  // (400 tokens); 5% of all 1000 tokens is 50: the 51st largest of those is 890 (961..1000,
  // then 900..861), and requests r = 0..4 never pass 500
  assert.deepStrictEqual(gen.current, {
    threshold: 500,
    perThousandTokens: 200,
    perThousandRequests: 500,
  });
  assert.equal(gen.suggested?.token?.threshold, 890);
});

Deno.test("calibrate: suggestThreshold edge cases", () => {
  const v = Array.from({ length: 1000 }, (_, i) => i + 1);
  assert.equal(suggestThreshold(v, 1000, 0.01, "above"), 990);
  assert.equal(suggestThreshold(v, 1000, 0.01, "below"), 11);
  // ties: 0.29 · 100 is 28.999… in floating point; still k = 29
  assert.equal(suggestThreshold(Array.from({ length: 100 }, (_, i) => i), 100, 0.29, "above"), 70);
  // fewer candidate tokens than the allowed false positives: any threshold is fine
  assert.equal(suggestThreshold([5, 6], 1000, 0.01, "above"), null);
});

/** A trace of `frames` ([seq, position, tokens, latent-0 value]) of request `r`, written to `path`. */
async function handTrace(path: string, frames: [number, number, number, number][]): Promise<void> {
  const w = await TraceWriter.create(path, { monitor: "t", model: "sim-gpt", hook: HOOK });
  for (const [seq, position, n, v] of frames) {
    const x = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) x[2 * i] = v;
    const { headers, payload } = encodeFrame(
      { model: "sim-gpt", hook: HOOK, requestId: "r", position, seq, dtype: "f32" },
      x,
      n,
      2,
    );
    w.write({ subject: tapSubject("sim-gpt", HOOK), headers, data: payload });
  }
  await w.close();
}

async function identityMonitor(dir: string, opts: { evidence?: boolean } = {}) {
  const config = parseMonitorConfig(
    await Deno.readTextFile(`${dir}/monitor.yaml`),
    `${dir}/monitor.yaml`,
  );
  return await loadOfflineMonitor(config, { files: [file([rule("hi", "res", 0, 2)])], ...opts });
}

Deno.test("replay: a re-sent frame (repeated Lw-Seq) is dropped and counted, as serve drops it", async () => {
  const dir = await monitorDir(identitySae(2));
  // seq 0, seq 0 again (re-sent: it would fire), then seq 1
  await handTrace(`${dir}/t.trace`, [[0, 0, 1, 0], [0, 0, 1, 5], [1, 1, 1, 0]]);
  const m = await identityMonitor(dir);
  const firings: ReplayFiring[] = [];
  const stats = await replayTrace(m, `${dir}/t.trace`, { onFiring: (f) => firings.push(f) });
  await m.close();
  assert.equal(stats.repeated, 1);
  assert.equal(stats.frames, 2);
  assert.equal(stats.lost, 0);
  assert.equal(firings.length, 0);
});

Deno.test("replay: a frame of more tokens than max_queue_tokens is dropped as frame_too_large, its seq still followed", async () => {
  const dir = await monitorDir(identitySae(2)); // max_queue_tokens: 64
  await handTrace(`${dir}/t.trace`, [[0, 0, 65, 5], [1, 65, 1, 5]]);
  const m = await identityMonitor(dir);
  const dropped: string[] = [];
  const firings: ReplayFiring[] = [];
  const stats = await replayTrace(m, `${dir}/t.trace`, {
    onFiring: (f) => firings.push(f),
    onDropped: (d) => dropped.push(`${d.record.record}: ${d.reason} (${d.frame.tokens})`),
  });
  await m.close();
  assert.equal(stats.tooLarge, 1);
  assert.deepStrictEqual(dropped, ["1: frame_too_large (65)"]);
  assert.equal(stats.frames, 1);
  assert.equal(stats.tokens, 1);
  assert.equal(stats.lost, 0); // seq 0 was seen (then dropped): seq 1 is no gap
  assert.deepStrictEqual(firings.map((f) => f.positions), [[65]]);
});

Deno.test("loadOfflineMonitor: evidence: false builds no evidence encoders and attaches none", async () => {
  const dir = await monitorDir(identitySae(2));
  await handTrace(`${dir}/t.trace`, [[0, 0, 1, 5]]);
  for (const evidence of [true, false]) {
    const m = await identityMonitor(dir, { evidence });
    const alerts: Alert[] = [];
    await replayTrace(m, `${dir}/t.trace`, { onAlert: (a) => alerts.push(a) });
    await m.close();
    assert.equal((m.generation.evidenceEncoders?.size ?? 0) > 0, evidence);
    assert.equal(m.config.evidence.topLatents > 0, evidence);
    assert.equal(alerts.length, 1);
    assert.equal((alerts[0].evidence[0].topLatents?.length ?? 0) > 0, evidence);
  }
});
