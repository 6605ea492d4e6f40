import assert from "node:assert/strict";
import { firstNonFinite } from "./format.ts";

/** The index an element-by-element `Number.isFinite` scan finds (independent of the fast path). */
const reference = (data: Float32Array) => data.findIndex((v) => !Number.isFinite(v));

Deno.test("firstNonFinite: the first NaN or ±Infinity at every position and length, -1 for finite data", () => {
  const MAX = 3.4028234663852886e38; // the largest f32
  let cases = 0;
  for (let n = 0; n <= 11; n++) {
    // finite extremes: all max (the sum is far past f32's range), alternating signs, -0, subnormal
    for (const fill of [MAX, -MAX, 1.4e-45, -0, 1]) {
      const data = new Float32Array(n).fill(fill);
      if (n > 1) data[n - 1] = -fill;
      assert.equal(firstNonFinite(data), -1, `n=${n} fill=${fill}`);
      cases++;
    }
    for (let at = 0; at < n; at++) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const data = new Float32Array(n).fill(MAX);
        data[at] = bad;
        assert.equal(firstNonFinite(data), reference(data), `n=${n} ${bad} at ${at}`);
        // +Infinity and -Infinity together (their sum is NaN), the first one reported
        if (at + 1 < n) {
          data[at + 1] = -bad;
          assert.equal(firstNonFinite(data), at, `n=${n} ${bad} and ${-bad} from ${at}`);
        }
        cases++;
      }
    }
  }
  const big = new Float32Array(1 << 20).fill(MAX);
  assert.equal(firstNonFinite(big), -1, "a million f32 maxima");
  big[(1 << 20) - 1] = NaN;
  assert.equal(firstNonFinite(big), (1 << 20) - 1);
  assert.ok(cases > 200);
});
