/**
 * The WebGPU encoder's test cases, each run in its own Deno process by
 * `../webgpu_encoder_test.ts` (`webgpu_harness.ts` says why).
 *
 * Usage: `deno run -A src/runtime/testdata/webgpu_cases.ts <case>`: prints
 * `case <case>: ok` when the case passed.
 *
 * @module
 */
import assert from "node:assert/strict";
import { randomSae } from "../../formats/random_sae.ts";
import { assertMatchesReference, gaussianInput, oddSaes } from "./gpu_reference.ts";
import { createWebGpuEncoder, WebGpuEncoderConfigError } from "../webgpu_encoder.ts";
import { GEMM_TILES, type GemmTileName } from "../webgpu_kernels.ts";
import { guarded, requestWebGpuDevice, USAGE, WebGpuEncodeError } from "../webgpu_device.ts";
import { gpuBuffer, uploadEncoderWeights } from "../webgpu_buffers.ts";
import { Rng } from "../../core/random.ts";
import { readBack, runCaseFromArgs, type WebGpuCases } from "./webgpu_harness.ts";

/** The cases by name. */
export const CASES: WebGpuCases = new Map();

CASES.set("every tiling matches the f64 reference (JumpReLU, b_dec subtracted)", async () => {
  const sae = randomSae({ architecture: "jumprelu", dIn: 48, dSae: 384, seed: 3 });
  const x = gaussianInput(150, 48, 4);
  for (const tile of Object.keys(GEMM_TILES) as GemmTileName[]) {
    const enc = await createWebGpuEncoder(sae, { maxRows: 256, tile });
    try {
      const active = assertMatchesReference(sae, x, 150, await enc.encode(x, 150));
      assert(active > 150, `${tile}: some latents are active (${active})`);
    } finally {
      await enc.close();
    }
  }
});

CASES.set("odd widths, ReLU, and both input normalisations", async () => {
  const cases = oddSaes();
  for (const sae of cases) {
    const x = gaussianInput(33, sae.dIn, 8, 3);
    const enc = await createWebGpuEncoder(sae, { maxRows: 128 });
    try {
      assertMatchesReference(sae, x, 33, await enc.encode(x, 33));
    } finally {
      await enc.close();
    }
  }
});

CASES.set("a token past the cap is compacted again, never truncated", async () => {
  const sae = randomSae({ architecture: "standard", dIn: 32, dSae: 512, seed: 9 });
  const x = gaussianInput(20, 32, 10);
  const enc = await createWebGpuEncoder(sae, { maxRows: 128, cap: 4 });
  try {
    const got = await enc.encode(x, 20);
    assert(got.some((l) => l.indices.length > 4), "some token has more than 4 active latents");
    assertMatchesReference(sae, x, 20, got);
    assert.deepEqual(enc.stats().recompactions, 1);
  } finally {
    await enc.close();
  }
});

CASES.set("batches split past maxRows and concurrent batches give the same results", async () => {
  const sae = randomSae({ architecture: "jumprelu", dIn: 32, dSae: 256, seed: 11 });
  const x = gaussianInput(300, 32, 12);
  const enc = await createWebGpuEncoder(sae, { maxRows: 128, inFlight: 2 });
  try {
    const whole = await enc.encode(x, 300); // three chunks through two slots
    assertMatchesReference(sae, x, 300, whole);
    const parts = await Promise.all(
      [0, 1, 2, 3, 4].map((p) => enc.encode(x.subarray(p * 60 * 32), 60)),
    );
    const flat = parts.flat();
    for (let t = 0; t < 300; t++) {
      assert.deepEqual([...flat[t].indices], [...whole[t].indices], `token ${t}`);
      assert.deepEqual([...flat[t].values], [...whole[t].values], `token ${t}`);
    }
    assert.deepEqual(enc.stats().tokens, 600);
    assert.deepEqual((await enc.encode(x, 0)).length, 0);
  } finally {
    await enc.close();
  }
});

CASES.set("refuses TopK and gated SAEs and a short input, saying why", async () => {
  const topk = randomSae({ architecture: "topk", dIn: 16, dSae: 64, k: 4, seed: 1 });
  await assert.rejects(
    () => createWebGpuEncoder(topk),
    (e) => e instanceof WebGpuEncoderConfigError && e.message.includes("found topk"),
  );
  const sae = randomSae({ architecture: "jumprelu", dIn: 16, dSae: 64, seed: 1 });
  const enc = await createWebGpuEncoder(sae, { maxRows: 128 });
  try {
    await assert.rejects(() => enc.encode(new Float32Array(20), 2), /2 × 16 = 32/);
    assert((await enc.timeKernels(64, 2)) > 0);
  } finally {
    await enc.close();
  }
});

