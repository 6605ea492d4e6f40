import assert from "node:assert/strict";
import { OpenRequests, type RequestState } from "./open_requests.ts";

const state = (seq: number): RequestState => ({ seq, nextPosition: seq, dModel: 4 });

Deno.test("open requests: past the bound the least recently published is forgotten", () => {
  const open = new OpenRequests(2);
  assert.equal(open.touch("a", state(1)), undefined);
  assert.equal(open.touch("b", state(1)), undefined);
  assert.equal(open.touch("a", state(2)), undefined); // a is now the most recent
  assert.equal(open.touch("c", state(1)), "b");
  assert.equal(open.touch("d", state(1)), "a");
  assert.deepEqual([open.size, open.evicted], [2, 2]);
  assert.equal(open.get("a"), undefined);
  assert.equal(open.get("c")?.seq, 1);
});

Deno.test("open requests: take closes a request once", () => {
  const open = new OpenRequests(4);
  open.touch("a", state(7));
  assert.equal(open.take("a")?.seq, 7);
  assert.equal(open.take("a"), undefined);
  assert.deepEqual([open.size, open.evicted], [0, 0]);
});
