import assert from "node:assert/strict";
import { ConfigError, formatIssue } from "./errors.ts";
import { parseMonitorConfig } from "./monitor.ts";

const BASE =
  "monitor: demo\nmodel: m\nhook: h\nsaes: [{id: s, path: ./sae}]\npolicies: [./p.yaml]\n";

function problems(text: string): string[] {
  try {
    parseMonitorConfig(text, "/srv/lw/m.yaml");
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map(formatIssue);
    throw err;
  }
  assert.fail("expected a ConfigError, none was thrown");
}

Deno.test("scale_out: defaults filled in, bucket named after the monitor", () => {
  const cfg = parseMonitorConfig(`${BASE}scale_out:\n  partitions: 16\n`, "/srv/lw/m.yaml");
  assert.deepEqual(cfg.scaleOut, {
    partitions: 16,
    leaseTtlMs: 10000,
    heartbeatMs: 1000,
    bucket: "latentwatch_partitions",
    replicas: 1,
  });
  assert.equal(parseMonitorConfig(BASE, "/srv/lw/m.yaml").scaleOut, undefined);
});

Deno.test("scale_out: every key set", () => {
  const cfg = parseMonitorConfig(
    `${BASE}scale_out:\n  partitions: 4\n  lease_ttl_ms: 3000\n  heartbeat_ms: 500\n` +
      `  bucket: lw_b\n  replicas: 3\n  member: gpu-7\n`,
    "/srv/lw/m.yaml",
  );
  assert.deepEqual(cfg.scaleOut, {
    partitions: 4,
    leaseTtlMs: 3000,
    heartbeatMs: 500,
    bucket: "lw_b",
    replicas: 3,
    member: "gpu-7",
  });
});

Deno.test("scale_out: bad values say where, what was expected and what was found", () => {
  assert.deepEqual(problems(`${BASE}scale_out:\n  partitions: 0\n`), [
    "/srv/lw/m.yaml:7:15: expected an integer in 1..1024 (the number of partitions the taps spread requests over), found 0",
  ]);
  assert.deepEqual(problems(`${BASE}scale_out:\n  partitions: 2\n  heartbeat_ms: 6000\n`), [
    "/srv/lw/m.yaml:8:17: expected heartbeat_ms ≤ lease_ttl_ms / 3 (3333), found 6000; a lease must be renewed at least three times in its lifetime",
  ]);
  assert.deepEqual(problems(`${BASE}scale_out:\n  partitions: 2\n  member: a.b\n`), [
    `/srv/lw/m.yaml:8:11: expected a sidecar name of letters, digits, '_' or '-', found the string "a.b"`,
  ]);
  assert.match(problems(`${BASE}scale_out: {}\n`)[0], /scale_out|partitions/);
});

Deno.test("nats.url: a list, or commas, become one comma-separated server list", () => {
  const list = parseMonitorConfig(
    `${BASE}nats:\n  url: [nats://127.0.0.1:4222, "nats://127.0.0.1:4223"]\n`,
    "/srv/lw/m.yaml",
  );
  assert.equal(list.nats.url, "nats://127.0.0.1:4222,nats://127.0.0.1:4223");
  const commas = parseMonitorConfig(
    `${BASE}nats:\n  url: "nats://a:4222, tls://b:4222"\n`,
    "/srv/lw/m.yaml",
  );
  assert.equal(commas.nats.url, "nats://a:4222,tls://b:4222");
  assert.deepEqual(problems(`${BASE}nats:\n  url: [nats://a:1, http://b:2]\n`), [
    `/srv/lw/m.yaml:7:8: expected a NATS URL like nats://host:port (or a list of them), found the string "http://b:2"`,
  ]);
});

Deno.test("alerts.replicas: default 1, at most 5", () => {
  assert.equal(parseMonitorConfig(BASE, "/srv/lw/m.yaml").alerts.replicas, 1);
  assert.equal(
    parseMonitorConfig(`${BASE}alerts:\n  replicas: 3\n`, "/srv/lw/m.yaml").alerts.replicas,
    3,
  );
  assert.equal(problems(`${BASE}alerts:\n  replicas: 7\n`).length, 1);
});
