/**
 * The NATS subjects of steering: where commands for a model/hook go (per
 * partition), and where taps acknowledge them. Names become subject tokens as
 * in the frame subjects. Pure: imports nothing outside `src/core`.
 *
 * @module
 */
import { subjectToken } from "../frame/subjects.ts";
/**
 * The subject commands for `model`/`hook` go to, on the request's partition:
 * `latentwatch.steer.v1.<model>.<hook>.<partition>` (names as in `tapSubject`).
 *
 * @example
 * ```ts
 * steerSubject("gpt2", "blocks.6.hook_resid_post", 0); // "latentwatch.steer.v1.gpt2.blocks_6_hook_resid_post.0"
 * ```
 */
export function steerSubject(model: string, hook: string, partition = 0): string {
  if (!Number.isSafeInteger(partition) || partition < 0) {
    throw new RangeError(
      `steer subject: partition: expected a non-negative integer, found ${partition}`,
    );
  }
  return `latentwatch.steer.v1.${subjectToken("model", model)}.${
    subjectToken("hook", hook)
  }.${partition}`;
}

/**
 * The filter a tap subscribes to for every partition of `model`/`hook`.
 *
 * @example
 * ```ts
 * steerSubjectFilter("gpt2", "blocks.6.hook_resid_post"); // "latentwatch.steer.v1.gpt2.blocks_6_hook_resid_post.*"
 * ```
 */
export function steerSubjectFilter(model: string, hook: string): string {
  return `latentwatch.steer.v1.${subjectToken("model", model)}.${subjectToken("hook", hook)}.*`;
}

/**
 * The subject a tap acknowledges commands on.
 *
 * @example
 * ```ts
 * steerAckSubject("gpt2", "blocks.6.hook_resid_post"); // "latentwatch.steer-ack.v1.gpt2.blocks_6_hook_resid_post"
 * ```
 */
export function steerAckSubject(model: string, hook: string): string {
  return `latentwatch.steer-ack.v1.${subjectToken("model", model)}.${subjectToken("hook", hook)}`;
}

/** The filter the sidecar hears every acknowledgement on. */
export const STEER_ACK_FILTER = "latentwatch.steer-ack.v1.>";
