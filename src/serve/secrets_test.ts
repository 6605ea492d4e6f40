import assert from "node:assert/strict";
import { parseMonitorConfig } from "../config/monitor.ts";
import { MissingSecretError, monitorRedaction } from "./secrets.ts";

const HEAD = "monitor: m\nmodel: x\nhook: h\nsaes: [{id: s, path: ./sae}]\npolicies: [./p.yaml]\n";

Deno.test("monitorRedaction: the default mode, the key its variable holds; unset or empty refused", () => {
  const none = parseMonitorConfig(HEAD, "/srv/m.yaml");
  assert.deepEqual(monitorRedaction(none, () => undefined), { mode: "none" });
  const keyed = parseMonitorConfig(
    HEAD + "redaction: {default: tokens, hash_key_env: LW_K}\n",
    "/srv/m.yaml",
  );
  assert.deepEqual(monitorRedaction(keyed, (n) => n === "LW_K" ? "k" : undefined), {
    mode: "tokens",
    hashKey: "k",
  });
  for (const [value, found] of [[undefined, "unset"], ["", "empty"]] as const) {
    assert.throws(() => monitorRedaction(keyed, () => value), (err: Error) => {
      assert.ok(err instanceof MissingSecretError);
      assert.equal(err.variable, "LW_K");
      assert.equal(
        err.message,
        "/srv/m.yaml: redaction.hash_key_env: expected environment variable LW_K to hold the " +
          `key of hashed token text, found it ${found}`,
      );
      return true;
    });
  }
});
