/**
 * `latentwatch trace export|publish`: take a request out of a trace (its
 * activations as `.npy`, its frames or its latents as JSON lines), or replay
 * a trace's frames into a NATS server as a tap would (`docs/traces.md`).
 *
 * @module
 */
import { writeNpy } from "../formats/npy.ts";
import { Logger } from "../shared/log.ts";
import {
  frameLine,
  listTraceRequests,
  requestActivations,
  requestFrames,
  requestLatents,
} from "../traces/export.ts";
import { PUBLISH_DEFAULTS, publishSummaryText, publishTrace } from "../traces/publish.ts";
import { commandFailed, loadMonitorAt, parseCommandArgs, usageError } from "./common.ts";

const EXPORT_USAGE =
  `usage: latentwatch trace export <trace> --request <id> [--out <file>] [--format npy|frames|latents] [--monitor <file>]
       latentwatch trace export <trace> --list

  --list             the trace's requests: id, frames, tokens, first and last receive time
  --request <id>     the request to export
  --format npy       (default) its activations, tokens × d_in float32 in token order, as .npy
                     (f16/bf16 frames widened exactly as the sidecar does); needs --out
  --format frames    one JSON line per frame: seq, position, tokens, phase, token text/ids, …
  --format latents   one JSON line per token {position, token, latents: {sae: [[index, value], …]}}
                     from the SAEs of --monitor <file>
  --out <file>       where to write (JSON lines go to stdout without it)

  Exit status: 0 done, 1 unreadable trace or unknown request, 2 bad usage.`;

const PUBLISH_USAGE =
  `usage: latentwatch trace publish <trace> --url nats://... [--rate <frames/s> | --timing recorded]
         [--speed <x>] [--max-frames N] [--max-seconds S] [--loop] [--quiet]

  Replay the trace's frames into NATS as a tap would: the recorded subjects, headers and payloads.
  --rate <n>          frames per second (default ${PUBLISH_DEFAULTS.rate})
  --timing recorded   keep the recorded gaps between frames (--speed <x> divides them)
  --max-frames N      stop after N frames (default ${PUBLISH_DEFAULTS.maxFrames})
  --max-seconds S     stop after S seconds (default ${PUBLISH_DEFAULTS.maxSeconds})
  --loop              send the trace again and again (request ids get "~<pass>" from pass 2)

  Progress once a second and a summary go to stderr.
  Exit status: 0 done, 1 unreadable trace or no server, 2 bad usage.`;

/**
 * Run `trace ...` and return the exit code.
 *
 * @example
 * ```ts
 * await runTraceCommand(["export", ".latentwatch/demo/demo.trace.gz", "--list"]);
 * ```
 */
export async function runTraceCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "export") return await exportCommand(rest);
  if (sub === "publish") return await publishCommand(rest);
  return usageError(
    "trace",
    `${EXPORT_USAGE}\n\n${PUBLISH_USAGE}`,
    `expected export or publish, found ${JSON.stringify(sub ?? "nothing")}`,
  );
}

async function exportCommand(args: string[]): Promise<number> {
  const name = "trace export";
  const parsed = parseCommandArgs(name, EXPORT_USAGE, args, {
    request: { type: "string" },
    out: { type: "string", short: "o" },
    format: { type: "string" },
    monitor: { type: "string" },
    list: { type: "boolean" },
  });
  if (typeof parsed === "number") return parsed;
  const { values: v, positionals } = parsed;
  if (positionals.length !== 1) return usageError(name, EXPORT_USAGE, "expected one trace");
  const path = positionals[0];
  if (v.list) {
    if (v.request) {
      return usageError(name, EXPORT_USAGE, "expected --list or --request, found both");
    }
    try {
      const { requests, records, unreadable } = await listTraceRequests(path);
      for (const r of requests) {
        console.log(
          `${r.id}\t${r.frames} frames\t${r.tokens} tokens\t${new Date(r.first).toISOString()}\t${
            new Date(r.last).toISOString()
          }`,
        );
      }
      console.error(
        `${name}: ${requests.length} request(s) in ${records} record(s)` +
          (unreadable ? `, ${unreadable} record(s) without a request id or shape` : ""),
      );
    } catch (err) {
      return commandFailed(name, err);
    }
    return 0;
  }
  if (!v.request) return usageError(name, EXPORT_USAGE, "expected --request <id> or --list");
  const format = v.format ?? "npy";
  if (format !== "npy" && format !== "frames" && format !== "latents") {
    return usageError(
      name,
      EXPORT_USAGE,
      `expected --format npy, frames or latents, found ${JSON.stringify(format)}`,
    );
  }
  if (format === "npy" && !v.out) {
    return usageError(name, EXPORT_USAGE, "expected --out <file.npy> for --format npy");
  }
  if (format === "latents" && !v.monitor) {
    return usageError(name, EXPORT_USAGE, "expected --monitor <file> for --format latents");
  }
  // the file is created only once there is something to write, and removed on a failure
  let out: Deno.FsFile | null = null;
  const open = async () =>
    out ??= await Deno.open(v.out!, { write: true, create: true, truncate: true });
  const enc = new TextEncoder();
  const writeLine = async (o: unknown) => {
    const line = enc.encode(JSON.stringify(o) + "\n");
    if (v.out) await (await open()).write(line);
    else await Deno.stdout.write(line);
  };
  try {
    if (format === "npy") {
      const a = await requestActivations(path, v.request);
      await (await open()).write(writeNpy(a.data, [a.tokens, a.dIn], "f32"));
      console.error(
        `${name}: ${v.request}: ${a.tokens} tokens × ${a.dIn} from ${a.frames} frame(s)` +
          (a.repeated ? ` (${a.repeated} re-sent frame(s) left out)` : "") + ` → ${v.out}`,
      );
    } else if (format === "frames") {
      const { frames, repeated } = await requestFrames(path, v.request);
      for (const f of frames) await writeLine(frameLine(f));
      console.error(
        `${name}: ${v.request}: ${frames.length} frame(s)` +
          (repeated ? ` (${repeated} re-sent frame(s) left out)` : ""),
      );
    } else {
      const monitor = await loadMonitorAt(v.monitor!, {
        log: new Logger({ quiet: true }),
        evidence: false,
      });
      let tokens = 0;
      try {
        for await (const t of requestLatents(monitor, path, v.request)) {
          await writeLine(t);
          tokens++;
        }
      } finally {
        await monitor.close();
      }
      console.error(`${name}: ${v.request}: ${tokens} token(s)`);
    }
  } catch (err) {
    if (out) {
      (out as Deno.FsFile).close();
      out = null;
      await Deno.remove(v.out!).catch(() => {});
    }
    return commandFailed(name, err);
  } finally {
    (out as Deno.FsFile | null)?.close();
  }
  return 0;
}

