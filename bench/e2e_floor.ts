/**
 * The floor's bare subscriber of `bench/e2e.ts`: in the bench's process, as
 * the sidecar is, it reads the frames of {@linkcode FLOOR_MODEL} (subjects
 * the monitor does not subscribe to) and keeps only each frame's latency,
 * published → received. It reads one header and keeps nothing, so it borrows
 * its messages as the pipeline does (the connection reuses its read chunks).
 *
 * @module
 */
import { connectNatsBus, type NatsBus } from "../src/bus/nats_bus.ts";
import type { BusSubscription } from "../src/bus/bus.ts";
import { tapSubjectFilter } from "../src/core/frame/subjects.ts";
import { BENCH_HOOK, FLOOR_MODEL, hostNowMs, LOAD_SHAPE } from "./e2e_load.ts";
import { Samples } from "./samples.ts";

/** Most tokens a second a floor row is offered: half of a saturation of 150,000. */
const MOST_TOKENS_PER_S = 75_000;

/**
 * A bare subscriber, connected at the start of the first row with a floor
 * and closed after the last, so the rows before and after run without its
 * connection.
 *
 * @example
 * ```ts
 * import { FloorSubscriber } from "./e2e_floor.ts";
 * const floor = new FloorSubscriber("nats://127.0.0.1:4222", { rowSeconds: 5 });
 * // await floor.open(); … floor.measuring = true; … floor.latencies.sorted(); await floor.close();
 * ```
 */
export class FloorSubscriber {
  readonly #url: string;
  readonly #rowSeconds: number;
  #bus: NatsBus | null = null;
  #sub: BusSubscription | null = null;
  #latencies: Samples | null = null;
  /** Tokens received so far, measured or not. */
  received = 0;
  /** When the last frame came (`performance.now()`). */
  lastReceivedAt = 0;
  /** Whether a frame's latency is kept now (not while a window settles). */
  measuring = false;

  constructor(url: string, opts: { rowSeconds: number }) {
    this.#url = url;
    this.#rowSeconds = opts.rowSeconds;
  }

  /** The kept latencies (ms); empty before the first window. */
  get latencies(): Samples {
    return this.#latencies ??= new Samples(1);
  }

  /** Connect and subscribe, once. */
  async open(): Promise<void> {
    if (this.#bus) return;
    // one row's frames, allocated and touched now (see samples.ts)
    this.#latencies = new Samples(
      Math.ceil((this.#rowSeconds * MOST_TOKENS_PER_S) / LOAD_SHAPE.tokensPerFrame),
    );
    this.#bus = await connectNatsBus({ url: this.#url, name: "bench-floor" });
    this.#sub = this.#bus.subscribe(
      tapSubjectFilter(FLOOR_MODEL, BENCH_HOOK),
      (msg) => {
        const sent = msg.headers["Lw-Meta-sent"];
        if (sent !== undefined && this.measuring) {
          this.#latencies!.push(hostNowMs() - Number(sent));
        }
        this.received += LOAD_SHAPE.tokensPerFrame;
        this.lastReceivedAt = performance.now();
      },
      undefined,
      { borrows: true },
    );
    await this.#bus.flush();
  }

  /** Unsubscribe and disconnect (nothing when never opened). */
  async close(): Promise<void> {
    this.#sub?.unsubscribe();
    this.#sub = null;
    const bus = this.#bus;
    this.#bus = null;
    await bus?.close();
  }
}
