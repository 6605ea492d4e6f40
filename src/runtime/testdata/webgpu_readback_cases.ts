/**
 * The cases of `../webgpu_readback_test.ts`, each run in its own Deno process
 * on the adapter Deno finds (`webgpu_harness.ts` says why): real buffers
 * holding tiny hand-made batches, copied back, mapped and compacted again by
 * the real compaction kernel (`WebGpuPipelines.compact`).
 *
 * Usage: `deno run -A src/runtime/testdata/webgpu_readback_cases.ts <case>`:
 * prints `case <case>: ok` when the case passed.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Rng } from "../../core/random.ts";
import type { SparseLatents } from "../../core/sae.ts";
import { deviceWith, readBack, runCaseFromArgs, type WebGpuCases } from "./webgpu_harness.ts";
import { requestWebGpuDevice, USAGE, WebGpuEncodeError } from "../webgpu_device.ts";
import { gpuBuffer } from "../webgpu_buffers.ts";
import { WebGpuPipelines } from "../webgpu_pipelines.ts";
import { copyBack, readCompacted, recompact, type Recompaction } from "../webgpu_readback.ts";

const { STORAGE, COPY_SRC, COPY_DST, MAP_READ } = USAGE;

/** The cases by name. */
export const CASES: WebGpuCases = new Map();

/** A storage buffer holding `data` (u32 or f32), which copies can read. */
function filled(
  device: GPUDevice,
  data: Uint32Array<ArrayBuffer> | Float32Array<ArrayBuffer>,
  usage: number = STORAGE,
): GPUBuffer {
  const buf = gpuBuffer(device, data.byteLength, usage | COPY_SRC | COPY_DST);
  device.queue.writeBuffer(buf, 0, data);
  return buf;
}

/** Each token's latents as plain arrays. */
const plain = (ls: SparseLatents[]) => ls.map((l) => [[...l.indices], [...l.values]]);

CASES.set(
  "copyBack lays counts, indices and values back to back; readCompacted unpacks a copy",
  async () => {
    const { device } = await requestWebGpuDevice();
    try {
      // room for 3 tokens of 2 latents; token 1 has 3 active, one past the cap
      const cap = 2;
      const slot = {
        count: filled(device, new Uint32Array([2, 3, 0])),
        idx: filled(device, new Uint32Array([5, 9, 1, 4, 77, 77])),
        val: filled(device, new Float32Array([0.5, -1, 2, 3, 77, 77])),
        readback: gpuBuffer(device, 3 * (1 + 2 * cap) * 4, MAP_READ | COPY_DST),
        cap,
      };
      const enc = device.createCommandEncoder();
      copyBack(enc, slot, 3);
      device.queue.submit([enc.finish()]);
      await slot.readback.mapAsync(1 /* GPUMapMode.READ */);
      const raw = slot.readback.getMappedRange().slice(0, 60);
      slot.readback.unmap();
      // 3 counts, then 3·2 indices, then 3·2 values
      assert.deepEqual([...new Uint32Array(raw, 0, 9)], [2, 3, 0, 5, 9, 1, 4, 77, 77]);
      assert.deepEqual([...new Float32Array(raw, 36, 6)], [0.5, -1, 2, 3, 77, 77]);

      const { latents, maxCount } = await readCompacted(slot, 3);
      // the mapped range was detached by unmap: latents still readable are a copy
      assert.equal(maxCount, 3, "a count past the cap is reported");
      assert.deepEqual(plain(latents), [
        [[5, 9], [0.5, -1]],
        [[1, 4], [2, 3]], // the third is past the cap: not read
        [[], []],
      ]);
      assert.deepEqual(plain((await readCompacted(slot, 3)).latents), plain(latents), "unmapped");

      // a batch of 2 tokens in the same slot: its own layout, 2 counts, 2·2 indices, 2·2 values
      const enc2 = device.createCommandEncoder();
      copyBack(enc2, slot, 2);
      device.queue.submit([enc2.finish()]);
      const two = await readCompacted(slot, 2);
      assert.equal(two.maxCount, 3);
      assert.deepEqual(plain(two.latents), [[[5, 9], [0.5, -1]], [[1, 4], [2, 3]]]);
      for (const b of [slot.count, slot.idx, slot.val, slot.readback]) b.destroy();
    } finally {
      device.destroy();
    }
  },
);

/** Latents per token of the dense batch: two compaction steps of 256 threads × 4. */
const D_SAE = 1280;

