import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ConfigError, formatIssue } from "./errors.ts";
import { loadMonitorConfig, type MonitorConfig, parseMonitorConfig } from "./monitor.ts";

/** The issues of the ConfigError that parsing `text` throws, as `file:line:col: reason`. */
function problems(text: string, file = "/srv/lw/m.yaml"): string[] {
  try {
    parseMonitorConfig(text, file);
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map(formatIssue);
    throw err;
  }
  assert.fail("expected a ConfigError, none was thrown");
}

// Each fixture line carries its number; columns are 1-based.
const MINIMAL = [
  "monitor: demo", //                            1
  "model: sim-gpt", //                           2
  "hook: blocks.6.hook_resid_post", //           3
  "saes:", //                                    4
  "  - id: demo-res", //                         5
  "    path: ../sae", //                         6
  "policies:", //                                7
  "  - policies/demo.yaml", //                   8
  "",
].join("\n");

Deno.test("parseMonitorConfig: defaults and paths resolved against the file's folder", () => {
  const expected: MonitorConfig = {
    file: "/srv/lw/m.yaml",
    monitor: "demo",
    model: "sim-gpt",
    hook: "blocks.6.hook_resid_post",
    saes: [{ id: "demo-res", path: "/srv/sae" }],
    probes: [],
    policies: ["/srv/lw/policies/demo.yaml"],
    nats: { url: "nats://127.0.0.1:4222" },
    alerts: {
      stream: "LATENTWATCH_ALERTS",
      subject: "latentwatch.alerts.demo",
      maxQueue: 10000,
      replicas: 1,
      spool: { fsync: "never" },
    },
    batching: { maxBatchTokens: 128, maxWaitMs: 2, maxQueueTokens: 16384, adaptive: true },
    execution: { provider: "auto", spin: false, fullEncode: "auto", nativeKernels: "auto" },
    evidence: { topLatents: 5, ringTokens: 4096 },
    steering: { enabled: true, ttlMs: 5000 },
    redaction: { default: "none" },
    sinks: [],
  };
  assert.deepEqual(parseMonitorConfig(MINIMAL, "/srv/lw/m.yaml"), expected);
});

Deno.test("parseMonitorConfig: every key set explicitly", () => {
  const text = MINIMAL + [
    "  - /etc/lw/extra.yaml",
    "nats:",
    "  url: nats://nats.internal:4333",
    "  subject: latentwatch.tap.sim-gpt.>",
    "alerts:",
    "  stream: ALERTS_A",
    "  subject: soc.alerts.a",
    "  max_queue: 50",
    "batching:",
    "  max_batch_tokens: 64",
    "  max_wait_ms: 0",
    "  max_queue_tokens: 64",
    "  adaptive: false",
    "execution:",
    "  provider: cpu",
    "  threads: 2",
    "  spin: true",
    "  full_encode: f32",
    "  native_kernels: off",
    "evidence:",
    "  top_latents: 0",
    "  ring_tokens: 16",
    "control:",
    "  listen: 0.0.0.0:9000",
    "  token_env: LW_UI_TOKEN",
    "steering:",
    "  enabled: false",
    "  ttl_ms: 250",
    "",
  ].join("\n");
  const cfg = parseMonitorConfig(text, "/srv/lw/m.yaml");
  assert.deepEqual(cfg.policies, ["/srv/lw/policies/demo.yaml", "/etc/lw/extra.yaml"]);
  assert.deepEqual(cfg.nats, {
    url: "nats://nats.internal:4333",
    subject: "latentwatch.tap.sim-gpt.>",
  });
  assert.deepEqual(cfg.alerts, {
    stream: "ALERTS_A",
    subject: "soc.alerts.a",
    maxQueue: 50,
    replicas: 1,
    spool: { fsync: "never" },
  });
  assert.deepEqual(cfg.batching, {
    maxBatchTokens: 64,
    maxWaitMs: 0,
    maxQueueTokens: 64,
    adaptive: false,
  });
  assert.deepEqual(cfg.execution, {
    provider: "cpu",
    threads: 2,
    spin: true,
    fullEncode: "f32",
    nativeKernels: "off",
  });
  assert.deepEqual(cfg.evidence, { topLatents: 0, ringTokens: 16 });
  assert.deepEqual(cfg.control, { listen: "0.0.0.0:9000", tokenEnv: "LW_UI_TOKEN" });
  assert.deepEqual(cfg.steering, { enabled: false, ttlMs: 250 });
});

