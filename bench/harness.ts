/**
 * How the end-to-end and gating benches set up what is not the sidecar: the
 * broker and the load generator, both on the machine the sidecar runs on.
 * They are set to disturb that machine as little as they can, so the rows
 * measure the sidecar more than its neighbours (docs/performance-history.md,
 * "Sixteenth sitting"); every row records them (`harness`).
 *
 * - **The broker gets one Go processor** (`GOMAXPROCS=1`): on a 2-core host
 *   shared with the generator and the sidecar, a second one only adds
 *   hand-offs between cores. A native C publisher and subscriber through
 *   nats-server 2.9.10, 2,940 frames of 49 KB a second: p99 2.1–3.3 ms with
 *   the default, 0.36–0.85 ms with one.
 * - **The broker's Go runtime keeps its monitor thread awake**
 *   (`GODEBUG=schedtrace=2147483647`): with every Go processor idle between
 *   two messages, Go's monitor thread (sysmon) sleeps on a futex, and the
 *   thread that takes the next message wakes it (a futex wake and a second
 *   thread on a vCPU, in every pass). A schedule trace of any period keeps it
 *   out of that sleep; this period (the largest, about 24.8 days) prints a
 *   line to stderr only once the host's monotonic clock passes it. A gated
 *   round at eight requests: the broker's context switches 9,853 → 3,338 a
 *   second, a pass's read to its write 33 → 17 µs at p50, the gated step's
 *   added p50 0.479–0.617 → 0.430–0.464 ms (docs/performance-history.md,
 *   "Thirty-third sitting").
 * - **The generator's V8 collects on its own thread** (`--single-threaded-gc`):
 *   its tap copies every frame, and V8's helper threads then mark on the
 *   second core for tens of milliseconds at a time. The same frames from the
 *   TypeScript generator to the C subscriber: p99 2.6–3.5 ms with the helper
 *   threads, 1.6–1.7 ms without.
 * - **The generator starts with room in its old generation**
 *   (`--initial-old-space-size=128`, MB): its heap holds about 10 MB, and V8
 *   sets the limit that starts a full collection from that size plus the
 *   ArrayBuffers it has handed out, which each frame adds about 100 KB to
 *   (the tap's copy, the client's write buffer). The generator then ran a
 *   full collection every 60–100 ms, and each one's final pause (1.2–2.5 ms)
 *   came in the event-loop turn between a frame's publish time and its socket
 *   write. With the room, scavenges free those buffers first. The floor row
 *   at a quarter of saturation: p99 0.79–2.54 ms in six runs without it,
 *   0.30–0.89 ms in six with it (docs/performance-history.md, "Seventeenth sitting").
 *   A model server's own heap is far larger than this generator's.
 *
 * @module
 */
import { type NatsServerProcess, startNatsServer } from "../src/bus/nats_server.ts";

/** Variables the benches add to nats-server's environment. */
export const BROKER_ENV: Readonly<Record<string, string>> = {
  GOMAXPROCS: "1",
  GODEBUG: "schedtrace=2147483647",
};

/** V8 flags of the end-to-end bench's load generator, unless `E2E_LOAD_V8` names others. */
export const GENERATOR_V8_FLAGS = "--single-threaded-gc,--initial-old-space-size=128";

/** What a row says about the harness it ran on. */
export interface HarnessRecord {
  broker_env: Record<string, string>;
  generator_v8_flags?: string;
}

/**
 * Start the benches' broker: nats-server on a free loopback port with
 * {@linkcode BROKER_ENV}.
 *
 * @example
 * ```ts
 * import { startBenchBroker } from "./harness.ts";
 * const broker = await startBenchBroker();
 * await broker.stop();
 * ```
 */
export function startBenchBroker(): Promise<NatsServerProcess> {
  return startNatsServer({ env: { ...BROKER_ENV } });
}

/**
 * The generator's V8 flags: `given` (by default `E2E_LOAD_V8`, a profiling
 * aid such as `--trace-gc`) when set, else {@linkcode GENERATOR_V8_FLAGS}.
 *
 * @example
 * ```ts
 * import { generatorV8Flags } from "./harness.ts";
 * generatorV8Flags(""); // "--single-threaded-gc,--initial-old-space-size=128"
 * generatorV8Flags("--trace-gc"); // "--trace-gc"
 * ```
 */
export function generatorV8Flags(given = Deno.env.get("E2E_LOAD_V8")): string {
  return given !== undefined && given !== "" ? given : GENERATOR_V8_FLAGS;
}
