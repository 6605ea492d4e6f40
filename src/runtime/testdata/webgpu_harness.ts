/**
 * How the WebGPU tests run on whatever adapter Deno's WebGPU finds (a GPU
 * where there is one, Mesa's lavapipe or llvmpipe on the CPU elsewhere), each
 * case in its own Deno process: a software driver has been seen to abort the
 * process as it exits, about 1 run in 100, which must not take the whole test
 * run down with it. A case passes when its process reports it passed; an
 * abort after that is printed, not counted, since the driver's teardown is
 * not latentwatch's code.
 *
 * A `*_test.ts` file registers its cases with {@linkcode webgpuCaseTests}; the
 * cases file ends with {@linkcode runCaseFromArgs}, so that
 * `deno run -A <cases file> <case>` runs one case and prints `case <case>: ok`.
 * With no adapter the cases are skipped, loudly (an error where `CI` is set).
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { USAGE } from "../webgpu_device.ts";
import { gpuBuffer } from "../webgpu_buffers.ts";

/** The cases of one cases file, by name. */
export type WebGpuCases = Map<string, () => Promise<void>>;

/**
 * Longest a case's process may run. With a cold shader cache (a fresh
 * machine, CI) llvmpipe compiles every tiling's GEMM first: the encoder's
 * "every tiling" case took 3 min 17 s in a clean-clone CI run, 0.4 s warm.
 */
const CASE_TIMEOUT_MS = 600_000;

let probed: Promise<string | null> | undefined;

/** The adapter's description, or null where Deno finds none; asked once per process, in a child. */
export function probeAdapter(): Promise<string | null> {
  probed ??= (async () => {
    const probe =
      "const a = await navigator.gpu?.requestAdapter(); console.log(a ? a.info.description : '')";
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", probe],
      stdout: "piped",
      stderr: "null",
    }).output();
    const description = new TextDecoder().decode(out.stdout).trim();
    return out.success && description !== "" ? description : null;
  })();
  return probed;
}

/**
 * Register one `Deno.test` per case of `casesFile`, named `<prefix>: <case>`,
 * each running its case in its own process; ignored, with a line saying so
 * on stderr, where Deno finds no adapter (a thrown error where `CI` is set).
 */
export async function webgpuCaseTests(
  prefix: string,
  casesFile: URL,
  names: Iterable<string>,
): Promise<void> {
  const adapter = await probeAdapter();
  if (adapter === null) {
    const msg = `${prefix}: Deno finds no WebGPU adapter; install mesa-vulkan-drivers ` +
      "(lavapipe) to run these tests without a GPU";
    if (Deno.env.get("CI")) throw new Error(msg);
    console.error(`SKIPPED ${msg}`);
  }
  const file = fileURLToPath(casesFile);
  for (const name of names) {
    Deno.test({
      name: `${prefix}: ${name}`,
      ignore: adapter === null,
      async fn() {
        const abort = new AbortController();
        const timer = setTimeout(() => abort.abort(), CASE_TIMEOUT_MS);
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", file, name],
          stdout: "piped",
          stderr: "piped",
          signal: abort.signal,
        }).output().finally(() => clearTimeout(timer));
        const dec = new TextDecoder();
        const stdout = dec.decode(out.stdout);
        const stderr = dec.decode(out.stderr).split("\n").filter((l) => !/XDG_RUNTIME_DIR/.test(l))
          .join("\n");
        const passed = stdout.includes(`case ${name}: ok`);
        assert.ok(passed, `case failed on ${adapter} (exit ${out.code}):\n${stdout}\n${stderr}`);
        if (!out.success) {
          console.error(
            `note: the case passed, then its process exited ${out.code} (${out.signal})`,
          );
        }
      },
    });
  }
}

/** The main of a cases file: run the case named by the first argument, print `case <name>: ok`. */
export async function runCaseFromArgs(cases: WebGpuCases): Promise<void> {
  const name = Deno.args[0];
  const run = cases.get(name);
  if (!run) {
    console.error(`unknown case '${name}'; cases: ${[...cases.keys()].join(", ")}`);
    Deno.exit(2);
  }
  await run();
  console.log(`case ${name}: ok`);
  Deno.exit(0);
}

/** A copy of `src`'s first `bytes` (a multiple of 4), through a mappable buffer. */
export async function readBack(
  device: GPUDevice,
  src: GPUBuffer,
  bytes: number,
): Promise<ArrayBuffer> {
  const back = gpuBuffer(device, bytes, USAGE.MAP_READ | USAGE.COPY_DST);
  try {
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(src, 0, back, 0, bytes);
    device.queue.submit([enc.finish()]);
    await back.mapAsync(1 /* GPUMapMode.READ */);
    const out = back.getMappedRange().slice(0, bytes);
    back.unmap();
    return out;
  } finally {
    back.destroy();
  }
}

/**
 * `device` with the members in `replaced` in place of its own; every other
 * member is the device's (its methods bound to it, so WebGPU's own checks of
 * `this` pass). A test's view of a real device: what it replaces is named.
 */
export function deviceWith(device: GPUDevice, replaced: Partial<GPUDevice>): GPUDevice {
  return new Proxy(device, {
    get(target, key) {
      if (Object.hasOwn(replaced, key)) return replaced[key as keyof GPUDevice];
      const v = Reflect.get(target, key, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}
