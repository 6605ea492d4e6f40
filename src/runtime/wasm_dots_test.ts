import assert from "node:assert/strict";
import { bf16ToF32, f32ToBf16 } from "../core/dtype.ts";
import { Rng } from "../core/random.ts";
import { WasmDots } from "./wasm_dots.ts";

Deno.test("WasmDots: dots of chosen rows against an f64 sum, widths that need padding", async () => {
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
    await dots.run(pairs.length);
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

Deno.test("WasmDots: growing the scratch keeps the matrix; bad shapes and counts are refused", async () => {
  const dots = new WasmDots(new Float32Array([1, 2, 3, 4]), 2, 2);
  let s = dots.prepare(1, 1);
  s = dots.prepare(5000, 200_000); // grows the memory
  s.inputs.set([1, 1], 4 * dots.stride);
  s.pairs.set([dots.inputAddress(4), dots.rowAddress(1), dots.inputAddress(4), dots.rowAddress(0)]);
  await dots.run(2);
  assert.deepEqual([...s.results.subarray(0, 2)], [7, 3]);
  assert.throws(
    () => new WasmDots(new Float32Array(3), 2, 2),
    /expected a 2×2 matrix \(4 floats\), found 3/,
  );
  await assert.rejects(() => dots.run(300_000), /expected n ≤ 200000 pairs/);
});

/** Pair c: input row `c % inputs` with matrix row `c·7919 mod rows`; the `n` results. */
async function strided(
  dots: WasmDots,
  x: Float32Array,
  inputs: number,
  n: number,
): Promise<Float32Array> {
  const width = dots.width;
  const s = dots.prepare(inputs, n);
  for (let t = 0; t < inputs; t++) {
    s.inputs.set(x.subarray(t * width, (t + 1) * width), t * dots.stride);
  }
  for (let c = 0; c < n; c++) {
    s.pairs[2 * c] = dots.inputAddress(c % inputs);
    s.pairs[2 * c + 1] = dots.rowAddress((c * 7919) % dots.rows);
  }
  await dots.run(n);
  return s.results.slice(0, n);
}

Deno.test("WasmDots: two threads (a worker takes half of a large job) give the same bits as one", async () => {
  const rows = 512, width = 300, inputs = 8;
  const rng = new Rng(77);
  const m = rng.fillGaussian(new Float32Array(rows * width));
  const x = rng.fillGaussian(new Float32Array(inputs * width));
  const one = new WasmDots(m, rows, width);
  const two = new WasmDots(m, rows, width, { threads: 2 });
  try {
    const n = 4001; // ≥ 2²⁰ multiply-adds: split between the threads
    const results = [await strided(one, x, inputs, n), await strided(two, x, inputs, n)];
    assert.deepEqual(results[1], results[0]);
    // and against f64 sums, both halves
    for (const c of [0, n >> 1, n - 1]) {
      let want = 0, abs = 0;
      const t = c % inputs, r = (c * 7919) % rows;
      for (let i = 0; i < width; i++) {
        want += x[t * width + i] * m[r * width + i];
        abs += Math.abs(x[t * width + i] * m[r * width + i]);
      }
      assert.ok(Math.abs(results[1][c] - want) <= width * 2 ** -24 * abs, `pair ${c}`);
    }
  } finally {
    one.close();
    two.close();
  }
});

Deno.test("WasmDots: a process that never closes its two-thread dots still exits (the worker stops when idle)", async () => {
  const code = `
    import { WasmDots } from ${JSON.stringify(new URL("./wasm_dots.ts", import.meta.url).href)};
    const rows = 512, width = 300;
    const d = new WasmDots(new Float32Array(rows * width).fill(0.5), rows, width, { threads: 2 });
    const s = d.prepare(1, 4001);
    s.inputs.fill(0.5, 0, width);
    for (let c = 0; c < 4001; c++) { s.pairs[2 * c] = d.inputAddress(0); s.pairs[2 * c + 1] = d.rowAddress(c % rows); }
    await d.run(4001);
    console.log(s.results[0]);
  `;
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, code);
    const t0 = performance.now();
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", file],
      stdout: "piped",
    })
      .output();
    assert.equal(out.code, 0);
    assert.equal(new TextDecoder().decode(out.stdout).trim(), String(300 * 0.25)); // 0.5·0.5 × 300
    assert.ok(performance.now() - t0 < 15_000, "the process exited on its own");
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("WasmDots: growing the scratch area leaves the input rows' padding zero", () => {
  // width 3: each row is padded to 16 floats, which the kernel multiplies with the matrix's zeros
  const dots = new WasmDots(new Float32Array([1, 2, 3]), 1, 3);
  const small = dots.prepare(1, 1);
  // what the pairs and results hold can be anything, NaN included, as f32
  small.results.fill(NaN);
  new Float32Array(small.pairs.buffer, small.pairs.byteOffset, small.pairs.length).fill(NaN);
  const big = dots.prepare(4096, 4096);
  const row = 5; // inside what were the pairs
  big.inputs.set([1, 1, 1], row * dots.stride);
  big.pairs.set([dots.inputAddress(row), dots.rowAddress(0)]);
  dots.runHere(1);
  assert.equal(big.results[0], 6);
  assert.ok(big.inputs.every((v) => v === 0 || v === 1));
});

Deno.test("WasmDots: bf16 rows (auto for a matrix of bf16 values) give the f32 rows' bits; padding, both threads", async () => {
  for (const width of [7, 16, 300]) {
    const rows = 512, inputs = 8;
    const rng = new Rng(900 + width);
    const m = rng.fillGaussian(new Float32Array(rows * width));
    bf16ToF32(f32ToBf16(m), m); // every value a bf16 (nearest, ties to even)
    const x = rng.fillGaussian(new Float32Array(inputs * width));
    const f32 = new WasmDots(m, rows, width);
    const bf16 = new WasmDots(m, rows, width, { rowFormat: "auto", threads: 2 });
    try {
      assert.equal(f32.rowFormat, "f32");
      assert.equal(bf16.rowFormat, "bf16");
      const n = 4001;
      const results = [await strided(f32, x, inputs, n), await strided(bf16, x, inputs, n)];
      assert.deepEqual(results[1], results[0], `width ${width}`);
      // and the f64 sum of one pair, so a kernel reading the wrong halves cannot agree with itself
      const c = n - 1, t = c % inputs, r = (c * 7919) % rows;
      let want = 0, abs = 0;
      for (let i = 0; i < width; i++) {
        want += x[t * width + i] * m[r * width + i];
        abs += Math.abs(x[t * width + i] * m[r * width + i]);
      }
      assert.ok(Math.abs(results[1][c] - want) <= width * 2 ** -24 * abs + 1e-30, `width ${width}`);
    } finally {
      f32.close();
      bf16.close();
    }
  }
});

Deno.test("WasmDots: a matrix with a value that is not a bf16 stays f32 under auto and is refused as bf16", () => {
  const m = new Float32Array([1, 2, 3, 1 + 2 ** -20]);
  assert.equal(new WasmDots(m, 2, 2, { rowFormat: "auto" }).rowFormat, "f32");
  assert.throws(
    () => new WasmDots(m, 2, 2, { rowFormat: "bf16" }),
    /rowFormat bf16: expected every matrix value to be a bf16, found one that is not/,
  );
  assert.equal(new WasmDots(m.subarray(0, 3), 1, 3, { rowFormat: "bf16" }).rowFormat, "bf16");
});
