/** The bus contract against the in-memory bus and against NatsBus on a real nats-server. */
import { runBusContract } from "./contract_test_suite.ts";
import { MemoryBus } from "./memory_bus.ts";
import { connectNatsBus } from "./nats_bus.ts";
import { findNatsServer, startNatsServer } from "./nats_server.ts";

runBusContract({
  name: "memory",
  newBus: () => Promise.resolve({ bus: new MemoryBus(), stop: () => Promise.resolve() }),
});

const missing = (await findNatsServer()) === null ? "nats-server not installed" : undefined;

for (const transport of ["deno", "node"] as const) {
  runBusContract({
    name: `nats (${transport} transport)`,
    ...(missing ? { ignore: missing } : {}),
    newBus: async () => {
      const server = await startNatsServer();
      const bus = await connectNatsBus({ url: server.url, ackTimeoutMs: 1000, transport });
      return { bus, stop: () => server.stop() };
    },
  });
}
