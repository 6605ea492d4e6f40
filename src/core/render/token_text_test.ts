import assert from "node:assert/strict";
import { joinTokenText, shownTokenText } from "./token_text.ts";

const at = (start: number, ...texts: (string | undefined)[]) =>
  texts.map((text, i) => ({ position: start + i, text }));

Deno.test("token text: the tokenizer's spacing is kept when the tokens carry it", () => {
  assert.equal(
    joinTokenText(at(12, "Ignore", " previous", " instructions")),
    "Ignore previous instructions",
  );
  // pieces of one word join without a mark when the span carries spaces
  assert.equal(joinTokenText(at(0, " instruct", "ions", ".")), " instructions.");
  assert.equal(
    joinTokenText(at(3, " hunter2024", " sk", "-live-", "9f8e")),
    " hunter2024 sk-live-9f8e",
  );
  assert.equal(joinTokenText(at(0, "a", "\nb")), "a\nb");
});

Deno.test("token text: tokens without whitespace are separated by a middle dot", () => {
  assert.equal(joinTokenText(at(4, "hurt", "myself")), "hurt·myself");
  assert.equal(joinTokenText(at(0, "sk", "-live-", "9f8e")), "sk·-live-·9f8e");
  assert.equal(joinTokenText(at(8, "hunter2024")), "hunter2024");
  assert.equal(joinTokenText(at(0, "[redacted]", "[redacted]")), "[redacted]·[redacted]");
});

Deno.test("token text: position order, gaps, missing text", () => {
  // given out of order: sorted by position
  assert.equal(
    joinTokenText([{ position: 7, text: "instructions" }, { position: 4, text: "Ignore" }, {
      position: 6,
      text: "previous",
    }]),
    "Ignore … previous·instructions",
  );
  // a gap does not double a space a token carries
  assert.equal(
    joinTokenText([{ position: 0, text: "Ignore" }, { position: 2, text: " previous" }]),
    "Ignore … previous",
  );
  assert.equal(joinTokenText([{ position: 0, text: "a " }, { position: 5, text: "b" }]), "a … b");
  assert.equal(joinTokenText(at(0, "Ignore", undefined, "instructions")), "Ignore·?·instructions");
  assert.equal(joinTokenText(at(0, undefined, undefined)), undefined);
  assert.equal(joinTokenText([]), undefined);
});

Deno.test("token text shown: JSON-quoted, cut to maxChars code points", () => {
  assert.equal(shownTokenText(at(0, " ignore", "\ninstructions")), '" ignore\\ninstructions"');
  assert.equal(shownTokenText(at(0, "hurt", "myself")), '"hurt·myself"');
  assert.equal(shownTokenText(at(0, "abcdef"), { maxChars: 4 }), '"abc…"');
  assert.equal(shownTokenText(at(0, "abcd"), { maxChars: 4 }), '"abcd"');
  // 61 characters: cut to 59 and the ellipsis by default
  assert.equal(shownTokenText(at(0, "x".repeat(61))), `"${"x".repeat(59)}…"`);
  // an astral character is one character, never split
  assert.equal(shownTokenText(at(0, "😀😀😀"), { maxChars: 2 }), '"😀…"');
  assert.equal(shownTokenText(at(0, undefined)), undefined);
});
