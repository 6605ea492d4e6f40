/**
 * `latentwatch serve --check` and `latentwatch --version` as processes, and
 * a real `serve` in its state directory with JSON logs. The check must load
 * everything a start loads, fail as a start fails, and connect nowhere: its
 * NATS URL points at a listening socket that records every connection.
 */
import assert from "node:assert/strict";
import { freePort, startNatsServer } from "../src/bus/nats_server.ts";
import { buildDemoSae, SimulatedModel } from "../src/demo/simulator.ts";
import { writeSaeLensFolder } from "../src/formats/saelens_writer.ts";
import { LATENTWATCH_MAIN, runLatentwatch } from "./helpers/cli.ts";
import { waitUntil } from "./helpers/stream.ts";

const RULE = "version: 1\nrules:\n  - id: r\n    title: t\n    severity: low\n" +
  "    when: { sae: s, latent: 0, above: 1 }\n";

/** A demo SAE, `p.yaml` (`rules`) and `m.yaml` (with `extra` appended) in a new folder. */
async function monitorFolder(extra: string, rules = RULE): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-check-" });
  await writeSaeLensFolder(`${dir}/sae`, buildDemoSae(new SimulatedModel({ dModel: 32 }), 40));
  await Deno.writeTextFile(`${dir}/p.yaml`, rules);
  await Deno.writeTextFile(
    `${dir}/m.yaml`,
    `monitor: chk\nmodel: x\nhook: h\nsaes:\n  - id: s\n    path: sae\npolicies: [p.yaml]\n${extra}`,
  );
  return dir;
}

