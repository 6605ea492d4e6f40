import assert from "node:assert/strict";
import {
  chooseStateDir,
  ensureStateDir,
  placeInStateDir,
  probeStateDir,
  StateDirError,
  stateDirNeeded,
} from "./state_dir.ts";
import { parseMonitorConfig } from "../config/monitor.ts";

const env = (vars: Record<string, string>) => (k: string) => vars[k];
const CONFIG = { file: "/srv/lw/m.yaml" };

Deno.test("chooseStateDir: flag, then state_dir, then $STATE_DIRECTORY, $XDG_STATE_HOME, $HOME", () => {
  const all = {
    STATE_DIRECTORY: "/var/lib/latentwatch:/var/lib/other",
    XDG_STATE_HOME: "/home/u/.state",
    HOME: "/home/u",
  };
  assert.deepEqual(
    chooseStateDir({ flag: "/x", config: { ...CONFIG, stateDir: "/y" }, env: env(all) }),
    { dir: "/x", source: "--state-dir" },
  );
  assert.deepEqual(chooseStateDir({ config: { ...CONFIG, stateDir: "/y" }, env: env(all) }), {
    dir: "/y",
    source: "state_dir in /srv/lw/m.yaml",
  });
  assert.deepEqual(chooseStateDir({ config: CONFIG, env: env(all) }), {
    dir: "/var/lib/latentwatch",
    source: "$STATE_DIRECTORY",
  });
  assert.deepEqual(
    chooseStateDir({ config: CONFIG, env: env({ XDG_STATE_HOME: "/s", HOME: "/h" }) }),
    { dir: "/s/latentwatch", source: "$XDG_STATE_HOME" },
  );
  // a relative XDG_STATE_HOME is ignored, as the XDG spec says
  assert.deepEqual(
    chooseStateDir({ config: CONFIG, env: env({ XDG_STATE_HOME: "rel", HOME: "/h" }) }),
    { dir: "/h/.local/state/latentwatch", source: "$HOME" },
  );
  assert.equal(chooseStateDir({ config: CONFIG, env: env({}) }), null);
  // a relative flag is against the working directory
  assert.equal(
    chooseStateDir({ flag: "st", config: CONFIG, env: env({}) })?.dir,
    `${Deno.cwd()}/st`,
  );
});

Deno.test("ensureStateDir: creates it with mode 0700; refuses what it cannot write, by path and source", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await ensureStateDir({ dir: `${dir}/a/b`, source: "--state-dir" });
    assert.equal((await Deno.stat(`${dir}/a/b`)).mode! & 0o777, 0o700);
    assert.deepEqual([...Deno.readDirSync(`${dir}/a/b`)], [], "the write test leaves nothing");
    await Deno.writeTextFile(`${dir}/file`, "");
    await assert.rejects(
      () => ensureStateDir({ dir: `${dir}/file/state`, source: "$STATE_DIRECTORY" }),
      (err: Error) => {
        assert.ok(err instanceof StateDirError);
        assert.equal(err.path, `${dir}/file/state`);
        assert.equal(err.source, "$STATE_DIRECTORY");
        assert.match(
          err.message,
          new RegExp(`^state directory ${dir}/file/state \\(from \\$STATE_DIRECTORY\\): expected`),
        );
        assert.ok(err.cause instanceof Error);
        return true;
      },
    );
    await assert.rejects(
      () => ensureStateDir(null),
      /expected a state directory from --state-dir, state_dir in the monitor file, \$STATE_DIRECTORY, \$XDG_STATE_HOME or \$HOME, found none set/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("probeStateDir: says what would happen and changes nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(await probeStateDir({ dir, source: "--state-dir" }), "exists");
    assert.equal(
      await probeStateDir({ dir: `${dir}/x/y`, source: "--state-dir" }),
      "would be created",
    );
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing created");
    await Deno.writeTextFile(`${dir}/f`, "");
    await assert.rejects(
      () => probeStateDir({ dir: `${dir}/f/s`, source: "state_dir in m.yaml" }),
      (err: Error) =>
        err instanceof StateDirError &&
        err.message === `state directory ${dir}/f/s (from state_dir in m.yaml): expected a ` +
            `directory, found a file at ${dir}/f`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("placeInStateDir: a relative record path goes under the state directory", () => {
  const base =
    "monitor: m\nmodel: x\nhook: h\nsaes: [{id: s, path: ./sae}]\npolicies: [./p.yaml]\n";
  const rel = parseMonitorConfig(base + "record: {path: rec/t.trace.gz}\n", "/srv/lw/m.yaml");
  assert.equal(placeInStateDir(rel, "/var/lib/lw").record?.path, "/var/lib/lw/rec/t.trace.gz");
  const abs = parseMonitorConfig(base + "record: {path: /data/t.trace.gz}\n", "/srv/lw/m.yaml");
  assert.equal(placeInStateDir(abs, "/var/lib/lw").record?.path, "/data/t.trace.gz");
});

Deno.test("stateDirNeeded: the default spool or a relative recording live there", () => {
  const base =
    "monitor: m\nmodel: x\nhook: h\nsaes: [{id: s, path: ./sae}]\npolicies: [./p.yaml]\n";
  const plain = parseMonitorConfig(base, "/srv/lw/m.yaml");
  assert.equal(stateDirNeeded(plain), true);
  assert.equal(stateDirNeeded(plain, "/tmp/spool"), false);
  const spooled = parseMonitorConfig(base + "alerts: {spool: {dir: sp}}\n", "/srv/lw/m.yaml");
  assert.equal(stateDirNeeded(spooled), false);
  const recorded = parseMonitorConfig(
    base + "alerts: {spool: {dir: sp}}\nrecord: {path: t.trace}\n",
    "/srv/lw/m.yaml",
  );
  assert.equal(stateDirNeeded(recorded), true);
});