Deno.test("parseMonitorConfig: partial sections keep the other defaults", () => {
  const text = MINIMAL + "alerts:\n  max_queue: 7\nbatching:\n  max_wait_ms: 10\n" +
    "execution:\n  threads: 4\nevidence:\n  ring_tokens: 100000\n";
  const cfg = parseMonitorConfig(text, "/srv/lw/m.yaml");
  assert.deepEqual(cfg.alerts, {
    stream: "LATENTWATCH_ALERTS",
    subject: "latentwatch.alerts.demo",
    maxQueue: 7,
    replicas: 1,
    spool: { fsync: "never" },
  });
  assert.deepEqual(cfg.batching, {
    maxBatchTokens: 128,
    maxWaitMs: 10,
    maxQueueTokens: 16384,
    adaptive: true,
  });
  assert.deepEqual(cfg.execution, {
    provider: "auto",
    threads: 4,
    spin: false,
    fullEncode: "auto",
    nativeKernels: "auto",
  });
  assert.deepEqual(cfg.evidence, { topLatents: 5, ringTokens: 100000 });
});

Deno.test("parseMonitorConfig: a relative monitor path resolves against the working directory", () => {
  const cfg = parseMonitorConfig(MINIMAL, "conf/m.yaml");
  assert.equal(cfg.file, "conf/m.yaml");
  assert.equal(cfg.saes[0].path, `${Deno.cwd()}/sae`);
  assert.equal(cfg.policies[0], `${Deno.cwd()}/conf/policies/demo.yaml`);
});

Deno.test("parseMonitorConfig: YAML syntax errors carry line and column", () => {
  // New line 7 is indented by 3, between the list (2) and the item's keys (4).
  const text = MINIMAL.replace("    path: ../sae\n", "    path: ../sae\n   bad: indent\n");
  assert.deepEqual(problems(text), [
    "/srv/lw/m.yaml:7:4: invalid YAML: Sequence item without - indicator",
  ]);
});

Deno.test("parseMonitorConfig: unknown keys at the key, snake_case hint for camelCase", () => {
  const text = MINIMAL + [
    "batching:", //                 9
    "  maxBatchTokens: 64", //      10 key col 3
    "colour: blue", //              11 key col 1
    "",
  ].join("\n");
  assert.deepEqual(problems(text), [
    "/srv/lw/m.yaml:10:3: unknown key 'maxBatchTokens' (did you mean 'max_batch_tokens'?); expected one of: max_batch_tokens, " +
    "max_wait_ms, max_queue_tokens, adaptive",
    "/srv/lw/m.yaml:11:1: unknown key 'colour'; expected one of: monitor, model, hook, saes, probes, " +
    "policies, nats, alerts, batching, execution, evidence, steering, state_dir, record, redaction, sinks, scale_out, control",
  ]);
});

Deno.test("parseMonitorConfig: wrong types and ranges say expected and found", () => {
  const text = MINIMAL + [
    "nats:", //                              9
    "  url: http://127.0.0.1:4222", //       10 value col 8
    "batching:", //                          11
    "  max_batch_tokens: 8192", //           12 value col 21
    "  max_wait_ms: fast", //                13 value col 16
    "control:", //                           14
    "  listen: 8787", //                     15 value col 11
    "",
  ].join("\n");
  assert.deepEqual(problems(text), [
    '/srv/lw/m.yaml:10:8: expected a NATS URL like nats://host:port (or a list of them), found the string "http://127.0.0.1:4222"',
    "/srv/lw/m.yaml:12:21: expected an integer in 1..4096 (tokens per batch), found 8192",
    '/srv/lw/m.yaml:13:16: expected an integer in 0..1000 (milliseconds to wait for a fuller batch), found the string "fast"',
    "/srv/lw/m.yaml:15:11: expected a string, found 8787",
  ]);
});

