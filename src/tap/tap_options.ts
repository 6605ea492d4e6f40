/**
 * What a `Tap` is configured with: the model and hook it
 * publishes for, the element type on the wire, partitions, the bound on
 * open requests, inline gating, and how NATS outages are ridden out.
 *
 * @module
 */
import type { Dtype } from "../core/dtype.ts";
import type { GateOptions } from "./gate.ts";
import type { OutageOptions } from "./outage.ts";

/** Options of `Tap`. */
export interface TapOptions {
  model: string;
  /** Hook name, e.g. TransformerLens `blocks.6.hook_resid_post`. */
  hook: string;
  /** Element type on the wire (default f32). f16/bf16 halve the bytes, rounding to nearest even. */
  dtype?: Dtype;
  /** Number of subject partitions requests are spread over (default 1). */
  partitions?: number;
  /**
   * Requests whose seq counter is kept until `end()` (default 100 000). A
   * request aborted without `end()` is forgotten once this many are newer.
   */
  maxOpenRequests?: number;
  /**
   * Inline gating (`docs/steering.md`): `Tap.step` publishes each
   * step as a request and waits up to `deadlineMs` for the sidecar's
   * verdict; with none, the step goes on (`open`) or the request is aborted
   * (`closed`).
   */
  gate?: GateOptions;
  /** Name on acknowledgements and in logs (default `<model>@tap`). */
  name?: string;
  /** Publishes held while the bus is disconnected (bounded; see `OutagePublisher` in `outage.ts`). */
  outage?: OutageOptions;
}
