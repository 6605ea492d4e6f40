/**
 * Kubernetes manifests as plain objects, for tests/deploy_k8s_test.ts:
 * {@linkcode loadManifests} reads the files a `kustomization.yaml` lists
 * (multi-document YAML, aliases resolved), and {@linkcode referenceProblems}
 * checks the references between them that `kubectl apply` would not: every
 * volume mount names a volume, every ConfigMap, Secret and key a volume or an
 * env var names exists, every probe port is a port of its container, every
 * Service and NetworkPolicy selects a pod template with the ports it names, a StatefulSet's
 * `serviceName` is a headless Service, and every claim is declared.
 *
 * @module
 */
import { parseAllDocuments } from "yaml";

// deno-lint-ignore no-explicit-any
export type Obj = Record<string, any>;

/** A parsed manifest with the file it came from. */
export interface Manifest extends Obj {
  kind: string;
  metadata: { name: string; namespace?: string };
  file: string;
}

/**
 * Every object in the files `dir/kustomization.yaml` lists, in order.
 * Throws on a YAML error or a document without kind or name.
 */
export async function loadManifests(dir: string): Promise<Manifest[]> {
  const kust = parseAllDocuments(await Deno.readTextFile(`${dir}/kustomization.yaml`))[0].toJS();
  const out: Manifest[] = [];
  for (const file of kust.resources as string[]) {
    for (const doc of parseAllDocuments(await Deno.readTextFile(`${dir}/${file}`))) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`);
      const obj = doc.toJS({ maxAliasCount: 100 });
      if (obj === null) continue;
      if (!obj.kind || !obj.metadata?.name) {
        throw new Error(`${file}: a document without kind/name`);
      }
      out.push({ ...obj, file });
    }
  }
  return out;
}

/** The object of `kind` named `name`, or undefined. */
export function find(all: Manifest[], kind: string, name: string): Manifest | undefined {
  return all.find((m) => m.kind === kind && m.metadata.name === name);
}

/** The pod template of a Deployment, StatefulSet, DaemonSet or Job, or undefined. */
export function podSpec(m: Manifest): Obj | undefined {
  return m.spec?.template?.spec;
}

/** Every container of a pod spec, init containers first. */
export function containers(spec: Obj): Obj[] {
  return [...(spec.initContainers ?? []), ...(spec.containers ?? [])];
}

/** The keys a ConfigMap or Secret holds (`data`, `stringData`, `binaryData`). */
export function keysOf(m: Manifest): string[] {
  return Object.keys({ ...m.data, ...m.stringData, ...m.binaryData });
}

/** Every probe of a container, by kind. */
export function probes(c: Obj): [string, Obj][] {
  return (["startupProbe", "livenessProbe", "readinessProbe"] as const)
    .filter((p) => c[p]).map((p) => [p, c[p]]);
}

/** The container port a probe's or Service's `port` (a number or a name) means, or undefined. */
export function resolvePort(c: Obj, port: number | string): number | undefined {
  const ports: Obj[] = c.ports ?? [];
  if (typeof port === "number") {
    return ports.some((p) => p.containerPort === port) ? port : undefined;
  }
  return ports.find((p) => p.name === port)?.containerPort;
}

function refProblems(
  all: Manifest[],
  where: string,
  kind: "ConfigMap" | "Secret",
  name: string,
  keys: string[],
): string[] {
  const obj = find(all, kind, name);
  if (!obj) return [`${where}: ${kind} ${name} does not exist`];
  const have = keysOf(obj);
  return keys.filter((k) => !have.includes(k)).map((k) =>
    `${where}: ${kind} ${name} has no key ${k}`
  );
}

/** Problems with the volumes of one pod spec (`where` names it in messages). */
function volumeProblems(all: Manifest[], where: string, m: Manifest, spec: Obj): string[] {
  const problems: string[] = [];
  const volumes: Obj[] = spec.volumes ?? [];
  const claimTemplates: string[] = (m.spec?.volumeClaimTemplates ?? []).map((t: Obj) =>
    t.metadata.name
  );
  const names = [...volumes.map((v) => v.name), ...claimTemplates];
  const mounted = new Set<string>();
  for (const c of containers(spec)) {
    for (const vm of c.volumeMounts ?? []) {
      mounted.add(vm.name);
      if (!names.includes(vm.name)) {
        problems.push(`${where}/${c.name}: mounts volume ${vm.name}, which the pod does not have`);
      }
    }
  }
  for (const n of names) if (!mounted.has(n)) problems.push(`${where}: volume ${n} is not mounted`);
  for (const v of volumes) {
    const at = `${where}: volume ${v.name}`;
    const sources: Obj[] = v.projected ? v.projected.sources : [v];
    for (const s of sources) {
      const items = (x: Obj) => (x.items ?? []).map((i: Obj) => i.key);
      if (s.configMap) {
        problems.push(...refProblems(all, at, "ConfigMap", s.configMap.name, items(s.configMap)));
      }
      if (s.secret) {
        const name = s.secret.secretName ?? s.secret.name;
        problems.push(...refProblems(all, at, "Secret", name, items(s.secret)));
      }
    }
    const claim = v.persistentVolumeClaim?.claimName;
    if (claim && !find(all, "PersistentVolumeClaim", claim)) {
      problems.push(`${at}: PersistentVolumeClaim ${claim} does not exist`);
    }
  }
  return problems;
}

/** Problems with env references and probe ports of one pod spec. */
function containerProblems(all: Manifest[], where: string, spec: Obj): string[] {
  const problems: string[] = [];
  for (const c of containers(spec)) {
    const at = `${where}/${c.name}`;
    for (const e of c.env ?? []) {
      const s = e.valueFrom?.secretKeyRef;
      const cm = e.valueFrom?.configMapKeyRef;
      if (s) problems.push(...refProblems(all, `${at}: env ${e.name}`, "Secret", s.name, [s.key]));
      if (cm) {
        problems.push(...refProblems(all, `${at}: env ${e.name}`, "ConfigMap", cm.name, [cm.key]));
      }
    }
    for (const [kind, p] of probes(c)) {
      const port = p.httpGet?.port ?? p.tcpSocket?.port;
      if (port !== undefined && resolvePort(c, port) === undefined) {
        problems.push(`${at}: ${kind} port ${port} is not a port of the container`);
      }
    }
  }
  return problems;
}

/** The workloads whose pod template carries every label of `sel`. */
function selected(workloads: Manifest[], sel: Obj): Manifest[] {
  return workloads.filter((w) =>
    Object.entries(sel).every(([k, v]) => w.spec.template.metadata?.labels?.[k] === v)
  );
}

/**
 * Problems with Services (selectors, target ports), NetworkPolicies
 * (selectors, ports) and StatefulSets' headless Services.
 */
function serviceProblems(all: Manifest[]): string[] {
  const problems: string[] = [];
  const workloads = all.filter((m) => podSpec(m));
  for (const svc of all.filter((m) => m.kind === "Service")) {
    const chosen = selected(workloads, svc.spec.selector ?? {});
    if (chosen.length === 0) {
      problems.push(`Service ${svc.metadata.name}: its selector matches no pod template`);
      continue;
    }
    for (const p of svc.spec.ports ?? []) {
      const target = p.targetPort ?? p.port;
      for (const w of chosen) {
        if (!podSpec(w)!.containers.some((c: Obj) => resolvePort(c, target) !== undefined)) {
          problems.push(
            `Service ${svc.metadata.name}: targetPort ${target} is not a port of ${w.metadata.name}`,
          );
        }
      }
    }
  }
  for (const np of all.filter((m) => m.kind === "NetworkPolicy")) {
    const at = `NetworkPolicy ${np.metadata.name}`;
    const pods = selected(workloads, np.spec.podSelector?.matchLabels ?? {});
    if (pods.length === 0) problems.push(`${at}: its podSelector matches no pod template`);
    for (const rule of np.spec.ingress ?? []) {
      for (const f of rule.from ?? []) {
        if (f.podSelector && selected(workloads, f.podSelector.matchLabels ?? {}).length === 0) {
          problems.push(`${at}: a from podSelector matches no pod template`);
        }
      }
      for (const p of rule.ports ?? []) {
        for (const w of pods) {
          if (!podSpec(w)!.containers.some((c: Obj) => resolvePort(c, p.port) !== undefined)) {
            problems.push(`${at}: port ${p.port} is not a port of ${w.metadata.name}`);
          }
        }
      }
    }
  }
  for (const sts of all.filter((m) => m.kind === "StatefulSet")) {
    const svc = find(all, "Service", sts.spec.serviceName);
    if (!svc || svc.spec.clusterIP !== "None") {
      problems.push(
        `StatefulSet ${sts.metadata.name}: serviceName ${sts.spec.serviceName} ` +
          "is not a headless Service",
      );
    }
  }
  return problems;
}

/**
 * Every broken reference between the manifests; empty when there is none.
 *
 * @example
 * ```ts
 * const all = await loadManifests("deploy/k8s");
 * referenceProblems(all); // []
 * ```
 */
export function referenceProblems(all: Manifest[]): string[] {
  const problems: string[] = [];
  const namespaces = all.filter((m) => m.kind === "Namespace").map((m) => m.metadata.name);
  for (const m of all) {
    const where = `${m.kind} ${m.metadata.name} (${m.file})`;
    if (m.kind !== "Namespace" && !namespaces.includes(m.metadata.namespace ?? "")) {
      problems.push(`${where}: namespace ${m.metadata.namespace} is not declared`);
    }
    const spec = podSpec(m);
    if (!spec) continue;
    problems.push(...volumeProblems(all, where, m, spec), ...containerProblems(all, where, spec));
  }
  return [...problems, ...serviceProblems(all)];
}
