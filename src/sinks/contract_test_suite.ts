/**
 * The contract every alert sink keeps, as a test suite each sink runs
 * against a real receiver of its own (Hono-style shared tests): it
 * delivers; it bounds its queue and counts what it drops; it survives a
 * failing receiver (refused connection, HTTP 500, broker down) and delivers
 * once the receiver is back; it shuts down within its deadline, counting
 * what it gave up on.
 *
 * A sink's `contract_test.ts` calls {@linkcode runSinkContract} once.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Alert } from "../core/alert.ts";
import { ALERT } from "../core/render/test_alert.ts";
import type { AlertSink } from "./sink.ts";

/** A real destination a sink under test writes to, which the suite can break and mend. */
export interface ContractReceiver {
  /** Everything received so far, one string per message (or per line). */
  received(): string[] | Promise<string[]>;
  /** Make deliveries fail from now on (refuse connections, answer 500, stop the broker). */
  fail(): Promise<void>;
  /** Accept deliveries again. */
  heal(): Promise<void>;
  close(): Promise<void>;
}

/** What {@linkcode runSinkContract} needs to test one sink. */
export interface SinkContract {
  /** Test names start with it, e.g. `syslog`. */
  name: string;
  /** Start a receiver (healthy). */
  receiver(): Promise<ContractReceiver>;
  /** A sink writing to `rx`, queueing at most `maxQueue` alerts; not started. */
  newSink(rx: ContractReceiver, opts: { maxQueue: number }): AlertSink | Promise<AlertSink>;
  /** Skip the suite (a receiver binary missing); the reason is printed. */
  ignore?: string;
}

let serial = 0;

/** A copy of the sample alert with a unique id (what receivers are searched for). */
export function contractAlert(): Alert {
  const n = ++serial;
  return { ...ALERT, id: `c0ffee${String(n).padStart(4, "0")}${crypto.randomUUID().slice(0, 8)}` };
}

/** Resolve once `cond()` holds; fail after `ms`. */
async function until(
  cond: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
): Promise<void> {
  const end = Date.now() + ms;
  while (!await cond()) {
    if (Date.now() > end) assert.fail(`expected ${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const has = async (rx: ContractReceiver, a: Alert) =>
  (await rx.received()).some((m) => m.includes(a.id));
const hasAll = async (rx: ContractReceiver, alerts: Alert[]) => {
  const got = await rx.received();
  return alerts.every((a) => got.some((m) => m.includes(a.id)));
};
const dropped = (s: AlertSink) => Object.values(s.stats.dropped).reduce((x, y) => x + y, 0);

/**
 * Register the contract tests for one sink.
 *
 * @example
 * ```ts
 * import { StdoutSink } from "./stdout/sink.ts";
 * import { Logger } from "../shared/log.ts";
 * const lines: string[] = [];
 * let failing = false;
 * runSinkContract({
 *   name: "stdout",
 *   receiver: () => Promise.resolve({
 *     received: () => lines,
 *     fail: () => Promise.resolve(void (failing = true)),
 *     heal: () => Promise.resolve(void (failing = false)),
 *     close: () => Promise.resolve(),
 *   }),
 *   newSink: (_rx, { maxQueue }) =>
 *     new StdoutSink({
 *       maxQueue,
 *       timeoutMs: 1000,
 *       writer: { write: (p) => failing ? Promise.reject(new Error("EPIPE")) : Promise.resolve(p.length) },
 *     }, { log: new Logger({ quiet: true }) }),
 * });
 * ```
 */
export function runSinkContract(c: SinkContract): void {
  const test = (what: string, fn: () => Promise<void>) =>
    Deno.test({
      name: `sink contract: ${c.name}: ${what}`,
      ignore: c.ignore !== undefined,
      sanitizeOps: false,
      sanitizeResources: false,
      fn,
    });

  test("delivers every alert it accepts", async () => {
    const rx = await c.receiver();
    const sink = await c.newSink(rx, { maxQueue: 100 });
    try {
      await sink.start();
      const alerts = [contractAlert(), contractAlert(), contractAlert()];
      for (const a of alerts) assert.equal(sink.submit(a), true);
      await until(() => hasAll(rx, alerts), 10_000, "every alert at the receiver");
      await until(() => sink.stats.delivered >= 3, 5_000, "3 counted as delivered");
      assert.equal(dropped(sink), 0);
      assert.equal(await sink.drain(5_000), 0);
    } finally {
      await sink.close();
      await rx.close();
    }
  });

  test("bounds its queue and counts what it drops", async () => {
    const rx = await c.receiver();
    const sink = await c.newSink(rx, { maxQueue: 3 });
    try {
      await sink.start();
      await rx.fail();
      const results = Array.from({ length: 10 }, () => sink.submit(contractAlert()));
      const accepted = results.filter(Boolean).length;
      assert.ok(accepted <= 3, `expected at most 3 accepted (maxQueue), found ${accepted}`);
      assert.ok(sink.stats.queued <= 3, `expected ≤ 3 queued, found ${sink.stats.queued}`);
      assert.equal(dropped(sink), 10 - accepted, "every refused alert counted as a drop");
      assert.ok((sink.stats.dropped.queue_full ?? 0) + (sink.stats.dropped.spool_full ?? 0) > 0);
    } finally {
      await sink.drain(200);
      await sink.close();
      await rx.close();
    }
  });

  test("survives a failing receiver and delivers once it is back", async () => {
    const rx = await c.receiver();
    const sink = await c.newSink(rx, { maxQueue: 100 });
    try {
      await sink.start();
      await rx.fail();
      const a = contractAlert();
      assert.equal(sink.submit(a), true);
      // long enough for attempts to fail (a sink may also wait for its receiver to come back)
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(await has(rx, a), false);
      assert.equal(dropped(sink), 0, "nothing dropped while the receiver fails");
      await rx.heal();
      await until(() => has(rx, a), 20_000, "the alert at the mended receiver");
      assert.equal(dropped(sink), 0);
    } finally {
      await sink.close();
      await rx.close();
    }
  });

  test("shuts down within its deadline, counting what it gave up on", async () => {
    const rx = await c.receiver();
    const sink = await c.newSink(rx, { maxQueue: 100 });
    try {
      await sink.start();
      await rx.fail();
      for (let i = 0; i < 5; i++) sink.submit(contractAlert());
      const t0 = performance.now();
      const lost = await sink.drain(300);
      const took = performance.now() - t0;
      assert.ok(
        took < 300 + 1500,
        `expected drain(300) to end in time, took ${took.toFixed(0)} ms`,
      );
      assert.ok(lost >= 0 && lost <= 5);
      assert.equal(sink.stats.dropped.shutdown ?? 0, lost, "what drain gave up on is counted");
      const t1 = performance.now();
      await sink.close();
      assert.ok(performance.now() - t1 < 3000, "close() ends promptly");
    } finally {
      await sink.close();
      await rx.close();
    }
  });
}
