import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { NativeKernelsUnavailableError, openNativeDots, openNativeInt8 } from "./native_kernels.ts";
import { missingCpuFlags } from "./native_library.ts";
import {
  hugePageAdvice,
  hugePageBytes,
  kernelCanCollapse,
  transparentHugePageMode,
} from "./huge_pages.ts";
import { WasmDots } from "./wasm_dots.ts";

/** The tests below need a CPU the kernels run on. */
const ignore = missingCpuFlags().length > 0;

/** The integer product written plainly: Σ (q − 128)·w, in exact JS numbers. */
function referenceProduct(
  q: Uint8Array,
  w: Int8Array,
  m: number,
  k: number,
  n: number,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let kk = 0; kk < k; kk++) {
      const a = q[i * k + kk] - 128;
      if (a === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += a * w[kk * n + j];
    }
  }
  return out;
}

Deno.test({
  name: "native int8 product: a small product is exact on one thread and split, and keeps one way",
  ignore,
  async fn() {
    const rng = new Rng(23);
    const [k, n] = [130, 200]; // 4 panels of 64 columns: splittable, far below the split size
    const w = Int8Array.from({ length: k * n }, () => Math.floor(rng.uniform() * 255) - 127);
    const gemm = await openNativeInt8(w, k, n, { threads: 2 });
    // the first 30 calls alternate the two ways (8 warm-up and 7 timed each), then one is kept
    for (let call = 0; call < 36; call++) {
      if (call === 30) assert.notEqual(gemm.splitChoice(1), undefined, "chosen after 30 calls");
      if (call < 30) assert.equal(gemm.splitChoice(1), undefined, `still timing at call ${call}`);
      const q = Uint8Array.from({ length: k }, () => Math.floor(rng.uniform() * 256));
      const acc = new Int32Array(n).fill(-1);
      await gemm.run(q, 1, acc);
      assert.deepEqual(
        Array.from(acc),
        Array.from(referenceProduct(q, w, 1, k, n)),
        `call ${call}`,
      );
    }
    assert.ok(["one", "split"].includes(gemm.splitChoice(1)!));
    const single = await openNativeInt8(w, k, n, { threads: 1 });
    await single.run(new Uint8Array(k), 1, new Int32Array(n));
    assert.equal(single.splitChoice(1), undefined, "one thread: nothing to choose");
  },
});

Deno.test({
  name: "native int8 product: exact against the plain sum, every tile edge, extreme bytes",
  ignore,
  async fn() {
    const rng = new Rng(17);
    // rows around the 6-row tile, depths not a multiple of 4, widths around the 64-column panel
    const shapes = [[1, 1, 1], [1, 3, 65], [5, 7, 63], [6, 8, 64], [7, 13, 129], [13, 130, 200]];
    for (const [m, k, n] of shapes) {
      const w = Int8Array.from({ length: k * n }, () => Math.floor(rng.uniform() * 255) - 127);
      const q = Uint8Array.from({ length: m * k }, () => Math.floor(rng.uniform() * 256));
      const gemm = await openNativeInt8(w, k, n);
      const acc = new Int32Array(m * n).fill(12345);
      await gemm.run(q, m, acc);
      assert.deepEqual(
        Array.from(acc),
        Array.from(referenceProduct(q, w, m, k, n)),
        `${m}×${k}×${n}`,
      );
    }
    // the extremes: q = 0 (a = −128) against w = −127 and 127 over a long row: no overflow, no
    // saturation of vpdpbusd's pairs
    const k = 4099, n = 70;
    const w = Int8Array.from({ length: k * n }, (_, i) => (i % 2 ? 127 : -127));
    const q = new Uint8Array(2 * k).fill(0, 0, k).fill(255, k);
    const acc = new Int32Array(2 * n);
    await (await openNativeInt8(w, k, n)).run(q, 2, acc);
    assert.deepEqual(Array.from(acc), Array.from(referenceProduct(q, w, 2, k, n)));
  },
});

Deno.test({
  name: "native int8 product: a large batch split between threads equals one thread's",
  ignore,
  async fn() {
    const rng = new Rng(5);
    const m = 64, k = 400, n = 1000; // 25.6M multiply-adds: past PARALLEL_MIN_MACS, split
    const w = Int8Array.from({ length: k * n }, () => Math.floor(rng.uniform() * 255) - 127);
    const q = Uint8Array.from({ length: m * k }, () => Math.floor(rng.uniform() * 256));
    const split = new Int32Array(m * n), single = new Int32Array(m * n);
    await (await openNativeInt8(w, k, n)).run(q, m, split);
    await (await openNativeInt8(w, k, n, { threads: 1 })).run(q, m, single);
    assert.deepEqual(split, single);
    assert.deepEqual(Array.from(split), Array.from(referenceProduct(q, w, m, k, n)));
  },
});

