import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import type { LatentRows } from "../core/latent_rows.ts";
import { SparseRowsReader } from "./sparse_rows.ts";

/** Each row's non-zero entries, read the plain way (the reference). */
function referenceDense(dense: Float32Array, tokens: number, width: number, columns?: Uint32Array) {
  const rows: { indices: number[]; values: number[] }[] = [];
  for (let t = 0; t < tokens; t++) {
    const indices: number[] = [], values: number[] = [];
    for (let j = 0; j < width; j++) {
      const v = dense[t * width + j];
      if (v !== 0) {
        indices.push(columns ? columns[j] : j);
        values.push(v);
      }
    }
    rows.push({ indices, values });
  }
  return rows;
}

function plain(rows: LatentRows) {
  return rows.toArray().map((r) => ({ indices: [...r.indices], values: [...r.values] }));
}

/** A dense output with about `share` of its entries non-zero, some of them -0 (which is zero). */
function sparseDense(rng: Rng, tokens: number, width: number, share: number): Float32Array {
  const dense = new Float32Array(tokens * width);
  for (let i = 0; i < dense.length; i++) {
    const u = rng.uniform();
    if (u < share) dense[i] = rng.uniform() * 8 - 2;
    else if (u < share * 2) dense[i] = -0;
  }
  return dense;
}

Deno.test("sparse rows: a dense output's non-zero entries per row, as the plain loop reads them", () => {
  const rng = new Rng(7);
  // 37 columns: the 8-wide skip and the tail loop both run; -0 entries count as zero. One reader
  // for every batch, large then small, so scratch left by a batch is read past by the next
  const width = 37;
  const reader = new SparseRowsReader({ dSae: width });
  for (const [tokens, share] of [[40, 0.3], [5, 0.3], [1, 0.1], [16, 0.01], [3, 1], [1, 0]]) {
    const dense = sparseDense(rng, tokens, width, share);
    assert.deepEqual(plain(reader.fromDense(dense, tokens)), referenceDense(dense, tokens, width));
  }
  const wide = new SparseRowsReader({ dSae: 24576 });
  const dense = sparseDense(rng, 16, 24576, 0.004);
  assert.deepEqual(plain(wide.fromDense(dense, 16)), referenceDense(dense, 16, 24576));
  assert.equal(reader.fromDense(new Float32Array(0), 0).length, 0);
});

Deno.test("sparse rows: a watched graph's columns map back to their latents", () => {
  const columns = Uint32Array.of(3, 40, 41, 900, 1023);
  const reader = new SparseRowsReader({ dSae: 1024, columns });
  const dense = Float32Array.of(0, 1.5, 0, 0, 2, /* token 1 */ 7, 0, 0, 0, 0);
  assert.deepEqual(plain(reader.fromDense(dense, 2)), [
    { indices: [40, 1023], values: [1.5, 2] },
    { indices: [3], values: [7] },
  ]);
});

Deno.test("sparse rows: a TopK output sorted by latent, zeros dropped, watched latents kept", () => {
  const values = Float32Array.of(5, 0, 2, 9, /* token 1 */ 1, 3, 4, 0.5);
  const indices = BigInt64Array.of(30n, 7n, 2n, 11n, /* token 1 */ 8n, 1n, 30n, 2n);
  const full = new SparseRowsReader({ dSae: 32, topk: true });
  assert.deepEqual(plain(full.fromTopK(values, indices, 2)), [
    { indices: [2, 11, 30], values: [2, 9, 5] },
    { indices: [1, 2, 8, 30], values: [3, 0.5, 1, 4] },
  ]);
  const mask = new Uint8Array(32);
  mask[30] = mask[1] = 1;
  const watched = new SparseRowsReader({ dSae: 32, topk: true, mask });
  assert.deepEqual(plain(watched.fromTopK(values, indices, 2)), [
    { indices: [30], values: [5] },
    { indices: [1, 30], values: [3, 4] },
  ]);
});

Deno.test("sparse rows: one buffer per batch past V8's in-heap size, and batches never alias", () => {
  const rng = new Rng(3);
  const reader = new SparseRowsReader({ dSae: 8 });
  // 8 tokens, every entry non-zero: 64 entries, past the 64 bytes V8 keeps inside its heap
  const full = Float32Array.from({ length: 64 }, (_, i) => i + 1);
  const first = reader.fromDense(full, 8);
  // ends, indices and values are views of one buffer: a batch leaves one behind, not three
  assert.equal(first.indices.buffer, first.values.buffer);
  assert.equal(first.ends.buffer, first.indices.buffer);
  const before = plain(first);
  // a batch of the same size (no growth: the scratch is written over) changes nothing of the first
  const second = reader.fromDense(sparseDense(rng, 8, 8, 0.5), 8);
  assert.deepEqual(plain(first), before);
  assert.deepEqual(before[7], {
    indices: [0, 1, 2, 3, 4, 5, 6, 7],
    values: [57, 58, 59, 60, 61, 62, 63, 64],
  });
  // a small batch (a decode step's) stays in the heap: separate arrays, read the same way
  const small = reader.fromDense(Float32Array.of(0, 0, 2.5, 0, 0, 0, 0, -1), 1);
  assert.deepEqual(plain(small), [{ indices: [2, 7], values: [2.5, -1] }]);
  assert.deepEqual(plain(first), before);
  assert.notDeepEqual(plain(second), before);
});
