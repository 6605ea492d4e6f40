/** What a pipeline's parts get from its options: the first generation, steering and evidence. */
import assert from "node:assert/strict";
import { MemoryBus } from "../bus/memory_bus.ts";
import { compilePolicySet } from "../core/policy/compile.ts";
import type { Encoder } from "../core/sae.ts";
import { Logger } from "../shared/log.ts";
import { Telemetry } from "../shared/telemetry.ts";
import {
  evidenceOf,
  firstGeneration,
  type PipelineOptions,
  steeringOf,
} from "./pipeline_options.ts";

/** The options every pipeline needs, nothing optional set. */
function options(more: Partial<PipelineOptions> = {}): PipelineOptions {
  return {
    monitor: "t",
    model: "m",
    hook: "h",
    subject: "lw.tap.m.h.>",
    dIn: 4,
    encoders: new Map<string, Encoder>(),
    policies: compilePolicySet([], new Map()),
    batching: { maxBatchTokens: 4, maxWaitMs: 1, maxQueueTokens: 64 },
    sinks: [],
    bus: new MemoryBus(),
    telemetry: new Telemetry(),
    log: new Logger({ quiet: true }),
    ...more,
  };
}

Deno.test("firstGeneration: the options' encoders, policies, labels and steer actions", () => {
  const o = options({ labels: new Map(), steerOps: new Map(), evidenceEncoders: new Map() });
  const gen = firstGeneration(o);
  assert.equal(gen.encoders, o.encoders);
  assert.equal(gen.policies, o.policies);
  assert.equal(gen.labels, o.labels);
  assert.equal(gen.steerOps, o.steerOps);
  assert.equal(gen.evidenceEncoders, o.evidenceEncoders);
  // verdict encoders only where the options have them
  assert.equal("verdictEncoders" in gen, false);
  const verdictEncoders = new Map<string, Encoder>();
  assert.equal(firstGeneration(options({ verdictEncoders })).verdictEncoders, verdictEncoders);
});

Deno.test("steeringOf: the options' settings, or enabled with commands that live 5 s", () => {
  assert.deepEqual(steeringOf(options()), { enabled: true, ttlMs: 5000 });
  const steering = { enabled: false, ttlMs: 100 };
  assert.equal(steeringOf(options({ steering })), steering);
});

Deno.test("evidenceOf: the options' evidence at the activations' width, or off", () => {
  assert.deepEqual(evidenceOf(options()), { topLatents: 0, ringTokens: 0, dIn: 4 });
  assert.deepEqual(
    evidenceOf(options({ evidence: { topLatents: 8, ringTokens: 256 }, dIn: 768 })),
    { topLatents: 8, ringTokens: 256, dIn: 768 },
  );
});
