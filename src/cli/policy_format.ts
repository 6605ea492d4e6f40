/**
 * How the offline policy tools (`policy test`, `policy calibrate`,
 * `replay`, `explore`) print: a firing's line (`policy test --verbose`),
 * numbers, progress through a trace, and paths relative to the working
 * folder.
 *
 * @module
 */
import { relative } from "node:path";
import type { ReplayFiring } from "../traces/replay.ts";

/**
 * `p` relative to the working folder, or as given when outside it.
 *
 * @example
 * ```ts
 * rel(`${Deno.cwd()}/policies/demo.yaml`); // "policies/demo.yaml"
 * ```
 */
export const rel = (p: string) => {
  const r = relative(Deno.cwd(), p);
  return r.startsWith("..") ? p : r;
};

/**
 * One line for a firing, as `policy test --verbose` lists it: severity,
 * rule, request, token positions, the signal and its value, and with
 * several conditions the one that completed the rule.
 *
 * @example
 * ```ts
 * import type { ReplayFiring } from "../traces/replay.ts";
 * declare const firing: ReplayFiring;
 * console.log(firingLine(firing)); // [HIGH] deception.high request req-7 tokens 3,4 latent res6/1234 "lying" value 0.8765
 * ```
 */
export function firingLine(f: ReplayFiring): string {
  const def = f.rule.def;
  const pos = f.positions.join(",");
  const sig = f.signal.kind === "probe"
    ? `probe ${f.signal.encoder}/${f.signal.index}`
    : `latent ${f.signal.encoder}/${f.signal.index}${f.signal.label ? ` "${f.signal.label}"` : ""}`;
  // with several conditions, which one completed the rule
  const by = f.rule.conditions.length > 1
    ? ` (condition ${f.rule.conditions[f.completedBy].name})`
    : "";
  return `[${def.severity.toUpperCase()}] ${def.id} request ${f.requestId} tokens ${pos} ${sig} value ${
    fmtNum(f.value)
  }${by}`;
}

/**
 * A number as the policy tools print it: integers as is, others to 4
 * significant digits (exponent form under 0.001 and from 1000).
 *
 * @example
 * ```ts
 * fmtNum(0.123456); // "0.1235"
 * ```
 */
export function fmtNum(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  return Number.isInteger(v)
    ? String(v)
    : Math.abs(v) >= 1000 || Math.abs(v) < 0.001
    ? v.toExponential(3)
    : v.toPrecision(4);
}

/**
 * Progress through a trace file, for a status line.
 *
 * @example
 * ```ts
 * progressText({ records: 1234, bytesRead: 5.4e6, fileSize: 12e6 }); // "1234 records, 45% of 12.0 MB"
 * ```
 */
export function progressText(p: { records: number; bytesRead: number; fileSize: number }): string {
  const pct = p.fileSize > 0 ? Math.min(100, Math.floor((p.bytesRead / p.fileSize) * 100)) : 0;
  return `${p.records} records, ${pct}% of ${(p.fileSize / 1e6).toFixed(1)} MB`;
}
