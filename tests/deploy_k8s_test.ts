/**
 * deploy/k8s/ agrees with itself and with the rest of the project: every
 * manifest parses and its references hold (tests/helpers/k8s_manifests.ts);
 * the sidecar's monitor file, written out from its ConfigMap as the mount
 * would, loads with the project's own loader and its policy file parses; its
 * `control.listen` port is the container's and the probes', on an address the
 * kubelet reaches, and the probe paths answer 200 from the real control API;
 * its password variable is the monitor's `nats.password_env`, from the Secret
 * key that deploy/nats/accounts.conf gives the `latentwatch` user; `nats.url`
 * names the NATS Service; the NATS routes name the StatefulSet's pods through
 * its headless Service; the Secret's accounts.conf is deploy/nats/accounts.conf;
 * and nats-server accepts the configuration as mounted. Each check is also
 * shown to report a broken reference.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import {
  containers,
  find,
  loadManifests,
  type Manifest,
  type Obj,
  podSpec,
  probes,
  referenceProblems,
  resolvePort,
} from "./helpers/k8s_manifests.ts";
import { loadMonitorConfig } from "../src/config/monitor.ts";
import { loadPolicyFileDef } from "../src/config/policy_file.ts";
import { controlApi } from "../src/serve/control_api.ts";
import { Telemetry } from "../src/shared/telemetry.ts";
import { findNatsServer } from "../src/bus/nats_server.ts";
import { finalEnv, parseContainerfile } from "./helpers/containerfile.ts";

const DEPLOY = fileURLToPath(new URL("../deploy/", import.meta.url));
const K8S = `${DEPLOY}k8s`;
const ACCOUNTS = await Deno.readTextFile(`${DEPLOY}nats/accounts.conf`);
const IMAGE_ENV = finalEnv(
  parseContainerfile(await Deno.readTextFile(`${DEPLOY}container/Containerfile`)),
);
const CONTROL_APP = controlApi({ telemetry: new Telemetry(), ready: () => true, info: () => ({}) });

/** A container of a pod spec by name. */
function container(spec: Obj, name: string): Obj {
  const c = containers(spec).find((c) => c.name === name);
  assert.ok(c, `no container ${name}`);
  return c;
}

/** The argument after `flag`, or undefined. */
const flagValue = (argv: string[], flag: string) => {
  const i = argv.indexOf(flag);
  return i < 0 ? undefined : argv[i + 1];
};

/** The volume mounted at the folder holding `path` (the longest mount path that prefixes it). */
function mountOf(c: Obj, path: string): Obj | undefined {
  return (c.volumeMounts ?? []).filter((m: Obj) => path.startsWith(`${m.mountPath}/`))
    .sort((a: Obj, b: Obj) => b.mountPath.length - a.mountPath.length)[0];
}

/** The environment variable accounts.conf reads `user`'s password from. */
function accountsPasswordEnv(text: string, user: string): string | undefined {
  return new RegExp(`user: ${user}\\s+password: \\$([A-Za-z_][A-Za-z0-9_]*)`).exec(text)?.[1];
}

/** The pod running the sidecar: its manifest and spec. */
function sidecarPod(all: Manifest[]): { m: Manifest; spec: Obj } {
  const m = all.find((m) => podSpec(m)?.containers.some((c: Obj) => c.name === "latentwatch"));
  assert.ok(m, "no pod with a latentwatch container");
  return { m, spec: podSpec(m)! };
}

/**
 * Problems of the sidecar container: the monitor file from its ConfigMap
 * (loaded with `loadMonitorConfig` from `dir`, where the keys are written
 * out), ports, probes, password, NATS URL, writable paths.
 */
