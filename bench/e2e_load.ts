/**
 * The load generator of `bench/e2e.ts`, in its own process (as a model
 * server is): the TypeScript tap publishing frames of 16 tokens for 64
 * concurrent requests to a nats-server. The sidecar under test runs in the
 * parent process, which drives this one with JSON lines on stdin:
 *
 * - `{"cmd":"saturation","tokens":N,"outstanding":512}`: closed loop, at most
 *   `outstanding` tokens published and not yet encoded;
 * - `{"cmd":"open","rate":R,"seconds":S}`: open loop, frames on a schedule at
 *   R tokens/s for S seconds, whatever the sidecar does; with `"model":M`
 *   the frames name model M instead ({@linkcode FLOOR_MODEL}: frames the
 *   monitor does not subscribe to, for the bare subscriber of the floor);
 *   with `"lags":true` the phase's end reports every frame's lateness;
 * - `{"cmd":"quit"}`.
 *
 * Each phase ends with one JSON line on stdout:
 * `{"done":true,"published":P,"frames":F,"lagP99Ms":x}`: P the tokens
 * published so far to the monitor's model (the floor's not counted), F the
 * frames of this phase, x the generator's lateness against its schedule,
 * p99 (and `lagsMs`, each frame's, when asked: a row of several phases takes
 * its p99 over all of them). Every frame carries its publish time
 * as request metadata `Lw-Meta-sent` (`performance.timeOrigin + now()`, ms,
 * the host clock both processes share), so the sidecar measures frame
 * published → encoded and evaluated.
 *
 * The closed loop's credit (tokens the sidecar has encoded in all) comes as
 * core NATS messages on {@linkcode CREDIT_SUBJECT}.
 *
 * `deno run -A bench/e2e_load.ts --url nats://127.0.0.1:4222`
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { parseArgs } from "node:util";
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { Rng } from "../src/core/random.ts";
import { Tap } from "../src/tap/tap.ts";
import { percentileOfSorted } from "./samples.ts";

/** A command from the parent (`bench/e2e.ts`). */
export type LoadCommand =
  | { cmd: "saturation"; tokens: number; outstanding: number }
  | { cmd: "open"; rate: number; seconds: number; model?: string; lags?: boolean }
  | { cmd: "quit" };

/** What the generator reports at the end of a phase. */
export interface LoadPhaseDone {
  done: true;
  /** Tokens published so far to the monitor's model (not the floor's). */
  published: number;
  /** Frames of this phase, whatever their model. */
  frames: number;
  lagP99Ms: number;
  /** Each frame's lateness against its schedule (ms), when the command asked for them. */
  lagsMs?: number[];
}

/** Where the parent publishes the tokens encoded so far (closed-loop credit). */
export const CREDIT_SUBJECT = "bench.e2e.encoded";

/** The hook the bench's tap and monitor name. */
export const BENCH_HOOK = "blocks.8.hook_resid_pre";

/** The model the bench's taps name (the monitor's tap subjects follow it). */
export const BENCH_MODEL = "bench-model";

/**
 * The model of the floor's frames: the same frames, on subjects the monitor
 * does not subscribe to, read by a bare subscriber.
 */
export const FLOOR_MODEL = "bench-floor-model";

/** Shape of the generated load. */
export const LOAD_SHAPE = { tokensPerFrame: 16, requests: 64, dIn: 768 } as const;

/** Absolute time in ms on the host clock (shared by processes on one host). */
export const hostNowMs = (): number => performance.timeOrigin + performance.now();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** One turn of the event loop (due I/O runs: the client's socket writes). */
const nextTurn = () => new Promise<void>((r) => setImmediate(r));
const napCell = new Int32Array(new SharedArrayBuffer(4));
/**
 * Block this thread for `ms` (futex precision, ~0.1 ms here). Deno's timers
 * fire ~2.1 ms late on this machine, so an open loop paced by `setTimeout`
 * publishes in bursts; the generator has nothing else to do between frames.
 */
const nap = (ms: number) => Atomics.wait(napCell, 0, 0, ms);
/** Gaps longer than this wait on a timer (letting I/O run); shorter ones nap. */
const TIMER_GAP_MS = 4;

/** Lines of a byte stream (UTF-8, `\n`-separated). */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += dec.decode(chunk, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl);
      buf = buf.slice(nl + 1);
    }
  }
}

