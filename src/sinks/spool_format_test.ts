import assert from "node:assert/strict";
import { crc32, frameRecord, RecordFramer, scanRecords } from "./spool_format.ts";

Deno.test("record framer: the bytes frameRecord writes for the text's UTF-8", () => {
  const framer = new RecordFramer();
  const utf8 = new TextEncoder();
  const texts = [
    "",
    '{"s":{"r1":[4,9,1]},"e":["r0"]}',
    "é, ✓ and 🙂 take 2, 3 and 4 bytes",
    "a lone surrogate \ud800 becomes U+FFFD",
    "x".repeat(5000), // past the first buffer: it grows
    "short again, after the long one",
  ];
  for (const text of texts) {
    const framed = framer.frame(text);
    assert.deepEqual(framed, frameRecord(utf8.encode(text)), JSON.stringify(text.slice(0, 40)));
    const read = scanRecords(framed);
    assert.equal(read.records.length, 1);
    assert.equal(new TextDecoder().decode(read.records[0]), text.replaceAll("\ud800", "\ufffd"));
  }
});

Deno.test("record framer: a record's CRC covers its payload (a changed byte is found corrupt)", () => {
  const framed = new RecordFramer().frame('{"s":{}}').slice();
  assert.equal(new DataView(framed.buffer).getUint32(8, true), crc32(framed.subarray(12)));
  framed[14] ^= 1;
  assert.deepEqual(scanRecords(framed), { records: [], torn: 0, corrupt: 1 });
});