Deno.test("parseMonitorConfig: execution, evidence and batching.adaptive errors at file:line:col", () => {
  const text = MINIMAL + [
    "batching:", //                 9
    "  adaptive: sometimes", //     10 value col 13
    "execution:", //                11
    "  provider: gpu", //           12 value col 13
    "  threads: 0", //              13 value col 12
    "  device: 1", //               14 key col 3
    "evidence:", //                 15
    "  top_latents: 65", //         16 value col 16
    "  ring_tokens: 8", //          17 value col 16
    "",
  ].join("\n");
  assert.deepEqual(problems(text), [
    '/srv/lw/m.yaml:10:13: expected true or false, found the string "sometimes"',
    '/srv/lw/m.yaml:12:13: expected one of auto, webgpu, cuda, cpu, found the string "gpu"',
    "/srv/lw/m.yaml:13:12: expected an integer in 1..1024 (onnxruntime intra-op threads per encoder), found 0",
    "/srv/lw/m.yaml:14:3: unknown key 'device'; expected one of: provider, threads, spin, full_encode, native_kernels",
    "/srv/lw/m.yaml:16:16: expected an integer in 0..64 (top latents attached per flagged token; 0: off), found 65",
    "/srv/lw/m.yaml:17:16: expected an integer in 16..1000000 (tokens of recent activations kept for evidence), found 8",
  ]);
  assert.deepEqual(problems(MINIMAL + "execution:\n  native_kernels: maybe\n"), [
    '/srv/lw/m.yaml:10:19: expected one of auto, require, off, found the string "maybe"',
  ]);
  for (const provider of ["auto", "webgpu", "cuda", "cpu"]) {
    const cfg = parseMonitorConfig(MINIMAL + `execution: { provider: ${provider} }\n`, "m.yaml");
    assert.deepEqual(cfg.execution, {
      provider,
      spin: false,
      fullEncode: "auto",
      nativeKernels: "auto",
    });
  }
});

Deno.test("parseMonitorConfig: max_queue_tokens must hold a full batch", () => {
  const text = MINIMAL + "batching:\n  max_batch_tokens: 256\n  max_queue_tokens: 100\n";
  assert.deepEqual(problems(text), [
    "/srv/lw/m.yaml:11:21: expected max_queue_tokens ≥ max_batch_tokens (256), found 100; " +
    "the queue must hold at least one full batch",
  ]);
});

Deno.test("parseMonitorConfig: duplicate SAE ids point at the second one", () => {
  const text = MINIMAL.replace(
    "policies:\n",
    "  - id: demo-res\n    path: ../other\npolicies:\n", // new lines 7-8
  );
  assert.deepEqual(problems(text), [
    "/srv/lw/m.yaml:7:9: duplicate SAE id 'demo-res': expected ids to be unique, found it " +
    "already defined at line 5",
  ]);
});

Deno.test("parseMonitorConfig: missing and empty required keys", () => {
  const text = [
    "monitor: my demo", //       1 value col 10
    "hook: h", //                2
    "saes: []", //               3 value col 7
    "policies:", //              4 empty: points at the key
    "",
  ].join("\n");
  assert.deepEqual(problems(text), [
    "/srv/lw/m.yaml:1:1: missing required key 'model' (expected a string)",
    "/srv/lw/m.yaml:1:10: expected a monitor name of letters, digits, '_' or '-' " +
    '([A-Za-z0-9_-]+), found the string "my demo"',
    "/srv/lw/m.yaml:3:7: expected a list of at least one SAE ({id, path}), found a list of 0 item(s)",
    "/srv/lw/m.yaml:4:1: expected a list, found an empty value",
  ]);
});

