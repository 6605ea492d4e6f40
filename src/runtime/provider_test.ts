/**
 * Execution-provider selection. These run on machines without a GPU (CI:
 * every GPU setting ends on the CPU, with a note) and stay valid on one
 * with a GPU: the provider is asserted to be one of webgpu, cuda, cpu, and
 * a GPU result must match the CPU path within 1e-4 · (1 + |v|); a CPU
 * result must equal it bit for bit.
 */
import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import type { LinearProbe, SparseLatents } from "../core/sae.ts";
import { randomSae } from "../formats/random_sae.ts";
import { createOrtEncoder, createProbeEncoder, encoderProvider } from "./ort_encoder.ts";
import {
  errorFirstLine,
  EXECUTION_PROVIDERS,
  onProvider,
  parseProviderSetting,
  providerAvailability,
  providerWithoutModel,
  supportedBackends,
} from "./provider.ts";

const PROVIDERS = ["webgpu", "cuda", "cpu"];
const tol = (v: number) => 1e-4 * (1 + Math.abs(v));

const SAE = randomSae({ architecture: "standard", dIn: 32, dSae: 96, seed: 11 });
const TOKENS = 40;
const X = new Rng(3).fillGaussian(new Float32Array(TOKENS * 32), 1.2);

function dense(latents: SparseLatents[], width: number): Float32Array {
  const out = new Float32Array(latents.length * width);
  latents.forEach((l, t) => l.indices.forEach((i, p) => out[t * width + i] = l.values[p]));
  return out;
}

/** The CPU path's latents, the reference every provider is held to. */
async function cpuLatents(): Promise<Float32Array> {
  const enc = await createOrtEncoder(SAE, { provider: "cpu" });
  try {
    return dense(await enc.encode(X, TOKENS), SAE.dSae);
  } finally {
    await enc.close();
  }
}

function assertSameAsCpu(provider: string, got: Float32Array, want: Float32Array, what: string) {
  if (provider === "cpu") {
    assert.deepEqual(got, want, `${what}: the CPU path is bit for bit the same`);
    return;
  }
  for (let i = 0; i < want.length; i++) {
    assert.ok(
      Math.abs(got[i] - want[i]) <= tol(want[i]),
      `${what} [${i}]: ${got[i]} vs ${want[i]}`,
    );
  }
}

Deno.test("provider: setting names are checked, unknown ones are a RangeError naming the choices", async () => {
  assert.deepEqual([...EXECUTION_PROVIDERS], ["auto", "webgpu", "cuda", "cpu"]);
  for (const p of EXECUTION_PROVIDERS) assert.equal(parseProviderSetting(p), p);
  assert.throws(
    () => parseProviderSetting("tpu"),
    (e: Error) =>
      e instanceof RangeError &&
      e.message === "provider: expected one of auto, webgpu, cuda, cpu, found 'tpu'",
  );
  assert.throws(() => parseProviderSetting("GPU", "--provider"), /^RangeError: --provider: /);
  assert.throws(
    () => parseProviderSetting(1),
    (e: Error) => e instanceof TypeError && /expected one of .*, found number$/.test(e.message),
  );
  await assert.rejects(
    // deno-lint-ignore no-explicit-any
    createOrtEncoder(SAE, { provider: "vulkan" as any }),
    (e: Error) => e instanceof RangeError && /found 'vulkan'/.test(e.message),
  );
});

Deno.test("provider: cpu stays cpu, no note, bit for bit the CPU path", async () => {
  const want = await cpuLatents();
  const enc = await createOrtEncoder(SAE, { provider: "cpu", intraOpThreads: 1 });
  assert.equal(enc.provider, "cpu");
  assert.equal(enc.providerNote, undefined);
  assert.equal(enc.providerFallback, false);
  assert.equal(encoderProvider(enc)?.provider, "cpu");
  assertSameAsCpu("cpu", dense(await enc.encode(X, TOKENS), SAE.dSae), want, "cpu");
  await enc.close();
  // No option: the CPU, as before there were providers.
  const plain = await createOrtEncoder(SAE);
  assert.equal(plain.provider, "cpu");
  await plain.close();
});

for (const requested of ["webgpu", "cuda"] as const) {
  Deno.test(`provider: explicit ${requested} runs there or falls back to cpu with a note`, async () => {
    const want = await cpuLatents();
    const enc = await createOrtEncoder(SAE, { provider: requested });
    assert.ok(PROVIDERS.includes(enc.provider), enc.provider);
    if (enc.provider === "cpu") {
      // no GPU here (CI): the note says which provider failed and why; for cuda, latentwatch's
      // own CUDA encoder (tried first for a standard or JumpReLU full encode), then onnxruntime's
      assert.equal(enc.providerFallback, true);
      const first = requested === "cuda" ? "cuda-ffi could not start: .+; cuda" : requested;
      assert.match(enc.providerNote ?? "", new RegExp(`^${first} could not start: .+`));
      assert.match(enc.providerNote ?? "", /; running on cpu$/);
    } else {
      assert.equal(enc.provider, requested);
    }
    assertSameAsCpu(enc.provider, dense(await enc.encode(X, TOKENS), SAE.dSae), want, requested);
    await enc.close();
  });
}

