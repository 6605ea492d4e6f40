/** `replay`'s summary line: firings by default and with --json, alerts with --alerts. */
import assert from "node:assert/strict";
import type { ReplayStats } from "../traces/replay.ts";
import { replaySummary } from "./replay.ts";

const STATS: ReplayStats = {
  records: 10,
  frames: 8,
  tokens: 20,
  requests: 2,
  rejected: 0,
  lost: 1,
  repeated: 1,
  tooLarge: 0,
  firings: 3,
  alerts: 2, // one firing is steer-only
  droppedWhileRecording: 0,
  complete: true,
};

Deno.test("replay summary: counts firings (steer-only included) by default and with --json", () => {
  assert.equal(
    replaySummary(STATS, { alerts: false }),
    "replay: 10 records, 8 frames, 20 tokens, 2 requests, 3 alert(s), 1 frame(s) missing by Lw-Seq, " +
      "1 frame(s) with a repeated Lw-Seq dropped",
  );
});

Deno.test("replay summary: with --alerts counts the alerts it printed, not steer-only firings", () => {
  assert.match(replaySummary(STATS, { alerts: true }), /, 2 requests, 2 alert\(s\), /);
});

Deno.test("replay summary: frames over max_queue_tokens and an unfinished trace are told", () => {
  const s = replaySummary({ ...STATS, tooLarge: 2, complete: false }, { alerts: false });
  assert.match(s, /, 2 frame\(s\) over max_queue_tokens dropped \(frame_too_large\);/);
  assert.match(s, /; no end record/);
});
