/**
 * Reading and verifying systemd unit files for the deployment tests:
 * {@linkcode parseUnit} (sections of `Key=value` lines, repeated keys kept in
 * order) and {@linkcode verifyUnit} (`systemd-analyze verify` in a temporary
 * root that holds the unit, the system's own units and the programs its
 * `Exec*=` lines name, so that only the unit's own problems are reported).
 *
 * @module
 */
import { cp } from "node:fs/promises";

/** A unit file: section name → key → values in file order. */
export type Unit = Record<string, Record<string, string[]>>;

/**
 * Parse a unit file (comments, blank lines and `\` line continuations as
 * systemd reads them).
 *
 * @example
 * ```ts
 * parseUnit("[Service]\nExecStart=/bin/true\n").Service.ExecStart; // ["/bin/true"]
 * ```
 */
export function parseUnit(text: string): Unit {
  const unit: Unit = {};
  let section: Record<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      section = unit[header[1]] ??= {};
      continue;
    }
    const eq = line.indexOf("=");
    if (!section || eq < 0) throw new Error(`line ${i + 1}: not a key=value in a section: ${line}`);
    (section[line.slice(0, eq).trim()] ??= []).push(line.slice(eq + 1).trim());
  }
  return unit;
}

/** The one value of `key` in `section` (throws when missing or repeated). */
export function one(unit: Unit, section: string, key: string): string {
  const v = unit[section]?.[key];
  if (!v || v.length !== 1) throw new Error(`[${section}] ${key}: expected one value, found ${v}`);
  return v[0];
}

/** The program an `Exec*=` value runs (its prefixes `-`, `@`, `:`, `+`, `!` removed). */
export function execProgram(value: string): string {
  return value.replace(/^[-@:+!]+/, "").split(/\s+/)[0];
}

/** Where `systemd-analyze` is, or null. */
export async function findSystemdAnalyze(): Promise<string | null> {
  for (const p of ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]) {
    if (await Deno.stat(p).then((s) => s.isFile, () => false)) return p;
  }
  return null;
}

/**
 * `systemd-analyze verify` on a unit's text, installed as
 * `/etc/systemd/system/<name>` in a temporary root with the system's units
 * and an executable stand-in for each program its `Exec*=` lines name.
 * Returns what it printed (empty for a clean unit) and its exit code.
 */
export async function verifyUnit(
  analyze: string,
  name: string,
  text: string,
): Promise<{ code: number; output: string }> {
  const root = await Deno.makeTempDir({ prefix: "lw-unit-" });
  try {
    await Deno.mkdir(`${root}/etc/systemd/system`, { recursive: true });
    await Deno.writeTextFile(`${root}/etc/systemd/system/${name}`, text);
    await cp("/usr/lib/systemd/system", `${root}/usr/lib/systemd/system`, { recursive: true });
    const unit = parseUnit(text);
    for (const [key, values] of Object.entries(unit.Service ?? {})) {
      if (!key.startsWith("Exec")) continue;
      for (const v of values) {
        const prog = execProgram(v);
        if (!prog.startsWith("/")) continue;
        await Deno.mkdir(`${root}${prog.slice(0, prog.lastIndexOf("/"))}`, { recursive: true });
        await Deno.writeTextFile(`${root}${prog}`, "#!/bin/sh\n", { mode: 0o755 });
      }
    }
    const out = await new Deno.Command(analyze, {
      args: ["verify", "--man=no", `--root=${root}`, `/etc/systemd/system/${name}`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    const output = (dec.decode(out.stdout) + dec.decode(out.stderr)).replaceAll(root, "");
    return { code: out.code, output: output.trim() };
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}
