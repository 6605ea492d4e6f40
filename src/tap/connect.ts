/**
 * Connecting a TypeScript tap to NATS through a list of servers.
 *
 * @module
 */
import { connectNatsBus, type NatsBus, type NatsBusOptions } from "../bus/nats_bus.ts";

const URL_FORM = /^(nats|tls|wss?):\/\/[^\s,]+$/;

/**
 * The server list as one `connectNatsBus` URL: each entry checked
 * (`nats://`, `tls://`, `ws://` or `wss://`, no commas or spaces), order kept.
 * Throws a `RangeError` naming the entry that is not a URL.
 *
 * @example
 * ```ts
 * tapServers(["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]); // "nats://10.0.0.1:4222,nats://10.0.0.2:4222"
 * ```
 */
export function tapServers(servers: string | readonly string[]): string {
  const list = typeof servers === "string" ? servers.split(",").map((s) => s.trim()) : servers;
  if (list.length === 0) {
    throw new RangeError("tap servers: expected at least one URL, found an empty list");
  }
  for (const [i, s] of list.entries()) {
    if (typeof s !== "string" || !URL_FORM.test(s)) {
      throw new RangeError(
        `tap servers[${i}]: expected a URL like nats://host:4222, found ${JSON.stringify(s)}`,
      );
    }
  }
  return list.join(",");
}

/**
 * Connect a bus for a tap to the first server of `servers` that answers;
 * the client (nats.js) reconnects forever to any of them (in random order,
 * its default). Pass the bus to `new Tap(bus, ...)`.
 *
 * @example
 * ```ts
 * import { Tap } from "./tap.ts";
 * const bus = await connectTapBus(["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"], {
 *   name: "my-model-tap",
 * });
 * const tap = new Tap(bus, { model: "gpt2", hook: "blocks.6.hook_resid_post" });
 * ```
 */
export function connectTapBus(
  servers: string | readonly string[],
  opts: Omit<NatsBusOptions, "url"> = {},
): Promise<NatsBus> {
  return connectNatsBus({ probe: { intervalMs: 0 }, ...opts, url: tapServers(servers) });
}
