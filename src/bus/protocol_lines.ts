/**
 * The NATS client's protocol lines (`PUB`, `HPUB`, `SUB`, …) encoded into a
 * shared slab instead of a buffer each.
 *
 * Why: nats.js builds every publish's line as a string and encodes it with
 * `TextEncoder.encode`, one new `ArrayBuffer` per message, which costs about
 * a microsecond in this Deno whatever its size (`core/byte_slab.ts`). The
 * client keeps the line's view in its outbound buffer until it joins the
 * buffer's parts into one at the flush, or hands a lone line (`SUB`) to the
 * transport as it is, which may queue it behind a write in progress. That is
 * safe because a slab is never written twice and neither the client nor the
 * transports detach what they send: the bytes sent are the ones encoded.
 * Everything else `sendCommand` does (the outbound buffer, when it flushes)
 * is the client's own.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { ByteSlab } from "../core/byte_slab.ts";

type SendCommand = (cmd: string | Uint8Array, ...payloads: Uint8Array[]) => void;

/** The client internals this wraps: the protocol handler's `sendCommand` (nats-core 3.x). */
interface WithProtocol {
  protocol?: { sendCommand?: SendCommand; linesFromSlab?: true };
}

/**
 * Make `nc` encode its protocol lines into a slab. Returns false, changing
 * nothing, where the client does not have the internals this wraps (another
 * client version): it then encodes them itself, as before.
 *
 * @example
 * ```ts
 * import type { NatsConnection } from "@nats-io/transport-node";
 * declare const nc: NatsConnection;
 * encodeLinesFromSlab(nc); // true with nats-core 3.x
 * ```
 */
export function encodeLinesFromSlab(nc: NatsConnection): boolean {
  const protocol = (nc as unknown as WithProtocol).protocol;
  const send = protocol?.sendCommand;
  if (protocol === undefined || typeof send !== "function") return false;
  if (protocol.linesFromSlab) return true; // already wrapped
  const slab = new ByteSlab();
  protocol.sendCommand = function (this: unknown, cmd, ...payloads) {
    return send.call(this, typeof cmd === "string" ? slab.utf8(cmd) : cmd, ...payloads);
  };
  protocol.linesFromSlab = true;
  return true;
}
