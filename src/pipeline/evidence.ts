/**
 * Evidence on alerts, the encode stage's second half: recent activations
 * kept in a bounded ring, and the tokens an alert flags encoded in full, the
 * strongest latents (with labels) attached to the alert. Best effort: tokens
 * no longer in the ring, a probe signal or an encode error leave the alert
 * as it is, reported as values for the caller to count.
 *
 * @module
 */
import type { Alert, AlertEvidence, AlertTopLatent } from "../core/alert.ts";
import { ActivationRing } from "../core/activation_ring.ts";
import type { Frame } from "../core/frame/format.ts";
import type { Encoder, SparseLatents } from "../core/sae.ts";
import type { LatentLabels } from "./alert.ts";

/** Flagged tokens per alert encoded for evidence (the rest of a long span is left out). */
export const MAX_EVIDENCE_TOKENS = 16;

/** Options of {@linkcode Evidence}. */
export interface EvidenceOptions {
  /** The strongest latents attached per flagged token (0: evidence off). */
  topLatents: number;
  /** Recent tokens kept for evidence. */
  ringTokens: number;
  /** Width of the activations. */
  dIn: number;
}

/** What {@linkcode Evidence.attach} did. */
export interface EvidenceReport {
  /** SAE id → tokens encoded for evidence. */
  tokens: Map<string, number>;
  /** Flagged tokens no longer in the ring. */
  notInRing: number;
  /** SAEs whose evidence encode failed, with the tokens left without evidence. */
  failures: { sae: string; tokens: number; error: Error }[];
}

/**
 * The evidence stage: call {@linkcode Evidence.remember} with each batch's
 * frames, and {@linkcode Evidence.attach} with the alerts they raised.
 *
 * @example
 * ```ts
 * import type { Alert } from "../core/alert.ts";
 * import type { Frame } from "../core/frame/format.ts";
 * import type { Encoder } from "../core/sae.ts";
 * import { Evidence } from "./evidence.ts";
 * declare const frames: Frame[];
 * declare const alerts: Alert[];
 * declare const encoders: Map<string, Encoder>;
 * const evidence = new Evidence({ topLatents: 8, ringTokens: 4096, dIn: 768 });
 * evidence.remember(frames);
 * const report = await evidence.attach(alerts, { encoders });
 * report.notInRing; // 0
 * ```
 */
export class Evidence {
  readonly #ring: ActivationRing | null;
  readonly #top: number;
  readonly #dIn: number;

  constructor(opts: EvidenceOptions) {
    this.#top = opts.topLatents;
    this.#dIn = opts.dIn;
    this.#ring = opts.topLatents > 0 ? new ActivationRing(opts.ringTokens, opts.dIn) : null;
  }

  /** Whether alerts get evidence (`topLatents > 0`). */
  get enabled(): boolean {
    return this.#ring !== null;
  }

  /** Keep the frames' activations (the ring forgets the oldest). */
  remember(frames: readonly Frame[]): void {
    const ring = this.#ring;
    if (!ring) return;
    for (const f of frames) {
      if (f.tokens > 0) ring.putRows(f.requestId, f.position, f.tokens, f.data);
    }
  }

  /**
   * Encode the tokens each alert flags with its SAE's evidence encoder and
   * set their `topLatents` (on the alerts given, in place).
   */
  async attach(
    alerts: readonly Alert[],
    gen: { encoders?: ReadonlyMap<string, Encoder>; labels?: LatentLabels },
  ): Promise<EvidenceReport> {
    const report: EvidenceReport = { tokens: new Map(), notInRing: 0, failures: [] };
    const ring = this.#ring;
    if (!ring || alerts.length === 0) return report;
    const perSae = new Map<string, { evidence: AlertEvidence; row: Float32Array }[]>();
    for (const alert of alerts) {
      if (alert.latent.signal === "probe") continue;
      const sae = alert.latent.sae;
      if (!gen.encoders?.has(sae)) continue;
      for (const evidence of alert.evidence.slice(0, MAX_EVIDENCE_TOKENS)) {
        const row = ring.get(alert.requestId, evidence.position);
        if (!row) {
          report.notInRing++;
          continue;
        }
        let list = perSae.get(sae);
        if (!list) perSae.set(sae, list = []);
        list.push({ evidence, row });
      }
    }
    const dIn = this.#dIn;
    for (const [sae, items] of perSae) {
      const encoder = gen.encoders!.get(sae)!;
      const x = new Float32Array(items.length * dIn);
      items.forEach((it, i) => x.set(it.row, i * dIn));
      try {
        const rows = await encoder.encode(x, items.length);
        const labels = gen.labels?.get(sae);
        items.forEach((it, i) => {
          it.evidence.topLatents = topLatents(rows[i], this.#top, labels);
        });
        report.tokens.set(sae, items.length);
      } catch (err) {
        report.failures.push({ sae, tokens: items.length, error: err as Error });
      }
    }
    return report;
  }
}

/**
 * The `n` strongest latents of one token, value descending, with labels.
 *
 * @example
 * ```ts
 * import { topLatents } from "./evidence.ts";
 * topLatents({ indices: Uint32Array.of(1, 7), values: Float32Array.of(0.5, 2) }, 1); // [{ index: 7, value: 2 }]
 * ```
 */
export function topLatents(
  row: SparseLatents,
  n: number,
  labels?: ReadonlyMap<number, string>,
): AlertTopLatent[] {
  const order = [...row.values.keys()].sort((a, b) => row.values[b] - row.values[a]).slice(0, n);
  return order.map((k) => {
    const label = labels?.get(row.indices[k]);
    return {
      index: row.indices[k],
      value: row.values[k],
      ...(label !== undefined ? { label } : {}),
    };
  });
}
