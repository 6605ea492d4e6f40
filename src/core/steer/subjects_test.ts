import { steerAckSubject, steerSubject } from "./subjects.ts";
import { assertEquals, assertThrows } from "./_test_utils.ts";

Deno.test("steer subjects: tokens as for tap subjects, acks on their own prefix", () => {
  assertEquals(
    steerSubject("google/gemma-2-2b", "blocks.6.hook_resid_post", 3),
    "latentwatch.steer.v1.google_gemma-2-2b.blocks_6_hook_resid_post.3",
  );
  assertEquals(steerAckSubject("gpt2", "blocks.6"), "latentwatch.steer-ack.v1.gpt2.blocks_6");
  assertThrows(() => steerSubject("m", "h", -1), RangeError, "partition");
});
