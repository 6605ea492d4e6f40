import assert from "node:assert/strict";
import { MicroBatcher } from "./batcher.ts";
import { childJson } from "../../tests/helpers/child_deno.ts";

const item = (tokens: number, name = "") => ({ tokens, name });

Deno.test("batcher: a full batch is released without waiting", async () => {
  const b = new MicroBatcher<ReturnType<typeof item>>({
    maxBatchTokens: 4,
    maxWaitMs: 10_000,
    maxQueueTokens: 16,
  });
  b.offer(item(2, "a"));
  b.offer(item(2, "b"));
  b.offer(item(1, "c"));
  const t0 = performance.now();
  const batch = await b.next();
  assert.ok(performance.now() - t0 < 1000);
  assert.deepEqual(batch?.map((x) => x.name), ["a", "b"]);
  assert.equal(b.queuedTokens, 1);
  b.close();
  assert.deepEqual((await b.next())?.map((x) => x.name), ["c"]);
  assert.equal(await b.next(), null);
});

Deno.test("batcher: a partial batch is released after maxWaitMs", async () => {
  const b = new MicroBatcher<ReturnType<typeof item>>({
    maxBatchTokens: 100,
    maxWaitMs: 30,
    maxQueueTokens: 200,
  });
  const t0 = performance.now();
  b.offer(item(3));
  const batch = await b.next();
  const waited = performance.now() - t0;
  assert.equal(batch?.length, 1);
  assert.ok(waited >= 25, `released after ${waited} ms, expected about 30 ms`);
  b.close();
});

Deno.test("batcher: the queue is bounded in tokens and refuses past the bound", () => {
  const b = new MicroBatcher<ReturnType<typeof item>>({
    maxBatchTokens: 4,
    maxWaitMs: 1,
    maxQueueTokens: 8,
  });
  assert.equal(b.offer(item(5)), true);
  assert.equal(b.offer(item(4)), false); // 9 > 8
  assert.equal(b.offer(item(3)), true); // 8
  assert.equal(b.offer(item(0)), true); // end markers carry no tokens
  assert.equal(b.queuedTokens, 8);
  assert.equal(b.queuedItems, 3);
  b.close();
  assert.equal(b.offer(item(0)), false);
});

Deno.test("batcher: an item larger than a batch is released on its own", async () => {
  const b = new MicroBatcher<ReturnType<typeof item>>({
    maxBatchTokens: 4,
    maxWaitMs: 1000,
    maxQueueTokens: 64,
  });
  b.offer(item(10, "big"));
  b.offer(item(1, "small"));
  assert.deepEqual((await b.next())?.map((x) => x.name), ["big"]);
  b.close();
});

Deno.test("batcher: rejects inconsistent limits", () => {
  assert.throws(
    () => new MicroBatcher({ maxBatchTokens: 8, maxWaitMs: 1, maxQueueTokens: 4 }),
    /maxQueueTokens: expected ≥ maxBatchTokens \(8\), found 4/,
  );
  assert.throws(
    () => new MicroBatcher({ maxBatchTokens: 0, maxWaitMs: 1, maxQueueTokens: 4 }),
    RangeError,
  );
});

Deno.test("batcher: an urgent item sends its batch at once, without waiting for maxWaitMs", async () => {
  const b = new MicroBatcher<{ tokens: number; id: string }>({
    maxBatchTokens: 64,
    maxWaitMs: 60_000,
    maxQueueTokens: 128,
  });
  b.offer({ tokens: 1, id: "a" });
  b.offer({ tokens: 1, id: "gated" }, true);
  const started = performance.now();
  const batch = await b.next();
  assert.deepEqual(batch?.map((i) => i.id), ["a", "gated"]);
  assert.ok(performance.now() - started < 1000, "did not wait for maxWaitMs");
  // a later, non-urgent item waits again (closing releases it)
  b.offer({ tokens: 1, id: "c" });
  let got: string[] | undefined;
  const pending = b.next().then((x) => (got = x?.map((i) => i.id)));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(got, undefined);
  b.close();
  await pending;
  assert.deepEqual(got, ["c"]);
});

Deno.test("batcher (adaptive): at a low arrival rate a partial batch goes out at once", async () => {
  const b = new MicroBatcher<{ tokens: number }>({
    maxBatchTokens: 64,
    maxWaitMs: 5000,
    maxQueueTokens: 128,
    adaptive: true,
  });
  b.offer({ tokens: 1 });
  const t0 = performance.now();
  const batch = await b.next();
  assert.equal(batch?.length, 1);
  assert.ok(performance.now() - t0 < 1000, "no wait for a batch that could not fill");
  b.close();
});

Deno.test("batcher (adaptive): while tokens pour in, it waits to fill the batch", async () => {
  const b = new MicroBatcher<{ tokens: number }>({
    maxBatchTokens: 40,
    maxWaitMs: 2000,
    maxQueueTokens: 128,
    adaptive: true,
  });
  for (let i = 0; i < 20; i++) b.offer({ tokens: 1 }); // a burst: a high rate
  assert.ok(b.arrivalRate > 1000, `rate ${b.arrivalRate} tokens/s`);
  let got: number | undefined;
  const pending = b.next().then((x) => (got = x?.length));
  await new Promise((r) => setTimeout(r, 1));
  assert.equal(got, undefined, "still waiting for the batch to fill");
  for (let i = 0; i < 20; i++) b.offer({ tokens: 1 });
  await pending;
  assert.equal(got, 40);
  b.close();
});