/** A TCP listener on a free loopback port that counts the connections it gets. */
function connectionRecorder(): { port: number; connections: () => number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let count = 0;
  (async () => {
    for await (const conn of listener) {
      count++;
      conn.close();
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    connections: () => count,
    close: () => listener.close(),
  };
}

Deno.test("serve --check: a good monitor passes, prints its summary, connects nowhere, creates nothing", async () => {
  const nats = connectionRecorder();
  const control = freePort();
  const dir = await monitorFolder(
    `nats:\n  url: nats://127.0.0.1:${nats.port}\n  user: lw\n  password_env: LW_CHECK_PASSWORD\n` +
      `control:\n  listen: 127.0.0.1:${control}\n`,
  );
  try {
    const started = Date.now();
    const r = await runLatentwatch(
      ["serve", "--check", "--monitor", `${dir}/m.yaml`, "--state-dir", `${dir}/state`],
      { env: { LW_CHECK_PASSWORD: "lw-secret" } },
    );
    const took = Date.now() - started;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      `ok: monitor chk: 1 SAE(s), 0 probe(s), 1 rule(s), 0 sink(s); ` +
        `state dir ${dir}/state (from --state-dir, would be created)\n`,
    );
    // a start would wait for the server to answer; the check never asks
    assert.ok(took < 30_000, `took ${took} ms`);
    assert.equal(nats.connections(), 0, "no connection to the NATS URL");
    await assert.rejects(() => Deno.stat(`${dir}/state`), Deno.errors.NotFound);
    // it did load and compile: the SAE and the policies are in its log
    assert.match(r.stderr, /sae\.loaded id=s /);
    assert.match(r.stderr, /policies\.loaded files=1 rules=1/);
  } finally {
    nats.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve --check: a broken policy fails with its file:line:col, exit 1", async () => {
  const nats = connectionRecorder();
  const dir = await monitorFolder(
    `nats:\n  url: nats://127.0.0.1:${nats.port}\n`,
    RULE.replace("sae: s,", "sae: nope,"),
  );
  try {
    const r = await runLatentwatch(["serve", "--check", "--monitor", `${dir}/m.yaml`], {
      env: { STATE_DIRECTORY: `${dir}/state` },
    });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, "");
    assert.match(
      r.stderr,
      new RegExp(`^latentwatch serve: ${dir}/p\\.yaml:6:11: rule 'r': unknown SAE 'nope'`, "m"),
    );
    assert.equal(nats.connections(), 0);
  } finally {
    nats.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve --check: an unset password variable fails by name, exit 1", async () => {
  const nats = connectionRecorder();
  const dir = await monitorFolder(
    `nats:\n  url: nats://127.0.0.1:${nats.port}\n  user: lw\n  password_env: LW_CHECK_UNSET_PW\n`,
  );
  try {
    const r = await runLatentwatch(["serve", "--check", "--monitor", `${dir}/m.yaml`], {
      env: { STATE_DIRECTORY: `${dir}/state` },
    });
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `latentwatch serve: ${dir}/m\\.yaml: nats\\.password_env: expected environment variable ` +
          "LW_CHECK_UNSET_PW to hold the NATS password, found it unset",
      ),
    );
    assert.equal(nats.connections(), 0);
  } finally {
    nats.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve --check: a state_dir under a file fails naming the path and the key, in JSON", async () => {
  const dir = await monitorFolder("state_dir: p.yaml/state\n");
  try {
    const r = await runLatentwatch(
      ["serve", "--check", "--monitor", `${dir}/m.yaml`, "--log-format", "json"],
    );
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split("\n").map((l) => JSON.parse(l));
    const failed = lines.find((l) => l.event === "startup.failed");
    assert.equal(failed.level, "error");
    assert.equal(
      failed.fields.error,
      `state directory ${dir}/p.yaml/state (from state_dir in ${dir}/m.yaml): ` +
        `expected a directory, found a file at ${dir}/p.yaml`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve: a state directory it cannot create stops the start, naming the path and the flag", async () => {
  const nats = connectionRecorder();
  const dir = await monitorFolder(`nats:\n  url: nats://127.0.0.1:${nats.port}\n`);
  try {
    const r = await runLatentwatch([
      "serve",
      "--monitor",
      `${dir}/m.yaml`,
      "--state-dir",
      `${dir}/p.yaml/state`,
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^latentwatch serve: state directory ${dir}/p\\.yaml/state \\(from --state-dir\\): ` +
          "expected a directory it can create, found ",
        "m",
      ),
    );
    assert.equal(nats.connections(), 0, "it stopped before connecting");
  } finally {
    nats.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("latentwatch --version and version: the version of deno.json, Deno's, onnxruntime's", async () => {
  const denoJson = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  for (const arg of ["--version", "version"]) {
    const r = await runLatentwatch([arg]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines[0], `latentwatch ${denoJson.version}`);
    assert.equal(lines[1], `deno ${Deno.version.deno}`);
    assert.equal(lines[2], `v8 ${Deno.version.v8}`);
    assert.equal(lines[3], `typescript ${Deno.version.typescript}`);
    assert.equal(`npm:${lines[4].replace(" ", "@")}`, denoJson.imports["onnxruntime-node"]);
  }
});

Deno.test("serve: in $STATE_DIRECTORY (0700), spool inside, JSON log lines that each parse", async () => {
  const server = await startNatsServer();
  const port = freePort();
  const dir = await monitorFolder(
    `nats:\n  url: ${server.url}\ncontrol:\n  listen: 127.0.0.1:${port}\n` +
      "record:\n  path: rec.trace.gz\n",
  );
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", LATENTWATCH_MAIN, "serve", "--monitor", `${dir}/m.yaml`],
      env: {
        NO_COLOR: "1",
        LATENTWATCH_LOG_FORMAT: "json",
        // systemd's StateDirectory= with two entries: the first is ours
        STATE_DIRECTORY: `${dir}/state:${dir}/other`,
      },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const errText = (async () => new TextDecoder().decode((await child.output()).stderr))();
    await waitUntil(
      () =>
        fetch(`http://127.0.0.1:${port}/readyz`).then(async (r) => {
          await r.body?.cancel();
          return r.status === 200;
        }, () => false),
      "/readyz",
      30_000,
    );
    child.kill("SIGTERM");
    const err = await errText;
    assert.equal((await child.status).code, 0, err);
    const lines = err.trim().split("\n").map((l) => JSON.parse(l));
    for (const l of lines) {
      assert.deepEqual(Object.keys(l), ["ts", "level", "event", "fields"]);
      assert.ok(!Number.isNaN(Date.parse(l.ts)), l.ts);
    }
    const state = lines.find((l) => l.event === "state.dir");
    assert.deepEqual(state.fields, { dir: `${dir}/state`, source: "$STATE_DIRECTORY" });
    assert.equal((await Deno.stat(`${dir}/state`)).mode! & 0o777, 0o700);
    assert.ok((await Deno.stat(`${dir}/state/spool/chk`)).isDirectory, "the spool is inside");
    assert.ok((await Deno.stat(`${dir}/state/rec.trace.gz`)).isFile, "the recording is inside");
    await assert.rejects(() => Deno.stat(`${dir}/other`), Deno.errors.NotFound);
    assert.ok(lines.some((l) => l.event === "monitor.stopping"));
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
