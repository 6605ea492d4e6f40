/**
 * What `policy lint` reads from the paths it is given (`./policy.ts`): a
 * file as named, a folder as every policy YAML under it, with what a
 * folder holds that is not a policy (rule tests, `testdata/` folders,
 * monitor files) passed over, each with a note saying why.
 *
 * @module
 */
import { join, relative } from "node:path";
import type { YamlSource } from "../config/yaml_source.ts";
import { filesUnder } from "./common.ts";

/** A path under a folder given to lint that is not a policy file, with why. */
export interface SkippedPath {
  file: string;
  reason: string;
}

/** A path to lint; `inFolder` when it was found under a folder (not named on the command line). */
export interface LintPath {
  path: string;
  inFolder: boolean;
}

/**
 * Expand lint paths: files as given, folders to every policy YAML under
 * them (sorted), skipping rule tests and `testdata/`.
 *
 * @example
 * ```ts
 * await policyPaths(["policies"]); // ["policies/demo.yaml", "policies/gemma-2-2b.yaml", ...]
 * ```
 */
export async function policyPaths(paths: string[]): Promise<string[]> {
  return (await policyPathsWithSkips(paths)).files.map((f) => f.path);
}

/**
 * {@linkcode policyPaths}, with the rule tests and `testdata/` folders passed over, each noted.
 *
 * @example
 * ```ts
 * const { files, skipped } = await policyPathsWithSkips(["policies"]);
 * files[0]; // { path: "policies/demo.yaml", inFolder: true }
 * skipped[0]; // { file: "policies/demo.test.yaml", reason: "a rule test (*.test.yaml; see policy test)" }
 * ```
 */
export async function policyPathsWithSkips(
  paths: string[],
): Promise<{ files: LintPath[]; skipped: SkippedPath[] }> {
  const files: LintPath[] = [];
  const skipped: SkippedPath[] = [];
  for (const p of paths) {
    let dir = false;
    try {
      dir = (await Deno.stat(p)).isDirectory;
    } catch { /* missing: reported when read */ }
    if (!dir) {
      files.push({ path: p, inFolder: false });
      continue;
    }
    const yaml = (name: string) => /\.ya?ml$/.test(name);
    const ruleTest = (name: string) => /\.test\.ya?ml$/.test(name);
    const under = await filesUnder(p, {
      enter: (name) => !name.startsWith("."),
      take: yaml,
    });
    const seenTestdata = new Set<string>();
    for (const f of under) {
      const parts = relative(p, f).split(/[\\/]/);
      const at = parts.indexOf("testdata");
      if (at >= 0) {
        const folder = join(p, ...parts.slice(0, at + 1));
        if (!seenTestdata.has(folder)) {
          seenTestdata.add(folder);
          skipped.push({ file: folder, reason: "a testdata folder (fixtures, not policies)" });
        }
      } else if (ruleTest(parts[parts.length - 1])) {
        skipped.push({ file: f, reason: "a rule test (*.test.yaml; see policy test)" });
      } else files.push({ path: f, inFolder: true });
    }
  }
  return { files, skipped };
}

/**
 * A monitor file: a YAML mapping with `monitor:` and `saes:`.
 *
 * @example
 * ```ts
 * import { parseYamlSource } from "../config/yaml_source.ts";
 * isMonitorSource(parseYamlSource("monitor: demo\nsaes: []\n", "m.yaml")); // true
 * isMonitorSource(parseYamlSource("version: 2\nrules: []\n", "p.yaml")); // false
 * ```
 */
export function isMonitorSource(src: YamlSource): boolean {
  const v = src.value;
  return v !== null && typeof v === "object" && !Array.isArray(v) && "monitor" in v &&
    "saes" in v;
}
