/**
 * The policy engine's input for one frame ({@linkcode tokenBatch}): its
 * request context and its rows of a batch's latents.
 *
 * @module
 */
import type { Frame } from "../core/frame/format.ts";
import type { TokenBatch } from "../core/policy/engine.ts";
import type { LatentTable } from "../core/latent_rows.ts";

/**
 * The policy engine's input for one frame: its request context and its
 * tokens, whose rows start at `firstRow` of `latents`.
 *
 * @example
 * ```ts
 * import type { Frame } from "../core/frame/format.ts";
 * import { tokenBatch } from "./token_batch.ts";
 * declare const frame: Frame;
 * tokenBatch(frame, 0, new Map()).position === frame.position; // true
 * ```
 */
export function tokenBatch(
  frame: Frame,
  firstRow: number,
  latents: ReadonlyMap<string, LatentTable>,
): TokenBatch {
  return {
    ctx: {
      requestId: frame.requestId,
      model: frame.model,
      hook: frame.hook,
      ...(frame.tenant !== undefined ? { tenant: frame.tenant } : {}),
      ...(frame.meta !== undefined ? { meta: frame.meta } : {}),
      ...(frame.phase !== undefined ? { phase: frame.phase } : {}),
    },
    position: frame.position,
    tokens: frame.tokens,
    latents,
    firstRow,
    ...(frame.tokenText !== undefined ? { tokenText: frame.tokenText } : {}),
  };
}
