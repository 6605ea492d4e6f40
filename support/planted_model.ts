/**
 * The fixture of the PyTorch end-to-end tests and the Python gating bench:
 * two directions planted in a small GPT's token embeddings, a JumpReLU SAE
 * whose latents 0 and 1 read them (written in the SAELens layout), rules
 * that clamp latent 0 and abort on latent 1, a monitor file, and a runner
 * for `tiny_gpt_e2e.py`.
 *
 * @module
 */
import { Rng } from "../src/core/random.ts";
import type { SaeWeights } from "../src/core/sae.ts";
import { writeSaeLensFolder } from "../src/formats/saelens_writer.ts";
import { type NatsServerProcess, startNatsServer } from "../src/bus/nats_server.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { Logger } from "../src/shared/log.ts";
import { type RunningMonitor, startMonitor } from "../src/serve/monitor.ts";
import { findPythonWithTorch } from "./python.ts";

export const D = 32;
const D_SAE = 16;
export const MODEL = "tiny-gpt";
export const HOOK = "blocks.0.hook_resid_post";
export const TRIGGER = 7;
export const STOP = 9;
export const CLAMP_VALUE = 0.5;
export const ROOT = new URL("..", import.meta.url).pathname;

export const RULES = `version: 2
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

export function unit(v: Float32Array): Float32Array {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

/** The planted directions and a JumpReLU SAE whose latents 0 and 1 read them. */
export function plantedSae(): { sae: SaeWeights; u: Float32Array; u2: Float32Array } {
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
export function clampExpected(sae: SaeWeights, x: number[], value: number): number[] {
  let pre = sae.bEnc[0];
  for (let i = 0; i < D; i++) pre += sae.wEnc[i * D_SAE] * (x[i] - sae.bDec[i]);
  const a = pre > sae.threshold![0] ? pre : 0;
  return x.map((v, i) => v + (value - a) * sae.wDec[i]);
}

/** What `tiny_gpt_e2e.py` prints. */
export interface Run {
  generated: number[][];
  aborted: Record<string, boolean>;
  steps: { step: number; rows: { position: number; raw: number[]; steered: number[] }[] }[];
  stats: Record<string, number>;
  /** Wall time of each decode step after the first (forward, tap, gate), ms. */
  step_ms: number[];
}

/** A nats-server, the sidecar on the planted SAE, and a runner for the model script. */
export interface Fixture {
  server: NatsServerProcess;
  monitor: RunningMonitor | null;
  dir: string;
  sae: SaeWeights;
  u: Float32Array;
  u2: Float32Array;
  run(cfg: Record<string, unknown>): Promise<Run>;
  stop(): Promise<void>;
}

/**
 * Start the fixture (throws, saying what to install, when no python3 imports torch).
 *
 * @example
 * ```ts
 * const f = await torchFixture();
 * const run = await f.run({ prompts: [[1, 7, 2]], request_ids: ["r1"] });
 * await f.stop();
 * ```
 */
export async function torchFixture(): Promise<Fixture> {
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
      if (code !== 0) throw new Error(`tiny_gpt_e2e.py failed (exit ${code}):\n${err}`);
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
