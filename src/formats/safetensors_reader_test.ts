import assert from "node:assert/strict";
import { f32ToBf16, f32ToF16 } from "../core/dtype.ts";
import { SafetensorsError } from "./safetensors.ts";
import { SafetensorsReader } from "./safetensors_reader.ts";
import { writeSafetensors } from "./safetensors_writer.ts";
import { rearrange } from "./tensor_layout.ts";

Deno.test("SafetensorsReader reads ranges from disk: as stored, transposed, a middle-axis slice, every float dtype", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/t.safetensors`;
    // Rows bigger than a 16 MiB chunk would need many reads; 3000 × 3001 bf16 ≈ 18 MB crosses one boundary.
    const [R, C] = [3000, 3001];
    const big = new Float32Array(R * C);
    for (let i = 0; i < big.length; i++) big[i] = ((i * 7) % 251) / 4 - 32; // 8 significant bits: exact in bf16
    const small = new Float32Array([1.5, -2, 0.25, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const bits = (v: Float32Array, d: "f16" | "bf16") =>
      new Uint8Array((d === "f16" ? f32ToF16(v) : f32ToBf16(v)).buffer);
    await Deno.writeFile(
      path,
      writeSafetensors({
        big: { dtype: "BF16", shape: [R, C], data: bits(big, "bf16") },
        f32: { dtype: "F32", shape: [3, 4], data: new Uint8Array(small.buffer) },
        f16: { dtype: "F16", shape: [2, 3, 2], data: bits(small, "f16") },
        f64: { dtype: "F64", shape: [12], data: new Uint8Array(Float64Array.from(small).buffer) },
      }),
    );
    const r = await SafetensorsReader.open(path);
    try {
      assert.deepEqual([...r.entries.keys()], ["big", "f32", "f16", "f64"]);
      let bytes = 0;
      const wide = await r.readF32("big", "as-stored", (n) => (bytes += n));
      assert.equal(bytes, R * C * 2);
      // A plain loop: node:assert's deepEqual is very slow on millions of elements.
      const same = (a: Float32Array, b: Float32Array) =>
        a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
      assert.ok(same(wide, big));
      const t = await r.readF32("big", "transposed");
      assert.ok(same(t, rearrange(big, [R, C], "transposed")));
      assert.equal(t[5 * R + 7], big[7 * C + 5]);
      assert.deepEqual(await r.readF32("f32"), small);
      assert.deepEqual([...(await r.readF32("f32", "transposed"))], [
        1.5,
        4,
        8,
        -2,
        5,
        9,
        0.25,
        6,
        10,
        3,
        7,
        11,
      ]);
      // [2, 3, 2][:, 1, :] = rows (0.25, 3) and (8, 9)
      assert.deepEqual([...(await r.readF32("f16", { select: 1 }))], [0.25, 3, 8, 9]);
      assert.deepEqual(await r.readF32("f64"), small);
      await assert.rejects(r.readF32("f32", { select: 0 }), SafetensorsError);
      await assert.rejects(r.readF32("nope"), /no tensor 'nope'/);
    } finally {
      r.close();
    }
    // Truncated: the header is checked against the file size before any tensor is read.
    const whole = await Deno.readFile(path);
    await Deno.writeFile(path, whole.subarray(0, whole.byteLength - 100));
    await assert.rejects(SafetensorsReader.open(path), (e: unknown) => {
      assert.ok(e instanceof SafetensorsError);
      assert.match(e.message, /t\.safetensors: tensor '\w+'.*out of range.*truncated/);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
