/**
 * Inline-gating bench: what a gated tap adds to each decode step. Through a
 * real nats-server (loopback) and `serve` with the 768→24576 JumpReLU SAE
 * (64 watched latents, plus a steering rule), `concurrency` requests each
 * take decode steps of one token; every step is published as a request and
 * waits for the sidecar's verdict. The baseline, in the same run, is the
 * same steps ungated (publish and go on). Bounded in steps and time.
 *
 * @module
 */
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { findNatsServer, startNatsServer } from "../src/bus/nats_server.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { Rng } from "../src/core/random.ts";
import { Logger } from "../src/shared/log.ts";
import { startMonitor } from "../src/serve/monitor.ts";
import { Tap } from "../src/tap/tap.ts";
import { writeBenchMonitor } from "./e2e.ts";
import type { BenchResult } from "./run.ts";

/** Untimed decode steps per request before each tap's timed steps (JIT, first subscriptions). */
const WARMUP_STEPS = 50;

const STEER_RULE = `  - id: bench-steer
    title: bench steering rule
    severity: low
    when: { sae: bench, latent: 5, above: 4.0 }
    actions:
      - alert
      - steer: { clamp: { sae: bench, latent: 5, value: 0 } }
`;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Run the gating bench at 1 and 8 concurrent requests. Returns no rows when
 * nats-server is missing.
 */
export async function benchGate(
  opts: { quick: boolean; progress: (msg: string) => void },
): Promise<BenchResult[]> {
  if (!await findNatsServer()) {
    opts.progress("nats-server not installed: skipping e2e/gate");
    return [];
  }
  const dIn = 768;
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-bench-gate-" });
  const server = await startNatsServer();
  const results: BenchResult[] = [];
  try {
    opts.progress("gate: writing the 768x24576 JumpReLU SAE, 64 watched latents + a steering rule");
    await writeBenchMonitor(dir, server.url, "jumprelu", STEER_RULE);
    const monitor = await startMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`), {
      spoolDir: `${dir}/spool`,
      log: new Logger({ quiet: true }),
      controlListen: null,
    });
    const bus = await connectNatsBus({ url: server.url, name: "bench-gate-tap" });
    const hook = "blocks.8.hook_resid_pre";
    const gated = new Tap(bus, {
      model: "bench-model",
      hook,
      name: "bench-gated",
      gate: { deadlineMs: 1000, onTimeout: "open" },
    });
    const ungated = new Tap(bus, { model: "bench-model", hook, name: "bench-ungated" });
    gated.enableSteering(dIn);
    ungated.enableSteering(dIn);
    const pool = new Rng(3).fillGaussian(new Float32Array(64 * dIn));
    // the same in --quick and full runs, after WARMUP_STEPS untimed steps per tap
    const steps = 1000;
    const deadlineMs = 60_000;

    for (const concurrency of [1, 8]) {
      const timings = new Map<Tap, number[]>();
      for (const tap of [ungated, gated]) {
        const times: number[] = [];
        const started = Date.now();
        const perRequest = Math.ceil(steps / concurrency);
        const run = async (r: number) => {
          const id = `${tap.name}-c${concurrency}-r${r}`;
          const x = new Float32Array(dIn);
          const total = WARMUP_STEPS + perRequest;
          for (let s = 0; s < total && Date.now() - started < deadlineMs; s++) {
            x.set(pool.subarray(((r + s) % 64) * dIn, ((r + s) % 64 + 1) * dIn));
            const t0 = performance.now();
            await tap.step(id, s, x, 1, dIn, { phase: "decode" });
            if (s >= WARMUP_STEPS) times.push(performance.now() - t0);
          }
          tap.end(id);
        };
        await Promise.all(Array.from({ length: concurrency }, (_, r) => run(r)));
        await bus.flush();
        await monitor.pipeline.idle();
        times.sort((a, b) => a - b);
        timings.set(tap, times);
      }
      const base = timings.get(ungated)!;
      const g = timings.get(gated)!;
      const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
      // tokens/s a single request's loop reaches if the model itself took no time
      const rate = (a: number[]) => concurrency * 1000 / mean(a);
      opts.progress(
        `gate: ${concurrency} request(s): gated step p50 ${pct(g, 50).toFixed(3)} ms, p99 ${
          pct(g, 99).toFixed(3)
        } ms; ungated p50 ${pct(base, 50).toFixed(3)} ms (${g.length} steps)`,
      );
      results.push({
        name: `e2e/gate-jumprelu-768x24576-watched64/concurrency-${concurrency}`,
        tokens_per_s: rate(g),
        baseline_tokens_per_s: rate(base),
        ratio: rate(g) / rate(base),
        p50_ms: pct(g, 50),
        p99_ms: pct(g, 99),
        rss_mb: Deno.memoryUsage().rss / 2 ** 20,
      });
    }
    gated.close();
    ungated.close();
    await bus.close();
    await monitor.stop();
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
  return results;
}

if (import.meta.main) {
  const rows = await benchGate({
    quick: Deno.args.includes("--quick"),
    progress: (m) => console.error(`bench: ${m}`),
  });
  for (const r of rows) console.log(JSON.stringify(r));
}
