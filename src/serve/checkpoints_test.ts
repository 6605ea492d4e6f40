import assert from "node:assert/strict";
import { frameRecord } from "../sinks/spool.ts";
import { CheckpointError, recordJson, SeqCheckpoints, uncountedBefore } from "./checkpoints.ts";

async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-ckpt-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every request's resume seq, as a fresh open sees it (each taken once). */
function resumeAll(path: string, ids: string[], opts = {}): Record<string, number | undefined> {
  const cp = SeqCheckpoints.open(path, opts);
  try {
    return Object.fromEntries(ids.map((id) => [id, cp.take(id)?.next]));
  } finally {
    cp.close();
  }
}

Deno.test("checkpoints: round trip; later records win, ended requests go, each taken once", () =>
  withDir((dir) => {
    const path = `${dir}/requests.ckpt`;
    const cp = SeqCheckpoints.open(path);
    assert.equal(cp.pending, 0, "a new file: nothing to resume");
    assert.equal(cp.damaged, 0);
    cp.record(new Map([["a", 3], ["b", 1]]), []);
    cp.record(new Map([["a", 7], ["c", 2]]), []);
    cp.record(new Map(), ["b"]);
    cp.record(new Map(), []); // nothing to say: nothing written
    cp.close();

    const again = SeqCheckpoints.open(path);
    assert.equal(again.pending, 2);
    assert.equal(again.take("a")?.next, 7, "the later record wins");
    assert.equal(again.take("a")?.next, undefined, "taken once");
    assert.equal(again.take("b")?.next, undefined, "ended: forgotten");
    assert.equal(again.take("c")?.next, 2);
    assert.equal(again.pending, 0);
    again.close();
  }));

Deno.test("checkpoints: a torn tail and a corrupt record are skipped and counted, the rest kept", () =>
  withDir((dir) => {
    const path = `${dir}/requests.ckpt`;
    const cp = SeqCheckpoints.open(path); // compacts: one record (empty) on disk
    cp.record(new Map([["a", 1]]), []);
    cp.record(new Map([["b", 5]]), []);
    cp.record(new Map([["c", 9]]), []);
    cp.close();
    const bytes = Deno.readFileSync(path);
    // records: "LWS1" | length u32 LE | CRC-32 u32 LE | payload
    const starts: number[] = [];
    for (let at = 0; at < bytes.length;) {
      starts.push(at);
      at += 12 + new DataView(bytes.buffer, at + 4, 4).getUint32(0, true);
    }
    assert.equal(starts.length, 4, "the compacted record and three appended ones");
    // damage b's payload (the CRC no longer matches), and cut a fourth record short
    const damaged = bytes.slice();
    damaged[starts[2] + 14] ^= 0xff;
    const whole = frameRecord(new TextEncoder().encode(JSON.stringify({ s: { d: 4 } })));
    const torn = whole.subarray(0, whole.length - 3); // a crash mid-write
    Deno.writeFileSync(path, new Uint8Array([...damaged, ...torn]));

    const again = SeqCheckpoints.open(path);
    assert.equal(again.damaged, 2, "one corrupt, one torn");
    assert.equal(again.take("a")?.next, 1);
    assert.equal(again.take("b")?.next, undefined, "the corrupt record is gone");
    assert.equal(again.take("c")?.next, 9, "the record after the corrupt one is kept");
    assert.equal(again.take("d")?.next, undefined, "the torn record is gone");
    again.close();
    // open rewrote the file compactly: nothing damaged is left
    const third = SeqCheckpoints.open(path);
    assert.equal(third.damaged, 0);
    assert.equal(third.pending, 2);
    third.close();
  }));

Deno.test("checkpoints: the file is rewritten compactly once it grows past compactBytes", () =>
  withDir((dir) => {
    const path = `${dir}/requests.ckpt`;
    const compactBytes = 512;
    const cp = SeqCheckpoints.open(path, { compactBytes });
    let largest = 0;
    for (let seq = 1; seq <= 200; seq++) {
      cp.record(new Map([["a", seq], [`r${seq % 3}`, seq]]), []);
      largest = Math.max(largest, Deno.statSync(path).size);
    }
    cp.close();
    // 200 appended records are some 8 KiB: without compaction the file would hold them all
    assert.ok(
      largest <= compactBytes + 64,
      `expected at most ~${compactBytes} bytes, found ${largest}`,
    );
    assert.deepEqual(resumeAll(path, ["a", "r0", "r1", "r2"]), {
      a: 200,
      r0: 198,
      r1: 199,
      r2: 200,
    });
  }));

