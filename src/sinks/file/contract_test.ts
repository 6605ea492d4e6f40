/**
 * The sink contract against a real file: rotated on every write (so every
 * write opens the path again), and its folder removed while failing (the
 * rotation and the open fail; the folder comes back when mended).
 */
import { join } from "node:path";
import { Logger } from "../../shared/log.ts";
import { type ContractReceiver, runSinkContract } from "../contract_test_suite.ts";
import { FileSink } from "./sink.ts";

const KEEP = 20;

async function folder(): Promise<ContractReceiver & { path: string }> {
  const root = await Deno.makeTempDir({ prefix: "lw-file-contract-" });
  const dir = join(root, "alerts");
  await Deno.mkdir(dir);
  const path = join(dir, "alerts.jsonl");
  // not empty: the first write already rotates (a rename, then an open)
  await Deno.writeTextFile(path, "{}\n");
  const before: string[] = []; // what was read before the folder went
  const read = async () => {
    const out = [...before];
    for (const p of [path, ...Array.from({ length: KEEP }, (_, i) => `${path}.${i + 1}`)]) {
      const text = await Deno.readTextFile(p).catch(() => "");
      out.push(...text.split("\n").filter((l) => l !== ""));
    }
    return out;
  };
  return {
    path,
    received: read,
    fail: async () => {
      before.push(...await read());
      await Deno.remove(dir, { recursive: true });
    },
    heal: () => Deno.mkdir(dir, { recursive: true }),
    close: () => Deno.remove(root, { recursive: true }).catch(() => {}),
  };
}

runSinkContract({
  name: "file",
  receiver: folder,
  newSink: (rx, { maxQueue }) =>
    new FileSink({
      path: (rx as Awaited<ReturnType<typeof folder>>).path,
      maxQueue,
      timeoutMs: 1000,
      maxBytes: 1,
      keep: KEEP,
      fsync: "never",
      maxAttempts: 1000,
    }, { log: new Logger({ quiet: true, write: () => {} }) }),
});
