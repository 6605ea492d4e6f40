/**
 * How a WebGPU batch's latents come back (`webgpu_readback.ts`): real buffers
 * holding tiny hand-made batches, copied back, mapped, and compacted again by
 * the real compaction kernel on the adapter Deno finds, each case in its own
 * process (`testdata/webgpu_readback_cases.ts`; `testdata/webgpu_harness.ts`
 * says why).
 */
import { CASES } from "./testdata/webgpu_readback_cases.ts";
import { webgpuCaseTests } from "./testdata/webgpu_harness.ts";

await webgpuCaseTests(
  "webgpu readback",
  new URL("./testdata/webgpu_readback_cases.ts", import.meta.url),
  CASES.keys(),
);
