import assert from "node:assert/strict";
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
import { classifyBusError, isTransientBusError } from "./errors.ts";
import { BusClosedError, MaxPayloadError, StreamError } from "./memory_bus.ts";

const apiError = (code: number, err_code: number) =>
  new JetStreamApiError({ code, err_code, description: "whatever the server says" });

Deno.test("classifyBusError: no responders, directly or as the cause of a request or JetStream error", () => {
  const nr = new NoRespondersError("a.b");
  assert.equal(classifyBusError(nr), "no_responders");
  assert.equal(classifyBusError(new RequestError("", { cause: nr })), "no_responders");
  // what a JetStream publish throws when no stream captures the subject
  const notEnabled = new Error("jetstream is not enabled", {
    cause: new RequestError("", { cause: nr }),
  });
  assert.equal(classifyBusError(notEnabled), "no_responders");
  assert.equal(classifyBusError(apiError(503, 0)), "no_responders");
  assert.equal(classifyBusError(new BusRequestError("no_responders", "a", 10)), "no_responders");
});

Deno.test("classifyBusError: timeouts", () => {
  assert.equal(classifyBusError(new TimeoutError()), "timeout");
  assert.equal(classifyBusError(new RequestError("", { cause: new TimeoutError() })), "timeout");
  assert.equal(classifyBusError(new BusRequestError("timeout", "a", 10)), "timeout");
});

Deno.test("classifyBusError: permission violations", () => {
  const pv = new PermissionViolationError("Permissions Violation", "publish", "secret.x");
  assert.equal(classifyBusError(pv), "permission_denied");
  assert.equal(classifyBusError(new Error("wrapped", { cause: pv })), "permission_denied");
});

Deno.test("classifyBusError: payload over max_payload (NATS and the memory bus)", () => {
  assert.equal(classifyBusError(InvalidArgumentError.format("payload", "too big")), "too_large");
  assert.equal(classifyBusError(new MaxPayloadError("a", 20, 10)), "too_large");
});

Deno.test("classifyBusError: JetStream API errors by err_code, not by description", () => {
  assert.equal(classifyBusError(apiError(404, 10059)), "stream_not_found");
  assert.equal(classifyBusError(apiError(400, 10058)), "stream_name_in_use");
  assert.equal(classifyBusError(apiError(400, 10071)), "other");
  assert.equal(classifyBusError(new StreamError("no stream captures a")), "stream_not_found");
});

Deno.test("classifyBusError: closed connections", () => {
  assert.equal(classifyBusError(new ClosedConnectionError()), "closed");
  assert.equal(classifyBusError(new DrainingConnectionError()), "closed");
  assert.equal(classifyBusError(new BusClosedError("publish")), "closed");
});

Deno.test("classifyBusError: message text is never read", () => {
  assert.equal(classifyBusError(new Error("no responders available for request")), "other");
  assert.equal(classifyBusError(new Error("TIMEOUT")), "other");
  assert.equal(classifyBusError(new Error("Permissions Violation for Publish")), "other");
  assert.equal(classifyBusError("a string"), "other");
  const loop = new Error("self");
  (loop as { cause?: unknown }).cause = loop;
  assert.equal(classifyBusError(loop), "other");
});

Deno.test("isTransientBusError: timeouts and a cluster without a leader, by class and code only", () => {
  assert.equal(isTransientBusError(new TimeoutError()), true);
  assert.equal(isTransientBusError(new BusRequestError("timeout", "a", 10)), true);
  assert.equal(isTransientBusError(new Error("wrapped", { cause: new TimeoutError() })), true);
  // err_code 10008, "JetStream system temporarily unavailable" (status 503)
  assert.equal(isTransientBusError(apiError(503, 10008)), true);
  assert.equal(isTransientBusError(new Error("create", { cause: apiError(503, 10008) })), true);
  // what waiting does not mend
  assert.equal(isTransientBusError(apiError(503, 0)), false); // no JetStream at all
  assert.equal(isTransientBusError(apiError(400, 10058)), false); // stream name in use
  assert.equal(isTransientBusError(new PermissionViolationError("denied", "publish", "a")), false);
  assert.equal(isTransientBusError(new Error("timeout")), false); // text is not read
  assert.equal(isTransientBusError("timeout"), false);
});
