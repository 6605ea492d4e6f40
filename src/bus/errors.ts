/**
 * What went wrong with a bus operation, read from the error's class and
 * code (never its message text): the NATS client's errors
 * (`NoRespondersError`, `TimeoutError`, `PermissionViolationError`,
 * JetStream's `JetStreamApiError` with its `err_code`, ...) and the
 * {@linkcode MemoryBus}'s, which mirror them. Causes are followed, so a
 * `RequestError` caused by `NoRespondersError`, or JetStream's "not enabled"
 * error caused by that, read as `no_responders`.
 *
 * @module
 */
import {
  ClosedConnectionError,
  DrainingConnectionError,
  InvalidArgumentError,
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import { JetStreamApiError } from "@nats-io/jetstream";
import { BusRequestError } from "./bus.ts";
import { BusClosedError, MaxPayloadError, StreamError } from "./memory_bus.ts";

/** The classes of bus errors callers act on. */
export type BusErrorKind =
  /** Nobody subscribes to the subject (for a durable publish: no stream captures it). */
  | "no_responders"
  /** No answer (reply, publish ack) in time. */
  | "timeout"
  /** The server refused the subject to this user. */
  | "permission_denied"
  /** The message is larger than the server's max_payload. */
  | "too_large"
  /** JetStream has no such stream (err_code 10059). */
  | "stream_not_found"
  /** Another stream already has the name, with other settings (err_code 10058). */
  | "stream_name_in_use"
  /** The connection is closed or draining. */
  | "closed"
  /** Anything else (retry, or report). */
  | "other";

/** JetStream API error codes (`err_code`) the bus acts on. */
export const JS_ERR_CODES = {
  streamNotFound: 10059,
  streamNameInUse: 10058,
  /** "JetStream system temporarily unavailable": a cluster without a meta leader yet. */
  clusterNotAvailable: 10008,
} as const;

/**
 * A failure that waiting may mend: no answer in time, or a JetStream
 * cluster that is still electing its leader (err_code 10008). Read from
 * classes and codes, following `cause`s, as {@linkcode classifyBusError}.
 *
 * @example
 * ```ts
 * import { TimeoutError } from "@nats-io/transport-node";
 * isTransientBusError(new TimeoutError()); // true
 * isTransientBusError(new Error("timeout")); // false: text is not read
 * ```
 */
export function isTransientBusError(err: unknown): boolean {
  if (classifyBusError(err) === "timeout") return true;
  const seen = new Set<unknown>();
  for (let e = err; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    if (e instanceof JetStreamApiError && e.code === JS_ERR_CODES.clusterNotAvailable) return true;
  }
  return false;
}

/**
 * The {@linkcode BusErrorKind} of `err`, from its class and code, following
 * `cause`s.
 *
 * @example
 * ```ts
 * import { NoRespondersError, RequestError } from "@nats-io/transport-node";
 * classifyBusError(new RequestError("", { cause: new NoRespondersError("x") })); // "no_responders"
 * classifyBusError(new Error("no responders")); // "other": text is not read
 * ```
 */
export function classifyBusError(err: unknown): BusErrorKind {
  const seen = new Set<unknown>();
  for (let e = err; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    const kind = ownKind(e);
    if (kind !== undefined) return kind;
  }
  return "other";
}

function ownKind(e: Error): BusErrorKind | undefined {
  if (e instanceof BusRequestError) return e.kind;
  if (e instanceof NoRespondersError) return "no_responders";
  if (e instanceof RequestError && e.isNoResponders()) return "no_responders";
  if (e instanceof TimeoutError) return "timeout";
  if (e instanceof PermissionViolationError) return "permission_denied";
  if (e instanceof JetStreamApiError) {
    if (e.code === JS_ERR_CODES.streamNotFound) return "stream_not_found";
    if (e.code === JS_ERR_CODES.streamNameInUse) return "stream_name_in_use";
    if (e.status === 503) return "no_responders";
    return "other";
  }
  // a valid subject is checked before publish (the monitor config): the one
  // argument the client refuses then is a payload over the server's max_payload
  if (e instanceof InvalidArgumentError) return "too_large";
  if (e instanceof ClosedConnectionError || e instanceof DrainingConnectionError) return "closed";
  if (e instanceof MaxPayloadError) return "too_large";
  if (e instanceof BusClosedError) return "closed";
  if (e instanceof StreamError) return "stream_not_found";
  return undefined;
}
