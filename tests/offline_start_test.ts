/**
 * Offline start: `tools/prepare_offline.ts` (`deno task prepare-offline`),
 * run exactly as deploy/container/Containerfile's build step runs it,
 * prepares a folder in a temporary directory with every download made
 * impossible (an unreachable proxy); then the demo, the whole pipeline with
 * onnxruntime-node's native binding, runs from it with the image's
 * `ENTRYPOINT` (`--cached-only`), an empty `DENO_DIR` and an unreachable npm
 * registry. Then, as `nobody`, the
 * recorded trace is replayed from the same folder with nothing writable
 * (the folder, `DENO_DIR` and `HOME`), as the systemd unit and the container
 * run it; and a folder missing one package fails instead of fetching it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { rename } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  NATIVE_KERNELS_DIR,
  OFFLINE_RUN_FLAGS,
  onnxruntimeBinDir,
  REPO_ROOT,
} from "../tools/prepare_offline.ts";
import { execArgv, finalStage, parseContainerfile } from "./helpers/containerfile.ts";
import { one, parseUnit } from "./helpers/unit_file.ts";

const CONTAINERFILE = parseContainerfile(
  await Deno.readTextFile(
    fileURLToPath(new URL("../deploy/container/Containerfile", import.meta.url)),
  ),
);
/** The build step that prepares the folder, and the folder it prepares. */
const PREPARE = execArgv(
  CONTAINERFILE.find((i) => i.keyword === "RUN" && i.args.includes("prepare_offline.ts"))!.args,
);
const IMAGE_DIR = PREPARE[PREPARE.indexOf("tools/prepare_offline.ts") + 1];
/** The image's entry point: `deno run --cached-only ... src/main.ts`. */
const ENTRYPOINT = execArgv(finalStage(CONTAINERFILE, "ENTRYPOINT")[0].args);

/** Every fetch fails: nothing listens on port 9 of loopback. */
const UNREACHABLE = "http://127.0.0.1:9";
const NO_NETWORK = {
  HTTP_PROXY: UNREACHABLE,
  HTTPS_PROXY: UNREACHABLE,
  http_proxy: UNREACHABLE,
  https_proxy: UNREACHABLE,
  NO_PROXY: "",
  no_proxy: "",
};

interface Run {
  code: number;
  out: string;
}

