/**
 * deploy/container/Containerfile, read as a container engine reads it
 * (containers cannot run on the machines that test latentwatch): the build
 * stage copies what `tools/prepare_offline.ts` needs and runs it, the image
 * runs that folder with `--cached-only` as a non-root user, its state
 * directory is a volume and the one `serve` writes, Deno's cache is
 * writable, and the `HEALTHCHECK` command, run here against the real control
 * API, passes on `/healthz` and fails when it cannot get a 200. The build
 * step and the entry point themselves run in tests/offline_start_test.ts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { NATIVE_KERNELS_DIR, OFFLINE_FILES, OFFLINE_RUN_FLAGS } from "../tools/prepare_offline.ts";
import {
  execArgv,
  finalEnv,
  finalStage,
  healthcheck,
  type Instruction,
  parseContainerfile,
} from "./helpers/containerfile.ts";
import { controlApi, serveControlApi } from "../src/serve/control_api.ts";
import { Telemetry } from "../src/shared/telemetry.ts";

const FILE = fileURLToPath(new URL("../deploy/container/Containerfile", import.meta.url));
const TEXT = await Deno.readTextFile(FILE);

/** The argument after `flag`, or undefined. */
function flagValue(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i < 0 ? undefined : argv[i + 1];
}

/** What is wrong with the Containerfile's instructions; empty when nothing is. */
function containerProblems(all: Instruction[]): string[] {
  const problems: string[] = [];
  const last = (k: string) => finalStage(all, k).at(-1)?.args;
  // build stage: the prepare step, with what it reads copied in first
  const prepare = all.find((i) => i.keyword === "RUN" && i.args.includes("prepare_offline.ts"));
  if (!prepare || prepare.stage === Math.max(...all.map((i) => i.stage))) {
    problems.push("no prepare_offline.ts step in a build stage");
    return problems;
  }
  const argv = execArgv(prepare.args);
  const dest = argv[argv.indexOf("tools/prepare_offline.ts") + 1];
  const copied = all.filter((i) => i.stage === prepare.stage && i.keyword === "COPY")
    .flatMap((i) => execArgv(i.args).slice(0, -1));
  for (const need of [...OFFLINE_FILES, "tools/prepare_offline.ts"]) {
    if (!copied.includes(need)) problems.push(`build stage: ${need} not copied before prepare`);
  }
  const fromBuild = finalStage(all, "COPY").map((i) => execArgv(i.args))
    .find((a) => a[0].startsWith("--from="));
  if (!fromBuild || fromBuild[1] !== dest || fromBuild[2] !== dest) {
    problems.push(`the image does not copy the prepared ${dest} from the build stage`);
  }
  if (last("WORKDIR") !== dest) problems.push(`WORKDIR ${last("WORKDIR")} is not ${dest}`);
  // the image: non-root, offline entry point, state as a volume, writable cache
  const user = last("USER")?.split(":")[0];
  if (!user || user === "root" || user === "0") problems.push(`runs as root (USER ${user})`);
  const entry = execArgv(last("ENTRYPOINT") ?? "[]");
  // an init first (tini, in the base image), then the offline command line
  const expected = ["/tini", "--", "deno", "run", ...OFFLINE_RUN_FLAGS, "-A", "src/main.ts"];
  if (entry.join(" ") !== expected.join(" ")) {
    problems.push(`ENTRYPOINT ${entry.join(" ")} is not ${expected.join(" ")}`);
  }
  const cmd = execArgv(last("CMD") ?? "[]");
  const volumes = finalStage(all, "VOLUME").flatMap((i) => execArgv(i.args));
  const stateDir = flagValue(cmd, "--state-dir");
  const env = finalEnv(all);
  if (cmd[0] !== "serve") problems.push(`CMD is not serve: ${cmd.join(" ")}`);
  if (!stateDir || !volumes.includes(stateDir)) {
    problems.push(`--state-dir ${stateDir} is not a VOLUME (${volumes.join(", ")})`);
  }
  if (env.STATE_DIRECTORY !== stateDir) {
    problems.push(`STATE_DIRECTORY ${env.STATE_DIRECTORY} is not --state-dir ${stateDir}`);
  }
  const runs = finalStage(all, "RUN").map((i) => i.args).join("\n");
  for (const [what, dir] of [["state", stateDir], ["DENO_DIR", env.DENO_DIR]]) {
    const owned = runs.match(/chown \S+ ([^&\n]+)/)?.[1].split(/\s+/) ?? [];
    if (!dir || !owned.some((d) => d !== "" && (dir === d || dir.startsWith(`${d}/`)))) {
      problems.push(`${what} ${dir} is not in a directory the image chowns to its user`);
    }
  }
  // the native CPU kernels prepare_offline.ts builds: the image points the sidecar at them, and
  // the build stage has the compiler that builds them
  if (env.LATENTWATCH_NATIVE_CACHE !== `${dest}/${NATIVE_KERNELS_DIR}`) {
    problems.push(
      `LATENTWATCH_NATIVE_CACHE ${env.LATENTWATCH_NATIVE_CACHE} is not ${dest}/${NATIVE_KERNELS_DIR}`,
    );
  }
  const buildRuns = all.filter((i) => i.stage === prepare.stage && i.keyword === "RUN");
  if (
    !buildRuns.slice(0, buildRuns.indexOf(prepare)).some((i) => /install\b.*\bgcc\b/.test(i.args))
  ) {
    problems.push("build stage: no C compiler installed before prepare (the native kernels)");
  }
  const hc = finalStage(all, "HEALTHCHECK")[0];
  if (!hc) problems.push("no HEALTHCHECK");
  const exposed = finalStage(all, "EXPOSE").flatMap((i) => i.args.split(/\s+/));
  const health = env.LATENTWATCH_HEALTH_URL ? new URL(env.LATENTWATCH_HEALTH_URL) : undefined;
  if (health?.pathname !== "/healthz" || !exposed.includes(health.port)) {
    problems.push(`health URL ${health} is not /healthz on an EXPOSEd port (${exposed})`);
  }
  return problems;
}

