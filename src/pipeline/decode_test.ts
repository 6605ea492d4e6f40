import assert from "node:assert/strict";
import { FrameError } from "../core/frame/format.ts";
import { decodeMonitorFrame, rejectionReason, requestOf, subjectPartition } from "./decode.ts";
import { D, HOOK, MODEL, raw } from "./testdata/fixtures.ts";
import { slabStats } from "../core/frame/aligned_copy.ts";

Deno.test("decode: decodeMonitorFrame accepts the monitor's model and hook, rejects others", () => {
  const expect = { model: MODEL, hook: HOOK, dIn: D };
  assert.equal(decodeMonitorFrame(raw({ tokens: 3 }), expect).tokens, 3);
  for (
    const [msg, field] of [
      [raw({ model: "llama" }), "Lw-Model"],
      [raw({ hook: "blocks.7.hook_resid_post" }), "Lw-Hook"],
    ] as const
  ) {
    assert.throws(() => decodeMonitorFrame(msg, expect), (err) => {
      assert.ok(err instanceof FrameError);
      assert.equal(err.field, field);
      assert.equal(err.requestId, "r1");
      assert.equal(err.subject, msg.subject);
      return true;
    });
  }
  assert.throws(
    () => decodeMonitorFrame(raw(), { ...expect, dIn: 3 }),
    (err) => err instanceof FrameError && err.field === "Lw-Shape",
  );
});

Deno.test("decode: rejection reasons, request ids and partitions as serve counts them", () => {
  assert.equal(rejectionReason(undefined), "decode");
  assert.equal(rejectionReason("Lw-Meta-user"), "Lw-Meta-*");
  assert.equal(rejectionReason("Lw-Seq"), "Lw-Seq");
  assert.equal(requestOf({ headers: {} }), "?");
  assert.equal(requestOf({ headers: { "Lw-Request-Id": "x".repeat(300) } }).length, 257);
  assert.equal(subjectPartition("latentwatch.tap.v1.m.h.3"), 3);
  assert.equal(subjectPartition("latentwatch.tap.v1.m.h.x"), 0);
});

Deno.test("decodeMonitorFrame: a copied frame rejected for its model or hook gives its slab room back", () => {
  // 64 KiB per frame: 64 to a 4 MiB slab, so 200 frames fill three slabs unless room comes back
  const before = slabStats();
  for (let i = 0; i < 200; i++) {
    const msg = raw({ tokens: 8192, ...(i % 2 ? { hook: "blocks.0.other" } : { model: "other" }) });
    assert.throws(
      () => decodeMonitorFrame(msg, { model: MODEL, hook: HOOK, dIn: D }, { copyData: true }),
      FrameError,
    );
  }
  const after = slabStats();
  assert.ok(after.allocated - before.allocated <= 1, JSON.stringify({ before, after }));
  assert.ok(after.reused - before.reused >= 2, JSON.stringify({ before, after }));
});
