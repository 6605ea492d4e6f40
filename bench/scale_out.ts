/**
 * Scale-out bench: the same traffic through 1, 2 and 3 `latentwatch serve`
 * processes sharing 16 partitions (docs/scale-out.md), on one nats-server,
 * one after the other in one sitting. The SAE is the e2e bench's TopK
 * 768→24576 (encoded in full, the case one sidecar cannot keep up with);
 * each sidecar runs onnxruntime on one thread. The tap keeps at most
 * `window` tokens outstanding (sent and not yet encoded by any sidecar), so
 * the figure is what the sidecars sustain together and nothing is dropped.
 * The baseline of each row is the 1-sidecar, 1-thread rate; a last row runs
 * one sidecar on every core, what a single sidecar does at best here.
 *
 * @module
 */
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { findNatsServer, startNatsServer } from "../src/bus/nats_server.ts";
import { Rng } from "../src/core/random.ts";
import { Tap } from "../src/tap/tap.ts";
import {
  metricSum,
  partitionsSettled,
  ports,
  type Sidecar,
  startSidecar,
} from "../support/sidecars.ts";
import { writeBenchMonitor } from "./bench_monitor.ts";
import { BENCH_HOOK, BENCH_MODEL } from "./e2e_load.ts";
import type { BenchResult } from "./run.ts";

const PARTITIONS = 16;
const REQUESTS = 64;
const FRAME_TOKENS = 16;
/** Tokens sent and encoded before the clock starts (sidecar JIT, sessions, first leases). */
const WARMUP_TOKENS = 2048;
const D_IN = 768;