Deno.test("container: builds the offline folder, runs it offline as non-root, state as a volume", () => {
  const all = parseContainerfile(TEXT);
  assert.deepEqual(containerProblems(all), []);
  assert.equal(all.filter((i) => i.keyword === "FROM").length, 2);
});

Deno.test("container: the check reports a root image, an online entry point, a lost state dir", () => {
  const problems = (from: string, to: string) => {
    assert.ok(TEXT.includes(from), from);
    return containerProblems(parseContainerfile(TEXT.replace(from, to))).join("\n");
  };
  assert.match(problems("USER 10001:10001", "USER root"), /runs as root/);
  assert.match(problems('"--cached-only", ', ""), /ENTRYPOINT \/tini -- deno run --frozen/);
  assert.match(problems("VOLUME /var/lib/latentwatch", "VOLUME /data"), /is not a VOLUME/);
  assert.match(problems("COPY policies ./policies\n", ""), /policies not copied before prepare/);
  assert.match(problems("EXPOSE 8787", "EXPOSE 9090"), /not \/healthz on an EXPOSEd port/);
  assert.match(
    problems("LATENTWATCH_NATIVE_CACHE=/opt/latentwatch/native-kernels", "X=1"),
    /LATENTWATCH_NATIVE_CACHE undefined is not \/opt\/latentwatch\/native-kernels/,
  );
  assert.match(problems(" gcc libc6-dev", " libc6-dev"), /no C compiler installed before prepare/);
  assert.match(
    problems("DENO_DIR=/var/cache/latentwatch/deno", "DENO_DIR=/opt/latentwatch/.deno"),
    /DENO_DIR \/opt\/latentwatch\/\.deno is not in a directory the image chowns/,
  );
});

Deno.test({
  name: "container: the HEALTHCHECK command passes against the control API, fails without 200",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const all = parseContainerfile(TEXT);
    const { options, argv } = healthcheck(finalStage(all, "HEALTHCHECK")[0]);
    assert.equal(argv[0], "deno");
    assert.ok(options.timeout && options.interval, JSON.stringify(options));
    const path = new URL(finalEnv(all).LATENTWATCH_HEALTH_URL).pathname;
    const app = controlApi({ telemetry: new Telemetry(), ready: () => false, info: () => ({}) });
    const srv = serveControlApi(app, "127.0.0.1:0");
    const cwd = await Deno.makeTempDir({ prefix: "lw-health-" });
    const check = async (url: string) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: argv.slice(1),
        cwd,
        env: { LATENTWATCH_HEALTH_URL: url },
        stdout: "piped",
        stderr: "piped",
      }).output();
      return out.code;
    };
    try {
      const base = `http://127.0.0.1:${srv.addr.port}`;
      assert.equal(await check(`${base}${path}`), 0);
      assert.notEqual(await check(`${base}/readyz`), 0, "not ready: 503, unhealthy");
      assert.notEqual(await check(`${base}/no-such-path`), 0);
    } finally {
      await srv.shutdown();
      await Deno.remove(cwd, { recursive: true });
    }
  },
});
