/**
 * The WebGPU encoder's pipelines (`webgpu_pipelines.ts`): the tiling by batch
 * size here, the pipelines themselves compiled and run on the adapter Deno
 * finds, each case in its own process (`testdata/webgpu_pipelines_cases.ts`;
 * `testdata/webgpu_harness.ts` says why). One case sees a real device through
 * a test double of its limits: WebGPU allows no device as small as it needs.
 */
import assert from "node:assert/strict";
import { CASES } from "./testdata/webgpu_pipelines_cases.ts";
import { webgpuCaseTests } from "./testdata/webgpu_harness.ts";
import { tileForRows } from "./webgpu_pipelines.ts";

Deno.test("webgpu pipelines: tileForRows picks by batch size at 256 and 1024 rows", () => {
  const picks = [1, 64, 256, 257, 1024, 1025, 65536].map(tileForRows);
  assert.deepEqual(picks, ["small", "small", "small", "medium", "medium", "large", "large"]);
});

await webgpuCaseTests(
  "webgpu pipelines",
  new URL("./testdata/webgpu_pipelines_cases.ts", import.meta.url),
  CASES.keys(),
);