async function main(url: string): Promise<void> {
  const { tokensPerFrame, requests, dIn } = LOAD_SHAPE;
  const bus = await connectNatsBus({ url, name: "bench-load" });
  // E2E_LOAD_DTYPE: the frames' dtype (a served model's activations are often bf16)
  const dtype = (Deno.env.get("E2E_LOAD_DTYPE") ?? "f32") as "f32" | "bf16" | "f16";
  // one tap and one set of request positions per model: the monitor sees its requests'
  // positions run on without gaps while the floor's frames go to another model
  const taps = new Map<string, { tap: Tap; positions: number[] }>();
  const tapOf = (model: string) => {
    let t = taps.get(model);
    if (!t) {
      const tap = new Tap(bus, { model, hook: BENCH_HOOK, dtype });
      taps.set(model, t = { tap, positions: new Array(requests).fill(0) });
    }
    return t;
  };
  let { tap, positions } = tapOf(BENCH_MODEL);
  const monitored = tap;
  const pool = new Rng(9).fillGaussian(new Float32Array(tokensPerFrame * dIn * 8));
  let published = 0, frame = 0, encoded = 0;
  const waiting: { credit: (() => void) | null } = { credit: null };
  const publish = () => {
    const r = frame % requests;
    const off = (frame % 8) * tokensPerFrame * dIn;
    tap.publish(
      `req-${r}`,
      positions[r],
      pool.subarray(off, off + tokensPerFrame * dIn),
      tokensPerFrame,
      dIn,
      { meta: { sent: hostNowMs().toFixed(3) } },
    );
    positions[r] += tokensPerFrame;
    if (tap === monitored) published += tokensPerFrame;
    frame++;
  };
  bus.subscribe(CREDIT_SUBJECT, (msg) => {
    encoded = Math.max(encoded, Number(new TextDecoder().decode(msg.data)));
    const r = waiting.credit;
    waiting.credit = null;
    r?.();
  });
  const out = (o: unknown) => console.log(JSON.stringify(o));
  const finish = (frames0: number, lags: number[], keep = false) => {
    lags.sort((a, b) => a - b);
    const lagP99Ms = percentileOfSorted(lags, 99) ?? 0;
    const lagsMs = keep ? { lagsMs: lags.map((v) => Math.round(v * 1000) / 1000) } : {};
    out(
      {
        done: true,
        published,
        frames: frame - frames0,
        lagP99Ms,
        ...lagsMs,
      } satisfies LoadPhaseDone,
    );
  };

  const saturation = async (tokens: number, outstanding: number) => {
    const frames0 = frame, target = published + tokens;
    while (published < target) {
      if (published - encoded >= outstanding) {
        await new Promise<void>((r) => waiting.credit = r);
        continue;
      }
      publish();
      if (frame % 16 === 0) await sleep(0);
    }
    await bus.flush();
    finish(frames0, []);
  };
  const openLoop = async (rate: number, seconds: number, model: string, keepLags: boolean) => {
    ({ tap, positions } = tapOf(model));
    const interval = (tokensPerFrame / rate) * 1000;
    const frames = Math.max(1, Math.floor((rate * seconds) / tokensPerFrame));
    const frames0 = frame, t0 = performance.now(), lags: number[] = [];
    let i = 0;
    while (i < frames) {
      const due = t0 + i * interval;
      const gap = due - performance.now();
      if (gap > TIMER_GAP_MS) {
        await sleep(gap - TIMER_GAP_MS / 2);
        continue;
      }
      if (gap > 0) {
        await nextTurn();
        const left = due - performance.now();
        if (left > 0) nap(left);
        continue;
      }
      for (let n = 0; i < frames && t0 + i * interval <= performance.now() && n < 64; n++) {
        lags.push(performance.now() - (t0 + i * interval));
        publish();
        i++;
      }
      await nextTurn();
    }
    await bus.flush();
    ({ tap, positions } = tapOf(BENCH_MODEL));
    finish(frames0, lags, keepLags);
  };

  out({ ready: true });
  let phase: Promise<void> = Promise.resolve();
  for await (const line of readLines(Deno.stdin.readable)) {
    if (line.trim() === "") continue;
    const c = JSON.parse(line) as LoadCommand;
    if (c.cmd === "saturation") {
      phase = phase.then(() => saturation(c.tokens, c.outstanding));
    } else if (c.cmd === "open") {
      phase = phase.then(() =>
        openLoop(c.rate, c.seconds, c.model ?? BENCH_MODEL, c.lags ?? false)
      );
    } else break;
  }
  await phase;
  for (const t of taps.values()) t.tap.close();
  await bus.close();
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { url: { type: "string" } } });
  if (!values.url) {
    console.error("e2e_load: --url nats://host:port is required");
    Deno.exit(2);
  }
  await main(values.url);
  Deno.exit(0);
}