Deno.test("loadMonitorConfig: the shipped demo monitor loads", async () => {
  const path = fileURLToPath(new URL("../../monitors/demo.yaml", import.meta.url));
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const cfg = await loadMonitorConfig(path);
  assert.equal(cfg.monitor, "demo");
  assert.equal(cfg.model, "sim-gpt");
  assert.equal(cfg.hook, "blocks.6.hook_resid_post");
  assert.deepEqual(cfg.saes, [{ id: "demo-res", path: `${root}.latentwatch/demo/sae` }]);
  assert.deepEqual(cfg.policies, [`${root}policies/demo.yaml`]);
  assert.equal(cfg.alerts.subject, "latentwatch.alerts.demo");
});

Deno.test("loadMonitorConfig: a missing file is a ConfigError at 1:1", async () => {
  await assert.rejects(loadMonitorConfig("/nonexistent/m.yaml"), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.message, "/nonexistent/m.yaml:1:1: cannot read file: no such file");
    return true;
  });
});

Deno.test("parseMonitorConfig: SAE format, labels, scaling factor and probes", () => {
  const text = [
    "monitor: m", //                                          line 1
    "model: gemma-2-2b", //                                   line 2
    "hook: blocks.20.hook_resid_post", //                     line 3
    "saes:", //                                               line 4
    "  - id: res20", //                                       line 5
    "    path: gs/layer_20/width_16k/average_l0_71", //        line 6
    "    format: gemma-scope", //                             line 7
    "    labels: np/explanations", //                         line 8
    "    scaling_factor: 0.25", //                            line 9
    "probes:", //                                             line 10
    "  - id: lie", //                                         line 11
    "    path: probes/lie.json", //                           line 12
    "policies: [p.yaml]", //                                  line 13
  ].join("\n");
  const cfg = parseMonitorConfig(text, "/srv/lw/m.yaml");
  assert.deepEqual(cfg.saes, [{
    id: "res20",
    path: "/srv/lw/gs/layer_20/width_16k/average_l0_71",
    format: "gemma-scope",
    labels: "/srv/lw/np/explanations",
    scalingFactor: 0.25,
  }]);
  assert.deepEqual(cfg.probes, [{ id: "lie", path: "/srv/lw/probes/lie.json" }]);

  const bad = text.replace("format: gemma-scope", "format: gemmascope").replace(
    "id: lie",
    "id: res20",
  );
  assert.throws(() => parseMonitorConfig(bad, "m.yaml"), (err: Error) => {
    assert.match(err.message, /^m\.yaml:7:13: expected one of saelens, gemma-scope, /m);
    assert.match(err.message, /^m\.yaml:11:9: duplicate SAE id 'res20': .* defined at line 5$/m);
    return true;
  });
});

Deno.test("parseMonitorConfig: record frames to a trace, with sampling", () => {
  const text = MINIMAL + "record:\n  path: traces/serve.trace.gz\n  requests: 0.1\n";
  // relative: under the state directory, placed at start-up
  assert.deepEqual(parseMonitorConfig(text, "/srv/lw/m.yaml").record, {
    path: "traces/serve.trace.gz",
    requests: 0.1,
    redact: "none",
  });
  assert.equal(
    parseMonitorConfig(MINIMAL + "record:\n  path: /data/../t.trace\n", "/srv/lw/m.yaml").record
      ?.path,
    "/t.trace",
  );
  assert.throws(
    () => parseMonitorConfig(MINIMAL + "record:\n  path: t.trace\n  requests: 1.5\n", "m.yaml"),
    /m\.yaml:11:13: expected a fraction of requests in \(0, 1\]/,
  );
});

