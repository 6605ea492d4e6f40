/**
 * NATS subject syntax as the in-process bus ({@linkcode ./memory_bus.ts})
 * checks it: subjects are dot-separated non-empty tokens without whitespace;
 * a filter may also use `*` (one token) and a final `>` (one or more
 * tokens), and matches a subject the way nats-server does.
 *
 * @module
 */

/** A subject or subscription filter is not valid NATS syntax. */
export class SubjectError extends TypeError {
  constructor(readonly subject: string, expected: string) {
    super(`subject ${JSON.stringify(subject)}: expected ${expected}`);
    this.name = "SubjectError";
  }
}

/**
 * The tokens of a subject (`wildcards: false`, what is published) or of a
 * subscription filter (`wildcards: true`, where `*` and a final `>` are
 * wildcards; a token such as `b*` is a literal). Throws
 * {@linkcode SubjectError} on an empty subject or token, whitespace, a
 * wildcard in a subject, or a `>` before the last token.
 *
 * @example
 * ```ts
 * splitSubject("latentwatch.tap.v1", false); // ["latentwatch", "tap", "v1"]
 * splitSubject("a.*.>", true); // ["a", "*", ">"]
 * ```
 */
export function splitSubject(subject: string, wildcards: boolean): string[] {
  const expected = wildcards
    ? "dot-separated non-empty tokens, no whitespace, '>' only as the last token"
    : "dot-separated non-empty tokens, no whitespace, no wildcards";
  if (typeof subject !== "string" || subject.length === 0 || /\s/.test(subject)) {
    throw new SubjectError(String(subject), expected);
  }
  const tokens = subject.split(".");
  tokens.forEach((t, i) => {
    if (t.length === 0) throw new SubjectError(subject, expected);
    if (!wildcards && (t === "*" || t === ">")) throw new SubjectError(subject, expected);
    if (t === ">" && i !== tokens.length - 1) throw new SubjectError(subject, expected);
  });
  return tokens;
}

/**
 * NATS subject matching on split tokens (see {@linkcode splitSubject}): `*`
 * matches one token, a final `>` one or more.
 *
 * @example
 * ```ts
 * subjectMatches(["a", "*"], ["a", "b"]); // true
 * subjectMatches(["a", ">"], ["a"]); // false: '>' needs at least one token
 * ```
 */
export function subjectMatches(filter: readonly string[], subject: readonly string[]): boolean {
  for (let i = 0; i < filter.length; i++) {
    const f = filter[i];
    if (f === ">") return subject.length > i;
    if (i >= subject.length) return false;
    if (f !== "*" && f !== subject[i]) return false;
  }
  return filter.length === subject.length;
}
