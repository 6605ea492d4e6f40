import assert from "node:assert/strict";
import { BROKER_ENV, GENERATOR_V8_FLAGS, generatorV8Flags, startBenchBroker } from "./harness.ts";
import { findNatsServer } from "../src/bus/nats_server.ts";

Deno.test("harness: the generator's V8 flags are the harness's unless E2E_LOAD_V8 names others", () => {
  assert.equal(GENERATOR_V8_FLAGS, "--single-threaded-gc");
  assert.equal(generatorV8Flags(""), GENERATOR_V8_FLAGS);
  assert.equal(generatorV8Flags("--trace-gc"), "--trace-gc");
});

Deno.test("harness: V8 accepts the generator's flags (a misspelt one stops deno at start)", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `--v8-flags=${GENERATOR_V8_FLAGS}`, "console.log('ok')"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
});

Deno.test({
  name: "harness: the bench's broker runs with one Go processor",
  // the server's environment is read from /proc
  ignore: (await findNatsServer()) === null || Deno.build.os !== "linux",
  fn: async () => {
    assert.deepEqual(BROKER_ENV, { GOMAXPROCS: "1" });
    const broker = await startBenchBroker();
    try {
      // the server's environment, as the kernel holds it
      const pid = await brokerPid(broker.port);
      const env = (await Deno.readTextFile(`/proc/${pid}/environ`)).split("\0");
      assert.ok(env.includes("GOMAXPROCS=1"), `expected GOMAXPROCS=1 in the broker's environment`);
    } finally {
      await broker.stop();
    }
  },
});

/** The pid of the server started on `port` (its command line has `-p <port>`). */
async function brokerPid(port: number): Promise<number> {
  for await (const e of Deno.readDir("/proc")) {
    if (!/^[0-9]+$/.test(e.name)) continue;
    try {
      const cmd = (await Deno.readTextFile(`/proc/${e.name}/cmdline`)).split("\0");
      const p = cmd.indexOf("-p");
      if (p >= 0 && cmd[p + 1] === String(port)) return Number(e.name);
    } catch { /* gone */ }
  }
  throw new Error(`no nats-server process listening on ${port}`);
}
