import assert from "node:assert/strict";
import { within } from "./within.ts";

Deno.test("within: the value in time, undefined once the time is up, a rejection as it is", async () => {
  assert.equal(await within(Promise.resolve("now"), 1000), "now");
  const t0 = performance.now();
  assert.equal(await within(new Promise<string>(() => {}), 30), undefined);
  assert.ok(performance.now() - t0 >= 25, "not before its time");
  await assert.rejects(within(Promise.reject(new Error("broke")), 1000), /broke/);
  // a rejection after the time is up is handled (an unhandled one would fail this test)
  let fail!: (e: Error) => void;
  const later = new Promise<string>((_, reject) => fail = reject);
  assert.equal(await within(later, 10), undefined);
  fail(new Error("too late"));
  await new Promise((r) => setTimeout(r, 20));
});