async function until(cond: () => Promise<boolean>, what: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!await cond()) {
    if (Date.now() > deadline) throw new Error(`scale-out bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Tokens encoded so far by `sidecars` together. */
async function encoded(sidecars: Sidecar[]): Promise<number> {
  const n = await Promise.all(
    sidecars.map((s) => metricSum(s.port, "latentwatch_tokens_encoded_total")),
  );
  return n.reduce((a, b) => a + b, 0);
}

/** One run with `n` sidecars: tokens/s over `tokens` tokens. */
async function run(
  o: {
    n: number;
    /** onnxruntime threads per sidecar. */
    threads: number;
    url: string;
    dir: string;
    tokens: number;
    window: number;
    x: Float32Array;
  },
): Promise<number> {
  const base = await Deno.readTextFile(`${o.dir}/monitor.yaml`);
  const ps = ports(o.n);
  const sidecars: Sidecar[] = [];
  const bus = await connectNatsBus({ url: o.url });
  try {
    for (let i = 0; i < o.n; i++) {
      const run = `${o.n}x${o.threads}`;
      const file = `${o.dir}/monitor-${run}-${i}.yaml`;
      await Deno.writeTextFile(
        file,
        base.replace(
          "stream: BENCH_ALERTS",
          `stream: BENCH_ALERTS_${run}\n  subject: bench.alerts.n${run}\n` +
            `  spool:\n    dir: spool-${run}-${i}`,
        ) +
          `execution:\n  provider: cpu\n  threads: ${o.threads}\nevidence:\n  top_latents: 0\n` +
          `control:\n  listen: 127.0.0.1:${ps[i]}\n` +
          `scale_out:\n  partitions: ${PARTITIONS}\n  bucket: bench_${run}\n  member: s${run}-${i}\n` +
          `  lease_ttl_ms: 4000\n  heartbeat_ms: 500\n`,
      );
      sidecars.push(startSidecar(`s${o.n}-${i}`, file, ps[i]));
    }
    await until(
      async () => (await partitionsSettled(sidecars, PARTITIONS)) !== null,
      `${o.n} sidecars sharing ${PARTITIONS} partitions`,
      120_000,
    );
    const tap = new Tap(bus, {
      model: BENCH_MODEL,
      hook: BENCH_HOOK,
      partitions: PARTITIONS,
    });
    let sent = 0;
    let seq = 0;
    // the clock starts once the warm-up tokens are encoded; tokens encoded after it count
    let t0 = 0, from = 0;
    const total = WARMUP_TOKENS + o.tokens;
    while (sent < total) {
      const done = await encoded(sidecars);
      if (t0 === 0 && done >= WARMUP_TOKENS) [t0, from] = [performance.now(), done];
      while (sent - done < o.window && sent < total) {
        for (let r = 0; r < REQUESTS && sent < total; r++) {
          tap.publish(`n${o.n}x${o.threads}-r${r}`, seq * FRAME_TOKENS, o.x, FRAME_TOKENS, D_IN);
          sent += FRAME_TOKENS;
        }
        seq++;
      }
      await bus.flush();
      await new Promise((r) => setTimeout(r, 10));
    }
    await until(
      async () => {
        const done = await encoded(sidecars);
        if (t0 === 0 && done >= WARMUP_TOKENS) [t0, from] = [performance.now(), done];
        return done >= total;
      },
      "every token encoded",
      300_000,
    );
    return (total - from) / ((performance.now() - t0) / 1000);
  } finally {
    if (Deno.env.get("LW_BENCH_DEBUG")) {
      for (const s of sidecars) {
        console.error(
          s.lines.filter((l) => /partition|round|lease/.test(l)).slice(0, 40).join("\n"),
        );
      }
    }
    for (const s of sidecars) s.child.kill("SIGTERM");
    for (const s of sidecars) {
      await s.child.status;
      await s.done;
    }
    await bus.close();
  }
}

/**
 * Rows `scale-out/topk-768x24576-{1,2,3}-sidecars`; empty when nats-server
 * is missing.
 *
 * @example
 * ```ts
 * const rows = await benchScaleOut({ quick: true, progress: console.error });
 * ```
 */
export async function benchScaleOut(
  opts: { quick: boolean; progress: (msg: string) => void },
): Promise<BenchResult[]> {
  if (!await findNatsServer()) {
    opts.progress("nats-server not installed: skipping scale-out/");
    return [];
  }
  const server = await startNatsServer();
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-bench-scale-" });
  try {
    await writeBenchMonitor(dir, server.url, "topk");
    const rng = new Rng(5);
    const x = new Float32Array(FRAME_TOKENS * D_IN);
    for (let i = 0; i < x.length; i++) x[i] = rng.gaussian();
    // the same measured tokens in --quick and full runs (after WARMUP_TOKENS not
    // measured); --quick runs fewer rows (1 and 2 sidecars), not shorter ones
    const tokens = Number(Deno.env.get("LW_BENCH_TOKENS") ?? 0) || 16384;
    const rows: BenchResult[] = [];
    let one = 0;
    // one onnxruntime thread per sidecar; then one sidecar on every core, for context
    const cores = navigator.hardwareConcurrency;
    const plan = opts.quick ? [[1, 1], [2, 1]] : [[1, 1], [2, 1], [3, 1], [1, cores]];
    for (const [n, threads] of plan) {
      opts.progress(
        `scale-out: ${tokens} tokens through ${n} sidecar(s), ${threads} thread(s) each`,
      );
      const rate = await run({ n, threads, url: server.url, dir, tokens, window: 2048, x });
      if (n === 1 && threads === 1) one = rate;
      rows.push({
        name: `scale-out/topk-768x24576-${n}-sidecar${n > 1 ? "s" : ""}-${threads}-thread${
          threads > 1 ? "s" : ""
        }`,
        tokens_per_s: Math.round(rate),
        baseline_tokens_per_s: Math.round(one),
        ratio: rate / one,
        p50_ms: null,
        p99_ms: null,
        rss_mb: null,
      });
    }
    return rows;
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const rows = await benchScaleOut({
    quick: Deno.args.includes("--quick"),
    progress: (m) => console.error(m),
  });
  for (const r of rows) console.log(JSON.stringify(r));
}