async function sidecarProblems(all: Manifest[], dir: string): Promise<string[]> {
  const problems: string[] = [];
  const { spec } = sidecarPod(all);
  const lw = container(spec, "latentwatch");
  const monitorPath = flagValue(lw.args, "--monitor") ?? "";
  const mount = mountOf(lw, monitorPath);
  const volume = spec.volumes.find((v: Obj) => v.name === mount?.name);
  const cm = volume?.configMap && find(all, "ConfigMap", volume.configMap.name);
  if (!cm) return [`--monitor ${monitorPath} is not on a ConfigMap volume`];
  // the ConfigMap's keys as files, as the volume shows them
  for (const [k, v] of Object.entries(cm.data as Record<string, string>)) {
    await Deno.writeTextFile(join(dir, k), v);
  }
  const cfg = await loadMonitorConfig(join(dir, monitorPath.slice(mount!.mountPath.length + 1)));
  for (const p of cfg.policies) {
    if (!p.startsWith(`${dir}/`)) problems.push(`policy ${p} is not in the monitor's ConfigMap`);
    else await loadPolicyFileDef(p).catch((e) => problems.push(`policy ${p}: ${e.message}`));
  }
  for (const s of cfg.saes) {
    const m = mountOf(lw, s.path);
    if (!m) problems.push(`SAE ${s.id}: ${s.path} is on no volume of the container`);
  }
  // the control API: listen port = container port = probe ports; reachable from the kubelet
  const listen = cfg.control?.listen ?? "";
  const [host, port] = [listen.slice(0, listen.lastIndexOf(":")), Number(listen.split(":").pop())];
  if (!["0.0.0.0", "[::]"].includes(host)) {
    problems.push(`control.listen ${listen}: the kubelet's probes cannot reach ${host}`);
  }
  if (!(lw.ports ?? []).some((p: Obj) => p.containerPort === port)) {
    problems.push(`control.listen port ${port} is not a container port of latentwatch`);
  }
  const kinds = probes(lw).map(([k]) => k);
  for (const need of ["livenessProbe", "readinessProbe"]) {
    if (!kinds.includes(need)) problems.push(`latentwatch: no ${need}`);
  }
  for (const [kind, p] of probes(lw)) {
    if (resolvePort(lw, p.httpGet.port) !== port) {
      problems.push(`latentwatch ${kind}: port ${p.httpGet.port} is not control.listen's ${port}`);
    }
    const res = await CONTROL_APP.request(p.httpGet.path);
    await res.body?.cancel();
    if (res.status !== 200) {
      problems.push(`latentwatch ${kind}: ${p.httpGet.path} answers ${res.status}`);
    }
  }
  // the password: env named by password_env, from the key accounts.conf reads for the user
  const want = accountsPasswordEnv(ACCOUNTS, cfg.nats.user ?? "");
  if (cfg.nats.passwordEnv !== want) {
    problems.push(`nats.password_env ${cfg.nats.passwordEnv} is not accounts.conf's ${want}`);
  }
  const env = (lw.env ?? []).find((e: Obj) => e.name === cfg.nats.passwordEnv);
  if (env?.valueFrom?.secretKeyRef?.key !== want) {
    problems.push(`latentwatch env ${cfg.nats.passwordEnv} is not the Secret's key ${want}`);
  }
  problems.push(...natsUrlProblems(all, cfg.nats.url));
  // writable: the state dir and Deno's cache; the root file system is read-only
  for (
    const [what, path] of [
      ["--state-dir", flagValue(lw.args, "--state-dir")],
      ["DENO_DIR", IMAGE_ENV.DENO_DIR],
    ]
  ) {
    const m = path ? mountOf(lw, `${path}/`) : undefined;
    const v = spec.volumes.find((v: Obj) => v.name === m?.name);
    if (!v || m?.readOnly || !(v.emptyDir || v.persistentVolumeClaim)) {
      problems.push(`${what} ${path} is not on a writable volume`);
    }
  }
  // the init container checks the same file with the same volumes
  const check = container(spec, "latentwatch-check");
  if (!check.args.includes("--check") || flagValue(check.args, "--monitor") !== monitorPath) {
    problems.push("latentwatch-check does not run serve --check on the served monitor file");
  }
  return problems;
}

/** Each server of `url` (comma-separated) is a Service of the manifests, on its client port. */
function natsUrlProblems(all: Manifest[], url: string): string[] {
  const problems: string[] = [];
  for (const u of url.split(",")) {
    const { hostname, port } = new URL(u);
    const [svc, ns = "latentwatch"] = hostname.split(".");
    const s = find(all, "Service", svc);
    if (!s || s.metadata.namespace !== ns) {
      problems.push(`nats.url ${u}: no Service ${svc} in ${ns}`);
    } else if (!s.spec.ports.some((p: Obj) => p.port === Number(port || 4222))) {
      problems.push(`nats.url ${u}: Service ${svc} has no port ${port}`);
    }
  }
  return problems;
}

