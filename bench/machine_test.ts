import assert from "node:assert/strict";
import { machineHeader, machineRecord } from "./machine.ts";
import { theoreticalF32Peak } from "./cpu_peak.ts";

const ZEN4_VM = [0, 1].map((i) =>
  `processor\t: ${i}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n` +
  `cpu MHz\t\t: 2596.130\nphysical id\t: 0\ncore id\t\t: ${i}\nflags\t\t: fma avx2 avx512f\n`
).join("\n");

function header(gemm: number, measuredGhz: number | null): string[] {
  const theoretical = theoreticalF32Peak({
    cpuinfo: ZEN4_VM,
    measuredClock: measuredGhz === null
      ? null
      : { ghz: measuredGhz, per_thread_ghz: [measuredGhz, measuredGhz], method: "test" },
  });
  return machineHeader(machineRecord({
    peaks: { onnxruntime: gemm, numpy: gemm, peak: gemm, shapes: [] },
    theoretical,
    numpy: "2.4.6",
    numpyBlas: null,
    onnxruntime: "1.30.0",
    nativeKernels: { available: false, reason: "test" },
    load: { start: null, end: null },
    quick: true,
  }));
}

Deno.test("the header warns when a measured GEMM beats the theoretical peak, and only then", () => {
  // the Zen 4 guest of 2026-12-07: 191 GFLOP/s measured, 2 × 32 × 2.596 = 166 on the nominal clock
  const nominalOnly = header(191, null);
  assert.ok(
    nominalOnly.some((l) => /^WARNING: a measured GEMM beat the theoretical peak \(115%\)/.test(l)),
  );
  const measured = header(191, 3.7); // 2 × 32 × 3.7 = 236.8
  assert.ok(!measured.some((l) => l.startsWith("WARNING")), measured.join("\n"));
  assert.ok(measured.some((l) => / = 236\.8 GFLOP\/s$/.test(l)), measured.join("\n"));
  assert.ok(measured.some((l) => /onnxruntime 191\.0 GFLOP\/s \(81% of theoretical\)/.test(l)));
});
