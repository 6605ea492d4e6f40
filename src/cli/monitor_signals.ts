/**
 * The SAEs and probes of a monitor as compile sees them, read without
 * running them: SAE widths (`d_sae` from an SAELens `cfg.json` without
 * reading the weights; other formats are loaded), labels (Neuronpedia
 * exports) and probe widths. Used by `policy lint --monitor` and by the
 * given-values cases of `policy test`.
 *
 * @module
 */
import { dirname, join } from "node:path";
import type { ConfigIssue } from "../config/errors.ts";
import type { MonitorConfig } from "../config/monitor.ts";
import type { YamlPath, YamlSource } from "../config/yaml_source.ts";
import type { SignalInfo } from "../core/policy/compile.ts";
import { detectSaeFormat, loadSae } from "../formats/load.ts";
import { findLabelsNextTo, loadNeuronpediaLabels } from "../formats/neuronpedia.ts";
import { loadProbe } from "../formats/probe.ts";

/**
 * The SAEs and probes of a monitor as compile sees them. SAELens folders give
 * `d_sae` from `cfg.json` without reading the weights; other formats are
 * loaded. A problem is an issue at the monitor's `path:` (or `labels:`).
 */
export async function monitorSignals(
  config: MonitorConfig,
  src: YamlSource,
): Promise<{ signals: Map<string, SignalInfo>; issues: ConfigIssue[] }> {
  const signals = new Map<string, SignalInfo>();
  const issues: ConfigIssue[] = [];
  const issue = (path: YamlPath, reason: string) =>
    issues.push({ file: src.file, ...src.locate(path), reason });
  for (const [i, s] of config.saes.entries()) {
    let dSae: number;
    let neuronpediaId: string | null | undefined;
    try {
      ({ dSae, neuronpediaId } = await saeWidth(s.path, s.format, s.scalingFactor));
    } catch (err) {
      issue(["saes", i, "path"], `SAE '${s.id}': ${(err as Error).message}`);
      continue;
    }
    const info: SignalInfo = { kind: "sae", dSae };
    try {
      const labelsPath = s.labels ?? await findLabelsNextTo(s.path);
      if (labelsPath) {
        const labels = await loadNeuronpediaLabels(labelsPath, { neuronpediaId });
        const max = Math.max(-1, ...labels.keys());
        if (max >= dSae) {
          throw new RangeError(
            `labels go up to latent ${max}, expected indices below d_sae = ${dSae}; they ` +
              `belong to another SAE (width or L0 variant)`,
          );
        }
        info.labels = labels;
      }
    } catch (err) {
      const at = s.labels !== undefined ? ["saes", i, "labels"] : ["saes", i, "path"];
      issue(at, `SAE '${s.id}': labels: ${(err as Error).message}`);
    }
    signals.set(s.id, info);
  }
  for (const [i, p] of config.probes.entries()) {
    try {
      signals.set(p.id, { kind: "probe", dSae: (await loadProbe(p.path)).n });
    } catch (err) {
      issue(["probes", i, "path"], `probe '${p.id}': ${(err as Error).message}`);
    }
  }
  return { signals, issues };
}

/** `d_sae` of an SAE: from an SAELens `cfg.json` when there is one, else by loading it. */
async function saeWidth(
  path: string,
  format: MonitorConfig["saes"][number]["format"],
  scalingFactor: number | undefined,
): Promise<{ dSae: number; neuronpediaId?: string | null }> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch {
    throw new Error(`expected an SAE folder or file at ${path}, found nothing there`);
  }
  const fmt = format ?? await detectSaeFormat(path);
  if (fmt === "saelens") {
    const cfgPath = join(stat.isDirectory ? path : dirname(path), "cfg.json");
    let cfg: { d_sae?: unknown; neuronpedia_id?: unknown; metadata?: { neuronpedia_id?: unknown } };
    try {
      cfg = JSON.parse(await Deno.readTextFile(cfgPath));
    } catch (err) {
      throw new Error(`cannot read d_sae from ${cfgPath}: ${(err as Error).message}`);
    }
    const d = cfg?.d_sae;
    if (typeof d !== "number" || !Number.isInteger(d) || d < 1) {
      throw new Error(
        `expected a positive integer d_sae in ${cfgPath}, found ${JSON.stringify(d) ?? "none"}`,
      );
    }
    const np = cfg.metadata?.neuronpedia_id ?? cfg.neuronpedia_id;
    return { dSae: d, neuronpediaId: typeof np === "string" ? np : null };
  }
  const sae = await loadSae(path, { format: fmt, scalingFactor });
  return { dSae: sae.dSae, neuronpediaId: sae.neuronpediaId };
}
