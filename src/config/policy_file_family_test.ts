import assert from "node:assert/strict";
import { ConfigError } from "./errors.ts";
import { parsePolicyFileDef } from "./policy_file.ts";

const F = "p.yaml";

/** A v2 file with one rule whose `when` is `when` (a flow mapping on line 6, value at col 11). */
function oneRule(when: string): string {
  return [
    "version: 2",
    "rules:",
    "  - id: r",
    "    title: R",
    "    severity: low",
    `    when: ${when}`,
  ]
    .join("\n");
}

function problems(text: string): string[] {
  try {
    parsePolicyFileDef(text, F);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.issues.map((i) => `${i.line}:${i.col}: ${i.reason}`);
  }
  throw new Error("expected the file to be invalid");
}

Deno.test("family: members or min_cosine become the AST's family signal, combine sum by default", () => {
  const listed = parsePolicyFileDef(
    oneRule(
      "{ sae: res12, family: { of: 4123, members: [4123, 9001], combine: max }, pool: { max: 4 }, above: 2 }",
    ),
    F,
  ).rules[0].condition;
  assert.deepStrictEqual(listed, {
    kind: "test",
    signal: { kind: "family", sae: "res12", of: 4123, members: [4123, 9001], combine: "max" },
    pool: { kind: "max", window: 4 },
    op: "above",
    threshold: 2,
    source: { file: F, line: 6, col: 11 },
  });
  const byCosine = parsePolicyFileDef(
    oneRule("{ sae: res12, family: { of: 4123, min_cosine: 0.5 }, above: 2 }"),
    F,
  ).rules[0].condition;
  assert.deepStrictEqual(
    byCosine.kind === "test" && byCosine.signal,
    { kind: "family", sae: "res12", of: 4123, members: { minCosine: 0.5 }, combine: "sum" },
  );
});

Deno.test("family: broken forms are rejected at their line and column", () => {
  const p = (family: string) => problems(oneRule(`{ sae: res12, family: ${family}, above: 2 }`));
  assert.match(p("{ of: 1 }").join("\n"), /expected 'members: \[\.\.\.\]' or 'min_cosine: X'/);
  assert.match(
    p("{ of: 1, members: [1], min_cosine: 0.5 }").join("\n"),
    /expected 'members' or 'min_cosine', found both/,
  );
  assert.match(p("{ of: 1, min_cosine: 0 }").join("\n"), /6:\d+: .*a cosine in \(0, 1\]/);
  assert.match(p("{ of: 1, min_cosine: 1.5 }").join("\n"), /a cosine in \(0, 1\]/);
  assert.match(p("{ of: 1, members: [] }").join("\n"), /at least one latent index/);
  assert.match(p("{ of: -1, members: [1] }").join("\n"), /an integer latent index ≥ 0/);
  assert.match(p("{ of: 1, members: [1], combine: mean }").join("\n"), /sum.*max|max.*sum/);
  assert.match(p("{ of: 1, members: [1], extra: 2 }").join("\n"), /extra/);
  assert.match(
    problems(oneRule("{ sae: res12, latent: 3, family: { of: 1, members: [1] }, above: 2 }"))
      .join("\n"),
    /expected one of 'latent', 'label', 'latents' or 'family', found both 'latent' and 'family'/,
  );
  assert.match(
    problems(oneRule("{ probe: p, family: { of: 1, members: [1] }, above: 2 }")).join("\n"),
    /expected 'family' only with 'sae'/,
  );
});