Deno.test("parseMonitorConfig: state_dir is made absolute against the monitor file", () => {
  assert.equal(
    parseMonitorConfig(MINIMAL + "state_dir: state\n", "/srv/lw/m.yaml").stateDir,
    "/srv/lw/state",
  );
  assert.equal(parseMonitorConfig(MINIMAL, "/srv/lw/m.yaml").stateDir, undefined);
  assert.throws(
    () => parseMonitorConfig(MINIMAL + "state_dir: ''\n", "m.yaml"),
    /m\.yaml:\d+:\d+: expected/,
  );
});

Deno.test("parseMonitorConfig: sinks of every type, defaults filled, paths absolute", () => {
  const text = MINIMAL + [
    "sinks:", //                                                                     9
    "  - { type: syslog, address: 127.0.0.1:6514, tls: { ca: ca.pem }, format: cef }", // 10
    "  - type: webhook", //                                                          11
    "    url: https://splunk.internal:8088/services/collector/event", //             12
    "    shape: splunk-hec", //                                                      13
    "    token_env: SPLUNK_TOKEN", //                                                14
    "    index: ai", //                                                              15
    "    max_queue: 500", //                                                         16
    "    timeout_ms: 2000", //                                                       17
    "  - { type: stdout }", //                                                       18
    "  - { type: file, path: alerts.jsonl, fsync: never }", //                       19
    "  - { type: webhook, name: hook2, url: 'http://[::1]:9/x', headers: { X-Api-Key: k } }",
    "",
  ].join("\n");
  const cfg = parseMonitorConfig(text, "/srv/lw/m.yaml");
  assert.deepEqual(cfg.sinks, [
    {
      type: "syslog",
      name: "syslog:127.0.0.1:6514",
      at: "/srv/lw/m.yaml:10:5",
      maxQueue: 10000,
      timeoutMs: 5000,
      host: "127.0.0.1",
      port: 6514,
      tls: { ca: "/srv/lw/ca.pem" },
      format: "cef",
      appName: "latentwatch",
      facility: 16,
      maxMessageBytes: 65536,
      maxBackoffMs: 5000,
    },
    {
      type: "webhook",
      name: "webhook:splunk.internal:8088",
      at: "/srv/lw/m.yaml:11:5",
      maxQueue: 500,
      timeoutMs: 2000,
      url: "https://splunk.internal:8088/services/collector/event",
      shape: "splunk-hec",
      format: "json",
      headers: {},
      tokenEnv: "SPLUNK_TOKEN",
      splunk: { index: "ai" },
      maxAttempts: 5,
      maxBackoffMs: 10000,
    },
    {
      type: "stdout",
      name: "stdout",
      at: "/srv/lw/m.yaml:18:5",
      maxQueue: 10000,
      timeoutMs: 5000,
      format: "json",
    },
    {
      type: "file",
      name: "file:alerts.jsonl",
      at: "/srv/lw/m.yaml:19:5",
      maxQueue: 10000,
      timeoutMs: 5000,
      path: "/srv/lw/alerts.jsonl",
      format: "json",
      fsync: "never",
      maxBytes: 104857600,
      keep: 3,
    },
    {
      type: "webhook",
      name: "webhook:hook2",
      at: "/srv/lw/m.yaml:20:5",
      maxQueue: 10000,
      timeoutMs: 5000,
      url: "http://[::1]:9/x",
      shape: "json",
      format: "json",
      headers: { "X-Api-Key": "k" },
      maxAttempts: 5,
      maxBackoffMs: 10000,
    },
  ]);
});

