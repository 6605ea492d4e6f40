import assert from "node:assert/strict";
import { encodeFrame } from "../core/frame/encode.ts";
import { sampleFraction, TraceFormatError } from "./format.ts";
import { readTrace, readTraceHeader, TraceReader } from "./reader.ts";
import { TraceWriter } from "./writer.ts";

const HEADER = { monitor: "demo", model: "sim-gpt", hook: "blocks.6.hook_resid_post" };

function frameMsg(requestId: string, position: number, seq: number, values: number[], end = false) {
  const { headers, payload } = encodeFrame(
    {
      model: "sim-gpt",
      hook: HEADER.hook,
      requestId,
      position,
      seq,
      dtype: "f32",
      endOfRequest: end,
    },
    new Float32Array(values),
    values.length / 2,
    2,
  );
  return {
    subject: "latentwatch.tap.v1.sim-gpt.blocks_6_hook_resid_post.0",
    headers,
    data: payload,
  };
}

/** Await `fn`'s rejection with an instance of `cls` and return the error. */
async function rejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls: new (...a: never[]) => E,
): Promise<E> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof cls, `expected ${cls.name}, found ${err}`);
    return err;
  }
  throw new assert.AssertionError({ message: `expected ${cls.name}, nothing was thrown` });
}

async function collect(path: string) {
  const out = [];
  for await (const r of readTrace(path)) out.push(r);
  return out;
}

for (const name of ["t.trace", "t.trace.gz"]) {
  Deno.test(`trace: round trip (${name}): header, frames exactly as given, end record`, async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/sub/${name}`;
    const w = await TraceWriter.create(path, { ...HEADER, created: "2025-01-01T00:00:00.000Z" });
    const msgs = [
      frameMsg("r1", 0, 0, [1, 2, 3, 4]),
      {
        subject: "x.y",
        headers: { "Lw-Version": "2", Odd: 'ä"\n' },
        data: new Uint8Array([10, 0, 255]),
      },
      frameMsg("r1", 2, 1, [], true),
    ];
    msgs.forEach((m, i) => w.write(m, 1000 + i + 0.5));
    await w.close();
    assert.deepStrictEqual(w.stats.frames, 3);

    const header = await readTraceHeader(path);
    assert.deepStrictEqual(header, {
      latentwatch_trace: 1,
      ...HEADER,
      created: "2025-01-01T00:00:00.000Z",
      sampling: {},
    });
    const reader = await TraceReader.open(path);
    assert.deepStrictEqual(reader.gzip, name.endsWith(".gz"));
    const recs = [];
    for await (const r of reader) recs.push(r);
    assert.deepStrictEqual(recs.length, 3);
    recs.forEach((r, i) => {
      assert.deepStrictEqual(r.record, i + 1);
      assert.deepStrictEqual(r.subject, msgs[i].subject);
      assert.deepStrictEqual(r.headers, msgs[i].headers);
      assert.deepStrictEqual([...r.data], [...msgs[i].data]);
      assert.deepStrictEqual(r.receivedAt, 1000 + i + 0.5);
    });
    assert.deepStrictEqual(reader.end?.frames, 3);
    assert.deepStrictEqual(reader.end?.dropped, 0);
    assert(reader.bytesRead > 0 && reader.bytesRead === reader.fileSize);
  });
}

Deno.test("trace: large payloads across read chunks", async () => {
  const dir = await Deno.makeTempDir();
  for (const path of [`${dir}/big.trace`, `${dir}/big.trace.gz`]) {
    const w = await TraceWriter.create(path, HEADER);
    const sizes = [300_000, 1, 0, 200_001, 70_000];
    sizes.forEach((n, i) => {
      const data = new Uint8Array(n).map((_, j) => (j * 7 + i) & 0xff);
      w.write({ subject: "s", headers: { i: String(i) }, data });
    });
    await w.close();
    const recs = await collect(path);
    assert.deepStrictEqual(recs.map((r) => r.data.byteLength), sizes);
    recs.forEach((r, i) => assert(r.data.every((b, j) => b === ((j * 7 + i) & 0xff))));
  }
});

Deno.test("trace: a truncated file names the record and offset", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/t.trace`;
  const w = await TraceWriter.create(path, HEADER);
  w.write(frameMsg("r1", 0, 0, [1, 2]));
  w.write(frameMsg("r1", 1, 1, [3, 4]));
  await w.close();
  const bytes = await Deno.readFile(path);
  // cut inside the second frame's payload
  const text = new TextDecoder().decode(bytes);
  const second = text.indexOf('{"t"', text.indexOf('{"t"') + 1);
  const cut = `${dir}/cut.trace`;
  await Deno.writeFile(cut, bytes.subarray(0, second + 10));
  let err = await rejects(() => collect(cut), TraceFormatError);
  assert.deepStrictEqual(err.record, 2);
  assert.deepStrictEqual(err.offset, second);
  assert(err.message.includes("truncated"), err.message);

  // cut inside the payload bytes
  const nl = bytes.indexOf(10, second);
  await Deno.writeFile(cut, bytes.subarray(0, nl + 3));
  err = await rejects(() => collect(cut), TraceFormatError);
  assert.deepStrictEqual(err.record, 2);
  assert(err.message.includes("8 payload bytes and a newline"), err.message);
  assert(err.message.includes("found 2 bytes before the end of the file (truncated)"), err.message);

  // without the end record: every frame is read, end is null
  await Deno.writeFile(cut, bytes.subarray(0, bytes.lastIndexOf(10, bytes.length - 2) + 1));
  const r = await TraceReader.open(cut);
  const recs = [];
  for await (const rec of r) recs.push(rec);
  assert.deepStrictEqual(recs.length, 2);
  assert.deepStrictEqual(r.end, null);
});

