import assert from "node:assert/strict";
import { MemoryStream, type StoreOptions, StreamError } from "./memory_stream.ts";
import { SubjectError } from "./memory_subjects.ts";

const msg = (
  msgId: string,
  now: number,
  subject = "a",
  data = new Uint8Array(1),
): StoreOptions => ({
  subject,
  headers: { "Nats-Msg-Id": msgId },
  data,
  msgId,
  now,
});

Deno.test("memory stream: names with whitespace, '.', '*' or '>' and bad subjects are refused", () => {
  for (const name of ["a.b", "a b", "a*", "a>", ""]) {
    assert.throws(
      () => new MemoryStream({ name, subjects: ["x"], duplicateWindowMs: 1 }, 10),
      StreamError,
    );
  }
  assert.throws(
    () => new MemoryStream({ name: "a.b", subjects: ["x"], duplicateWindowMs: 1 }, 10),
    { name: "StreamError", message: `stream name "a.b": expected no whitespace, '.', '*' or '>'` },
  );
  assert.throws(
    () => new MemoryStream({ name: "S", subjects: ["a..b"], duplicateWindowMs: 1 }, 10),
    SubjectError,
  );
  assert.equal(
    new MemoryStream({ name: "S-1_x", subjects: [], duplicateWindowMs: 1 }, 10).name,
    "S-1_x",
  );
});

Deno.test("memory stream: captures its subjects' matches; extend adds the missing subjects only", () => {
  const spec = { name: "S", subjects: ["a.*"], duplicateWindowMs: 1 };
  const stream = new MemoryStream(spec, 10);
  spec.subjects.push("z"); // the stream keeps its own copy of the subjects
  assert.equal(stream.captures(["a", "b"]), true);
  assert.equal(stream.captures(["a"]), false);
  assert.equal(stream.captures(["z"]), false);
  assert.equal(stream.captures(["b", "c"]), false);
  stream.extend({ name: "S", subjects: ["a.*", "b.>"], duplicateWindowMs: 1 });
  assert.equal(stream.captures(["a", "b"]), true);
  assert.equal(stream.captures(["b", "c"]), true);
  // a bad new subject changes nothing
  assert.throws(
    () => stream.extend({ name: "S", subjects: ["c", "d.>.e"], duplicateWindowMs: 1 }),
    SubjectError,
  );
  assert.equal(stream.captures(["c"]), false);
});

Deno.test("memory stream: sequence numbers, dedup inside the window, the latest window applies", () => {
  const stream = new MemoryStream({ name: "S", subjects: ["a"], duplicateWindowMs: 100 }, 10);
  assert.deepEqual(stream.store(msg("x", 0)), { stream: "S", seq: 1, duplicate: false });
  assert.deepEqual(stream.store(msg("y", 50)), { stream: "S", seq: 2, duplicate: false });
  assert.deepEqual(stream.store(msg("x", 99)), { stream: "S", seq: 1, duplicate: true });
  // x was stored at 0: at 100 it is outside the 100 ms window
  assert.deepEqual(stream.store(msg("x", 100)), { stream: "S", seq: 3, duplicate: false });
  assert.deepEqual(stream.store(msg("y", 149)), { stream: "S", seq: 2, duplicate: true });
  stream.extend({ name: "S", subjects: [], duplicateWindowMs: 10 });
  // y was stored at 50, x again at 100: with a 10 ms window only x at 105 is a duplicate
  assert.deepEqual(stream.store(msg("x", 105)), { stream: "S", seq: 3, duplicate: true });
  assert.deepEqual(stream.store(msg("y", 105)), { stream: "S", seq: 4, duplicate: false });
  assert.deepEqual(stream.messages().map((m) => [m.seq, m.headers["Nats-Msg-Id"], m.time]), [
    [1, "x", 0],
    [2, "y", 50],
    [3, "x", 100],
    [4, "y", 105],
  ]);
});

Deno.test("memory stream: bounded, oldest first out; stored headers are a copy, data kept as handed", () => {
  const stream = new MemoryStream({ name: "S", subjects: ["a", "b"], duplicateWindowMs: 1 }, 2);
  const data = new Uint8Array([7]);
  const first = msg("m0", 0, "a", data);
  stream.store(first);
  first.headers.Extra = "later";
  stream.store(msg("m1", 1, "b"));
  assert.deepEqual(stream.messages().map((m) => m.subject), ["a", "b"]);
  assert.deepEqual(stream.messages()[0].headers, { "Nats-Msg-Id": "m0" });
  assert.equal(stream.messages()[0].data, data);
  stream.store(msg("m2", 2, "a"));
  assert.deepEqual(stream.messages().map((m) => m.seq), [2, 3]);
  // messages() is a fresh array each time
  const held = stream.messages();
  held.pop();
  assert.equal(stream.messages().length, 2);
});
