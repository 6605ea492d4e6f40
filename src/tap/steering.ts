/**
 * What a tap keeps to steer its requests (`docs/steering.md`): the commands
 * received per request, applied to each step's activations from their
 * `from_position`, acknowledged once, and aborts. No bus here: the tap
 * ({@linkcode ./tap.ts}) feeds it commands and publishes the acknowledgements
 * it returns, so the bookkeeping is tested on its own.
 *
 * @module
 */
import { applyOp } from "../core/steer/arithmetic.ts";
import { type CommandExpect, isExpired, parseCommand } from "../core/steer/parse.ts";
import { type SteerAck, type SteerCommand, SteerProtocolError } from "../core/steer/protocol.ts";

/** Counters of a tap's steering and gating. */
export interface SteeringStats {
  /** Commands received (subject or verdict), well-formed or not. */
  received: number;
  /** Commands that took effect (acknowledged `applied`). */
  applied: number;
  /** Malformed commands, or for another model/hook/width (acknowledged `rejected` when the id was readable). */
  rejected: number;
  /** Commands received after their expiry. */
  expired: number;
  /** Commands for requests this tap does not serve (another replica's). */
  ignored: number;
  /** Commands whose request ended before they took effect. */
  notApplied: number;
  /** Requests stopped (abort command, or a gate failing closed). */
  aborted: number;
  /** Gated steps, verdicts that did not come in time (timeout, no responders, error verdict), and what was done then. */
  gateWaits: number;
  gateTimeouts: number;
  failOpen: number;
  failClosed: number;
  /** Time spent waiting for verdicts, in ms: total and the longest wait. */
  gateWaitMsTotal: number;
  gateWaitMsMax: number;
}

/** An empty {@linkcode SteeringStats}. */
export function emptySteeringStats(): SteeringStats {
  return {
    received: 0,
    applied: 0,
    rejected: 0,
    expired: 0,
    ignored: 0,
    notApplied: 0,
    aborted: 0,
    gateWaits: 0,
    gateTimeouts: 0,
    failOpen: 0,
    failClosed: 0,
    gateWaitMsTotal: 0,
    gateWaitMsMax: 0,
  };
}

interface Active {
  cmd: SteerCommand;
  applied: boolean;
}

interface RequestSteer {
  active: Active[];
  abortedAt?: number;
  abortReason?: string;
}

/** Options of {@linkcode RequestSteering}. */
export interface RequestSteeringOptions extends CommandExpect {
  /** Name put on acknowledgements (`tap`). */
  tap?: string;
  /** Clock for expiry (ms since the epoch). */
  now?: () => number;
  /** Ended requests remembered, to acknowledge late commands as `not_applied` (default 4096). */
  rememberEnded?: number;
}

/**
 * Per-request steering state of one tap.
 *
 * @example
 * ```ts
 * declare const msg: { data: Uint8Array }, activations: Float32Array;
 * declare const tap: { serves(requestId: string): boolean };
 * const s = new RequestSteering({ model: "m", hook: "h", dModel: 64, tap: "demo" });
 * const ack = s.receive(msg.data, (id) => tap.serves(id)); // publish the ack when not null
 * const acks = s.apply("req-1", 12, activations, 1, 64); // in place
 * ```
 */
export class RequestSteering {
  readonly stats: SteeringStats = emptySteeringStats();
  readonly #o: RequestSteeringOptions;
  readonly #requests = new Map<string, RequestSteer>();
  readonly #seen = new Set<string>();
  readonly #ended = new Set<string>();

  constructor(opts: RequestSteeringOptions = {}) {
    this.#o = opts;
  }

