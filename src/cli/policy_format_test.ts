import assert from "node:assert/strict";
import type { ReplayFiring } from "../traces/replay.ts";
import { firingLine, fmtNum, progressText, rel } from "./policy_format.ts";

Deno.test("policy format: numbers to 4 significant digits, integers as they are", () => {
  assert.equal(fmtNum(3), "3");
  assert.equal(fmtNum(-12), "-12");
  assert.equal(fmtNum(0.123456), "0.1235");
  assert.equal(fmtNum(2.5), "2.500");
  assert.equal(fmtNum(12345.678), "1.235e+4");
  assert.equal(fmtNum(0.0001234), "1.234e-4");
  assert.equal(fmtNum(NaN), "NaN");
  assert.equal(fmtNum(-Infinity), "-Infinity");
});

Deno.test("policy format: progress is whole percent of the file, capped at 100", () => {
  assert.equal(
    progressText({ records: 1234, bytesRead: 5.4e6, fileSize: 12e6 }),
    "1234 records, 45% of 12.0 MB",
  );
  // a gzip file's decompressed reads can pass its size on disk
  assert.equal(
    progressText({ records: 9, bytesRead: 30, fileSize: 20 }),
    "9 records, 100% of 0.0 MB",
  );
  assert.equal(progressText({ records: 0, bytesRead: 0, fileSize: 0 }), "0 records, 0% of 0.0 MB");
});

Deno.test("policy format: paths inside the working folder are relative, others as given", () => {
  assert.equal(rel(`${Deno.cwd()}/policies/demo.yaml`), "policies/demo.yaml");
  assert.equal(rel("/elsewhere/x.trace"), "/elsewhere/x.trace");
});

Deno.test("policy format: a firing's line names the rule, tokens, signal and deciding condition", () => {
  const firing = (conditions: string[], signal: Record<string, unknown>) =>
    ({
      rule: {
        def: { id: "deception.high", severity: "high" },
        conditions: conditions.map((name) => ({ name })),
      },
      completedBy: conditions.length - 1,
      requestId: "req-7",
      positions: [3, 4],
      signal,
      value: 0.87654,
    }) as unknown as ReplayFiring;
  assert.equal(
    firingLine(firing(["only"], { kind: "latent", encoder: "res6", index: 1234, label: "lying" })),
    '[HIGH] deception.high request req-7 tokens 3,4 latent res6/1234 "lying" value 0.8765',
  );
  assert.equal(
    firingLine(firing(["first", "second"], { kind: "probe", encoder: "p", index: 0 })),
    "[HIGH] deception.high request req-7 tokens 3,4 probe p/0 value 0.8765 (condition second)",
  );
});
