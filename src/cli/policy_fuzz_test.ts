/**
 * Fuzzing `policy lint`: 2,000 policy files mutated from the valid ones
 * (the files under policies/ and test fixtures) with a seeded PRNG: keys
 * renamed or dropped, types swapped, huge and odd numbers, long strings with
 * line breaks and control characters, deep nesting, long lists, macro loops,
 * and raw text damage. Every outcome must be success or `file:line:col`
 * findings, never a throw, each in bounded time, with bounded memory.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parse } from "yaml";
import { Rng } from "../core/random.ts";
import { macroChainYaml } from "../core/policy/test_helpers.ts";
import { formatFinding, lintPolicies } from "./policy.ts";

const FILES = 2000;
const PER_FILE_MS = 2000;
const RSS_GROWTH = 1024 * 2 ** 20;

const FIXTURES = [
  "version: 1\nrules:\n  - id: injection\n    title: Prompt injection\n    severity: high\n" +
  "    when:\n      sae: res\n      latent: 2\n      above: 1.5\n",
  "version: 2\nlists:\n  - list: l\n    items: [1, 2]\nmacros:\n  - macro: m\n" +
  "    when: { sae: res, latents: l, pool: { count: { window: 8, above: 1 } }, above: 2 }\n" +
  "rules:\n  - id: r\n    title: r\n    severity: low\n    when: { all: [{ macro: m }, " +
  "{ not: { probe: p, above: 0.5 } }] }\n    exceptions: [{ tenant: [a], metadata: { k: [v] } }]\n" +
  "    actions: [alert, { steer: { clamp: { sae: res, latent: 1, value: 0 } } }]\n" +
  "    suppress: { tokens: 4 }\n    rate_limit: { alerts: 2, per_seconds: 1 }\n",
  macroChainYaml(20),
];

const ODD_VALUES: unknown[] = [
  1099511627776,
  2 ** 31,
  2 ** 31 - 1,
  -1,
  1e308,
  -0,
  0.5,
  Number.MAX_SAFE_INTEGER,
  "",
  "\n",
  "a\nb\r\nc\u001b[31m",
  null,
  true,
  [],
  {},
  "m0",
  "not",
  "AML.T0051",
  "{request_id}{nope}",
];

const KEYS = [
  "version",
  "rules",
  "macros",
  "lists",
  "id",
  "title",
  "severity",
  "when",
  "all",
  "any",
  "not",
  "macro",
  "sae",
  "latent",
  "latents",
  "label",
  "probe",
  "score",
  "pool",
  "above",
  "below",
  "max",
  "mean",
  "ema",
  "half_life",
  "count",
  "window",
  "list",
  "items",
  "exceptions",
  "tenant",
  "actions",
  "steer",
  "clamp",
  "suppress",
  "dedup_key",
  "rate_limit",
  "enabled",
  "scope",
  "tags",
];

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[Math.floor(rng.uniform() * xs.length)];
}

function longString(rng: Rng): string {
  const n = Math.floor(rng.uniform() * 40_000);
  const parts = ["x", "\n", "é", "\u2028", "\t", "'", '"', "{", "\u0000"];
  let s = "";
  while (s.length < n) s += pick(rng, parts).repeat(1 + Math.floor(rng.uniform() * 300));
  return s;
}

function odd(rng: Rng): unknown {
  const r = rng.uniform();
  if (r < 0.05) return longString(rng);
  if (r < 0.1) {
    return Array.from(
      { length: rng.uniform() < 0.2 ? 10_001 : Math.floor(rng.uniform() * 200) },
      (_, i) => i,
    );
  }
  if (r < 0.2) {
    // deep nesting, up to far past the limit
    let c: unknown = { sae: "res", latent: 1, above: 1 };
    const depth = Math.floor(rng.uniform() * 2000);
    for (let i = 0; i < depth; i++) c = rng.uniform() < 0.5 ? { not: c } : { all: [c] };
    return c;
  }
  return structuredClone(pick(rng, ODD_VALUES));
}

/** Every container node of `v` with how to replace a child. */
function slots(v: unknown): { obj: Record<string, unknown> | unknown[]; key: string | number }[] {
  const out: { obj: Record<string, unknown> | unknown[]; key: string | number }[] = [];
  const stack = [v];
  while (stack.length > 0 && out.length < 5000) {
    const x = stack.pop();
    if (Array.isArray(x)) x.forEach((y, i) => (out.push({ obj: x, key: i }), stack.push(y)));
    else if (x !== null && typeof x === "object") {
      for (const [k, y] of Object.entries(x)) {
        out.push({ obj: x as Record<string, unknown>, key: k }), stack.push(y);
      }
    }
  }
  return out;
}

