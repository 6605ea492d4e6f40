import assert from "node:assert/strict";
import {
  CpuInfoError,
  flopPerCycleF32,
  parseCpuInfo,
  readTheoreticalF32Peak,
  theoreticalF32Peak,
} from "./cpu_peak.ts";

/** A /proc/cpuinfo of `n` logical processors, `coresOf(i)` its core id, as Linux writes it. */
function cpuinfo(opts: {
  vendor: string;
  family: number;
  model: number;
  mhz: number[];
  flags: string;
  coreIds: number[];
}): string {
  return opts.coreIds.map((core, i) =>
    [
      `processor\t: ${i}`,
      `vendor_id\t: ${opts.vendor}`,
      `cpu family\t: ${opts.family}`,
      `model\t\t: ${opts.model}`,
      `model name\t: test CPU`,
      `cpu MHz\t\t: ${opts.mhz[i].toFixed(3)}`,
      `physical id\t: 0`,
      `siblings\t: ${opts.coreIds.length}`,
      `core id\t\t: ${core}`,
      `flags\t\t: fpu sse sse2 ${opts.flags}`,
      "",
    ].join("\n")
  ).join("\n");
}

const ZEN5_VM = cpuinfo({
  vendor: "AuthenticAMD",
  family: 26,
  model: 2,
  mhz: [2096.025, 2096.025],
  flags: "avx fma avx2 avx512f avx512_bf16 avx512_vp2intersect",
  coreIds: [0, 1],
});

Deno.test("a 2-core Zen 5 VM: 2 × 64 × 2.096025 GHz, clock from cpu MHz", () => {
  const peak = theoreticalF32Peak({ cpuinfo: ZEN5_VM });
  assert.equal(peak.cores, 2);
  assert.equal(peak.flop_per_cycle, 64);
  assert.equal(peak.clock_ghz, 2.096025);
  assert.ok(Math.abs(peak.gflops - 268.2912) < 1e-9, `${peak.gflops}`); // 2·64·2.096025
  assert.match(peak.clock_source, /cpu MHz/);
  assert.match(peak.derivation, /^2 cores × 64 f32 FLOP\/cycle .* = 268\.3 GFLOP\/s$/);
});

Deno.test("cpufreq's max clock wins over cpu MHz when the kernel has it", () => {
  const peak = theoreticalF32Peak({ cpuinfo: ZEN5_VM, maxFreqKhz: 3_700_000 });
  assert.equal(peak.clock_ghz, 3.7);
  assert.ok(Math.abs(peak.gflops - 2 * 64 * 3.7) < 1e-9);
  assert.match(peak.clock_source, /cpuinfo_max_freq/);
});

Deno.test("a measured clock above the nominal one sets the peak; one below it does not", () => {
  const measured = (ghz: number) => ({ ghz, per_thread_ghz: [ghz], method: "test" });
  const above = theoreticalF32Peak({ cpuinfo: ZEN5_VM, measuredClock: measured(3.69) });
  assert.equal(above.clock_ghz, 3.69);
  assert.equal(above.nominal_clock_ghz, 2.096025);
  assert.ok(Math.abs(above.gflops - 2 * 64 * 3.69) < 1e-9);
  assert.match(above.clock_source, /^measured: test; above the nominal 2\.096 GHz/);
  const below = theoreticalF32Peak({ cpuinfo: ZEN5_VM, measuredClock: measured(1.9) });
  assert.equal(below.clock_ghz, 2.096025);
  assert.match(below.clock_source, /cpu MHz .*measured 1\.900 GHz, not above it/);
  assert.equal(theoreticalF32Peak({ cpuinfo: ZEN5_VM }).measured_clock, null);
});

Deno.test("SMT siblings count once: 4 logical processors on 2 cores", () => {
  const info = parseCpuInfo(cpuinfo({
    vendor: "GenuineIntel",
    family: 6,
    model: 85,
    mhz: [2000, 2100, 2000, 1900],
    flags: "avx fma avx2 avx512f",
    coreIds: [0, 1, 0, 1],
  }));
  assert.equal(info.cores, 2);
  assert.equal(info.mhz, 2100);
});

Deno.test("FLOP/cycle by ISA and core: Zen 4 halves AVX-512, Zen 1 halves AVX2", () => {
  const flop = (vendor: string, family: number, model: number, flags: string) =>
    flopPerCycleF32(
      parseCpuInfo(cpuinfo({ vendor, family, model, mhz: [1000], flags, coreIds: [0] })),
    ).flop;
  assert.equal(flop("AuthenticAMD", 25, 0x11, "avx fma avx2 avx512f"), 32); // Zen 4: 2×8×2
  assert.equal(flop("AuthenticAMD", 26, 2, "avx fma avx2 avx512f"), 64); // Zen 5: 2×16×2
  assert.equal(flop("GenuineIntel", 6, 85, "avx fma avx2 avx512f"), 64); // Skylake-SP: 2×16×2
  assert.equal(flop("AuthenticAMD", 23, 0x31, "avx fma avx2"), 32); // Zen 2: 2×8×2
  assert.equal(flop("AuthenticAMD", 23, 0x01, "avx fma avx2"), 16); // Zen 1: 2×4×2
  assert.equal(flop("GenuineIntel", 6, 42, "avx"), 16); // Sandy Bridge: 8 add + 8 mul
  assert.equal(flop("GenuineIntel", 6, 23, "sse4_1"), 8);
});

Deno.test("cpuinfo without processor or flags lines is a CpuInfoError naming what is missing", () => {
  assert.throws(
    () => parseCpuInfo("model name\t: x\n", "/proc/cpuinfo"),
    (e: Error) =>
      e instanceof CpuInfoError && /\/proc\/cpuinfo:1:1: .*no processor line/.test(e.message),
  );
  assert.throws(
    () => parseCpuInfo("processor\t: 0\nmodel name\t: x\n"),
    (e: Error) => e instanceof CpuInfoError && /no flags line/.test(e.message),
  );
  assert.throws(
    () => theoreticalF32Peak({ cpuinfo: "processor\t: 0\nflags\t\t: avx2 fma\n" }),
    (e: Error) => e instanceof CpuInfoError && /cpu MHz/.test(e.message),
  );
});

Deno.test({
  name: "this machine's peak is positive and its derivation names each factor",
  ignore: Deno.build.os !== "linux",
  fn: () => {
    const peak = readTheoreticalF32Peak();
    assert.ok(peak && peak.gflops > 0 && peak.cores >= 1);
    assert.match(peak.derivation, /cores × \d+ f32 FLOP\/cycle .* GHz \(.*\) = [\d.]+ GFLOP\/s/);
  },
});
