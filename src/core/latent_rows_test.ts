import assert from "node:assert/strict";
import {
  emptySpan,
  joinTables,
  LatentRows,
  LatentRowsError,
  type LatentTable,
  NO_ROWS,
  readRow,
  rowOf,
  spanValue,
} from "./latent_rows.ts";
import { NO_LATENTS, type SparseLatents } from "./sae.ts";
import { Rng } from "./random.ts";

/** Random per-token rows: ascending indices below `width`, some tokens empty. */
function randomRows(rng: Rng, tokens: number, width: number): SparseLatents[] {
  return Array.from({ length: tokens }, () => {
    const picked: number[] = [];
    for (let i = 0; i < width; i++) if (rng.uniform() < 0.2) picked.push(i);
    return {
      indices: Uint32Array.from(picked),
      values: Float32Array.from(picked, () => rng.uniform() * 8 - 2),
    };
  });
}

/** A token's entries as plain pairs, read the slow way. */
const pairs = (row: Readonly<SparseLatents>) =>
  [...row.indices].map((ix, k) => [ix, row.values[k]]);

Deno.test("latent rows: from per-token rows and back, token by token", () => {
  const rng = new Rng(1);
  const rows = randomRows(rng, 40, 30);
  const table = LatentRows.from(rows);
  assert.equal(table.length, 40);
  assert.equal(table.indices.length, rows.reduce((s, r) => s + r.indices.length, 0));
  for (let t = 0; t < rows.length; t++) {
    assert.deepEqual(pairs(table.row(t)), pairs(rows[t]), `token ${t}`);
    assert.equal(table.end(t) - table.start(t), rows[t].indices.length);
  }
  assert.deepEqual(table.toArray().map(pairs), rows.map(pairs));
});

Deno.test("latent rows: a token with no latents is the shared empty row", () => {
  const table = new LatentRows(Uint32Array.of(4), Float32Array.of(1), Uint32Array.of(0, 1, 1));
  assert.equal(table.row(0), NO_LATENTS);
  assert.equal(table.row(2), NO_LATENTS);
  assert.deepEqual([...table.row(1).indices], [4]);
  assert.ok(Object.isFrozen(NO_ROWS));
  assert.equal(NO_ROWS.length, 0);
});

Deno.test("latent rows: arrays that do not fit together are refused, saying what was found", () => {
  // the last token's end must be the number of entries, and values match indices
  assert.throws(
    () => new LatentRows(Uint32Array.of(1, 2), Float32Array.of(1, 2), Uint32Array.of(1)),
    (e: Error) => e instanceof LatentRowsError && /expected 1 .* found 2 indices/.test(e.message),
  );
  assert.throws(
    () => new LatentRows(Uint32Array.of(1, 2), Float32Array.of(1), Uint32Array.of(2)),
    (e: Error) => e instanceof LatentRowsError && /found 2 indices and 1 values/.test(e.message),
  );
  assert.throws(() => new LatentRows(Uint32Array.of(1), Float32Array.of(1), new Uint32Array(0)));
  // ends that go back would hand two tokens the same entries, or lose some
  assert.throws(
    () => new LatentRows(Uint32Array.of(1, 2), Float32Array.of(1, 2), Uint32Array.of(2, 1, 2)),
    (e: Error) =>
      e instanceof LatentRowsError && /never decrease, found 1 after 2 at token 1/.test(e.message),
  );
  const rows = new LatentRows(Uint32Array.of(1), Float32Array.of(1), Uint32Array.of(1));
  assert.throws(() => rows.row(1), RangeError);
  assert.throws(() => rows.row(-1), RangeError);
});

Deno.test("latent rows: readRow and spanValue read both shapes alike (against a linear search)", () => {
  const rng = new Rng(2);
  const rows = randomRows(rng, 30, 24);
  // a probe's rows: every score present (the direct-hit case)
  const dense = Array.from({ length: 5 }, () => ({
    indices: Uint32Array.from({ length: 6 }, (_, i) => i),
    values: Float32Array.from({ length: 6 }, () => rng.uniform()),
  }));
  for (const source of [rows, dense]) {
    const tables: LatentTable[] = [source, LatentRows.from(source)];
    for (const table of tables) {
      const span = emptySpan();
      for (let t = 0; t < source.length; t++) {
        assert.ok(readRow(table, t, span));
        for (let index = 0; index < 26; index++) {
          const k = [...source[t].indices].indexOf(index);
          const want = k < 0 ? 0 : source[t].values[k];
          assert.equal(spanValue(span, index), want, `token ${t} latent ${index}`);
        }
      }
      assert.equal(readRow(table, source.length, span), false);
      assert.equal(readRow(table, -1, span), false);
      assert.equal(rowOf(table, source.length), undefined);
    }
  }
  assert.equal(readRow(undefined, 0, emptySpan()), false);
});

Deno.test("latent rows: joinTables of mixed parts is the parts' rows in order", () => {
  const rng = new Rng(3);
  const a = randomRows(rng, 7, 16), b = randomRows(rng, 5, 16), c = randomRows(rng, 9, 16);
  const joined = joinTables([LatentRows.from(a), b, LatentRows.from(c)]);
  assert.ok(joined instanceof LatentRows);
  assert.equal(joined.length, 21);
  assert.deepEqual(
    Array.from({ length: 21 }, (_, t) => pairs(rowOf(joined, t)!)),
    [...a, ...b, ...c].map(pairs),
  );
  // one part is handed back as it is
  assert.equal(joinTables([b]), b);
});
