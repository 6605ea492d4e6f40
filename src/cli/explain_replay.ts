/**
 * The condition table of a failing recorded-trace test: the trace is read
 * and encoded again (no evaluation), the values of the rule's signals kept
 * for the one request the failure is about, and drawn per token by
 * `./condition_table.ts`. Only run when a test fails.
 *
 * @module
 */
import type { Frame } from "../core/frame/format.ts";
import { familyValue } from "../core/family.ts";
import { rowOf } from "../core/latent_rows.ts";
import type { CompiledTest } from "../core/policy/compiled.ts";
import { latentValue } from "../traces/calibrate.ts";
import { encodeTrace, type OfflineMonitor } from "../traces/offline.ts";
import { type ReplayFiring } from "../traces/replay.ts";
import { TraceReader } from "../traces/reader.ts";
import { conditionTable } from "./condition_table.ts";

/** What {@linkcode explainReplay} needs. */
export interface ExplainReplayInput {
  monitor: OfflineMonitor;
  /** Trace file. */
  trace: string;
  /** Rule id. */
  rule: string;
  requestId: string;
  /** The replay's firings (where the rule fired on the request). */
  firings: readonly ReplayFiring[];
  /** The test's request override, as the replay applied it. */
  rewriteFrame?: (f: Frame) => Frame;
}

/**
 * The condition table of `rule` on `requestId` of `trace`, its lines
 * (a note when the rule is not enabled or the request is not in the trace).
 *
 * @example
 * ```ts
 * import type { OfflineMonitor } from "../traces/offline.ts";
 * import { explainReplay } from "./explain_replay.ts";
 * declare const monitor: OfflineMonitor;
 * const lines = await explainReplay({
 *   monitor, trace: "demo.trace.gz", rule: "self-harm", requestId: "req-1", firings: [],
 * });
 * ```
 */
export async function explainReplay(input: ExplainReplayInput): Promise<string[]> {
  const rule = input.monitor.set.rules.find((r) => r.id === input.rule);
  if (!rule) return [`rule '${input.rule}' is not an enabled rule of the monitor`];
  /** Each test's signal value per absolute position. */
  const raw = new Map<CompiledTest, number[]>(rule.tests.map((t) => [t, []]));
  const text: string[] = [];
  const phases = new Set<string>();
  let length = 0;
  const reader = await TraceReader.open(input.trace);
  for await (const batch of encodeTrace(input.monitor, reader)) {
    for (const { frame: recorded, firstRow } of batch.frames) {
      const frame = input.rewriteFrame ? input.rewriteFrame(recorded) : recorded;
      if (frame.requestId !== input.requestId) continue;
      phases.add(frame.phase ?? "none");
      length = Math.max(length, frame.position + frame.tokens);
      for (let i = 0; i < frame.tokens; i++) {
        const pos = frame.position + i;
        if (frame.tokenText) text[pos] = frame.tokenText[i];
        for (const t of rule.tests) {
          const row = rowOf(batch.latents.get(t.encoder), firstRow + i);
          raw.get(t)![pos] = t.family && row
            ? familyValue(row, t.family)
            : latentValue(row, t.index);
        }
      }
    }
  }
  if (length === 0) return [`request '${input.requestId}' is not in the trace`];
  const lines = conditionTable({
    rule,
    length,
    rawOf: (t) => Array.from({ length }, (_, p) => raw.get(t)![p] ?? 0),
    text: (pos) => text[pos],
    firedAt: input.firings
      .filter((f) => f.rule.id === input.rule && f.requestId === input.requestId)
      .flatMap((f) => f.positions),
  });
  if (rule.scope !== "both" && phases.size > 1) {
    lines.push(
      `(the rule's scope is '${rule.scope}': the engine pools only the tokens in it; ` +
        `the values above pool every token of the request)`,
    );
  }
  return lines;
}
