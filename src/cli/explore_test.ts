import assert from "node:assert/strict";
import { writeExample } from "../demo/example_trace.ts";

Deno.test("explore prints its address, answers /ui/api/info, stops on SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lw-explore-" });
  try {
    await writeExample(dir, new URL("../../policies/demo.yaml", import.meta.url).pathname);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../main.ts", import.meta.url).pathname,
        "explore",
        `${dir}/demo.trace.gz`,
        "--monitor",
        `${dir}/monitor.yaml`,
        "--listen",
        "127.0.0.1:0",
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    const errText: string[] = [];
    const drain = (async () => {
      for (;;) {
        const { value, done } = await stderr.read();
        if (done) return;
        errText.push(value);
      }
    })();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) break;
      out += value;
    }
    const first = out.split("\n")[0];
    const m = /^workbench: (http:\/\/127\.0\.0\.1:\d+\/ui\/)$/.exec(first);
    assert.ok(m, `expected 'workbench: http://127.0.0.1:<port>/ui/', found '${first}'`);
    const info = await (await fetch(`${m[1]}api/info`)).json();
    assert.equal(info.mode, "traces");
    assert.equal(info.monitor, "demo-example");
    assert.ok(info.rules.some((r: { id: string }) => r.id === "prompt-injection"));
    assert.equal(info.requests, 5);
    child.kill("SIGTERM");
    const status = await child.status;
    await lines.cancel();
    await drain;
    assert.equal(status.code, 0, errText.join(""));
    assert.match(errText.join(""), /explore: 5 request\(s\) from 1 trace\(s\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
