import assert from "node:assert/strict";
import { splitSubject, SubjectError, subjectMatches } from "./memory_subjects.ts";

Deno.test("memory subjects: a subject splits into its tokens; wildcards only in filters", () => {
  assert.deepEqual(splitSubject("latentwatch.tap.v1", false), ["latentwatch", "tap", "v1"]);
  assert.deepEqual(splitSubject("a", false), ["a"]);
  assert.deepEqual(splitSubject("a.*.>", true), ["a", "*", ">"]);
  assert.deepEqual(splitSubject(">", true), [">"]);
  // a wildcard character inside a token is a literal
  assert.deepEqual(splitSubject("a.b*.c>", false), ["a", "b*", "c>"]);
});

Deno.test("memory subjects: bad subjects and filters throw SubjectError saying what was expected", () => {
  for (const bad of ["", "a..b", ".a", "a.", "a b", "a\tb", "a.*", "a.>", "*", ">"]) {
    assert.throws(() => splitSubject(bad, false), SubjectError, bad);
  }
  for (const bad of ["", "a..b", "a.", "a b", "a.>.b", ">.a"]) {
    assert.throws(() => splitSubject(bad, true), SubjectError, bad);
  }
  assert.throws(
    () => splitSubject("a.*", false),
    (err: unknown) => {
      assert.ok(err instanceof SubjectError);
      assert.ok(err instanceof TypeError);
      assert.equal(err.name, "SubjectError");
      assert.equal(err.subject, "a.*");
      assert.equal(
        err.message,
        'subject "a.*": expected dot-separated non-empty tokens, no whitespace, no wildcards',
      );
      return true;
    },
  );
  assert.throws(
    () => splitSubject("a.>.b", true),
    {
      message:
        "subject \"a.>.b\": expected dot-separated non-empty tokens, no whitespace, '>' only as the last token",
    },
  );
});

Deno.test("memory subjects: '*' matches one token, a final '>' one or more, as on NATS", () => {
  const cases: [string, string, boolean][] = [
    ["a.b", "a.b", true],
    ["a.b", "a.c", false],
    ["a.b", "a.b.c", false],
    ["a.b.c", "a.b", false],
    ["a.*", "a.b", true],
    ["a.*", "a", false],
    ["a.*", "a.b.c", false],
    ["*.b", "a.b", true],
    ["a.*.c", "a.x.c", true],
    ["a.*.c", "a.x.d", false],
    ["a.>", "a", false],
    ["a.>", "a.b", true],
    ["a.>", "a.b.c.d", true],
    [">", "a", true],
    [">", "a.b.c", true],
    ["*.>", "a", false],
    ["*.>", "a.b", true],
    ["a.b*", "a.bx", false],
    ["a.b*", "a.b*", true],
  ];
  for (const [filter, subject, want] of cases) {
    assert.equal(
      subjectMatches(filter.split("."), subject.split(".")),
      want,
      `${filter} ~ ${subject}`,
    );
  }
});
