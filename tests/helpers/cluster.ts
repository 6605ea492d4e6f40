/** TEMP: single server until the cluster harness lands. */
import { startNatsServer } from "../../src/bus/nats_server.ts";
export async function startTestCluster() {
  const s = await startNatsServer();
  return { url: s.url, urls: [s.url], stop: () => s.stop() };
}
