import assert from "node:assert/strict";
import { DeliveryQueue, PermanentDeliveryError } from "./queue.ts";

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

Deno.test("DeliveryQueue: delivers in order in batches, drain resolves with 0", async () => {
  const got: number[][] = [];
  const q = new DeliveryQueue<number>(async (batch) => {
    await tick();
    got.push([...batch]);
  }, { maxQueue: 100, timeoutMs: 1000, maxBatch: 3 });
  for (let i = 0; i < 7; i++) assert.equal(q.submit(i), true);
  assert.equal(await q.drain(2000), 0);
  assert.deepEqual(got.flat(), [0, 1, 2, 3, 4, 5, 6]);
  assert.ok(got.every((b) => b.length <= 3));
  assert.deepEqual(q.stats, { queued: 0, delivered: 7, dropped: {}, retries: 0 });
  assert.equal(q.submit(8), false, "closed after drain");
  assert.deepEqual(q.stats.dropped, { shutdown: 1 });
});

Deno.test("DeliveryQueue: full queue drops at once without waiting (queue_full)", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const q = new DeliveryQueue<number>(() => gate, { maxQueue: 2, timeoutMs: 5000 });
  const t0 = performance.now();
  const accepted = [1, 2, 3, 4].map((i) => q.submit(i));
  assert.ok(performance.now() - t0 < 50, "submit never blocks");
  assert.deepEqual(accepted, [true, true, false, false]);
  assert.deepEqual(q.stats.dropped, { queue_full: 2 });
  release();
  assert.equal(await q.drain(1000), 0);
  assert.equal(q.stats.delivered, 2);
});

Deno.test("DeliveryQueue: retries with doubling backoff, then retries_exhausted", async () => {
  const times: number[] = [];
  const retries: number[] = [];
  const q = new DeliveryQueue<string>(() => {
    times.push(performance.now());
    return Promise.reject(new Error("connection refused"));
  }, {
    maxQueue: 10,
    timeoutMs: 1000,
    maxAttempts: 4,
    initialBackoffMs: 20,
    maxBackoffMs: 50,
    onRetry: (_a, delay) => retries.push(delay),
  });
  q.submit("a");
  assert.equal(await q.drain(2000), 0);
  assert.equal(times.length, 4);
  assert.deepEqual(retries, [20, 40, 50]);
  for (let i = 1; i < times.length; i++) {
    assert.ok(times[i] - times[i - 1] >= retries[i - 1] - 2, `gap ${i} at least its backoff`);
  }
  assert.deepEqual(q.stats, {
    queued: 0,
    delivered: 0,
    dropped: { retries_exhausted: 1 },
    retries: 3,
  });
});

Deno.test("DeliveryQueue: a permanent failure drops with its reason, no retry", async () => {
  let calls = 0;
  const drops: string[] = [];
  const q = new DeliveryQueue<string>(() => {
    calls++;
    throw new PermanentDeliveryError("rejected", "HTTP 400");
  }, {
    maxQueue: 10,
    timeoutMs: 1000,
    maxAttempts: 5,
    onDrop: (_i, r, e) => drops.push(`${r}:${e}`),
  });
  q.submit("a");
  await q.drain(1000);
  assert.equal(calls, 1);
  assert.deepEqual(q.stats.dropped, { rejected: 1 });
  assert.deepEqual(drops, ["rejected:HTTP 400"]);
});

Deno.test("DeliveryQueue: an attempt that ignores its signal still times out and retries", async () => {
  let calls = 0;
  let aborted = 0;
  const q = new DeliveryQueue<string>((_b, signal) => {
    calls++;
    signal.addEventListener("abort", () => aborted++);
    return calls === 1 ? new Promise(() => {}) : Promise.resolve();
  }, { maxQueue: 10, timeoutMs: 30, initialBackoffMs: 1 });
  q.submit("a");
  assert.equal(await q.drain(1000), 0);
  assert.equal(calls, 2);
  assert.equal(aborted, 1);
  assert.deepEqual(q.stats, { queued: 0, delivered: 1, dropped: {}, retries: 1 });
});

Deno.test("DeliveryQueue: Retry-After hint replaces the backoff (capped)", async () => {
  const delays: number[] = [];
  let calls = 0;
  const q = new DeliveryQueue<string>(() => {
    if (++calls === 1) {
      return Promise.reject(Object.assign(new Error("HTTP 429"), { retryAfterMs: 10_000 }));
    }
    return Promise.resolve();
  }, {
    maxQueue: 10,
    timeoutMs: 1000,
    initialBackoffMs: 5,
    maxBackoffMs: 15,
    onRetry: (_a, d) => delays.push(d),
  });
  q.submit("a");
  assert.equal(await q.drain(1000), 0);
  assert.deepEqual(delays, [15]);
});

Deno.test("DeliveryQueue: drain gives up after its timeout and counts shutdown", async () => {
  let aborts = 0;
  const q = new DeliveryQueue<number>((_b, signal) =>
    new Promise((_, reject) => {
      signal.addEventListener("abort", () => {
        aborts++;
        reject(signal.reason);
      });
    }), { maxQueue: 10, timeoutMs: 60_000 });
  q.submit(1);
  q.submit(2);
  q.submit(3);
  const t0 = performance.now();
  assert.equal(await q.drain(50), 3);
  assert.ok(performance.now() - t0 < 1000);
  assert.equal(aborts, 1, "the attempt in flight is aborted");
  assert.deepEqual(q.stats, { queued: 0, delivered: 0, dropped: { shutdown: 3 }, retries: 0 });
});

Deno.test("DeliveryQueue: abandon during a backoff sleep ends the sleep", async () => {
  const q = new DeliveryQueue<number>(
    () => Promise.reject(new Error("down")),
    { maxQueue: 10, timeoutMs: 1000, initialBackoffMs: 60_000 },
  );
  q.submit(1);
  await tick(20);
  assert.equal(q.stats.retries, 1);
  assert.equal(q.abandon(), 1);
  assert.deepEqual(q.stats.dropped, { shutdown: 1 });
});

Deno.test("DeliveryQueue: concurrency runs several batches at once", async () => {
  let running = 0;
  let most = 0;
  const q = new DeliveryQueue<number>(async () => {
    most = Math.max(most, ++running);
    await tick(10);
    running--;
  }, { maxQueue: 100, timeoutMs: 1000, concurrency: 4 });
  for (let i = 0; i < 12; i++) q.submit(i);
  assert.equal(await q.drain(2000), 0);
  assert.equal(most, 4);
  assert.equal(q.stats.delivered, 12);
});

Deno.test("DeliveryQueue: options are checked", () => {
  assert.throws(() => new DeliveryQueue(() => Promise.resolve(), { maxQueue: 0, timeoutMs: 1 }), {
    name: "RangeError",
    message: "expected maxQueue ≥ 1, found 0",
  });
  assert.throws(() => new DeliveryQueue(() => Promise.resolve(), { maxQueue: 1, timeoutMs: 0 }), {
    name: "RangeError",
  });
});
