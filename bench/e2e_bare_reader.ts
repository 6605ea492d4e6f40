/**
 * The paired rows' bare subscriber (`e2e_paired.ts`): a process of its own,
 * as a second consumer of the model's frames would be, that reads the frames
 * the sidecar reads and keeps each one's publish time and the time it
 * arrived. It reads one header and keeps nothing else, so it borrows its
 * messages as the pipeline does.
 *
 * As a script: `deno run -A bench/e2e_bare_reader.ts <nats-url> <out-file>`
 * prints `ready` once subscribed; on `stop` (a line on stdin) it writes its
 * pairs to `out-file` as raw f64 values, prints `done <pairs> <overflow>` and
 * exits. {@linkcode BareReader} is the parent's handle on it.
 *
 * @module
 */
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { tapSubjectFilter } from "../src/core/frame/subjects.ts";
import { generatorV8Flags } from "./harness.ts";
import { BENCH_HOOK, BENCH_MODEL, hostNowMs, LOAD_SHAPE, readLines } from "./e2e_load.ts";
import { PairLog } from "./e2e_paired.ts";

/** Room for 30 s of frames at 75,000 tokens/s (half of a saturation of 150,000). */
const CAPACITY = Math.ceil((30 * 75_000) / LOAD_SHAPE.tokensPerFrame);

/** The bare subscriber failed to start or to hand back its pairs. */
export class BareReaderError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BareReaderError";
  }
}

/**
 * The parent's handle on a running bare subscriber.
 *
 * @example
 * ```ts
 * import { BareReader } from "./e2e_bare_reader.ts";
 * const reader = await BareReader.start("nats://127.0.0.1:4222");
 * // … frames published …
 * const { pairs, overflow } = await reader.stop(); // [sent, received, …]
 * ```
 */
export class BareReader {
  readonly #child: Deno.ChildProcess;
  readonly #lines: AsyncGenerator<string>;
  readonly #out: string;
  #stopped = false;

  private constructor(child: Deno.ChildProcess, out: string) {
    this.#child = child;
    this.#lines = readLines(child.stdout);
    this.#out = out;
  }

  /**
   * Spawn it on `natsUrl` (with the generator's V8 flags) and wait until it
   * is subscribed, at most `readyMs`.
   */
  static async start(natsUrl: string, { readyMs = 20_000 } = {}): Promise<BareReader> {
    const out = await Deno.makeTempFile({ prefix: "lw-bare-reader-" });
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        `--v8-flags=${generatorV8Flags()}`,
        new URL(import.meta.url).pathname,
        natsUrl,
        out,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = new BareReader(child, out);
    const first = await reader.#nextLine(readyMs);
    if (first !== '"ready"') {
      await reader.#abandon();
      throw new BareReaderError(`expected "ready" from the bare subscriber, found ${first}`);
    }
    return reader;
  }

  /**
   * Stop it and take its pairs (`[sent, received, …]`, host ms) and how many
   * found no room, waiting at most `doneMs` for it to hand them over.
   */
  async stop({ doneMs = 20_000 } = {}): Promise<{ pairs: Float64Array; overflow: number }> {
    if (this.#stopped) {
      throw new BareReaderError("expected a running bare subscriber, found it stopped");
    }
    this.#stopped = true;
    try {
      const writer = this.#child.stdin.getWriter();
      await writer.write(new TextEncoder().encode("stop\n"));
      await writer.close();
      const line = await this.#nextLine(doneMs);
      const m = /^"done (\d+) (\d+)"$/.exec(line);
      if (!m) {
        throw new BareReaderError(
          `expected "done <pairs> <overflow>" from the bare subscriber, found ${line}`,
        );
      }
      const bytes = await Deno.readFile(this.#out);
      if (bytes.byteLength !== 16 * Number(m[1])) {
        throw new BareReaderError(
          `expected ${m[1]} pairs (${
            16 * Number(m[1])
          } bytes) in ${this.#out}, found ${bytes.byteLength} bytes`,
        );
      }
      // a view needs 8-byte alignment; a copy has it
      const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
      const pairs = new Float64Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 8);
      return { pairs, overflow: Number(m[2]) };
    } finally {
      await this.#abandon();
    }
  }

  /** The next line it printed (quoted), `its end`, or `nothing in N ms`. */
  async #nextLine(ms: number): Promise<string> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = Symbol("late");
    const next = await Promise.race([
      this.#lines.next(),
      new Promise<typeof late>((r) => timer = setTimeout(() => r(late), ms)),
    ]);
    clearTimeout(timer);
    if (next === late) return `nothing in ${ms} ms`;
    return next.done ? "its end" : JSON.stringify(next.value);
  }

  /** Make sure the child is gone, its pipes closed and its file removed. */
  async #abandon(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* it has exited already */ }
    await this.#child.status;
    await this.#child.stdin.close().catch(() => {});
    await this.#lines.return(undefined).catch(() => {});
    await Deno.remove(this.#out).catch(() => {});
  }
}

/** The script: subscribe, say so, keep pairs until told to stop. */
async function main([url, out]: string[]): Promise<void> {
  const log = new PairLog(CAPACITY);
  const bus = await connectNatsBus({ url, name: "bench-bare-reader" });
  bus.subscribe(
    tapSubjectFilter(BENCH_MODEL, BENCH_HOOK),
    (msg) => {
      const sent = msg.headers["Lw-Meta-sent"];
      if (sent !== undefined) log.push(Number(sent), hostNowMs());
    },
    undefined,
    { borrows: true },
  );
  await bus.flush();
  const enc = new TextEncoder();
  await Deno.stdout.write(enc.encode("ready\n"));
  for await (const line of readLines(Deno.stdin.readable)) {
    if (line === "stop") break;
  }
  await bus.close();
  const pairs = log.pairs();
  await Deno.writeFile(out, new Uint8Array(pairs.buffer, pairs.byteOffset, pairs.byteLength));
  await Deno.stdout.write(enc.encode(`done ${log.length} ${log.overflow}\n`));
}

if (import.meta.main) await main(Deno.args);
