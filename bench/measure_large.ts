/**
 * Measures building and loading the ORT encoder of a large JumpReLU SAE:
 * `deno run -A bench/measure_large.ts 2304 16384` prints one JSON line
 * with the fill, build+load and first-encode times and the process's resident
 * memory (VmRSS now, VmHWM peak) before and after. Weights are a cheap
 * deterministic pattern; W_dec is filled too so the SAE is as resident as a
 * loaded one. A third argument `--disable-prepacking` measures that option. Run one size per process: VmHWM is a process-wide high-water mark.
 *
 * @module
 */

import type { SaeWeights } from "../src/core/sae.ts";
import { createOrtEncoder } from "../src/runtime/ort_encoder.ts";

/** `VmRSS` and `VmHWM` of this process in MiB (Linux). */
export function memoryMiB(): { rss: number; peak: number } {
  const status = Deno.readTextFileSync("/proc/self/status");
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
  return { rss: Math.round(kb("VmRSS") / 1024), peak: Math.round(kb("VmHWM") / 1024) };
}

/** Fill with a cheap hash pattern in [−s, s): not random, but not structured enough to matter. */
function fill(a: Float32Array, seed: number, s: number): Float32Array {
  for (let i = 0; i < a.length; i++) {
    a[i] = ((Math.imul(i ^ seed, 0x9e3779b1) >>> 16) / 32768 - 1) * s;
  }
  return a;
}

if (import.meta.main) {
  const [dIn, dSae] = Deno.args.slice(0, 2).map(Number);
  const disablePrepacking = Deno.args[2] === "--disable-prepacking";
  const t0 = performance.now();
  const sae: SaeWeights = {
    format: "measure",
    architecture: "jumprelu",
    dIn,
    dSae,
    hookName: null,
    modelName: null,
    dtype: "float32",
    applyBDecToInput: false,
    wEnc: fill(new Float32Array(dIn * dSae), 1, 1 / Math.sqrt(dIn)),
    bEnc: fill(new Float32Array(dSae), 2, 0.1),
    wDec: fill(new Float32Array(dSae * dIn), 3, 1 / Math.sqrt(dIn)),
    bDec: fill(new Float32Array(dIn), 4, 0.1),
    threshold: fill(new Float32Array(dSae), 5, 0.5).map(Math.abs),
    source: `measure:${dIn}x${dSae}`,
  };
  const fillS = (performance.now() - t0) / 1000;
  const before = memoryMiB();
  const phases: Record<string, number> = {};
  const t1 = performance.now();
  const enc = await createOrtEncoder(sae, {
    disablePrepacking,
    onProgress: (_done, _total, phase) => {
      phases[phase] = Math.round(performance.now() - t1);
    },
  });
  const buildLoadS = (performance.now() - t1) / 1000;
  const after = memoryMiB();
  const x = fill(new Float32Array(dIn), 6, 1);
  const t2 = performance.now();
  const [latents] = await enc.encode(x, 1);
  const encodeMs = performance.now() - t2;
  await enc.close();
  console.log(JSON.stringify({
    dIn,
    dSae,
    wEncMiB: Math.round(dIn * dSae * 4 / 2 ** 20),
    fillS: +fillS.toFixed(2),
    buildLoadS: +buildLoadS.toFixed(2),
    phaseEndMs: phases,
    firstEncodeMs: +encodeMs.toFixed(1),
    active: latents.indices.length,
    rssBeforeMiB: before.rss,
    rssAfterMiB: after.rss,
    peakRssMiB: memoryMiB().peak,
  }));
}
