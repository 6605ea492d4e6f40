import assert from "node:assert/strict";
import { ByteSlab } from "../core/byte_slab.ts";
import { frameHeaders } from "../core/frame/encode.ts";
import { encodedBlockOf } from "../bus/header_template.ts";
import { encodeHeaderBlock } from "../bus/nats_headers.ts";
import {
  type FrameKey,
  rememberStepHeaders,
  type StepHeaders,
  templatedHeaders,
} from "./step_headers.ts";

const slab = new ByteSlab();
const base = {
  model: "m",
  hook: "blocks.1.hook_resid_post",
  requestId: "r-1",
  dtype: "f32",
} as const;
/** The reference: the headers `frameHeaders` makes for the step (what the tap sends without a template). */
const reference = (key: FrameKey, position: number, seq: number) =>
  frameHeaders({ ...base, ...key, position, seq }, key.tokens, key.dModel);

/** Steps through the cache as the tap does: a template's headers, else `frameHeaders`. */
function step(last: StepHeaders | undefined, key: FrameKey, position: number, seq: number) {
  const t = templatedHeaders(last, key, position, seq, key.tokens * key.dModel * 4, 1 << 20);
  const headers = t ?? reference(key, position, seq);
  return { templated: t !== null, headers, next: rememberStepHeaders(last, key, headers, slab) };
}

Deno.test("step headers: a template from the second like frame on; each one the reference's headers and block", () => {
  const key: FrameKey = { tokens: 1, dModel: 768, phase: "decode", meta: { team: "a" } };
  let last: StepHeaders | undefined;
  const used: boolean[] = [];
  for (let i = 0; i < 12; i++) {
    const pos = 8 + i * 97; // digits change in length
    const r = step(last, key, pos, i * 1001);
    used.push(r.templated);
    assert.deepEqual(Object.entries(r.headers), Object.entries(reference(key, pos, i * 1001)));
    if (r.templated) {
      const ref = encodeHeaderBlock(reference(key, pos, i * 1001));
      assert.deepEqual(encodedBlockOf(r.headers), ref);
    }
    last = r.next;
  }
  assert.deepEqual(used.slice(0, 3), [false, false, true]);
  assert.ok(used.slice(2).every((u) => u));
});

Deno.test("step headers: any other shape or extra goes back to frameHeaders, also a meta changed in place", () => {
  const meta = { team: "a" };
  const key: FrameKey = { tokens: 1, dModel: 768, phase: "decode", meta };
  let last = step(step(undefined, key, 0, 0).next, key, 1, 1).next;
  assert.ok(step(last, key, 2, 2).templated);
  const others: FrameKey[] = [
    { ...key, tokens: 2 },
    { ...key, dModel: 512 },
    { ...key, phase: "prefill" },
    { ...key, tenant: "t" },
    { ...key, meta: { team: "b" } },
    { ...key, meta: undefined },
    { ...key, traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
    { ...key, tracestate: "a=b" },
  ];
  for (const other of others) assert.equal(step(last, other, 2, 2).templated, false);
  assert.ok(
    step(last, { ...key, meta: { team: "a" } }, 2, 2).templated,
    "equal meta, other object",
  );
  const two: FrameKey = { ...key, meta: { a: "1", b: "2" } };
  const l1 = step(step(undefined, two, 0, 0).next, two, 1, 1).next;
  assert.ok(step(l1, two, 2, 2).templated);
  const swapped = step(l1, { ...two, meta: { b: "2", a: "1" } }, 2, 2);
  assert.equal(
    swapped.templated,
    false,
    "the same entries in another order: headers in that order",
  );
  assert.deepEqual(Object.keys(swapped.headers).slice(-2), ["Lw-Meta-b", "Lw-Meta-a"]);
  meta.team = "changed";
  const r = step(last, key, 3, 3);
  assert.equal(r.templated, false, "the key kept a copy of the meta it was made with");
  assert.equal(r.headers["Lw-Meta-team"], "changed");
  last = r.next;
  // not a count, or past the max payload: no template (frameHeaders says why, or the tap splits)
  assert.equal(templatedHeaders(last, key, -1, 0, 0, 1 << 20), null);
  assert.equal(templatedHeaders(last, key, 0, 1.5, 0, 1 << 20), null);
  const l2 = step(last, key, 4, 4).next;
  assert.ok(templatedHeaders(l2, key, 5, 5, 3072, 1 << 20));
  assert.equal(templatedHeaders(l2, key, 5, 5, 3072, 3072 + 100), null);
});
