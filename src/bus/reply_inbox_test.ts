import assert from "node:assert/strict";
import { BusRequestError } from "./bus.ts";
import { classifyBusError } from "./errors.ts";
import { ReplyInbox } from "./reply_inbox.ts";

Deno.test("reply inbox: each answer settles the request its reply subject names", async () => {
  const inbox = new ReplyInbox<string>("_INBOX.t.");
  assert.equal(inbox.filter, "_INBOX.t.*");
  const a = inbox.expect("svc.a", 1000);
  const b = inbox.expect("svc.b", 1000);
  assert.notEqual(a.reply, b.reply);
  assert.ok(a.reply.startsWith("_INBOX.t.") && !a.reply.slice(9).includes("."), a.reply);
  assert.equal(inbox.size, 2);
  // answered out of order
  assert.equal(inbox.answer(b.reply, "for b"), true);
  assert.equal(inbox.answer(a.reply, "for a"), true);
  assert.equal(await a.answer, "for a");
  assert.equal(await b.answer, "for b");
  assert.equal(inbox.size, 0);
  // a second answer, and subjects outside the inbox, settle nothing
  assert.equal(inbox.answer(a.reply, "again"), false);
  assert.equal(inbox.answer("_INBOX.other.0", "x"), false);
  assert.equal(inbox.refuse("elsewhere.0"), false);
});

Deno.test("reply inbox: no answer in time rejects as timeout, and a late answer is ignored", async () => {
  const inbox = new ReplyInbox<string>("_INBOX.t.");
  const t0 = performance.now();
  const r = inbox.expect("svc.slow", 30);
  const err = await r.answer.then(() => assert.fail("expected a timeout"), (e) => e);
  assert.ok(performance.now() - t0 >= 25, "not before its timeout");
  assert.ok(err instanceof BusRequestError, String(err));
  assert.equal(err.kind, "timeout");
  assert.equal(err.subject, "svc.slow");
  assert.equal(err.timeoutMs, 30);
  assert.equal(classifyBusError(err), "timeout");
  assert.equal(inbox.answer(r.reply, "late"), false);
  assert.equal(inbox.size, 0);
});

Deno.test("reply inbox: refuse rejects as no_responders with the request's subject", async () => {
  const inbox = new ReplyInbox<string>("_INBOX.t.");
  const r = inbox.expect("svc.nobody", 500);
  assert.equal(inbox.refuse(r.reply), true);
  const err = await r.answer.then(() => assert.fail("expected a rejection"), (e) => e);
  assert.ok(err instanceof BusRequestError);
  assert.equal(err.kind, "no_responders");
  assert.equal(err.subject, "svc.nobody");
  assert.equal(inbox.refuse(r.reply), false, "settled once");
});

Deno.test("reply inbox: cancel and failAll reject with the given error and clear the timers", async () => {
  const inbox = new ReplyInbox<string>("_INBOX.t.");
  const a = inbox.expect("svc.a", 60_000);
  const b = inbox.expect("svc.b", 60_000);
  const c = inbox.expect("svc.c", 60_000);
  a.cancel(new Error("publish failed"));
  assert.equal((await a.answer.catch((e) => e)).message, "publish failed");
  inbox.failAll(new Error("connection closed"));
  assert.equal((await b.answer.catch((e) => e)).message, "connection closed");
  assert.equal((await c.answer.catch((e) => e)).message, "connection closed");
  assert.equal(inbox.size, 0);
});

