import assert from "node:assert/strict";
import {
  assertEncodable,
  canonicalWatch,
  checkEncodeInput,
  EncoderConfigError,
  EncoderInputError,
} from "./encoder_checks.ts";
import type { SaeWeights } from "./sae.ts";
import { tiny, tinyTranscoder } from "./testdata/tiny_sae.ts";

Deno.test("assertEncodable: missing or mis-sized parameters are named errors", () => {
  const cases: [Partial<SaeWeights>, RegExp][] = [
    [{ architecture: "jumprelu" }, /jumprelu SAE needs threshold/],
    [
      { architecture: "jumprelu", threshold: new Float32Array(2) },
      /threshold should be \[3\] = 3 values, found 2/,
    ],
    [{ architecture: "topk" }, /integer k in 1..3, found undefined/],
    [{ architecture: "topk", k: 4 }, /found 4/],
    [{ architecture: "gated" }, /gated SAE needs gated.bGate/],
    [{ wEnc: new Float32Array(5) }, /wEnc should be \[2, 3\] = 6 values, found 5/],
    [{ wSkip: new Float32Array(3) }, /wSkip should be \[2, 2\] = 4 values, found 3/],
    [{ dOut: 3 }, /expected dOut 2, found 3/],
    [
      { architecture: "relu6" as never },
      /expected architecture standard, jumprelu, topk or gated, found relu6/,
    ],
    [{
      normalize: "layer_norm",
      dIn: 1,
      wEnc: new Float32Array(3),
      bDec: new Float32Array(1),
      wDec: new Float32Array(3),
    }, /expected dIn ≥ 2, found 1/],
  ];
  for (const [over, re] of cases) {
    assert.throws(() => assertEncodable(tiny(over)), (e: Error) => {
      assert.ok(e instanceof EncoderConfigError, `${re}: ${e}`);
      assert.match(e.message, re);
      return true;
    });
  }
  assertEncodable(tiny()); // the well-formed SAE passes
});

Deno.test("assertEncodable: a transcoder that subtracts b_dec is refused, as SAELens refuses it", () => {
  assertEncodable(tinyTranscoder());
  assert.throws(
    () => assertEncodable({ ...tinyTranscoder(), applyBDecToInput: true }),
    (e: Error) => {
      assert.ok(e instanceof EncoderConfigError && e instanceof TypeError);
      assert.match(e.message, /expected applyBDecToInput false, found true/);
      return true;
    },
  );
});

Deno.test("checkEncodeInput: token count and length, with what was expected and found", () => {
  assert.equal(checkEncodeInput(new Float32Array(8), 2, 4), 8);
  assert.equal(checkEncodeInput(new Float32Array(9), 2, 4), 8, "a longer buffer is fine");
  assert.equal(checkEncodeInput(new Float32Array(0), 0, 4), 0);
  for (const tokens of [-1, 1.5, NaN, 2 ** 53]) {
    assert.throws(() => checkEncodeInput(new Float32Array(8), tokens, 4), (e: Error) => {
      assert.ok(e instanceof EncoderInputError && e instanceof RangeError);
      assert.match(e.message, /non-negative integer token count/);
      return true;
    });
  }
  assert.throws(
    () => checkEncodeInput(new Float32Array(7), 2, 4),
    /expected at least 2 × 4 = 8 values, found 7/,
  );
});

Deno.test("canonicalWatch: sorted, without duplicates, every index below dSae", () => {
  assert.deepEqual([...canonicalWatch(new Uint32Array([9, 5, 1, 5, 0]), 10)], [0, 1, 5, 9]);
  assert.deepEqual([...canonicalWatch(new Uint32Array([]), 10)], []);
  // numeric order, not the string order a plain Array#sort would give
  assert.deepEqual([...canonicalWatch(new Uint32Array([10, 9, 100]), 101)], [9, 10, 100]);
  assert.throws(() => canonicalWatch(new Uint32Array([2, 10]), 10), (e: Error) => {
    assert.ok(e instanceof EncoderInputError);
    assert.match(e.message, /watched latent 10 is out of range: expected < 10/);
    return true;
  });
});
