import assert from "node:assert/strict";
import { sparse } from "../core/policy/test_helpers.ts";
import type { SparseLatents } from "../core/sae.ts";
import type { StoredRequest, TraceStore } from "./trace_source.ts";
import { signalValues } from "./views.ts";

Deno.test("workbench signal values: a family test shows the family's value per token", () => {
  const rows: SparseLatents[] = [sparse([[1, 4]]), sparse([[0, 1], [3, 4]]), sparse([[2, 5]])];
  // a stand-in store: token refs are row numbers
  const store = { row: (ref: number | undefined) => ref === undefined ? undefined : rows[ref] };
  const r = { id: "r", tokens: ["a", "b", "c"], refs: [0, 1, 2] } as unknown as StoredRequest;
  const family = { members: [0, 1, 3], weights: [1, 0.5, 0.25], combine: "sum" as const };
  const s = store as unknown as TraceStore;
  // by hand: 4·0.5 = 2; 1·1 + 4·0.25 = 2; latent 2 is no member: 0
  assert.deepStrictEqual(signalValues(s, r, "res", 0, family), [2, 2, 0]);
  assert.deepStrictEqual(signalValues(s, r, "res", 0), [0, 1, 0]);
});
