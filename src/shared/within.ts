/**
 * Bound a wait without cancelling the work behind it. Pure.
 *
 * @module
 */

/**
 * `p`'s value, or undefined once `ms` have passed (the work behind `p` goes
 * on, unobserved; a later rejection of `p` is handled, not reported). A
 * rejection of `p` before then rejects.
 *
 * @example
 * ```ts
 * import { within } from "./within.ts";
 * await within(Promise.resolve(7), 100); // 7
 * await within(new Promise(() => {}), 10); // undefined
 * ```
 */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), ms));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
