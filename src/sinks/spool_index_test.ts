import assert from "node:assert/strict";
import { encodePut, frameRecord, scan } from "./spool_format.ts";
import { SpoolIndex } from "./spool_index.ts";

const enc = new TextEncoder();

/** A segment's `.log` bytes holding `ids`, and its `.ack` bytes holding `acked`. */
function segment(ids: string[], acked: string[] = []): { log: Uint8Array; ack: Uint8Array } {
  const frames = (payloads: Uint8Array[]) => {
    const out = new Uint8Array(payloads.reduce((n, p) => n + p.length + 12, 0));
    let at = 0;
    for (const p of payloads) {
      out.set(frameRecord(p), at);
      at += p.length + 12;
    }
    return out;
  };
  return {
    log: frames(
      ids.map((id) => encodePut({ id, data: enc.encode(`{"id":"${id}"}`), firstAttemptMs: 7 })),
    ),
    ack: frames(acked.map((id) => enc.encode(id))),
  };
}

function load(index: SpoolIndex, seg: number, files: { log: Uint8Array; ack: Uint8Array }) {
  return index.load(seg, scan(files.log), scan(files.ack), files.log.length + files.ack.length);
}

Deno.test("spool index: a loaded segment's unacknowledged records wait, where their data lies", () => {
  const index = new SpoolIndex();
  const files = segment(["a", "b", "c"], ["b"]);
  assert.deepEqual(load(index, 1, files), []);
  assert.deepEqual([...index.entries()].map(([id]) => id), ["a", "c"]);
  assert.equal(index.bytes, files.log.length + files.ack.length);
  const c = index.get("c")!;
  assert.equal(c.seg, 1);
  assert.equal(c.firstAttemptMs, 7);
  assert.equal(
    new TextDecoder().decode(files.log.subarray(c.dataOffset, c.dataOffset + c.dataLength)),
    `{"id":"c"}`,
  );
});

Deno.test("spool index: a newer copy of an id replaces the older; emptied segments are named", () => {
  const index = new SpoolIndex();
  const first = segment(["a", "b"], ["b"]);
  const second = segment(["c", "a"]);
  assert.deepEqual(load(index, 1, first), []);
  assert.deepEqual(load(index, 2, second), [1], "segment 1 lost its last record to the newer a");
  assert.deepEqual([...index.entries()].map(([id, e]) => [id, e.seg]), [["c", 2], ["a", 2]]);
  index.dropSegment(1);
  assert.equal(index.bytes, second.log.length);
  assert.deepEqual(load(index, 3, segment(["x"], ["x"])), [3], "fully acknowledged on disk");
});

Deno.test("spool index: an id spooled twice in one segment without an ack loads once, the newer copy", () => {
  // e.g. an ack whose write failed, then the alert spooled again into the same segment
  const index = new SpoolIndex();
  const files = segment(["a", "b", "a"]);
  assert.deepEqual(load(index, 1, files), []);
  assert.deepEqual([...index.entries()].map(([id]) => id), ["b", "a"]);
  const a = index.get("a")!;
  const secondPut = files.log.length -
    (12 + encodePut({ id: "a", data: enc.encode(`{"id":"a"}`), firstAttemptMs: 7 }).length);
  assert.ok(a.dataOffset > secondPut, "the copy written last");
  assert.deepEqual(index.remove("b"), { seg: 1, emptied: false });
  assert.deepEqual(index.remove("a"), { seg: 1, emptied: true }, "two records live, not three");
});

Deno.test("spool index: appends, acks and deleted segments keep the counts", () => {
  const index = new SpoolIndex();
  index.addSegment(1);
  index.add("a", { seg: 1, dataOffset: 23, dataLength: 2, firstAttemptMs: 0 });
  index.add("b", { seg: 1, dataOffset: 48, dataLength: 2, firstAttemptMs: 0 });
  index.grow(1, 50);
  assert.equal(index.size, 2);
  assert.equal(index.bytes, 50);
  assert.ok(index.has("a"));
  assert.deepEqual(index.remove("a"), { seg: 1, emptied: false });
  assert.equal(index.remove("a"), undefined, "a second ack finds nothing");
  index.grow(1, 13); // its ack record
  assert.equal(index.bytes, 63);
  assert.deepEqual(index.remove("b"), { seg: 1, emptied: true });
  index.dropSegment(1);
  assert.equal(index.bytes, 0);
  assert.equal(index.size, 0);
});
