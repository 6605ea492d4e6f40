/**
 * Scale-out on a real 3-node nats-server cluster (routes, JetStream, the
 * alert stream and the lease bucket with 3 replicas) and 3 real
 * `latentwatch serve` processes sharing 16 partitions (docs/scale-out.md):
 *
 * 1. the same 200-request traffic gives exactly the alerts one sidecar
 *    gives, none twice in the stream;
 * 2. SIGKILL one sidecar mid-stream: its partitions move within the lease
 *    time, requests that start afterwards alert normally, and the requests
 *    that lost their window state are counted, exactly;
 * 3. SIGKILL one nats-server node mid-stream: no acknowledged alert is lost
 *    or duplicated, and tap and sidecars carry on through the others.
 */
import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { partitionOf, tapSubject } from "../src/core/frame/subjects.ts";
import { Tap } from "../src/tap/tap.ts";
import { startNatsCluster } from "../src/bus/nats_cluster.ts";
import {
  BENIGN,
  controlJson,
  type Fixture,
  HOOK,
  metricSum,
  MODEL,
  partitionsSettled,
  type PartitionsView,
  ports,
  requests,
  sendFrames,
  type Sidecar,
  startSidecar,
  writeFixture,
  writeMonitor,
} from "./helpers/sidecars.ts";
import { readAlerts, waitUntil } from "./helpers/stream.ts";

const PARTITIONS = 16;
const FRAMES = 4;

/** Start `n` scaled-out sidecars on one stream and bucket; wait until they share every partition. */
async function startScaled(
  fx: Fixture,
  o: { url: string; run: string; n: number; ttlMs: number; heartbeatMs: number; replicas: number },
): Promise<Sidecar[]> {
  const ps = ports(o.n);
  const sidecars: Sidecar[] = [];
  for (let i = 0; i < o.n; i++) {
    const file = await writeMonitor(fx, `${o.run}-${i}`, {
      natsUrl: o.url,
      stream: `ALERTS_${o.run.toUpperCase()}`,
      subject: `lw.alerts.${o.run}`,
      port: ps[i],
      spool: `spool-${o.run}-${i}`,
      jsonl: `${o.run}-${i}.jsonl`,
      replicas: o.replicas,
      scaleOut: {
        partitions: PARTITIONS,
        lease_ttl_ms: o.ttlMs,
        heartbeat_ms: o.heartbeatMs,
        bucket: `lw_${o.run}`,
        replicas: o.replicas,
        member: `${o.run}-${i}`,
      },
    });
    sidecars.push(startSidecar(`${o.run}-${i}`, file, ps[i]));
  }
  await waitUntil(
    async () => (await partitionsSettled(sidecars, PARTITIONS)) !== null,
    // built at the timeout, so it shows what each sidecar last logged
    () =>
      `${o.n} sidecars sharing ${PARTITIONS} partitions:\n${
        sidecars.map((s) => `[${s.name}]\n${s.lines.slice(-8).join("\n")}`).join("\n")
      }`,
    90_000,
  );
  return sidecars;
}

/** Wait until the frames received by `sidecars` stop changing (everything sent has arrived). */
async function quiesce(sidecars: Sidecar[]): Promise<void> {
  let last = -1;
  await waitUntil(
    async () => {
      const now = (await Promise.all(
        sidecars.map((s) => metricSum(s.port, "latentwatch_frames_received_total")),
      )).reduce((a, b) => a + b, 0);
      const stable = now === last;
      last = now;
      await new Promise((r) => setTimeout(r, 400));
      return stable;
    },
    "the sidecars took in every frame",
    30_000,
  );
}

async function stopAll(sidecars: Sidecar[]): Promise<void> {
  for (const s of sidecars) {
    try {
      s.child.kill("SIGTERM");
    } catch { /* gone already */ }
  }
  for (const s of sidecars) {
    await s.child.status;
    await s.done;
  }
}

