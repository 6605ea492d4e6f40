/** The sink contract against a real TCP syslog collector on 127.0.0.1 (refused while failing). */
import { Logger } from "../../shared/log.ts";
import { parseFrames } from "../../../tests/helpers/receivers.ts";
import { type ContractReceiver, runSinkContract } from "../contract_test_suite.ts";
import { SyslogSink } from "./sink.ts";

/** An octet-counting collector; `fail` closes the port (connections refused) and every connection. */
function collector(): ContractReceiver & { port: number } {
  const messages: string[] = [];
  const conns = new Set<Deno.Conn>();
  let listener: Deno.Listener | null = null;
  const listen = (port: number) => {
    const l = Deno.listen({ hostname: "127.0.0.1", port });
    listener = l;
    (async () => {
      for await (const conn of l) {
        conns.add(conn);
        (async () => {
          let rest: Uint8Array = new Uint8Array(0);
          try {
            for await (const chunk of conn.readable) {
              const buf = new Uint8Array(rest.length + chunk.length);
              buf.set(rest);
              buf.set(chunk, rest.length);
              const r = parseFrames(buf);
              messages.push(...r.messages);
              rest = r.rest;
            }
          } catch { /* closed */ }
          conns.delete(conn);
        })();
      }
    })().catch(() => {});
    return (l.addr as Deno.NetAddr).port;
  };
  const port = listen(0);
  const stop = () => {
    listener?.close();
    listener = null;
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    conns.clear();
  };
  return {
    port,
    received: () => messages,
    fail: async () => {
      stop();
      await new Promise((r) => setTimeout(r, 100)); // the sink sees EOF
    },
    heal: () => Promise.resolve(void listen(port)),
    close: () => Promise.resolve(stop()),
  };
}

runSinkContract({
  name: "syslog",
  receiver: () => Promise.resolve(collector()),
  newSink: (rx, { maxQueue }) =>
    new SyslogSink({
      host: "127.0.0.1",
      port: (rx as ReturnType<typeof collector>).port,
      maxQueue,
      timeoutMs: 1000,
      initialBackoffMs: 20,
      maxBackoffMs: 200,
    }, { log: new Logger({ quiet: true, write: () => {} }) }),
});