/** Four tokens of dense activations, and each token's active latents written out. */
function denseBatch(): {
  dense: Float32Array<ArrayBuffer>;
  want: { indices: number[]; values: number[] }[];
} {
  const dense = new Float32Array(4 * D_SAE);
  const row = (r: number) => dense.subarray(r * D_SAE, (r + 1) * D_SAE);
  // token 0: six active either side of the step at 1024; -0 is not active
  const t0 = { indices: [1, 3, 6, 1023, 1024, 1279], values: [1.5, -2, 0.25, 7, -0.5, 3] };
  t0.indices.forEach((j, n) => row(0)[j] = t0.values[n]);
  row(0)[10] = -0;
  // token 1: 40 active, every 31st latent from 2, values -19.5 … 19.5
  const t1 = {
    indices: Array.from({ length: 40 }, (_, n) => 2 + 31 * n),
    values: Array.from({ length: 40 }, (_, n) => n - 19.5),
  };
  t1.indices.forEach((j, n) => row(1)[j] = t1.values[n]);
  // token 2: none; token 3: about one in ten, seeded, its active latents read off in plain JS
  const rng = new Rng(5);
  const t3 = { indices: [] as number[], values: [] as number[] };
  for (let j = 0; j < D_SAE; j++) {
    if (rng.uniform() >= 0.1) continue;
    row(3)[j] = Math.fround(rng.gaussian()) || 1;
    t3.indices.push(j);
    t3.values.push(row(3)[j]);
  }
  return { dense, want: [t0, t1, { indices: [], values: [] }, t3] };
}

/** The device, seen through a view that keeps each buffer it makes: everything else is the device's. */
function keepingBuffers(device: GPUDevice): { device: GPUDevice; made: GPUBuffer[] } {
  const made: GPUBuffer[] = [];
  const createBuffer = (d: GPUBufferDescriptor) => {
    const b = device.createBuffer(d);
    made.push(b);
    return b;
  };
  return { device: deviceWith(device, { createBuffer }), made };
}

/** Whether the device refuses a copy from (or, where it cannot be copied from, into) `b`: destroyed. */
async function refusesCopies(device: GPUDevice, b: GPUBuffer): Promise<boolean> {
  const other = device.createBuffer({ size: 16, usage: COPY_SRC | COPY_DST });
  device.pushErrorScope("validation");
  const enc = device.createCommandEncoder();
  if (b.usage & COPY_SRC) enc.copyBufferToBuffer(b, 0, other, 0, 16);
  else enc.copyBufferToBuffer(other, 0, b, 0, 16);
  device.queue.submit([enc.finish()]);
  const error = await device.popErrorScope();
  other.destroy();
  return error !== null;
}

/** What a recompaction case works with, on a fresh device. */
interface RecompactionParts {
  /** The device itself. */
  real: GPUDevice;
  /** The device as recompact sees it: keeping the buffers it makes in `made`. */
  device: GPUDevice;
  made: GPUBuffer[];
  /** The real compaction pipeline and a slot whose `dense` holds `denseBatch()`, counts stale. */
  job: Omit<Recompaction, "maxCount">;
}

/** Run `f` on a fresh device, with `dense` of `denseUsage` besides the copies; the device destroyed after. */
async function onFreshDevice(
  denseUsage: number,
  f: (parts: RecompactionParts) => Promise<void>,
): Promise<void> {
  const { device: real } = await requestWebGpuDevice();
  try {
    const { compact } = new WebGpuPipelines(real);
    const slot = {
      dense: filled(real, denseBatch().dense, denseUsage),
      count: filled(real, new Uint32Array([99, 99, 99, 99])),
    };
    const { device, made } = keepingBuffers(real);
    await f({ real, device, made, job: { compact, slot, rows: 4, dInPad: 32, dSaePad: D_SAE } });
  } finally {
    real.destroy();
  }
}

CASES.set(
  "recompact returns every active latent, with the cap rounded up to 32, and frees its buffers",
  () =>
    onFreshDevice(STORAGE, async ({ real, device, made, job }) => {
      const { want } = denseBatch();
      const maxCount = 129; // token 3's, the fullest
      assert.deepEqual(want.map((w) => w.indices.length), [6, 40, 0, maxCount]);
      const got = await recompact(device, { ...job, maxCount });
      assert.equal(got.maxCount, maxCount);
      assert.deepEqual(
        got.latents.map((l) => ({ indices: [...l.indices], values: [...l.values] })),
        want,
      );
      const counts = new Uint32Array(await readBack(real, job.slot.count, 16));
      assert.deepEqual([...counts], [6, 40, 0, 129], "the stale counts written again");
      // 129 rounded up to 32 is 160: indices and values of 4·160 words, the dims, the readback
      // 4·(1 + 2·160) words
      assert.deepEqual(made.map((b) => b.size), [2560, 2560, 16, 5136]);
      for (const b of made) assert.ok(await refusesCopies(real, b), "destroyed");
      for (const b of [job.slot.dense, job.slot.count]) {
        assert.equal(await refusesCopies(real, b), false, "the slot's own buffers stay");
      }
    }),
);

CASES.set(
  "a compaction the device refuses is a WebGpuEncodeError naming it, its buffers freed all the same",
  // dense without STORAGE usage: WebGPU's validation refuses it in the compaction's bind group
  () =>
    onFreshDevice(0, async ({ real, device, made, job }) => {
      await assert.rejects(
        recompact(device, { ...job, maxCount: 8 }),
        (e) =>
          e instanceof WebGpuEncodeError &&
          e.message.startsWith("compact 4 tokens, cap 32: the device refused it: ") &&
          e.message.includes("STORAGE"),
      );
      assert.equal(made.length, 4);
      for (const b of made) assert.ok(await refusesCopies(real, b), "destroyed");
    }),
);

if (import.meta.main) await runCaseFromArgs(CASES);
