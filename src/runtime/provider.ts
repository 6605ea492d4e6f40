/**
 * Execution providers: where onnxruntime runs an encoder. `cpu` is always
 * there; `webgpu` (bundled with onnxruntime-node, needs a Vulkan loader and
 * driver on Linux) and `cuda` (its libraries are not bundled) may not be.
 *
 * The setting (`auto`, `webgpu`, `cuda`, `cpu`) is resolved when a session is
 * created, never on the hot path: `auto` tries WebGPU, then CUDA (each only
 * when this onnxruntime-node build lists it), then the CPU; an explicit GPU
 * provider that cannot start falls back to the CPU with a note saying which
 * provider failed and why. Whether a GPU provider can start at all is checked
 * once per process on a one-node model ({@linkcode providerAvailability}) and
 * remembered, so a CPU-only machine pays for the check once, not once per SAE.
 * See `docs/gpu.md`.
 *
 * @module
 */

import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { floatInit, INPUT_NAME, modelOf, node, valueInfo } from "./onnx_graph.ts";

/**
 * Values of `execution.provider`: `auto` tries WebGPU, then CUDA, then the
 * CPU; the others ask for one provider and fall back to the CPU when it
 * cannot start.
 */
export const EXECUTION_PROVIDERS = ["auto", "webgpu", "cuda", "cpu"] as const;

/** One of {@linkcode EXECUTION_PROVIDERS}. */
export type ExecutionProviderSetting = (typeof EXECUTION_PROVIDERS)[number];

/** A provider a session can actually run on. */
export type ExecutionProvider = "cpu" | "webgpu" | "cuda";

/** The GPU providers, in the order `auto` tries them. */
export const GPU_PROVIDERS = ["webgpu", "cuda"] as const;

/** A GPU provider of {@linkcode GPU_PROVIDERS}. */
export type GpuProvider = (typeof GPU_PROVIDERS)[number];

/** What an encoder reports about where it runs. */
export interface ProviderReport {
  /** The provider the session runs on. */
  readonly provider: ExecutionProvider;
  /**
   * Why it does not run on a GPU provider that was asked for or tried, one
   * `<provider> could not start: <reason>` per provider, then `running on
   * <provider>`; absent when the first choice started.
   */
  readonly providerNote?: string;
  /**
   * True when a provider was asked for explicitly and could not start, or
   * could start here but not with this model: worth a warning. False when
   * `auto` simply found no GPU provider on this machine.
   */
  readonly providerFallback: boolean;
}

/** Whether a GPU provider can start in this process. */
export interface Availability {
  available: boolean;
  /** Why not (first line of the onnxruntime error, or the missing library). */
  reason?: string;
}

/**
 * Check a provider setting: one of {@linkcode EXECUTION_PROVIDERS}.
 *
 * @throws {TypeError} for a value that is not a string
 * @throws {RangeError} for an unknown name
 *
 * @example
 * ```ts
 * parseProviderSetting("webgpu"); // "webgpu"
 * parseProviderSetting("tpu"); // RangeError: provider: expected one of auto, webgpu, cuda, cpu, found 'tpu'
 * ```
 */
export function parseProviderSetting(value: unknown, what = "provider"): ExecutionProviderSetting {
  const expected = `expected one of ${EXECUTION_PROVIDERS.join(", ")}`;
  if (typeof value !== "string") {
    throw new TypeError(`${what}: ${expected}, found ${value === null ? "null" : typeof value}`);
  }
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(value)) {
    throw new RangeError(`${what}: ${expected}, found '${value}'`);
  }
  return value as ExecutionProviderSetting;
}

/**
 * The first line of an onnxruntime error, without the source location that
 * precedes the message (`/onnxruntime_src/...cc:136 f() cond was false. `).
 *
 * @example
 * ```ts
 * errorFirstLine(new Error("a.cc:1 f() x was false. Failed to get a WebGPU adapter\nmore"));
 * // "Failed to get a WebGPU adapter"
 * ```
 */
export function errorFirstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const line = message.trim().split("\n", 1)[0].trim();
  const tail = line.replace(/^\S+\.(cc|cpp|h):\d+ .*? was false\. /, "");
  return tail === "" ? line : tail;
}

let backends: string[] | null | undefined;

/**
 * Backend names this onnxruntime-node build lists
 * (`ort.listSupportedBackends()`, exported at run time but not typed), or
 * null when it has no such function (every provider is then tried).
 */
export function supportedBackends(): string[] | null {
  if (backends !== undefined) return backends;
  const list = (ort as { listSupportedBackends?: () => { name: string }[] }).listSupportedBackends;
  try {
    backends = typeof list === "function" ? list().map((b) => b.name) : null;
  } catch {
    backends = null;
  }
  return backends;
}

