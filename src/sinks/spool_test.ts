import assert from "node:assert/strict";
import { crc32, Spool, SpoolError } from "./spool.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function rec(id: string, body = `{"id":"${id}"}`) {
  return { id, data: enc.encode(body), firstAttemptMs: 0 };
}

function segFiles(dir: string, kind: "log" | "ack"): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(`.${kind}`))
    .sort();
}

async function withDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-spool-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("spool: crc32 matches the IEEE check value", () => {
  assert.equal(crc32(enc.encode("123456789")), 0xcbf43926);
});

Deno.test("spool: append, read oldest first, ack; unacknowledged records survive a reopen", () =>
  withDir((dir) => {
    const s = Spool.open(dir);
    for (const id of ["a", "b", "c", "d"]) {
      assert.deepEqual(s.append(rec(id)), { ok: true, already: false });
    }
    assert.deepEqual(
      s.append(rec("b")),
      { ok: true, already: true },
      "a waiting id is not written twice",
    );
    assert.deepEqual(s.oldest(10).map((r) => r.id), ["a", "b", "c", "d"]);
    assert.deepEqual(s.oldest(2, new Set(["a"])).map((r) => r.id), ["b", "c"]);
    assert.equal(dec.decode(s.oldest(1)[0].data), `{"id":"a"}`);
    assert.ok(s.ack("a"));
    assert.ok(s.ack("c"));
    assert.equal(s.ack("c"), false, "a second ack finds nothing");
    s.close();

    const again = Spool.open(dir);
    assert.deepEqual(again.oldest(10).map((r) => r.id), ["b", "d"]);
    assert.deepEqual(again.stats, {
      pending: 2,
      bytes: again.stats.bytes,
      torn: 0,
      corrupt: 0,
      loaded: 2,
    });
    assert.ok(again.ack("b") && again.ack("d"));
    assert.equal(segFiles(dir, "log").length, 0, "a fully acknowledged segment is deleted");
    assert.equal(again.stats.bytes, 0);
    again.close();
  }));

Deno.test("spool: a write torn at the end of a segment is skipped and counted", () =>
  withDir((dir) => {
    const s = Spool.open(dir);
    for (const id of ["a", "b", "c"]) s.append(rec(id));
    s.close();
    const [log] = segFiles(dir, "log");
    const bytes = Deno.readFileSync(`${dir}/${log}`);
    Deno.writeFileSync(`${dir}/${log}`, bytes.subarray(0, bytes.length - 5)); // crash mid-write

    const again = Spool.open(dir);
    assert.deepEqual(again.oldest(10).map((r) => r.id), ["a", "b"]);
    assert.equal(again.stats.torn, 1);
    assert.equal(again.stats.corrupt, 0);
    // new records go to a new segment, never after the torn tail
    again.append(rec("d"));
    again.close();
    assert.equal(segFiles(dir, "log").length, 2);
    const third = Spool.open(dir);
    assert.deepEqual(third.oldest(10).map((r) => r.id), ["a", "b", "d"]);
    third.close();
  }));

Deno.test("spool: a damaged record inside a segment is skipped, the rest still load", () =>
  withDir((dir) => {
    const s = Spool.open(dir);
    for (const id of ["a", "b", "c"]) s.append(rec(id, `{"id":"${id}","pad":"xxxxxxxx"}`));
    s.close();
    const [log] = segFiles(dir, "log");
    const bytes = Deno.readFileSync(`${dir}/${log}`);
    const at = dec.decode(bytes).indexOf(`"b","pad"`);
    bytes[at + 12] ^= 0xff; // flip a byte of b's payload: its CRC no longer matches
    Deno.writeFileSync(`${dir}/${log}`, bytes);

    const again = Spool.open(dir);
    assert.deepEqual(again.oldest(10).map((r) => r.id), ["a", "c"]);
    assert.equal(again.stats.corrupt, 1);
    assert.equal(again.stats.torn, 0);
    again.close();
  }));

Deno.test("spool: bounded by records and by bytes; an ack makes room", () =>
  withDir((dir) => {
    const s = Spool.open(`${dir}/r`, { maxRecords: 2 });
    assert.ok(s.append(rec("a")).ok && s.append(rec("b")).ok);
    const full = s.append(rec("c"));
    assert.equal(full.ok, false);
    assert.equal(!full.ok && full.reason, "spool_full");
    assert.match(!full.ok ? full.error : "", /expected fewer than 2 records waiting, found 2/);
    s.ack("a");
    assert.ok(s.append(rec("c")).ok);
    s.close();

    const b = Spool.open(`${dir}/b`, { maxBytes: 1024 });
    const body = "x".repeat(200);
    let accepted = 0;
    while (b.append(rec(`id-${accepted}`, body)).ok) accepted++;
    assert.ok(accepted >= 3 && accepted <= 5, `about 1024 / 230 records fit, found ${accepted}`);
    assert.ok(b.stats.bytes <= 1024);
    b.close();
  }));

Deno.test("spool: segments rotate; acks in a partly delivered segment persist", () =>
  withDir((dir) => {
    const s = Spool.open(dir, { maxBytes: 64 * 1024, segmentBytes: 1024 });
    const body = "y".repeat(300);
    for (let i = 0; i < 12; i++) assert.ok(s.append(rec(`r${i}`, body)).ok);
    assert.ok(segFiles(dir, "log").length >= 4, "12 × 330 bytes over 1 KiB segments");
    for (let i = 0; i < 12; i += 2) s.ack(`r${i}`); // every other one
    for (const id of ["r1", "r3"]) s.ack(id); // empties the first two segments at least
    s.close();
    const again = Spool.open(dir, { maxBytes: 64 * 1024, segmentBytes: 1024 });
    assert.deepEqual(again.oldest(20).map((r) => r.id), ["r5", "r7", "r9", "r11"]);
    assert.ok(segFiles(dir, "ack").length >= 1, "acks of a live segment are on disk");
    again.close();
  }));

