/**
 * The workbench's live data source: a bounded store of the most recent
 * requests of a running monitor (tokens, per-token latents of the
 * generation's encoders, alerts and steering), fed from the pipeline's
 * `onEncoded` hook and its alerts, with a change feed for `/ui/api/live`.
 *
 * Latents are what serve encodes: each SAE's watched latents (those the
 * policies read), not a full encode, so a latent's page and a preview of a
 * rule on a latent no policy reads see zeros for it; `explore` over a
 * recorded trace encodes every latent.
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import type { Frame } from "../core/frame/format.ts";
import type { LatentTable } from "../core/latent_rows.ts";
import { monitorSignals } from "../pipeline/models.ts";
import type { OfflineMonitor } from "../traces/offline.ts";
import { type EvaluatedFiring, type Evaluation, TraceStore } from "./trace_source.ts";

/** Options of a {@linkcode LiveStore}. */
export interface LiveStoreOptions {
  /** How many requests are kept (the oldest go first). @default 200 */
  maxRequests?: number;
  /** The clock for receive times. */
  now?: () => number;
}

/** A bounded store of a running monitor's recent requests. */
export class LiveStore extends TraceStore {
  /** The alerts raised, by request (what `/ui/api/requests` shows). */
  readonly evaluation: Evaluation = { firings: [], byRequest: new Map() };
  readonly #max: number;
  readonly #now: () => number;
  readonly #listeners = new Set<(requestId: string) => void>();

  constructor(monitor: OfflineMonitor, opts: LiveStoreOptions = {}) {
    super(monitor);
    this.#max = opts.maxRequests ?? 200;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Keep one encoded batch (the pipeline's `onEncoded`).
   *
   * @example
   * ```ts
   * import type { Frame } from "../core/frame/format.ts";
   * import type { LatentTable } from "../core/latent_rows.ts";
   * import type { LiveStore } from "./live_source.ts";
   * declare const store: LiveStore;
   * declare const frames: Frame[];
   * declare const latents: Map<string, LatentTable>;
   * store.push(frames, latents);
   * ```
   */
  push(frames: readonly Frame[], latents: ReadonlyMap<string, LatentTable>): void {
    const t = this.#now();
    const ids = this.store({
      // serve reuses a batch's activation memory once the batch is done (`releaseFrameData`),
      // and previews evaluate these frames later: keep a copy
      frames: frames.map((f) => ({ ...f, data: f.data.slice() })),
      receivedAt: frames.map(() => t),
      latents: new Map(latents),
    });
    this.#evict();
    for (const id of new Set(ids)) if (this.requests.has(id)) this.#notify(id);
  }

  /** Record an alert serve raised (the alert feed). */
  alert(alert: Alert): void {
    const positions: number[] = [];
    for (let p = alert.tokens.start; p < alert.tokens.end; p++) positions.push(p);
    const f: EvaluatedFiring = {
      rule: alert.policy.id,
      requestId: alert.requestId,
      positions,
      alert,
      steer: alert.steer ?? [],
    };
    this.evaluation.firings.push(f);
    const list = this.evaluation.byRequest.get(alert.requestId) ?? [];
    list.push(f);
    this.evaluation.byRequest.set(alert.requestId, list);
    // alerts may come before their request's batch is stored: keep them, but an
    // alert whose request never comes (or was evicted) must not stay forever
    if (this.evaluation.byRequest.size > this.requests.size + this.#max) {
      for (const id of this.evaluation.byRequest.keys()) {
        if (this.evaluation.byRequest.size <= this.requests.size + this.#max) break;
        if (!this.requests.has(id)) this.evaluation.byRequest.delete(id);
      }
    }
    if (this.evaluation.firings.length > this.#max * 16) {
      this.evaluation.firings.splice(0, this.evaluation.firings.length - this.#max * 16);
    }
    this.#notify(alert.requestId);
  }

  /** Call `fn` with a request's id whenever its state changes; returns the unsubscribe. */
  subscribe(fn: (requestId: string) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #notify(id: string): void {
    for (const fn of this.#listeners) {
      try {
        fn(id);
      } catch { /* a listener's failure is its own */ }
    }
  }

  #evict(): void {
    while (this.requests.size > this.#max) {
      const oldest = this.requests.keys().next().value as string;
      this.requests.delete(oldest);
      this.evaluation.byRequest.delete(oldest);
    }
    // forget batches none of whose frames belong to a kept request
    while (
      this.batches.length > 1 &&
      this.batches[0].frames.every((f) => !this.requests.has(f.requestId))
    ) {
      this.batches.shift();
      this.base++;
    }
  }
}

/** What a running monitor lends the workbench. */
export interface LiveParts {
  config: OfflineMonitor["config"];
  models: OfflineMonitor["models"];
  files: OfflineMonitor["files"];
  /** The current generation (it changes on a policy reload). */
  generation: () => OfflineMonitor["generation"];
}

/**
 * A live store over a running monitor's models and current generation.
 *
 * @example
 * ```ts
 * import { liveStore, type LiveParts } from "./live_source.ts";
 * declare const parts: LiveParts;
 * const store = liveStore(parts, { maxRequests: 100 });
 * ```
 */
export function liveStore(parts: LiveParts, opts: LiveStoreOptions = {}): LiveStore {
  const monitor: OfflineMonitor = {
    config: parts.config,
    models: parts.models,
    files: parts.files,
    signals: monitorSignals(parts.models),
    get set() {
      return parts.generation().policies;
    },
    get generation() {
      return parts.generation();
    },
    get encoders() {
      return parts.generation().encoders;
    },
    // the encoders are the monitor's: it closes them
    close: () => Promise.resolve(),
  };
  return new LiveStore(monitor, opts);
}