/** (request, rule, position) of every alert in `stream`, and the ids stored more than once. */
async function alertsIn(url: string, stream: string) {
  const stored = await readAlerts(url, stream);
  const count = new Map<string, number>();
  for (const s of stored) count.set(s.msgId, (count.get(s.msgId) ?? 0) + 1);
  return {
    ids: new Set(stored.map((s) => s.msgId)),
    keys: new Set(
      stored.map((s) => `${s.alert.requestId}|${s.alert.policy.id}|${s.alert.tokens.start}`),
    ),
    requests: new Set(stored.map((s) => s.alert.requestId)),
    duplicated: [...count].filter(([, n]) => n > 1).map(([id]) => id),
  };
}

Deno.test({
  name: "scale-out: 3 sidecars on a 3-node cluster give exactly one sidecar's alerts; " +
    "a SIGKILLed sidecar's partitions move and its open requests are counted",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await startNatsCluster({ nodes: 3 });
    const fx = await writeFixture("latentwatch-scale-");
    const tapBus = await connectNatsBus({ url: cluster.url, reconnectWaitMs: 100 });
    const tap = new Tap(tapBus, { model: MODEL, hook: HOOK, partitions: PARTITIONS });
    const all: Sidecar[] = [];
    try {
      const traffic = requests("q", 200);
      // ---- one sidecar, every partition: the reference ----
      const [port] = ports(1);
      const single = startSidecar(
        "single",
        await writeMonitor(fx, "single", {
          natsUrl: cluster.url,
          stream: "ALERTS_SINGLE",
          subject: "lw.alerts.single",
          port,
          spool: "spool-single",
          replicas: 3,
        }),
        port,
      );
      all.push(single);
      await waitUntil(
        () => single.lines.some((l) => l.includes("monitor.started")),
        "single",
        60_000,
      );
      await sendFrames(tap, fx, traffic, { from: 0, to: FRAMES, end: true }, tapBus);
      await quiesce([single]);
      await stopAll([single]);
      const one = await alertsIn(cluster.url, "ALERTS_SINGLE");
      // the traffic's alerts, by construction: every alerting request, no other
      assert.deepEqual(
        [...one.requests].sort(),
        traffic.filter((r) => r.alerts).map((r) => r.id).sort(),
      );

      // ---- three sidecars sharing 16 partitions ----
      const three = await startScaled(fx, {
        url: cluster.url,
        run: "three",
        n: 3,
        ttlMs: 3000,
        heartbeatMs: 500,
        replicas: 3,
      });
      all.push(...three);
      await sendFrames(tap, fx, traffic, { from: 0, to: FRAMES, end: true }, tapBus);
      await quiesce(three);
      const shared = await alertsIn(cluster.url, "ALERTS_THREE");
      assert.deepEqual([...shared.keys].sort(), [...one.keys].sort());
      assert.deepEqual(shared.duplicated, []);
      const perSidecar = await Promise.all(
        three.map((s) => metricSum(s.port, "latentwatch_frames_received_total")),
      );
      assert.ok(perSidecar.every((n) => n > 0), `every sidecar took frames: ${perSidecar}`);
      console.log(
        `alerts: expected ${one.keys.size}, found ${shared.keys.size}, duplicated ${shared.duplicated.length}; ` +
          `frames per sidecar ${perSidecar.join("/")}`,
      );

      // ---- SIGKILL one sidecar mid-stream ----
      const open = requests("k", 60);
      await sendFrames(tap, fx, open, { from: 0, to: 2, end: false }, tapBus);
      await quiesce(three);
      const before = (await partitionsSettled(three, PARTITIONS))!;
      const owner = new Map<number, string>();
      for (const v of before) for (const p of v.owned) owner.set(p, v.member);
      const [victim, ...survivors] = three;
      // a gated request on one of the victim's partitions, answered by the victim so far
      const gated = new Tap(tapBus, {
        model: MODEL,
        hook: HOOK,
        partitions: PARTITIONS,
        gate: { deadlineMs: 3000, onTimeout: "closed" },
      });
      gated.enableSteering(fx.sim.dModel);
      let g = 0;
      while (owner.get(partitionOf(`g-${g}`, PARTITIONS)) !== victim.name) g++;
      const gatedId = `g-${g}`;
      const first = await gated.step(gatedId, 0, fx.benign, BENIGN.length, fx.sim.dModel);
      assert.equal(first.verdict, "continue");
      // traffic that keeps flowing through the kill and the handoff
      const flowing = requests("f", 30);
      await sendFrames(tap, fx, flowing, { from: 0, to: 1, end: false }, tapBus);
      let flowFrames = 1;
      let flowingOn = true;
      let unownedSends = 0;
      let handedOver = false;
      const flow = (async () => {
        while (flowingOn) {
          await sendFrames(
            tap,
            fx,
            flowing,
            { from: flowFrames, to: flowFrames + 1, end: false },
            tapBus,
          );
          if (!handedOver) {
            unownedSends += flowing.filter((r) =>
              owner.get(partitionOf(r.id, PARTITIONS)) === victim.name
            ).length;
          }
          flowFrames++;
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      await new Promise((r) => setTimeout(r, 300));
      const lostBefore = await Promise.all(
        survivors.map((s) => metricSum(s.port, "latentwatch_requests_state_lost_total")),
      );
      const joinBefore = await Promise.all(
        survivors.map((s) => metricSum(s.port, "latentwatch_frames_before_join_total")),
      );
      const linesBefore = survivors.map((s) => s.lines.length);
      unownedSends = 0;
      const killedAt = performance.now();
      victim.child.kill("SIGKILL");
      await victim.child.status;
      let after: PartitionsView[] | null = null;
      await waitUntil(
        async () => {
          after = await partitionsSettled(survivors, PARTITIONS);
          return after !== null;
        },
        "the survivors own every partition",
        20_000,
      );
      const handoffMs = performance.now() - killedAt;
      handedOver = true;
      // a lease lives 3000 ms, peers take it within two heartbeats (500 ms) after; 1 s for polling
      assert.ok(handoffMs < 3000 + 2 * 500 + 1000, `handoff took ${handoffMs} ms`);
      await new Promise((r) => setTimeout(r, 300));
      flowingOn = false;
      await flow;
      const moved = new Set<number>();
      for (const v of after!) for (const p of v.owned) if (owner.get(p) !== v.member) moved.add(p);
      // every partition of the victim moved; survivors may have swapped some to rebalance
      for (const [p, m] of owner) if (m === victim.name) assert.ok(moved.has(p), `partition ${p}`);

      // the gated request goes on: its new owner answers
      const newOwner = survivors.find((s) =>
        after!.find((v) => v.member === s.name)!.owned.includes(partitionOf(gatedId, PARTITIONS))
      )!;
      const repliesBefore = await metricSum(newOwner.port, "latentwatch_gate_replies_total");
      const next = await gated.step(
        gatedId,
        BENIGN.length,
        fx.benign,
        BENIGN.length,
        fx.sim.dModel,
      );
      assert.equal(next.verdict, "continue");
      assert.equal(
        await metricSum(newOwner.port, "latentwatch_gate_replies_total"),
        repliesBefore + 1,
      );
      gated.end(gatedId);

      // the open and flowing requests go on and end, and new ones start
      const late = requests("n", 40);
      await sendFrames(tap, fx, open, { from: 2, to: FRAMES, end: true }, tapBus);
      await sendFrames(
        tap,
        fx,
        flowing,
        { from: flowFrames, to: flowFrames + 1, end: true },
        tapBus,
      );
      await sendFrames(tap, fx, late, { from: 0, to: FRAMES, end: true }, tapBus);
      await quiesce(survivors);
      const lostAfter = await Promise.all(
        survivors.map((s) => metricSum(s.port, "latentwatch_requests_state_lost_total")),
      );
      const stateLost = lostAfter.reduce((a, b) => a + b, 0) -
        lostBefore.reduce((a, b) => a + b, 0);
      // every request open on a moved partition when it moved, and no other
      const expected = [...open, ...flowing, { id: gatedId }]
        .filter((r) => moved.has(partitionOf(r.id, PARTITIONS))).map((r) => r.id).sort();
      assert.equal(stateLost, expected.length);
      const logged = survivors.flatMap((s, i) =>
        s.lines.slice(linesBefore[i]).map((l) => /request\.state_lost .*request=(\S+)/.exec(l)?.[1])
          .filter((id): id is string => id !== undefined)
      ).sort();
      assert.deepEqual(logged, expected);
      // the frames the flowing requests sent while their partition had no owner are among
      // those counted before each request's first frame on its new owner
      const joinAfter = await Promise.all(
        survivors.map((s) => metricSum(s.port, "latentwatch_frames_before_join_total")),
      );
      const beforeJoin = joinAfter.reduce((a, b) => a + b, 0) -
        joinBefore.reduce((a, b) => a + b, 0);
      assert.ok(beforeJoin >= unownedSends, `${beforeJoin} counted, ${unownedSends} sent unowned`);
      const end = await alertsIn(cluster.url, "ALERTS_THREE");
      for (const r of late) assert.equal(end.requests.has(r.id), r.alerts, r.id);
      assert.deepEqual(end.duplicated, []);
      console.log(
        `SIGKILL sidecar: handoff ${handoffMs.toFixed(0)} ms (lease 3000 ms, heartbeat 500 ms), ` +
          `${moved.size} partitions moved (${
            before.find((v) => v.member === victim.name)!.owned.length
          } were the victim's), requests that lost state ${stateLost} (expected ${expected.length}), ` +
          `flowing frames sent to the victim's partitions before the handoff ${unownedSends}, ` +
          `frames counted before the survivors joined those requests ${beforeJoin}`,
      );
      // the survivors' view says so too, in /partitions and /metrics
      const view = await controlJson<PartitionsView>(survivors[0].port, "/partitions");
      assert.equal(view!.members.length, 2);
      const metrics = await fetch(`http://127.0.0.1:${survivors[0].port}/metrics`).then((r) =>
        r.text()
      );
      for (const p of view!.owned) {
        assert.match(
          metrics,
          new RegExp(`^latentwatch_partition_owned\\{partition="${p}"\\} 1$`, "m"),
        );
      }
      assert.match(
        metrics,
        new RegExp(`^latentwatch_partitions_owned ${view!.owned.length}$`, "m"),
      );
    } finally {
      await stopAll(all.filter((s) => s.child.pid));
      await tapBus.close();
      await cluster.stop();
    }
  },
});

/** Every alert id in the sidecars' JSONL files (what reached their sinks). */
async function jsonlIds(dir: string, run: string, n: number): Promise<Set<string>> {
  const ids = new Set<string>();
  for (let i = 0; i < n; i++) {
    let text = "";
    try {
      text = await Deno.readTextFile(`${dir}/${run}-${i}.jsonl`);
    } catch { /* no alert reached this one */ }
    for (const line of text.split("\n")) if (line.trim()) ids.add(JSON.parse(line).id);
  }
  return ids;
}

Deno.test({
  name: "scale-out: SIGKILL the alert stream's leader node mid-stream: no alert lost or " +
    "duplicated, taps and sidecars carry on through the other nodes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await startNatsCluster({ nodes: 3 });
    const fx = await writeFixture("latentwatch-scale-node-");
    const tapBus = await connectNatsBus({ url: cluster.url, reconnectWaitMs: 100 });
    const tap = new Tap(tapBus, { model: MODEL, hook: HOOK, partitions: PARTITIONS });
    let sidecars: Sidecar[] = [];
    try {
      // the default lease (10 s) outlasts the cluster's leader election
      sidecars = await startScaled(fx, {
        url: cluster.url,
        run: "node",
        n: 3,
        ttlMs: 10_000,
        heartbeatMs: 1000,
        replicas: 3,
      });
      const early = requests("e", 60);
      const late = requests("l", 60);
      await sendFrames(tap, fx, early, { from: 0, to: 2, end: false }, tapBus);
      await quiesce(sidecars);
      const leader = await streamLeader(cluster.url, "ALERTS_NODE");
      const bucketLeader = await streamLeader(cluster.url, "KV_lw_node");
      const node = cluster.nodes.find((n) => n.name === leader)!;
      const survivorUrls = cluster.urls.filter((u) => u !== node.url).join(",");
      const receivedBefore = (await Promise.all(
        sidecars.map((s) => metricSum(s.port, "latentwatch_frames_received_total")),
      )).reduce((a, b) => a + b, 0);
      const releasedBefore = await Promise.all(
        sidecars.map((s) => metricSum(s.port, "latentwatch_partition_released_total")),
      );
      const beforeJoinBefore = (await Promise.all(
        sidecars.map((s) => metricSum(s.port, "latentwatch_frames_before_join_total")),
      )).reduce((a, b) => a + b, 0);
      const killedAt = performance.now();
      await node.kill();
      // the traffic goes on while the survivors elect a leader (these frames may be lost in
      // flight through the dead node: counted below)
      await sendFrames(tap, fx, early, { from: 2, to: FRAMES, end: false }, tapBus);
      // every sidecar ready again (connected through a survivor, delivering)
      await waitUntil(
        async () => {
          const ready = await Promise.all(
            sidecars.map((s) => fetch(`http://127.0.0.1:${s.port}/readyz`).then((r) => r.ok)),
          );
          return ready.every(Boolean);
        },
        "the sidecars ready after the node died",
        30_000,
      );
      // ... and every surviving node knows a subscriber for every partition again: core NATS
      // drops what a server knows no interest for, and a resubscription reaches the other
      // nodes over the routes a moment later
      const survivors = cluster.nodes.filter((n) => n !== node);
      const subjects = Array.from({ length: PARTITIONS }, (_, p) => tapSubject(MODEL, HOOK, p));
      await waitUntil(
        async () => {
          for (const n of survivors) {
            const known = await subjectsWithInterest(n.monitorPort);
            if (!subjects.every((subject) => known.has(subject))) return false;
          }
          return true;
        },
        "every partition's subject has a subscriber known to every surviving node",
        30_000,
      );
      // requests that begin after the failover: none of their frames can be lost in flight (a
      // CI run sent them during the election and lost every frame of one), so they alert as ever
      await sendFrames(tap, fx, late, { from: 0, to: FRAMES, end: false }, tapBus);
      // the end markers once every connection is back: a frame lost in flight
      // through the dead node shows as a gap before its request's end marker
      await sendFrames(tap, fx, [...early, ...late], { from: 0, to: 0, end: true }, tapBus);
      await quiesce(sidecars);
      // the alerts the sidecars wrote ahead are all published before they stop
      await waitUntil(
        async () => {
          const ids = await jsonlIds(fx.dir, "node", 3);
          try {
            const stored = await alertsIn(survivorUrls, "ALERTS_NODE");
            return [...ids].every((id) => stored.ids.has(id));
          } catch {
            return false; // the stream is electing its leader: ask again
          }
        },
        "every alert published after the failover",
        60_000,
      );
      const recoveredMs = performance.now() - killedAt;
      const released = await Promise.all(
        sidecars.map(async (s, i) =>
          await metricSum(s.port, "latentwatch_partition_released_total") - releasedBefore[i]
        ),
      );
      const lostFrames = await Promise.all(
        sidecars.map((s) => metricSum(s.port, "latentwatch_frames_lost_total")),
      );
      const receivedNow = await Promise.all(
        sidecars.map((s) => metricSum(s.port, "latentwatch_frames_received_total")),
      );
      const beforeJoin = (await Promise.all(
        sidecars.map((s) => metricSum(s.port, "latentwatch_frames_before_join_total")),
      )).reduce((a, b) => a + b, 0) - beforeJoinBefore;
      // frames the tap sent after the sidecars were ready: 2 + 3 per early request, 5 per late one
      const sentAfter = early.length * 3 + late.length * (FRAMES + 1);
      const receivedAfter = receivedNow.reduce((a, b) => a + b, 0) - receivedBefore;
      await stopAll(sidecars);
      const produced = await jsonlIds(fx.dir, "node", 3);
      const stored = await alertsIn(survivorUrls, "ALERTS_NODE");
      const expectedAlerts = [...early, ...late].filter((r) => r.alerts).length * FRAMES;
      // frames in flight through the dead node are lost (core NATS); every one is counted:
      // as a gap in a request the sidecar was following (frames.lost), or, for a request
      // whose first frames went by while its owner was reconnecting, as the frames before
      // the first one it saw (frames.before_join, which also counts frames a previous
      // owner did receive, so it bounds from above)
      const counted = lostFrames.reduce((a, b) => a + b, 0);
      const what = `received ${receivedAfter} + counted lost ${counted} ` +
        `(+ ${beforeJoin} before a join), sent ${sentAfter}`;
      assert(receivedAfter + counted <= sentAfter, `nothing counted twice: ${what}`);
      assert(receivedAfter + counted + beforeJoin >= sentAfter, `nothing uncounted: ${what}`);
      const missing = [...produced].filter((id) => !stored.ids.has(id));
      assert.deepEqual(missing, [], "alerts that reached a sink but not the stream");
      assert.deepEqual(stored.duplicated, [], "alerts stored twice");
      // requests that began after the failover alert as ever
      for (const r of late) assert.equal(stored.requests.has(r.id), r.alerts, r.id);
      console.log(
        `SIGKILL node ${leader} (the alert stream's leader${
          bucketLeader === leader ? " and the lease bucket's" : ""
        }): alerts produced ${produced.size}, in the stream ` +
          `${stored.ids.size}, missing ${missing.length}, duplicated ${stored.duplicated.length}; ` +
          `all ready and published ${
            recoveredMs.toFixed(0)
          } ms after the kill; partitions given up during the failover ${released.join("/")}; ` +
          `frames sent after the kill ${sentAfter}, received ${receivedAfter}, counted lost ` +
          `(seq gaps) ${lostFrames.join("/")}, before a join ${beforeJoin}; ` +
          `alerts expected by construction ${expectedAlerts}`,
      );
    } finally {
      await stopAll(sidecars.filter((s) => s.child.pid));
      await tapBus.close();
      await cluster.stop();
    }
  },
});

/**
 * The subjects a node knows a subscriber for: its own clients' (`/subsz`)
 * and those its routes announced (`/routez`). Empty while it does not answer.
 */
async function subjectsWithInterest(monitorPort: number): Promise<Set<string>> {
  const get = (path: string) =>
    fetch(`http://127.0.0.1:${monitorPort}${path}`).then((r) => r.json()).catch(() => null);
  const [subsz, routez] = await Promise.all([
    get("/subsz?subs=1&limit=100000"),
    get("/routez?subs=1"),
  ]);
  // entries are objects with a subject (local) or "subject [queue]" strings (routes)
  const subject = (e: unknown) =>
    typeof e === "string" ? e.split(" ")[0] : (e as { subject?: string }).subject ?? "";
  const out = new Set<string>();
  for (const e of subsz?.subscriptions_list ?? []) out.add(subject(e));
  for (const r of routez?.routes ?? []) {
    for (const e of r.subscriptions_list ?? []) out.add(subject(e));
  }
  return out;
}

/** The node leading `stream` (its `server_name`). */
async function streamLeader(url: string, stream: string): Promise<string> {
  const nc = await connect({ servers: url.split(",") });
  try {
    const info = await (await jetstreamManager(nc)).streams.info(stream);
    return info.cluster!.leader!;
  } finally {
    await nc.close();
  }
}
