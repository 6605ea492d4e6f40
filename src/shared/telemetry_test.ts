/**
 * The Prometheus exposition of {@linkcode Telemetry} (written by prom-client)
 * read back by an independent parser, and the label checks.
 */
import assert from "node:assert/strict";
import { MetricLabelError, Telemetry } from "./telemetry.ts";

/** `name{labels} value` lines of a Prometheus text exposition, in order (comments skipped). */
function samples(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[k] = v;
    }
    out.push({ name: m[1], labels, value: m[3] === "+Inf" ? Infinity : Number(m[3]) });
  }
  return out;
}

Deno.test("telemetry: counters, gauges and histograms in the Prometheus text", async () => {
  const t = new Telemetry();
  t.add("latentwatch.frames.dropped", 2, { reason: "queue_full" });
  t.add("latentwatch.frames.dropped", 1, { reason: "queue_full" });
  t.set("latentwatch.queue.depth", 9);
  for (const s of [0.0005, 0.003, 0.003, 0.2, 12]) t.observe("latentwatch.frame.latency", s);
  const text = await t.prometheus();
  assert.match(text, /^# TYPE latentwatch_frames_dropped_total counter$/m);
  assert.match(text, /^# TYPE latentwatch_frame_latency_seconds histogram$/m);
  const all = samples(text);
  const one = (name: string, labels: Record<string, string> = {}) =>
    all.filter((s) => s.name === name && JSON.stringify(s.labels) === JSON.stringify(labels));
  assert.deepEqual(one("latentwatch_frames_dropped_total", { reason: "queue_full" })[0].value, 3);
  assert.equal(one("latentwatch_queue_depth")[0].value, 9);
  assert.equal(one("latentwatch_frames_lost_total")[0].value, 0, "untouched counters show 0");
  const buckets = all.filter((s) => s.name === "latentwatch_frame_latency_seconds_bucket");
  const at = (le: string) => buckets.find((b) => b.labels.le === le)!.value;
  assert.equal(at("0.001"), 1);
  assert.equal(at("0.005"), 3);
  assert.equal(at("0.25"), 4);
  assert.equal(at("10"), 4);
  assert.equal(at("+Inf"), 5);
  for (let i = 1; i < buckets.length; i++) {
    assert.ok(buckets[i].value >= buckets[i - 1].value, "buckets are cumulative");
  }
  assert.equal(one("latentwatch_frame_latency_seconds_count")[0].value, 5);
  assert.ok(Math.abs(one("latentwatch_frame_latency_seconds_sum")[0].value - 12.2065) < 1e-9);
});

Deno.test("telemetry: latentwatch_build_info is 1 with the versions", async () => {
  const denoJson = JSON.parse(await Deno.readTextFile(new URL("../../deno.json", import.meta.url)));
  const info = samples(await new Telemetry().prometheus())
    .filter((s) => s.name === "latentwatch_build_info");
  assert.equal(info.length, 1);
  assert.equal(info[0].value, 1);
  assert.equal(info[0].labels.version, denoJson.version);
  assert.equal(info[0].labels.deno, Deno.version.deno);
  assert.equal(
    `npm:onnxruntime-node@${info[0].labels.onnxruntime}`,
    denoJson.imports["onnxruntime-node"],
  );
});

Deno.test("telemetry: label values are escaped by the exposition", async () => {
  const t = new Telemetry();
  t.add("latentwatch.steer.planned", 1, { rule: 'a "quoted"\nrule\\x' });
  const line = (await t.prometheus()).split("\n").find((l) =>
    l.startsWith("latentwatch_steer_planned_total{")
  );
  assert.equal(line, 'latentwatch_steer_planned_total{rule="a \\"quoted\\"\\nrule\\\\x"} 1');
});

Deno.test("telemetry: an undeclared label is refused by name", () => {
  const t = new Telemetry();
  assert.throws(
    () => t.add("latentwatch.frames.dropped", 1, { because: "x" }),
    (err: Error) =>
      err instanceof MetricLabelError &&
      err.message ===
        "latentwatch.frames.dropped: expected labels among [reason], found 'because' " +
          "(declare it in src/shared/metric_spec.ts)",
  );
  assert.throws(() => t.observe("latentwatch.gate.latency", 1, { sink: "x" }), MetricLabelError);
});

Deno.test("telemetry: with OTEL_DENO=true, Deno exports the histograms with their buckets", async () => {
  // Deno's own console exporter prints what it would send over OTLP
  const script = `import { Telemetry } from ${
    JSON.stringify(new URL("./telemetry.ts", import.meta.url).href)
  };
const t = new Telemetry();
t.observe("latentwatch.frame.latency", 0.004);
t.observe("latentwatch.frame.latency", 0.02);
t.observe("latentwatch.alert.ack_latency", 0.3, { sink: "jetstream" });
t.add("latentwatch.frames.dropped", 2, { reason: "queue_full" });`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    env: {
      NO_COLOR: "1",
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_PROTOCOL: "console",
      OTEL_DENO_CONSOLE: "ignore",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  // each metric's block, from its METRIC line to the next
  const block = (name: string) => {
    const at = text.indexOf(`METRIC ${name} `);
    assert.ok(at >= 0, `${name} exported:\n${text}`);
    const next = text.indexOf("METRIC ", at + 1);
    return text.slice(at, next < 0 ? undefined : next);
  };
  const frame = block("latentwatch.frame.latency");
  assert.match(frame, /^METRIC latentwatch\.frame\.latency \(Histogram, unit=s\)/);
  assert.match(frame, /\{\} count=2 sum=0\.024 /);
  assert.match(
    frame,
    /bounds:\s+\[0\.001, 0\.0025, 0\.005, 0\.01, 0\.025, 0\.05, 0\.1, 0\.25, 0\.5, 1\.0, 2\.5, 5\.0, 10\.0\]/,
  );
  // 4 ms falls in (2.5, 5] ms, 20 ms in (10, 25] ms; the last count is the overflow
  assert.match(frame, /counts:\s+\[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0\]/);
  assert.match(block("latentwatch.alert.ack_latency"), /\{sink=jetstream\} count=1 sum=0\.3 /);
  assert.match(block("latentwatch.frames.dropped"), /\{reason=queue_full\} value=2\n/);
});

Deno.test("telemetry: one-label series stay apart past the key cache's bound, and across instances", async () => {
  const a = new Telemetry(), b = new Telemetry();
  const rules = 5000; // more than the cache of one-label keys holds: it is emptied and refilled
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < rules; i++) {
      a.add("latentwatch.steer.planned", i + 1, { rule: `rule-${i}` });
      if (i % 2 === 0) b.add("latentwatch.steer.planned", 1, { rule: `rule-${i}` });
    }
  }
  const read = async (t: Telemetry) =>
    new Map(
      samples(await t.prometheus())
        .filter((s) => s.name === "latentwatch_steer_planned_total")
        .map((s) => [s.labels.rule, s.value]),
    );
  const [seenA, seenB] = [await read(a), await read(b)];
  assert.equal(seenA.size, rules);
  assert.equal(seenB.size, rules / 2);
  for (let i = 0; i < rules; i++) {
    assert.equal(seenA.get(`rule-${i}`), 2 * (i + 1), `rule-${i}`);
    assert.equal(seenB.get(`rule-${i}`), i % 2 === 0 ? 2 : undefined, `rule-${i}`);
  }
  assert.equal(a.value("latentwatch.steer.planned", { rule: "rule-4999" }), 10000);
});