/** Problems of the NATS cluster: config vs ports, routes vs pods, Secret vs accounts.conf. */
function natsProblems(all: Manifest[]): string[] {
  const problems: string[] = [];
  const sts = all.find((m) => m.kind === "StatefulSet" && m.metadata.name === "nats");
  if (!sts) return ["no StatefulSet nats"];
  const spec = podSpec(sts)!;
  const nats = container(spec, "nats");
  const confPath = flagValue(nats.args, "-c") ?? "";
  const mount = mountOf(nats, confPath);
  const sources: Obj[] =
    spec.volumes.find((v: Obj) => v.name === mount?.name)?.projected?.sources ??
      [];
  const fileOf = (name: string) => {
    for (const s of sources) {
      const src = s.configMap ?? s.secret;
      const item = src.items?.find((i: Obj) => i.path === name);
      const obj = find(all, s.configMap ? "ConfigMap" : "Secret", src.name);
      if (item && obj) return ({ ...obj.data, ...obj.stringData })[item.key] as string;
    }
  };
  const conf = fileOf(confPath.slice((mount?.mountPath.length ?? 0) + 1));
  if (!conf) return [`-c ${confPath} is not a file of the projected config volume`];
  const include = /^include \.\/(\S+)$/m.exec(conf)?.[1];
  if (!include || fileOf(include) !== ACCOUNTS) {
    problems.push(`include ./${include}: not deploy/nats/accounts.conf beside nats.conf`);
  }
  if (!/^jetstream \{/m.test(conf)) problems.push("JetStream is not enabled");
  const portOf = (re: RegExp) => Number(re.exec(conf)?.[1]);
  const expect: [string, number][] = [
    ["client", portOf(/^listen: \S+:(\d+)$/m)],
    ["cluster", portOf(/^\s+listen: \S+:(\d+)$/m)],
    ["monitor", portOf(/^http: \S+:(\d+)$/m)],
  ];
  for (const [name, port] of expect) {
    if (resolvePort(nats, name) !== port) problems.push(`nats port ${name} is not ${port}`);
  }
  const routes = [...conf.matchAll(/nats-route:\/\/(\S+)/g)].map((m) => m[1]);
  const want = Array.from(
    { length: sts.spec.replicas },
    (_, i) =>
      `${sts.metadata.name}-${i}.${sts.spec.serviceName}.${sts.metadata.namespace}` +
      `.svc.cluster.local:${resolvePort(nats, "cluster")}`,
  );
  if (routes.join(" ") !== want.join(" ")) {
    problems.push(`routes ${routes.join(" ")} are not the pods ${want.join(" ")}`);
  }
  // every $VAR of the config from the pod's env
  const names = (nats.env ?? []).map((e: Obj) => e.name);
  // a variable is an unquoted value (`password: $X`); comments and quoted subjects are not
  const uncommented = `${conf}\n${ACCOUNTS}`.replace(/#.*$/gm, "");
  const vars = [...uncommented.matchAll(/:\s*\$([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]);
  for (const v of new Set(vars)) {
    if (!names.includes(v)) problems.push(`nats: $${v} is not in the container's env`);
  }
  return problems;
}

Deno.test("k8s: every manifest parses and every reference between them holds", async () => {
  const all = await loadManifests(K8S);
  assert.deepEqual(referenceProblems(all), []);
  const listed = all.map((m) => m.file);
  for (const f of Deno.readDirSync(K8S)) {
    if (f.name.endsWith(".yaml") && f.name !== "kustomization.yaml") {
      assert.ok(listed.includes(f.name), `${f.name} is not in kustomization.yaml`);
    }
  }
});

Deno.test("k8s: the sidecar's monitor file, ports, probes, password and NATS URL agree", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lw-k8s-" });
  try {
    assert.deepEqual(await sidecarProblems(await loadManifests(K8S), dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("k8s: the NATS cluster's config, routes, ports and users agree", async () => {
  assert.deepEqual(natsProblems(await loadManifests(K8S)), []);
});

Deno.test("k8s: the checks report a broken port, mount, key, route, probe path or password", async () => {
  const broken = async (edit: (all: Manifest[]) => void) => {
    const all = await loadManifests(K8S);
    edit(all);
    const dir = await Deno.makeTempDir({ prefix: "lw-k8s-" });
    try {
      const found = [
        ...referenceProblems(all),
        ...await sidecarProblems(all, dir).catch((e) => [String(e.message)]),
        ...natsProblems(all),
      ];
      return found.join("\n");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  };
  const lw = (all: Manifest[]) => container(sidecarPod(all).spec, "latentwatch");
  const nats = (all: Manifest[]) => container(podSpec(find(all, "StatefulSet", "nats")!)!, "nats");
  const monitor = (all: Manifest[]) => find(all, "ConfigMap", "latentwatch-monitor")!.data;
  assert.match(
    await broken((all) => lw(all).ports[0].containerPort = 8788),
    /control\.listen port 8787 is not a container port/,
  );
  assert.match(
    await broken((all) =>
      monitor(all)["monitor.yaml"] = monitor(all)["monitor.yaml"]
        .replace("0.0.0.0:8787", "127.0.0.1:8787")
    ),
    /probes cannot reach 127\.0\.0\.1/,
  );
  assert.match(
    await broken((all) => lw(all).readinessProbe.httpGet.path = "/ready"),
    /readinessProbe: \/ready answers 404/,
  );
  assert.match(
    await broken((all) => lw(all).volumeMounts[0].name = "monitr"),
    /mounts volume monitr, which the pod does not have/,
  );
  assert.match(
    await broken((all) => lw(all).env[0].valueFrom.secretKeyRef.key = "NATS_PASSWORD"),
    /Secret latentwatch-nats has no key NATS_PASSWORD/,
  );
  assert.match(
    await broken((all) =>
      monitor(all)["monitor.yaml"] = monitor(all)["monitor.yaml"]
        .replace("password_env: LATENTWATCH_NATS_PASSWORD", "password_env: NATS_PW")
    ),
    /nats\.password_env NATS_PW is not accounts\.conf's LATENTWATCH_NATS_PASSWORD/,
  );
  assert.match(
    await broken((all) =>
      monitor(all)["monitor.yaml"] = monitor(all)["monitor.yaml"]
        .replace("nats://nats.latentwatch", "nats://nats-client.latentwatch")
    ),
    /no Service nats-client in latentwatch/,
  );
  assert.match(
    await broken((all) =>
      monitor(all)["monitor.yaml"] = monitor(all)["monitor.yaml"]
        .replace("saes: [", "saes: [").replace("path: /saes/", "path: /models/")
    ),
    /SAE gs-res-20: \/models\/.* is on no volume/,
  );
  assert.match(
    await broken((all) =>
      monitor(all)["monitor.yaml"] = monitor(all)["monitor.yaml"]
        .replace("hook: ", "hok: ")
    ),
    /monitor\.yaml:\d+:\d+/,
  );
  assert.match(
    await broken((all) => nats(all).ports[1].containerPort = 7222),
    /nats port cluster is not 6222/,
  );
  assert.match(
    await broken((all) => find(all, "StatefulSet", "nats")!.spec.replicas = 5),
    /routes .* are not the pods/,
  );
  assert.match(
    await broken((all) =>
      find(all, "Secret", "latentwatch-nats")!.stringData["accounts.conf"] += "#"
    ),
    /not deploy\/nats\/accounts\.conf beside nats\.conf/,
  );
  assert.match(
    await broken((all) => nats(all).env.pop()),
    /\$LATENTWATCH_SYS_PASSWORD is not in the container's env/,
  );
  assert.match(
    await broken((all) => find(all, "NetworkPolicy", "nats")!.spec.ingress[0].ports[0].port = 6223),
    /NetworkPolicy nats: port 6223 is not a port of nats/,
  );
  assert.match(
    await broken((all) => find(all, "Service", "nats-headless")!.spec.clusterIP = undefined),
    /serviceName nats-headless is not a headless Service/,
  );
});

const natsServer = await findNatsServer();

Deno.test({
  name: "k8s: nats-server accepts nats.conf and accounts.conf as the pod mounts them",
  ignore: natsServer === null,
  fn: async () => {
    const all = await loadManifests(K8S);
    const dir = await Deno.makeTempDir({ prefix: "lw-k8s-nats-" });
    try {
      const conf = find(all, "ConfigMap", "nats-config")!.data["nats.conf"];
      const secret = find(all, "Secret", "latentwatch-nats")!.stringData;
      await Deno.writeTextFile(`${dir}/nats.conf`, conf);
      await Deno.writeTextFile(`${dir}/accounts.conf`, secret["accounts.conf"]);
      const env: Record<string, string> = { POD_NAME: "nats-0" };
      for (const [k, v] of Object.entries(secret)) if (k !== "accounts.conf") env[k] = String(v);
      const run = async (file: string) => {
        const out = await new Deno.Command(natsServer!, {
          args: ["-t", "-c", file],
          env,
          stdout: "piped",
          stderr: "piped",
        }).output();
        return { code: out.code, text: new TextDecoder().decode(out.stderr) };
      };
      const ok = await run(`${dir}/nats.conf`);
      assert.equal(ok.code, 0, ok.text);
      await Deno.writeTextFile(`${dir}/broken.conf`, conf.replace("cluster {", "cluster {{"));
      assert.notEqual((await run(`${dir}/broken.conf`)).code, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
if (natsServer === null) console.error("k8s: nats-server not installed: its config check skipped");
