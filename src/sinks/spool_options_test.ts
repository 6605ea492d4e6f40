import assert from "node:assert/strict";
import { resolveSpoolOptions, type SpoolFsync } from "./spool_options.ts";
import { SpoolError } from "./spool_format.ts";

Deno.test("spool options: defaults fill in what is not set", () => {
  const o = resolveSpoolOptions("/tmp/spool");
  assert.equal(o.maxBytes, 256 * 1024 * 1024);
  assert.equal(o.maxRecords, 100_000);
  assert.equal(o.segmentBytes, 4 * 1024 * 1024);
  assert.equal(o.fsync, "never");
  assert.equal(typeof o.syncData, "function");
  const syncData = (_file: Deno.FsFile) => {};
  assert.equal(resolveSpoolOptions("/tmp/spool", { syncData }).syncData, syncData);
});

Deno.test("spool options: a segment is at most a quarter of maxBytes and at least 1 KiB", () => {
  assert.equal(resolveSpoolOptions("/d", { maxBytes: 64 * 1024 }).segmentBytes, 16 * 1024);
  assert.equal(resolveSpoolOptions("/d", { segmentBytes: 10 }).segmentBytes, 1024);
  assert.equal(resolveSpoolOptions("/d", { maxBytes: 1024 }).segmentBytes, 1024);
  assert.equal(resolveSpoolOptions("/d", { segmentBytes: 8192 }).segmentBytes, 8192);
});

Deno.test("spool options: a setting out of range is refused with what was expected", () => {
  const refused = [
    [
      { fsync: "sometimes" as SpoolFsync },
      "expected fsync never, batch or always, found sometimes",
    ],
    [{ maxBytes: 1000 }, "expected maxBytes ≥ 1024, found 1000"],
    [{ maxBytes: NaN }, "expected maxBytes ≥ 1024, found NaN"],
    [{ maxRecords: 0 }, "expected maxRecords ≥ 1, found 0"],
  ] as const;
  for (const [opts, message] of refused) {
    assert.throws(
      () => resolveSpoolOptions("/d", opts),
      (err) => err instanceof SpoolError && err.message === `spool /d: ${message}`,
    );
  }
});
