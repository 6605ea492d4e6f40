import assert from "node:assert/strict";
import { SpoolIndex } from "./spool_index.ts";
import { resolveSpoolOptions } from "./spool_options.ts";
import { SpoolWriter } from "./spool_writer.ts";

const enc = new TextEncoder();

function rec(id: string, body = `{"id":"${id}"}`) {
  return { id, data: enc.encode(body), firstAttemptMs: 0 };
}

Deno.test("spool writer: a batch lands in the index, its data where the index says", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-spool-writer-" });
  try {
    const index = new SpoolIndex();
    const opts = resolveSpoolOptions(dir, { segmentBytes: 1024 });
    const writer = new SpoolWriter({ dir, opts, index, nextSeg: 5 });
    const big = "z".repeat(400);
    const out = writer.appendMany([rec("a", big), rec("b", big), rec("c", big), rec("d")]);
    assert.ok(out.every((r) => r.ok && !r.already));
    writer.close();
    assert.deepEqual([...index.entries()].map(([id, e]) => [id, e.seg]), [
      ["a", 5],
      ["b", 5],
      ["c", 6],
      ["d", 6],
    ]);
    for (const [id, e] of index.entries()) {
      const log = Deno.readFileSync(`${dir}/seg-${String(e.seg).padStart(16, "0")}.log`);
      const data = log.subarray(e.dataOffset, e.dataOffset + e.dataLength);
      assert.equal(new TextDecoder().decode(data), id === "d" ? `{"id":"d"}` : big);
    }
    const onDisk = [...Deno.readDirSync(dir)]
      .reduce((n, f) => n + Deno.statSync(`${dir}/${f.name}`).size, 0);
    assert.equal(index.bytes, onDisk, "the index counts every byte written");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("spool writer: a failed write refuses the records it carried, nothing indexed", () => {
  const dir = "/nonexistent/latentwatch-spool-writer";
  const index = new SpoolIndex();
  const writer = new SpoolWriter({ dir, opts: resolveSpoolOptions(dir), index, nextSeg: 1 });
  const out = writer.appendMany([rec("a"), rec("b")]);
  assert.deepEqual(out.map((r) => r.ok ? "ok" : r.reason), ["spool_io_error", "spool_io_error"]);
  assert.equal(index.size, 0);
  assert.equal(index.bytes, 0);
  writer.close();
});
