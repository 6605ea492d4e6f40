/**
 * deploy/systemd/latentwatch.service works as written: `systemd-analyze
 * verify` finds nothing to say about it (and does about a misspelled key or
 * a bad value), and what it runs is what tests/offline_start_test.ts runs:
 * `deno run --cached-only --frozen -A src/main.ts` from the prepared folder,
 * `serve --check` before `serve`, state under `StateDirectory=`, Deno's cache
 * under `CacheDirectory=`, nothing else writable (`ProtectSystem=strict`
 * with a dynamic user), the NATS password from an `EnvironmentFile=`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { OFFLINE_RUN_FLAGS } from "../tools/prepare_offline.ts";
import {
  execProgram,
  findSystemdAnalyze,
  one,
  parseUnit,
  type Unit,
  verifyUnit,
} from "./helpers/unit_file.ts";

const DEPLOY = fileURLToPath(new URL("../deploy/", import.meta.url));
const UNIT_FILE = `${DEPLOY}systemd/latentwatch.service`;
const UNIT_TEXT = await Deno.readTextFile(UNIT_FILE);
const PASSWORD_ENV = "LATENTWATCH_NATS_PASSWORD";

/** The command line every start runs from the prepared folder, up to the subcommand. */
const OFFLINE_PREFIX = ["run", ...OFFLINE_RUN_FLAGS, "-A", "src/main.ts", "serve"];

/** The argument after `flag` in `argv`, or undefined. */
function flagValue(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i < 0 ? undefined : argv[i + 1];
}

/**
 * What is wrong with the unit for the deployment deploy/README.md describes;
 * empty when nothing is.
 */
function unitProblems(unit: Unit): string[] {
  const problems: string[] = [];
  const s = unit.Service ?? {};
  const get = (key: string) => s[key]?.length === 1 ? s[key][0] : undefined;
  const argvOf = (key: string) => (get(key) ?? "").replace(/^[-@:+!]+/, "").split(/\s+/);
  const start = argvOf("ExecStart");
  const pre = argvOf("ExecStartPre");
  for (const [key, argv] of [["ExecStart", start], ["ExecStartPre", pre]] as const) {
    if (!argv[0].startsWith("/") || !argv[0].endsWith("/deno")) {
      problems.push(`${key}: not an absolute path to deno: ${argv[0]}`);
    }
    const prefix = argv.slice(1, 1 + OFFLINE_PREFIX.length).join(" ");
    if (prefix !== OFFLINE_PREFIX.join(" ")) {
      problems.push(`${key}: expected '${OFFLINE_PREFIX.join(" ")} ...', found '${prefix}'`);
    }
  }
  if (!pre.includes("--check")) problems.push("ExecStartPre: not serve --check");
  if (start.includes("--check")) problems.push("ExecStart: serve --check starts nothing");
  const monitor = flagValue(start, "--monitor");
  if (!monitor?.startsWith("/")) problems.push(`ExecStart: --monitor not absolute: ${monitor}`);
  if (flagValue(pre, "--monitor") !== monitor) {
    problems.push("ExecStartPre checks another monitor file than ExecStart serves");
  }
  // with a dynamic user and ProtectSystem=strict only these directories are writable
  const state = get("StateDirectory");
  const cache = get("CacheDirectory");
  if (!state) problems.push("no StateDirectory=");
  if (flagValue(start, "--state-dir") !== "${STATE_DIRECTORY}") {
    problems.push("ExecStart: --state-dir is not ${STATE_DIRECTORY}");
  }
  const denoDir = (s.Environment ?? []).map((e) => /^DENO_DIR=(.*)$/.exec(e)?.[1])
    .find((v) => v !== undefined);
  if (!cache || !denoDir?.startsWith(`%C/${cache}/`)) {
    problems.push(`DENO_DIR (${denoDir}) is not under CacheDirectory= (${cache})`);
  }
  if (get("DynamicUser") !== "yes") problems.push("not DynamicUser=yes");
  if (get("ProtectSystem") !== "strict") problems.push("not ProtectSystem=strict");
  if (get("NoNewPrivileges") !== "yes") problems.push("not NoNewPrivileges=yes");
  if (s.ReadWritePaths) {
    problems.push(`ReadWritePaths=${s.ReadWritePaths}: nothing else is written`);
  }
  if (get("MemoryDenyWriteExecute") === "yes") problems.push("MemoryDenyWriteExecute stops V8");
  if (!get("WorkingDirectory")?.startsWith("/")) problems.push("WorkingDirectory not absolute");
  if (!get("EnvironmentFile")) problems.push("no EnvironmentFile= for the NATS password");
  return problems;
}

