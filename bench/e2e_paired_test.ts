import assert from "node:assert/strict";
import { pairedAdded, PairLog } from "./e2e_paired.ts";

Deno.test("pairedAdded: hand-worked frames, unmatched ones left out, shared publish times in turn", () => {
  // sidecar: [sent, evaluated]; bare: [sent, received]
  const sidecar = new Float64Array([
    30,
    31.5, // added 31.5 − 30.25 = 1.25
    10,
    10.75, // added 10.75 − 10.25 = 0.5
    20,
    20.5, // no bare frame at 20: unpaired
    40,
    42, // two frames published at 40: paired in turn with 40.5 and 41
    40,
    43,
  ]);
  const bare = new Float64Array([40, 40.5, 10, 10.25, 30, 30.25, 40, 41, 50, 50.1]);
  const r = pairedAdded(sidecar, bare);
  assert.equal(r.paired_frames, 4);
  assert.equal(r.unpaired_frames, 1);
  // added, ascending: 0.5, 1.25, 1.5 (42 − 40.5), 2 (43 − 41); index ⌊p·n⌋
  assert.equal(r.added_p50_ms, 1.5);
  assert.equal(r.added_p90_ms, 2);
  assert.equal(r.added_p99_ms, 2);
  // the bare side's latencies 0.25, 0.25, 0.5, 1 and the sidecar's 0.75, 1.5, 2, 3
  assert.equal(r.bare_p99_ms, 1);
  assert.equal(r.sidecar_p99_ms, 3);
});

Deno.test("pairedAdded: against a quadratic reference on random frames", () => {
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const n = 2000;
  const sidecar = new Float64Array(2 * n), bareList: number[] = [];
  for (let i = 0; i < n; i++) {
    const sent = 1000 + i * 0.6 + rand() * 0.1;
    const received = sent + 0.1 + rand() * 2;
    sidecar[2 * i] = sent;
    sidecar[2 * i + 1] = received + rand() * 3;
    if (rand() < 0.9) bareList.push(sent, received); // a tenth missed by the bare side
  }
  const r = pairedAdded(sidecar, Float64Array.from(bareList));
  // reference: for each sidecar frame, search the bare list from the start
  const added: number[] = [];
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < bareList.length; k += 2) {
      if (bareList[k] === sidecar[2 * i]) {
        added.push(sidecar[2 * i + 1] - bareList[k + 1]);
        break;
      }
    }
  }
  added.sort((a, b) => a - b);
  assert.equal(r.paired_frames, added.length);
  assert.equal(r.unpaired_frames, n - added.length);
  assert.equal(r.added_p50_ms, added[Math.floor(0.5 * added.length)]);
  assert.equal(r.added_p99_ms, added[Math.floor(0.99 * added.length)]);
});

Deno.test("pairedAdded: nothing paired gives nulls, not zeros", () => {
  const r = pairedAdded(new Float64Array([1, 2]), new Float64Array([3, 4]));
  assert.equal(r.paired_frames, 0);
  assert.equal(r.unpaired_frames, 1);
  assert.equal(r.added_p99_ms, null);
  assert.equal(r.bare_p99_ms, null);
});

Deno.test("PairLog: keeps pairs in order, counts what finds no room, clears both", () => {
  const log = new PairLog(2);
  log.push(1, 1.5);
  log.push(2, 2.5);
  log.push(3, 3.5);
  assert.deepEqual([...log.pairs()], [1, 1.5, 2, 2.5]);
  assert.equal(log.overflow, 1);
  log.clear();
  assert.equal(log.length, 0);
  assert.equal(log.overflow, 0);
  log.push(4, 4.5);
  assert.deepEqual([...log.pairs()], [4, 4.5]);
});