Deno.test("checkpoints: at most maxRequests are remembered, the least recently recorded forgotten", () =>
  withDir((dir) => {
    const path = `${dir}/requests.ckpt`;
    const cp = SeqCheckpoints.open(path, { maxRequests: 3 });
    for (const [id, seq] of [["a", 1], ["b", 2], ["c", 3]] as const) {
      cp.record(new Map([[id, seq]]), []);
    }
    cp.record(new Map([["a", 4]]), []); // a is now the most recent
    cp.record(new Map([["d", 5], ["e", 6]]), []); // b and c go
    cp.close();
    const again = SeqCheckpoints.open(path, { maxRequests: 3 });
    assert.equal(again.pending, 3);
    again.close();
    assert.deepEqual(resumeAll(path, ["a", "b", "c", "d", "e"]), {
      a: 4,
      b: undefined,
      c: undefined,
      d: 5,
      e: 6,
    });
    // a smaller bound on open trims what an earlier run left
    const trimmed = SeqCheckpoints.open(path, { maxRequests: 1 });
    assert.equal(trimmed.pending, 1);
    trimmed.close();
  }));

Deno.test("checkpoints: an unreadable or unwritable file is a CheckpointError with its cause", () =>
  withDir((dir) => {
    // a directory where the file should be
    Deno.mkdirSync(`${dir}/requests.ckpt`);
    assert.throws(
      () => SeqCheckpoints.open(`${dir}/requests.ckpt`),
      (err: unknown) => {
        assert.ok(err instanceof CheckpointError, String(err));
        assert.equal(err.name, "CheckpointError");
        assert.equal(err.path, `${dir}/requests.ckpt`);
        assert.match(err.message, /requests\.ckpt: expected a readable file/);
        assert.ok(err.cause instanceof Error, "the I/O error is its cause");
        return true;
      },
    );
    // a folder that does not exist: the compact rewrite at open fails
    assert.throws(
      () => SeqCheckpoints.open(`${dir}/missing/requests.ckpt`),
      (err: unknown) =>
        err instanceof CheckpointError && /expected to rewrite it compactly/.test(err.message) &&
        err.cause instanceof Deno.errors.NotFound,
    );
    // the folder goes while the file is in use: record() says so, with the cause
    Deno.mkdirSync(`${dir}/gone`);
    const cp = SeqCheckpoints.open(`${dir}/gone/requests.ckpt`);
    Deno.removeSync(`${dir}/gone`, { recursive: true });
    assert.throws(
      () => cp.record(new Map([["a", 1]]), []),
      (err: unknown) =>
        err instanceof CheckpointError && /expected the write to succeed/.test(err.message) &&
        err.cause instanceof Deno.errors.NotFound,
    );
    cp.close();
  }));

Deno.test("checkpoints: a live state larger than compactBytes is rewritten O(log) times, not at every record", () =>
  withDir((dir) => {
    const path = `${dir}/requests.ckpt`;
    const compactBytes = 4 * 1024 * 1024; // the default
    const cp = SeqCheckpoints.open(path, { compactBytes });
    // 70 000 live requests with 64-character ids (stored as they are) and
    // 7-digit seqs: some 5.2 MB of live state, more than compactBytes
    const id = (i: number) => `req-${String(i).padStart(60, "0")}`;
    const live = 70_000;
    const more = 10_000;
    let tail = 0; // ms spent on the records made once the live state exceeded compactBytes
    const started = performance.now();
    for (let i = 0; i < live + more; i++) {
      const t0 = performance.now();
      cp.record(new Map([[id(i % live), 1_000_000 + i]]), []);
      if (i >= live) tail += performance.now() - t0;
      // without amortisation each record rewrites ~5 MB: stop early, the asserts below fail
      if (performance.now() - started > 30_000) break;
    }
    const compactions = cp.compactions;
    cp.close();
    assert.ok(
      Deno.statSync(path).size > compactBytes,
      "the live state alone is larger than compactBytes",
    );
    // the file doubles between rewrites: about log2(5.2 MB · 2 / 4 MiB) + the one at open
    assert.ok(compactions <= 5, `expected a handful of rewrites, found ${compactions}`);
    assert.ok(
      tail / more < 2,
      `expected well under 2 ms per record, found ${(tail / more).toFixed(2)} ms`,
    );
    const again = SeqCheckpoints.open(path);
    assert.equal(again.pending, live);
    assert.equal(again.take(id(5))?.next, 1_000_000 + live + 5, "the later record wins");
    assert.equal(again.take(id(live - 1))?.next, 1_000_000 + live - 1);
    again.close();
  }));

Deno.test("checkpoints: a long request id costs a bounded number of bytes and is still found", () =>
  withDir((dir) => {
    const path = `${dir}/requests.ckpt`;
    const long = "x".repeat(10_000);
    const other = "x".repeat(9_999) + "y"; // differs in the last character only
    const cp = SeqCheckpoints.open(path);
    cp.record(new Map([[long, 3], [other, 4], ["short", 5]]), []);
    cp.close();
    const size = Deno.statSync(path).size;
    assert.ok(size < 300, `expected a small file for two 10 000-character ids, found ${size} B`);
    const again = SeqCheckpoints.open(path);
    assert.equal(again.take(long)?.next, 3);
    assert.equal(again.take(other)?.next, 4);
    assert.equal(again.take("short")?.next, 5);
    again.close();
    // an ended long id is forgotten too
    const cp2 = SeqCheckpoints.open(path);
    cp2.record(new Map([[long, 9]]), []);
    cp2.record(new Map(), [long]);
    cp2.close();
    assert.deepEqual(resumeAll(path, [long]), { [long]: undefined });
  }));

