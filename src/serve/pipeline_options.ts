/**
 * What a `Pipeline` (`pipeline.ts`) is built from: the monitor's identity
 * and tap subject, the encoders and policies of its first generation (see
 * {@linkcode firstGeneration}), the batching limits, the sinks and
 * checkpoints alerts go through, the bus, telemetry, and the hooks for
 * displays and trace recording; and what its parts get from them where an
 * option is left out (the steering and evidence settings in force).
 *
 * @module
 */
import type { Alert } from "../core/alert.ts";
import type { RedactOptions } from "../core/redact.ts";
import type { BatchLimits } from "../core/batcher.ts";
import type { Bus, BusMessage } from "../bus/bus.ts";
import type { AlertSink, DurableSink } from "../sinks/sink.ts";
import type { EvidenceOptions } from "../pipeline/evidence.ts";
import type { Generation } from "../pipeline/generation.ts";
import type { Logger } from "../shared/log.ts";
import type { Telemetry } from "../shared/telemetry.ts";
import type { SeqCheckpoints } from "./checkpoints.ts";
import type { OnEncoded } from "./batch.ts";

/**
 * What a {@linkcode Pipeline} needs: its first generation's encoders,
 * policies, labels and resolved steering ({@linkcode Generation}), and the
 * rest below.
 */
export interface PipelineOptions extends Generation {
  monitor: string;
  model: string;
  hook: string;
  /**
   * Subject filter the tap frames arrive on. With `partitions`, the last
   * token is replaced by each owned partition's number instead.
   */
  subject: string;
  /**
   * Scale-out (docs/scale-out.md): the partition count shared by the taps
   * and the sidecars. The pipeline then subscribes only to the partitions
   * handed to it with {@linkcode Pipeline.own}, and checks that every frame
   * arrives on its request's partition.
   */
  partitions?: number;
  /** Width of the activations every SAE reads. */
  dIn: number;
  /**
   * Evidence on alerts: the flagged tokens encoded in full, their
   * `topLatents` strongest latents attached; recent activations kept in a
   * ring of `ringTokens` tokens (default off).
   */
  evidence?: { topLatents: number; ringTokens: number };
  /** Micro-batching limits (`adaptive`: wait for a fuller batch only while the load can fill it). */
  batching: BatchLimits;
  /**
   * The monitor's redaction of token text in alerts (`redaction:`), combined
   * with each rule's `redact`, the stricter winning. @default { mode: "none" }
   */
  redaction?: RedactOptions;
  /** Where alerts go (JetStream with its spool, syslog, webhooks, ...); each has its own bounded queue. */
  sinks: readonly AlertSink[];
  /**
   * The sink that makes alerts durable (JetStream with its spool; may also
   * be in `sinks`, it is not handed an alert twice). Each evaluated batch's
   * alerts go to it first, in one write; an alert reaches the other sinks,
   * `onAlert` and the `latentwatch.alerts` counter only once it is durable
   * (see docs/alert-delivery.md). Without one, alerts go to every sink at once.
   */
  durable?: DurableSink;
  /**
   * Where each request's last durably processed Lw-Seq is kept across a
   * restart, so frames that arrived while the sidecar was down are counted
   * as lost (`latentwatch.frames.lost`, `frame.lost ... after_restart=true`).
   */
  checkpoints?: SeqCheckpoints;
  bus: Bus;
  telemetry: Telemetry;
  log: Logger;
  /**
   * Steering (`docs/steering.md`): send the commands rules ask for to the
   * taps and answer gated frames (default enabled, commands live 5 s).
   */
  steering?: { enabled: boolean; ttlMs: number };
  /** Per-request state is evicted when a request sends nothing for this long (default 10 min). */
  requestTtlMs?: number;
  /** At most this many requests have live state (default 100 000); the oldest is evicted past it. */
  maxRequests?: number;
  /** Called with every message as received, before decoding (trace recording). */
  onMessage?: (msg: BusMessage) => void;
  /** Called for every alert raised (before it is published). */
  onAlert?: (alert: Alert) => void;
  /**
   * Called after each batch with the frames and their per-token latents (for displays). The
   * frames' `data` is valid during the call only: its memory is reused once the batch is done.
   */
  onEncoded?: OnEncoded;
}

/**
 * The generation a pipeline starts with: the encoders, policies, labels and
 * steer actions of its options (a hot reload replaces it, see
 * `Pipeline.swap`).
 *
 * @example
 * ```ts
 * declare const options: PipelineOptions;
 * const gen = firstGeneration(options);
 * gen.encoders === options.encoders; // true
 * "verdictEncoders" in gen; // only when the options have verdict encoders
 * ```
 */
export function firstGeneration(opts: PipelineOptions): Generation {
  return {
    encoders: opts.encoders,
    policies: opts.policies,
    labels: opts.labels,
    steerOps: opts.steerOps,
    evidenceEncoders: opts.evidenceEncoders,
    ...(opts.verdictEncoders ? { verdictEncoders: opts.verdictEncoders } : {}),
  };
}

/**
 * The steering settings in force: the options', or enabled with commands
 * that live 5 s.
 *
 * @example
 * ```ts
 * declare const options: PipelineOptions;
 * steeringOf({ ...options, steering: undefined }); // { enabled: true, ttlMs: 5000 }
 * ```
 */
export function steeringOf(opts: PipelineOptions): { enabled: boolean; ttlMs: number } {
  return opts.steering ?? { enabled: true, ttlMs: 5000 };
}

/**
 * The evidence settings in force: the options' `evidence`, or off (no
 * latents attached, no ring).
 *
 * @example
 * ```ts
 * declare const options: PipelineOptions;
 * evidenceOf({ ...options, evidence: undefined, dIn: 768 }); // { topLatents: 0, ringTokens: 0, dIn: 768 }
 * ```
 */
export function evidenceOf(opts: PipelineOptions): EvidenceOptions {
  return {
    topLatents: opts.evidence?.topLatents ?? 0,
    ringTokens: opts.evidence?.ringTokens ?? 0,
    dIn: opts.dIn,
  };
}
