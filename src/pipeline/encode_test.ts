import assert from "node:assert/strict";
import { encodeFrames, gatherFrames, type Scratch } from "./encode.ts";
import { D, frame, recordingEncoder } from "./testdata/fixtures.ts";

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
  assert.deepEqual(latents.get("a")!.map((r) => r.values[0]), [1, 2, 3, 4, 5]);
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
