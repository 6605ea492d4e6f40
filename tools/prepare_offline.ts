/**
 * `deno task prepare-offline <dest> [--platform-only] [--cuda]`: prepare a
 * folder that starts with no registry access.
 *
 * 1. Copies what the sidecar runs from (`deno.json`, `deno.lock`, `src/`,
 *    `monitors/`, `policies/`) to `<dest>` (skipped when `<dest>` is this
 *    checkout).
 * 2. Runs `deno install --frozen --entrypoint <every module under src/>` in
 *    `<dest>`: every npm package of the lockfile is unpacked into
 *    `<dest>/node_modules` (`"nodeModulesDir": "auto"`), onnxruntime-node's
 *    native binding and `libonnxruntime.so` included (they are in its npm
 *    package; only the CUDA provider is downloaded by its install script,
 *    which Deno runs only with `--cuda` here). Downloads go through the
 *    caller's `DENO_DIR` and nothing else is fetched: the lockfile is frozen.
 * 3. Checks that the binding of this platform is there, and with
 *    `--platform-only` deletes onnxruntime-node's binaries for other
 *    platforms (about 250 MB of a container image).
 * 4. Builds the candidate encoder's native CPU kernels into
 *    `<dest>/native-kernels` when a C compiler is here (else says why and
 *    goes on: the sidecar then runs onnxruntime's and WebAssembly's); a
 *    machine without a compiler loads them with
 *    `LATENTWATCH_NATIVE_CACHE=<dest>/native-kernels`.
 *
 * Then, from `<dest>`, with no network:
 *
 * ```sh
 * deno run --cached-only --frozen --v8-flags=--heap-growing-percent=30,--no-allocation-site-pretenuring,--single-threaded-gc -A src/main.ts serve --monitor m.yaml
 * ```
 *
 * `DENO_DIR` is then only Deno's cache of compiled code: it may point
 * anywhere writable, or be read-only (Deno keeps that cache in memory).
 * `tests/offline_start_test.ts` prepares a folder with this script and runs
 * the demo from it that way; `deploy/container/Containerfile` runs it too.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { cp, mkdir, readdir, rm, stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { join, resolve } from "node:path";
import process from "node:process";
import { buildNativeKernels } from "../src/runtime/native_kernels.ts";
import { SIDECAR_V8_FLAGS } from "../src/shared/v8_flags.ts";

/** The repository root this script belongs to. */
export const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));

/** What a prepared folder holds besides `node_modules/`, relative to the repository root. */
export const OFFLINE_FILES = ["deno.json", "deno.lock", "src", "monitors", "policies"] as const;

/** Where a prepared folder keeps the native CPU kernels (`LATENTWATCH_NATIVE_CACHE` there). */
export const NATIVE_KERNELS_DIR = "native-kernels";

/** The flags every run from a prepared folder takes: no fetch, no lockfile change, V8's heap. */
export const OFFLINE_RUN_FLAGS = ["--cached-only", "--frozen", SIDECAR_V8_FLAGS] as const;

/** How {@linkcode prepareOffline} prepares a folder. */
export interface PrepareOptions {
  /** Delete onnxruntime-node's binaries for other platforms and architectures. */
  platformOnly?: boolean;
  /** Also run onnxruntime-node's install script for the CUDA 12 provider (needs its feed). */
  cuda?: boolean;
  /** Environment for `deno install` on top of this process's (tests: an unreachable proxy). */
  env?: Record<string, string>;
}

/**
 * The folder of onnxruntime-node's native binaries for this platform under
 * `root`'s `node_modules` (onnxruntime's names: `linux`, `x64`, ...).
 *
 * @example
 * ```ts
 * onnxruntimeBinDir("/opt/latentwatch"); // ".../onnxruntime-node/bin/napi-v6/linux/x64"
 * ```
 */
export function onnxruntimeBinDir(root: string): string {
  return join(onnxruntimeBinRoot(root), process.platform, process.arch);
}

function onnxruntimeBinRoot(root: string): string {
  return join(root, "node_modules", "onnxruntime-node", "bin", "napi-v6");
}

/** Every non-test module under `dir`, as paths relative to `root`. */
async function modules(root: string, dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...await modules(root, rel));
    else if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) out.push(rel);
  }
  return out.sort();
}

