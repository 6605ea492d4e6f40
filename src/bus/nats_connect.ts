/**
 * Opening a NATS connection on the transport latentwatch prefers.
 *
 * @module
 */
import {
  connect as connectOverNodeSockets,
  type ConnectionOptions,
  hasWsProtocol,
  type NatsConnection,
  NatsConnectionImpl,
  setTransportFactory,
} from "@nats-io/transport-node";
import { nodeResolveHost } from "@nats-io/transport-node/node_transport";
import { DenoTransport } from "./deno_transport.ts";

/** Which socket layer carries NATS connections. */
export type NatsTransportKind = "deno" | "node";

/** Environment variable that picks the transport when the caller does not. */
export const NATS_TRANSPORT_ENV = "LATENTWATCH_NATS_TRANSPORT";

/** The transport named by {@linkcode NATS_TRANSPORT_ENV}, `deno` when unset. */
export function natsTransportFromEnv(): NatsTransportKind {
  let value: string | undefined;
  try {
    value = Deno.env.get("LATENTWATCH_NATS_TRANSPORT");
  } catch {
    value = undefined; // no --allow-env: the default
  }
  if (value === undefined || value === "" || value === "deno") return "deno";
  if (value === "node") return "node";
  throw new TypeError(`expected ${NATS_TRANSPORT_ENV} to be "deno" or "node", found "${value}"`);
}

/**
 * Connect with nats.js, carried by {@linkcode DenoTransport} (Deno's own sockets) unless
 * `transport` (or {@linkcode NATS_TRANSPORT_ENV}) says `node`. WebSocket URLs go to
 * nats.js's Node `connect`, which explains that they need `wsconnect`.
 *
 * @example
 * ```ts
 * import { connectNats } from "./nats_connect.ts";
 * const connecting = connectNats({ servers: "127.0.0.1:4222", reconnect: false });
 * await connecting.then((nc) => nc.close(), () => {}); // no server there: refused
 * ```
 */
export function connectNats(
  options: ConnectionOptions,
  transport?: NatsTransportKind,
): Promise<NatsConnection> {
  transport ??= natsTransportFromEnv();
  if (transport === "node" || hasWsProtocol(options)) return connectOverNodeSockets(options);
  // nats.js keeps one factory for every later (re)connection; both transports carry any
  // connection, so a later call that installs the other one changes speed, not behaviour
  setTransportFactory({ factory: () => new DenoTransport(), dnsResolveFn: nodeResolveHost });
  return NatsConnectionImpl.connect(options);
}
