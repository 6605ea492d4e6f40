/** Which read chunks come back for reuse, counted against scripted totals. */
import { deepStrictEqual as assertEquals, default as assert } from "node:assert/strict";
import { CHUNK_BYTES, MIN_READ_BYTES, ReadChunks } from "./read_chunks.ts";

/** Fill the current chunk past the point where the next `space()` retires it. */
function fillChunk(chunks: ReadChunks): Uint8Array {
  const room = chunks.space();
  const view = chunks.commit(room.length - MIN_READ_BYTES + 1);
  return view;
}

/** Totals a test moves by hand: what the client parsed, what went to borrowing handlers. */
function totals() {
  const t = { parsed: 0, borrowed: 0 };
  return { t, loans: { parsed: () => t.parsed, borrowed: () => t.borrowed } };
}

Deno.test("read chunks: without loans every chunk is fresh and left to the collector", () => {
  const chunks = new ReadChunks();
  const first = fillChunk(chunks);
  const second = fillChunk(chunks);
  fillChunk(chunks);
  assert(first.buffer !== second.buffer, "a chunk must not be read into twice without loans");
  assertEquals(chunks.stats(), { allocated: 3, reused: 0, kept: 2 });
});

Deno.test("read chunks: a chunk whose messages were all borrowed is read into again", () => {
  const chunks = new ReadChunks();
  const { t, loans } = totals();
  chunks.lendWhen(loans);
  const first = fillChunk(chunks);
  t.parsed += 5;
  t.borrowed += 5;
  const second = fillChunk(chunks);
  assert(second.buffer === first.buffer, "the borrowed chunk should be read into again");
  assertEquals(chunks.stats(), { allocated: 1, reused: 1, kept: 0 });
});

Deno.test("read chunks: lent mid-chunk, the chunk counted from no start is not reused", () => {
  const chunks = new ReadChunks();
  const { t, loans } = totals();
  const first = fillChunk(chunks);
  chunks.lendWhen(loans);
  t.parsed += 2;
  t.borrowed += 2;
  const second = fillChunk(chunks);
  assert(
    second.buffer !== first.buffer,
    "a chunk read into before the loans were counted came back",
  );
  t.parsed += 1;
  t.borrowed += 1;
  const third = fillChunk(chunks);
  assert(third.buffer === second.buffer, "the chunk counted from its start should come back");
  assertEquals(chunks.stats(), { allocated: 2, reused: 1, kept: 1 });
});

Deno.test("read chunks: one message not borrowed keeps its chunk from being read into again", () => {
  const chunks = new ReadChunks();
  const { t, loans } = totals();
  chunks.lendWhen(loans);
  const held = fillChunk(chunks);
  t.parsed += 4;
  t.borrowed += 3; // one message went to a handler that may keep a view
  held.fill(7);
  for (let i = 0; i < 6; i++) {
    const next = fillChunk(chunks);
    assert(next.buffer !== held.buffer, `chunk ${i}: a held chunk came back`);
    next.fill(1);
    t.parsed += 2;
    t.borrowed += 2;
  }
  assert(held.every((b) => b === 7), "the held chunk was written over");
  assertEquals(chunks.stats(), { allocated: 2, reused: 5, kept: 1 });
});

Deno.test("read chunks: reads land in the space given, in order, within one chunk", () => {
  const chunks = new ReadChunks();
  const a = chunks.space();
  a.set([1, 2, 3]);
  const va = chunks.commit(3);
  const b = chunks.space();
  b.set([4, 5]);
  const vb = chunks.commit(2);
  assertEquals([...va], [1, 2, 3]);
  assertEquals([...vb], [4, 5]);
  assert(va.buffer === vb.buffer && vb.byteOffset === va.byteOffset + 3);
  assertEquals(va.buffer.byteLength, CHUNK_BYTES);
});
