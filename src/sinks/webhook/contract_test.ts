/** The sink contract against a real HTTP receiver on 127.0.0.1 (HTTP 500 while failing). */
import { Logger } from "../../shared/log.ts";
import { startHttpReceiver } from "../../../tests/helpers/receivers.ts";
import { type ContractReceiver, runSinkContract } from "../contract_test_suite.ts";
import { WebhookSink } from "./sink.ts";

/** Bodies answered 200 are the ones received; while failing every POST gets a 500. */
function receiver(): Promise<ContractReceiver & { url: string }> {
  let failing = false;
  const accepted: string[] = [];
  const rx = startHttpReceiver((_n, r) => {
    if (failing) return 500;
    accepted.push(r.body);
    return 200;
  });
  return Promise.resolve({
    url: rx.url,
    received: () => accepted,
    fail: () => Promise.resolve(void (failing = true)),
    heal: () => Promise.resolve(void (failing = false)),
    close: () => rx.close(),
  });
}

for (const shape of ["json", "splunk-hec"] as const) {
  runSinkContract({
    name: `webhook (${shape})`,
    receiver,
    newSink: (rx, { maxQueue }) =>
      new WebhookSink({
        url: (rx as Awaited<ReturnType<typeof receiver>>).url,
        shape,
        ...(shape === "splunk-hec" ? { splunk: { token: "t0k" } } : {}),
        maxQueue,
        timeoutMs: 1000,
        maxAttempts: 1000,
        initialBackoffMs: 20,
        maxBackoffMs: 200,
      }, { log: new Logger({ quiet: true, write: () => {} }) }),
  });
}
