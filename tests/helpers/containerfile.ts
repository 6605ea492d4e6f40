/**
 * A Containerfile (Dockerfile) as a list of instructions, for the deployment
 * tests: comments and blank lines dropped, `\` continuations joined, the
 * JSON (exec) form of `RUN`/`CMD`/`ENTRYPOINT`/`HEALTHCHECK CMD` decoded to
 * an argv. Enough of the format to check what deploy/container/Containerfile
 * runs; not a general parser (no heredocs, no `escape=` directive).
 *
 * @module
 */

/** One instruction: its keyword (upper case), the text after it, the stage it is in. */
export interface Instruction {
  keyword: string;
  args: string;
  /** 0 for the first `FROM`'s stage, 1 for the second, ... */
  stage: number;
  line: number;
}

/**
 * Split a Containerfile into instructions.
 *
 * @example
 * ```ts
 * const [from, run] = parseContainerfile("FROM x AS b\nRUN a \\\n  b\n");
 * run.args; // "a b"
 * ```
 */
export function parseContainerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending: { text: string; line: number } | null = null;
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line.startsWith("#") || (line === "" && pending === null)) continue;
    const cont = line.endsWith("\\");
    const piece = cont ? line.slice(0, -1).trim() : line;
    pending = pending ? { text: `${pending.text} ${piece}`.trim(), line: pending.line } : {
      text: piece,
      line: i + 1,
    };
    if (cont) continue;
    const m = /^(\S+)\s*(.*)$/.exec(pending.text);
    if (!m) throw new Error(`line ${pending.line}: no instruction`);
    const keyword = m[1].toUpperCase();
    if (keyword === "FROM") stage++;
    out.push({ keyword, args: m[2], stage, line: pending.line });
    pending = null;
  }
  if (pending) throw new Error(`line ${pending.line}: a continuation runs past the end`);
  return out;
}

/**
 * The argv of an exec-form (`["a", "b"]`) argument, or a shell form split on
 * white space (no quoting: the tests only read simple commands that way).
 *
 * @example
 * ```ts
 * execArgv('["deno", "run"]'); // ["deno", "run"]
 * ```
 */
export function execArgv(args: string): string[] {
  if (args.startsWith("[")) {
    const v = JSON.parse(args);
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      throw new Error(`not a JSON array of strings: ${args}`);
    }
    return v;
  }
  return args.split(/\s+/).filter((s) => s !== "");
}

/** The instructions with `keyword` in the last stage (the image that runs). */
export function finalStage(all: Instruction[], keyword: string): Instruction[] {
  const last = Math.max(...all.map((i) => i.stage));
  return all.filter((i) => i.stage === last && i.keyword === keyword);
}

/** `HEALTHCHECK [--opt=v ...] CMD <command>`: its options and command argv. */
export function healthcheck(ins: Instruction): { options: Record<string, string>; argv: string[] } {
  const m = /^((?:--[a-z-]+=\S+\s+)*)CMD\s+(.*)$/.exec(ins.args);
  if (!m) throw new Error(`line ${ins.line}: not HEALTHCHECK [options] CMD ...`);
  const options: Record<string, string> = {};
  for (const o of m[1].trim().split(/\s+/).filter((s) => s !== "")) {
    const [k, v] = o.slice(2).split("=");
    options[k] = v;
  }
  return { options, argv: execArgv(m[2]) };
}

/** `ENV a=1 b=2` (and `ENV a 1`) of the last stage, merged. */
export function finalEnv(all: Instruction[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ins of finalStage(all, "ENV")) {
    if (!ins.args.includes("=")) {
      const [k, ...v] = ins.args.split(/\s+/);
      env[k] = v.join(" ");
      continue;
    }
    for (const pair of ins.args.split(/\s+/)) {
      const eq = pair.indexOf("=");
      env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return env;
}
