import assert from "node:assert/strict";
import { natsConfigPasswordProblem } from "./nats_config_password.ts";

// tests/deploy_test.ts checks the same rule against the real nats-server
Deno.test("natsConfigPasswordProblem: names the reason for each kind of unsafe password", () => {
  assert.equal(natsConfigPasswordProblem("lw0123abcd"), undefined);
  assert.match(natsConfigPasswordProblem("")!, /empty/);
  assert.match(natsConfigPasswordProblem("YES")!, /boolean/);
  assert.match(natsConfigPasswordProblem("42")!, /number/);
  assert.match(natsConfigPasswordProblem("-x")!, /sign/);
  assert.match(natsConfigPasswordProblem("a b")!, /a space/);
  assert.match(natsConfigPasswordProblem("a;b")!, /";"/);
});
