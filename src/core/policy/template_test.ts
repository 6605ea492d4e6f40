import assert from "node:assert/strict";
import {
  conditionPlaceholder,
  isTemplateField,
  renderTemplate,
  templatePlaceholders,
} from "./template.ts";

Deno.test("renderTemplate: fields replaced, unknown left, undefined empty", () => {
  assert.equal(
    renderTemplate("{rule} on {request_id} for {tenant}: {nope} {meta.team}", {
      rule: "pi",
      request_id: "r1",
      tenant: undefined,
      "meta.team": "red",
    }),
    "pi on r1 for : {nope} red",
  );
});

Deno.test("renderTemplate: numbers shortened, malformed braces copied", () => {
  assert.equal(renderTemplate("{value}", { value: 3.14159265 }), "3.14159");
  assert.equal(renderTemplate("{value}", { value: 12 }), "12");
  assert.equal(renderTemplate("{} {a b} { {value", { value: 1 }), "{} {a b} { {value");
  assert.equal(renderTemplate("no placeholders", {}), "no placeholders");
});

Deno.test("templatePlaceholders and isTemplateField", () => {
  assert.deepEqual(templatePlaceholders("{rule}/{meta.team}/{rule}/{x}"), [
    "rule",
    "meta.team",
    "x",
  ]);
  assert.equal(isTemplateField("meta.team"), true);
  assert.equal(isTemplateField("meta."), false);
  assert.equal(isTemplateField("tenat"), false);
  assert.equal(isTemplateField("request_id"), true);
});

Deno.test("isTemplateField and conditionPlaceholder: cond.<name>.<field> for the rule's conditions", () => {
  assert.deepEqual(conditionPlaceholder("cond.res12.7.value"), {
    condition: "res12.7",
    field: "value",
  });
  assert.equal(conditionPlaceholder("cond.value"), undefined);
  assert.equal(conditionPlaceholder("meta.x"), undefined);
  assert.equal(isTemplateField("cond.email.value", ["email"]), true);
  assert.equal(isTemplateField("cond.email.held", ["email"]), true);
  assert.equal(isTemplateField("cond.email.nope", ["email"]), false);
  assert.equal(isTemplateField("cond.mail.value", ["email"]), false);
  assert.equal(isTemplateField("cond.email.value"), false);
});
