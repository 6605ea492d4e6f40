/**
 * The field readers on their own: every expected error message is written out
 * by hand, in the form a rejected ack's `reason` carries (`steering (command
 * …, request …): <field>: expected <what>, found <what>`).
 */
import assert from "node:assert/strict";
import * as fields from "./parse_fields.ts";
import { SteerProtocolError } from "./protocol.ts";
import { assertEquals, assertThrows } from "./_test_utils.ts";

/** The whole message of the error `fn` throws, which must be a SteerProtocolError. */
function message(fn: () => unknown): string {
  return assertThrows(fn, SteerProtocolError, "steering").message;
}

Deno.test("fields: found values are described, long text cut at 60 characters", () => {
  assertEquals(
    [null, [1], "x", 1, {}, undefined, true].map(fields.typeOf),
    ["null", "an array", 'the string "x"', "number", "object", "undefined", "boolean"],
  );
  assertEquals(fields.show("gpt2"), '"gpt2"');
  assertEquals(fields.show({ a: 1 }), '"{\\"a\\":1}"');
  assertEquals(fields.show(undefined), '"undefined"');
  assertEquals(fields.show("a".repeat(60)), `"${"a".repeat(60)}"`);
  assertEquals(fields.show("a".repeat(61)), `"${"a".repeat(57)}..."`);
  assertEquals(fields.showValue(-2.5), "-2.5");
  assertEquals(fields.showValue("2"), 'the string "2"');
  assertEquals(fields.showValue(null), "null");
});

Deno.test("fields: a payload must be UTF-8 JSON holding an object", () => {
  assertEquals(fields.parseJson(new TextEncoder().encode('{"v":1,"id":"c1"}'), "x"), {
    v: 1,
    id: "c1",
  });
  assertEquals(fields.parseJson('{"v":1}', "x"), { v: 1 });
  const bad = assertThrows(
    () => fields.parseJson(new Uint8Array([0x7b, 0xff, 0x7d]), "steering command"),
    SteerProtocolError,
    "steering: payload: expected a UTF-8 JSON steering command, found ",
  );
  assert.ok(bad.cause instanceof TypeError, String(bad.cause)); // the decoder's
  const notJson = assertThrows(
    () => fields.parseJson("{v:1}", "gate verdict"),
    SteerProtocolError,
    "steering: payload: expected a UTF-8 JSON gate verdict, found ",
  );
  assert.ok(notJson.cause instanceof SyntaxError, String(notJson.cause));
  assertEquals(
    message(() => fields.parseJson("[1,2]", "gate verdict")),
    "steering: payload: expected gate verdict, found an array",
  );
  assertEquals(
    message(() => fields.parseJson("null", "steering acknowledgement")),
    "steering: payload: expected steering acknowledgement, found null",
  );
});

Deno.test("fields: objects, names and optional names", () => {
  const latent = { sae: "s", index: 1 };
  assert.equal(fields.asObject(latent, "op.latent", "an object {sae, index}", {}), latent);
  assertEquals(
    message(() =>
      fields.asObject([latent], "op.latent", "an object {sae, index}", { commandId: "c1" })
    ),
    "steering (command c1): op.latent: expected an object {sae, index}, found an array",
  );
  assert.equal(fields.MAX_ID, 256);
  const longest = "m".repeat(256);
  assert.equal(fields.readName({ model: longest }, "model", {}), longest);
  // characters, not UTF-16 units: 256 astral characters are 512 units
  const astral = "\u{1d7d9}".repeat(256);
  assert.equal(fields.readName({ model: astral }, "model", {}), astral);
  const expected = "expected a non-empty string of at most 256 characters";
  assertEquals(
    message(() => fields.readName({ model: "m".repeat(257) }, "model", {})),
    `steering: model: ${expected}, found the string "${"m".repeat(57)}..."`,
  );
  assertEquals(
    message(() => fields.readName({ hook: "" }, "hook", { requestId: "r1" })),
    `steering (request r1): hook: ${expected}, found the string ""`,
  );
  const err = assertThrows(
    () => fields.readName({}, "sae", { commandId: "c1", requestId: "r1" }, "op.latent."),
    SteerProtocolError,
    `steering (command c1, request r1): op.latent.sae: ${expected}, found undefined`,
  );
  assertEquals([err.field, err.found, err.commandId, err.requestId], [
    "op.latent.sae",
    "undefined",
    "c1",
    "r1",
  ]);
  assert.equal(fields.readOptionalName({}, "rule", {}), undefined);
  assert.equal(fields.readOptionalName({ rule: "r" }, "rule", {}), "r");
  // present but null is not absent
  assertEquals(
    message(() => fields.readOptionalName({ rule: null }, "rule", {})),
    `steering: rule: ${expected}, found null`,
  );
});

Deno.test("fields: integers with a floor, finite numbers", () => {
  assert.equal(fields.readInt({ seq: 0 }, "seq", 0, {}), 0);
  assert.equal(fields.readInt({ index: 7 }, "index", 0, {}, "op.latent."), 7);
  assertEquals(
    message(() => fields.readInt({ from_position: -1 }, "from_position", 0, {})),
    "steering: from_position: expected an integer ≥ 0, found -1",
  );
  assertEquals(
    message(() => fields.readInt({ d_model: 1.5 }, "d_model", 1, {})),
    "steering: d_model: expected an integer ≥ 1, found 1.5",
  );
  assertEquals(
    message(() => fields.readInt({ seq: 2 ** 53 }, "seq", 0, {})),
    "steering: seq: expected an integer ≥ 0, found 9007199254740992",
  );
  assertEquals(
    message(() => fields.readInt({ seq: "3" }, "seq", 0, {})),
    'steering: seq: expected an integer ≥ 0, found the string "3"',
  );
  assert.equal(fields.readFinite({ scale: -0.25 }, "scale", {}), -0.25);
  assertEquals(
    message(() => fields.readFinite({ scale: NaN }, "scale", {})),
    "steering: op.scale: expected a finite number, found NaN",
  );
  assertEquals(
    message(() => fields.readFinite({ b: Infinity }, "b", {}, "op.read.")),
    "steering: op.read.b: expected a finite number, found Infinity",
  );
  assertEquals(
    message(() => fields.readFinite({ max: null }, "max", { commandId: "c1" })),
    "steering (command c1): op.max: expected a finite number, found null",
  );
});
