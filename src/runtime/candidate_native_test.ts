import assert from "node:assert/strict";
import type { SaeWeights } from "../core/sae.ts";
import { nativeProduct } from "./candidate_native.ts";
import { NativeKernelsUnavailableError } from "./native_kernels.ts";
import { missingCpuFlags } from "./native_library.ts";

const wide = { dIn: 70000, dSae: 8, architecture: "jumprelu" } as SaeWeights;
const small = { dIn: 8, dSae: 8, architecture: "jumprelu" } as SaeWeights;

Deno.test("nativeProduct: off says so; a d_in past int32's reach falls back under auto, fails under require", async () => {
  assert.deepEqual(await nativeProduct(small, "off"), {
    open: null,
    why: "execution.native_kernels is off",
  });
  const auto = await nativeProduct(wide, "auto");
  assert.equal(auto.open, null);
  assert.match(auto.why!, /d_in ≤ 65536, found 70000/);
  await assert.rejects(
    () => nativeProduct(wide, "require"),
    (e) => e instanceof NativeKernelsUnavailableError && /found 70000/.test(e.message),
  );
});

Deno.test({
  name: "nativeProduct: where the kernels load, auto and require open the product, scan and dots",
  ignore: missingCpuFlags().length > 0,
  async fn() {
    for (const setting of ["auto", "require"] as const) {
      const { open, why } = await nativeProduct(small, setting);
      assert.equal(why, undefined);
      const kernels = await open!(new Int8Array(64).fill(1));
      const acc = new Int32Array(8);
      await kernels.gemm.run(new Uint8Array(8).fill(130), 1, acc); // (130 − 128) · 1 · 8
      assert.deepEqual([...acc], new Array(8).fill(16));
      assert.equal(typeof kernels.select.run, "function");
      assert.equal(typeof kernels.dots.run, "function");
    }
  },
});
