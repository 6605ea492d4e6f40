/**
 * End-to-end bench: tokens/s through `serve` on a real nats-server
 * (loopback, spawned on a free port), with a closed-loop load generator that
 * keeps a bounded number of tokens outstanding, so the figure is the
 * saturation throughput and nothing is dropped. Bounded in tokens and time.
 *
 * @module
 */
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { findNatsServer, startNatsServer } from "../src/bus/nats_server.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { Rng } from "../src/core/random.ts";
import { randomSae } from "../src/formats/random_sae.ts";
import { writeSaeLensFolder } from "../src/formats/saelens.ts";
import { Logger } from "../src/serve/log.ts";
import { startMonitor } from "../src/serve/monitor.ts";
import { Tap } from "../src/tap/tap.ts";
import type { BenchResult } from "./run.ts";

/**
 * Write the bench's 768→24576 SAE (SAELens layout), its rules and a monitor
 * file into `dir`: TopK gets one rule (TopK is encoded in full anyway),
 * JumpReLU 64 rules on 64 latents (what serve then encodes). `extraRules`
 * is appended to the rule list (YAML, indented two spaces).
 *
 * @example
 * ```ts
 * await writeBenchMonitor(dir, server.url, "jumprelu");
 * ```
 */
export async function writeBenchMonitor(
  dir: string,
  natsUrl: string,
  arch: "topk" | "jumprelu",
  extraRules = "",
): Promise<void> {
  const dIn = 768, dSae = 24576, k = 32;
  await writeSaeLensFolder(`${dir}/sae`, randomSae({ architecture: arch, dIn, dSae, k, seed: 2 }));
  const ruleCount = arch === "topk" ? 1 : 64;
  await Deno.writeTextFile(
    `${dir}/rules.yaml`,
    "version: 2\nrules:\n" +
      Array.from(
        { length: ruleCount },
        (_, i) =>
          `  - id: bench-${i}\n    title: bench rule ${i}\n    severity: low\n` +
          `    when: { sae: bench, latent: ${7 + i * 383}, above: 4.0 }\n`,
      ).join("") + extraRules,
  );
  await Deno.writeTextFile(
    `${dir}/monitor.yaml`,
    `monitor: bench\nmodel: bench-model\nhook: blocks.8.hook_resid_pre\nsaes:\n  - id: bench\n    path: sae\n` +
      `policies: [rules.yaml]\nnats:\n  url: ${natsUrl}\nalerts:\n  stream: BENCH_ALERTS\n` +
      `batching:\n  max_batch_tokens: 128\n  max_wait_ms: 2\n  max_queue_tokens: 8192\n`,
  );
}

/**
 * Run the serve bench on a 768→24576 SAE: TopK (encoded in full, as TopK
 * needs) or JumpReLU with rules on 64 latents (serve encodes only those).
 * Returns an empty list when nats-server is missing.
 */
export async function benchServe(
  opts: { quick: boolean; progress: (msg: string) => void; architecture: "topk" | "jumprelu" },
): Promise<BenchResult[]> {
  const arch = opts.architecture;
  if (!await findNatsServer()) {
    opts.progress("nats-server not installed: skipping e2e/");
    return [];
  }
  const dIn = 768;
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-bench-" });
  const server = await startNatsServer();
  try {
    opts.progress(`e2e: writing the 768x24576 ${arch} SAE in SAELens layout`);
    await writeBenchMonitor(dir, server.url, arch);
    const sent = new Map<string, number>();
    const latencies: number[] = [];
    let encoded = 0;
    const monitor = await startMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`), {
      spoolDir: `${dir}/spool`,
      log: new Logger({ quiet: true }),
      controlListen: null,
      onEncoded: (frames) => {
        const now = performance.now();
        for (const f of frames) {
          const t0 = sent.get(`${f.requestId}:${f.position}`);
          if (t0 !== undefined) latencies.push(now - t0);
          sent.delete(`${f.requestId}:${f.position}`);
          encoded += f.tokens;
        }
      },
    });
    const bus = await connectNatsBus({ url: server.url, name: "bench-tap" });
    const tap = new Tap(bus, { model: "bench-model", hook: "blocks.8.hook_resid_pre" });

    const tokensPerFrame = 16, requests = 64, outstanding = 512;
    const total = (opts.quick ? 8192 : 65536) * (arch === "topk" ? 1 : 4);
    const pool = new Rng(9).fillGaussian(new Float32Array(tokensPerFrame * dIn * 8));
    const positions = new Array(requests).fill(0);
    opts.progress(
      `e2e: ${total} tokens through serve (frames of ${tokensPerFrame}, ${requests} requests)`,
    );
    const deadline = Date.now() + (opts.quick ? 30_000 : 120_000);
    let published = 0;
    const t0 = performance.now();
    let frame = 0;
    while (published < total && Date.now() < deadline) {
      if (published - encoded >= outstanding) {
        await new Promise((r) => setTimeout(r, 0));
        continue;
      }
      const r = frame % requests;
      const off = (frame % 8) * tokensPerFrame * dIn;
      sent.set(`req-${r}:${positions[r]}`, performance.now());
      tap.publish(
        `req-${r}`,
        positions[r],
        pool.subarray(off, off + tokensPerFrame * dIn),
        tokensPerFrame,
        dIn,
      );
      positions[r] += tokensPerFrame;
      published += tokensPerFrame;
      frame++;
      if (frame % 16 === 0) await new Promise((r) => setTimeout(r, 0));
    }
    while (encoded < published && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    const seconds = (performance.now() - t0) / 1000;
    const rss = Deno.memoryUsage().rss / 2 ** 20;
    const dropped = monitor.telemetry.total("latentwatch.tokens.dropped");
    await monitor.stop();
    await bus.close();
    latencies.sort((a, b) => a - b);
    const pct = (p: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(p / 100 * latencies.length))];
    opts.progress(`e2e: ${encoded} tokens in ${seconds.toFixed(2)} s, ${dropped} dropped`);
    return [{
      name: `e2e/serve-${arch}-768x24576${arch === "jumprelu" ? "-watched64" : ""}/saturation`,
      tokens_per_s: encoded / seconds,
      baseline_tokens_per_s: null,
      ratio: null,
      p50_ms: pct(50),
      p99_ms: pct(99),
      rss_mb: rss,
    }];
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}
