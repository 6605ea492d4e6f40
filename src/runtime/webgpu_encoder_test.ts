/**
 * The WebGPU encoder against the plain-TypeScript f64 reference encoder, on
 * whatever adapter Deno's WebGPU finds: a GPU where there is one, Mesa's
 * lavapipe or llvmpipe (real Vulkan and GL implementations on the CPU) elsewhere;
 * `deno task test` installs `mesa-vulkan-drivers` when root and no adapter is found.
 *
 * Each case (`testdata/webgpu_cases.ts`) runs in its own process
 * (`testdata/webgpu_harness.ts`): a software driver has been seen to abort the
 * process as it exits, about 1 run in 100.
 */
import { CASES } from "./testdata/webgpu_cases.ts";
import { webgpuCaseTests } from "./testdata/webgpu_harness.ts";

await webgpuCaseTests(
  "webgpu encoder",
  new URL("./testdata/webgpu_cases.ts", import.meta.url),
  CASES.keys(),
);
