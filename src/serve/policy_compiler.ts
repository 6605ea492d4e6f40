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

/** The worker failed or stopped: not a problem with the policy files. */
export class PolicyWorkerError extends Error {
  override name = "PolicyWorkerError";
}

/** A compiled set and the warnings parsing the files found (formatted). */
export interface OffThreadResult {
  set: CompiledPolicySet;
  fileWarnings: string[];
}

/**
 * Compiles policy files in a worker, one request at a time (a reload waits
 * for the previous one). Errors are the ones compiling in-thread throws:
 * {@linkcode ConfigError} or {@linkcode PolicyCompileError}, with every
 * problem. The worker starts on first use and lives until
 * {@linkcode PolicyCompiler.close}.
 *
 * @example
 * ```ts
 * import type { SignalInfo } from "../core/policy/compile.ts";
 * declare const signals: ReadonlyMap<string, SignalInfo>;
 * const compiler = new PolicyCompiler();
 * const { set } = await compiler.compile(["policies/demo.yaml"], signals);
 * compiler.close();
 * ```
 */
export class PolicyCompiler {
  #worker: Worker | null = null;
  #next = 0;
  #pending = new Map<
    number,
    { resolve: (r: CompileResponse) => void; reject: (e: Error) => void }
  >();

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const w = new Worker(new URL("./policy_worker.ts", import.meta.url).href, { type: "module" });
    w.onmessage = (e: MessageEvent<CompileResponse>) => {
      const p = this.#pending.get(e.data.id);
      this.#pending.delete(e.data.id);
      p?.resolve(e.data);
    };
    w.onerror = (e) => {
      e.preventDefault();
      this.#fail(new PolicyWorkerError(`policy worker failed: ${e.message}`, { cause: e.error }));
    };
    return this.#worker = w;
  }

  #fail(err: Error): void {
    this.#worker?.terminate();
    this.#worker = null;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  /**
   * Read and compile `paths` against `signals` in the worker. Resolves with
   * the set (its closures rebuilt here); rejects with the problems found.
   */
  async compile(
    paths: string[],
    signals: ReadonlyMap<string, SignalInfo>,
    limits?: Partial<PolicyLimits>,
  ): Promise<OffThreadResult> {
    const id = this.#next++;
    const worker = this.#start();
    const reply = await new Promise<CompileResponse>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ id, paths, signals, limits } satisfies CompileRequest);
    });
    if (reply.ok) {
      return { set: hydratePolicySet(reply.data, signals), fileWarnings: reply.fileWarnings };
    }
    if (reply.kind === "config") throw new ConfigError(reply.issues);
    if (reply.kind === "compile") throw new PolicyCompileError(reply.problems, reply.warnings);
    throw new PolicyWorkerError(`policy worker: ${reply.name}: ${reply.message}`);
  }

  /** Stop the worker; pending compiles reject. */
  close(): void {
    this.#fail(new PolicyWorkerError("policy compiler closed"));
  }
}
