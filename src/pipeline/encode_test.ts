import assert from "node:assert/strict";
import { encodeFrames, gatherFrames, type Scratch } from "./encode.ts";
import { D, frame, recordingEncoder } from "./testdata/fixtures.ts";
import { LatentRows, rowOf } from "../core/latent_rows.ts";
import type { Encoder } from "../core/sae.ts";

Deno.test("encode: encodeFrames encodes every row in order, at most maxBatchTokens per call", async () => {
  const calls: number[] = [];
  const encoded: [string, number][] = [];
  const frames = [frame([[1, 0], [2, 0], [3, 0]]), frame([]), frame([[4, 0], [5, 0]], "r2")];
  const latents = await encodeFrames(new Map([["a", recordingEncoder(calls)]]), frames, {
    dIn: D,
    maxBatchTokens: 2,
    onEncoded: (id, n) => encoded.push([id, n]),
  });
  assert.deepEqual(calls, [2, 2, 1]);
  assert.deepEqual(encoded, [["a", 5]]);
  const table = latents.get("a")!;
  assert.deepEqual(Array.from({ length: table.length }, (_, t) => rowOf(table, t)!.values[0]), [
    1,
    2,
    3,
    4,
    5,
  ]);
  assert.equal((await encodeFrames(new Map(), [frame([])], { dIn: D, maxBatchTokens: 2 })).size, 0);
});

Deno.test("encode: gatherFrames reads one frame's rows directly and reuses a scratch buffer", () => {
  const only = frame([[1, 2]]);
  assert.equal(gatherFrames([frame([]), only], 1, D), only.data);
  const scratch: Scratch = { data: new Float32Array(0) };
  const x = gatherFrames([frame([[1, 2]]), frame([[3, 4]])], 2, D, scratch);
  assert.deepEqual([...x], [1, 2, 3, 4]);
  const buffer = scratch.data;
  const y = gatherFrames([frame([[5, 6]]), frame([[7, 8]])], 2, D, scratch);
  assert.equal(scratch.data, buffer);
  assert.deepEqual([...y], [5, 6, 7, 8]);
});

Deno.test("encode: an encoder's encodeRows is preferred, and split calls are joined into one table", async () => {
  const arrays: number[] = [], tables: number[] = [];
  const inner = recordingEncoder(arrays);
  const encoder: Encoder = {
    ...inner,
    encodeRows: async (x, tokens) => {
      tables.push(tokens);
      return LatentRows.from(await recordingEncoder([]).encode(x, tokens));
    },
  };
  const frames = [frame([[1, 0], [2, 0], [3, 0]]), frame([[4, 0], [5, 0]], "r2")];
  for (const maxBatchTokens of [8, 2]) {
    const table = (await encodeFrames(new Map([["a", encoder]]), frames, {
      dIn: D,
      maxBatchTokens,
    })).get("a")!;
    assert.ok(table instanceof LatentRows, `at most ${maxBatchTokens} a call`);
    const values = Array.from({ length: table.length }, (_, t) => rowOf(table, t)!.values[0]);
    assert.deepEqual(values, [1, 2, 3, 4, 5]);
  }
  assert.deepEqual(tables, [5, 2, 2, 1]);
  assert.deepEqual(arrays, [], "encode was called though encodeRows was offered");
});
