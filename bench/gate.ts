/**
 * Inline-gating bench: what a gated tap adds to each decode step. Through a
 * real nats-server (loopback) and `serve` with the 768→24576 JumpReLU SAE
 * (64 watched latents, plus a steering rule), `concurrency` requests each
 * take decode steps of one token; every step is published as a request and
 * waits for the sidecar's verdict. The baseline, in the same run, is the
 * same steps ungated (publish and go on). The taps run in their own process
 * (`bench/gate_tap.ts`), as in a model server; the sidecar in this one.
 * Each row reports the gated p50/p99, the ungated ones, and the difference
 * (`added_p50_ms`, `added_p99_ms`). A second pass answers the same taps'
 * requests with a responder that only sends a `continue` verdict back, no
 * sidecar (`…/floor-concurrency-N`): what the transport alone adds, the
 * floor under the gated rows on this machine. Bounded in steps and time.
 *
 * @module
 */
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { findNatsServer } from "../src/bus/nats_server.ts";
import { tapSubjectFilter } from "../src/core/frame/subjects.ts";
import { encodeVerdict } from "../src/core/steer/encode.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { Logger } from "../src/shared/log.ts";
import { startMonitor } from "../src/serve/monitor.ts";
import { writeBenchMonitor } from "./bench_monitor.ts";
import type { BenchResult } from "./run.ts";
import { BROKER_ENV, startBenchBroker } from "./harness.ts";
import { BENCH_HOOK, BENCH_MODEL, readLines } from "./e2e_load.ts";
import type { GateTimings } from "./gate_tap.ts";

/** A gating row: besides the gated step's p50/p99, the ungated ones and the difference. */
export type GateRow = BenchResult & {
  baseline_p50_ms: number;
  baseline_p99_ms: number;
  /** Gated − ungated, p50 and p99 (ms): what the gate adds to a decode step. */
  added_p50_ms: number;
  added_p99_ms: number;
};

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
 * Run the gating bench at 1 and 8 concurrent requests, through the sidecar
 * and then through the bare responder of the floor pass. Returns no rows
 * when nats-server is missing.
 */
export async function benchGate(
  opts: { quick: boolean; progress: (msg: string) => void },
): Promise<BenchResult[]> {
  if (!await findNatsServer()) {
    opts.progress("nats-server not installed: skipping e2e/gate");
    return [];
  }
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-bench-gate-" });
  const server = await startBenchBroker();
  const results: BenchResult[] = [];
  try {
    opts.progress("gate: writing the 768x24576 JumpReLU SAE, 64 watched latents + a steering rule");
    await writeBenchMonitor(dir, server.url, "jumprelu", STEER_RULE);
    const monitor = await startMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`), {
      spoolDir: `${dir}/spool`,
      log: new Logger({ quiet: true }),
      controlListen: null,
    });
    let timings: GateTimings[];
    try {
      timings = await runTaps(server.url, opts.progress);
    } finally {
      await monitor.stop();
    }
    results.push(...gateRows(timings, "", opts.progress));
    // the floor: the same taps, answered at once by a responder that does nothing else
    const bus = await connectNatsBus({ url: server.url, name: "bench-gate-floor" });
    try {
      const sub = bus.subscribe(tapSubjectFilter(BENCH_MODEL, BENCH_HOOK), (msg) => {
        if (!msg.reply) return;
        const seq = Number(msg.headers["Lw-Seq"]);
        const requestId = msg.headers["Lw-Request-Id"];
        bus.publish(
          msg.reply,
          encodeVerdict({ requestId, seq, verdict: "continue", commands: [] }),
        );
      });
      await bus.flush(); // the server knows the subscription before the first step
      results.push(...gateRows(await runTaps(server.url, opts.progress), "floor-", opts.progress));
      sub.unsubscribe();
    } finally {
      await bus.close();
    }
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
  for (const r of results) r.harness = { broker_env: { ...BROKER_ENV } };
  return results;
}

/** Run the tap process against `url` and collect its timings. */
async function runTaps(url: string, progress: (msg: string) => void): Promise<GateTimings[]> {
  // the same in --quick and full runs (after untimed warm-up steps in the tap process); split
  // among the requests at each concurrency. 4,000 since the twenty-second sitting: a p99 of
  // 1,000 one-token steps (half a second at one request) was its ten slowest steps, whichever of
  // the host's hiccups fell in that half second
  const steps = 4000;
  const deadlineMs = 60_000;
  // the taps run in their own process, as in a model server
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./gate_tap.ts", import.meta.url).pathname,
      "--url",
      url,
      "--steps",
      String(steps),
      "--deadline-ms",
      String(deadlineMs),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const timings: GateTimings[] = [];
  try {
    for await (const line of readLines(child.stdout)) {
      if (line.trim()) timings.push(JSON.parse(line));
    }
  } catch (err) {
    // a line that is not JSON: stop the taps rather than leave them running
    child.kill();
    await child.status;
    throw err;
  }
  const status = await child.status;
  if (!status.success) progress(`gate: the tap process exited with ${status.code}`);
  return timings;
}

/** The rows of one pass (`kind` "" for the sidecar, "floor-" for the bare responder). */
function gateRows(
  timings: GateTimings[],
  kind: "" | "floor-",
  progress: (msg: string) => void,
): GateRow[] {
  const results: GateRow[] = [];
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  for (const concurrency of [1, 8]) {
    const base = timings.find((t) => t.concurrency === concurrency && !t.gated)?.ms;
    const g = timings.find((t) => t.concurrency === concurrency && t.gated)?.ms;
    if (!base?.length || !g?.length) continue;
    // tokens/s a single request's loop reaches if the model itself took no time
    const rate = (a: number[]) => concurrency * 1000 / mean(a);
    const row: GateRow = {
      name: `e2e/gate-jumprelu-768x24576-watched64/${kind}concurrency-${concurrency}`,
      tokens_per_s: rate(g),
      baseline_tokens_per_s: rate(base),
      ratio: rate(g) / rate(base),
      p50_ms: pct(g, 50),
      p99_ms: pct(g, 99),
      rss_mb: Deno.memoryUsage().rss / 2 ** 20,
      baseline_p50_ms: pct(base, 50),
      baseline_p99_ms: pct(base, 99),
      added_p50_ms: pct(g, 50) - pct(base, 50),
      added_p99_ms: pct(g, 99) - pct(base, 99),
    };
    progress(
      `gate${kind ? " floor" : ""}: ${concurrency} request(s): gated step p50 ${
        pct(g, 50).toFixed(3)
      } ms, p99 ${pct(g, 99).toFixed(3)} ms; ungated p50 ${pct(base, 50).toFixed(3)}, p99 ${
        pct(base, 99).toFixed(3)
      } ms; added p50 ${row.added_p50_ms.toFixed(3)} ms, p99 ${
        row.added_p99_ms.toFixed(3)
      } ms (${g.length} steps)`,
    );
    results.push(row);
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
