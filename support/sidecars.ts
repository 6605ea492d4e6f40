/**
 * `latentwatch serve` as child processes, for the scale-out tests and bench:
 * start one, read its log lines as they come, ask its control API
 * (`/partitions`, `/metrics`).
 *
 * @module
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../src/bus/nats_server.ts";
import { SIDECAR_V8_FLAGS } from "../src/shared/v8_flags.ts";

/**
 * The CLI entry point, `src/main.ts`, as an absolute path: run as a child
 * process, never imported (so not an edge of the layering).
 */
const LATENTWATCH_MAIN = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "main.ts");

/** A `latentwatch serve` child process. */
export interface Sidecar {
  name: string;
  port: number;
  child: Deno.ChildProcess;
  /** Its stderr, line by line as it comes. */
  lines: string[];
  done: Promise<void>;
}

/** Start `latentwatch serve --monitor file` (not waiting for it). */
export function startSidecar(
  name: string,
  file: string,
  port: number,
  extraArgs: string[] = [],
): Sidecar {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      SIDECAR_V8_FLAGS,
      LATENTWATCH_MAIN,
      "serve",
      "--monitor",
      file,
      ...extraArgs,
    ],
    env: { NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const done = (async () => {
    let rest = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      lines.push(...parts);
      if (Deno.env.get("LW_SIDECAR_ECHO")) {
        for (const p of parts) console.error(`[${name}] ${p}`);
      }
    }
    if (rest) lines.push(rest);
  })();
  return { name, port, child, lines, done };
}

/** GET a control API path as JSON (null when the sidecar does not answer). */
export async function controlJson<T>(port: number, path: string): Promise<T | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    if (!res.ok) {
      await res.body?.cancel();
      return null;
    }
    return await res.json() as T;
  } catch {
    return null;
  }
}

/** The sum of a counter's series in `/metrics` (every label set), 0 when absent. */
export async function metricSum(port: number, name: string): Promise<number> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return sum;
}

/** `/partitions` of a scaled-out sidecar. */
export interface PartitionsView {
  member: string;
  owned: number[];
  members: string[];
}

/** Whether the sidecars together own every one of `partitions`, each exactly once. */
export async function partitionsSettled(sidecars: Sidecar[], partitions: number) {
  const views = await Promise.all(
    sidecars.map((s) => controlJson<PartitionsView>(s.port, "/partitions")),
  );
  if (views.some((v) => v === null)) return null;
  const owned = views.flatMap((v) => v!.owned);
  const settled = owned.length === partitions && new Set(owned).size === partitions &&
    views.every((v) => v!.members.length === sidecars.length);
  return settled ? views as PartitionsView[] : null;
}

/** A free control port for each of `n` sidecars. */
export function ports(n: number): number[] {
  return Array.from({ length: n }, () => freePort());
}
