/**
 * `latentwatch policy lint <file>... [--monitor <monitor.yaml>]`: validate
 * policy files and, with a monitor, compile them against the SAEs it loads.
 * Prints one `file:line:col: error: reason` line per problem (stderr) and
 * exits 1 on any error, or prints a one-line OK summary (stdout) and exits 0.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compilePolicies, PolicyCompileError, type PolicyRule } from "../core/policy.ts";
import { ConfigError, type ConfigIssue, formatIssue } from "../config/errors.ts";
import { type MonitorConfig, monitorConfigFromSource } from "../config/monitor.ts";
import { policyRulesFromSource } from "../config/policy_file.ts";
import { loadYamlSource, type YamlSource } from "../config/yaml_source.ts";

const USAGE = `usage: latentwatch policy lint <file>... [--monitor <monitor.yaml>]

  Validate policy files (YAML syntax, schema, unique rule ids). With --monitor,
  also compile them against the SAEs that monitor loads (SAE ids, latent < d_sae
  read from each SAE folder's cfg.json); with --monitor and no files, lint the
  monitor's own policy files.

  Exit status: 0 when every file is valid, 1 on any error, 2 on bad usage.`;

/** Where each rule came from, to point compile problems at the right column. */
interface RuleOrigin {
  src: YamlSource;
  index: number;
}

const FIELD_PATH = {
  id: ["id"],
  sae: ["when", "sae"],
  latent: ["when", "latent"],
  above: ["when", "above"],
} as const;

function printIssue(issue: ConfigIssue): void {
  console.error(formatIssue({ ...issue, reason: `error: ${issue.reason}` }));
}

/** Read `d_sae` from `<folder>/cfg.json`; an issue at the monitor's `saes[i].path` otherwise. */
async function readDSae(
  folder: string,
  id: string,
  at: () => ConfigIssue,
): Promise<number | ConfigIssue> {
  const fail = (reason: string): ConfigIssue => ({ ...at(), reason });
  try {
    if (!(await Deno.stat(folder)).isDirectory) {
      return fail(`SAE '${id}': expected a folder at ${folder}, found a file`);
    }
  } catch {
    return fail(`SAE '${id}': expected a folder at ${folder}, found nothing there`);
  }
  const cfgPath = join(folder, "cfg.json");
  let cfg: unknown;
  try {
    cfg = JSON.parse(await Deno.readTextFile(cfgPath));
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound ? "no such file" : (err as Error).message;
    return fail(`SAE '${id}': cannot read d_sae from ${cfgPath}: ${why}`);
  }
  const dSae = (cfg as { d_sae?: unknown } | null)?.d_sae;
  if (typeof dSae !== "number" || !Number.isInteger(dSae) || dSae < 1) {
    return fail(
      `SAE '${id}': expected a positive integer d_sae in ${cfgPath}, found ${JSON.stringify(dSae)}`,
    );
  }
  return dSae;
}

/**
 * Run `policy <subcommand> ...` and return the exit code.
 *
 * @example
 * ```ts
 * const code = await runPolicyCommand(["lint", "policies/demo.yaml", "--monitor", "monitors/demo.yaml"]);
 * // prints "policy lint: OK, 1 file(s), 4 rule(s), compiled against monitor 'demo' (1 SAE(s))"
 * ```
 */
export async function runPolicyCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { monitor: { type: "string" }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    console.error(`latentwatch policy: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const [sub, ...files] = parsed.positionals;
  if (parsed.values.help) {
    console.log(USAGE);
    return 0;
  }
  if (sub !== "lint") {
    console.error(
      `latentwatch policy: ${sub ? `unknown subcommand '${sub}'` : "missing subcommand"}` +
        `\n\n${USAGE}`,
    );
    return 2;
  }
  if (files.length === 0 && parsed.values.monitor === undefined) {
    console.error(`latentwatch policy lint: expected at least one policy file\n\n${USAGE}`);
    return 2;
  }
  return await lint(files, parsed.values.monitor);
}

async function lint(files: string[], monitorPath: string | undefined): Promise<number> {
  const issues: ConfigIssue[] = [];
  const collect = (err: unknown) => {
    if (err instanceof ConfigError) issues.push(...err.issues);
    else throw err;
  };

  let monitor: MonitorConfig | undefined;
  const saes = new Map<string, { dSae: number }>();
  const unresolved = new Set<string>();
  if (monitorPath !== undefined) {
    try {
      const src = await loadYamlSource(monitorPath);
      monitor = monitorConfigFromSource(src);
      for (const [i, sae] of monitor.saes.entries()) {
        const at = (): ConfigIssue => ({
          file: src.file,
          ...src.locate(["saes", i, "path"]),
          reason: "",
        });
        const dSae = await readDSae(sae.path, sae.id, at);
        if (typeof dSae === "number") saes.set(sae.id, { dSae });
        else {
          issues.push(dSae);
          unresolved.add(sae.id);
        }
      }
    } catch (err) {
      collect(err);
    }
    if (files.length === 0 && monitor) files = monitor.policies;
  }

  const rules: PolicyRule[] = [];
  const origins = new Map<PolicyRule, RuleOrigin>();
  let validFiles = 0;
  for (const file of files) {
    try {
      const src = await loadYamlSource(file);
      const fileRules = policyRulesFromSource(src);
      fileRules.forEach((rule, index) => origins.set(rule, { src, index }));
      rules.push(...fileRules);
      validFiles++;
    } catch (err) {
      collect(err);
    }
  }

  // Without a monitor, only what needs no SAE is checked: rule ids unique across files.
  try {
    compilePolicies(rules, saes);
  } catch (err) {
    if (!(err instanceof PolicyCompileError)) throw err;
    for (const p of err.problems) {
      if (!monitor && p.field !== "id") continue;
      // An SAE whose folder could not be read was already reported at the monitor.
      if (p.field === "sae" && unresolved.has(p.rule.sae)) continue;
      const origin = origins.get(p.rule);
      const at = origin
        ? origin.src.locate(["rules", origin.index, ...FIELD_PATH[p.field]])
        : { line: p.rule.source.line, col: 1 };
      issues.push({ file: p.rule.source.file, ...at, reason: p.reason });
    }
  }

  if (issues.length > 0) {
    const sorted = new ConfigError(issues).issues;
    for (const issue of sorted) printIssue(issue);
    const nFiles = new Set(sorted.map((i) => i.file)).size;
    console.error(`policy lint: ${sorted.length} error(s) in ${nFiles} file(s)`);
    return 1;
  }
  const against = monitor
    ? `, compiled against monitor '${monitor.monitor}' (${saes.size} SAE(s))`
    : "";
  console.log(`policy lint: OK, ${validFiles} file(s), ${rules.length} rule(s)${against}`);
  return 0;
}
