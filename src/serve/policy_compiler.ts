/**
 * Policy compilation off the event loop, for hot reloads: a worker reads,
 * validates and compiles the files, and the main thread only rebuilds each
 * rule's evaluation closure from the result, so `/healthz`, the control API
 * and frame intake keep their latency while a large policy set reloads.
 *
 * @module
 */
import { ConfigError, type ConfigIssue } from "../config/errors.ts";
import {
  type CompiledPolicyData,
  type CompiledPolicySet,
  hydratePolicySet,
  PolicyCompileError,
  type PolicyProblem,
  type PolicyWarning,
  type SignalInfo,
} from "../core/policy/compile.ts";
import type { PolicyLimits } from "../core/policy/limits.ts";

/** What the main thread asks the worker. */
export interface CompileRequest {
  id: number;
  paths: string[];
  signals: ReadonlyMap<string, SignalInfo>;
  limits?: Partial<PolicyLimits>;
}

/** What the worker answers. */
export type CompileResponse =
  | { id: number; ok: true; data: CompiledPolicyData; fileWarnings: string[] }
  | { id: number; ok: false; kind: "config"; issues: readonly ConfigIssue[] }
  | {
    id: number;
    ok: false;
    kind: "compile";
    problems: readonly PolicyProblem[];
    warnings: readonly PolicyWarning[];
  }
  | { id: number; ok: false; kind: "other"; name: string; message: string };

/**
 * Why the worker gave no compiled set, when the policy files are not the
 * reason:
 *
 * - `unavailable`: the worker could not start (its module failed to load,
 *   or workers are not allowed here). Compiling in-thread is the fallback.
 * - `failed`: the worker started but crashed, ran out of memory, answered
 *   with an unexpected error or a reply that could not be read. A reload
 *   fails; the worker is restarted for the next one.
 * - `timeout`: no answer within `timeoutMs`; the worker was terminated (and
 *   is restarted for the next compile).
 * - `closed`: {@linkcode PolicyCompiler.close} was called.
 */
export type PolicyWorkerFailure = "unavailable" | "failed" | "timeout" | "closed";

