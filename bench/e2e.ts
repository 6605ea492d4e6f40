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
 * 2. fixed loads: an open-loop generator publishes frames on a schedule at a
 *    fixed share of that rate (whatever the sidecar does), bounded in count
 *    and time, each after one second at its rate that is not measured;
 *    latency is frame published → its tokens encoded and evaluated (the
 *    pipeline's `onEncoded` hook), from the publish time each frame carries
 *    (`Lw-Meta-sent`, the host clock both processes read);
 * 3. RSS over time (JumpReLU): half load for two minutes (a 10 s row in --quick),
 *    RSS sampled every second;
 * 4. the floor (JumpReLU): the sidecar stopped, the same open loads (25 and 50%)
 *    to a bare subscriber here that only reads each frame's publish time: the
 *    transport's and the machine's own latency under the rows of phase 2.
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
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { findNatsServer } from "../src/bus/nats_server.ts";
import { quantile } from "../src/core/family.ts";
import { tapSubjectFilter } from "../src/core/frame/subjects.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { randomSae } from "../src/formats/random_sae.ts";
import { writeSaeLensFolder } from "../src/formats/saelens_writer.ts";
import { Logger } from "../src/shared/log.ts";
import { startMonitor } from "../src/serve/monitor.ts";
import type { BenchResult } from "./run.ts";
import { latencySplitText } from "./table.ts";
import { BENCH_HOOK, BENCH_MODEL, hostNowMs, LOAD_SHAPE } from "./e2e_load.ts";
import { LoadGenerator } from "./e2e_load_process.ts";
import { BROKER_ENV, startBenchBroker } from "./harness.ts";
import { HostWakeMeter, type HostWakeSummary } from "./host_wake.ts";
import { Samples } from "./samples.ts";
import { CpuMeter, cpuText } from "./process_cpu.ts";

/**
 * Write the bench's 768→24576 SAE (SAELens layout), its rules and a monitor
 * file into `dir`: TopK gets one rule (TopK is encoded in full anyway),
 * JumpReLU 64 rules on 64 latents (what serve then encodes). `extraRules`
 * is appended to the rule list (YAML, indented two spaces).
 *
 * @example
 * ```ts
 * import { writeBenchMonitor } from "./e2e.ts";
 * const dir = await Deno.makeTempDir();
 * await writeBenchMonitor(dir, "nats://127.0.0.1:4222", "jumprelu");
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
    `monitor: bench\nmodel: ${BENCH_MODEL}\nhook: ${BENCH_HOOK}\nsaes:\n  - id: bench\n    path: sae\n` +
      `policies: [rules.yaml]\nnats:\n  url: ${natsUrl}\nalerts:\n  stream: BENCH_ALERTS\n` +
      `batching:\n  max_batch_tokens: 128\n  max_wait_ms: 2\n  max_queue_tokens: 8192\n` +
      (Deno.env.get("E2E_EXTRA_MONITOR") ?? ""),
  );
}

/** Tokens sent closed-loop before the measured phases, so they time a warm process. */
const WARMUP_TOKENS = 16384;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pct(sorted: ArrayLike<number>, p: number): number | null {
  return sorted.length === 0
    ? null
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** p50 and p99 of the two halves of a frame's latency (unsorted samples, ms). */
function latencySplit(toSidecar: Samples, inSidecar: Samples) {
  const to = toSidecar.sorted(), into = inSidecar.sorted();
  return {
    to_sidecar_p50_ms: pct(to, 50),
    to_sidecar_p99_ms: pct(to, 99),
    in_sidecar_p50_ms: pct(into, 50),
    in_sidecar_p99_ms: pct(into, 99),
  };
}

/** Frames of the longest row: two minutes at half of 150,000 tokens/s, in frames of 16. */
const SAMPLES_CAPACITY = (120 * 75_000) / 16;

const rssMb = () => Deno.memoryUsage().rss / 2 ** 20;

/** The row's `host_wake` from `wall0` (epoch ms) to now; nothing without a meter. */
function hostWakeOver(
  meter: HostWakeMeter | null,
  wall0: number,
): { host_wake?: HostWakeSummary } {
  const s = meter?.summary(wall0, Date.now());
  return s ? { host_wake: s } : {};
}

/** `, host: 0.4% of wake-ups over 1 ms late (0.1% over 2), latest 3.1 ms` for a progress line. */
function hostWakeText(s: HostWakeSummary | undefined): string {
  return s === undefined
    ? ""
    : `, host: ${s.late_over_1ms_pct}% of wake-ups over 1 ms late (${s.late_over_2ms_pct}% over 2), latest ${
      s.max_late_ms.toFixed(1)
    } ms${s.policy === "fifo" ? "" : " (not real-time: contention counts too)"}`;
}

/**
 * Closed-loop saturation turns, run back to back; the row reports their median.
 * One turn is about two seconds, and on a shared 2-core host one turn in a few
 * measured half of its neighbours (45,753 tokens/s four minutes after 84,109 on
 * the same tree): the open-loop rows are shares of this figure, so a turn that
 * the host slowed would set every load below what the sidecar sustains.
 */
const SATURATION_TURNS = 3;

/** Seconds each open-loop phase runs at its rate before it is measured. */
const SETTLE_SECONDS = 1;

/** Phases of one serve bench; durations in seconds. */
interface ServePlan {
  saturationTokens: number;
  /** Closed-loop turns of `saturationTokens` each; the row reports their median. */
  saturationTurns: number;
  /** Shares of the saturation rate run open-loop, each for `loadSeconds`. */
  loads: number[];
  loadSeconds: number;
  /** Half-load RSS check duration (0: none). */
  rssSeconds: number;
  /** Shares of saturation sent to a bare subscriber (the transport's own latency). */
  floorLoads: number[];
}

function servePlan(arch: "topk" | "jumprelu", quick: boolean): ServePlan {
  // rows --quick shares with a full run measure the same way (same tokens, same
  // seconds); --quick only runs fewer load rows and a shorter, differently named RSS row
  if (arch === "topk") {
    return {
      saturationTokens: 16384,
      saturationTurns: SATURATION_TURNS,
      loads: [0.5],
      loadSeconds: 5,
      rssSeconds: 0,
      floorLoads: [],
    };
  }
  return {
    saturationTokens: 131072,
    saturationTurns: SATURATION_TURNS,
    loads: quick ? [0.25, 0.5] : [0.1, 0.25, 0.5, 0.75],
    loadSeconds: 5,
    rssSeconds: quick ? 10 : 120,
    floorLoads: [0.25, 0.5],
  };
}

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
    }
    : servePlan(arch, opts.quick);
  const name = `e2e/serve-${arch}-768x24576${arch === "jumprelu" ? "-watched64" : ""}`;
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-bench-" });
  let hostWake: HostWakeMeter | null = null;
  const server = await startBenchBroker();
  const rows: BenchResult[] = [];
  try {
    opts.progress(`e2e: writing the 768x24576 ${arch} SAE in SAELens layout`);
    await writeBenchMonitor(dir, server.url, arch);
    // room for the longest row (two minutes at half load) without growing: see samples.ts
    const latencies = new Samples(SAMPLES_CAPACITY);
    // the same latency split at the sidecar's door: published → received, received → evaluated
    const toSidecar = new Samples(SAMPLES_CAPACITY);
    const inSidecar = new Samples(SAMPLES_CAPACITY);
    let splitMissing = 0;
    let encoded = 0;
    let lastEncodedAt = 0;
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
          encoded += f.tokens;
          if (sent === undefined) continue;
          latencies.push(now - Number(sent));
          const received = batch.receivedAt(f);
          if (received === undefined) {
            splitMissing++; // counted in the row: the split then covers fewer frames
            continue;
          }
          toSidecar.push(origin + received - Number(sent));
          inSidecar.push(batch.evaluatedAt - received);
        }
        lastEncodedAt = performance.now();
        // credit in steps of a quarter of the window: each NATS publish is a socket write that,
        // on a small machine, costs the sidecar a context switch
        if (creditDue && encoded - credited >= outstanding / 4) gen.credit(credited = encoded);
      },
    });
    const dropped = () => monitor.telemetry.total("latentwatch.tokens.dropped");
    const { tokensPerFrame, requests } = LOAD_SHAPE;
    // peak RSS of the phase running now, sampled every 200 ms
    let phasePeak = 0;
    const sampler = setInterval(() => phasePeak = Math.max(phasePeak, rssMb()), 200);
    const drain = async (published: number, deadline: number) => {
      while (encoded < published && Date.now() < deadline) await sleep(1);
    };
    const begin = () => {
      latencies.clear();
      toSidecar.clear();
      inSidecar.clear();
      splitMissing = 0;
      phasePeak = rssMb();
      return { encoded0: encoded, dropped0: dropped(), t0: performance.now(), wall0: Date.now() };
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
        const encoded0 = encoded;
        const t0 = performance.now();
        creditDue = true;
        const done = await gen.run(
          { cmd: "saturation", tokens: plan.saturationTokens, outstanding },
          deadline,
        );
        await drain(done.published, deadline);
        creditDue = false;
        const secs = (lastEncodedAt - t0) / 1000;
        rates.push((encoded - encoded0) / secs);
        opts.progress(
          `e2e: saturation turn ${turn + 1}: ${Math.round(rates[turn])} tokens/s (${
            encoded - encoded0
          } tokens in ${secs.toFixed(2)} s)`,
        );
      }
      const sorted = latencies.sorted(); // every turn's frames
      const row: BenchResult = {
        name: `${name}/saturation`,
        tokens_per_s: quantile(rates, 0.5), // the middle turn of three
        baseline_tokens_per_s: null,
        ratio: null,
        p50_ms: pct(sorted, 50),
        p99_ms: pct(sorted, 99),
        rss_mb: phasePeak,
        dropped_tokens: dropped() - dropped0,
        turns,
        turns_tokens_per_s: rates,
        cpu: cpuMeter.since(cpu0, (encoded - satEncoded0) / tokensPerFrame),
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

    // 2. and 3. open loop at fixed rates
    const openLoop = async (fraction: number, secs: number, rowName: string) => {
      const rate = fraction * saturation;
      // settle at the new rate first, not measured: the row is then the steady state at its
      // load, not the end of the phase before (in --quick the 25% row follows saturation,
      // whose garbage V8 collects in the next second; in a full run it follows the 10% row)
      const settled = await gen.run(
        { cmd: "open", rate, seconds: SETTLE_SECONDS },
        Date.now() + SETTLE_SECONDS * 1000 + 30_000,
      );
      await drain(settled.published, Date.now() + 10_000);
      const { encoded0, dropped0, t0, wall0 } = begin();
      const cpu0 = cpuMeter.mark();
      const samples: number[] = [rssMb()];
      const sampleEverySecond = setInterval(() => samples.push(rssMb()), 1000);
      const done = await gen.run(
        { cmd: "open", rate, seconds: secs },
        Date.now() + secs * 1000 + 30_000,
      );
      clearInterval(sampleEverySecond);
      await drain(done.published, Date.now() + 10_000);
      const cpu = cpuMeter.since(cpu0, (encoded - encoded0) / tokensPerFrame);
      samples.push(rssMb());
      const took = (Math.max(lastEncodedAt, t0 + 1) - t0) / 1000;
      const sorted = latencies.sorted();
      const row: BenchResult = {
        name: rowName,
        tokens_per_s: (encoded - encoded0) / took,
        baseline_tokens_per_s: null,
        ratio: null,
        p50_ms: pct(sorted, 50),
        p99_ms: pct(sorted, 99),
        ...latencySplit(toSidecar, inSidecar),
        ...(splitMissing > 0 ? { split_missing_frames: splitMissing } : {}),
        rss_mb: Math.max(phasePeak, ...samples),
        offered_tokens_per_s: rate,
        load_fraction: fraction,
        dropped_tokens: dropped() - dropped0,
        schedule_lag_p99_ms: done.lagP99Ms,
        ...hostWakeOver(hostWake, wall0),
        cpu,
      };
      return { row, samples };
    };
    for (const f of plan.loads) {
      opts.progress(
        `e2e: open loop at ${Math.round(f * 100)}% of saturation (${
          Math.round(f * saturation)
        } tokens/s) for ${plan.loadSeconds} s`,
      );
      const { row } = await openLoop(
        f,
        plan.loadSeconds,
        `${name}/load-${Math.round(f * 100)}pct`,
      );
      rows.push(row);
      opts.progress(
        `e2e: ${row.name}: p50 ${row.p50_ms?.toFixed(2)} ms, p99 ${row.p99_ms?.toFixed(2)} ms${
          latencySplitText(row)
        }, ${Math.round(row.tokens_per_s)} tokens/s, generator lag p99 ${
          row.schedule_lag_p99_ms?.toFixed(2)
        } ms, alerts so far ${monitor.telemetry.total("latentwatch.alerts")}, peak RSS ${
          row.rss_mb?.toFixed(0)
        } MB${hostWakeText(row.host_wake)}${cpuText(row.cpu)}`,
      );
    }
    if (plan.rssSeconds > 0) {
      const label = plan.rssSeconds % 60 === 0
        ? `${plan.rssSeconds / 60}min`
        : `${plan.rssSeconds}s`;
      opts.progress(`e2e: RSS over ${label} at half load, sampled every second`);
      const { row, samples } = await openLoop(0.5, plan.rssSeconds, `${name}/rss-${label}`);
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
    // 4. the floor: the same open loads to a bare subscriber in this process, sidecar stopped
    const floor = await connectNatsBus({ url: server.url, name: "bench-floor" });
    let received = 0;
    // it reads one header and keeps nothing, so it borrows its messages as the pipeline does
    // (the connection then reuses its read chunks instead of driving full collections here)
    const sub = floor.subscribe(
      tapSubjectFilter(BENCH_MODEL, BENCH_HOOK),
      (msg) => {
        const sent = msg.headers["Lw-Meta-sent"];
        if (sent !== undefined) latencies.push(hostNowMs() - Number(sent));
        received += tokensPerFrame;
      },
      undefined,
      { borrows: true },
    );
    if (plan.floorLoads.length > 0) {
      // a second at the first load, not measured: the stopped monitor's clean-up and the new
      // subscription's first messages otherwise land in the first row (messages lost as a slow consumer)
      await gen.run(
        { cmd: "open", rate: plan.floorLoads[0] * saturation, seconds: 1 },
        Date.now() + 31_000,
      );
      await sleep(200);
    }
    for (const f of plan.floorLoads) {
      opts.progress(`e2e: transport floor, ${Math.round(f * 100)}% to a bare subscriber`);
      latencies.clear();
      const t0 = performance.now(), received0 = received, wall0 = Date.now();
      const cpu0 = cpuMeter.mark();
      const done = await gen.run(
        { cmd: "open", rate: f * saturation, seconds: plan.loadSeconds },
        Date.now() + plan.loadSeconds * 1000 + 30_000,
      );
      const want = received0 + done.frames * tokensPerFrame, deadline = Date.now() + 10_000;
      while (received < want && Date.now() < deadline) await sleep(1);
      const cpu = cpuMeter.since(cpu0, (received - received0) / tokensPerFrame);
      const sorted = latencies.sorted();
      rows.push({
        name: `${name}/floor-${Math.round(f * 100)}pct`,
        tokens_per_s: (received - received0) / ((performance.now() - t0) / 1000),
        baseline_tokens_per_s: null,
        ratio: null,
        p50_ms: pct(sorted, 50),
        p99_ms: pct(sorted, 99),
        rss_mb: null,
        offered_tokens_per_s: f * saturation,
        load_fraction: f,
        // not received by the deadline (a slow consumer's messages that nats-server dropped)
        dropped_tokens: want - received,
        ...hostWakeOver(hostWake, wall0),
        // "sidecar" here is the bare subscriber that stands in for it
        cpu,
      });
      const last = rows[rows.length - 1];
      opts.progress(
        `e2e: ${last.name}: p50 ${last.p50_ms?.toFixed(2)} ms, p99 ${last.p99_ms?.toFixed(2)} ms${
          hostWakeText(last.host_wake)
        }${cpuText(last.cpu)}`,
      );
    }
    sub.unsubscribe();
    await floor.close();
    await gen.quit();
    const harness = { broker_env: { ...BROKER_ENV }, generator_v8_flags: gen.v8Flags };
    for (const r of rows) r.harness = harness;
    return rows;
  } finally {
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