Deno.test("checkpoints: processed and counted-lost are two watermarks; processed never goes backwards", () =>
  withDir((dir) => {
    const path = `${dir}/requests.ckpt`;
    const cp = SeqCheckpoints.open(path);
    cp.record(new Map([["a", 2]]), []); // frames 0, 1 processed
    cp.lost("a", 4, 6); // frame 6 arrived: 4 and 5 counted lost (2, 3 still queued)
    cp.lost("a", 8, 9); // frame 9 arrived: 8 counted lost
    cp.record(new Map([["a", 1]]), []); // a lower processed seq: ignored
    cp.close();
    assert.deepEqual(SeqCheckpoints.open(`${dir}/requests.ckpt`).take("a"), {
      next: 2,
      counted: 9,
      lost: 3,
    });
    const cp2 = SeqCheckpoints.open(path); // the open above compacted; state unchanged
    cp2.record(new Map([["a", 7]]), []); // 2, 3, 6 processed: the 4..5 gap is behind
    cp2.close();
    const again = SeqCheckpoints.open(path);
    const resume = again.take("a");
    again.close();
    assert.ok(resume);
    // after a reopen the two gaps are not told apart: counted frames are taken to lie just below 9
    assert.deepEqual(resume, { next: 7, counted: 9, lost: 2 });
    assert.equal(uncountedBefore(resume, 12), 3, "7, 9, 10, 11 not processed, 8 counted");
  }));

Deno.test("checkpoints: uncountedBefore counts what the last run neither processed nor counted, never less", () => {
  const r = { next: 5, counted: 8, lost: 3 }; // 5, 6, 7 counted lost at intake
  assert.equal(uncountedBefore(r, 5), 0);
  assert.equal(uncountedBefore(r, 4), 0, "a seq already processed");
  assert.equal(uncountedBefore(r, 8), 0, "exactly the counted gap");
  assert.equal(uncountedBefore(r, 10), 2, "8 and 9");
  assert.equal(uncountedBefore(r, 7), 0, "inside the counted gap");
  assert.equal(uncountedBefore({ next: 5, counted: 9, lost: 2 }, 8), 2, "never under: 5, 6");
  assert.equal(uncountedBefore({ next: 5, counted: 5, lost: 0 }, 9), 4);
});

Deno.test("checkpoints: a file written with plain next seqs (older versions) still loads", () =>
  withDir((dir) => {
    const path = `${dir}/requests.ckpt`;
    const enc = new TextEncoder();
    Deno.writeFileSync(
      path,
      new Uint8Array([
        ...frameRecord(enc.encode(JSON.stringify({ s: { a: 3, b: 4 } }))),
        ...frameRecord(enc.encode(JSON.stringify({ s: { b: [5, 9, 2], c: [1, 0, 0] }, e: [] }))),
      ]),
    );
    const cp = SeqCheckpoints.open(path);
    assert.deepEqual(cp.take("a"), { next: 3, counted: 3, lost: 0 });
    assert.deepEqual(cp.take("b"), { next: 5, counted: 9, lost: 2 });
    assert.equal(cp.take("c"), undefined, "a malformed state (counted below next) is skipped");
    cp.close();
  }));

Deno.test("checkpoints: a record's JSON is what JSON.stringify gives for the same states as an object", () => {
  // the file format stays the one earlier versions wrote (and read back with JSON.parse)
  const keys = ["req-1", 'quo"te', "back\\slash", "naïve ✓", "\u2028line", "k".repeat(70), "x y"];
  const stored: (number | [number, number, number])[] = [0, 17, [5, 9, 2], [12, 40, 28]];
  for (let n = 0; n <= keys.length; n++) {
    const states: [string, number | [number, number, number]][] = keys.slice(0, n).map((k, i) => [
      k,
      stored[i % stored.length],
    ]);
    const ended = keys.slice(n);
    const s = Object.fromEntries(states);
    assert.equal(recordJson(states, ended), JSON.stringify({ s, e: ended }));
    assert.equal(recordJson(states), JSON.stringify({ s }));
    assert.deepEqual(JSON.parse(recordJson(states, ended)), { s, e: ended });
  }
});

Deno.test("checkpoints: integer-like and __proto__ request ids survive a write and a reopen", () =>
  withDir((dir) => {
    const path = `${dir}/requests.ckpt`;
    const ids = ["42", "7", "__proto__", "constructor", "req-1"];
    const cp = SeqCheckpoints.open(path);
    cp.record(new Map(ids.map((id, i) => [id, 10 + i])), []);
    cp.lost("7", 11, 13);
    cp.close();
    const again = SeqCheckpoints.open(path);
    assert.equal(again.pending, ids.length);
    for (const [i, id] of ids.entries()) assert.equal(again.take(id)?.next, 10 + i, id);
    again.close();
    assert.equal(({} as Record<string, unknown>).next, undefined, "Object.prototype untouched");
  }));
