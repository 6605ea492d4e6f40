import assert from "node:assert/strict";
import { FrameError } from "./format.ts";
import { nameProblem, partitionOf, tapSubject, tapSubjectFilter } from "./subjects.ts";

Deno.test("frame: tap subjects sanitise names into single tokens", () => {
  assert.equal(
    tapSubject("gpt2", "blocks.6.hook_resid_post"),
    "latentwatch.tap.v1.gpt2.blocks_6_hook_resid_post.0",
  );
  assert.equal(
    tapSubject("google/gemma-2-2b", "layer 12.*>", 3),
    "latentwatch.tap.v1.google_gemma-2-2b.layer_12___.3",
  );
  assert.equal(tapSubject("modèle😀", "h"), "latentwatch.tap.v1.mod_le_.h.0");
  assert.equal(tapSubjectFilter("gpt2", "blocks.6"), "latentwatch.tap.v1.gpt2.blocks_6.*");
  assert.throws(() => tapSubject("", "h"), FrameError);
  assert.throws(() => tapSubject("m", "h", -1), RangeError);
  assert.throws(() => tapSubject("m", "h", 1.5), RangeError);
});

Deno.test("frame: partitionOf is FNV-1a 32-bit of the UTF-8 bytes, mod partitions", () => {
  // Published FNV-1a 32 test vectors: "" 0x811c9dc5, "a" 0xe40c292c, "foobar" 0xbf9cf968
  assert.equal(partitionOf("", 1000), 2166136261 % 1000); // 261
  assert.equal(partitionOf("a", 1000), 220); // 3826002220
  assert.equal(partitionOf("a", 7), 5);
  assert.equal(partitionOf("foobar", 1000), 720); // 3214735720
  assert.equal(partitionOf("ü", 4), 2); // bytes c3 bc -> 0x119dd44a = 295556170
  assert.equal(partitionOf("anything", 1), 0);
  assert.throws(() => partitionOf("a", 0), RangeError);
});

Deno.test("nameProblem: the same answer asked again, past the names it remembers, for valid and invalid names", () => {
  // the expected answers, written out: a valid name, then what each invalid one is refused for
  const cases: Array<[string, string | null]> = [
    ["req-1", null],
    ["google/gemma-2-2b", null],
    ["é✓ names", null],
    ["", "empty"],
    ["tab\there", "contains a control character"],
    ["\ud800", "contains a control character"],
    [" lead", "has leading or trailing whitespace"],
    ["trail ", "has leading or trailing whitespace"],
    ["x".repeat(257), "257 characters"],
    ["x".repeat(256), null],
  ];
  for (let round = 0; round < 3; round++) {
    for (const [name, expected] of cases) {
      assert.equal(nameProblem(name), expected, `${JSON.stringify(name)}, round ${round}`);
    }
    // more distinct valid names than are remembered: the answers stay the same after the reset
    for (let i = 0; i < 5000; i++) assert.equal(nameProblem(`r-${round}-${i}`), null);
  }
});
