import assert from "node:assert/strict";
import { type FakeDispatch, fakeGpu } from "./testdata/fake_gpu.ts";
import type { Slot } from "./webgpu_buffers.ts";
import { WebGpuEncodeError } from "./webgpu_device.ts";
import { copyBack, readCompacted, recompact } from "./webgpu_readback.ts";

/** A slot's buffers on the fake device: b0 x, b1 norm, b2 dense, b3 idx, b4 val, b5 count, b6 dims, b7 readback. */
function fakeSlot(device: GPUDevice, rows: number, dSaePad: number, cap: number): Slot {
  const buf = (size: number) => device.createBuffer({ size, usage: 0 });
  const [x, norm, dense, idx, val, count, dims, readback] = [
    16,
    rows * 8,
    rows * dSaePad * 4,
    rows * cap * 4,
    rows * cap * 4,
    rows * 4,
    16,
    rows * (1 + 2 * cap) * 4,
  ].map(buf);
  const group = {} as GPUBindGroup;
  return {
    x,
    norm,
    dense,
    idx,
    val,
    count,
    dims,
    readback,
    cap,
    gemmGroup: group,
    compactGroup: group,
  };
}

/** The bytes of a fake buffer. */
function bytesOf(b: GPUBuffer): Uint8Array {
  return (b as unknown as { bytes: Uint8Array }).bytes;
}

/** The compaction kernel in plain JS: each row's nonzero values, ascending, at most `cap`; the full count. */
function compactInJs({ group, x: rows }: FakeDispatch): void {
  const [dense, idx, val, count, dimsBuf] = group.buffers.map((b) => b.bytes.buffer);
  const [, , dSae, cap] = new Uint32Array(dimsBuf, 0, 4);
  const d = new Float32Array(dense), i = new Uint32Array(idx), v = new Float32Array(val);
  const c = new Uint32Array(count);
  for (let r = 0; r < rows; r++) {
    let n = 0;
    for (let j = 0; j < dSae; j++) {
      const value = d[r * dSae + j];
      if (value === 0) continue;
      if (n < cap) [i[r * cap + n], v[r * cap + n]] = [j, value];
      n++;
    }
    c[r] = n;
  }
}

