import assert from "node:assert/strict";
import { ByteSource, show } from "./byte_source.ts";
import { TraceFormatError } from "./format.ts";

/** Write `bytes` to a temporary file (gzip-compressed when asked) and open a source on it. */
async function sourceOf(bytes: Uint8Array, gzip = false): Promise<ByteSource> {
  const path = await Deno.makeTempFile({ suffix: gzip ? ".trace.gz" : ".trace" });
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

  Deno.test(`byte source (${kind}): lines and byte counts across read chunks`, async () => {
    // a line and a payload each longer than a read chunk, so both cross refills
    const long = "a".repeat(300_000);
    const payload = new Uint8Array(200_000).map((_, i) => (i * 7) & 0xff);
    const head = new TextEncoder().encode(`first\n${long}\n`);
    const tail = new TextEncoder().encode("\nlast\n");
    const all = new Uint8Array(head.length + payload.length + tail.length);
    all.set(head, 0);
    all.set(payload, head.length);
    all.set(tail, head.length + payload.length);
    const src = await sourceOf(all, gzip);
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
  });

  Deno.test(`byte source (${kind}): a last line without its newline names record and offset`, async () => {
    const src = await sourceOf(new TextEncoder().encode("one\ntwo-without-newline"), gzip);
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
  });
}

Deno.test("byte source: a gzip stream cut short is an error, not a short file", async () => {
  const lines = new TextEncoder().encode(
    Array.from({ length: 5000 }, (_, i) => `line ${i}`).join("\n") + "\n",
  );
  const stream = new Blob([lines]).stream().pipeThrough(new CompressionStream("gzip"));
  const gz = new Uint8Array(await new Response(stream).arrayBuffer());
  const path = await Deno.makeTempFile({ suffix: ".trace.gz" });
  await Deno.writeFile(path, gz.subarray(0, gz.length - 20));
  const src = new ByteSource(path, await Deno.open(path), true);
  try {
    await assert.rejects(async () => {
      while (await src.line(1) !== null) { /* read to the end */ }
    }, (err: unknown) => {
      assert.ok(err instanceof TraceFormatError, `expected TraceFormatError, found ${err}`);
      assert.match(err.message, /gzip/);
      return true;
    });
  } finally {
    await src.close();
  }
});

Deno.test("byte source: show quotes and cuts what it was given", () => {
  assert.equal(show("abc"), '"abc"');
  assert.equal(show("x".repeat(100)), JSON.stringify("x".repeat(80) + "…"));
  assert.equal(show(new TextEncoder().encode("line\n")), '"line\\n"');
});