  #ack(ack: Omit<SteerAck, "tap">): SteerAck {
    return { ...ack, ...(this.#o.tap !== undefined ? { tap: this.#o.tap } : {}) };
  }

  /**
   * Take one command (a payload, or a command parsed from a verdict). `serves(requestId)` says
   * whether this tap serves the request. Returns the acknowledgement to
   * publish now (rejected, expired, an abort applied, or `not_applied` for an
   * ended request), or null (accepted, to be acknowledged when applied; or
   * another replica's; or a repeat).
   */
  receive(
    raw: Uint8Array | SteerCommand,
    serves: (requestId: string) => boolean,
    nextPosition?: (requestId: string) => number,
  ): SteerAck | null {
    this.stats.received++;
    let cmd: SteerCommand;
    try {
      // a verdict's commands arrive parsed (and checked) already
      cmd = raw instanceof Uint8Array ? parseCommand(raw, this.#o) : raw;
    } catch (err) {
      this.stats.rejected++;
      const e = err instanceof SteerProtocolError ? err : null;
      if (!e?.commandId || !e.requestId) return null; // nothing to address an ack to
      if (!serves(e.requestId) && !this.#ended.has(e.requestId)) {
        this.stats.rejected--;
        this.stats.ignored++;
        return null;
      }
      return this.#ack({
        id: e.commandId,
        requestId: e.requestId,
        status: "rejected",
        reason: e.message,
      });
    }
    if (this.#seen.has(cmd.id)) return null; // the same command again (verdict and subject)
    if (!serves(cmd.requestId)) {
      if (this.#ended.has(cmd.requestId)) {
        this.#remember(cmd.id);
        this.stats.notApplied++;
        return this.#ack({
          id: cmd.id,
          requestId: cmd.requestId,
          status: "not_applied",
          reason: "the request had already ended",
        });
      }
      this.stats.ignored++;
      return null;
    }
    this.#remember(cmd.id);
    const now = (this.#o.now ?? Date.now)();
    if (isExpired(cmd, now)) {
      this.stats.expired++;
      return this.#ack({
        id: cmd.id,
        requestId: cmd.requestId,
        status: "expired",
        reason: `received ${now - cmd.expiresAtMs} ms after expires_at_ms`,
      });
    }
    let r = this.#requests.get(cmd.requestId);
    if (!r) this.#requests.set(cmd.requestId, r = { active: [] });
    if (cmd.op.kind === "abort") {
      const at = Math.max(cmd.fromPosition, nextPosition?.(cmd.requestId) ?? 0);
      if (r.abortedAt === undefined) {
        r.abortedAt = at;
        r.abortReason = cmd.op.reason ?? `rule ${cmd.rule ?? "?"}`;
        this.stats.aborted++;
      }
      this.stats.applied++;
      return this.#ack({ id: cmd.id, requestId: cmd.requestId, status: "applied", position: at });
    }
    r.active.push({ cmd, applied: false });
    return null;
  }

  #remember(id: string): void {
    this.#seen.add(id);
    if (this.#seen.size > 65536) this.#seen.delete(this.#seen.values().next().value!);
  }

  /**
   * Apply the request's active operations, in the order received, to rows
   * `[tokens, dModel]` of `x` (positions `position`…) in place. Returns the
   * `applied` acknowledgements of the commands that took effect for the
   * first time.
   */
  apply(
    requestId: string,
    position: number,
    x: Float32Array,
    tokens: number,
    dModel: number,
  ): SteerAck[] {
    const r = this.#requests.get(requestId);
    if (!r || r.active.length === 0) return [];
    const acks: SteerAck[] = [];
    for (const a of r.active) {
      const { fromPosition: from, untilPosition: until } = a.cmd;
      for (let t = 0; t < tokens; t++) {
        const p = position + t;
        if (p < from || (until !== null && p >= until)) continue;
        applyOp(a.cmd.op, x, t, dModel);
        if (!a.applied) {
          a.applied = true;
          this.stats.applied++;
          acks.push(this.#ack({ id: a.cmd.id, requestId, status: "applied", position: p }));
        }
      }
    }
    // operations past their window are done; one whose window passed before it
    // could apply (it arrived late) is acknowledged as not applied
    r.active = r.active.filter((a) => {
      const { untilPosition: until } = a.cmd;
      if (until === null || until > position + tokens) return true;
      if (!a.applied) {
        this.stats.notApplied++;
        acks.push(this.#ack({
          id: a.cmd.id,
          requestId,
          status: "not_applied",
          reason: `its window [${a.cmd.fromPosition}, ${until}) had passed (position ${
            position + tokens - 1
          })`,
        }));
      }
      return false;
    });
    return acks;
  }

  /**
   * Acknowledge a verdict's command that did not parse (when its ids could
   * be read) and count it.
   */
  rejectParsed(err: SteerProtocolError): SteerAck | null {
    this.stats.received++;
    this.stats.rejected++;
    if (!err.commandId || !err.requestId) return null;
    return this.#ack({
      id: err.commandId,
      requestId: err.requestId,
      status: "rejected",
      reason: err.message,
    });
  }

  /**
   * A gated step got no usable verdict (none in time, a bus error, a malformed
   * or `error` verdict): count it, and when the gate fails closed stop the
   * request from `position` on.
   */
  gateFailed(requestId: string, position: number, onTimeout: "open" | "closed", why: string): void {
    this.stats.gateTimeouts++;
    if (onTimeout === "open") {
      this.stats.failOpen++;
      return;
    }
    this.stats.failClosed++;
    this.abort(requestId, position, `gate failed closed: ${why}`);
  }

  /** Stop `requestId` (a gate failing closed); counted once. */
  abort(requestId: string, position: number, reason: string): void {
    let r = this.#requests.get(requestId);
    if (!r) this.#requests.set(requestId, r = { active: [] });
    if (r.abortedAt !== undefined) return;
    r.abortedAt = position;
    r.abortReason = reason;
    this.stats.aborted++;
  }

  /**
   * Whether `requestId` must stop before generating position `nextPosition`,
   * and why: an abort command (from its `from_position` on) or a gate that
   * failed closed. Without `nextPosition`, any abort received counts. A
   * generation loop checks it before each step.
   */
  aborted(requestId: string, nextPosition?: number): { position: number; reason: string } | null {
    const r = this.#requests.get(requestId);
    if (r?.abortedAt === undefined) return null;
    if (nextPosition !== undefined && nextPosition < r.abortedAt) return null;
    return { position: r.abortedAt, reason: r.abortReason! };
  }

  /** Forget `requestId`; returns `not_applied` acknowledgements for commands that never took effect. */
  end(requestId: string): SteerAck[] {
    const r = this.#requests.get(requestId);
    this.#requests.delete(requestId);
    this.#ended.add(requestId);
    if (this.#ended.size > (this.#o.rememberEnded ?? 4096)) {
      this.#ended.delete(this.#ended.values().next().value!);
    }
    const acks = (r?.active ?? []).filter((a) => !a.applied).map((a) =>
      this.#ack({
        id: a.cmd.id,
        requestId,
        status: "not_applied",
        reason: `the request ended before position ${a.cmd.fromPosition}`,
      })
    );
    this.stats.notApplied += acks.length;
    return acks;
  }

  /** Requests with steering state. */
  get activeRequests(): number {
    return this.#requests.size;
  }
}