Deno.test("webgpu readback: copyBack copies the counts, then the indices, then the values, back to back", () => {
  const gpu = fakeGpu();
  const slot = fakeSlot(gpu.device, 3, 8, 4);
  bytesOf(slot.count).set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  bytesOf(slot.idx).fill(0xa);
  bytesOf(slot.val).fill(0xb);
  gpu.log.length = 0;
  const enc = gpu.device.createCommandEncoder();
  copyBack(enc, slot, 3);
  gpu.device.queue.submit([enc.finish()]);
  // 3 counts of 4 bytes, then 3·4 indices and 3·4 values of 4 bytes
  assert.deepEqual(gpu.log, [
    "createCommandEncoder",
    "copyBufferToBuffer b5 0 b7 0 12",
    "copyBufferToBuffer b3 0 b7 12 48",
    "copyBufferToBuffer b4 0 b7 60 48",
    "submit",
  ]);
  const back = bytesOf(slot.readback);
  assert.deepEqual([...back.subarray(0, 12)], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  assert.ok(back.subarray(12, 60).every((b) => b === 0xa));
  assert.ok(back.subarray(60, 108).every((b) => b === 0xb));
});

Deno.test("webgpu readback: readCompacted maps, copies and unmaps; a count past the cap is reported, not read", async () => {
  const gpu = fakeGpu();
  const slot = fakeSlot(gpu.device, 2, 8, 2);
  const back = bytesOf(slot.readback).buffer;
  new Uint32Array(back, 0, 6).set([2, 3, 5, 9, 1, 4]); // counts 2 and 3, then the indices
  new Float32Array(back, 24, 4).set([0.5, -1, 2, 3]);
  gpu.log.length = 0;
  const { latents, maxCount } = await readCompacted(slot, 2);
  assert.deepEqual(gpu.log, ["mapAsync b7 1 0 40", "unmap b7"]); // 2·(1 + 2·2)·4 bytes
  bytesOf(slot.readback).fill(0); // the latents are a copy
  assert.equal(maxCount, 3);
  assert.deepEqual(latents.map((l) => [[...l.indices], [...l.values]]), [
    [[5, 9], [0.5, -1]],
    [[1, 4], [2, 3]],
  ]);
});

/** Three tokens of 8 latents: 3 active, all 8, none. */
const DENSE = [
  [0, 1.5, 0, -2, 0, 0, 0.25, 0],
  [1, 2, 3, 4, 5, 6, 7, 8],
  [0, 0, 0, 0, 0, 0, 0, 0],
];

function recompaction(refuse?: string) {
  const gpu = fakeGpu({ onDispatch: compactInJs, refuse });
  const slot = fakeSlot(gpu.device, 3, 8, 4);
  new Float32Array(bytesOf(slot.dense).buffer).set(DENSE.flat());
  const compact = gpu.device.createComputePipeline({} as GPUComputePipelineDescriptor);
  gpu.log.length = 0;
  const job = { compact, slot, rows: 3, maxCount: 8, dInPad: 32, dSaePad: 8 };
  return { gpu, slot, done: recompact(gpu.device, job) };
}

Deno.test("webgpu readback: recompact compacts again with the cap rounded up to 32, reads back, frees its buffers", async () => {
  const { gpu, slot, done } = recompaction();
  const { latents, maxCount } = await done;
  assert.equal(maxCount, 8);
  assert.deepEqual(latents.map((l) => [[...l.indices], [...l.values]]), [
    [[1, 3, 6], [1.5, -2, 0.25]],
    [[0, 1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8]],
    [[], []],
  ]);
  // cap 32: indices and values 3·32·4 bytes; readback 3·(1 + 64)·4 = 780, made 784 (16s)
  assert.deepEqual(gpu.log, [
    "createBuffer b8 384 0x84",
    "createBuffer b9 384 0x84",
    "createBuffer b10 16 0x48",
    "createBuffer b11 784 0x9",
    "writeBuffer b10 0 16",
    "pushErrorScope out-of-memory",
    "pushErrorScope validation",
    "createCommandEncoder",
    "beginComputePass",
    "setPipeline",
    "createBindGroup b2,b8,b9,b5,b10",
    "setBindGroup 0 b2,b8,b9,b5,b10",
    "dispatchWorkgroups 3 1",
    "end",
    "copyBufferToBuffer b5 0 b11 0 12",
    "copyBufferToBuffer b8 0 b11 12 384",
    "copyBufferToBuffer b9 0 b11 396 384",
    "submit",
    "popErrorScope",
    "popErrorScope",
    "mapAsync b11 1 0 780",
    "unmap b11",
    "destroy b8",
    "destroy b9",
    "destroy b10",
    "destroy b11",
  ]);
  // the dims: rows padded to 128, d_in and d_sae padded, the new cap
  assert.deepEqual([...new Uint32Array(gpu.buffers[10].bytes.buffer)], [128, 32, 8, 32]);
  assert.deepEqual([...new Uint32Array(bytesOf(slot.count).buffer)], [3, 8, 0]);
  assert.ok(gpu.buffers.slice(0, 8).every((b) => !b.destroyed), "the slot's own buffers stay");
});

Deno.test("webgpu readback: a refused recompaction is a WebGpuEncodeError, its buffers freed all the same", async () => {
  const { gpu, done } = recompaction("out of memory: too big");
  await assert.rejects(done, (e) =>
    e instanceof WebGpuEncodeError &&
    e.message === "compact 3 tokens, cap 32: the device refused it: out of memory: too big");
  assert.deepEqual(gpu.buffers.map((b) => b.destroyed), [
    ...new Array(8).fill(false),
    ...new Array(4).fill(true),
  ]);
});
