import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { WasmDots } from "./wasm_dots.ts";

Deno.test("WasmDots: dots of chosen rows against an f64 sum, widths that need padding", () => {
  for (const width of [1, 15, 16, 17, 40, 768]) {
    const rows = 37;
    const rng = new Rng(width);
    const m = rng.fillGaussian(new Float32Array(rows * width));
    const dots = new WasmDots(m, rows, width);
    assert.equal(dots.stride % 16, 0);
    assert.ok(dots.stride >= width && dots.stride < width + 16);
    const inputs = 3;
    const x = rng.fillGaussian(new Float32Array(inputs * width));
    const pairs: [number, number][] = [];
    for (let p = 0; p < 50; p++) pairs.push([p % inputs, Math.floor(rng.uniform() * rows)]);
    const s = dots.prepare(inputs, pairs.length);
    for (let t = 0; t < inputs; t++) {
      s.inputs.set(x.subarray(t * width, (t + 1) * width), t * dots.stride);
    }
    pairs.forEach(([t, r], c) => {
      s.pairs[2 * c] = dots.inputAddress(t);
      s.pairs[2 * c + 1] = dots.rowAddress(r);
    });
    dots.run(pairs.length);
    pairs.forEach(([t, r], c) => {
      let want = 0, abs = 0;
      for (let i = 0; i < width; i++) {
        want += x[t * width + i] * m[r * width + i];
        abs += Math.abs(x[t * width + i] * m[r * width + i]);
      }
      // f32 summation: within d·2⁻²⁴·Σ|x·w| of the exact sum
      const bound = width * 2 ** -24 * abs + 1e-30;
      assert.ok(
        Math.abs(s.results[c] - want) <= bound,
        `width ${width} pair ${c}: ${s.results[c]} vs ${want}`,
      );
    });
  }
});

Deno.test("WasmDots: growing the scratch keeps the matrix; bad shapes and counts are refused", () => {
  const dots = new WasmDots(new Float32Array([1, 2, 3, 4]), 2, 2);
  let s = dots.prepare(1, 1);
  s = dots.prepare(5000, 200_000); // grows the memory
  s.inputs.set([1, 1], 4 * dots.stride);
  s.pairs.set([dots.inputAddress(4), dots.rowAddress(1), dots.inputAddress(4), dots.rowAddress(0)]);
  dots.run(2);
  assert.deepEqual([...s.results.subarray(0, 2)], [7, 3]);
  assert.throws(
    () => new WasmDots(new Float32Array(3), 2, 2),
    /expected a 2×2 matrix \(4 floats\), found 3/,
  );
  assert.throws(() => dots.run(300_000), /expected n ≤ 200000 pairs/);
});