/** onnxruntime-node's version as pinned in `deno.json`. */
async function onnxruntimeVersion(root: string): Promise<string> {
  const cfg = JSON.parse(await Deno.readTextFile(join(root, "deno.json")));
  const spec: string = cfg.imports["onnxruntime-node"];
  return spec.slice(spec.lastIndexOf("@") + 1);
}

/**
 * Prepare `dest` (created when missing) as an offline folder; returns the
 * files of the onnxruntime binding found for this platform.
 *
 * @example
 * ```ts
 * await prepareOffline("/opt/latentwatch", { platformOnly: true });
 * ```
 */
export async function prepareOffline(dest: string, opts: PrepareOptions = {}): Promise<string[]> {
  dest = resolve(dest);
  const root = resolve(REPO_ROOT);
  if (dest !== root) {
    await mkdir(dest, { recursive: true });
    for (const f of OFFLINE_FILES) {
      await rm(join(dest, f), { recursive: true, force: true });
      // unit tests stay behind: they import tests/, which the folder does not hold
      await cp(join(root, f), join(dest, f), {
        recursive: true,
        filter: (path) => !path.endsWith("_test.ts"),
      });
    }
  }
  const env: Record<string, string> = { ...opts.env };
  const args = ["install", "--frozen", "--quiet"];
  if (opts.cuda) {
    // the install script must run again: a package set up without it is not revisited
    const version = await onnxruntimeVersion(dest);
    await rm(join(dest, "node_modules", ".deno", `onnxruntime-node@${version}`), {
      recursive: true,
      force: true,
    });
    args.push(`--allow-scripts=npm:onnxruntime-node@${version}`);
    env.ONNXRUNTIME_NODE_INSTALL = "cuda12";
  }
  args.push("--entrypoint", ...await modules(dest, "src"));
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: dest,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (out.code !== 0) throw new Error(`deno ${args.slice(0, 3).join(" ")} failed:\n${text}`);
  const bin = onnxruntimeBinDir(dest);
  const found = (await readdir(bin).catch(() => [] as string[])).sort();
  if (!found.includes("onnxruntime_binding.node")) {
    throw new Error(
      `no onnxruntime-node binding for ${process.platform}/${process.arch} in ${bin}`,
    );
  }
  if (opts.platformOnly) await pruneOtherPlatforms(dest);
  return found;
}

/** Delete onnxruntime-node's binaries for other platforms and architectures. */
async function pruneOtherPlatforms(dest: string): Promise<void> {
  const binRoot = onnxruntimeBinRoot(dest);
  for (const platform of await readdir(binRoot)) {
    if (platform !== process.platform) {
      await rm(join(binRoot, platform), { recursive: true });
      continue;
    }
    for (const arch of await readdir(join(binRoot, platform))) {
      if (arch !== process.arch) await rm(join(binRoot, platform, arch), { recursive: true });
    }
  }
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { "platform-only": { type: "boolean" }, cuda: { type: "boolean" } },
  });
  if (positionals.length !== 1) {
    console.error("usage: deno task prepare-offline <dest> [--platform-only] [--cuda]");
    Deno.exit(2);
  }
  const dest = resolve(positionals[0]);
  try {
    const found = await prepareOffline(dest, {
      platformOnly: values["platform-only"],
      cuda: values.cuda,
    });
    const { size } = await stat(join(onnxruntimeBinDir(dest), "onnxruntime_binding.node"));
    const kernels = await buildNativeKernels(join(dest, NATIVE_KERNELS_DIR)).then(
      (path) => `built ${path} (LATENTWATCH_NATIVE_CACHE=${join(dest, NATIVE_KERNELS_DIR)})`,
      (e) => `not built: ${e instanceof Error ? e.message : e}`,
    );
    console.log(
      `prepared ${dest}: node_modules complete; onnxruntime-node ${process.platform}/` +
        `${process.arch}: ${found.join(", ")} (binding ${size} bytes)\n` +
        `native CPU kernels: ${kernels}\n` +
        `start it with: cd ${dest} && deno run ${OFFLINE_RUN_FLAGS.join(" ")} -A src/main.ts ...`,
    );
  } catch (err) {
    console.error(`prepare-offline: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
}
