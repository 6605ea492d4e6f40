/**
 * A worker that runs the dot kernel of `wasm_dots.ts` on its share of the
 * pairs, over the same shared WebAssembly memory.
 *
 * Messages in: `{ module, memory }` once, then `{ pairs, n, stride, out }`
 * (byte addresses); out: `{ done: n }` after each job.
 *
 * @module
 */
/// <reference lib="deno.worker" />

type DotsFn = (pairs: number, n: number, stride: number, out: number) => void;
let dots: DotsFn | undefined;

self.onmessage = (e: MessageEvent) => {
  const m = e.data;
  if (m.module) {
    const instance = new WebAssembly.Instance(m.module, { env: { mem: m.memory } });
    dots = instance.exports.dots as DotsFn;
    return;
  }
  dots!(m.pairs, m.n, m.stride, m.out);
  self.postMessage({ done: m.n });
};
