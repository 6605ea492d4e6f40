/**
 * Whether a password can be handed to `nats-server` through a `$NAME`
 * reference in its configuration file (deploy/nats/accounts.conf does this).
 *
 * nats-server parses the environment variable's value as a configuration
 * *value*, not as a string: `12345` becomes a number, `true`/`yes`/`off` a
 * boolean, `10MB` a size, and a value with a space, a quote or a leading
 * digit followed by letters (`123e4567-…`, a UUID) does not parse at all. The
 * server then refuses to start ("interface conversion: interface {} is int64,
 * not string", "variable reference … could not be parsed"), or keeps only
 * part of the value (`;`, `,` and `}` end it). tests/deploy_test.ts
 * checks every example here against the real nats-server.
 *
 * The rule below is deliberately narrow: a letter first, then letters,
 * digits, `_` and `-`, and not a boolean word. `lw` followed by
 * `openssl rand -hex 24` always qualifies.
 *
 * @module
 */

/** Words nats-server reads as booleans, whatever their case. */
const BOOLEAN_WORDS = new Set(["true", "false", "yes", "no", "on", "off"]);

/**
 * Why nats-server would misread `password` when it comes from the
 * environment through `$NAME` in its configuration file, or `undefined` when
 * it is safe.
 *
 * @example
 * ```ts
 * natsConfigPasswordProblem("lw3f9ac2"); // undefined
 * natsConfigPasswordProblem("12345"); // "nats-server reads it as a number …"
 * ```
 */
export function natsConfigPasswordProblem(password: string): string | undefined {
  if (password === "") return "it is empty";
  if (BOOLEAN_WORDS.has(password.toLowerCase())) {
    return "nats-server reads it as a boolean, not a string";
  }
  if (/^[0-9.+-]/.test(password)) {
    return "it starts with a digit or sign: nats-server reads it as a number or size, or cannot parse it";
  }
  const bad = /[^A-Za-z0-9_-]/.exec(password);
  if (bad) {
    const shown = bad[0] === " " ? "a space" : JSON.stringify(bad[0]);
    return `it contains ${shown}: nats-server may stop reading the value there or fail to parse it`;
  }
  return undefined;
}