Deno.test("reply inbox: one timer serves every deadline, each request times out at its own", async () => {
  const inbox = new ReplyInbox<string>("_INBOX.t.");
  const t0 = performance.now();
  const settledAt = (r: { answer: Promise<string> }) =>
    r.answer.then(
      () => assert.fail("expected a timeout"),
      (e) => ({ err: e as BusRequestError, ms: performance.now() - t0 }),
    );
  // the first request's deadline is the latest: the later ones must move the timer earlier
  const slow = inbox.expect("svc.slow", 60_000);
  const late = settledAt(inbox.expect("svc.late", 90));
  const early = settledAt(inbox.expect("svc.early", 30));
  const e = await early;
  assert.equal(e.err.subject, "svc.early");
  assert.ok(e.ms >= 25 && e.ms < 85, `the 30 ms request timed out at ${e.ms.toFixed(1)} ms`);
  assert.equal(inbox.size, 2, "the others still wait");
  const l = await late;
  assert.equal(l.err.subject, "svc.late");
  assert.ok(l.ms >= 85, `the 90 ms request timed out at ${l.ms.toFixed(1)} ms`);
  assert.equal(inbox.answer(slow.reply, "in time"), true);
  assert.equal(await slow.answer, "in time");
  // nothing waits; a new request sets the timer again
  const again = await settledAt(inbox.expect("svc.again", 20));
  assert.equal(again.err.kind, "timeout");
  assert.equal(inbox.size, 0);
});

Deno.test("reply inbox: a prefix that is not a subject prefix is refused", () => {
  for (const bad of ["_INBOX.t", "_INBOX.*.", "_INBOX.>.", "_INBOX. x."]) {
    assert.throws(() => new ReplyInbox(bad), RangeError);
  }
});

Deno.test("reply inbox: failSubject rejects only the requests published on that subject", async () => {
  const inbox = new ReplyInbox<string>("_INBOX.t.");
  const a1 = inbox.expect("svc.secret", 60_000);
  const a2 = inbox.expect("svc.secret", 60_000);
  const b = inbox.expect("svc.open", 60_000);
  assert.equal(inbox.failSubject("svc.secret", new Error("denied")), 2);
  assert.equal((await a1.answer.catch((e) => e)).message, "denied");
  assert.equal((await a2.answer.catch((e) => e)).message, "denied");
  assert.equal(inbox.size, 1);
  assert.equal(inbox.failSubject("svc.other", new Error("x")), 0);
  assert.equal(inbox.answer(b.reply, "still here"), true);
  assert.equal(await b.answer, "still here");
});

Deno.test("reply inbox: the timer kept after the last answer serves a later request at its own deadline", async () => {
  const inbox = new ReplyInbox<string>("_INBOX.t.");
  const first = inbox.expect("svc.first", 40);
  assert.equal(inbox.answer(first.reply, "done"), true);
  assert.equal(await first.answer, "done");
  // the timer is still set for 40 ms; this request's deadline is later, so it takes that timer,
  // which then fires with nothing due and must be set again for this deadline
  const t0 = performance.now();
  const later = inbox.expect("svc.later", 120);
  const err = await later.answer.then(() => assert.fail("expected a timeout"), (e) => e);
  const ms = performance.now() - t0;
  assert.ok(err instanceof BusRequestError && err.kind === "timeout", String(err));
  assert.ok(ms >= 115 && ms < 1000, `the 120 ms request timed out at ${ms.toFixed(1)} ms`);
  assert.equal(inbox.size, 0);
});

Deno.test("reply inbox: once nothing waits, the kept timer holds no process open", async () => {
  // a child answers its one request (60 s timeout) and returns: it must exit at once, not after 60 s
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/idle.ts`;
    await Deno.writeTextFile(
      script,
      `import { ReplyInbox } from ${
        JSON.stringify(new URL("./reply_inbox.ts", import.meta.url).href)
      };
const inbox = new ReplyInbox("_INBOX.t.");
const r = inbox.expect("svc.a", 60_000);
inbox.answer(r.reply, "ok");
console.log(await r.answer);
`,
    );
    const t0 = performance.now();
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-config", script],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const killer = setTimeout(() => child.kill(), 20_000);
    const out = await child.output();
    clearTimeout(killer);
    const ms = performance.now() - t0;
    assert.equal(
      new TextDecoder().decode(out.stdout).trim(),
      "ok",
      new TextDecoder().decode(out.stderr),
    );
    assert.ok(
      out.success && ms < 15_000,
      `the child exited after ${ms.toFixed(0)} ms (${out.code})`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
