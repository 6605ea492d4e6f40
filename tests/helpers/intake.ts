/**
 * A real nats-server, a real monitor (small simulated SAE, one rule per
 * concept latent) and a raw-protocol publisher, for the intake tests: frames
 * whose bytes no client library would build go in, alerts come out through
 * `onAlert`, and the expected alerts come from the simulator's ground truth.
 */
import { type NatsServerProcess, startNatsServer } from "../../src/bus/nats_server.ts";
import { loadMonitorConfig } from "../../src/config/monitor.ts";
import type { Alert } from "../../src/core/alert.ts";
import { encodeFrame } from "../../src/core/frame/encode.ts";
import { tapSubject } from "../../src/core/frame/subjects.ts";
import { buildDemoSae, SimulatedModel, tokenize } from "../../src/demo/simulator.ts";
import { writeSaeLensFolder } from "../../src/formats/saelens_writer.ts";
import { Logger } from "../../src/shared/log.ts";
import { type RunningMonitor, startMonitor } from "../../src/serve/monitor.ts";
import { headerBlock, line, RawNatsPublisher } from "./raw_nats.ts";

export const MODEL = "sim-gpt";
export const HOOK = "blocks.6.hook_resid_post";
export const SUBJECT = tapSubject(MODEL, HOOK);
/** Concept latent → rule id. */
export const RULES: Record<number, string> = {
  0: "injection",
  1: "email",
  2: "credential",
  3: "self-harm",
};

export interface IntakeHarness {
  server: NatsServerProcess;
  monitor: RunningMonitor;
  raw: RawNatsPublisher;
  sim: SimulatedModel;
  alerts: Alert[];
  logs: string[];
  stop(): Promise<void>;
}

/** Start nats-server, a monitor with a control API on a free port, and a raw publisher. */
export async function intakeHarness(
  stream: string,
  opts: { monitorYaml?: string; maxLogPerSecond?: number } = {},
): Promise<IntakeHarness> {
  const server = await startNatsServer();
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-intake-" });
  const sim = new SimulatedModel({ dModel: 16, seed: 3 });
  await writeSaeLensFolder(`${dir}/sae`, buildDemoSae(sim, 32));
  await Deno.writeTextFile(
    `${dir}/rules.yaml`,
    `version: 1\nrules:\n` +
      Object.entries(RULES).map(([latent, id]) =>
        `  - id: ${id}\n    title: ${id} seen\n    severity: high\n    when: { sae: sim, latent: ${latent}, above: 2.0 }\n`
      ).join(""),
  );
  await Deno.writeTextFile(
    `${dir}/monitor.yaml`,
    `monitor: intake\nmodel: ${MODEL}\nhook: ${HOOK}\nsaes:\n  - id: sim\n    path: sae\npolicies: [rules.yaml]\n` +
      `nats:\n  url: ${server.url}\nalerts:\n  stream: ${stream}\nbatching:\n  max_batch_tokens: 256\n  max_wait_ms: 2\n` +
      `control:\n  listen: 127.0.0.1:0\n` + (opts.monitorYaml ?? ""),
  );
  const logs: string[] = [];
  const alerts: Alert[] = [];
  const monitor = await startMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`), {
    spoolDir: `${dir}/spool`,
    log: new Logger({
      write: (l) => void (logs.length < 10_000 && logs.push(l)),
      maxPerSecond: opts.maxLogPerSecond ?? 1000,
    }),
    onAlert: (a) => alerts.push(a),
  });
  const raw = await RawNatsPublisher.connect(server.url);
  return {
    server,
    monitor,
    raw,
    sim,
    alerts,
    logs,
    stop: async () => {
      raw.close();
      await monitor.stop();
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * The header lines and payload of a valid one-frame request (`text`'s
 * tokens, f32, with `Lw-End: 1`), for the raw publisher.
 */
export function validFrame(
  sim: SimulatedModel,
  requestId: string,
  text: string,
): { lines: Uint8Array[]; payload: Uint8Array; tokens: string[] } {
  const tokens = tokenize(text);
  const { headers, payload } = encodeFrame(
    {
      model: MODEL,
      hook: HOOK,
      requestId,
      position: 0,
      seq: 0,
      dtype: "f32",
      endOfRequest: true,
    },
    sim.activations(tokens),
    tokens.length,
    sim.dModel,
  );
  return {
    lines: Object.entries(headers).map(([k, v]) => line(k, v)),
    payload: payload.slice(),
    tokens,
  };
}

/** Publish a valid one-frame request through the raw publisher. */
export async function publishValid(h: IntakeHarness, requestId: string, text: string) {
  const f = validFrame(h.sim, requestId, text);
  await h.raw.publish({ subject: SUBJECT, headerBlock: headerBlock(f.lines), payload: f.payload });
  return f.tokens;
}

/** Ground truth: `request/rule/positions` of each alert `tokens` should raise (one per rule). */
export function expectedAlerts(
  sim: SimulatedModel,
  requestId: string,
  tokens: readonly string[],
): string[] {
  const byRule = new Map<string, number[]>();
  sim.concepts(tokens).forEach((cs, i) => {
    for (const c of cs) {
      const rule = RULES[c.latent];
      if (rule) byRule.set(rule, [...(byRule.get(rule) ?? []), i]);
    }
  });
  return [...byRule].map(([rule, pos]) => `${requestId}/${rule}/${pos.join(",")}`);
}

/** The same key for an alert raised. */
export function alertKey(a: Alert): string {
  return `${a.requestId}/${a.policy.id}/${a.evidence.map((e) => e.position).join(",")}`;
}
