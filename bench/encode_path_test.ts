import assert from "node:assert/strict";
import { encodePathOf } from "./encode_path.ts";

Deno.test("an encoder without path or fallbackTokens is the f32 path with no fallbacks", () => {
  assert.deepEqual(encodePathOf({ dIn: 768, dSae: 24576 }), { path: "f32", fallbackTokens: 0 });
});

Deno.test("path and fallbackTokens are read from the encoder, getters included", () => {
  class FastEncoder {
    #fallbacks = 0;
    readonly path = "int8-candidates";
    get fallbackTokens() {
      return this.#fallbacks;
    }
    encodeOnce(fellBack: number) {
      this.#fallbacks += fellBack;
    }
  }
  const enc = new FastEncoder();
  enc.encodeOnce(2);
  enc.encodeOnce(5);
  assert.deepEqual(encodePathOf(enc), { path: "int8-candidates", fallbackTokens: 7 });
});

Deno.test("values of the wrong type count as absent", () => {
  assert.deepEqual(encodePathOf({ path: 3, fallbackTokens: "7" }), {
    path: "f32",
    fallbackTokens: 0,
  });
  assert.deepEqual(encodePathOf({ fallbackTokens: NaN }), { path: "f32", fallbackTokens: 0 });
});

Deno.test("encodePathOf: the int8 path with the native kernels says so; other kernels and paths do not", () => {
  assert.equal(
    encodePathOf({ path: "int8-candidates", int8Kernel: "native-vnni" }).path,
    "int8-candidates/native",
  );
  assert.equal(
    encodePathOf({ path: "int8-candidates", int8Kernel: "onnxruntime" }).path,
    "int8-candidates",
  );
  // the tuner ran f32 for this batch size: the kernel of the other path is not named
  assert.equal(encodePathOf({ path: "f32", int8Kernel: "native-vnni" }).path, "f32");
});
