import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { scanSlack, WasmScan } from "./wasm_scan.ts";

/** The f64 test the selector applies: `acc·cs·st + cb > cut`. */
function plainScan(
  acc: Int32Array,
  cs: Float64Array,
  cb: Float32Array,
  cut: number,
  st: number,
): number[] {
  const out: number[] = [];
  for (let j = 0; j < acc.length; j++) if (acc[j] * cs[j] * st + cb[j] > cut) out.push(j);
  return out;
}

/** The same test as the scan, written plainly in f32: `fl(fl(fl(fl(acc)·cs)·s) + cb) > cut`. */
function f32Scan(
  acc: Int32Array,
  cs: Float32Array,
  cb: Float32Array,
  cut: number,
  s: number,
): number[] {
  const f = Math.fround;
  const out: number[] = [];
  for (let j = 0; j < acc.length; j++) {
    if (f(f(f(f(acc[j]) * cs[j]) * f(s)) + cb[j]) > f(cut)) out.push(j);
  }
  return out;
}

Deno.test("wasm scan: the f32 SIMD test finds what the same test written plainly finds, every width", () => {
  const rng = new Rng(5);
  for (const dSae of [4, 7, 64, 1023]) {
    const scan = new WasmScan(dSae);
    const cs = Float32Array.from({ length: dSae }, () => 1e-4 * (0.5 + rng.uniform()));
    const cb = Float32Array.from({ length: dSae }, () => rng.gaussian() * 0.3);
    scan.setColumns(cs, cb);
    const region = scan.lease(3)!;
    for (let i = 0; i < region.acc.length; i++) region.acc[i] = Math.round(rng.gaussian() * 2e4);
    for (let t = 0; t < 3; t++) {
      const row = region.acc.slice(t * dSae, (t + 1) * dSae);
      const rowScale = [1, 0.37, 3.1][t]; // the token's input scale multiplies every column
      for (const cut of [-2, -0.5, 0, 1.5]) {
        const got = [...scan.row(region, t, cut, rowScale)];
        const want = f32Scan(row, cs, cb, cut, rowScale);
        assert.deepEqual(got, want, `dSae ${dSae} token ${t} cut ${cut}`);
      }
    }
    scan.release(region);
  }
});

Deno.test("wasm scan: with the slack, it keeps every column the f64 test keeps, at the edge too", () => {
  const rng = new Rng(9);
  const dSae = 4096;
  const scan = new WasmScan(dSae);
  // accumulations up to 2^25 (beyond f32's exact integers) and columns placed right at the cut
  const cs64 = Float64Array.from({ length: dSae }, () => 3e-7 * (0.5 + rng.uniform()));
  const st = Math.fround(0.8123); // the token's input scale, an f32 as the graph outputs it
  const cb = Float32Array.from({ length: dSae }, () => rng.gaussian() * 4);
  const region = scan.lease(1)!;
  const cut = -1.25;
  for (let j = 0; j < dSae; j++) {
    const exact = (cut - cb[j]) / (cs64[j] * st); // acc at which acc·cs·st + cb = cut
    region.acc[j] = Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.round(exact) + (j % 3) - 1));
  }
  scan.setColumns(cs64, cb);
  const want = plainScan(region.acc, cs64, cb, cut, st);
  assert.ok(want.length > dSae / 4, `many columns sit just above the cut (${want.length})`);
  const maxAbsBias = cb.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const loose = new Set(scan.row(region, 0, cut - scanSlack(cut, maxAbsBias), st));
  for (const j of want) {
    assert.ok(loose.has(j), `column ${j} passes the f64 test, so the scan keeps it`);
  }
  // without the slack the f32 test drops some of them: the slack is needed
  const tight = new Set(scan.row(region, 0, cut, st));
  assert.ok(want.some((j) => !tight.has(j)), "f32 rounding alone loses edge columns");
});

Deno.test("wasm scan: regions are reused, and memory does not grow under a region that is out", () => {
  const scan = new WasmScan(256);
  const a = scan.lease(8)!;
  scan.release(a);
  const b = scan.lease(4)!;
  assert.equal(b.address, a.address, "a free region large enough is reused");
  assert.equal(scan.lease(1 << 12), null, "growing while b is out would detach b's views");
  scan.release(b);
  const c = scan.lease(1 << 12);
  assert.ok(c !== null && c.acc.length === 256 << 12, "with nothing out, the memory grows");
  scan.release(c);
  assert.equal(
    scan.lease(1 << 20, 64 << 20),
    null,
    "past maxBytes: null, the caller scans in TypeScript",
  );
});