const availability = new Map<GpuProvider, Promise<Availability>>();

/**
 * Whether `provider` can start in this process, checked once and remembered:
 * listed by this onnxruntime-node build, its libraries loadable (Linux: the
 * Vulkan loader for WebGPU; the CUDA provider libraries beside the binding),
 * and a session on a one-node model created. The library checks come first
 * so a machine without them gets a precise reason and no native error lines
 * on stderr.
 *
 * @example
 * ```ts
 * const { available, reason } = await providerAvailability("webgpu");
 * ```
 */
export function providerAvailability(provider: GpuProvider): Promise<Availability> {
  let known = availability.get(provider);
  if (!known) {
    known = checkAvailability(provider);
    availability.set(provider, known);
  }
  return known;
}

async function checkAvailability(provider: GpuProvider): Promise<Availability> {
  const listed = supportedBackends();
  if (listed && !listed.includes(provider)) {
    return {
      available: false,
      reason: `not supported by this onnxruntime-node build (it lists ${listed.join(", ")})`,
    };
  }
  const missing = provider === "webgpu" ? missingVulkanLoader() : missingCudaLibraries();
  if (missing) return { available: false, reason: missing };
  // The first session loads the GPU's native libraries, which may print on stderr (a Vulkan
  // driver that Dawn refuses, such as Mesa's lavapipe, does): ask a child process first, so a
  // provider that cannot start leaves no lines in this process's JSON log.
  const child = await availabilityInChild(provider);
  if (child && !child.available) return child;
  return await openTinySession(provider);
}

/**
 * Open and release a session on the one-node model with `provider` alone, in
 * this process: whether the provider starts here.
 *
 * @example
 * ```ts
 * (await openTinySession("webgpu")).available; // false on a machine without a GPU
 * ```
 */
export async function openTinySession(provider: GpuProvider): Promise<Availability> {
  let session: ort.InferenceSession | undefined;
  try {
    session = await ort.InferenceSession.create(tinyModel(), {
      executionProviders: [provider],
      logSeverityLevel: 3,
      intraOpNumThreads: 1,
    });
    return { available: true };
  } catch (err) {
    return { available: false, reason: errorFirstLine(err) };
  } finally {
    await session?.release().catch(() => {});
  }
}

/** How long the child's check may take (loading a GPU driver can be slow, never this slow). */
const CHILD_CHECK_MS = 60_000;

/**
 * {@linkcode openTinySession} in a child Deno process (`provider_probe.ts`),
 * its stderr kept out of this process's. Null only when no child can be
 * started here (no permission to run one, no module file); a child that ran
 * and gave no answer (it crashed, hung, or could not load its modules) means
 * the provider is not available, with the reason.
 */
async function availabilityInChild(provider: GpuProvider): Promise<Availability | null> {
  const probe = new URL("./provider_probe.ts", import.meta.url);
  if (probe.protocol !== "file:") return null;
  const args = ["run", "-A", "--quiet", "--cached-only"];
  const config = new URL("../../deno.json", import.meta.url);
  try {
    Deno.statSync(config);
    args.push("--config", fileURLToPath(config));
  } catch {
    // no project config beside the sources: the child resolves as the parent did
  }
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(Deno.execPath(), {
      args: [...args, fileURLToPath(probe), provider],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      signal: AbortSignal.timeout(CHILD_CHECK_MS),
    }).output();
  } catch (err) {
    if (err instanceof DOMException && (err.name === "TimeoutError" || err.name === "AbortError")) {
      return {
        available: false,
        reason: `the ${provider} check did not finish in ${CHILD_CHECK_MS} ms`,
      };
    }
    return null;
  }
  const last = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
  try {
    const answer = JSON.parse(last) as Availability;
    if (typeof answer.available === "boolean") return answer;
  } catch {
    // no answer: below
  }
  const how = out.signal ? `was killed by ${out.signal}` : `exited ${out.code}`;
  return { available: false, reason: `the ${provider} check ${how} without an answer` };
}

/** `y = x @ [[1]]`: the smallest model a provider must accept. */
function tinyModel(): Uint8Array {
  const FLOAT = onnxProto.onnx.TensorProto.DataType.FLOAT;
  const model = modelOf({
    name: "provider_check",
    node: [node("MatMul", [INPUT_NAME, "w"], ["y"])],
    initializer: [floatInit("w", [1, 1], new Float32Array([1]))],
    input: [valueInfo(INPUT_NAME, FLOAT, ["N", 1])],
    output: [valueInfo("y", FLOAT, ["N", 1])],
  });
  return onnxProto.onnx.ModelProto.encode(model).finish();
}

/**
 * Linux: onnxruntime's WebGPU provider (Dawn) reaches the GPU through
 * Vulkan; without the loader it fails after printing a warning on stderr.
 * Returns why it cannot start, or null when the loader loads (or this
 * process may not check: no FFI permission, another OS).
 */
