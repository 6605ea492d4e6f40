/**
 * Test double for what a component logs and counts: a {@linkcode Logger}
 * whose JSON lines land in an array, each as `level event {fields}` (no
 * time), and a fresh {@linkcode Telemetry}, so a test can compare what was
 * logged, in order, and counted with what it expects.
 *
 * @module
 */
import { Logger } from "../../src/shared/log.ts";
import { Telemetry } from "../../src/shared/telemetry.ts";

/** A logger writing into `lines`, and telemetry of its own. */
export interface Observed {
  log: Logger;
  telemetry: Telemetry;
  /** What was logged, in order: `level event {fields}`. */
  lines: string[];
}

/**
 * A log and telemetry to hand a component (`log`, `telemetry` options).
 *
 * @example
 * ```ts
 * import { observed } from "./observed.ts";
 * const o = observed();
 * o.log.warn("partition.released", { partition: 3 });
 * o.lines; // ['warn partition.released {"partition":3}']
 * ```
 */
export function observed(): Observed {
  const lines: string[] = [];
  const log = new Logger({
    format: "json",
    write: (line) => {
      const { level, event, fields } = JSON.parse(line);
      lines.push(`${level} ${event} ${JSON.stringify(fields)}`);
    },
  });
  return { log, telemetry: new Telemetry(), lines };
}
