/**
 * What the tests against deploy/nats/accounts.conf share: the passwords the
 * config reads from the environment, and the permission violations a
 * connection is told about.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";

/** The config reads its passwords from the environment; nats-server inherits ours. */
export const PASSWORDS = {
  LATENTWATCH_NATS_PASSWORD: "sidecar-test-pw",
  LATENTWATCH_TAP_PASSWORD: "tap-test-pw",
  LATENTWATCH_SOC_PASSWORD: "soc-test-pw",
  LATENTWATCH_SYS_PASSWORD: "sys-test-pw",
};

/** Collect the permission violations the server reports on `nc`. */
export function violations(nc: NatsConnection): string[] {
  const seen: string[] = [];
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error") seen.push(String((s as { error?: Error }).error?.message));
    }
  })().catch(() => {});
  return seen;
}
