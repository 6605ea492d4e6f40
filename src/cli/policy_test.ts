import assert from "node:assert/strict";
import { join } from "node:path";
import { runLatentwatch } from "../../tests/helpers/cli.ts";

/** Run `latentwatch policy ...args` from `cwd` (the repo root by default). */
const latentwatch = (args: string[], cwd?: string) => runLatentwatch(["policy", ...args], { cwd });

/** Lines of `text`, without the trailing empty one. */
function lines(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}

const RULES = [
  "version: 1", //                         1
  "rules:", //                             2
  "  - id: injection", //                  3
  "    title: Prompt injection", //        4
  "    severity: high", //                 5
  "    when:", //                          6
  "      sae: res", //                     7  value col 12
  "      latent: 2", //                    8  value col 15
  "      above: 1.5", //                   9
  "",
].join("\n");

/** A temp folder with a monitor (SAE `res` of d_sae 3) and a policy file; returns its path. */
async function fixture(opts: { withSae?: boolean } = {}): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-policy-lint-" });
  await Deno.writeTextFile(join(dir, "rules.yaml"), RULES);
  await Deno.writeTextFile(
    join(dir, "monitor.yaml"),
    [
      "monitor: t", //              1
      "model: m", //                2
      "hook: h", //                 3
      "saes:", //                   4
      "  - id: res", //             5
      "    path: sae", //           6  value col 11
      "policies: [rules.yaml]", //  7
      "",
    ].join("\n"),
  );
  if (opts.withSae !== false) {
    await Deno.mkdir(join(dir, "sae"));
    await Deno.writeTextFile(join(dir, "sae", "cfg.json"), JSON.stringify({ d_sae: 3, d_in: 4 }));
  }
  return dir;
}

Deno.test("policy lint: the demo policies are valid (exit 0, one OK line)", async () => {
  const r = await latentwatch(["lint", "policies/demo.yaml"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r.stdout), ["policy lint: OK, 1 file(s), 4 rule(s)"]);
  assert.equal(r.stderr, "");
});

Deno.test("policy lint: errors are file:line:col: error: reason, exit 1", async () => {
  const dir = await fixture();
  try {
    const bad = RULES.replace("      above: 1.5\n", "      above: -1\n      below: 3\n");
    await Deno.writeTextFile(join(dir, "bad.yaml"), bad);
    const r = await latentwatch(["lint", "bad.yaml", "rules.yaml"], dir);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.deepEqual(lines(r.stderr), [
      "bad.yaml:9:14: error: expected a number ≥ 0, found -1; a latent that is not active reads " +
      "as 0, so a negative threshold would fire on every token (v0 rules only fire when a latent " +
      "rises above a threshold)",
      "bad.yaml:10:7: error: unknown key 'below'; expected one of: sae, latent, probe, score, above",
      "policy lint: 2 error(s) in 1 file(s)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint: duplicate rule ids across files are errors even without a monitor", async () => {
  const dir = await fixture();
  try {
    await Deno.writeTextFile(join(dir, "again.yaml"), RULES);
    const r = await latentwatch(["lint", "rules.yaml", "again.yaml"], dir);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), [
      "again.yaml:3:9: error: duplicate rule id 'injection': expected ids to be unique, found it " +
      "already defined at rules.yaml:3",
      "policy lint: 1 error(s) in 1 file(s)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint --monitor: compiles against the monitor's SAEs (exit 0)", async () => {
  const dir = await fixture();
  try {
    const r = await latentwatch(["lint", "rules.yaml", "--monitor", "monitor.yaml"], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout), [
      "policy lint: OK, 1 file(s), 1 rule(s), compiled against monitor 't' (1 SAE(s))",
    ]);
    // With no files, the monitor's own policies are linted.
    const own = await latentwatch(["lint", "--monitor", "monitor.yaml"], dir);
    assert.equal(own.code, 0, own.stderr);
    assert.match(own.stdout, /^policy lint: OK, 1 file\(s\), 1 rule\(s\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint --monitor: latent out of range and unknown SAE point at the field", async () => {
  const dir = await fixture();
  try {
    const bad = RULES.replace("      latent: 2\n", "      latent: 3\n") + [
      "  - id: other", //                10
      "    title: Other SAE", //         11
      "    severity: low", //            12
      "    when: {sae: nope, latent: 0, above: 0}", // 13  sae value col 17
      "",
    ].join("\n");
    await Deno.writeTextFile(join(dir, "rules.yaml"), bad);
    const r = await latentwatch(["lint", "rules.yaml", "--monitor", "monitor.yaml"], dir);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), [
      "rules.yaml:8:15: error: rule 'injection': expected a latent index in 0..2 (SAE 'res' has " +
      "d_sae 3), found 3",
      "rules.yaml:13:17: error: rule 'other': unknown SAE 'nope'; expected one the monitor loads (res)",
      "policy lint: 2 error(s) in 1 file(s)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint --monitor: a missing SAE folder is an error at the monitor's path", async () => {
  const dir = await fixture({ withSae: false });
  try {
    const r = await latentwatch(["lint", "rules.yaml", "--monitor", "monitor.yaml"], dir);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), [
      `monitor.yaml:6:11: error: SAE 'res': expected a folder at ${
        join(dir, "sae")
      }, found nothing there`,
      "policy lint: 1 error(s) in 1 file(s)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint --monitor: a cfg.json without d_sae is an error at the monitor's path", async () => {
  const dir = await fixture();
  try {
    await Deno.writeTextFile(join(dir, "sae", "cfg.json"), JSON.stringify({ d_in: 4 }));
    const r = await latentwatch(["lint", "--monitor", "monitor.yaml"], dir);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), [
      `monitor.yaml:6:11: error: SAE 'res': expected a positive integer d_sae in ` +
      `${join(dir, "sae", "cfg.json")}, found undefined`,
      "policy lint: 1 error(s) in 1 file(s)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy lint: a missing file is reported, exit 1", async () => {
  const r = await latentwatch(["lint", "no/such/policy.yaml"]);
  assert.equal(r.code, 1);
  assert.deepEqual(lines(r.stderr), [
    "no/such/policy.yaml:1:1: error: cannot read file: no such file",
    "policy lint: 1 error(s) in 1 file(s)",
  ]);
});

Deno.test("policy: bad usage exits 2", async () => {
  for (const args of [[], ["lint"], ["frobnicate"], ["lint", "--bogus", "x.yaml"]]) {
    const r = await latentwatch(args);
    assert.equal(r.code, 2, `args ${JSON.stringify(args)}: ${r.stderr}`);
    assert.match(r.stderr, /usage: latentwatch policy lint/);
  }
  const help = await latentwatch(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /usage: latentwatch policy lint/);
});