Deno.test("provider: auto picks a GPU provider that starts, else cpu", async () => {
  const want = await cpuLatents();
  const enc = await createOrtEncoder(SAE, { provider: "auto" });
  assert.ok(PROVIDERS.includes(enc.provider), enc.provider);
  if (enc.provider === "cpu") {
    const listed = supportedBackends();
    if (listed === null || listed.includes("webgpu") || listed.includes("cuda")) {
      assert.match(enc.providerNote ?? "", /^auto: .* could not start: .*; running on cpu$/);
    }
  }
  assertSameAsCpu(enc.provider, dense(await enc.encode(X, TOKENS), SAE.dSae), want, "auto");
  await enc.close();
  const known = await providerWithoutModel("auto");
  if (enc.provider === "cpu") assert.equal(known?.provider ?? "cpu", "cpu");
  assert.deepEqual(await providerWithoutModel("cpu"), { provider: "cpu", providerFallback: false });
});

Deno.test("provider: whether a GPU provider starts is checked once per process", async () => {
  for (const p of ["webgpu", "cuda"] as const) {
    const first = providerAvailability(p);
    assert.equal(providerAvailability(p), first, "the same answer, not a new check");
    const r = await first;
    assert.equal(typeof r.available, "boolean");
    if (!r.available) assert.ok(r.reason && !r.reason.includes("\n"), r.reason);
  }
  // a second encoder pays nothing for an unavailable provider
  const t0 = performance.now();
  const enc = await createOrtEncoder(SAE, { provider: "auto" });
  const ms = performance.now() - t0;
  if (enc.provider === "cpu") assert.ok(ms < 500, `${ms} ms`);
  await enc.close();
});

Deno.test("provider: probe encoders report their provider and score like the CPU path", async () => {
  const rng = new Rng(9);
  const probe: LinearProbe = {
    kind: "probe",
    dIn: 32,
    n: 2,
    directions: rng.fillGaussian(new Float32Array(64), 0.3),
    bias: new Float32Array([0.25, -0.5]),
    link: "logistic",
    source: "probe:test",
  };
  const cpu = await createProbeEncoder(probe, { provider: "cpu" });
  assert.equal(cpu.provider, "cpu");
  const want = dense(await cpu.encode(X, TOKENS), 2);
  await cpu.close();
  for (const provider of ["webgpu", "auto"] as const) {
    const enc = await createProbeEncoder(probe, { provider });
    assert.ok(PROVIDERS.includes(enc.provider));
    if (provider === "webgpu" && enc.provider === "cpu") {
      assert.match(enc.providerNote!, /^webgpu /);
    }
    assertSameAsCpu(enc.provider, dense(await enc.encode(X, TOKENS), 2), want, `probe ${provider}`);
    await enc.close();
  }
});

Deno.test("provider: onProvider runs the CPU attempt last and lets its error through", async () => {
  const seen: string[] = [];
  const r = await onProvider("cpu", (p) => {
    seen.push(p);
    return Promise.resolve(42);
  });
  assert.deepEqual(seen, ["cpu"]);
  assert.deepEqual(r, { value: 42, provider: "cpu", providerFallback: false });
  await assert.rejects(onProvider("cpu", () => Promise.reject(new Error("boom"))), /boom/);
  // A GPU provider that starts here but refuses this model: the CPU, and the reason.
  const gpuRefuses = await onProvider(
    "auto",
    (p) =>
      p === "cpu"
        ? Promise.resolve("on cpu")
        : Promise.reject(new Error("x.cc:1 f() ok was false. model too large\ndetail")),
  );
  assert.equal(gpuRefuses.value, "on cpu");
  assert.equal(gpuRefuses.provider, "cpu");
  for (const p of ["webgpu", "cuda"] as const) {
    if ((await providerAvailability(p)).available) {
      assert.match(gpuRefuses.providerNote!, new RegExp(`${p} could not start: model too large;`));
      assert.equal(gpuRefuses.providerFallback, true);
    }
  }
});

Deno.test("provider: errorFirstLine keeps the message, not onnxruntime's source location", () => {
  const ort = "/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 " +
    "onnxruntime::webgpu::WebGpuContext::Initialize(const Config&)::<lambda()> " +
    "adapter_result.status == wgpu::RequestAdapterStatus::Success was false. " +
    "Failed to get a WebGPU adapter: No supported adapters\n";
  assert.equal(
    errorFirstLine(new Error(ort)),
    "Failed to get a WebGPU adapter: No supported adapters",
  );
  assert.equal(
    errorFirstLine(
      new Error("OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library"),
    ),
    "OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library",
  );
  assert.equal(errorFirstLine("first\nsecond"), "first");
});

Deno.test("provider: the child check answers one JSON line, whatever the machine, and names an unknown provider", async () => {
  const probe = new URL("./provider_probe.ts", import.meta.url).pathname;
  const ask = async (p: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", probe, p],
      stdout: "piped",
      stderr: "null",
    }).output();
    assert.equal(out.code, 0);
    return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  };
  const webgpu = await ask("webgpu");
  assert.equal(typeof webgpu.available, "boolean");
  if (!webgpu.available) assert.equal(typeof webgpu.reason, "string");
  assert.deepEqual(await ask("tpu"), { available: false, reason: "unknown provider 'tpu'" });
});