Deno.test("systemd: the unit runs serve from the prepared folder, writing only its own dirs", () => {
  const unit = parseUnit(UNIT_TEXT);
  assert.deepEqual(unitProblems(unit), []);
  // the folder the header tells to prepare is the one the unit runs in
  const dir = one(unit, "Service", "WorkingDirectory");
  assert.ok(UNIT_TEXT.includes(`deno task prepare-offline ${dir} `), dir);
  // the password file's variable is the sidecar's in deploy/nats/accounts.conf
  assert.ok(UNIT_TEXT.includes(`${PASSWORD_ENV}=`));
  assert.ok(UNIT_TEXT.includes(`nats.password_env: ${PASSWORD_ENV}`));
  const accounts = Deno.readTextFileSync(`${DEPLOY}nats/accounts.conf`);
  assert.match(accounts, new RegExp(`user: latentwatch\\s+password: \\$${PASSWORD_ENV}\\b`));
});

Deno.test("systemd: the check reports a unit that fetches, writes elsewhere or skips the check", () => {
  const broken = (edit: (u: Unit) => void) => {
    const u = parseUnit(UNIT_TEXT);
    edit(u);
    return unitProblems(u).join("\n");
  };
  const s = (u: Unit) => u.Service;
  assert.match(
    broken((u) => s(u).ExecStart = [s(u).ExecStart[0].replace(" --cached-only", "")]),
    /ExecStart: expected 'run --cached-only --frozen/,
  );
  assert.match(
    broken((u) => s(u).Environment = ["DENO_DIR=/opt/latentwatch/.deno"]),
    /DENO_DIR \(\/opt\/latentwatch\/\.deno\) is not under CacheDirectory=/,
  );
  assert.match(
    broken((u) => s(u).ExecStart = [s(u).ExecStart[0].replace("${STATE_DIRECTORY}", "/srv")]),
    /--state-dir is not/,
  );
  assert.match(
    broken((u) => s(u).ExecStartPre = [s(u).ExecStartPre[0].replace(" --check", "")]),
    /ExecStartPre: not serve --check/,
  );
  assert.match(broken((u) => delete s(u).StateDirectory), /no StateDirectory=/);
  assert.match(broken((u) => s(u).ProtectSystem = ["full"]), /not ProtectSystem=strict/);
  assert.equal(
    execProgram(one(parseUnit(UNIT_TEXT), "Service", "ExecStart")),
    "/usr/local/bin/deno",
  );
});

const analyze = await findSystemdAnalyze();

Deno.test({
  name: "systemd: systemd-analyze verify finds nothing in the unit, and finds a misspelled key",
  ignore: analyze === null,
  fn: async () => {
    const ok = await verifyUnit(analyze!, "latentwatch.service", UNIT_TEXT);
    assert.equal(ok.output, "");
    assert.equal(ok.code, 0);
    const typo = await verifyUnit(
      analyze!,
      "latentwatch.service",
      UNIT_TEXT.replace("\nProtectSystem=strict", "\nProtectSytem=strict"),
    );
    assert.match(typo.output, /Unknown key '?ProtectSytem'? in section '?\[?Service/);
    const badValue = await verifyUnit(
      analyze!,
      "latentwatch.service",
      UNIT_TEXT.replace("\nUMask=0077", "\nUMask=rwx"),
    );
    assert.match(badValue.output, /Failed to parse mode value.*rwx/);
  },
});
if (analyze === null) console.error("systemd: systemd-analyze not installed: verify skipped");
