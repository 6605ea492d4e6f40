import assert from "node:assert/strict";
import { ByteSource, show } from "./byte_source.ts";
import { TraceFormatError } from "./format.ts";

/** A temporary folder for one test's files, removed when `fn` settles. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lw-byte-source-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Printable bytes that do not compress, so gzip input also spans several reads. */
function noise(n: number, seed: number): string {
  let x = seed >>> 0;
  let out = "";
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out += String.fromCharCode(33 + (x >>> 25) % 90);
  }
  return out;
}

/** Write `bytes` to a file in `dir` (gzip-compressed when asked) and open a source on it. */
async function sourceOf(dir: string, bytes: Uint8Array, gzip = false): Promise<ByteSource> {
  const path = `${dir}/t${gzip ? ".trace.gz" : ".trace"}`;
  let data = bytes;
  if (gzip) {
    const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
      .pipeThrough(new CompressionStream("gzip"));
    data = new Uint8Array(await new Response(stream).arrayBuffer());
  }
  await Deno.writeFile(path, data);
  const src = new ByteSource(path, await Deno.open(path), gzip);
  return src;
}

const text = (b: Uint8Array | null) => b === null ? null : new TextDecoder().decode(b);

for (const gzip of [false, true]) {
  const kind = gzip ? "gzip" : "plain";

  Deno.test(`byte source (${kind}): lines and byte counts across read chunks`, () =>
    inTempDir(async (dir) => {
      // a line and a payload each longer than a read chunk, so both cross refills (compressed too)
      const long = noise(300_000, 1);
      const payload = new TextEncoder().encode(noise(200_000, 2));
      const head = new TextEncoder().encode(`first\n${long}\n`);
      const tail = new TextEncoder().encode("\nlast\n");
      const all = new Uint8Array(head.length + payload.length + tail.length);
      all.set(head, 0);
      all.set(payload, head.length);
      all.set(tail, head.length + payload.length);
      const src = await sourceOf(dir, all, gzip);
      try {
        assert.equal(text(await src.line(1)), "first");
        assert.equal(src.offset, 6);
        assert.equal(text(await src.line(2)), long);
        const got = await src.bytes(payload.length, 3);
        assert.deepEqual(got, payload);
        assert.equal(src.offset, head.length + payload.length);
        assert.equal(text(await src.line(3)), "");
        assert.equal(text(await src.line(4)), "last");
        assert.equal(await src.line(5), null, "a clean end is null");
        assert.equal(src.offset, all.length);
        assert.equal((await src.bytes(10, 5)).length, 0, "no bytes past the end");
        if (!gzip) assert.equal(src.fileBytes, all.length);
      } finally {
        await src.close();
      }
    }));

  Deno.test(`byte source (${kind}): a last line without its newline names record and offset`, () =>
    inTempDir(async (dir) => {
      const src = await sourceOf(dir, new TextEncoder().encode("one\ntwo-without-newline"), gzip);
      try {
        assert.equal(text(await src.line(1)), "one");
        await assert.rejects(() => src.line(2), (err: unknown) => {
          assert.ok(err instanceof TraceFormatError, `expected TraceFormatError, found ${err}`);
          assert.equal(err.record, 2);
          assert.equal(err.offset, 4);
          assert.match(err.message, /two-without-newline/);
          assert.match(err.message, /truncated/);
          return true;
        });
      } finally {
        await src.close();
      }
    }));
}

Deno.test("byte source: a gzip stream cut short is an error, not a short file", () =>
  inTempDir(async (dir) => {
    const lines = new TextEncoder().encode(
      Array.from({ length: 5000 }, (_, i) => `line ${i}`).join("\n") + "\n",
    );
    const stream = new Blob([lines]).stream().pipeThrough(new CompressionStream("gzip"));
    const gz = new Uint8Array(await new Response(stream).arrayBuffer());
    const path = `${dir}/cut.trace.gz`;
    await Deno.writeFile(path, gz.subarray(0, gz.length - 20));
    const src = new ByteSource(path, await Deno.open(path), true);
    try {
      await assert.rejects(async () => {
        while (await src.line(1) !== null) { /* read to the end */ }
      }, (err: unknown) => {
        assert.ok(err instanceof TraceFormatError, `expected TraceFormatError, found ${err}`);
        assert.match(err.message, /truncated|gzip/);
        return true;
      });
    } finally {
      await src.close();
    }
  }));

Deno.test("byte source: show quotes and cuts what it was given", () => {
  assert.equal(show("abc"), '"abc"');
  assert.equal(show("x".repeat(100)), JSON.stringify("x".repeat(80) + "…"));
  assert.equal(show(new TextEncoder().encode("line\n")), '"line\\n"');
});
