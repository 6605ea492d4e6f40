import assert from "node:assert/strict";
import { bf16ToF32, f32ToBf16 } from "../core/dtype.ts";
import { Rng } from "../core/random.ts";
import { type DotsFn, dotsModule, isBf16Exact, MAX_PAGES } from "./wasm_dots_kernel.ts";

/** A memory laid out by hand: x rows (f32), then w rows (f32 or bf16 bits), pairs, results. */
function runDots(
  format: "f32" | "bf16",
  stride: number,
  x: number[][],
  w: number[][],
  pairs: [number, number][],
): Float32Array {
  const mem = new WebAssembly.Memory({ initial: 4, maximum: MAX_PAGES, shared: true });
  const module = new WebAssembly.Module(dotsModule(format) as BufferSource);
  const dots = new WebAssembly.Instance(module, { env: { mem } }).exports.dots as DotsFn;
  const xBytes = stride * 4, wBytes = stride * (format === "bf16" ? 2 : 4);
  const wAt = x.length * xBytes;
  const pairsAt = wAt + w.length * wBytes;
  const outAt = pairsAt + pairs.length * 8;
  x.forEach((row, r) => new Float32Array(mem.buffer, r * xBytes, stride).set(row));
  w.forEach((row, r) => {
    if (format === "f32") new Float32Array(mem.buffer, wAt + r * wBytes, stride).set(row);
    else {
      const bits = new Uint32Array(Float32Array.from(row).buffer);
      new Uint16Array(mem.buffer, wAt + r * wBytes, stride).set(bits.map((b) => b >>> 16));
    }
  });
  const addresses = new Uint32Array(mem.buffer, pairsAt, pairs.length * 2);
  pairs.forEach(([xr, wr], c) => addresses.set([xr * xBytes, wAt + wr * wBytes], 2 * c));
  const out = new Float32Array(mem.buffer, outAt, pairs.length + 1).fill(-7);
  dots(pairsAt, pairs.length, stride, outAt);
  return out.slice();
}

/** The documented order in plain JS: four accumulators of four lanes, then (a0+a1)+(a2+a3), then the lanes. */
function referenceDot(x: ArrayLike<number>, w: ArrayLike<number>, stride: number): number {
  const f = Math.fround;
  const acc = [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]];
  for (let i = 0; i < stride; i += 16) {
    for (let k = 0; k < 4; k++) {
      for (let l = 0; l < 4; l++) acc[k][l] = f(acc[k][l] + f(x[i + 4 * k + l] * w[i + 4 * k + l]));
    }
  }
  const s = [0, 1, 2, 3].map((l) => f(f(acc[0][l] + acc[1][l]) + f(acc[2][l] + acc[3][l])));
  return f(f(s[0] + s[1]) + f(s[2] + s[3]));
}

Deno.test("wasm dots kernel: isBf16Exact tests each value's lower 16 bits", () => {
  assert.equal(isBf16Exact(new Float32Array([0, 1, -0.5, 3, 2 ** 100, -Infinity])), true);
  assert.equal(isBf16Exact(new Float32Array([1, 1 + 2 ** -20])), false); // bit 3 of the mantissa
  assert.equal(isBf16Exact(new Float32Array([1 + 2 ** -7])), true); // the last bit bf16 holds
  assert.equal(isBf16Exact(new Float32Array([1 + 2 ** -8])), false);
  // a view: only its own values count
  const m = new Float32Array([1 + 2 ** -20, 2, 4]);
  assert.equal(isBf16Exact(m.subarray(1)), true);
  assert.equal(isBf16Exact(new Float32Array(0)), true);
});

Deno.test("wasm dots kernel: a valid module that imports one shared memory and exports dots", () => {
  for (const format of ["f32", "bf16"] as const) {
    const bytes = dotsModule(format);
    assert.ok(WebAssembly.validate(bytes as BufferSource), format);
    const module = new WebAssembly.Module(bytes as BufferSource);
    assert.deepEqual(WebAssembly.Module.imports(module), [
      { module: "env", name: "mem", kind: "memory" },
    ]);
    assert.deepEqual(WebAssembly.Module.exports(module), [{ name: "dots", kind: "function" }]);
  }
  assert.equal(MAX_PAGES * 65536, 2 ** 32);
});

