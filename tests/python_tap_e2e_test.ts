/**
 * End to end with a real PyTorch model: a small GPT-style model defined in
 * `tests/python/tiny_gpt_e2e.py` (fixed seeds), tapped at its first block by
 * the Python tap (`deploy/taps/python/`), served through its `generate`, a
 * real nats-server and the sidecar (`startMonitor`). A direction planted in a
 * token's embedding makes a rule fire; the clamp comes back in the gate's
 * verdict and the tap applies it to that request's following tokens, which
 * are checked here against the clamp computed directly (f64, from the SAE
 * this test wrote). Abort stops generation; with the sidecar stopped, a gate
 * fails open or closed as configured.
 *
 * Needs python3 with torch (`apt-get install --no-install-recommends
 * python3-torch`; `deno task test` installs it when run as root).
 */
import assert from "node:assert/strict";
import { type NatsServerProcess, startNatsServer } from "../src/bus/nats_server.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { Rng } from "../src/core/random.ts";
import type { SaeWeights } from "../src/core/sae.ts";
import { writeSaeLensFolder } from "../src/formats/saelens.ts";
import { Logger } from "../src/serve/log.ts";
import { type RunningMonitor, startMonitor } from "../src/serve/monitor.ts";
import { findPythonWithTorch } from "./helpers/python.ts";
import { waitUntil } from "./helpers/stream.ts";

const D = 32;
const D_SAE = 16;
const MODEL = "tiny-gpt";
const HOOK = "blocks.0.hook_resid_post";
const TRIGGER = 7;
const STOP = 9;
const CLAMP_VALUE = 0.5;
const ROOT = new URL("../", import.meta.url).pathname;

const RULES = `version: 2
rules:
  - id: planted
    title: planted direction
    severity: high
    when: { sae: tiny, latent: 0, above: 3.5 }
    actions:
      - alert
      - steer: { clamp: { sae: tiny, latent: 0, value: ${CLAMP_VALUE} } }
  - id: stop
    title: stop direction
    severity: critical
    when: { sae: tiny, latent: 1, above: 3.5 }
    actions:
      - steer: { abort: { reason: stop token } }
`;