function mutate(rng: Rng, seed: unknown): unknown {
  const doc = structuredClone(seed);
  const n = 1 + Math.floor(rng.uniform() * 4);
  for (let i = 0; i < n; i++) {
    const all = slots(doc);
    if (all.length === 0) break;
    const { obj, key } = pick(rng, all);
    const r = rng.uniform();
    const target = obj as Record<string | number, unknown>;
    if (r < 0.15 && !Array.isArray(obj)) delete target[key];
    else if (r < 0.3 && !Array.isArray(obj)) {
      const v = target[key];
      delete target[key];
      target[rng.uniform() < 0.5 ? pick(rng, KEYS) : `${key}${pick(rng, ["x", "\n", "_"])}`] = v;
    } else if (r < 0.45) {
      // same value, another type
      const v = target[key];
      target[key] = typeof v === "number"
        ? String(v)
        : typeof v === "string"
        ? [v]
        : Array.isArray(v)
        ? { x: v }
        : 7;
    } else if (r < 0.55) {
      // a loop or a dangling reference
      target[key] = { macro: pick(rng, ["m0", "m19", "m", "nope"]) };
    } else if (r < 0.65 && Array.isArray(obj)) {
      // duplicate an item (duplicate ids and names)
      obj.push(structuredClone(obj[Math.floor(rng.uniform() * obj.length)]));
    } else target[key] = odd(rng);
  }
  return doc;
}

function damage(rng: Rng, text: string): string {
  const at = Math.floor(rng.uniform() * text.length);
  const r = rng.uniform();
  if (r < 0.3) return text.slice(0, at);
  if (r < 0.6) {
    return text.slice(0, at) + pick(rng, ["[", "{", '"', ":", "- ", "\t", "&a ", "*a", "!!"]) +
      text.slice(at);
  }
  return text.slice(0, at) + "\n" + " ".repeat(Math.floor(rng.uniform() * 9)) + text.slice(at);
}

Deno.test(`policy lint fuzz: ${FILES} mutated files, only findings or success`, async () => {
  const seeds: unknown[] = [...FIXTURES];
  for (
    const f of [
      "policies/demo.yaml",
      "policies/examples/gemma-2-2b.yaml",
      "policies/examples/agent-tools.yaml",
    ]
  ) {
    seeds.push(await Deno.readTextFile(f));
  }
  const values = seeds.map((t) => parse(t as string));
  const rng = new Rng(11);
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-lint-fuzz-" });
  const rss0 = Deno.memoryUsage().rss;
  let slowest = 0;
  let total = 0;
  let clean = 0;
  let maxRss = rss0;
  try {
    for (let i = 0; i < FILES; i++) {
      const k = Math.floor(rng.uniform() * seeds.length);
      const r = rng.uniform();
      const text = r < 0.2
        ? damage(rng, seeds[k] as string)
        : JSON.stringify(mutate(rng, values[k]), null, rng.uniform() < 0.5 ? 2 : undefined);
      const path = join(dir, `f${i}.yaml`);
      await Deno.writeTextFile(path, text);
      const t0 = performance.now();
      let report;
      try {
        report = await lintPolicies([path]);
      } catch (err) {
        assert.fail(
          `file ${i} (seed ${k}): lintPolicies threw ${(err as Error).stack}\n${
            text.slice(0, 500)
          }`,
        );
      }
      const ms = performance.now() - t0;
      slowest = Math.max(slowest, ms);
      total += ms;
      assert.ok(ms < PER_FILE_MS, `file ${i} took ${ms.toFixed(0)} ms`);
      if (report.ok) clean++;
      for (const f of [...report.errors, ...report.warnings]) {
        assert.equal(f.file, path, `file ${i}: ${JSON.stringify(f).slice(0, 300)}`);
        assert.ok(Number.isInteger(f.line) && f.line >= 1 && Number.isInteger(f.col) && f.col >= 1);
        assert.equal(
          f.code === "internal",
          false,
          `file ${i}: unforeseen: ${f.reason.slice(0, 300)}`,
        );
        const line = formatFinding(f);
        assert.equal(line.split(/\r\n|[\n\r\u2028\u2029\u0085]/).length, 1);
        assert.ok(line.startsWith(`${path}:${f.line}:${f.col}: `));
      }
      await Deno.remove(path);
      if (i % 100 === 0) maxRss = Math.max(maxRss, Deno.memoryUsage().rss);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  maxRss = Math.max(maxRss, Deno.memoryUsage().rss);
  console.log(
    `fuzz: ${FILES} files (${clean} clean), lint mean ${(total / FILES).toFixed(1)} ms, ` +
      `slowest ${slowest.toFixed(0)} ms, RSS growth ${((maxRss - rss0) / 2 ** 20).toFixed(0)} MiB`,
  );
  assert.ok(maxRss - rss0 < RSS_GROWTH, `RSS grew ${(maxRss - rss0) / 2 ** 20} MiB`);
});
