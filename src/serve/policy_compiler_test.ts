/**
 * The reload compiler's worker: real compiles, and stand-in workers that
 * cannot start, crash, answer with an unexpected error or never answer.
 * Only a worker that cannot start falls back to compiling in-thread; the
 * others fail the compile (a reload is refused), and a compile never waits
 * longer than its timeout.
 */
import assert from "node:assert/strict";
import type { MonitorConfig } from "../config/monitor.ts";
import type { SaeWeights } from "../core/sae.ts";
import { compileMonitorPolicies, type MonitorModels } from "./components.ts";
import { Logger } from "../shared/log.ts";
import { absorptionSae } from "../demo/absorption_fixture.ts";
import { PolicyCompiler, PolicyWorkerError, WORKER_READY } from "./policy_compiler.ts";

const RULES = "version: 1\nrules:\n  - id: r1\n    title: one\n    severity: high\n" +
  "    when: { sae: s, latent: 3, above: 1 }\n";
const SIGNALS = new Map([["s", { kind: "sae" as const, dSae: 16 }]]);

/** Stand-in worker modules, written to a temporary folder. */
const STAND_INS = {
  hang: `self.postMessage(${JSON.stringify(WORKER_READY)}); self.onmessage = () => {};`,
  crash: `self.postMessage(${JSON.stringify(WORKER_READY)});
self.onmessage = () => { throw new Error("worker blew up"); };`,
  other: `self.postMessage(${JSON.stringify(WORKER_READY)});
self.onmessage = (e) => self.postMessage({ id: e.data.id, ok: false, kind: "other", name: "RangeError", message: "Maximum call stack size exceeded" });`,
  broken: `throw new Error("module failed to load");`,
} as const;

async function withStandIns(
  fn: (dir: string, url: (name: keyof typeof STAND_INS) => string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-compiler-" });
  try {
    for (const [name, code] of Object.entries(STAND_INS)) {
      await Deno.writeTextFile(`${dir}/${name}.js`, code);
    }
    await Deno.writeTextFile(`${dir}/rules.yaml`, RULES);
    await fn(dir, (name) => new URL(`file://${dir}/${name}.js`).href);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Rejects with a PolicyWorkerError of `kind`. */
async function rejectsWith(p: Promise<unknown>, kind: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof PolicyWorkerError, String(err));
    assert.equal(err.kind, kind, err.message);
    assert.match(err.message, message);
    return true;
  });
}

Deno.test("policy compiler: the real worker compiles; files with problems reject with them", () =>
  withStandIns(async (dir) => {
    const compiler = new PolicyCompiler();
    try {
      const { set } = await compiler.compile([`${dir}/rules.yaml`], SIGNALS);
      assert.deepEqual(set.rules.map((r) => r.id), ["r1"]);
      await Deno.writeTextFile(`${dir}/bad.yaml`, "version: 1\nrules:\n  - id: [broken\n");
      await assert.rejects(
        compiler.compile([`${dir}/bad.yaml`], SIGNALS),
        (err: unknown) => !(err instanceof PolicyWorkerError) && /bad\.yaml/.test(String(err)),
      );
    } finally {
      compiler.close();
    }
    await rejectsWith(compiler.compile([`${dir}/rules.yaml`], SIGNALS), "closed", /closed/);
  }));

Deno.test("policy compiler: a worker that never answers is terminated at the timeout and restarted", () =>
  withStandIns(async (dir, url) => {
    const compiler = new PolicyCompiler({ workerUrl: url("hang"), timeoutMs: 300 });
    try {
      const t0 = performance.now();
      await rejectsWith(
        compiler.compile([`${dir}/rules.yaml`], SIGNALS),
        "timeout",
        /no answer in 300 ms/,
      );
      const took = performance.now() - t0;
      assert.ok(took < 5_000, `rejected at the timeout, took ${took.toFixed(0)} ms`);
      // a new worker for the next compile (it hangs too: times out again, not at once)
      await rejectsWith(compiler.compile([`${dir}/rules.yaml`], SIGNALS), "timeout", /300 ms/);
    } finally {
      compiler.close();
    }
  }));

