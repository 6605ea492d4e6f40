/**
 * The parent's handle on the load generator process (`bench/e2e_load.ts`):
 * spawn it, send it phases and credit, read what each phase did.
 *
 * @module
 */
import { generatorV8Flags } from "./harness.ts";
import { connectNatsBus, type NatsBus } from "../src/bus/nats_bus.ts";
import {
  CREDIT_SUBJECT,
  type LoadCommand,
  type LoadPhaseDone,
  readLines as lines,
} from "./e2e_load.ts";

/**
 * A running load generator child process.
 *
 * @example
 * ```ts
 * import { LoadGenerator } from "./e2e_load_process.ts";
 * const gen = await LoadGenerator.start("nats://127.0.0.1:4222");
 * const done = await gen.run({ cmd: "open", rate: 1000, seconds: 1 }, Date.now() + 10_000);
 * console.log(done.published);
 * await gen.quit();
 * ```
 */
export class LoadGenerator {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: AsyncGenerator<string>;
  readonly #enc = new TextEncoder();
  /** The closed loop's credit goes over NATS (a stdin write per batch cost the sidecar ~0.5 ms). */
  readonly #bus: NatsBus;
  /** The V8 flags the generator runs with (the row's `harness` records them). */
  readonly v8Flags: string;

  private constructor(child: Deno.ChildProcess, bus: NatsBus, v8Flags: string) {
    this.#child = child;
    this.#bus = bus;
    this.v8Flags = v8Flags;
    this.#writer = child.stdin.getWriter();
    this.#reader = lines(child.stdout);
  }

  /** Spawn the generator on `natsUrl` and wait until it is connected. */
  static async start(natsUrl: string): Promise<LoadGenerator> {
    // E2E_LOAD_CPU_PROF=<dir>: profile the generator too (`--cpu-prof`)
    const profDir = Deno.env.get("E2E_LOAD_CPU_PROF");
    const prof = profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : [];
    // E2E_LOAD_V8=<flags>: V8 flags for the generator instead of the harness's
    // (`--trace-gc` prints on its stdout)
    const v8 = generatorV8Flags();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        ...prof,
        `--v8-flags=${v8}`,
        new URL("./e2e_load.ts", import.meta.url).pathname,
        "--url",
        natsUrl,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const gen = new LoadGenerator(
      child,
      await connectNatsBus({ url: natsUrl, name: "bench-credit" }),
      v8,
    );
    const first = await gen.#reader.next();
    if (first.done || !JSON.parse(first.value).ready) {
      throw new Error(`e2e_load: expected {"ready":true} first, found ${first.value}`);
    }
    return gen;
  }

  /** The generator's process id (the bench reads its CPU time). */
  get pid(): number {
    return this.#child.pid;
  }

  /** Tell the closed loop that `tokens` tokens are encoded in all (a core NATS publish, never blocks). */
  credit(tokens: number): void {
    this.#bus.publish(CREDIT_SUBJECT, this.#enc.encode(String(tokens)));
  }

  #send(c: LoadCommand): Promise<void> {
    return this.#writer.write(this.#enc.encode(JSON.stringify(c) + "\n"));
  }

  /** Run one phase; resolves with what the generator did, or throws past `deadline` (epoch ms). */
  async run(c: LoadCommand, deadline: number): Promise<LoadPhaseDone> {
    await this.#send(c);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`e2e_load: ${c.cmd} phase not done by its deadline`)),
        Math.max(0, deadline - Date.now()),
      );
    });
    try {
      for (;;) {
        const next = await Promise.race([this.#reader.next(), late]);
        if (next.done) throw new Error(`e2e_load: generator exited during the ${c.cmd} phase`);
        // V8's traces share the generator's stdout, and may run into the reply's line
        const at = next.value.indexOf('{"');
        if (at > 0 || (at < 0 && next.value.trim() !== "")) {
          console.error(`e2e_load: ${at < 0 ? next.value : next.value.slice(0, at)}`);
        }
        if (at >= 0) return JSON.parse(next.value.slice(at)) as LoadPhaseDone;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ask the generator to end and wait for it. */
  async quit(): Promise<void> {
    await this.#send({ cmd: "quit" });
    await this.#writer.close();
    for await (const _ of this.#reader) { /* drain */ }
    await this.#child.status;
    await this.#bus.close();
  }
}
