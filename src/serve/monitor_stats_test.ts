import assert from "node:assert/strict";
import { snakeCase, snakeCaseKeys } from "./monitor_stats.ts";

Deno.test("snakeCase: camelCase words are split with underscores; snake_case stays", () => {
  assert.equal(snakeCase("spoolPending"), "spool_pending");
  assert.equal(snakeCase("spoolReplayed"), "spool_replayed");
  assert.equal(snakeCase("lease_ttl_ms"), "lease_ttl_ms");
  assert.equal(snakeCase("queued"), "queued");
});

Deno.test("snakeCaseKeys: renames one level of keys and keeps the values", () => {
  const dropped = { queue_full: 2 };
  const out = snakeCaseKeys({ spoolTorn: 1, dropped });
  assert.deepEqual(Object.keys(out), ["spool_torn", "dropped"]);
  assert.equal(out.dropped, dropped);
});
