/**
 * Policy compile time for chains of 250, 1,000, 2,000 and 10,000 macros
 * (`m_i = any(m_{i-1}, latent i)`, one rule using the last: the stress case
 * of macro resolution), parse and compile apart, and the slowest `/healthz`
 * answer while a monitor hot-reloads the largest chain. Run with
 * `deno run -A bench/policy_compile.ts`.
 *
 * @module
 */
import type { BenchResult } from "./run.ts";
import { MemoryBus } from "../src/bus/memory_bus.ts";
import { parsePolicyFileDef } from "../src/config/policy_file.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { compilePolicySet } from "../src/core/policy/compile.ts";
import { macroChainYaml } from "../src/core/policy/test_helpers.ts";
import { buildDemoSae, SimulatedModel } from "../src/demo/simulator.ts";
import { writeSaeLensFolder } from "../src/formats/saelens_writer.ts";
import { Logger } from "../src/shared/log.ts";
import { startMonitor } from "../src/serve/monitor.ts";

/** One measurement. */
export interface CompileTiming {
  macros: number;
  parse_ms: number;
  compile_ms: number;
}

/**
 * Parse and compile time of a chain of each length (best of `repeat`).
 *
 * @example
 * ```ts
 * const rows = benchCompile([250, 1000]);
 * ```
 */
export function benchCompile(lengths: number[], repeat = 3): CompileTiming[] {
  return lengths.map((n) => {
    const text = macroChainYaml(n);
    let parse = Infinity;
    let compile = Infinity;
    for (let i = 0; i < repeat; i++) {
      const t0 = performance.now();
      const def = parsePolicyFileDef(text, "chain.yaml");
      const t1 = performance.now();
      compilePolicySet([def], new Map([["res", { kind: "sae", dSae: n }]]));
      const t2 = performance.now();
      parse = Math.min(parse, t1 - t0);
      compile = Math.min(compile, t2 - t1);
    }
    return { macros: n, parse_ms: Math.round(parse), compile_ms: Math.round(compile) };
  });
}

/**
 * Reload a chain of `n` macros into a running monitor while polling
 * `/healthz` every 10 ms: the reload's duration and the slowest answer.
 *
 * @example
 * ```ts
 * const { max_healthz_ms } = await benchReloadLatency(10_000);
 * ```
 */
export async function benchReloadLatency(
  n: number,
): Promise<{ reload_ms: number; polls: number; max_healthz_ms: number }> {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-bench-reload-" });
  const dSae = 512;
  await writeSaeLensFolder(`${dir}/sae`, buildDemoSae(new SimulatedModel({ dModel: 32 }), dSae));
  await Deno.writeTextFile(`${dir}/p.yaml`, "version: 2\nrules: []\n");
  await Deno.writeTextFile(
    `${dir}/monitor.yaml`,
    "monitor: b\nmodel: m\nhook: h\nsaes:\n  - id: res\n    path: sae\npolicies: [p.yaml]\n" +
      "nats:\n  url: nats://127.0.0.1:1\nalerts:\n  stream: B\n",
  );
  const bus = new MemoryBus();
  const monitor = await startMonitor(await loadMonitorConfig(`${dir}/monitor.yaml`), {
    bus,
    spoolDir: `${dir}/spool`,
    log: new Logger({ write: () => {} }),
    controlListen: "127.0.0.1:0",
  });
  try {
    const url = `http://127.0.0.1:${monitor.controlAddr!.port}/healthz`;
    // warm the worker up with a small reload first
    await monitor.reload();
    await Deno.writeTextFile(`${dir}/p.yaml`, macroChainYaml(n, { dSae }));
    let done = false;
    const t0 = performance.now();
    const reload = monitor.reload().finally(() => done = true);
    const lat: number[] = [];
    while (!done) {
      const s = performance.now();
      await (await fetch(url)).text();
      lat.push(performance.now() - s);
      await new Promise((r) => setTimeout(r, 10));
    }
    const result = await reload;
    if (!result.ok) throw new Error(result.error);
    return {
      reload_ms: Math.round(performance.now() - t0),
      polls: lat.length,
      max_healthz_ms: Number(Math.max(...lat).toFixed(1)),
    };
  } finally {
    await monitor.stop();
    await bus.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Rows of the compile and reload figures for `bench/run.ts` (`tokens_per_s` is 0 on them). */
export async function benchPolicyCompile(
  opts: { quick: boolean; progress?: (s: string) => void },
): Promise<BenchResult[]> {
  const lengths = opts.quick ? [250, 1000, 2000] : [250, 1000, 2000, 10_000];
  opts.progress?.(`policy compile: chains of ${lengths.join(", ")} macros`);
  const rows: BenchResult[] = benchCompile(lengths, 3).map((r) => ({
    ...EMPTY_ROW,
    name: `policy/compile-chain-${r.macros}`,
    parse_ms: r.parse_ms,
    compile_ms: r.compile_ms,
  }));
  const n = lengths[lengths.length - 1];
  opts.progress?.(`policy reload of a ${n}-macro chain while /healthz is polled`);
  const r = await benchReloadLatency(n);
  rows.push({
    ...EMPTY_ROW,
    name: `policy/reload-chain-${n}`,
    reload_ms: r.reload_ms,
    healthz_polls: r.polls,
    max_healthz_ms: r.max_healthz_ms,
  });
  return rows;
}

const EMPTY_ROW = {
  tokens_per_s: 0,
  baseline_tokens_per_s: null,
  ratio: null,
  p50_ms: null,
  p99_ms: null,
  rss_mb: null,
};

if (import.meta.main) {
  const lengths = [250, 1000, 2000, 10_000];
  for (const r of benchCompile(lengths)) {
    console.log(
      `policy/compile-chain-${r.macros}: parse ${r.parse_ms} ms, compile ${r.compile_ms} ms`,
    );
  }
  const r = await benchReloadLatency(10_000);
  console.log(
    `policy/reload-chain-10000: reload ${r.reload_ms} ms, ${r.polls} /healthz polls, ` +
      `slowest ${r.max_healthz_ms} ms`,
  );
}
