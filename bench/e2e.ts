/**
 * End-to-end bench through `serve` on a real nats-server (loopback, spawned on
 * a free port), the TypeScript tap publishing frames of 16 tokens for 64
 * concurrent requests from its own process (`e2e_load.ts`, as a model server
 * is; `serve` runs in this one), in phases on one running monitor:
 *
 * 0. warm-up: 16 384 tokens closed-loop, not measured (JIT, first runs);
 * 1. saturation: a closed-loop generator keeps 1024 tokens outstanding, so the
 *    figure is the most `serve` sustains and nothing is dropped; three turns
 *    back to back, the row the median (each turn in `turns_tokens_per_s`);
 * 2. fixed loads (`e2e_open_loop.ts`): an open-loop generator publishes
 *    frames on a schedule at a fixed share of that rate (whatever the sidecar
 *    does), bounded in count and time, each after one second at its rate that
 *    is not measured; latency is frame published → its tokens encoded and
 *    evaluated (the pipeline's `onEncoded` hook, its records in
 *    `e2e_sidecar.ts`), from the publish time each frame carries
 *    (`Lw-Meta-sent`, the host clock both processes read); at 25 and 50%
 *    (JumpReLU) the row alternates, in windows of a second (`e2e_windows.ts`),
 *    with its floor: the same load to a bare subscriber here that only reads
 *    each frame's publish time, on subjects the monitor does not read (it
 *    idles meanwhile), the transport's and the machine's own latency in the
 *    same seconds as the row;
 *    then, at 25 and 50% (JumpReLU), a paired row each (`…/paired-Npct`,
 *    `e2e_paired.ts`): the same load with a bare subscriber in a process of
 *    its own reading the same frames at the same time, so each frame has
 *    what the sidecar added to it (the broker writes one frame's two copies
 *    one after the other, in an order not measured, and whichever reader
 *    comes second pays that write);
 * 3. RSS over time (JumpReLU): half load for two minutes (a 10 s row in --quick),
 *    RSS sampled every second.
 *
 * With `E2E_HOST_WAKE=1` (a diagnostic; it disturbs what it measures), the
 * host's own wake-up lateness is metered after saturation (`host_wake.ts`: a
 * real-time thread per CPU on a 1 ms schedule) and each latency row records
 * it over its seconds (`host_wake`). Every row records who used the cores over
 * it (`cpu`, `process_cpu.ts`): this process, the broker and the generator.
 *
 * `deno run -A bench/e2e.ts --arch jumprelu [--quick]` prints one JSON row per
 * line on stdout (progress on stderr); `bench/run.ts` runs it as a child
 * process, so RSS is the sidecar's alone. Profiling aids: `--saturation-only N`
 * (only the saturation phase, N tokens), `E2E_LOAD_CPU_PROF=<dir>` (profile the
 * generator too), `E2E_LOAD_DTYPE=bf16` (frames in bf16, half the bytes; f32 by
 * default), `E2E_LOAD_V8=<flags>` (V8 flags for the generator instead of the
 * harness's `--single-threaded-gc,--initial-old-space-size=128`, such as
 * `--single-threaded-gc,--trace-gc`), `E2E_EXTRA_MONITOR` (YAML appended to
 * the monitor file).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { findNatsServer } from "../src/bus/nats_server.ts";
import { quantile } from "../src/core/family.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { Logger } from "../src/shared/log.ts";
import { startMonitor } from "../src/serve/monitor.ts";
import type { BenchResult } from "./run.ts";
import { latencySplitText } from "./table.ts";
import { hostNowMs, LOAD_SHAPE } from "./e2e_load.ts";
import { FloorSubscriber } from "./e2e_floor.ts";
import { LoadGenerator } from "./e2e_load_process.ts";
import { BROKER_ENV, startBenchBroker } from "./harness.ts";
import { HostWakeMeter, hostWakeText } from "./host_wake.ts";
import { writeBenchMonitor } from "./bench_monitor.ts";
import { servePlan } from "./e2e_plan.ts";
import { percentileOfSorted } from "./samples.ts";
import { CpuMeter, cpuText } from "./process_cpu.ts";
import { rssMb, SidecarSamples } from "./e2e_sidecar.ts";
import { OpenLoop } from "./e2e_open_loop.ts";
import { pairedRow } from "./e2e_paired_row.ts";

/** Tokens sent closed-loop before the measured phases, so they time a warm process. */
const WARMUP_TOKENS = 16384;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Run the serve bench on a 768→24576 SAE: TopK (encoded in full, as TopK
 * needs) or JumpReLU with rules on 64 latents (serve encodes only those).
 * Returns an empty list when nats-server is missing.
 */
