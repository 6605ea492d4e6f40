/** The sink contract with stdout's writer as the receiver (a write error, as on a closed pipe, while failing). */
import { Logger } from "../../shared/log.ts";
import { type ContractReceiver, runSinkContract } from "../contract_test_suite.ts";
import { StdoutSink } from "./sink.ts";

interface LineReceiver extends ContractReceiver {
  write(p: Uint8Array): Promise<number>;
}

function lines(): Promise<LineReceiver> {
  const got: string[] = [];
  let failing = false;
  const dec = new TextDecoder();
  return Promise.resolve({
    write: (p) => {
      if (failing) return Promise.reject(new Deno.errors.BrokenPipe("stdout closed"));
      got.push(...dec.decode(p).split("\n").filter((l) => l !== ""));
      return Promise.resolve(p.length);
    },
    received: () => got,
    fail: () => Promise.resolve(void (failing = true)),
    heal: () => Promise.resolve(void (failing = false)),
    close: () => Promise.resolve(),
  });
}

runSinkContract({
  name: "stdout",
  receiver: lines,
  newSink: (rx, { maxQueue }) =>
    new StdoutSink({
      maxQueue,
      timeoutMs: 1000,
      maxAttempts: 1000,
      writer: rx as LineReceiver,
    }, { log: new Logger({ quiet: true, write: () => {} }) }),
});
