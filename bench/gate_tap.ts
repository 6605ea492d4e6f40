/**
 * The model-server side of `bench/gate.ts`, in its own process (as a model
 * server is): TypeScript taps taking decode steps of one token through a
 * real nats-server, `concurrency` requests at a time, first ungated (publish
 * and go on), then gated (each step waits for the sidecar's verdict). For
 * each concurrency and mode it prints one JSON line
 * `{"concurrency":C,"gated":bool,"ms":[...]}` with every step's duration,
 * sorted.
 *
 * `deno run -A bench/gate_tap.ts --url nats://127.0.0.1:4222 --steps 2000 --deadline-ms 60000`
 *
 * @module
 */
import { parseArgs } from "node:util";
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { Rng } from "../src/core/random.ts";
import { Tap } from "../src/tap/tap.ts";
import { BENCH_HOOK, BENCH_MODEL } from "./e2e_load.ts";

/** One line of this process's output. */
export interface GateTimings {
  concurrency: number;
  gated: boolean;
  /** Each step's duration in ms, sorted. */
  ms: number[];
}

/** Untimed decode steps per request before the timed ones (JIT, first subscriptions). */
const WARMUP_STEPS = 50;

async function main(url: string, steps: number, deadlineMs: number): Promise<void> {
  const dIn = 768;
  const bus = await connectNatsBus({ url, name: "bench-gate-tap" });
  const hook = BENCH_HOOK; // bench/gate.ts's floor pass answers this model and hook
  const gated = new Tap(bus, {
    model: BENCH_MODEL,
    hook,
    name: "bench-gated",
    gate: { deadlineMs: 1000, onTimeout: "open" },
  });
  const ungated = new Tap(bus, { model: BENCH_MODEL, hook, name: "bench-ungated" });
  gated.enableSteering(dIn);
  ungated.enableSteering(dIn);
  const pool = new Rng(3).fillGaussian(new Float32Array(64 * dIn));
  for (const concurrency of [1, 8]) {
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
      // let the sidecar finish the ungated frames before the next phase starts
      await new Promise((r) => setTimeout(r, 300));
      times.sort((a, b) => a - b);
      const line: GateTimings = { concurrency, gated: tap === gated, ms: times };
      console.log(JSON.stringify(line));
    }
  }
  gated.close();
  ungated.close();
  await bus.close();
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      url: { type: "string" },
      steps: { type: "string", default: "2000" },
      "deadline-ms": { type: "string", default: "60000" },
    },
  });
  if (!values.url) {
    console.error("gate_tap: --url nats://host:port is required");
    Deno.exit(2);
  }
  await main(values.url, Number(values.steps), Number(values["deadline-ms"]));
  Deno.exit(0);
}
