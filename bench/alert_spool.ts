/**
 * Cost of the alert spool's fsync policy: alerts per second through the
 * JetStream sink (write-ahead to the spool, publish, stream ack, spool ack)
 * against a real nats-server on loopback, with `alerts.spool.fsync` set to
 * `never`, `batch` and `always`, in the same run; ratio = setting / never.
 * Alerts are persisted 8 at a time, as the pipeline hands over one
 * evaluated batch's alerts. Run alone with
 * `deno run -A bench/alert_spool.ts [--quick]`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { startNatsServer } from "../src/bus/nats_server.ts";
import { type Alert, stableId } from "../src/core/alert.ts";
import { JetStreamSink } from "../src/sinks/jetstream/sink.ts";
import type { SpoolFsync } from "../src/sinks/spool.ts";
import type { BenchResult } from "./run.ts";

const BATCH = 8;

function alert(run: string, i: number): Alert {
  return {
    schema: "latentwatch.alert/v1",
    id: stableId(`${run}/${i}`),
    time: new Date().toISOString(),
    monitor: "bench",
    policy: { id: "rule", file: "rules.yaml", line: 1 },
    severity: "high",
    title: "rule seen",
    model: "m",
    hook: "h",
    requestId: `req-${i >> 4}`,
    tokens: { start: i, end: i + 1, count: 1 },
    latent: { sae: "sae", index: 1, max: 3 },
    evidence: [{ position: i, value: 3 }],
  };
}

/**
 * Alerts/s with each fsync setting; the spool folder is under `dir` (the
 * bench's temporary folder, so the figures are those of that file system).
 */
export async function benchAlertSpool(
  opts: { quick: boolean; progress?: (line: string) => void },
): Promise<BenchResult[]> {
  // the same in --quick and full runs, so the rows they share agree
  const n = 5000;
  const server = await startNatsServer();
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-bench-spool-" });
  const bus = await connectNatsBus({ url: server.url });
  const rates = new Map<SpoolFsync, number>();
  try {
    for (const fsync of ["never", "batch", "always"] as const) {
      opts.progress?.(`alert spool: ${n} alerts, fsync ${fsync}`);
      const sink = new JetStreamSink(bus, {
        subject: `bench.alerts.${fsync}`,
        stream: {
          name: `BENCH_SPOOL_${fsync.toUpperCase()}`,
          subjects: [`bench.alerts.${fsync}`],
          duplicateWindowMs: 60_000,
        },
        spoolDir: `${dir}/${fsync}`,
        spool: { fsync },
      });
      await sink.start();
      const t0 = performance.now();
      for (let i = 0; i < n; i += BATCH) {
        const batch = [];
        for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push(alert(fsync, j));
        sink.persist(batch);
        // let publishes and acks run between batches, as between pipeline batches
        if ((i / BATCH) % 16 === 0) await new Promise((r) => setTimeout(r, 0));
      }
      while (sink.stats.delivered + sink.stats.duplicate < n) {
        await new Promise((r) => setTimeout(r, 1));
      }
      rates.set(fsync, n / ((performance.now() - t0) / 1000));
      await sink.drain(1000);
      await sink.close();
    }
  } finally {
    await bus.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(server.storeDir, { recursive: true }).catch(() => {});
  }
  const never = rates.get("never")!;
  return [...rates].map(([fsync, rate]) => ({
    name: `alerts/spool-fsync-${fsync}`,
    tokens_per_s: 0,
    alerts_per_s: Math.round(rate),
    baseline_tokens_per_s: null,
    baseline_alerts_per_s: Math.round(never),
    ratio: Number((rate / never).toFixed(3)),
    p50_ms: null,
    p99_ms: null,
    rss_mb: null,
  }));
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { quick: { type: "boolean" } } });
  const rows = await benchAlertSpool({
    quick: values.quick ?? false,
    progress: (l) => console.error(l),
  });
  for (const r of rows) console.log(JSON.stringify(r));
}
