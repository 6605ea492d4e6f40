import assert from "node:assert/strict";
import { z } from "zod";
import { ConfigError, formatIssue, sortIssues } from "./errors.ts";
import { describeValue, loadYamlSource, parseYamlSource, validateYaml } from "./yaml_source.ts";

/** The ConfigError `fn` throws (fails the test when it throws nothing or something else). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  assert.fail("expected a ConfigError, none was thrown");
}

// Line numbers are written beside each line; columns are 1-based.
const TEXT = [
  "name: demo", //                  1
  "items:", //                      2
  "  - id: a", //                   3   id value at col 9, item mapping at col 5
  "    size: 3", //                 4   value at col 11
  "  - id: b", //                   5
  "    tags: [x, y]", //            6   [ at col 11, y at col 15
  "empty:", //                      7   empty value: points at the key, col 1
  "",
].join("\n");

Deno.test("parseYamlSource: value is the plain document", () => {
  const src = parseYamlSource(TEXT, "t.yaml");
  assert.equal(src.file, "t.yaml");
  assert.deepEqual(src.value, {
    name: "demo",
    items: [{ id: "a", size: 3 }, { id: "b", tags: ["x", "y"] }],
    empty: null,
  });
});

Deno.test("locate: exact nodes point at their value, or at their key when asked", () => {
  const src = parseYamlSource(TEXT, "t.yaml");
  assert.deepEqual(src.locate([]), { line: 1, col: 1 });
  assert.deepEqual(src.locate(["name"]), { line: 1, col: 7 });
  assert.deepEqual(src.locate(["name"], "key"), { line: 1, col: 1 });
  assert.deepEqual(src.locate(["items", 0]), { line: 3, col: 5 });
  assert.deepEqual(src.locate(["items", 0, "id"]), { line: 3, col: 9 });
  assert.deepEqual(src.locate(["items", 0, "size"]), { line: 4, col: 11 });
  assert.deepEqual(src.locate(["items", 0, "size"], "key"), { line: 4, col: 5 });
  assert.deepEqual(src.locate(["items", 1, "tags"]), { line: 6, col: 11 });
  assert.deepEqual(src.locate(["items", 1, "tags", 1]), { line: 6, col: 15 });
  assert.deepEqual(src.locate(["empty"]), { line: 7, col: 1 });
});

Deno.test("locate: missing nodes fall back to the nearest existing ancestor", () => {
  const src = parseYamlSource(TEXT, "t.yaml");
  assert.deepEqual(src.locate(["items", 0, "title"]), { line: 3, col: 5 });
  assert.deepEqual(src.locate(["items", 1, "tags", 7]), { line: 6, col: 11 });
  assert.deepEqual(src.locate(["items", 9, "id"]), { line: 3, col: 3 });
  assert.deepEqual(src.locate(["empty", "deeper"]), { line: 7, col: 1 });
  assert.deepEqual(src.locate(["nope", "x"]), { line: 1, col: 1 });
  assert.deepEqual(src.locate(["name", "x"]), { line: 1, col: 7 });
});

Deno.test("parseYamlSource: syntax errors throw one ConfigError with every problem", () => {
  const text = [
    "a: 1", //          1
    "a: 2", //          2  duplicate key at col 1
    "b: [1, 2", //      3  unterminated flow sequence: points at its '[' (col 4)
    "c: {x: 1", //      4  unterminated flow mapping: points at its '{' (col 4)
    "",
  ].join("\n");
  const err = configError(() => parseYamlSource(text, "bad.yaml"));
  assert.ok(err instanceof TypeError);
  assert.deepEqual([err.file, err.line, err.col], ["bad.yaml", 2, 1]);
  assert.equal(err.reason, "invalid YAML: Map keys must be unique");
  assert.deepEqual(err.issues.map(formatIssue), [
    "bad.yaml:2:1: invalid YAML: Map keys must be unique",
    "bad.yaml:3:4: invalid YAML: this '[' is never closed by ']'",
    "bad.yaml:4:4: invalid YAML: this '{' is never closed by '}'",
  ]);
});

Deno.test("parseYamlSource: a bad indentation points at its line", () => {
  const text = [
    "rules:", //            1
    "  - id: a", //         2
    "    title: x", //      3
    "   severity: low", //  4  indented one column less than its siblings
    "",
  ].join("\n");
  const err = configError(() => parseYamlSource(text, "i.yaml"));
  assert.equal(err.message, "i.yaml:4:4: invalid YAML: Sequence item without - indicator");
});

Deno.test("validateYaml: zod issues become file:line:col with expected and found", () => {
  const schema = z.strictObject({
    name: z.string(),
    items: z.array(z.strictObject({ id: z.string(), size: z.int().min(0) })),
    empty: z.string(),
  });
  const text = [
    "name: 42", //            1  value col 7
    "items:", //              2
    "  - id: a", //           3
    "    size: -1", //        4  value col 11
    "    colour: red", //     5  key col 5
    "  - size: 2", //         6  mapping lacks id; mapping starts col 5
    "empty:", //              7
    "",
  ].join("\n");
  const err = configError(() => validateYaml(schema, parseYamlSource(text, "v.yaml")));
  const lines = err.issues.map(formatIssue);
  assert.deepEqual(lines, [
    "v.yaml:1:7: expected a string, found 42",
    "v.yaml:4:11: expected a number ≥ 0, found -1",
    "v.yaml:5:5: unknown key 'colour'; expected one of: id, size",
    "v.yaml:6:5: missing required key 'id' (expected a string)",
    "v.yaml:7:1: expected a string, found an empty value",
  ]);
});

Deno.test("validateYaml: an unknown key close to a known one gets a hint", () => {
  const schema = z.strictObject({ title: z.string() });
  const src = parseYamlSource("title: a\ntitel: b\n", "h.yaml");
  const err = configError(() => validateYaml(schema, src));
  assert.equal(
    err.message,
    "h.yaml:2:1: unknown key 'titel' (did you mean 'title'?); expected one of: title",
  );
});

Deno.test("validateYaml: an integer field says 'an integer' for any wrong input", () => {
  const schema = z.strictObject({ port: z.int(), size: z.int() });
  const src = parseYamlSource("port: high\nsize: 1.5\n", "n.yaml");
  assert.deepEqual(configError(() => validateYaml(schema, src)).issues.map(formatIssue), [
    'n.yaml:1:7: expected an integer, found the string "high"',
    "n.yaml:2:7: expected an integer, found 1.5",
  ]);
  assert.equal(
    configError(() => validateYaml(schema, parseYamlSource("size: 1\n", "n.yaml"))).message,
    "n.yaml:1:1: missing required key 'port' (expected an integer)",
  );
});

Deno.test("validateYaml: an empty file is reported at 1:1", () => {
  const err = configError(() =>
    validateYaml(z.strictObject({ a: z.string() }), parseYamlSource("", "e.yaml"))
  );
  assert.equal(err.message, "e.yaml:1:1: expected a mapping, found an empty file");
});

Deno.test("validateYaml: returns the parsed output when valid", () => {
  const out = validateYaml(z.strictObject({ a: z.int().default(3) }), parseYamlSource("{}", "x"));
  assert.deepEqual(out, { a: 3 });
});

Deno.test("loadYamlSource: a missing file is a ConfigError at 1:1", async () => {
  await assert.rejects(loadYamlSource("/nonexistent/latentwatch.yaml"), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.message, "/nonexistent/latentwatch.yaml:1:1: cannot read file: no such file");
    return true;
  });
});

Deno.test("ConfigError: sorts issues, drops duplicates, needs at least one", () => {
  const a = { file: "a", line: 3, col: 1, reason: "x" };
  const b = { file: "a", line: 1, col: 9, reason: "y" };
  const err = new ConfigError([a, b, a]);
  assert.deepEqual(err.issues, [b, a]);
  assert.equal(err.message, "a:1:9: y\na:3:1: x");
  assert.deepEqual(sortIssues([a, a]), [a]);
  assert.throws(() => new ConfigError([]), RangeError);
  assert.equal(ConfigError.at("f", 2, 3, "r").message, "f:2:3: r");
});

Deno.test("describeValue: names what was found", () => {
  assert.equal(describeValue("2.0"), 'the string "2.0"');
  assert.equal(describeValue(-1), "-1");
  assert.equal(describeValue(NaN), ".nan");
  assert.equal(describeValue(Infinity), ".inf");
  assert.equal(describeValue(true), "the boolean true");
  assert.equal(describeValue([1, 2]), "a list of 2 item(s)");
  assert.equal(describeValue({}), "a mapping");
  assert.equal(describeValue(null), "an empty value");
  assert.equal(describeValue(undefined), "nothing (the key is missing)");
});

Deno.test("parseYamlSource: nesting past the depth limit is refused where it starts", () => {
  // root mapping 1, then lists: the 64th '[' is level 65
  assert.throws(
    () => parseYamlSource(`a: ${"[".repeat(64)}${"]".repeat(64)}\n`, "d.yaml"),
    (e: ConfigError) =>
      e.message ===
        "d.yaml:1:67: expected YAML nested at most 64 levels deep (limit depth), found a mapping or list at level 65",
  );
  assert.deepEqual(
    parseYamlSource(`a: ${"[".repeat(63)}${"]".repeat(63)}\n`, "d.yaml").locate(["a"]),
    { line: 1, col: 4 },
  );
  // 50,000 deep: refused as fast, no stack overflow in the YAML library
  const t0 = performance.now();
  assert.throws(
    () => parseYamlSource(`a: ${"{a: ".repeat(50_000)}1${"}".repeat(50_000)}`, "d.yaml"),
    /limit depth/,
  );
  assert.ok(performance.now() - t0 < 2000);
  // a smaller limit
  assert.throws(
    () => parseYamlSource("a: [[1]]\n", "d.yaml", { depth: 2 }),
    /^ConfigError: d\.yaml:1:5: /,
  );
});

Deno.test("parseYamlSource: aliases nesting deeper than the limit are refused", () => {
  // each anchor nests the previous one: 3 levels of text, 5 once expanded
  const text = "a: &a [1]\nb: &b [*a]\nc: &c [*b]\nd: [*c]\n";
  assert.throws(
    () => parseYamlSource(text, "al.yaml", { depth: 4 }),
    (e: ConfigError) =>
      e.message ===
        "al.yaml:1:1: expected YAML nested at most 4 levels deep (limit depth), found 5 levels once its aliases are expanded",
  );
  assert.deepEqual(parseYamlSource(text, "al.yaml", { depth: 5 }).value, {
    a: [1],
    b: [[1]],
    c: [[[1]]],
    d: [[[[1]]]],
  });
});

Deno.test("parseYamlSource: a text past the size limit is refused before parsing", () => {
  assert.throws(
    () => parseYamlSource("a: 1\n".repeat(10), "big.yaml", { bytes: 20 }),
    (e: ConfigError) =>
      e.message === "big.yaml:1:1: expected a file of at most 20 bytes (limit fileBytes), found 50",
  );
});

Deno.test("loadYamlSource: a device, a FIFO or a folder is refused at once, with what it is", async () => {
  const t0 = performance.now();
  await assert.rejects(
    loadYamlSource("/dev/zero"),
    (err: unknown) =>
      err instanceof ConfigError &&
      /\/dev\/zero:1:1.*expected a regular file, found a character device/.test(err.message),
  );
  assert.ok(performance.now() - t0 < 2_000, "bounded time");
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-yaml-" });
  try {
    await assert.rejects(
      loadYamlSource(dir),
      (err: unknown) => err instanceof ConfigError && /found a directory/.test(err.message),
    );
    const fifo = `${dir}/pipe.yaml`;
    const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    if (mk.success) {
      // opening it would wait for a writer forever
      await assert.rejects(
        loadYamlSource(fifo),
        (err: unknown) => err instanceof ConfigError && /found a FIFO/.test(err.message),
      );
    }
    // a regular file is read up to the limit, and no further
    await Deno.writeTextFile(`${dir}/big.yaml`, "# filler\n".repeat(40) + "a: 1\n");
    await assert.rejects(
      loadYamlSource(`${dir}/big.yaml`, { bytes: 100 }),
      (err: unknown) => err instanceof ConfigError && /at most 100 bytes/.test(err.message),
    );
    assert.deepEqual(
      (await loadYamlSource(`${dir}/big.yaml`, { bytes: 500 })).value,
      { a: 1 },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
