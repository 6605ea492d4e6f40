/**
 * A request's frame headers from one step to the next: once two frames in a
 * row have the same shape and extras, the next ones come from a
 * {@linkcode HeaderTemplate} that only fills in `Lw-Pos` and `Lw-Seq`.
 *
 * @module
 */
import type { ByteSlab } from "../core/byte_slab.ts";
import { type FrameMeta, HEADER } from "../core/frame/format.ts";
import { HeaderTemplate } from "../bus/header_template.ts";

/** What a frame's headers depend on besides its position and seq. */
export type FrameKey =
  & Pick<FrameMeta, "phase" | "tenant" | "meta" | "traceparent" | "tracestate">
  & { tokens: number; dModel: number };

/** A request's last frame key, and the template once a second frame had the same. */
export interface StepHeaders {
  key: FrameKey;
  template: HeaderTemplate | null;
}

const VARYING = [HEADER.position, HEADER.seq] as const;

/** The same entries in the same order (the order of their headers). */
function sameMeta(a?: Record<string, string>, b?: Record<string, string>): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    if (ka[i] !== kb[i] || a[ka[i]] !== b[kb[i]]) return false;
  }
  return true;
}

/**
 * Whether two frame keys give the same headers but for position and seq.
 *
 * @example
 * ```ts
 * sameFrameKey({ tokens: 1, dModel: 768, phase: "decode" }, { tokens: 1, dModel: 768, phase: "decode" }); // true
 * ```
 */
export function sameFrameKey(a: FrameKey, b: FrameKey): boolean {
  return a.tokens === b.tokens && a.dModel === b.dModel && a.phase === b.phase &&
    a.tenant === b.tenant && a.traceparent === b.traceparent && a.tracestate === b.tracestate &&
    sameMeta(a.meta, b.meta);
}

/**
 * The headers of a request's next frame from its template, when `key` is the
 * one the template was made for, `position` and `seq` are counts, and the
 * frame fits in `maxBytes` with its payload; `null` otherwise (make them
 * with `frameHeaders`, then {@linkcode rememberStepHeaders}).
 *
 * @example
 * ```ts
 * declare const last: StepHeaders | undefined;
 * const h = templatedHeaders(last, { tokens: 1, dModel: 768 }, 12, 3, 3072, 1 << 20);
 * ```
 */
export function templatedHeaders(
  last: StepHeaders | undefined,
  key: FrameKey,
  position: number,
  seq: number,
  payloadBytes: number,
  maxBytes: number,
): Record<string, string> | null {
  const template = last?.template;
  if (!template || !sameFrameKey(last!.key, key)) return null;
  if (!Number.isSafeInteger(position) || position < 0) return null; // frameHeaders says why
  if (!Number.isSafeInteger(seq) || seq < 0) return null;
  const values = [String(position), String(seq)];
  if (template.wireBytes(values) + payloadBytes > maxBytes) return null;
  return template.render(values);
}

/**
 * What to keep after a frame sent with `headers` (made for `key`): the
 * template carried on, a new one when the last frame had the same key, or
 * just the key.
 *
 * @example
 * ```ts
 * import { ByteSlab } from "../core/byte_slab.ts";
 * declare const last: StepHeaders | undefined, headers: Record<string, string>;
 * const next = rememberStepHeaders(last, { tokens: 1, dModel: 768 }, headers, new ByteSlab());
 * ```
 */
export function rememberStepHeaders(
  last: StepHeaders | undefined,
  key: FrameKey,
  headers: Record<string, string>,
  slab: ByteSlab,
): StepHeaders {
  if (last === undefined || !sameFrameKey(last.key, key)) {
    // a copy: the caller may change its meta object before the next step
    return { key: key.meta ? { ...key, meta: { ...key.meta } } : key, template: null };
  }
  if (last.template !== null) return last;
  return { key: last.key, template: new HeaderTemplate({ headers, varying: VARYING, slab }) };
}
