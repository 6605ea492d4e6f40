/**
 * Open the workbench over trace files: load the monitor (`loadOfflineMonitor`,
 * evidence encoders included, so every latent of every SAE is encoded),
 * read and encode the traces, evaluate the monitor's policies over them.
 *
 * @module
 */
import { loadMonitorConfig } from "../config/monitor.ts";
import { loadOfflineMonitor, type RejectedFrame, type TraceProgress } from "../traces/offline.ts";
import type { Logger } from "../shared/log.ts";
import type { WorkbenchSource } from "./api.ts";
import { TraceStore } from "./trace_source.ts";

/** Options of {@linkcode loadTraceSource}. */
export interface TraceSourceOptions {
  log?: Logger;
  onProgress?: (p: TraceProgress) => void;
  onRejected?: (r: RejectedFrame) => void;
  /** Traces whose requests are positives (curves' detection rate), loaded after `paths`. */
  positives?: readonly string[];
}

/**
 * Load `monitorPath` and the traces at `paths` into a workbench source.
 *
 * @example
 * ```ts
 * import { loadTraceSource } from "./load.ts";
 * const source = await loadTraceSource("monitors/demo.yaml", [".latentwatch/demo/demo.trace.gz"]);
 * console.log(source.store.requests.size);
 * await source.store.monitor.close();
 * ```
 */
export async function loadTraceSource(
  monitorPath: string,
  paths: readonly string[],
  opts: TraceSourceOptions = {},
): Promise<WorkbenchSource> {
  const config = await loadMonitorConfig(monitorPath);
  // every latent of every SAE is shown: evidence encoders report them all
  const topLatents = Math.max(config.evidence.topLatents, 1);
  const monitor = await loadOfflineMonitor(
    { ...config, evidence: { ...config.evidence, topLatents } },
    { log: opts.log },
  );
  try {
    const reading = { onProgress: opts.onProgress, onRejected: opts.onRejected };
    const store = await TraceStore.load(monitor, paths, reading);
    const positives: string[] = [];
    for (const p of opts.positives ?? []) positives.push(...await store.add(p, reading));
    return { mode: "traces", store, evaluation: await store.evaluate(monitor.set), positives };
  } catch (err) {
    await monitor.close();
    throw err;
  }
}
