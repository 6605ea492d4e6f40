import assert from "node:assert/strict";
import { FrameError } from "../core/frame/format.ts";
import { decodeMonitorFrame, rejectionReason, requestOf, subjectPartition } from "./decode.ts";
import { D, HOOK, MODEL, raw } from "./testdata/fixtures.ts";

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