function missingVulkanLoader(): string | null {
  if (process.platform !== "linux") return null;
  try {
    Deno.dlopen("libvulkan.so.1", {}).close();
    return null;
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      return null;
    }
    return "cannot load libvulkan.so.1, the Vulkan loader onnxruntime's WebGPU provider needs " +
      "on Linux (see docs/gpu.md)";
  }
}

/**
 * onnxruntime-node does not bundle the CUDA provider: its install script
 * downloads the libraries next to the binding. Returns why CUDA cannot
 * start when they are not there, or null when they are (or the binding
 * folder cannot be found, so the session attempt decides).
 */
function missingCudaLibraries(): string | null {
  const lib = process.platform === "win32"
    ? "onnxruntime_providers_cuda.dll"
    : process.platform === "linux"
    ? "libonnxruntime_providers_cuda.so"
    : null;
  if (lib === null) return "onnxruntime-node has no CUDA provider on this platform";
  let bin: string;
  try {
    const entry = createRequire(import.meta.url).resolve("onnxruntime-node");
    bin = join(dirname(dirname(entry)), "bin", "napi-v6", process.platform, process.arch);
    Deno.statSync(bin);
  } catch {
    return null;
  }
  try {
    Deno.statSync(join(bin, lib));
    return null;
  } catch {
    return `the CUDA provider libraries are not installed (no ${lib} beside the ` +
      "onnxruntime-node binding, which does not bundle them; see docs/gpu.md)";
  }
}

/**
 * Run `attempt` on the providers `setting` allows, in order, until one
 * succeeds: the available GPU providers (`auto`: WebGPU then CUDA; an
 * explicit one: that one), then the CPU. Errors of the CPU attempt propagate;
 * GPU failures become the note.
 *
 * @throws {TypeError | RangeError} for an unknown setting
 *
 * @example
 * ```ts
 * import * as ort from "onnxruntime-node";
 * declare const bytes: Uint8Array;
 * const r = await onProvider("auto", (ep) => ort.InferenceSession.create(bytes, { executionProviders: [ep] }));
 * r.value; // the session
 * r.provider; // "cpu" on a machine without a GPU
 * ```
 */
export async function onProvider<T>(
  setting: ExecutionProviderSetting,
  attempt: (provider: ExecutionProvider) => Promise<T>,
): Promise<{ value: T } & ProviderReport> {
  parseProviderSetting(setting);
  if (setting === "cpu") {
    return { value: await attempt("cpu"), provider: "cpu", providerFallback: false };
  }
  const tries: readonly GpuProvider[] = setting === "auto" ? GPU_PROVIDERS : [setting];
  const notes: string[] = [];
  let fallback = false;
  for (const p of tries) {
    const listed = supportedBackends();
    // auto tries only what this build lists; an explicit choice gets its reason
    if (setting === "auto" && listed && !listed.includes(p)) continue;
    const known = await providerAvailability(p);
    if (!known.available) {
      notes.push(`${p} could not start: ${known.reason}`);
      if (setting !== "auto") fallback = true;
      continue;
    }
    try {
      const value = await attempt(p);
      const note = notes.length > 0 ? `${notes.join("; ")}; running on ${p}` : undefined;
      return {
        value,
        provider: p,
        ...(note ? { providerNote: note } : {}),
        providerFallback: fallback,
      };
    } catch (err) {
      notes.push(`${p} could not start: ${errorFirstLine(err)}`);
      fallback = true;
    }
  }
  const value = await attempt("cpu");
  const note = notes.length > 0
    ? `${setting === "auto" ? "auto: " : ""}${notes.join("; ")}; running on cpu`
    : undefined;
  return {
    value,
    provider: "cpu",
    ...(note ? { providerNote: note } : {}),
    providerFallback: fallback,
  };
}

/**
 * Where a session for `setting` would run, without opening one, when that
 * is known without a model: `cpu` (with the note) when no GPU provider it
 * allows can start here; null when a GPU provider is available and only a
 * real session can tell (it may still refuse a particular model).
 *
 * @example
 * ```ts
 * const known = await providerWithoutModel("auto"); // { provider: "cpu", ... } here
 * ```
 */
export async function providerWithoutModel(
  setting: ExecutionProviderSetting,
): Promise<ProviderReport | null> {
  let gpu = false;
  const r = await onProvider(setting, (p) => {
    if (p !== "cpu") gpu = true;
    return Promise.resolve(p);
  });
  if (gpu) return null;
  return {
    provider: r.provider,
    ...(r.providerNote ? { providerNote: r.providerNote } : {}),
    providerFallback: r.providerFallback,
  };
}