function unit(v: Float32Array): Float32Array {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

/** The planted directions and a JumpReLU SAE whose latents 0 and 1 read them. */
function plantedSae(): { sae: SaeWeights; u: Float32Array; u2: Float32Array } {
  const rng = new Rng(42);
  const u = unit(rng.fillGaussian(new Float32Array(D)));
  let u2 = rng.fillGaussian(new Float32Array(D));
  const dot = u2.reduce((s, x, i) => s + x * u[i], 0);
  u2 = unit(u2.map((x, i) => x - dot * u[i]));
  const wEnc = new Float32Array(D * D_SAE);
  const wDec = new Float32Array(D_SAE * D);
  const threshold = new Float32Array(D_SAE).fill(100); // the other latents never fire
  threshold[0] = 0; // latent 0: ReLU read-out, so a clamp both adds and removes
  threshold[1] = 1;
  const other = unit(rng.fillGaussian(new Float32Array(D)));
  for (let j = 0; j < D_SAE; j++) {
    const enc = j === 0 ? u : j === 1 ? u2 : unit(rng.fillGaussian(new Float32Array(D)));
    // latent 0's decoder row is not its encoder direction: the clamp moves along W_dec
    const dec = j === 0 ? u.map((x, i) => 0.9 * x + 0.3 * other[i]) : enc;
    for (let i = 0; i < D; i++) {
      wEnc[i * D_SAE + j] = enc[i];
      wDec[j * D + i] = dec[i];
    }
  }
  const bEnc = new Float32Array(D_SAE);
  bEnc[0] = 0.3;
  const bDec = rng.fillGaussian(new Float32Array(D), 0.05);
  const sae: SaeWeights = {
    format: "saelens",
    architecture: "jumprelu",
    dIn: D,
    dSae: D_SAE,
    hookName: HOOK,
    modelName: MODEL,
    dtype: "float32",
    applyBDecToInput: true,
    wEnc,
    bEnc,
    wDec,
    bDec,
    threshold,
    source: "python_tap_e2e_test",
  };
  return { sae, u, u2 };
}

/** The clamp of docs/steering.md, computed here in f64 from the SAE's own arrays. */
function clampExpected(sae: SaeWeights, x: number[], value: number): number[] {
  let pre = sae.bEnc[0];
  for (let i = 0; i < D; i++) pre += sae.wEnc[i * D_SAE] * (x[i] - sae.bDec[i]);
  const a = pre > sae.threshold![0] ? pre : 0;
  return x.map((v, i) => v + (value - a) * sae.wDec[i]);
}

interface Run {
  generated: number[][];
  aborted: Record<string, boolean>;
  steps: { step: number; rows: { position: number; raw: number[]; steered: number[] }[] }[];
  stats: Record<string, number>;
}

interface Fixture {
  server: NatsServerProcess;
  monitor: RunningMonitor | null;
  dir: string;
  sae: SaeWeights;
  u: Float32Array;
  u2: Float32Array;
  run(cfg: Record<string, unknown>): Promise<Run>;
  stop(): Promise<void>;
}

async function fixture(): Promise<Fixture> {
  const python = await findPythonWithTorch();
  if (!python) {
    throw new Error(
      "no python3 here imports torch: install it (apt-get install --no-install-recommends python3-torch)",
    );
  }
  const server = await startNatsServer();
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-torch-" });
  const { sae, u, u2 } = plantedSae();
  await writeSaeLensFolder(`${dir}/sae`, sae);
  await Deno.writeTextFile(`${dir}/rules.yaml`, RULES);
  await Deno.writeTextFile(
    `${dir}/monitor.yaml`,
    `monitor: torch\nmodel: ${MODEL}\nhook: ${HOOK}\nsaes:\n  - id: tiny\n    path: sae\n` +
      `policies: [rules.yaml]\nnats:\n  url: ${server.url}\nalerts:\n  stream: TORCH_E2E\n`,
  );
  const monitor = await startMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`), {
    spoolDir: `${dir}/spool`,
    log: new Logger({ write: () => {} }),
    controlListen: null,
  });
  const f: Fixture = {
    server,
    monitor,
    dir,
    sae,
    u,
    u2,
    run: async (cfg) => {
      const path = `${dir}/run.json`;
      await Deno.writeTextFile(
        path,
        JSON.stringify({
          seed: 0,
          vocab: 32,
          d_model: D,
          model: MODEL,
          hook: HOOK,
          nats: server.url,
          trigger_token: TRIGGER,
          stop_token: STOP,
          u: [...u],
          u2: [...u2],
          max_new_tokens: 6,
          ...cfg,
        }),
      );
      const { code, stdout, stderr } = await new Deno.Command(python, {
        args: [`${ROOT}tests/python/tiny_gpt_e2e.py`, `${ROOT}deploy/taps/python`, path],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(120_000),
      }).output();
      const err = new TextDecoder().decode(stderr);
      assert.equal(code, 0, `tiny_gpt_e2e.py failed:\n${err}`);
      return JSON.parse(new TextDecoder().decode(stdout)) as Run;
    },
    stop: async () => {
      await f.monitor?.stop();
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
  return f;
}

const PROMPTS = { planted: [1, 2, TRIGGER, 3, 4], benign: [5, 6, 3], stop: [1, STOP, 2] };

Deno.test("python tap + torch: a planted direction fires, the clamp applies to that request's next tokens only", async () => {
  const f = await fixture();
  try {
    const r = await f.run({
      prompts: [PROMPTS.planted, PROMPTS.benign],
      request_ids: ["r-planted", "r-benign"],
      gate: { deadline_ms: 10000, on_timeout: "closed" },
    });
    assert.equal(r.generated[0].length, 6);
    assert.ok(r.steps.length >= 5, `decode steps: ${r.steps.length}`);
    let changed = 0;
    for (const s of r.steps) {
      const [planted, benign] = s.rows;
      // the clamp came in the prefill's verdict: every decode step of r-planted carries it
      const expected = clampExpected(f.sae, planted.raw, CLAMP_VALUE);
      for (let i = 0; i < D; i++) {
        assert.ok(
          Math.abs(planted.steered[i] - expected[i]) < 1e-4,
          `step ${s.step} position ${planted.position} dim ${i}: ${planted.steered[i]} vs ${
            expected[i]
          }`,
        );
      }
      if (planted.raw.some((v, i) => Math.abs(v - planted.steered[i]) > 1e-3)) changed++;
      // the other request in the batch is untouched
      assert.deepEqual(benign.steered, benign.raw, `r-benign step ${s.step}`);
    }
    assert.equal(changed, r.steps.length, "the clamp changed every decode step of r-planted");
    assert.equal(r.stats.commands_applied, 1);
    assert.equal(r.stats.fail_closed, 0);
    assert.ok(r.stats.gate_waits >= r.steps.length);
    const t = f.monitor!.telemetry;
    await waitUntil(() => t.total("latentwatch.steer.acks") >= 1, "the tap's ack");
    assert.equal(t.total("latentwatch.alerts"), 1);
  } finally {
    await f.stop();
  }
});

Deno.test("python tap + torch: an abort rule stops that request's generation", async () => {
  const f = await fixture();
  try {
    const r = await f.run({
      prompts: [PROMPTS.stop, PROMPTS.benign],
      request_ids: ["r-stop", "r-go"],
      gate: { deadline_ms: 10000, on_timeout: "open" },
    });
    assert.equal(r.aborted["r-stop"], true);
    assert.equal(r.aborted["r-go"], false);
    // the token sampled from the prefill ends r-stop's output; the rest is padding
    assert.deepEqual(r.generated[0].slice(1), new Array(r.generated[0].length - 1).fill(0));
    assert.equal(r.generated[1].length, 6);
    assert.ok(r.stats.aborts >= 1);
  } finally {
    await f.stop();
  }
});

Deno.test("python tap + torch: with the sidecar stopped, fail-open generates and fail-closed stops", async () => {
  const f = await fixture();
  try {
    await f.monitor!.stop();
    f.monitor = null;
    const open = await f.run({
      prompts: [PROMPTS.planted],
      request_ids: ["r-open"],
      gate: { deadline_ms: 200, on_timeout: "open" },
    });
    assert.equal(open.generated[0].length, 6);
    assert.equal(open.aborted["r-open"], false);
    assert.ok(open.stats.fail_open >= 1);
    // nothing steered the model: every step went through as computed
    for (const s of open.steps) assert.deepEqual(s.rows[0].steered, s.rows[0].raw);
    const closed = await f.run({
      prompts: [PROMPTS.planted],
      request_ids: ["r-closed"],
      gate: { deadline_ms: 200, on_timeout: "closed" },
    });
    assert.equal(closed.aborted["r-closed"], true);
    assert.ok(closed.generated[0].filter((t) => t !== 0).length <= 1);
    assert.ok(closed.stats.fail_closed >= 1);
  } finally {
    await f.stop();
  }
});
