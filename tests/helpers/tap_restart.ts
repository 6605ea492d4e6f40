/**
 * The witnesses of the tap restart tests (`tests/tap_restart_test.ts`): a
 * nats-server with JetStream whose stream `TAPS` keeps every frame that
 * reached the server (it lives in the store, so it sees the frames a tap
 * sends right after the restart, before any subscriber is back), and a
 * plain subscriber (a {@linkcode NatsBus}, as a sidecar would have) that
 * counts frames by request and `Lw-Seq`, and hears steering acks.
 *
 * @module
 */
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNatsBus, type NatsBus } from "../../src/bus/nats_bus.ts";
import { type NatsServerProcess, startNatsServer } from "../../src/bus/nats_server.ts";
import { encodeCommand } from "../../src/core/steer/encode.ts";
import { steerAckSubject, steerSubject } from "../../src/core/steer/subjects.ts";
import { waitUntil } from "./stream.ts";

export const MODEL = "restart-llm";
export const HOOK = "blocks.0.hook_resid_post";
export const D = 16;
const STREAM = "TAPS";

/** The server, the stream, the plain subscriber. */
export interface Witness {
  server: NatsServerProcess;
  observer: NatsBus;
  /** Per request: the seqs the plain subscriber saw, in arrival order. */
  seen: Map<string, number[]>;
  /** Per request: the last `Lw-Pos` seen. */
  lastPos: Map<string, number>;
  acks: Record<string, unknown>[];
  /**
   * Stop the server, wait `outageMs`, start it again; the outage as measured here, and the
   * highest seq of `requestId` the subscriber had seen when the server went (read at the end of
   * the outage, so that nothing from before the stop is still on its way).
   */
  restart(
    outageMs: number,
    requestId: string,
  ): Promise<{ stoppedAt: number; upAt: number; outageMs: number; lastBefore: number }>;
  /** Send an `add` steering command for `requestId` from `fromPosition` on. */
  steer(id: string, requestId: string, fromPosition: number): void;
  /** The seqs of `requestId` the stream holds (what reached the server). */
  stored(requestId: string): Promise<number[]>;
  close(): Promise<void>;
}

/** Start a witness. */
export async function witness(): Promise<Witness> {
  const server = await startNatsServer();
  const observer = await connectNatsBus({ url: server.url, reconnectWaitMs: 20, name: "observer" });
  await observer.ensureStream({
    name: STREAM,
    subjects: ["latentwatch.tap.v1.>"],
    duplicateWindowMs: 1000,
  });
  const seen = new Map<string, number[]>();
  const lastPos = new Map<string, number>();
  const acks: Record<string, unknown>[] = [];
  observer.subscribe("latentwatch.tap.v1.>", (m) => {
    const rid = m.headers["Lw-Request-Id"];
    if (!seen.has(rid)) seen.set(rid, []);
    seen.get(rid)!.push(Number(m.headers["Lw-Seq"]));
    lastPos.set(rid, Number(m.headers["Lw-Pos"]));
  });
  observer.subscribe(
    steerAckSubject(MODEL, HOOK),
    (m) => acks.push(JSON.parse(new TextDecoder().decode(m.data))),
  );
  await observer.flush();
  return {
    server,
    observer,
    seen,
    lastPos,
    acks,
    restart: async (outageMs, requestId) => {
      const stoppedAt = performance.now();
      await server.stop();
      await new Promise((r) => setTimeout(r, outageMs));
      const lastBefore = Math.max(-1, ...(seen.get(requestId) ?? []));
      await server.restart();
      const upAt = performance.now();
      return { stoppedAt, upAt, outageMs: upAt - stoppedAt, lastBefore };
    },
    steer: (id, requestId, fromPosition) => {
      const now = Date.now();
      observer.publish(
        steerSubject(MODEL, HOOK, 0),
        encodeCommand({
          id,
          requestId,
          model: MODEL,
          hook: HOOK,
          dModel: D,
          fromPosition,
          untilPosition: null,
          issuedAtMs: now,
          expiresAtMs: now + 60_000,
          monitor: "restart-test",
          rule: "after-restart",
          op: { kind: "add", scale: 1, vector: new Float32Array(D).fill(0.25) },
        }),
      );
    },
    stored: async (requestId) => {
      const nc = await connect({ servers: server.url });
      try {
        const jsm = await jetstreamManager(nc);
        const info = await jsm.streams.info(STREAM);
        const out: number[] = [];
        for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
          const m = await jsm.streams.getMessage(STREAM, { seq });
          if (m?.header?.get("Lw-Request-Id") === requestId) {
            out.push(Number(m.header.get("Lw-Seq")));
          }
        }
        return out;
      } finally {
        await nc.close();
      }
    },
    close: async () => {
      await observer.close();
      await server.stop();
      await Deno.remove(server.storeDir, { recursive: true }).catch(() => {});
    },
  };
}

/** Seqs `0..endSeq` missing from `seqs`, and repeats. */
export function gaps(seqs: number[], endSeq: number): { missing: number; repeated: number } {
  const distinct = new Set(seqs);
  let missing = 0;
  for (let s = 0; s <= endSeq; s++) if (!distinct.has(s)) missing++;
  return { missing, repeated: seqs.length - distinct.size };
}

/** Wait until the plain subscriber saw a frame of `requestId` with a seq above `above`. */
export function framesAfter(w: Witness, requestId: string, above: number): Promise<void> {
  return waitUntil(
    () => (w.seen.get(requestId) ?? []).some((s) => s > above),
    `frames of ${requestId} after seq ${above}`,
    15_000,
  );
}

/** Wait (up to 15 s) for an ack of command `id`; returns it, or `{ status: "none" }`. */
export async function ackOf(w: Witness, id: string): Promise<Record<string, unknown>> {
  await waitUntil(() => w.acks.some((a) => a.id === id), `the ack of ${id}`, 15_000).catch(
    () => {},
  );
  return w.acks.find((a) => a.id === id) ?? { status: "none" };
}