function numberFlag(v: string | undefined, flag: string): number | undefined | string {
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n : `expected ${flag} > 0, found ${JSON.stringify(v)}`;
}

async function publishCommand(args: string[]): Promise<number> {
  const name = "trace publish";
  const parsed = parseCommandArgs(name, PUBLISH_USAGE, args, {
    url: { type: "string" },
    rate: { type: "string" },
    timing: { type: "string" },
    speed: { type: "string" },
    "max-frames": { type: "string" },
    "max-seconds": { type: "string" },
    loop: { type: "boolean" },
    quiet: { type: "boolean", short: "q" },
  });
  if (typeof parsed === "number") return parsed;
  const { values: v, positionals } = parsed;
  if (positionals.length !== 1 || !v.url) {
    return usageError(name, PUBLISH_USAGE, "expected one trace and --url nats://host:port");
  }
  if (v.timing !== undefined && v.timing !== "recorded") {
    return usageError(
      name,
      PUBLISH_USAGE,
      `expected --timing recorded, found ${JSON.stringify(v.timing)}`,
    );
  }
  if (v.timing && v.rate) {
    return usageError(name, PUBLISH_USAGE, "expected --rate or --timing, found both");
  }
  if (v.speed && !v.timing) {
    return usageError(name, PUBLISH_USAGE, "expected --speed with --timing recorded");
  }
  const nums: Record<string, number | undefined> = {};
  for (
    const [k, flag] of [["rate", "--rate"], ["speed", "--speed"], ["max-frames", "--max-frames"], [
      "max-seconds",
      "--max-seconds",
    ]] as const
  ) {
    const n = numberFlag(v[k], flag);
    if (typeof n === "string") return usageError(name, PUBLISH_USAGE, n);
    nums[k] = n;
  }
  if (nums["max-frames"] !== undefined && !Number.isSafeInteger(nums["max-frames"])) {
    return usageError(
      name,
      PUBLISH_USAGE,
      `expected --max-frames an integer, found ${v["max-frames"]}`,
    );
  }
  const note = (s: string) => {
    if (!v.quiet) console.error(s);
  };
  const { connectNatsBus } = await import("../bus/nats_bus.ts");
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  let bus;
  try {
    await Deno.stat(positionals[0]); // a missing trace fails before connecting
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      bus = await Promise.race([
        connectNatsBus({ url: v.url, name: "latentwatch-trace-publish", probe: { intervalMs: 0 } }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`expected a NATS server at ${v.url}, found none within 10 s`)),
            10_000,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  } catch (err) {
    return commandFailed(name, err);
  }
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const s = await publishTrace(positionals[0], bus, {
      ...(nums.rate !== undefined ? { rate: nums.rate } : {}),
      ...(v.timing ? { timing: "recorded" as const } : {}),
      ...(nums.speed !== undefined ? { speed: nums.speed } : {}),
      ...(nums["max-frames"] !== undefined ? { maxFrames: nums["max-frames"] } : {}),
      ...(nums["max-seconds"] !== undefined ? { maxSeconds: nums["max-seconds"] } : {}),
      loop: v.loop ?? false,
      signal: stop.signal,
      onProgress: (p) => note(`${name}: ${publishSummaryText(p)}`),
    });
    note(`${name}: done (${s.stoppedBy}): ${publishSummaryText(s)}`);
  } catch (err) {
    return commandFailed(name, err);
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    await bus.close();
  }
  return 0;
}