Deno.test("batcher (not adaptive): a partial batch waits maxWaitMs as before", async () => {
  const b = new MicroBatcher<{ tokens: number }>({
    maxBatchTokens: 64,
    maxWaitMs: 30,
    maxQueueTokens: 128,
  });
  b.offer({ tokens: 1 });
  const t0 = performance.now();
  await b.next();
  assert.ok(performance.now() - t0 >= 25, "waited for maxWaitMs");
  b.close();
});

Deno.test("batcher (adaptive): a short wait takes one turn of due I/O, not a timer", async () => {
  const b = new MicroBatcher<{ tokens: number }>({
    maxBatchTokens: 1000,
    maxWaitMs: 2,
    maxQueueTokens: 2000,
    adaptive: true,
  });
  for (let i = 0; i < 20; i++) b.offer({ tokens: 40 }); // a burst: the rate could fill it
  assert.ok(b.arrivalRate * 0.001 >= 200, `rate ${b.arrivalRate} tokens/s`);
  // what the batcher schedules while it waits: one turn of due I/O, no timer
  const scheduled = { timers: 0, immediates: 0 };
  const realTimeout = globalThis.setTimeout, realImmediate = globalThis.setImmediate;
  const t0 = performance.now();
  let timerFiredAt: number | undefined;
  const timer = setTimeout(() => timerFiredAt = performance.now(), 0);
  let batch: { tokens: number }[] | null;
  try {
    globalThis.setTimeout = ((...a: Parameters<typeof setTimeout>) => {
      scheduled.timers++;
      return realTimeout(...a);
    }) as typeof setTimeout;
    globalThis.setImmediate = ((...a: Parameters<typeof setImmediate>) => {
      scheduled.immediates++;
      return realImmediate(...a);
    }) as typeof setImmediate;
    const pending = b.next();
    b.offer({ tokens: 40 }); // arrives in the same turn: joins the batch
    globalThis.setTimeout = realTimeout;
    globalThis.setImmediate = realImmediate;
    batch = await pending;
  } finally {
    globalThis.setTimeout = realTimeout;
    globalThis.setImmediate = realImmediate;
  }
  clearTimeout(timer);
  assert.equal(batch?.length, 21);
  assert.deepEqual(scheduled, { timers: 0, immediates: 1 });
  // a 0 ms timer is due after 1 ms: it may come first only when this turn itself took that long
  // (a host that stalled the test under a loaded suite), never on a turn that did not
  assert.ok(
    timerFiredAt === undefined || timerFiredAt - t0 >= 1,
    `the batch went out before even a 0 ms timer fired (it fired ${
      (timerFiredAt ?? 0) - t0
    } ms in)`,
  );
  b.close();
});

Deno.test("batcher: frames that arrive in the same turn as an urgent one share its batch", async () => {
  // adaptive too: after a silence a lone frame is not worth waiting for, but the rest of
  // the same socket read (8 requests' decode steps) must still join the first one's batch
  for (const adaptive of [false, true]) {
    const b = new MicroBatcher<{ tokens: number; name: string }>({
      maxBatchTokens: 64,
      maxWaitMs: 1000,
      maxQueueTokens: 128,
      adaptive,
    });
    const pending = b.next();
    // one socket read hands over several gated frames in one turn
    b.offer(item(1, "a"), true);
    b.offer(item(1, "b"), true);
    b.offer(item(1, "c"), true);
    assert.deepEqual((await pending)?.map((x) => x.name), ["a", "b", "c"], `adaptive ${adaptive}`);
    b.offer(item(1, "d"), true);
    assert.deepEqual((await b.next())?.map((x) => x.name), ["d"], `adaptive ${adaptive}`);
    b.close();
    assert.equal(await b.next(), null);
  }
});

Deno.test("batcher: a taken item is not kept, while the queue still holds others", async () => {
  // items in a batch handed out must be free to die young: the queue's emptied slots must not
  // hold them until it is compacted (a frame would outlive the young generation)
  const batcher = new URL("./batcher.ts", import.meta.url).href;
  const seen = await childJson(
    `import { MicroBatcher } from "${batcher}";
    const b = new MicroBatcher({ maxBatchTokens: 4, maxWaitMs: 10_000, maxQueueTokens: 1000 });
    const refs = [];
    for (let i = 0; i < 50; i++) {
      const item = { tokens: 1, payload: new Array(64).fill(i) };
      refs.push(new WeakRef(item));
      b.offer(item);
    }
    let taken = 0;
    for (let k = 0; k < 3; k++) taken += (await b.next()).length;
    await new Promise((r) => setTimeout(r, 0)); // weak targets are kept to the end of a job
    globalThis.gc();
    console.log(JSON.stringify({
      taken,
      collected: refs.slice(0, taken).filter((r) => r.deref() === undefined).length,
      waitingKept: refs.slice(taken).filter((r) => r.deref() !== undefined).length,
      queued: b.queuedItems,
    }));`,
    "--expose-gc",
  );
  assert.deepEqual(seen, { taken: 12, collected: 12, waitingKept: 38, queued: 38 });
});

Deno.test("batcher: an urgent item offered after the queue drained still goes out at once", async () => {
  const b = new MicroBatcher<{ tokens: number; id: string }>({
    maxBatchTokens: 64,
    maxWaitMs: 60_000,
    maxQueueTokens: 128,
  });
  for (const id of ["g1", "g2", "g3"]) {
    b.offer({ tokens: 1, id }, true);
    const started = performance.now();
    const batch = await b.next(); // drains the queue: it starts over from an empty array
    assert.deepEqual(batch?.map((i) => i.id), [id]);
    assert.ok(performance.now() - started < 1000, `${id} did not wait for maxWaitMs`);
    assert.equal(b.queuedItems, 0);
  }
  b.close();
});
