/**
 * Replay a trace's frames into a bus as a tap would (`trace publish`): each
 * record's subject, headers and payload bytes exactly as recorded, at a
 * fixed rate or at the recorded timing (optionally sped up), bounded in
 * frames and time so that it always stops by itself. With `loop`, the
 * trace is sent again and again, request ids suffixed `~<pass>` from the
 * second pass on so a sidecar sees new requests.
 *
 * @module
 */
import { TraceConfigError } from "./format.ts";
import { TraceReader } from "./reader.ts";

/** What {@linkcode publishTrace} needs of a bus (a `Bus` from `src/bus/` fits). */
export interface FramePublisher {
  publish(subject: string, data: Uint8Array, headers?: Record<string, string>): void;
  /** Resolves once everything published so far reached the server. */
  flush(): Promise<void>;
}

/** Default bounds: a publish always ends by itself. */
export const PUBLISH_DEFAULTS = { rate: 100, maxSeconds: 60, maxFrames: 1_000_000 } as const;

/** Options of {@linkcode publishTrace}. */
export interface PublishOptions {
  /** Frames per second (default {@linkcode PUBLISH_DEFAULTS}.rate); not with `timing`. */
  rate?: number;
  /** `"recorded"`: keep the recorded gaps between frames, divided by `speed`. */
  timing?: "recorded";
  /** Speed-up of the recorded timing (default 1). */
  speed?: number;
  maxFrames?: number;
  maxSeconds?: number;
  loop?: boolean;
  /** Called about once a second with the running summary. */
  onProgress?: (s: PublishSummary) => void;
  /** Stops the publish (counted as `stoppedBy: "signal"`). */
  signal?: AbortSignal;
}

/** What a publish did. */
export interface PublishSummary {
  frames: number;
  /** Payload bytes published. */
  bytes: number;
  /** Passes begun over the trace (1 without `loop`). */
  passes: number;
  elapsedMs: number;
  /** Frames per second achieved. */
  rate: number;
  stoppedBy: "end" | "max-frames" | "max-seconds" | "signal";
}

function positive(field: string, v: number | undefined, integer = false): void {
  if (v === undefined) return;
  if (!(Number.isFinite(v) && v > 0) || (integer && !Number.isSafeInteger(v))) {
    throw new TraceConfigError(field, integer ? "an integer ≥ 1" : "a number > 0", v);
  }
}

/** A request id for pass `pass` (1-based): unchanged on the first. */
export function passRequestId(id: string, pass: number): string {
  return pass === 1 ? id : `${id}~${pass}`;
}

/**
 * Publish the frames of the trace at `path` to `bus`, paced and bounded.
 *
 * @example
 * ```ts
 * import { connectNatsBus } from "../bus/nats_bus.ts";
 * const bus = await connectNatsBus({ url: "nats://127.0.0.1:4222" });
 * const s = await publishTrace("demo.trace.gz", bus, { rate: 500, maxSeconds: 10 });
 * console.log(s.frames, s.rate);
 * await bus.close();
 * ```
 *
 * @throws {TraceConfigError} for a bad rate, speed or bound
 */
export async function publishTrace(
  path: string,
  bus: FramePublisher,
  opts: PublishOptions = {},
): Promise<PublishSummary> {
  if (opts.timing !== undefined && opts.rate !== undefined) {
    throw new TraceConfigError("timing", "either a rate or the recorded timing", "both");
  }
  if (opts.speed !== undefined && opts.timing !== "recorded") {
    throw new TraceConfigError("speed", "only with the recorded timing", opts.speed);
  }
  positive("rate", opts.rate);
  positive("speed", opts.speed);
  positive("max frames", opts.maxFrames, true);
  positive("max seconds", opts.maxSeconds);
  const rate = opts.rate ?? PUBLISH_DEFAULTS.rate;
  const speed = opts.speed ?? 1;
  const maxFrames = opts.maxFrames ?? PUBLISH_DEFAULTS.maxFrames;
  const maxMs = (opts.maxSeconds ?? PUBLISH_DEFAULTS.maxSeconds) * 1000;
  const start = performance.now();
  const s: PublishSummary = {
    frames: 0,
    bytes: 0,
    passes: 0,
    elapsedMs: 0,
    rate: 0,
    stoppedBy: "end",
  };
  const update = () => {
    s.elapsedMs = performance.now() - start;
    s.rate = s.elapsedMs > 0 ? s.frames / (s.elapsedMs / 1000) : 0;
    return s;
  };
  let lastProgress = start;
  /** Due time (ms after start) of the previous pass's last frame, for recorded timing. */
  let passBase = 0;
  let lastDue = 0;
  /** Wait until `due` (ms after start); why to stop instead, or null. */
  const waitUntilDue = async (due: number): Promise<PublishSummary["stoppedBy"] | null> => {
    for (;;) {
      const now = performance.now() - start;
      if (now >= maxMs) return "max-seconds";
      if (opts.signal?.aborted) return "signal";
      if (now >= due) return null;
      await sleep(Math.min(due - now, maxMs - now, 250));
    }
  };
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        opts.signal?.removeEventListener("abort", done);
        clearTimeout(t);
        resolve();
      }
      opts.signal?.addEventListener("abort", done, { once: true });
    });

  outer: for (;;) {
    s.passes++;
    const reader = await TraceReader.open(path);
    let t0: number | null = null;
    let any = false;
    try {
      for await (const rec of reader) {
        any = true;
        if (opts.signal?.aborted || s.frames >= maxFrames) {
          s.stoppedBy = opts.signal?.aborted ? "signal" : "max-frames";
          break outer;
        }
        t0 ??= rec.receivedAt;
        const due = opts.timing === "recorded"
          ? passBase + (rec.receivedAt - t0) / speed
          : (s.frames * 1000) / rate;
        lastDue = due;
        const why = await waitUntilDue(due);
        if (why !== null) {
          s.stoppedBy = why;
          break outer;
        }
        let headers = rec.headers;
        if (s.passes > 1) {
          headers = { ...rec.headers };
          for (const k of Object.keys(headers)) {
            if (k.toLowerCase() === "lw-request-id") {
              headers[k] = passRequestId(headers[k], s.passes);
            }
          }
        }
        bus.publish(rec.subject, rec.data, headers);
        s.frames++;
        s.bytes += rec.data.byteLength;
        if (s.frames % 256 === 0) await bus.flush();
        if (opts.onProgress && performance.now() - lastProgress >= 1000) {
          lastProgress = performance.now();
          opts.onProgress(update());
        }
      }
    } finally {
      await reader.close();
    }
    // a trace of no frames would loop forever doing nothing
    if (!opts.loop || !any) break;
    passBase = lastDue + (opts.timing === "recorded" ? 1 / speed : 0);
  }
  await bus.flush();
  return update();
}

/** The line `trace publish` prints for a (running or final) summary. */
export function publishSummaryText(s: PublishSummary): string {
  const mb = s.bytes / 1e6;
  return `${s.frames} frames, ${mb.toFixed(mb < 10 ? 2 : 1)} MB, ${
    (s.elapsedMs / 1000).toFixed(1)
  } s, ${s.rate.toFixed(1)} frames/s` + (s.passes > 1 ? `, pass ${s.passes}` : "");
}
