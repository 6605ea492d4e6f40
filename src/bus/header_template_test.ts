import assert from "node:assert/strict";
import { headerWireBytes } from "../core/frame/encode.ts";
import { encodedBlockOf, HeaderTemplate } from "./header_template.ts";
import { encodeHeaderBlock, HeaderEncodeError, parseHeaderBlock } from "./nats_headers.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);

// the reference is encodeHeaderBlock of the rendered record (itself checked against the NATS
// client's own header object through a real nats-server in nats_bus_test.ts)
Deno.test("HeaderTemplate: every render is byte for byte encodeHeaderBlock of its record", () => {
  const layouts: Array<[Record<string, string>, string[]]> = [
    [{ "Lw-Version": "1", "Lw-Pos": "0", "Lw-Seq": "0", "Lw-Shape": "1,768" }, [
      "Lw-Pos",
      "Lw-Seq",
    ]],
    [{ "Lw-Pos": "x", "A": "é ✓", "Lw-Seq": "y" }, ["Lw-Pos", "Lw-Seq"]], // first, apart
    [{ "A": " padded ", "Lw-Seq": "y", "Lw-Pos": "x" }, ["Lw-Pos", "Lw-Seq"]], // order swapped
    [{ "A": "1", "B": "2" }, ["B"]], // last
    [{ "A": "1" }, []], // nothing varies
  ];
  for (const [headers, varying] of layouts) {
    const t = new HeaderTemplate({ headers, varying });
    for (const values of [["0", "0"], ["12", "3"], [" 7 ", "123456789012"], ["é", ""]]) {
      const v = values.slice(0, varying.length);
      const h = t.render(v);
      const expected = { ...headers };
      varying.forEach((name, i) => expected[name] = v[i]);
      assert.deepEqual(Object.entries(h), Object.entries(expected), "same record, same order");
      const block = encodedBlockOf(h)!;
      assert.equal(text(block), text(encodeHeaderBlock(expected)));
      // sized as the tap plans frames (headerWireBytes: values untrimmed), never under the block
      assert.equal(t.wireBytes(v), headerWireBytes(expected));
      assert.ok(t.wireBytes(v) >= block.length);
      assert.deepEqual(parseHeaderBlock(block).headers["A"], headers["A"]?.trim());
    }
  }
});

Deno.test("HeaderTemplate: the block is hidden from keys, JSON and copies; plain records have none", () => {
  const t = new HeaderTemplate({ headers: { "Lw-Seq": "0" }, varying: ["Lw-Seq"] });
  const h = t.render(["5"]);
  assert.deepEqual(Object.keys(h), ["Lw-Seq"]);
  assert.equal(JSON.stringify(h), '{"Lw-Seq":"5"}');
  const copy = { ...h, "Lw-Seq": "6" };
  assert.equal(encodedBlockOf(copy), undefined, "a changed copy is encoded afresh");
  assert.equal(encodedBlockOf({ "Lw-Seq": "5" }), undefined);
  // earlier blocks keep their bytes after later renders
  const first = encodedBlockOf(h)!;
  for (let i = 0; i < 2000; i++) t.render([String(i)]);
  assert.equal(text(first), "NATS/1.0\r\nLw-Seq: 5\r\n\r\n");
});

Deno.test("HeaderTemplate: refuses what encodeHeaderBlock refuses, and a missing or miscounted value", () => {
  const t = new HeaderTemplate({ headers: { "Lw-Seq": "0" }, varying: ["Lw-Seq"] });
  assert.throws(() => t.render(["1\r\nLw-Evil: 1"]), HeaderEncodeError);
  assert.throws(() => t.render([]), /expected 1 values, found 0/);
  assert.throws(
    () => new HeaderTemplate({ headers: { "Bad Name": "1" }, varying: [] }),
    HeaderEncodeError,
  );
  assert.throws(
    () => new HeaderTemplate({ headers: { "A": "1" }, varying: ["Lw-Seq"] }),
    /expected "Lw-Seq" among the headers/,
  );
  assert.throws(
    () => new HeaderTemplate({ headers: { "A": "1" }, varying: ["A", "A"] }),
    /expected each varying name once, found "A" twice/,
  );
});
