/**
 * A stand-in for a WebGPU device in unit tests that need no adapter
 * (`../webgpu_pipelines_test.ts`, `../webgpu_readback_test.ts`): each buffer
 * holds its bytes in memory, `queue.writeBuffer` writes them at once, a
 * submitted command buffer runs its copies and dispatches in order (a
 * dispatch calls the test's `onDispatch` with what is bound), and every call
 * is written to `log` as one line, so a test can compare the calls' order.
 *
 * @module
 */

/** A buffer of the fake device: its bytes, and whether it was destroyed. */
export interface FakeBuffer {
  /** `b0`, `b1`, … in the order the buffers were made. */
  label: string;
  size: number;
  usage: number;
  bytes: Uint8Array;
  destroyed: boolean;
}

/** A bind group of the fake device: the buffers of its entries, by binding. */
export interface FakeBindGroup {
  layout: unknown;
  buffers: FakeBuffer[];
}

/** One dispatch as it runs: the pipeline and bind group set, and the workgroup counts. */
export interface FakeDispatch {
  pipeline: unknown;
  group: FakeBindGroup;
  x: number;
  y: number;
}

/** What {@linkcode fakeGpu} takes. */
export interface FakeGpuOptions {
  /** The device limits (`maxComputeWorkgroupStorageSize` 16384 unless given). */
  limits?: Record<string, number>;
  /** Runs each dispatch at submit time (a test's own kernel, in plain JS). */
  onDispatch?: (d: FakeDispatch) => void;
  /** The message of a validation error that the first popped error scope reports. */
  refuse?: string;
}

/** The fake device, its call log and its buffers. */
export interface FakeGpu {
  device: GPUDevice;
  log: string[];
  buffers: FakeBuffer[];
}

/**
 * A fake WebGPU device.
 *
 * @example
 * ```ts
 * import { fakeGpu } from "./fake_gpu.ts";
 * const gpu = fakeGpu();
 * gpu.device.createBuffer({ size: 16, usage: 0x80 });
 * console.assert(gpu.log[0] === "createBuffer b0 16 0x80");
 * ```
 */
export function fakeGpu(options: FakeGpuOptions = {}): FakeGpu {
  const log: string[] = [];
  const buffers: FakeBuffer[] = [];
  let refusal = options.refuse;
  const name = (b: unknown) => (b as FakeBuffer).label;
  const makeBuffer = (d: GPUBufferDescriptor) => {
    const buf: FakeBuffer = {
      label: `b${buffers.length}`,
      size: d.size,
      usage: d.usage,
      bytes: new Uint8Array(d.size),
      destroyed: false,
    };
    buffers.push(buf);
    log.push(`createBuffer ${buf.label} ${d.size} 0x${d.usage.toString(16)}`);
    return Object.assign(buf, {
      mapAsync(mode: number, offset: number, size: number) {
        log.push(`mapAsync ${buf.label} ${mode} ${offset} ${size}`);
        return Promise.resolve();
      },
      getMappedRange: (offset: number, size: number) =>
        buf.bytes.buffer.slice(offset, offset + size),
      unmap: () => log.push(`unmap ${buf.label}`),
      destroy() {
        log.push(`destroy ${buf.label}`);
        buf.destroyed = true;
      },
    });
  };
  const commandEncoder = () => {
    const commands: (() => void)[] = [];
    return {
      beginComputePass() {
        log.push("beginComputePass");
        let pipeline: unknown, group: FakeBindGroup | undefined;
        return {
          setPipeline(p: unknown) {
            log.push("setPipeline");
            pipeline = p;
          },
          setBindGroup(index: number, g: FakeBindGroup) {
            log.push(`setBindGroup ${index} ${g.buffers.map(name).join(",")}`);
            group = g;
          },
          dispatchWorkgroups(x: number, y = 1) {
            log.push(`dispatchWorkgroups ${x} ${y}`);
            const d = { pipeline, group: group!, x, y };
            commands.push(() => options.onDispatch?.(d));
          },
          end: () => log.push("end"),
        };
      },
      copyBufferToBuffer(src: FakeBuffer, from: number, dst: FakeBuffer, to: number, n: number) {
        log.push(`copyBufferToBuffer ${src.label} ${from} ${dst.label} ${to} ${n}`);
        commands.push(() => dst.bytes.set(src.bytes.subarray(from, from + n), to));
      },
      finish: () => commands,
    };
  };
  const device = {
    limits: { maxComputeWorkgroupStorageSize: 16384, ...options.limits },
    queue: {
      writeBuffer(buf: FakeBuffer, offset: number, data: ArrayBufferView) {
        log.push(`writeBuffer ${buf.label} ${offset} ${data.byteLength}`);
        buf.bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
      },
      submit(list: (() => void)[][]) {
        log.push("submit");
        for (const commands of list) for (const run of commands) run();
      },
    },
    createBuffer: makeBuffer,
    createCommandEncoder() {
      log.push("createCommandEncoder");
      return commandEncoder();
    },
    createBindGroup(d: { layout: unknown; entries: { resource: { buffer: FakeBuffer } }[] }) {
      const group = { layout: d.layout, buffers: d.entries.map((e) => e.resource.buffer) };
      log.push(`createBindGroup ${group.buffers.map(name).join(",")}`);
      return group;
    },
    createBindGroupLayout(d: GPUBindGroupLayoutDescriptor) {
      log.push("createBindGroupLayout");
      return { ...d };
    },
    createShaderModule(d: GPUShaderModuleDescriptor) {
      log.push("createShaderModule");
      return { ...d };
    },
    createPipelineLayout(d: GPUPipelineLayoutDescriptor) {
      log.push("createPipelineLayout");
      return { ...d };
    },
    createComputePipeline(d: GPUComputePipelineDescriptor) {
      log.push("createComputePipeline");
      return { ...d, getBindGroupLayout: (i: number) => ({ autoLayout: i }) };
    },
    pushErrorScope: (filter: string) => log.push(`pushErrorScope ${filter}`),
    popErrorScope() {
      log.push("popErrorScope");
      const message = refusal;
      refusal = undefined;
      return Promise.resolve(message === undefined ? null : { message });
    },
  };
  return { device: device as unknown as GPUDevice, log, buffers };
}