Deno.test("policy compiler: a crash and an unexpected error are failures, a worker that cannot load is unavailable", () =>
  withStandIns(async (dir, url) => {
    for (
      const [name, kind, message] of [
        ["crash", "failed", /policy worker failed: .*worker blew up/],
        ["other", "failed", /RangeError: Maximum call stack/],
        ["broken", "unavailable", /could not start: .*module failed to load/],
      ] as const
    ) {
      const compiler = new PolicyCompiler({ workerUrl: url(name), timeoutMs: 10_000 });
      try {
        await rejectsWith(compiler.compile([`${dir}/rules.yaml`], SIGNALS), kind, message);
      } finally {
        compiler.close();
      }
    }
    const missing = new PolicyCompiler({ workerUrl: `file://${dir}/missing.js` });
    try {
      await rejectsWith(
        missing.compile([`${dir}/rules.yaml`], SIGNALS),
        "unavailable",
        /could not start/,
      );
    } finally {
      missing.close();
    }
  }));

Deno.test("compileMonitorPolicies: in-thread only when the worker cannot start; a crash or timeout is an error", () =>
  withStandIns(async (dir, url) => {
    const config = { policies: [`${dir}/rules.yaml`] } as unknown as MonitorConfig;
    const models: MonitorModels = {
      saes: new Map([["s", { dSae: 16 } as unknown as SaeWeights]]),
      probes: new Map(),
      dIn: 4,
    };
    const logs: string[] = [];
    const log = new Logger({ write: (l) => logs.push(l), maxPerSecond: 1000 });
    const compile = async (name: keyof typeof STAND_INS) => {
      const compiler = new PolicyCompiler({ workerUrl: url(name), timeoutMs: 300 });
      try {
        return await compileMonitorPolicies(config, models, log, compiler);
      } finally {
        compiler.close();
      }
    };
    const fallback = await compile("broken");
    assert.deepEqual(fallback.rules.map((r) => r.id), ["r1"], "compiled in-thread");
    assert.ok(logs.some((l) => l.includes("policies.worker_unavailable")), logs.join("\n"));
    await rejectsWith(compile("crash"), "failed", /worker blew up/);
    await rejectsWith(compile("other"), "failed", /Maximum call stack/);
    await rejectsWith(compile("hang"), "timeout", /no answer/);
    assert.equal(
      logs.filter((l) => l.includes("policies.worker_unavailable")).length,
      1,
      "no in-thread compile after a crash, an unexpected error or a timeout",
    );
  }));

Deno.test("compileMonitorPolicies: family tests need the SAE decoder, so they compile in-thread", async () => {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-compiler-" });
  try {
    await Deno.writeTextFile(
      `${dir}/family.yaml`,
      "version: 2\nrules:\n  - id: fam\n    title: F\n    severity: low\n" +
        "    when: { sae: res, family: { of: 0, min_cosine: 0.5 }, above: 1 }\n",
    );
    const config = { policies: [`${dir}/family.yaml`] } as unknown as MonitorConfig;
    const models: MonitorModels = {
      saes: new Map([["res", absorptionSae()]]),
      probes: new Map(),
      dIn: 16,
    };
    const logs: string[] = [];
    const log = new Logger({ write: (l) => logs.push(l), maxPerSecond: 1000 });
    const compiler = new PolicyCompiler();
    try {
      const set = await compileMonitorPolicies(config, models, log, compiler);
      // the fixture's child decoder has cosine 1/√2 with the parent's
      assert.deepEqual(set.rules[0].tests[0].family?.members, [0, 1]);
      assert.deepEqual([...set.watchedLatents("res")], [0, 1]);
      assert.ok(logs.some((l) => l.includes("policies.compile_in_thread")), logs.join("\n"));
    } finally {
      compiler.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
