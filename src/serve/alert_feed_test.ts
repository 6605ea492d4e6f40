import assert from "node:assert/strict";
import {
  AlertFeed,
  AlertFeedClientLimitError,
  AlertFeedFullError,
  AlertFilterError,
  matchesAlert,
  parseAlertFilter,
} from "./alert_feed.ts";
import type { Alert } from "../core/alert.ts";
import { sampleAlert } from "../../tests/helpers/live_alerts.ts";
import { waitUntil } from "../../tests/helpers/stream.ts";

Deno.test("alert filter: severities, minimum severity, policies, models", () => {
  const high = sampleAlert({ severity: "high" });
  const low = sampleAlert({ severity: "low", model: "llama", rule: "pii" });
  assert.deepEqual(parseAlertFilter({ severity: "high, CRITICAL" }), {
    severities: ["high", "critical"],
  });
  assert.ok(matchesAlert(high, parseAlertFilter({ severity: "high,critical" })));
  assert.ok(!matchesAlert(low, parseAlertFilter({ severity: "high,critical" })));
  assert.ok(matchesAlert(high, parseAlertFilter({ minSeverity: "medium" })));
  assert.ok(!matchesAlert(low, parseAlertFilter({ minSeverity: "medium" })));
  assert.ok(matchesAlert(low, parseAlertFilter({ policy: "x,pii" })));
  assert.ok(!matchesAlert(high, parseAlertFilter({ policy: "pii" })));
  assert.ok(matchesAlert(low, parseAlertFilter({ model: "llama" })));
  assert.ok(!matchesAlert(high, parseAlertFilter({ model: "llama" })));
  assert.ok(matchesAlert(low, parseAlertFilter({})), "an empty filter matches all");
  assert.throws(() => parseAlertFilter({ severity: "urgent" }), AlertFilterError);
  assert.throws(() => parseAlertFilter({ minSeverity: "nope" }), /unknown severity 'nope'/);
  assert.throws(
    () => parseAlertFilter({ severity: "high", minSeverity: "low" }),
    /either severity or min-severity/,
  );
});

Deno.test("alert feed: fan-out to matching subscribers, in order, after publish returns", async () => {
  const feed = new AlertFeed();
  const all: string[] = [];
  const critical: string[] = [];
  const offAll = feed.subscribe({}, (a) => void all.push(a.requestId));
  const offCrit = feed.subscribe(
    { severities: ["critical"] },
    (a) => void critical.push(a.requestId),
  );
  feed.publish(sampleAlert({ requestId: "r1", severity: "high" }));
  assert.deepEqual(all, [], "no callback runs inside publish");
  feed.publish(sampleAlert({ requestId: "r2", severity: "critical" }));
  await waitUntil(() => all.length === 2, "both alerts delivered");
  assert.deepEqual(all, ["r1", "r2"]);
  assert.deepEqual(critical, ["r2"]);
  offAll();
  offAll(); // idempotent
  feed.publish(sampleAlert({ requestId: "r3", severity: "critical" }));
  await waitUntil(() => critical.length === 2, "third alert");
  assert.deepEqual(all, ["r1", "r2"], "an unsubscribed callback gets nothing more");
  offCrit();
  assert.deepEqual(feed.stats, {
    subscribers: 0,
    published: 3,
    delivered: 4,
    lagged: 0,
    failed: 0,
  });
});

Deno.test("alert feed: a slow subscriber lags (oldest dropped, counted) and never blocks the rest", async () => {
  const feed = new AlertFeed({ maxQueue: 3 });
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const slow: { id: string; missed: number }[] = [];
  const fast: string[] = [];
  feed.subscribe({}, async (a, { missed }) => {
    slow.push({ id: a.requestId, missed });
    await gate; // stuck, like an SSE client that stopped reading
  });
  feed.subscribe({}, (a) => void fast.push(a.requestId));
  const t0 = performance.now();
  for (let i = 0; i < 10; i++) {
    feed.publish(sampleAlert({ requestId: `r${i}` }));
    await Promise.resolve(); // let the first delivery start
  }
  assert.ok(performance.now() - t0 < 100, "publish did not wait for the slow subscriber");
  await waitUntil(() => fast.length === 10, "fast subscriber got every alert");
  // slow took r0 and is stuck on it; its queue of 3 kept r7..r9 and lost r1..r6
  assert.equal(feed.stats.lagged, 6);
  release();
  await waitUntil(() => slow.length === 4, "slow subscriber drained");
  assert.deepEqual(slow, [
    { id: "r0", missed: 0 },
    { id: "r7", missed: 6 },
    { id: "r8", missed: 0 },
    { id: "r9", missed: 0 },
  ]);
});

Deno.test("alert feed: a throwing subscriber is removed and counted; the cap refuses extra subscribers", async () => {
  const feed = new AlertFeed({ maxSubscribers: 2 });
  const got: Alert[] = [];
  feed.subscribe({}, () => {
    throw new Error("client gone");
  });
  feed.subscribe({}, (a) => void got.push(a));
  assert.throws(() => feed.subscribe({}, () => {}), AlertFeedFullError);
  feed.publish(sampleAlert());
  await waitUntil(() => feed.stats.failed === 1 && got.length === 1, "failure counted");
  assert.equal(feed.stats.subscribers, 1);
  feed.subscribe({}, () => {}); // room again
});

Deno.test("AlertFeed: close() resolves `closed` and drops the subscribers", async () => {
  const feed = new AlertFeed();
  let got = 0;
  feed.subscribe({}, () => {
    got++;
  });
  let closed = false;
  feed.closed.then(() => closed = true);
  feed.close();
  await Promise.resolve();
  assert.equal(closed, true);
  assert.equal(feed.stats.subscribers, 0);
});

Deno.test("alert feed: one client gets at most maxPerClient subscriptions; others are not affected", async () => {
  const feed = new AlertFeed({ maxPerClient: 2, maxSubscribers: 10 });
  const a1 = feed.subscribe({}, () => {}, { client: "10.0.0.1" });
  feed.subscribe({}, () => {
    throw new Error("gone");
  }, { client: "10.0.0.1" });
  assert.throws(
    () => feed.subscribe({}, () => {}, { client: "10.0.0.1" }),
    (e) =>
      e instanceof AlertFeedClientLimitError &&
      /client 10\.0\.0\.1: expected at most 2 live streams/.test(e.message),
  );
  feed.subscribe({}, () => {}, { client: "10.0.0.2" }); // another address has its own slots
  a1();
  a1(); // idempotent: frees one slot, not two
  feed.subscribe({}, () => {}, { client: "10.0.0.1" });
  assert.throws(
    () => feed.subscribe({}, () => {}, { client: "10.0.0.1" }),
    AlertFeedClientLimitError,
  );
  // the throwing subscriber is removed on its first alert, which frees its slot
  feed.publish(sampleAlert());
  await waitUntil(() => feed.stats.failed === 1, "failure counted");
  feed.subscribe({}, () => {}, { client: "10.0.0.1" });
  assert.equal(feed.stats.subscribers, 3);
});