Deno.test("parseMonitorConfig: sink errors at file:line:col, expected vs found", () => {
  const text = MINIMAL + [
    "sinks:", //                                                       9
    "  - { type: syslog, address: collector }", //                     10
    "  - { type: webhook, url: ftp://x/, shape: splunk-hec }", //       11
    "  - { type: stdout, max_queue: 0 }", //                           12
    "  - { type: kafka }", //                                          13
    "  - { type: file, path: a.jsonl, fsync: sometimes }", //          14
    "  - { type: syslog, address: 'h:1', format: xml, tls: { cert: c.pem } }", // 15
    "  - { type: stdout }", //                                         16
    "  - { type: webhook, url: 'http://h/', index: main, timeout_ms: -1 }", // 17
    "",
  ].join("\n");
  assert.deepEqual(problems(text), [
    '/srv/lw/m.yaml:10:30: expected host:port of the collector, like 127.0.0.1:6514, found the string "collector"',
    '/srv/lw/m.yaml:11:27: expected an http:// or https:// URL, found the string "ftp://x/"',
    "/srv/lw/m.yaml:11:44: expected token_env (the variable holding the HEC token) with shape splunk-hec, found none",
    "/srv/lw/m.yaml:12:32: expected an integer in 1..10000000 (alerts queued for this sink before new ones are dropped), found 0",
    '/srv/lw/m.yaml:13:13: expected a sink type: one of syslog, webhook, stdout, file, jetstream, found the string "kafka"',
    '/srv/lw/m.yaml:14:41: expected always or never, found the string "sometimes"',
    '/srv/lw/m.yaml:15:45: expected one of json, cef, ocsf, ecs, found the string "xml"',
    "/srv/lw/m.yaml:15:55: expected cert and key together (mutual TLS), found key missing",
    "/srv/lw/m.yaml:16:5: duplicate sink 'stdout': expected sink names to be unique, found it already defined at line 12; give one a distinct 'name'",
    "/srv/lw/m.yaml:17:47: expected index only with shape splunk-hec, found shape json",
    "/srv/lw/m.yaml:17:65: expected an integer in 1..600000 (milliseconds one delivery attempt may take), found -1",
  ]);
});

Deno.test("parseMonitorConfig: control.max_streams_per_client is read and checked", () => {
  const cfg = parseMonitorConfig(
    MINIMAL + "control:\n  listen: 127.0.0.1:8787\n  max_streams_per_client: 2\n",
    "/srv/lw/m.yaml",
  );
  assert.deepEqual(cfg.control, { listen: "127.0.0.1:8787", maxStreamsPerClient: 2 });
  const errs = problems(
    MINIMAL + "control:\n  listen: 127.0.0.1:8787\n  max_streams_per_client: 0\n",
  );
  assert.equal(errs.length, 1);
  assert.match(
    errs[0],
    /m\.yaml:\d+:\d+: expected a whole number of streams ≥ 1, found 0/,
  );
});

Deno.test("parseMonitorConfig: jetstream sinks (renderings on their own subjects), defaults", () => {
  const text = MINIMAL + [
    "sinks:", //                                                                   9
    "  - { type: jetstream, format: ecs }", //                                     10
    "  - { type: jetstream, shape: splunk-hec, index: latentwatch, host: gw1 }", // 11
    "  - { type: jetstream, shape: syslog, hostname: gw1, facility: 13 }", //      12
    "  - { type: jetstream, shape: syslog, format: cef, subject: soc.cef, max_queue: 5 }",
    "",
  ].join("\n");
  const cfg = parseMonitorConfig(text, "/srv/lw/m.yaml");
  const common = { maxQueue: 10000, appName: "latentwatch", facility: 16 };
  assert.deepEqual(cfg.sinks, [
    {
      type: "jetstream",
      name: "jetstream:latentwatch.render.ecs.demo",
      at: "/srv/lw/m.yaml:10:5",
      ...common,
      subject: "latentwatch.render.ecs.demo",
      shape: "document",
      format: "ecs",
    },
    {
      type: "jetstream",
      name: "jetstream:latentwatch.render.splunk-hec.demo",
      at: "/srv/lw/m.yaml:11:5",
      ...common,
      subject: "latentwatch.render.splunk-hec.demo",
      shape: "splunk-hec",
      format: "json",
      splunk: { index: "latentwatch", host: "gw1" },
    },
    {
      type: "jetstream",
      name: "jetstream:latentwatch.render.syslog.demo",
      at: "/srv/lw/m.yaml:12:5",
      ...common,
      facility: 13,
      hostname: "gw1",
      subject: "latentwatch.render.syslog.demo",
      shape: "syslog",
      format: "json",
    },
    {
      type: "jetstream",
      name: "jetstream:soc.cef",
      at: "/srv/lw/m.yaml:13:5",
      ...common,
      maxQueue: 5,
      subject: "soc.cef",
      shape: "syslog",
      format: "cef",
    },
  ]);
});