Deno.test("wasm dots kernel: the bytes are those written before the kernel had a file of its own", async () => {
  // SHA-256 of dotsModule(format) as wasm_dots.ts wrote it; a change here must be deliberate
  const want = {
    f32: [387, "aa781cf806e71c3dda813574c4d1b05e0a00aed8870bb7ca18643fb6e0859cc0"],
    bf16: [431, "e8c504055f3b759f2821f02a07f4d2bbb1d22fb3d5c2b41f4d5a2bf2443e41cf"],
  };
  for (const format of ["f32", "bf16"] as const) {
    const bytes = dotsModule(format);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
    const hex = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
    assert.deepEqual([bytes.length, hex], want[format], format);
  }
});

Deno.test("wasm dots kernel: dots by hand, f32 and bf16 rows, one and two steps of 16", () => {
  const iota = Array.from({ length: 16 }, (_, i) => i + 1);
  const ones = new Array(16).fill(1);
  const alternate = Array.from({ length: 16 }, (_, i) => i % 2 === 0 ? 1 : -1);
  for (const format of ["f32", "bf16"] as const) {
    // 1+2+…+16 = 136; (1−2)+(3−4)+… = −8; 0.5·136 = 68. The slot after the last stays −7
    const one = runDots(format, 16, [iota, ones], [ones, alternate, new Array(16).fill(0.5)], [
      [0, 0],
      [0, 1],
      [0, 2],
      [1, 1],
    ]);
    assert.deepEqual([...one], [136, -8, 68, 0, -7], format);
    // stride 32: the inner loop runs twice; 32·(1·2) = 64, and 16·3 + 16·(−1) = 32
    const twice = runDots(
      format,
      32,
      [new Array(32).fill(1)],
      [new Array(32).fill(2), [...new Array(16).fill(3), ...new Array(16).fill(-1)]],
      [[0, 0], [0, 1]],
    );
    assert.deepEqual([...twice], [64, 32, -7], format);
    // n = 0 writes nothing
    assert.deepEqual([...runDots(format, 16, [iota], [ones], [])], [-7], format);
  }
});

Deno.test("wasm dots kernel: the f32 sums in the documented order, to the bit", () => {
  const stride = 64, rowsX = 3, rowsW = 20;
  const rng = new Rng(31);
  // magnitudes spread over 2⁰…2¹⁸ so that the order of the additions shows in the bits
  const spread = (v: number, i: number) => v * 2 ** ((i * 7) % 19);
  const x = Array.from({ length: rowsX }, () => [...rng.fillGaussian(new Float32Array(stride))]);
  const w = Array.from(
    { length: rowsW },
    () => [...Float32Array.from(rng.fillGaussian(new Float32Array(stride)), spread)],
  );
  const pairs: [number, number][] = [];
  for (let c = 0; c < 60; c++) pairs.push([c % rowsX, (c * 7) % rowsW]);
  const got = runDots("f32", stride, x, w, pairs).subarray(0, pairs.length);
  const want = Float32Array.from(pairs, ([a, b]) => referenceDot(x[a], w[b], stride));
  assert.deepEqual(got, want);
  // a plain left-to-right f32 sum differs somewhere: the test would see another order
  const sequential = Float32Array.from(pairs, ([a, b]) => {
    let s = 0;
    for (let i = 0; i < stride; i++) s = Math.fround(s + Math.fround(x[a][i] * w[b][i]));
    return s;
  });
  assert.notDeepEqual(sequential, want);
  // bf16 rows: the weights rounded to bf16 give the f32 kernel's bits on the same values
  const wb = w.map((row) => [...bf16ToF32(f32ToBf16(Float32Array.from(row)))]);
  const bf16 = runDots("bf16", stride, x, wb, pairs).subarray(0, pairs.length);
  assert.deepEqual(bf16, runDots("f32", stride, x, wb, pairs).subarray(0, pairs.length));
  assert.deepEqual(bf16, Float32Array.from(pairs, ([a, b]) => referenceDot(x[a], wb[b], stride)));
});