Deno.test("trace: a truncated gzip file is reported, not silently short", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/t.trace.gz`;
  const w = await TraceWriter.create(path, HEADER);
  for (let i = 0; i < 200; i++) w.write(frameMsg(`r${i}`, 0, 0, [i, Math.sin(i) * 1000]));
  await w.close();
  const bytes = await Deno.readFile(path);
  const cut = `${dir}/cut.trace.gz`;
  await Deno.writeFile(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
  const err = await rejects(() => collect(cut), TraceFormatError);
  assert(err.record >= 1, err.message);
  assert(/truncated|gzip/.test(err.message), err.message);
});

Deno.test("trace: corrupt records and foreign files", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/c.trace`;
  const enc = new TextEncoder();
  const head = JSON.stringify({ latentwatch_trace: 1, ...HEADER, created: "x", sampling: {} });
  await Deno.writeFile(path, enc.encode(`${head}\n{"t":1,"s":"a","h":{},"n":2}\nabX`));
  let err = await rejects(() => collect(path), TraceFormatError);
  assert.deepStrictEqual([err.record, err.expected], [1, "a newline after the 2 payload bytes"]);

  await Deno.writeFile(path, enc.encode(`${head}\n{"t":1,"s":"a","h":{},"n":0}\n\nnot json\n`));
  err = await rejects(() => collect(path), TraceFormatError);
  assert.deepStrictEqual([err.record, err.expected], [2, "a JSON record line"]);

  await Deno.writeFile(path, enc.encode(`${head}\n{"t":1,"s":"a","h":{"x":1},"n":0}\n\n`));
  err = await rejects(() => collect(path), TraceFormatError);
  assert(err.message.includes(`"h": an object of string headers`), err.message);

  await Deno.writeFile(path, enc.encode("hello\n"));
  err = await rejects(() => TraceReader.open(path), TraceFormatError);
  assert.deepStrictEqual(err.record, 0);
  assert(err.message.includes("header record"), err.message);

  await Deno.writeFile(path, enc.encode(`{"latentwatch_trace":2}\n`));
  err = await rejects(() => TraceReader.open(path), TraceFormatError);
  assert(err.message.includes("expected trace format version 1, found version 2"), err.message);
});

Deno.test("trace: sampling keeps whole requests (every n-th, a stable fraction)", async () => {
  const dir = await Deno.makeTempDir();
  const ids = Array.from({ length: 200 }, (_, i) => `req-${i}`);
  const record = async (sampling: { every?: number; requests?: number }) => {
    const path = `${dir}/s.trace`;
    const w = await TraceWriter.create(path, { ...HEADER, sampling });
    // interleave: every request's first frame, then every request's end marker
    for (const id of ids) w.write(frameMsg(id, 0, 0, [1, 2]));
    for (const id of ids) w.write(frameMsg(id, 1, 1, [], true));
    await w.close();
    const reader = await TraceReader.open(path);
    const seen = new Map<string, number>();
    for await (const r of reader) {
      const id = r.headers["Lw-Request-Id"];
      seen.set(id, (seen.get(id) ?? 0) + 1);
    }
    assert([...seen.values()].every((n) => n === 2), "whole requests are kept");
    assert.deepStrictEqual(reader.header.sampling, sampling);
    assert.deepStrictEqual(reader.end!.frames + reader.end!.sampled_out, 400);
    return [...seen.keys()];
  };
  assert.deepStrictEqual(await record({ every: 3 }), ids.filter((_, i) => i % 3 === 0));
  const frac = await record({ requests: 0.25 });
  assert.deepStrictEqual(frac, ids.filter((id) => sampleFraction(id) < 0.25));
  assert(frac.length > 30 && frac.length < 70, `${frac.length} of 200`);
  assert.deepStrictEqual(await record({}), ids);
});

Deno.test("trace: a full buffer drops frames, counts them and says so", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/d.trace`;
  const drops: number[] = [];
  const w = await TraceWriter.create(path, HEADER, {
    maxBufferBytes: 4096,
    onDrop: (reason, n) => {
      assert.deepStrictEqual(reason, "buffer_full");
      drops.push(n);
    },
  });
  // synchronous writes: the disk gets no turn, so the 4 KiB queue fills up
  for (let i = 0; i < 100; i++) w.write({ subject: "s", headers: {}, data: new Uint8Array(200) });
  await w.close();
  const { frames, dropped } = w.stats;
  assert.deepStrictEqual(frames + dropped, 100);
  assert(dropped > 50, `dropped ${dropped}`);
  assert.deepStrictEqual(drops.length, dropped);
  const reader = await TraceReader.open(path);
  let n = 0;
  for await (const _ of reader) n++;
  assert.deepStrictEqual(n, frames);
  assert.deepStrictEqual(reader.end?.dropped, dropped);
});