Deno.test({
  name: "native dots equal the f64 sum within f32 rounding; f32 and bf16 rows, one and two parts",
  ignore,
  async fn() {
    const native = await openNativeDots();
    assert.ok(native);
    const rng = new Rng(9);
    for (const width of [5, 16, 70, 300]) {
      const rows = 50;
      const m = rng.fillGaussian(new Float32Array(rows * width));
      const bits = new Uint32Array(m.buffer);
      const asBf16 = Float32Array.from(m);
      const b = new Uint32Array(asBf16.buffer);
      for (let i = 0; i < b.length; i++) b[i] = bits[i] & 0xffff0000;
      for (const matrix of [m, asBf16]) {
        const dots = new WasmDots(matrix, rows, width, { threads: 2, rowFormat: "auto" });
        const wasm = new WasmDots(matrix, rows, width, { threads: 1, rowFormat: "auto" });
        dots.useNative(native);
        assert.deepEqual(dots.kernel, "native");
        const inputs = rng.fillGaussian(new Float32Array(3 * width));
        // the widest past NATIVE_PARALLEL_MIN_MACS (4M multiply-adds): the job is split
        const n = width === 300 ? 15000 : 3000;
        const pick: [number, number][] = Array.from(
          { length: n },
          () => [Math.floor(rng.uniform() * 3), Math.floor(rng.uniform() * rows)],
        );
        for (const d of [dots, wasm]) {
          const s = d.prepare(3, n);
          for (let t = 0; t < 3; t++) {
            s.inputs.set(inputs.subarray(t * width, (t + 1) * width), t * d.stride);
          }
          pick.forEach(([t, r], c) => {
            s.pairs[2 * c] = d.inputAddress(t);
            s.pairs[2 * c + 1] = d.rowAddress(r);
          });
          await d.run(n);
        }
        const got = dots.prepare(3, n).results, plain = wasm.prepare(3, n).results;
        pick.forEach(([t, r], c) => {
          let exact = 0, abs = 0;
          for (let i = 0; i < width; i++) {
            const p = inputs[t * width + i] * matrix[r * width + i];
            exact += p;
            abs += Math.abs(p);
          }
          const tol = width * 2 ** -24 * abs * 1.01 + 1e-30;
          assert.ok(
            Math.abs(got[c] - exact) <= tol,
            `width ${width} pair ${c}: ${got[c]} vs ${exact}`,
          );
          assert.ok(Math.abs(got[c] - plain[c]) <= 2 * tol, `native vs wasm at ${c}`);
        });
        dots.close();
        wasm.close();
      }
    }
  },
});

Deno.test({
  // refused before the library loads: on every machine
  name: "native int8 product: a d_in past int32's reach and a wrong-sized matrix are refused",
  async fn() {
    await assert.rejects(
      () => openNativeInt8(new Int8Array(0), 70000, 0),
      (e) =>
        e instanceof NativeKernelsUnavailableError && /d_in ≤ 65536 .*found 70000/.test(e.message),
    );
    await assert.rejects(
      () => openNativeInt8(new Int8Array(5), 2, 3),
      (e) => e instanceof RangeError && /2×3 int8 matrix, found 5/.test(e.message),
    );
  },
});

Deno.test({
  name:
    "native TopK scores: each sum scaled in f64 and rounded once, the k-th against a sort, split",
  ignore,
  async fn() {
    const rng = new Rng(23);
    const tokens = 70, n = 4103, k = 37; // 70 × 4103 scores: past the split point
    const gemm = await openNativeInt8(new Int8Array(4 * n), 4, n);
    const acc = Int32Array.from({ length: tokens * n }, () => Math.round(rng.gaussian() * 5000));
    const sums = Int32Array.from(acc);
    const columnScale = Float64Array.from({ length: n }, () => 1e-4 * (0.5 + rng.uniform()));
    const columnBias = Float32Array.from({ length: n }, () => rng.gaussian() * 0.1);
    const tokenScale = Float32Array.from({ length: tokens }, () => 0.5 + rng.uniform());
    const kth = await gemm.topkScores(acc, tokens, { columnScale, columnBias, tokenScale, k });
    const scores = new Float32Array(acc.buffer);
    for (let t = 0; t < tokens; t++) {
      const want = Array.from(
        { length: n },
        (_, j) => Math.fround(sums[t * n + j] * columnScale[j] * tokenScale[t] + columnBias[j]),
      );
      assert.deepEqual(Array.from(scores.subarray(t * n, (t + 1) * n)), want, `token ${t}`);
      assert.equal(kth[t], [...want].sort((a, b) => b - a)[k - 1], `token ${t}'s k-th`);
    }
    await assert.rejects(
      () => gemm.topkScores(acc, tokens, { columnScale, columnBias, tokenScale, k: n + 1 }),
      RangeError,
    );
  },
});

Deno.test({
  name:
    "native int8 product and dots: their weights ask for huge pages, and the product stays exact",
  ignore: ignore || [null, "never"].includes(transparentHugePageMode()) ||
    hugePageBytes() > 2 ** 21,
  async fn() {
    const HUGE_PAGE_BYTES = hugePageBytes();
    const rng = new Rng(31);
    const [k, n] = [768, 8192]; // 6 MiB packed: two whole huge pages at least
    const w = Int8Array.from({ length: k * n }, () => Math.floor(rng.uniform() * 255) - 127);
    const before = hugePageAdvice();
    const gemm = await openNativeInt8(w, k, n, { threads: 1 });
    const packed = hugePageAdvice();
    assert.equal(packed.arrays, before.arrays + 1);
    assert.ok(packed.bytes - before.bytes >= 2 * HUGE_PAGE_BYTES, `${packed.bytes - before.bytes}`);
    // and collapsed after packing: the pages the advice did not reach
    if (kernelCanCollapse()) assert.ok(packed.collapsedBytes > before.collapsedBytes);
    const q = Uint8Array.from({ length: k }, () => Math.floor(rng.uniform() * 256));
    const acc = new Int32Array(n);
    await gemm.run(q, 1, acc);
    assert.deepEqual(Array.from(acc), Array.from(referenceProduct(q, w, 1, k, n)));
    // the exact pass's rows: 8192 rows of 768 f32 (24 MiB) in WebAssembly memory
    const dots = new WasmDots(new Float32Array(n * k).fill(0.5), n, k);
    const rows = hugePageAdvice();
    assert.ok(rows.bytes - packed.bytes >= 10 * HUGE_PAGE_BYTES, `${rows.bytes - packed.bytes}`);
    dots.close();
  },
});
