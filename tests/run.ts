/**
 * `deno task test`: make sure what the suite needs is here (installing
 * `nats-server` through apt-get when running as root), run every test, and
 * end with one line `tests: N passed, M failed` that CI reads.
 *
 * @module
 */
import { findNatsServer } from "../src/bus/nats_server.ts";

async function sh(cmd: string, args: string[]): Promise<boolean> {
  const { code } = await new Deno.Command(cmd, { args, stdout: "inherit", stderr: "inherit" })
    .output();
  return code === 0;
}

async function ensureNatsServer(): Promise<void> {
  if (await findNatsServer()) return;
  const isRoot = Deno.uid?.() === 0;
  if (isRoot) {
    console.error("tests: nats-server missing; installing it with apt-get (Debian package)");
    const env = ["-y", "-q", "install", "nats-server"];
    if (!await sh("apt-get", env)) {
      await sh("apt-get", ["-q", "update"]);
      await sh("apt-get", env);
    }
  }
  if (!await findNatsServer()) {
    // the unit tests still run; every test that needs a broker fails with this hint
    console.error(
      "tests: nats-server is required for the end-to-end tests and could not be installed.\n" +
        "  Install it: `sudo apt-get install nats-server` (Debian/Ubuntu), or download it from\n" +
        "  the NATS project, put it on PATH or point NATS_SERVER at the binary.",
    );
  }
}

async function runTests(filters: string[]): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--no-check=remote", ...filters],
    stdout: "piped",
    stderr: "inherit",
    env: { NO_COLOR: "1" },
  }).spawn();
  let passed = 0;
  let failed = 0;
  let sawSummary = false;
  const dec = new TextDecoder();
  let pending = "";
  for await (const chunk of child.stdout) {
    const text = dec.decode(chunk, { stream: true });
    await Deno.stdout.write(chunk);
    pending += text;
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      // Deno's summary: "ok | 12 passed (3 steps) | 0 failed (1s)"
      const m = /^(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/.exec(line);
      if (m) {
        passed = Number(m[1]);
        failed = Number(m[2]);
        sawSummary = true;
      }
    }
  }
  const { code } = await child.status;
  if (!sawSummary && code !== 0) failed = Math.max(failed, 1);
  console.log(`tests: ${passed} passed, ${failed} failed`);
  return code;
}

await ensureNatsServer();
Deno.exit(await runTests(Deno.args));