/** `deno run --cached-only --frozen -A src/main.ts ...args` in `dir`, offline. */
async function runOffline(
  dir: string,
  args: string[],
  env: Record<string, string>,
  asNobody = false,
): Promise<Run> {
  // the image's init (`/tini --`) is not here: deno runs directly
  const at = ENTRYPOINT.indexOf("deno");
  assert.deepEqual(ENTRYPOINT.slice(at), [
    "deno",
    "run",
    ...OFFLINE_RUN_FLAGS,
    "-A",
    "src/main.ts",
  ]);
  const deno = [Deno.execPath(), ...ENTRYPOINT.slice(at + 1), ...args];
  const cmd = asNobody
    ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ...deno]
    : deno;
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: dir,
    env: {
      ...NO_NETWORK,
      NPM_CONFIG_REGISTRY: UNREACHABLE,
      NO_COLOR: "1",
      ORT_DISABLE_TELEMETRY: "1",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

/** Root may switch to `nobody` with setpriv: the read-only run needs both. */
async function canRunAsNobody(): Promise<boolean> {
  if (Deno.uid?.() !== 0) return false;
  try {
    const r = await new Deno.Command("setpriv", { args: ["--version"], stdout: "null" }).output();
    return r.success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "offline start: a prepared folder runs the demo and a replay with --cached-only",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const tmp = await Deno.makeTempDir({ prefix: "lw-offline-" });
    await Deno.chmod(tmp, 0o755); // nobody reads the folder below
    const app = join(tmp, "latentwatch");
    try {
      await t.step("the image's prepare step fills node_modules from the cache alone", async () => {
        // `RUN deno run -A tools/prepare_offline.ts /opt/latentwatch ...`, into `app`
        assert.deepEqual(PREPARE.slice(0, 4), ["deno", "run", "-A", "tools/prepare_offline.ts"]);
        const args = PREPARE.slice(1).map((a) => a === IMAGE_DIR ? app : a);
        const r = await new Deno.Command(Deno.execPath(), {
          args,
          cwd: REPO_ROOT,
          env: NO_NETWORK,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const dec = new TextDecoder();
        // a download here fails: every package of deno.lock must be in DENO_DIR's npm cache
        // already (it is once the suite's own modules have loaded; else run `deno install`)
        assert.equal(r.code, 0, dec.decode(r.stdout) + dec.decode(r.stderr));
        const found = [...Deno.readDirSync(onnxruntimeBinDir(app))].map((e) => e.name).sort();
        assert.deepEqual(found.filter((f) => f.endsWith(".node")), ["onnxruntime_binding.node"]);
        assert.ok(found.some((f) => f.startsWith("libonnxruntime")), found.join(", "));
        // --platform-only: no other platform's binaries in the image
        const platforms = [...Deno.readDirSync(join(onnxruntimeBinDir(app), "..", ".."))];
        assert.deepEqual(platforms.map((e) => e.name), [process.platform]);
        // the native CPU kernels, built where they can be (x86-64 and a C compiler: the test
        // command installs one), else the output says why not
        if (await nativeKernelsBuildHere()) {
          const kernels = [...Deno.readDirSync(join(app, NATIVE_KERNELS_DIR))].map((e) => e.name);
          assert.ok(kernels.some((f) => /^kernels-[0-9a-f]{16}\.so$/.test(f)), kernels.join(", "));
          assert.match(
            dec.decode(r.stdout),
            /native CPU kernels: built .*LATENTWATCH_NATIVE_CACHE=/,
          );
        } else {
          assert.match(dec.decode(r.stdout), /native CPU kernels: not built: /);
        }
      });

      await t.step("the demo runs offline from an empty DENO_DIR", async () => {
        const r = await runOffline(app, ["demo", "--in-process", "--no-color"], {
          DENO_DIR: join(tmp, "deno_dir"),
        });
        assert.equal(r.code, 0, r.out);
        assert.match(r.out, /6 alerts acknowledged by stream LATENTWATCH_ALERTS/);
        assert.match(r.out, /0 alerts dropped/);
        // it ends with the workbench for its trace
        assert.match(
          r.out,
          /explore \.latentwatch\/demo\/demo\.trace\.gz --monitor monitors\/demo\.yaml\n\s+then open http:\/\/127\.0\.0\.1:8790\/ui\//,
        );
      });

      const nobody = await canRunAsNobody();
      await t.step({
        name: "as nobody, with the folder, DENO_DIR and HOME read-only, a replay runs",
        ignore: !nobody,
        fn: async () => {
          // tmp belongs to root: nobody cannot create this DENO_DIR, nor write the folder
          const denoDir = join(tmp, "read-only-cache");
          const r = await runOffline(
            app,
            [
              "replay",
              ".latentwatch/demo/demo.trace.gz",
              "--monitor",
              "monitors/demo.yaml",
            ],
            { DENO_DIR: denoDir, HOME: "/nonexistent" },
            true,
          );
          assert.equal(r.code, 0, r.out);
          assert.match(r.out, /54 frames, 105 tokens, 5 requests, 6 alert\(s\)/);
          assert.equal(await Deno.stat(denoDir).then(() => true, () => false), false);
        },
      });
      if (!nobody) console.error("offline start: not root or no setpriv: read-only run skipped");

      await t.step("the systemd unit's ExecStartPre (serve --check) runs offline", async () => {
        const unit = parseUnit(
          await Deno.readTextFile(
            fileURLToPath(new URL("../deploy/systemd/latentwatch.service", import.meta.url)),
          ),
        );
        const pre = one(unit, "Service", "ExecStartPre").split(/\s+/);
        const args = pre.slice(pre.indexOf("src/main.ts") + 1);
        assert.deepEqual(args.slice(0, 2), ["serve", "--check"]);
        // the unit's monitor file is the operator's: the demo's stands in for it
        const monitor = args.indexOf("/etc/latentwatch/monitor.yaml");
        assert.ok(monitor > 0, args.join(" "));
        args[monitor] = "monitors/demo.yaml";
        const env = { DENO_DIR: join(tmp, "read-only-cache"), HOME: "/nonexistent" };
        // systemd creates StateDirectory= owned by the unit's (dynamic) user
        const state = join(tmp, "state");
        await Deno.mkdir(state, { mode: 0o700 });
        if (nobody) await Deno.chown(state, 65534, 65534);
        const ok = await runOffline(
          app,
          args,
          { ...env, STATE_DIRECTORY: state },
          nobody,
        );
        assert.equal(ok.code, 0, ok.out);
        assert.match(ok.out, /ok: monitor demo/);
        // and it refuses a monitor file that does not load, without connecting anywhere
        await Deno.writeTextFile(join(tmp, "bad.yaml"), "monitor: demo\nmodel: m\n");
        await Deno.chmod(join(tmp, "bad.yaml"), 0o644);
        args[monitor] = join(tmp, "bad.yaml");
        const bad = await runOffline(app, args, env, nobody);
        assert.equal(bad.code, 1, bad.out);
        assert.match(bad.out, /bad\.yaml:\d+:\d+/);
      });

      await t.step("a folder missing a package fails instead of fetching it", async () => {
        const imports = JSON.parse(await Deno.readTextFile(join(app, "deno.json"))).imports;
        const pkg = String(imports.yaml).replace(/^npm:/, ""); // yaml@2.9.1
        const yaml = join(app, "node_modules", ".deno", pkg);
        await rename(yaml, `${yaml}.aside`);
        try {
          const r = await runOffline(app, ["demo", "--in-process", "--no-color"], {
            DENO_DIR: join(tmp, "deno_dir"),
          });
          assert.notEqual(r.code, 0, r.out);
          assert.match(r.out, /npm package not found in cache: "yaml", --cached-only/);
        } finally {
          await rename(`${yaml}.aside`, yaml);
        }
      });
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

/** Whether this machine can build the native kernels: x86-64 and a C compiler that runs. */
async function nativeKernelsBuildHere(): Promise<boolean> {
  if (Deno.build.arch !== "x86_64") return false;
  try {
    const cc = Deno.env.get("CC") ?? "cc";
    return (await new Deno.Command(cc, { args: ["--version"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false; // no such command
  }
}