Deno.test("parseMonitorConfig: jetstream sink errors at file:line:col, expected vs found", () => {
  const text = MINIMAL + [
    "sinks:", //                                                                    9
    "  - { type: jetstream, subject: latentwatch.alerts.demo.ecs, format: ecs }", // 10
    "  - { type: jetstream, subject: 'a.*', shape: xml }", //                       11
    "  - { type: jetstream, shape: splunk-hec, format: cef }", //                   12
    "  - { type: jetstream, format: ecs, index: main, facility: 3 }", //            13
    "  - { type: jetstream, format: ecs }", //                                      14
    "  - { type: jetstream, name: slow, timeout_ms: 100 }", //                      15
    "",
  ].join("\n");
  assert.deepEqual(problems(text), [
    '/srv/lw/m.yaml:10:33: expected a subject outside latentwatch.alerts.> (native alerts only), like latentwatch.render.ecs.x, found the string "latentwatch.alerts.demo.ecs"',
    '/srv/lw/m.yaml:11:33: expected a NATS subject without wildcards or spaces, like latentwatch.render.ecs.x, found the string "a.*"',
    '/srv/lw/m.yaml:11:47: expected one of document, syslog, splunk-hec, found the string "xml"',
    "/srv/lw/m.yaml:12:51: expected one of json, ocsf, ecs with shape splunk-hec, found cef",
    "/srv/lw/m.yaml:13:44: expected index only with shape splunk-hec, found shape document",
    "/srv/lw/m.yaml:13:60: expected facility only with shape syslog, found shape document",
    "/srv/lw/m.yaml:14:5: duplicate sink 'jetstream:latentwatch.render.ecs.demo': expected sink names to be unique, found it already defined at line 13; give one a distinct 'name'",
    "/srv/lw/m.yaml:15:48: expected no timeout_ms on a jetstream sink (each publish waits for the NATS publish ack, 5000 ms, and is retried), found 100",
  ]);
});
Deno.test("parseMonitorConfig: alerts.spool sets the spool folder (relative to the file) and fsync", () => {
  const cfg = parseMonitorConfig(
    MINIMAL + "alerts:\n  spool:\n    dir: state/spool\n    fsync: batch\n",
    "/srv/lw/m.yaml",
  );
  assert.deepEqual(cfg.alerts.spool, { dir: "/srv/lw/state/spool", fsync: "batch" });
  assert.throws(
    () =>
      parseMonitorConfig(MINIMAL + "alerts:\n  spool:\n    fsync: sometimes\n", "/srv/lw/m.yaml"),
    /alerts\.spool\.fsync|expected never, batch or always/,
  );
});

Deno.test("parseMonitorConfig: control off loopback needs control.token_env (file:line:col)", () => {
  const base =
    "monitor: m\nmodel: x\nhook: h\nsaes: [{id: s, path: ./sae}]\npolicies: [./p.yaml]\n";
  const err = assert.throws(
    () => parseMonitorConfig(base + "control:\n  listen: 0.0.0.0:9000\n", "/srv/lw/m.yaml"),
    (e: unknown) =>
      e instanceof Error &&
      /^\/srv\/lw\/m\.yaml:7:11: .*expected control\.token_env.*found '0\.0\.0\.0' without it/
        .test(e.message),
  );
  void err;
  for (const listen of ["127.0.0.1:9000", "localhost:9000", "[::1]:9000"]) {
    const cfg = parseMonitorConfig(base + `control:\n  listen: "${listen}"\n`, "/srv/lw/m.yaml");
    assert.deepEqual(cfg.control, { listen });
  }
});
