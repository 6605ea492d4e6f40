import assert from "node:assert/strict";
import { Rng } from "./random.ts";
import { utf8Length } from "./utf8_length.ts";

const enc = new TextEncoder();

Deno.test("utf8Length: TextEncoder's byte count, for every kind of code unit", () => {
  const cases = [
    "",
    "gpt2",
    "naïve",
    "✓ 日本語",
    "😀 a 😀",
    "\u007f\u0080\u07ff\u0800\uffff",
    "lone high \ud800 then text",
    "lone low \udc00",
    "ends high \ud83d",
    "\ud83d\ud83d\ude00", // a high surrogate, then a pair
  ];
  for (const s of cases) assert.equal(utf8Length(s), enc.encode(s).length, JSON.stringify(s));
});

Deno.test("utf8Length: TextEncoder's byte count on random UTF-16, lone surrogates included", () => {
  const rng = new Rng(17);
  // code units drawn from each range that encodes differently, surrogates over-weighted
  const ranges: [number, number][] = [
    [0x00, 0x7f],
    [0x80, 0x7ff],
    [0x800, 0xd7ff],
    [0xd800, 0xdbff],
    [0xdc00, 0xdfff],
    [0xe000, 0xffff],
  ];
  for (let t = 0; t < 2000; t++) {
    const units: number[] = [];
    const len = Math.floor(rng.uniform() * 12);
    for (let i = 0; i < len; i++) {
      const [lo, hi] = ranges[Math.floor(rng.uniform() * ranges.length)];
      units.push(lo + Math.floor(rng.uniform() * (hi - lo + 1)));
    }
    const s = String.fromCharCode(...units);
    assert.equal(utf8Length(s), enc.encode(s).length, JSON.stringify(s));
  }
});
