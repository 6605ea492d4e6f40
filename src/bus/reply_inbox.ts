/**
 * The requests of one connection in flight, answered on one wildcard inbox
 * subscription (`<base>*`): each request gets the reply subject `<base><token>`,
 * and the answer that arrives there settles it. The NATS client has the same
 * scheme, but builds an `Error` (a stack capture) for every request it
 * completes, about 12 µs of each gated decode step; this one allocates a
 * token and a promise. One timer serves every request's deadline: it is set
 * for the earliest one; when it fires, it rejects what is due and is set
 * again for the next. A timer per request (a Node-style `Timeout` object,
 * set and cleared) was 9% of a gated tap step's JavaScript. Once nothing
 * waits, the timer stays set but no longer holds the process open
 * (`Deno.unrefTimer`), and the next request takes it back (`Deno.refTimer`,
 * 0.2 µs) rather than setting a new one: clearing it after every round of
 * gated steps and setting it again took 13 µs of each round of eight in the
 * tap (docs/performance-history.md, twenty-seventh sitting). Fired with nothing due,
 * it is set for the next deadline, or for none.
 *
 * Pure: the caller opens the subscription and feeds {@linkcode ReplyInbox.answer}.
 *
 * @module
 */
import { BusRequestError, checkRequestTimeout } from "./bus.ts";

interface Waiter<T> {
  subject: string;
  timeoutMs: number;
  /** When it times out (`performance.now()` clock). */
  deadline: number;
  resolve(value: T): void;
  reject(err: Error): void;
}

/** One request's reply subject, its answer, and a way to give up on it. */
export interface ExpectedReply<T> {
  /** The reply subject to publish the request with. */
  reply: string;
  /** Settles with the answer, a {@linkcode BusRequestError} (`timeout`), or the error given to `cancel`/`failAll`. */
  answer: Promise<T>;
  /** Reject with `err` now (the request could not be published). */
  cancel(err: Error): void;
}

/**
 * Pending requests keyed by the last token of their reply subject.
 *
 * @example
 * ```ts
 * const inbox = new ReplyInbox<string>("_INBOX.abc.");
 * const { reply, answer } = inbox.expect("svc.echo", 1000);
 * // publish the request with `reply`; when a message arrives on `_INBOX.abc.*`:
 * inbox.answer(reply, "pong"); // true: it settled a waiting request
 * await answer; // "pong"
 * ```
 */
export class ReplyInbox<T> {
  /** The reply subjects' common prefix, ending with a dot. */
  readonly base: string;
  #next = 0;
  readonly #pending = new Map<string, Waiter<T>>();
  /** The one deadline timer, and the deadline it is set for. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  /** Whether the timer holds the process open (it does while a request waits). */
  #timerHolds = false;

  constructor(base: string) {
    if (!base.endsWith(".") || /[\s*>]/.test(base)) {
      throw new RangeError(
        `reply inbox: expected a subject prefix ending with "." and no wildcard, found ${
          JSON.stringify(base)
        }`,
      );
    }
    this.base = base;
  }

  /** The subscription that receives every answer. */
  get filter(): string {
    return `${this.base}*`;
  }

  /** Requests waiting for an answer. */
  get size(): number {
    return this.#pending.size;
  }

  /**
   * A reply subject for a request on `subject`, and its answer, rejected
   * after `timeoutMs` (more than 0 and at most `MAX_REQUEST_TIMEOUT_MS`;
   * anything else throws a `RangeError`).
   */
  expect(subject: string, timeoutMs: number): ExpectedReply<T> {
    checkRequestTimeout(timeoutMs);
    const token = (this.#next++).toString(36);
    const deadline = performance.now() + timeoutMs;
    let waiter!: Waiter<T>;
    const answer = new Promise<T>((resolve, reject) => {
      waiter = { subject, timeoutMs, deadline, resolve, reject };
    });
    this.#pending.set(token, waiter);
    // most requests share a timeout, so the timer is already set for an earlier deadline
    if (deadline < this.#timerAt) this.#arm(deadline);
    else if (!this.#timerHolds) {
      Deno.refTimer(this.#timer!);
      this.#timerHolds = true;
    }
    return {
      reply: this.base + token,
      answer,
      cancel: (err) => this.#settle(token, err),
    };
  }

  /**
   * Settle the request `replySubject` names with `outcome` (a value, or an
   * error to reject with). False when none waits there: a late answer after
   * its timeout, a second answer, or a subject outside this inbox.
   */
  answer(replySubject: string, outcome: T | Error): boolean {
    const token = this.#tokenOf(replySubject);
    return token !== null && this.#settle(token, outcome);
  }

  /**
   * Reject the request `replySubject` names as `no_responders` (the server's
   * answer when nobody subscribes to its subject). False when none waits there.
   */
  refuse(replySubject: string): boolean {
    const token = this.#tokenOf(replySubject);
    const w = token === null ? undefined : this.#pending.get(token);
    if (!w) return false;
    return this.#settle(token!, new BusRequestError("no_responders", w.subject, w.timeoutMs));
  }

  /**
   * Reject the requests published on `subject` with `err` (the server refused
   * the publish); returns how many.
   */
  failSubject(subject: string, err: Error): number {
    return this.#failWhere((w) => w.subject === subject, err);
  }

  /**
   * Reject every waiting request with `err` (the connection or the
   * subscription ended), and stop the deadline timer.
   */
  failAll(err: Error): void {
    this.#failWhere(() => true, err);
    this.#disarm();
  }

  /** Set the timer for `deadline` (replacing one set for a later deadline). */
  #arm(deadline: number): void {
    clearTimeout(this.#timer);
    this.#timerAt = deadline;
    // whole milliseconds, rounded up: a timer that fires a fraction early would be set again for 0
    const delay = Math.ceil(Math.max(0, deadline - performance.now()));
    this.#timer = setTimeout(() => this.#expire(), delay);
    this.#timerHolds = true;
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#timerHolds = false;
  }

  /** The timer fired: reject the requests that are due, and set it for the next deadline. */
  #expire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#timerHolds = false;
    const now = performance.now();
    let next = Infinity;
    for (const [token, w] of [...this.#pending]) {
      if (w.deadline <= now) {
        this.#pending.delete(token);
        w.reject(new BusRequestError("timeout", w.subject, w.timeoutMs));
      } else if (w.deadline < next) next = w.deadline;
    }
    // nothing waiting: no timer is left set
    if (next !== Infinity) this.#arm(next);
  }

  #failWhere(which: (w: Waiter<T>) => boolean, err: Error): number {
    let n = 0;
    for (const [token, w] of [...this.#pending]) {
      if (which(w) && this.#settle(token, err)) n++;
    }
    return n;
  }

  /** The token of a reply subject of this inbox, or null. */
  #tokenOf(replySubject: string): string | null {
    return replySubject.startsWith(this.base) ? replySubject.slice(this.base.length) : null;
  }

  #settle(token: string, outcome: T | Error): boolean {
    const w = this.#pending.get(token);
    if (!w) return false;
    this.#pending.delete(token);
    // nothing left waiting: the timer stays set for the next request, but holds nothing open
    if (this.#pending.size === 0 && this.#timerHolds) {
      Deno.unrefTimer(this.#timer!);
      this.#timerHolds = false;
    }
    if (outcome instanceof Error) w.reject(outcome);
    else w.resolve(outcome);
    return true;
  }
}
