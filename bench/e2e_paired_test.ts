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
  assert.equal(r.frame_added_p50_ms, 1.5);
  assert.equal(r.frame_added_p90_ms, 2);
  assert.equal(r.frame_added_p99_ms, 2);
  // the bare side's latencies 0.25, 0.25, 0.5, 1 and the sidecar's 0.75, 1.5, 2, 3
  assert.equal(r.bare_p99_ms, 1);
  assert.equal(r.sidecar_p99_ms, 3);
});

Deno.test("pairedAdded: against a quadratic reference on shuffled frames with shared publish times", () => {
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const n = 2000;
  const frames: [number, number, number][] = []; // sent, received by the bare side, evaluated
  for (let i = 0; i < n; i++) {
    // a fifth of the frames share their publish time with the frame before
    const sent = i > 0 && rand() < 0.2 ? frames[i - 1][0] : 1000 + i * 0.6;
    const received = sent + 0.1 + rand() * 2;
    frames.push([sent, received, received + rand() * 3]);
  }
  const shuffled = <T>(xs: T[]) =>
    xs.map((x) => [rand(), x] as const).sort((a, b) => a[0] - b[0]).map((p) => p[1]);
  const sidecarList = shuffled(frames);
  const bareList = shuffled(frames.filter(() => rand() < 0.9)); // a tenth missed by the bare side
  const sidecar = Float64Array.from(
    sidecarList.flatMap(([sent, , evaluated]) => [sent, evaluated]),
  );
  const bare = Float64Array.from(bareList.flatMap(([sent, received]) => [sent, received]));
  const r = pairedAdded(sidecar, bare);
  // reference: frames of one publish time pair in the order each side logged them
  const bareBySent = new Map<number, number[]>();
  for (const [sent, received] of bareList) {
    bareBySent.set(sent, [...(bareBySent.get(sent) ?? []), received]);
  }
  const sidecarBySent = new Map<number, number[]>();
  for (const [sent, , evaluated] of sidecarList) {
    sidecarBySent.set(sent, [...(sidecarBySent.get(sent) ?? []), evaluated]);
  }
  const added: number[] = [], bareLatency: number[] = [], sidecarLatency: number[] = [];
  for (const [sent, evaluatedList] of sidecarBySent) {
    const receivedList = bareBySent.get(sent) ?? [];
    for (let k = 0; k < Math.min(evaluatedList.length, receivedList.length); k++) {
      added.push(evaluatedList[k] - receivedList[k]);
      bareLatency.push(receivedList[k] - sent);
      sidecarLatency.push(evaluatedList[k] - sent);
    }
  }
  const at = (xs: number[], p: number) => xs.toSorted((a, b) => a - b)[Math.floor(p * xs.length)];
  assert.ok(added.length > 0.8 * n && added.length < n, `paired ${added.length}`);
  assert.equal(r.paired_frames, added.length);
  assert.equal(r.unpaired_frames, n - added.length);
  assert.equal(r.bare_p99_ms, at(bareLatency, 0.99));
  assert.equal(r.sidecar_p99_ms, at(sidecarLatency, 0.99));
  // the sort is stable, so frames of one publish time pair in the order logged, as above
  const sorted = added.toSorted((a, b) => a - b);
  for (
    const [p, got] of [[0.5, r.frame_added_p50_ms], [0.9, r.frame_added_p90_ms], [
      0.99,
      r.frame_added_p99_ms,
    ]] as const
  ) {
    assert.ok(Math.abs(got! - sorted[Math.floor(p * sorted.length)]) < 1e-9, `p${p * 100}: ${got}`);
  }
});

Deno.test("pairedAdded: a publish time that is not a number pairs with nothing and leaves the rest in order", () => {
  const sidecar = new Float64Array([NaN, 5, 30, 31, 10, 11]);
  const bare = new Float64Array([30, 30.5, NaN, 1, 10, 10.25]);
  const r = pairedAdded(sidecar, bare);
  assert.equal(r.paired_frames, 2);
  assert.equal(r.unpaired_frames, 1);
  assert.equal(r.frame_added_p50_ms, 0.75); // 11 − 10.25 = 0.75 and 31 − 30.5 = 0.5
  assert.equal(r.frame_added_p99_ms, 0.75);
});

Deno.test("pairedAdded: nothing paired gives nulls, not zeros", () => {
  const r = pairedAdded(new Float64Array([1, 2]), new Float64Array([3, 4]));
  assert.equal(r.paired_frames, 0);
  assert.equal(r.unpaired_frames, 1);
  assert.equal(r.frame_added_p99_ms, null);
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
