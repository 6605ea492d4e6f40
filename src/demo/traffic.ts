/**
 * A traffic generator for watching a deployment: the demo's simulated model
 * (the same one whose SAE `deno task demo` writes to `.latentwatch/demo/sae`)
 * sends the demo prompts, benign and injected in turn, as frames spread over
 * `--partitions` subjects, at `--rate` requests per second, through the
 * TypeScript tap to every server in `--url` (it fails over between them).
 * One line per second says what went out and what the tap lost.
 *
 * `deno task traffic --url nats://127.0.0.1:4222,nats://127.0.0.1:4223 --partitions 16`
 * (Ctrl-C stops it; `--seconds N` stops it after N seconds).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { connectNatsBus } from "../bus/nats_bus.ts";
import { DEMO_SIMULATOR, SimulatedModel, tokenize } from "./simulator.ts";
import { DEMO_PROMPTS } from "./demo.ts";
import { Tap } from "../tap/tap.ts";

/** What {@linkcode generateTraffic} sends. */
export interface TrafficOptions {
  url: string;
  partitions: number;
  /** Requests started per second. */
  rate: number;
  /** Stop after this long (0: until `signal` aborts). */
  seconds: number;
  /** Tokens per frame. */
  frameTokens: number;
  signal?: AbortSignal;
  /** Called once a second with the totals so far. */
  onTick?: (t: { requests: number; frames: number; tokens: number }) => void;
}

/**
 * Send the demo prompts as frames until `seconds` pass or `signal` aborts;
 * resolves with the totals.
 *
 * @example
 * ```ts
 * const sent = await generateTraffic({
 *   url: "nats://127.0.0.1:4222",
 *   partitions: 16,
 *   rate: 20,
 *   seconds: 5,
 *   frameTokens: 8,
 * });
 * sent.requests; // about 100
 * ```
 */
export async function generateTraffic(
  o: TrafficOptions,
): Promise<{ requests: number; frames: number; tokens: number }> {
  const sim = new SimulatedModel(DEMO_SIMULATOR);
  const bus = await connectNatsBus({ url: o.url, name: "latentwatch-traffic" });
  const tap = new Tap(bus, {
    model: "sim-gpt",
    hook: "blocks.6.hook_resid_post",
    partitions: o.partitions,
  });
  const prompts = DEMO_PROMPTS.map((p) => {
    const tokens = tokenize(`${p.prompt} ${p.reply}`);
    return { tokens, x: sim.activations(tokens) };
  });
  const totals = { requests: 0, frames: 0, tokens: 0 };
  const started = performance.now();
  let lastTick = started;
  const run = crypto.randomUUID().slice(0, 8);
  try {
    while (
      !o.signal?.aborted && (o.seconds <= 0 || performance.now() - started < o.seconds * 1000)
    ) {
      const { tokens, x } = prompts[totals.requests % prompts.length];
      const id = `traffic-${run}-${totals.requests}`;
      for (let pos = 0; pos < tokens.length; pos += o.frameTokens) {
        const n = Math.min(o.frameTokens, tokens.length - pos);
        tap.publish(id, pos, x.subarray(pos * sim.dModel, (pos + n) * sim.dModel), n, sim.dModel, {
          tokenText: tokens.slice(pos, pos + n),
        });
        totals.frames++;
        totals.tokens += n;
      }
      tap.end(id);
      totals.requests++;
      const due = started + (totals.requests / o.rate) * 1000;
      await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
      if (performance.now() - lastTick >= 1000) {
        lastTick = performance.now();
        o.onTick?.({ ...totals });
      }
    }
    await bus.flush().catch(() => {});
    return totals;
  } finally {
    await bus.close();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      url: { type: "string", default: "nats://127.0.0.1:4222" },
      partitions: { type: "string", default: "16" },
      rate: { type: "string", default: "20" },
      seconds: { type: "string", default: "0" },
      "frame-tokens": { type: "string", default: "8" },
    },
    strict: true,
  });
  const abort = new AbortController();
  Deno.addSignalListener("SIGINT", () => abort.abort());
  const num = (name: string, v: string) => {
    const n = Number(v);
    if (!(n >= 0) || !Number.isFinite(n)) {
      console.error(
        `traffic: --${name}: expected a non-negative number, found ${JSON.stringify(v)}`,
      );
      Deno.exit(2);
    }
    return n;
  };
  const totals = await generateTraffic({
    url: values.url!,
    partitions: num("partitions", values.partitions!),
    rate: num("rate", values.rate!) || 1,
    seconds: num("seconds", values.seconds!),
    frameTokens: num("frame-tokens", values["frame-tokens"]!) || 8,
    signal: abort.signal,
    onTick: (t) =>
      console.log(`sent ${t.requests} requests, ${t.frames} frames, ${t.tokens} tokens`),
  });
  console.log(
    `done: ${totals.requests} requests, ${totals.frames} frames, ${totals.tokens} tokens`,
  );
}