CASES.set(
  "a bad maxRows, a tiling the device cannot hold, a lost device: errors, not empty rows",
  async () => {
    const sae = randomSae({ architecture: "jumprelu", dIn: 16, dSae: 64, seed: 2 });
    for (const maxRows of [0, -5, 1.5]) {
      await assert.rejects(
        () => createWebGpuEncoder(sae, { maxRows }),
        (e) => e instanceof WebGpuEncoderConfigError && e.message.includes(`found ${maxRows}`),
      );
    }
    // a device with WebGPU's default limits: 16 KiB of workgroup memory, too little for "deep"
    const adapter = await navigator.gpu.requestAdapter();
    const small = await adapter!.requestDevice();
    const x = new Rng(3).fillGaussian(new Float32Array(8 * 16));
    try {
      const deep = await createWebGpuEncoder(sae, { device: small, tile: "deep", maxRows: 128 });
      assert.equal(deep.tileFits("deep"), small.limits.maxComputeWorkgroupStorageSize >= 32768);
      if (!deep.tileFits("deep")) {
        await assert.rejects(() => deep.encode(x, 8), /deep needs 32768 bytes of workgroup memory/);
      }
      await deep.close();
      const enc = await createWebGpuEncoder(sae, { device: small, maxRows: 128 });
      assertMatchesReference(sae, x, 8, await enc.encode(x, 8));
      small.destroy();
      await assert.rejects(
        () => enc.encode(x, 8),
        "a lost device rejects, it does not return rows",
      );
      await enc.close();
    } finally {
      small.destroy();
    }
  },
);

CASES.set("guarded: work the device refuses is a WebGpuEncodeError naming it", async () => {
  const { device } = await requestWebGpuDevice();
  try {
    const ok = guarded(device, "a storage buffer", () => gpuBuffer(device, 64, USAGE.STORAGE));
    await ok.checked;
    ok.value.destroy();
    // MAP_READ goes only with COPY_DST: WebGPU's validation refuses this buffer
    const bad = guarded(
      device,
      "a mappable storage buffer",
      () => device.createBuffer({ size: 64, usage: USAGE.MAP_READ | USAGE.STORAGE }),
    );
    await assert.rejects(
      () => bad.checked,
      (e) => e instanceof WebGpuEncodeError && e.message.startsWith("a mappable storage buffer: "),
    );
  } finally {
    device.destroy();
  }
});

/** A buffer's first `floats` values, copied back to the host. */
async function readFloats(
  device: GPUDevice,
  src: GPUBuffer,
  floats: number,
): Promise<Float32Array> {
  return new Float32Array(await readBack(device, src, floats * 4));
}

CASES.set("the weights are padded, and padded latents can never be active", async () => {
  const { device } = await requestWebGpuDevice();
  try {
    const dims = { dInPad: 8, dSaePad: 12 };
    // JumpReLU reads its thresholds; a standard SAE thresholds at 0 (relu), padding apart
    for (const architecture of ["jumprelu", "standard"] as const) {
      const sae = randomSae({ architecture, dIn: 5, dSae: 7, seed: 4 });
      const [w, bias, thr, bdec] = uploadEncoderWeights(device, sae, dims, USAGE.COPY_SRC);
      const wBack = await readFloats(device, w, 8 * 12);
      for (let j = 0; j < 8; j++) {
        for (let i = 0; i < 12; i++) {
          const want = j < 5 && i < 7 ? sae.wEnc[j * 7 + i] : 0;
          assert.equal(wBack[j * 12 + i], want, `${architecture}: W_enc[${j}, ${i}]`);
        }
      }
      const thrBack = await readFloats(device, thr, 12);
      const real = architecture === "jumprelu" ? [...sae.threshold!] : new Array(7).fill(0);
      assert.deepEqual([...thrBack.subarray(0, 7)], real, `${architecture}: thresholds`);
      // above any f32 a GEMM can sum from finite inputs of these sizes: never active
      for (const v of thrBack.subarray(7)) assert.ok(v > 3e38, `${architecture}: padded ${v}`);
      const biasBack = await readFloats(device, bias, 12);
      assert.deepEqual([...biasBack], [...sae.bEnc, 0, 0, 0, 0, 0], `${architecture}: b_enc`);
      const bdecBack = await readFloats(device, bdec, 8);
      assert.deepEqual([...bdecBack.subarray(5)], [0, 0, 0], "padded inputs subtract nothing");
      for (const b of [w, bias, thr, bdec]) b.destroy();
    }
  } finally {
    device.destroy();
  }
});

if (import.meta.main) await runCaseFromArgs(CASES);
