/**
 * An open-loop load generator in its own process, as a model server is:
 * publishes frames of `--tokens` tokens (f32, 768 wide) for `--requests`
 * concurrent requests through the TypeScript tap at `--rate` tokens/s for
 * `--seconds`, on a fixed schedule whatever the sidecar does. Each frame
 * carries the wall-clock time it was published (`Lw-Meta-sent`, ms since the
 * epoch, sub-millisecond) so the sidecar's process can measure publish →
 * evaluated across processes. Bounded in count and time; loopback only (the
 * URL `bench/e2e.ts` passes). Prints one JSON line: frames and tokens
 * published, and the schedule lag p99.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { Rng } from "../src/core/random.ts";
import { Tap } from "../src/tap/tap.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    url: { type: "string" },
    rate: { type: "string" },
    seconds: { type: "string" },
    requests: { type: "string", default: "64" },
    tokens: { type: "string", default: "16" },
    prefix: { type: "string", default: "gen" },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
if (!values.url || !(rate > 0) || !(seconds > 0) || seconds > 600) {
  console.error(
    "load_gen: expected --url nats://127.0.0.1:PORT --rate <tokens/s> --seconds <≤ 600>",
  );
  Deno.exit(2);
}
const dIn = 768;
const tokensPerFrame = Number(values.tokens);
const requests = Number(values.requests);
const bus = await connectNatsBus({ url: values.url, name: "bench-load-gen" });
const tap = new Tap(bus, { model: "bench-model", hook: "blocks.8.hook_resid_pre" });
const pool = new Rng(9).fillGaussian(new Float32Array(tokensPerFrame * dIn * 8));
const positions = new Array(requests).fill(0);
const interval = (tokensPerFrame / rate) * 1000;
const frames = Math.max(1, Math.floor((rate * seconds) / tokensPerFrame));
const wall = () => performance.timeOrigin + performance.now();
const lags: number[] = [];
const t0 = performance.now();
const hardEnd = t0 + seconds * 1000 + 5000;
let i = 0;
while (i < frames && performance.now() < hardEnd) {
  const due = t0 + i * interval;
  const now = performance.now();
  if (due > now) {
    await new Promise((r) => setTimeout(r, Math.max(1, Math.round(due - now))));
    continue;
  }
  for (let n = 0; i < frames && t0 + i * interval <= performance.now() && n < 64; n++) {
    lags.push(performance.now() - (t0 + i * interval));
    const r = i % requests;
    const off = (i % 8) * tokensPerFrame * dIn;
    tap.publish(
      `${values.prefix}-${r}`,
      positions[r],
      pool.subarray(off, off + tokensPerFrame * dIn),
      tokensPerFrame,
      dIn,
      { meta: { sent: wall().toFixed(3) } },
    );
    positions[r] += tokensPerFrame;
    i++;
  }
  await new Promise((r) => setTimeout(r, 0));
}
for (let r = 0; r < requests; r++) tap.end(`${values.prefix}-${r}`);
await bus.flush();
await bus.close();
lags.sort((a, b) => a - b);
console.log(JSON.stringify({
  frames: i,
  tokens: i * tokensPerFrame,
  schedule_lag_p99_ms: lags[Math.min(lags.length - 1, Math.floor(0.99 * lags.length))] ?? 0,
}));