Deno.test("spool: a path that is a file is refused with what was expected", async () => {
  const f = await Deno.makeTempFile();
  try {
    assert.throws(() => Spool.open(f), /expected a directory, found a file/);
    const s = Spool.open(`${f}.d`);
    s.close();
    assert.throws(() => s.append(rec("a")), SpoolError);
    await Deno.remove(`${f}.d`, { recursive: true });
  } finally {
    await Deno.remove(f);
  }
});

Deno.test("spool: one open spool per folder; the folder opens again after close", () =>
  withDir((dir) => {
    const first = Spool.open(dir);
    first.append(rec("a"));
    let err: unknown;
    try {
      Spool.open(dir);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof SpoolError, `expected a SpoolError, found ${err}`);
    assert.match(
      (err as Error).message,
      new RegExp(`^spool folder ${dir} is in use by another process \\(.*\\.lock`),
    );
    assert.deepEqual(first.oldest(10).map((r) => r.id), ["a"], "the first spool is untouched");
    first.close();

    const again = Spool.open(dir);
    assert.deepEqual(again.oldest(10).map((r) => r.id), ["a"]);
    again.close();
  }));

Deno.test("spool: the folder lock holds against another process", async () => {
  await withDir(async (dir) => {
    const s = Spool.open(dir);
    const url = new URL("./spool.ts", import.meta.url).href;
    const code = `import { Spool } from ${JSON.stringify(url)};
      try { Spool.open(${JSON.stringify(dir)}); console.log("opened"); }
      catch (e) { console.log(e.message); }`;
    const run = () =>
      new Deno.Command(Deno.execPath(), { args: ["eval", code], stdout: "piped", stderr: "piped" })
        .output();
    const held = new TextDecoder().decode((await run()).stdout);
    assert.match(held, /is in use by another process/);
    s.close();
    const free = new TextDecoder().decode((await run()).stdout);
    assert.match(free, /^opened/);
  });
});

Deno.test("spool: appendMany writes a batch across segments, refuses what does not fit, and reloads", () =>
  withDir((dir) => {
    const s = Spool.open(dir, { maxRecords: 5, segmentBytes: 1024, fsync: "batch" });
    const big = "x".repeat(400); // three of these do not fit one 1024-byte segment
    const results = s.appendMany([
      rec("a", big),
      rec("b", big),
      rec("a", big), // the same id again in the batch: written once
      rec("c", big),
      rec("d"),
      rec("e"),
      rec("f"), // the sixth waiting record: over maxRecords
    ]);
    assert.deepEqual(results.map((r) => r.ok ? (r.already ? "already" : "ok") : r.reason), [
      "ok",
      "ok",
      "already",
      "ok",
      "ok",
      "ok",
      "spool_full",
    ]);
    assert.equal(segFiles(dir, "log").length, 2, "the batch spans two segments");
    s.close();
    const again = Spool.open(dir);
    assert.deepEqual(again.oldest(10).map((r) => r.id), ["a", "b", "c", "d", "e"]);
    assert.equal(dec.decode(again.oldest(1)[0].data), big);
    again.close();
  }));

Deno.test("spool: a failed fdatasync leaves the records written and waiting, marked unsynced", () =>
  withDir((dir) => {
    let fail = true;
    const spool = Spool.open(dir, {
      fsync: "batch",
      syncData: () => {
        if (fail) throw new Error("EIO");
      },
    });
    const enc = new TextEncoder();
    const out = spool.appendMany([
      { id: "a", data: enc.encode("1"), firstAttemptMs: 0 },
      { id: "b", data: enc.encode("2"), firstAttemptMs: 0 },
    ]);
    assert.deepEqual(out, [
      { ok: true, already: false, unsynced: "EIO" },
      { ok: true, already: false, unsynced: "EIO" },
    ]);
    assert.equal(spool.pending, 2, "waiting: delivered like any other");
    fail = false;
    assert.deepEqual(spool.append({ id: "c", data: enc.encode("3"), firstAttemptMs: 0 }), {
      ok: true,
      already: false,
    });
    spool.close();
    const again = Spool.open(dir);
    assert.deepEqual(again.oldest(10).map((r) => r.id), ["a", "b", "c"]);
    again.close();
  }));

Deno.test("spool: an id spooled again after its ack was lost opens once, the later copy", () =>
  withDir((dir) => {
    const s = Spool.open(dir);
    s.append(rec("a", `{"id":"a","copy":1}`));
    s.append(rec("b"));
    // the ack file cannot be written (a folder in its place): the ack of a is lost
    const ackPath = `${dir}/${segFiles(dir, "log")[0].replace(/\.log$/, ".ack")}`;
    Deno.mkdirSync(ackPath);
    assert.equal(s.ack("a"), true);
    assert.deepEqual(s.append(rec("a", `{"id":"a","copy":2}`)), { ok: true, already: false });
    s.close();
    Deno.removeSync(ackPath);
    assert.equal(segFiles(dir, "log").length, 1, "both copies of a in one segment");

    const again = Spool.open(dir);
    assert.equal(again.pending, 2);
    assert.deepEqual(
      again.oldest(10).map((r) => [r.id, dec.decode(r.data)]),
      [["b", `{"id":"b"}`], ["a", `{"id":"a","copy":2}`]],
    );
    again.ack("b");
    again.ack("a");
    assert.deepEqual(segFiles(dir, "log"), [], "the segment goes with its last record");
    again.close();
  }));
