/**
 * The WebGPU encoder against the plain-TypeScript f64 reference encoder, on
 * whatever adapter Deno's WebGPU finds: a GPU where there is one, Mesa's
 * lavapipe or llvmpipe (real Vulkan and GL implementations on the CPU) elsewhere;
 * `deno task test` installs `mesa-vulkan-drivers` when root and no adapter is found.
 *
 * Each case (`testdata/webgpu_cases.ts`) runs in its own process: a software
 * driver has been seen to abort the process as it exits, about 1 run in 100.
 * A case passes when its process reports it passed; an abort after that is
 * printed, not counted, since the driver's teardown is not latentwatch's code.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { CASES } from "./testdata/webgpu_cases.ts";

const CASES_FILE = fileURLToPath(new URL("./testdata/webgpu_cases.ts", import.meta.url));

async function probeAdapter(): Promise<string | null> {
  const probe =
    "const a = await navigator.gpu?.requestAdapter(); console.log(a ? a.info.description : '')";
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", probe],
    stdout: "piped",
    stderr: "null",
  }).output();
  const description = new TextDecoder().decode(out.stdout).trim();
  return out.success && description !== "" ? description : null;
}

const adapter = await probeAdapter();
if (adapter === null) {
  const msg = "webgpu_encoder_test: Deno finds no WebGPU adapter; install mesa-vulkan-drivers " +
    "(lavapipe) to run these tests without a GPU";
  if (Deno.env.get("CI")) throw new Error(msg);
  console.error(`SKIPPED ${msg}`);
}

for (const name of CASES.keys()) {
  Deno.test({
    name: `webgpu encoder: ${name}`,
    ignore: adapter === null,
    async fn() {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", CASES_FILE, name],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const dec = new TextDecoder();
      const stdout = dec.decode(out.stdout);
      const stderr = dec.decode(out.stderr).split("\n").filter((l) => !/XDG_RUNTIME_DIR/.test(l))
        .join("\n");
      const passed = stdout.includes(`case ${name}: ok`);
      assert.ok(passed, `case failed on ${adapter} (exit ${out.code}):\n${stdout}\n${stderr}`);
      if (!out.success) {
        console.error(`note: the case passed, then its process exited ${out.code} (${out.signal})`);
      }
    },
  });
}
