import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { startNatsServer } from "../bus/nats_server.ts";
import { SECRET, SECRETS } from "../core/render/test_alert.ts";
import { runLatentwatch } from "../../tests/helpers/cli.ts";
import { tailRedaction } from "./alerts.ts";
import { hmac16 } from "../../tests/helpers/hmac_reference.ts";

Deno.test("alerts tail --redact: modes, the key variable, and what is refused", () => {
  const env = (n: string) => ({ K: "k3y", EMPTY: "" } as Record<string, string>)[n];
  assert.deepEqual(tailRedaction(undefined, undefined, env), { mode: "none" });
  assert.deepEqual(tailRedaction("tokens", undefined, env), { mode: "tokens" });
  assert.deepEqual(tailRedaction("hash", "K", env), { mode: "hash", hashKey: "k3y" });
  assert.equal(
    tailRedaction("secret", undefined, env),
    "--redact: expected one of none, hash, tokens, found 'secret'",
  );
  assert.equal(tailRedaction(undefined, "K", env), "--redact-key-env needs --redact hash");
  assert.equal(
    tailRedaction("tokens", "K", env),
    "--redact-key-env: expected --redact hash, found --redact tokens",
  );
  assert.equal(
    tailRedaction("hash", "NOPE", env),
    "--redact-key-env: expected environment variable NOPE to hold the key, found it unset",
  );
  assert.match(tailRedaction("hash", "EMPTY", env) as string, /found it empty$/);
});

Deno.test({
  name: "alerts tail --redact: the secrets of a stored alert are not printed",
  sanitizeResources: false,
  fn: async () => {
    const srv = await startNatsServer();
    try {
      const nc = await connect({ servers: srv.url });
      await (await jetstreamManager(nc)).streams.add({
        name: "LATENTWATCH_ALERTS",
        subjects: ["latentwatch.alerts.>"],
      });
      await jetstream(nc).publish("latentwatch.alerts.demo", JSON.stringify(SECRET), {
        msgID: SECRET.id,
      });
      await nc.close();
      const tail = (...args: string[]) =>
        runLatentwatch(["alerts", "tail", "--url", srv.url, "--all", "--limit", "1", ...args], {
          env: { LW_KEY: "k3y" },
        });
      const plain = await tail("--json");
      assert.equal(plain.code, 0, plain.stderr);
      for (const s of SECRETS) assert.ok(plain.stdout.includes(s), `without --redact: ${s}`);
      for (
        const args of [["--json", "--redact", "tokens"], ["--redact", "tokens"], [
          "--json",
          "--redact",
          "hash",
          "--redact-key-env",
          "LW_KEY",
        ]]
      ) {
        const run = await tail(...args);
        assert.equal(run.code, 0, run.stderr);
        for (const s of SECRETS) assert.ok(!run.stdout.includes(s), `${args.join(" ")}: ${s}`);
      }
      const hashed = JSON.parse(
        (await tail("--json", "--redact", "hash", "--redact-key-env", "LW_KEY")).stdout,
      );
      assert.equal(hashed.evidence[0].text, `hmac-sha256:${await hmac16("k3y", " hunter2024")}`);
      assert.equal(
        hashed.description,
        `saw 'hmac-sha256:${await hmac16("k3y", " hunter2024 sk-live-9f8e")}' on tokens 3-6`,
      );
      const bad = await tail("--redact", "everything");
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--redact: expected one of none, hash, tokens, found 'everything'/);
    } finally {
      await srv.stop();
    }
  },
});