/** The worker failed or stopped: not a problem with the policy files. */
export class PolicyWorkerError extends Error {
  override name = "PolicyWorkerError";
  constructor(readonly kind: PolicyWorkerFailure, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** A compiled set and the warnings parsing the files found (formatted). */
export interface OffThreadResult {
  set: CompiledPolicySet;
  fileWarnings: string[];
}

/** Settings of a {@linkcode PolicyCompiler}. */
export interface PolicyCompilerOptions {
  /**
   * Give up on a compile after this long: the worker is terminated, the
   * compile rejects (`timeout`), and the next compile starts a new worker
   * (default 60 000).
   */
  timeoutMs?: number;
  /** The worker module (default `./policy_worker.ts`; tests use stand-ins). */
  workerUrl?: string | URL;
}

/** The message a worker posts once its module is loaded, before any reply. */
export const WORKER_READY = "latentwatch.policy_worker.ready";

/**
 * Compiles policy files in a worker, one request at a time (a reload waits
 * for the previous one). Errors are the ones compiling in-thread throws:
 * {@linkcode ConfigError} or {@linkcode PolicyCompileError}, with every
 * problem; or a {@linkcode PolicyWorkerError} saying why the worker gave no
 * answer. The worker starts on first use and lives until
 * {@linkcode PolicyCompiler.close}.
 *
 * @example
 * ```ts
 * import type { SignalInfo } from "../core/policy/compile.ts";
 * declare const signals: ReadonlyMap<string, SignalInfo>;
 * const compiler = new PolicyCompiler({ timeoutMs: 30_000 });
 * const { set } = await compiler.compile(["policies/demo.yaml"], signals);
 * compiler.close();
 * ```
 */
export class PolicyCompiler {
  readonly #timeoutMs: number;
  readonly #url: string;
  #worker: Worker | null = null;
  /** The running worker has loaded its module (posted {@linkcode WORKER_READY}). */
  #ready = false;
  #closed = false;
  #next = 0;
  #pending = new Map<
    number,
    { resolve: (r: CompileResponse) => void; reject: (e: Error) => void }
  >();

  constructor(opts: PolicyCompilerOptions = {}) {
    this.#timeoutMs = opts.timeoutMs ?? 60_000;
    this.#url = String(opts.workerUrl ?? new URL("./policy_worker.ts", import.meta.url).href);
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    let w: Worker;
    try {
      w = new Worker(this.#url, { type: "module" });
    } catch (err) {
      throw new PolicyWorkerError(
        "unavailable",
        `policy worker could not start: ${(err as Error)?.message ?? err}`,
        { cause: err },
      );
    }
    this.#ready = false;
    w.onmessage = (e: MessageEvent<CompileResponse | typeof WORKER_READY>) => {
      if (e.data === WORKER_READY) {
        this.#ready = true;
        return;
      }
      const p = this.#pending.get(e.data?.id);
      this.#pending.delete(e.data?.id);
      p?.resolve(e.data);
    };
    w.onmessageerror = () => {
      this.#fail(new PolicyWorkerError("failed", "policy worker: a reply could not be read"));
    };
    w.onerror = (e) => {
      e.preventDefault();
      // before its module loaded, the worker could not start at all
      const kind = this.#ready ? "failed" : "unavailable";
      this.#fail(
        new PolicyWorkerError(
          kind,
          kind === "failed"
            ? `policy worker failed: ${e.message}`
            : `policy worker could not start: ${e.message}`,
          { cause: e.error },
        ),
      );
    };
    return this.#worker = w;
  }

  /** Terminate the worker (the next compile starts a new one) and reject what waits. */
  #fail(err: Error): void {
    this.#worker?.terminate();
    this.#worker = null;
    this.#ready = false;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  /**
   * Read and compile `paths` against `signals` in the worker. Resolves with
   * the set (its closures rebuilt here); rejects with the problems found, or
   * with a {@linkcode PolicyWorkerError} when the worker gave no answer (see
   * {@linkcode PolicyWorkerFailure}).
   *
   * @example
   * ```ts
   * const compiler = new PolicyCompiler();
   * const signals = new Map([["res12", { kind: "sae" as const, dSae: 16384 }]]);
   * try {
   *   const { set, fileWarnings } = await compiler.compile(["policies/demo.yaml"], signals);
   *   console.log(set.rules.length, fileWarnings);
   * } catch (err) {
   *   if (err instanceof PolicyWorkerError) console.error(err.kind, err.message);
   *   else throw err; // ConfigError or PolicyCompileError: the files are wrong
   * } finally {
   *   compiler.close();
   * }
   * ```
   */
  async compile(
    paths: string[],
    signals: ReadonlyMap<string, SignalInfo>,
    limits?: Partial<PolicyLimits>,
  ): Promise<OffThreadResult> {
    if (this.#closed) throw new PolicyWorkerError("closed", "policy compiler closed");
    const id = this.#next++;
    const worker = this.#start();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reply = await new Promise<CompileResponse>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      timer = setTimeout(() => {
        if (!this.#pending.has(id)) return;
        this.#fail(
          new PolicyWorkerError(
            "timeout",
            `policy worker gave no answer in ${this.#timeoutMs} ms: terminated`,
          ),
        );
      }, this.#timeoutMs);
      try {
        // functions do not cross threads: a family test compiled there reports
        // 'no-decoder', and compileMonitorPolicies compiles in-thread instead
        const plain = new Map(
          [...signals].map(([k, { decoderCosines: _, ...info }]) => [k, info]),
        );
        worker.postMessage({ id, paths, signals: plain, limits } satisfies CompileRequest);
      } catch (err) {
        this.#pending.delete(id);
        reject(
          new PolicyWorkerError("failed", `policy worker: could not send the request`, {
            cause: err,
          }),
        );
      }
    }).finally(() => clearTimeout(timer));
    if (reply.ok) {
      return { set: hydratePolicySet(reply.data, signals), fileWarnings: reply.fileWarnings };
    }
    if (reply.kind === "config") throw new ConfigError(reply.issues);
    if (reply.kind === "compile") throw new PolicyCompileError(reply.problems, reply.warnings);
    throw new PolicyWorkerError("failed", `policy worker: ${reply.name}: ${reply.message}`);
  }

  /** Stop the worker; pending compiles reject (`closed`), and so do later ones. */
  close(): void {
    this.#closed = true;
    this.#fail(new PolicyWorkerError("closed", "policy compiler closed"));
  }
}
