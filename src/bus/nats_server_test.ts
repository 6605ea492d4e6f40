import assert from "node:assert/strict";
import { findNatsServer, freePort, startNatsServer } from "./nats_server.ts";

const haveServer = (await findNatsServer()) !== null;

/** The server's own report of itself (`/varz` on its monitoring port). */
async function varz(port: number): Promise<{ gomaxprocs: number }> {
  const res = await fetch(`http://127.0.0.1:${port}/varz`);
  return await res.json();
}

async function withMonitoredServer(
  env: Record<string, string> | undefined,
  body: (monitorPort: number) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-nats-env-" });
  const monitorPort = freePort();
  await Deno.writeTextFile(`${dir}/server.conf`, `http: "127.0.0.1:${monitorPort}"\n`);
  const server = await startNatsServer({
    configFile: `${dir}/server.conf`,
    ...(env ? { env } : {}),
  });
  try {
    await body(monitorPort);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "nats server: env reaches the broker (GOMAXPROCS=1 as its /varz reports)",
  ignore: !haveServer,
  fn: async () => {
    await withMonitoredServer({ GOMAXPROCS: "1" }, async (port) => {
      assert.equal((await varz(port)).gomaxprocs, 1);
    });
  },
});

Deno.test({
  name:
    "nats server: without env the broker takes more than one processor here (so the test above can fail)",
  ignore: !haveServer || navigator.hardwareConcurrency < 2 ||
    Deno.env.get("GOMAXPROCS") !== undefined,
  fn: async () => {
    await withMonitoredServer(undefined, async (port) => {
      assert.ok((await varz(port)).gomaxprocs > 1);
    });
  },
});
