import assert from "node:assert/strict";
import { Logger } from "../shared/log.ts";
import {
  startSteps,
  StartupAbortedError,
  StartupStepError,
  type Step,
  stopSteps,
} from "./steps.ts";

/** A logger whose lines are kept for the assertions. */
function captured(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: new Logger({ write: (l) => lines.push(l) }), lines };
}

/** A step that records its start and stop in `order`. */
function recording(name: string, order: string[], fail?: "start" | "stop"): Step<unknown> {
  return {
    name,
    start: () => {
      order.push(`start ${name}`);
      if (fail === "start") throw new Error(`${name} cannot start`);
    },
    stop: () => {
      order.push(`stop ${name}`);
      if (fail === "stop") throw new Error(`${name} cannot stop`);
    },
  };
}

Deno.test("steps: start in order, stop in reverse, each start logged with its time", async () => {
  const order: string[] = [];
  const { log, lines } = captured();
  const started = await startSteps(
    [recording("a", order), recording("b", order), recording("c", order)],
    {},
    { log, now: () => 0 },
  );
  assert.deepEqual(started.names, ["a", "b", "c"]);
  assert.deepEqual(lines, [
    "info startup.step name=a ms=0",
    "info startup.step name=b ms=0",
    "info startup.step name=c ms=0",
  ]);
  assert.deepEqual(await started.stop(), []);
  assert.deepEqual(order, ["start a", "start b", "start c", "stop c", "stop b", "stop a"]);
  // once: a second stop returns the same result and stops nothing again
  await started.stop();
  assert.equal(order.length, 6);
});

Deno.test("steps: a failure mid-start undoes the started steps (and itself) in reverse", async () => {
  const order: string[] = [];
  const { log, lines } = captured();
  const err = await startSteps(
    [recording("a", order), recording("b", order), recording("c", order, "start"), {
      name: "d",
      start: () => void order.push("start d"),
    }],
    {},
    { log },
  ).then(() => null, (e) => e);
  assert.ok(err instanceof StartupStepError);
  assert.equal(err.step, "c");
  assert.equal((err.cause as Error).message, "c cannot start");
  assert.match(err.message, /start-up step "c" failed: c cannot start/);
  assert.deepEqual(order, ["start a", "start b", "start c", "stop c", "stop b", "stop a"]);
  assert.ok(lines.some((l) => l.startsWith("error startup.step_failed name=c")), lines.join("\n"));
});

Deno.test("steps: a failing stop does not stop the others; failures are returned and logged", async () => {
  const order: string[] = [];
  const { log, lines } = captured();
  const started = await startSteps(
    [recording("a", order), recording("b", order, "stop"), recording("c", order, "stop")],
    {},
    { log },
  );
  const failures = await started.stop();
  assert.deepEqual(order.slice(3), ["stop c", "stop b", "stop a"]);
  assert.deepEqual(failures.map((f) => f.step), ["c", "b"]);
  assert.equal((failures[0].error as Error).message, "c cannot stop");
  assert.ok(
    lines.includes('error shutdown.step_failed name=c error="c cannot stop"'),
    lines.join("\n"),
  );
  assert.ok(lines.includes('error shutdown.step_failed name=b error="b cannot stop"'));
});

Deno.test("steps: a failing undo during a failed start does not hide the start-up error", async () => {
  const order: string[] = [];
  const { log } = captured();
  await assert.rejects(
    startSteps(
      [recording("a", order), recording("b", order, "stop"), recording("c", order, "start")],
      {},
      { log },
    ),
    (e: unknown) => e instanceof StartupStepError && e.step === "c",
  );
  assert.deepEqual(order.slice(3), ["stop c", "stop b", "stop a"]);
});

Deno.test("stopSteps: steps without a stop are skipped; async stops are awaited in turn", async () => {
  const order: string[] = [];
  const ctx = { open: 2 };
  const failures = await stopSteps<typeof ctx>(
    [
      {
        name: "x",
        start: () => {},
        stop: async (c) => {
          await new Promise((r) => setTimeout(r, 5));
          order.push(`x sees ${c.open}`);
          c.open--;
        },
      },
      { name: "y", start: () => {} },
      {
        name: "z",
        start: () => {},
        stop: async (c) => {
          await new Promise((r) => setTimeout(r, 10));
          order.push(`z sees ${c.open}`);
          c.open--;
        },
      },
    ],
    ctx,
    { log: captured().log },
  );
  assert.deepEqual(failures, []);
  assert.deepEqual(order, ["z sees 2", "x sees 1"]);
});

Deno.test("steps: an abort during a step's wait stops the started steps in reverse, no error logged", async () => {
  const order: string[] = [];
  const { log, lines } = captured();
  const stop = new AbortController();
  const waiting: Step<unknown> = {
    name: "wait",
    start: () =>
      new Promise((_, reject) => {
        order.push("start wait");
        stop.signal.addEventListener("abort", () => reject(new Error("aborted")));
      }),
    stop: () => void order.push("stop wait"),
  };
  const starting = startSteps([recording("a", order), waiting, recording("c", order)], {}, {
    log,
    signal: stop.signal,
  });
  await new Promise((r) => setTimeout(r, 20));
  stop.abort();
  const err = await starting.then(() => null, (e) => e);
  assert.ok(err instanceof StartupAbortedError, String(err));
  assert.equal(err.step, "wait");
  assert.deepEqual(order, ["start a", "start wait", "stop wait", "stop a"]);
  assert.ok(lines.some((l) => /(^| )info startup\.stopped during=wait$/.test(l)), lines.join("\n"));
  assert.ok(!lines.some((l) => /(^| )error /.test(l)), lines.join("\n"));
});

Deno.test("steps: an abort between steps starts no further step", async () => {
  const order: string[] = [];
  const { log, lines } = captured();
  const stop = new AbortController();
  const aborting: Step<unknown> = {
    name: "b",
    start: () => void stop.abort(),
    stop: () => void order.push("stop b"),
  };
  const err = await startSteps([recording("a", order), aborting, recording("c", order)], {}, {
    log,
    signal: stop.signal,
  }).then(() => null, (e) => e);
  assert.ok(err instanceof StartupAbortedError);
  assert.equal(err.step, "c");
  assert.deepEqual(order, ["start a", "stop b", "stop a"]);
  assert.ok(lines.some((l) => /(^| )info startup\.stopped before=c$/.test(l)), lines.join("\n"));
});