export async function benchServe(
  opts: {
    quick: boolean;
    progress: (msg: string) => void;
    architecture: "topk" | "jumprelu";
    /** Profiling aid: run only the saturation phase, with this many tokens. */
    saturationOnly?: number;
  },
): Promise<BenchResult[]> {
  const arch = opts.architecture;
  if (!await findNatsServer()) {
    opts.progress("nats-server not installed: skipping e2e/");
    return [];
  }
  const plan = opts.saturationOnly
    ? {
      saturationTokens: opts.saturationOnly,
      saturationTurns: 1,
      loads: [],
      loadSeconds: 0,
      rssSeconds: 0,
      floorLoads: [],
      pairedLoads: [],
    }
    : servePlan(arch, opts.quick);
  const name = `e2e/serve-${arch}-768x24576${arch === "jumprelu" ? "-watched64" : ""}`;
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-bench-" });
  let hostWake: HostWakeMeter | null = null;
  const server = await startBenchBroker();
  const rows: BenchResult[] = [];
  // the floors' bare subscriber, connected at the first floor row
  const floorSub = new FloorSubscriber(server.url, { rowSeconds: plan.loadSeconds });
  try {
    opts.progress(`e2e: writing the 768x24576 ${arch} SAE in SAELens layout`);
    await writeBenchMonitor(dir, server.url, arch);
    // the latencies' room for the longest row (two minutes at half load), allocated now
    const sidecar = new SidecarSamples();
    const { latencies, toSidecar, inSidecar } = sidecar;
    const outstanding = 1024;
    let creditDue = false;
    let credited = 0;
    const gen = await LoadGenerator.start(server.url);
    // who used the cores over each row: this process (the sidecar), the broker, the generator
    const cpuMeter = new CpuMeter({ broker: () => server.pid, generator: () => gen.pid });
    const monitor = await startMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`), {
      spoolDir: `${dir}/spool`,
      log: new Logger({ quiet: true }),
      controlListen: null,
      onEncoded: (frames, _latents, batch) => {
        // frame published (generator's clock) → encoded and evaluated (ours): one host clock
        const now = hostNowMs();
        const origin = performance.timeOrigin;
        for (const f of frames) {
          const sent = f.meta?.sent;
          sidecar.encoded += f.tokens;
          if (sent === undefined || !sidecar.measuring) continue;
          latencies.push(now - Number(sent));
          sidecar.paired?.push(Number(sent), now);
          const received = batch.receivedAt(f);
          if (received === undefined) {
            sidecar.splitMissing++; // counted in the row: the split then covers fewer frames
            continue;
          }
          toSidecar.push(origin + received - Number(sent));
          inSidecar.push(batch.evaluatedAt - received);
        }
        sidecar.lastEncodedAt = performance.now();
        // credit in steps of a quarter of the window: each NATS publish is a socket write that,
        // on a small machine, costs the sidecar a context switch
        if (creditDue && sidecar.encoded - credited >= outstanding / 4) {
          gen.credit(credited = sidecar.encoded);
        }
      },
    });
    const dropped = () => monitor.telemetry.total("latentwatch.tokens.dropped");
    const { tokensPerFrame, requests } = LOAD_SHAPE;
    // peak RSS of the phase running now, sampled every 200 ms
    const sampler = setInterval(
      () => sidecar.phasePeak = Math.max(sidecar.phasePeak, rssMb()),
      200,
    );
    const drain = async (published: number, deadline: number) => {
      while (sidecar.encoded < published && Date.now() < deadline) await sleep(1);
    };
    const begin = () => {
      latencies.clear();
      toSidecar.clear();
      inSidecar.clear();
      sidecar.splitMissing = 0;
      sidecar.phasePeak = rssMb();
      return {
        encoded0: sidecar.encoded,
        dropped0: dropped(),
        t0: performance.now(),
        wall0: Date.now(),
      };
    };

    // 0. warm-up (not measured): JIT, onnxruntime's first runs, the NATS buffers
    {
      creditDue = true;
      const done = await gen.run(
        { cmd: "saturation", tokens: WARMUP_TOKENS, outstanding },
        Date.now() + 30_000,
      );
      await drain(done.published, Date.now() + 30_000);
      creditDue = false;
    }

    // 1. saturation: closed loop, SATURATION_TURNS turns back to back, the median reported
    {
      const turns = plan.saturationTurns;
      opts.progress(
        `e2e: saturation, ${turns} × ${plan.saturationTokens} tokens through serve (frames of ${tokensPerFrame}, ${requests} requests, generator in its own process)`,
      );
      const { dropped0, encoded0: satEncoded0 } = begin();
      const cpu0 = cpuMeter.mark();
      const deadline = Date.now() + (opts.quick ? 30_000 : 120_000) * turns;
      const rates: number[] = [];
      for (let turn = 0; turn < turns; turn++) {
        const encoded0 = sidecar.encoded;
        const t0 = performance.now();
        creditDue = true;
        const done = await gen.run(
          { cmd: "saturation", tokens: plan.saturationTokens, outstanding },
          deadline,
        );
        await drain(done.published, deadline);
        creditDue = false;
        const secs = (sidecar.lastEncodedAt - t0) / 1000;
        rates.push((sidecar.encoded - encoded0) / secs);
        opts.progress(
          `e2e: saturation turn ${turn + 1}: ${Math.round(rates[turn])} tokens/s (${
            sidecar.encoded - encoded0
          } tokens in ${secs.toFixed(2)} s)`,
        );
      }
      const sorted = latencies.sorted(); // every turn's frames
      const row: BenchResult = {
        name: `${name}/saturation`,
        tokens_per_s: quantile(rates, 0.5), // the middle turn of three
        baseline_tokens_per_s: null,
        ratio: null,
        p50_ms: percentileOfSorted(sorted, 50),
        p99_ms: percentileOfSorted(sorted, 99),
        rss_mb: sidecar.phasePeak,
        dropped_tokens: dropped() - dropped0,
        turns,
        turns_tokens_per_s: rates,
        cpu: cpuMeter.since(cpu0, (sidecar.encoded - satEncoded0) / tokensPerFrame),
      };
      rows.push(row);
      opts.progress(
        `e2e: saturation ${Math.round(row.tokens_per_s)} tokens/s, the median of ${turns} turns (${
          rates.map((r) => Math.round(r)).join(", ")
        }; ${row.dropped_tokens} dropped)${cpuText(row.cpu)}`,
      );
    }
    const saturation = rows[0].tokens_per_s;
    // a diagnostic, off by default: under the latency rows only (their 2,000 real-time wake-ups a
    // second cost the closed loop 15-20% of its rate), and even there they disturb what they
    // measure (the two-minute row's p99 14.38 and 10.80 ms with them, 6.70 and 4.74 without)
    if (Deno.env.get("E2E_HOST_WAKE") === "1") {
      hostWake = await HostWakeMeter.start({
        maxSeconds: 1800,
        onSkip: (why) => opts.progress(`e2e: no host wake-up meter (${why})`),
      });
    }

    // 2. and 3. open loop at fixed rates; at the floor's loads the row alternates with its floor
    const openLoop = new OpenLoop({
      sidecar,
      floorSub,
      gen,
      cpuMeter,
      dropped,
      hostWake,
      saturation,
    });
    for (const f of plan.loads) {
      const matched = plan.floorLoads.includes(f);
      opts.progress(
        `e2e: open loop at ${Math.round(f * 100)}% of saturation (${
          Math.round(f * saturation)
        } tokens/s) for ${plan.loadSeconds} s${
          matched ? ", in windows alternating with its floor (a bare subscriber)" : ""
        }`,
      );
      const { row, floorRow } = await openLoop.row({
        fraction: f,
        seconds: plan.loadSeconds,
        name: `${name}/load-${Math.round(f * 100)}pct`,
        floorName: matched ? `${name}/floor-${Math.round(f * 100)}pct` : undefined,
      });
      rows.push(row);
      // no floor row after this one: the rows after run without the floor's connection
      if (!plan.floorLoads.some((g) => plan.loads.indexOf(g) > plan.loads.indexOf(f))) {
        await floorSub.close();
      }
      opts.progress(
        `e2e: ${row.name}: p50 ${row.p50_ms?.toFixed(2)} ms, p99 ${row.p99_ms?.toFixed(2)} ms${
          latencySplitText(row)
        }, ${Math.round(row.tokens_per_s)} tokens/s, generator lag p99 ${
          row.schedule_lag_p99_ms?.toFixed(2)
        } ms, alerts so far ${monitor.telemetry.total("latentwatch.alerts")}, peak RSS ${
          row.rss_mb?.toFixed(0)
        } MB${hostWakeText(row.host_wake)}${cpuText(row.cpu)}`,
      );
      if (floorRow) {
        rows.push(floorRow);
        opts.progress(
          `e2e: ${floorRow.name}: p50 ${floorRow.p50_ms?.toFixed(2)} ms, p99 ${
            floorRow.p99_ms?.toFixed(2)
          } ms (the row's p99 ${row.p99_ms?.toFixed(2)} ms: ${
            row.p99_over_floor_ms?.toFixed(2)
          } over it)${hostWakeText(floorRow.host_wake)}${cpuText(floorRow.cpu)}`,
        );
      }
    }
    // 2b. the same loads once more, a bare subscriber in its own process reading the same frames
    for (const f of plan.pairedLoads) {
      const pct = Math.round(f * 100);
      opts.progress(
        `e2e: open loop at ${pct}% of saturation for ${plan.loadSeconds} s, paired: a bare ` +
          `subscriber in a process of its own reads the same frames`,
      );
      const row = await pairedRow({
        openLoop,
        sidecar,
        natsUrl: server.url,
        saturation,
        fraction: f,
        seconds: plan.loadSeconds,
        name: `${name}/paired-${pct}pct`,
      });
      rows.push(row);
      opts.progress(
        `e2e: ${row.name}: the sidecar added p50 ${row.frame_added_p50_ms?.toFixed(2)}, p99 ${
          row.frame_added_p99_ms?.toFixed(2)
        } ms a frame over ${row.paired_frames} frames (the bare subscriber's p99 ${
          row.bare_p99_ms?.toFixed(2)
        }, the sidecar's ${row.sidecar_p99_ms?.toFixed(2)} ms)${cpuText(row.cpu)}`,
      );
    }
    if (plan.rssSeconds > 0) {
      const label = plan.rssSeconds % 60 === 0
        ? `${plan.rssSeconds / 60}min`
        : `${plan.rssSeconds}s`;
      opts.progress(`e2e: RSS over ${label} at half load, sampled every second`);
      const { row, samples } = await openLoop.row({
        fraction: 0.5,
        seconds: plan.rssSeconds,
        name: `${name}/rss-${label}`,
      });
      const first = samples[0], last = samples[samples.length - 1];
      const max = Math.max(...samples), min = Math.min(...samples);
      row.rss_mb = max;
      row.rss_samples_mb = samples.map((v) => Math.round(v * 10) / 10);
      row.rss_first_mb = first;
      row.rss_last_mb = last;
      row.rss_within_10pct = max <= 1.1 * min;
      rows.push(row);
      opts.progress(
        `e2e: RSS first ${first.toFixed(0)} MB, last ${last.toFixed(0)} MB, max ${
          max.toFixed(0)
        } MB, min ${min.toFixed(0)} MB: ${row.rss_within_10pct ? "within" : "NOT within"} 10%${
          cpuText(row.cpu)
        }`,
      );
    }
    clearInterval(sampler);
    await monitor.stop();
    await gen.quit();
    const harness = { broker_env: { ...BROKER_ENV }, generator_v8_flags: gen.v8Flags };
    for (const r of rows) r.harness = harness;
    return rows;
  } finally {
    await floorSub.close().catch(() => {});
    await server.stop();
    await hostWake?.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean" },
      arch: { type: "string", default: "jumprelu" },
      // profiling aid: only the saturation phase, with this many tokens
      "saturation-only": { type: "string" },
    },
  });
  if (values.arch !== "topk" && values.arch !== "jumprelu") {
    console.error("e2e: --arch must be topk or jumprelu");
    Deno.exit(2);
  }
  const rows = await benchServe({
    quick: values.quick ?? false,
    progress: (m) => console.error(`bench: ${m}`),
    architecture: values.arch,
    ...(values["saturation-only"] ? { saturationOnly: Number(values["saturation-only"]) } : {}),
  });
  for (const r of rows) console.log(JSON.stringify(r));
  Deno.exit(0);
}
