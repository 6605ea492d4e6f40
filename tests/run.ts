/**
 * `deno task test`: make sure what the suite needs is here (installing
 * `nats-server` through apt-get when running as root), run every test, and
 * end with one line `tests: N passed, M failed` that CI reads.
 *
 * @module
 */
import { findNatsServer } from "../src/bus/nats_server.ts";
import { findRsyslogd, hasRsyslogGtls } from "./helpers/rsyslog.ts";
import { hasPythonTorch } from "../support/python.ts";

async function sh(cmd: string, args: string[]): Promise<boolean> {
  const { code } = await new Deno.Command(cmd, { args, stdout: "inherit", stderr: "inherit" })
    .output();
  return code === 0;
}

/**
 * Make sure a Debian package's program is here: install it with apt-get when
 * running as root, otherwise say what to install. The unit tests run either
 * way; the tests that need the program fail (or skip, loudly) with the hint.
 */
async function ensurePackage(
  pkg: string,
  found: () => Promise<boolean>,
  hint: string,
  aptFlags: string[] = [],
): Promise<void> {
  if (await found()) return;
  if (Deno.uid?.() === 0) {
    console.error(`tests: ${pkg} missing; installing it with apt-get (Debian package)`);
    const install = ["-y", "-q", "install", ...aptFlags, pkg];
    if (!await sh("apt-get", install)) {
      await sh("apt-get", ["-q", "update"]);
      await sh("apt-get", install);
    }
  }
  if (!await found()) console.error(`tests: ${pkg} could not be installed.\n  ${hint}`);
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

await ensurePackage(
  "nats-server",
  async () => (await findNatsServer()) !== null,
  "The end-to-end tests need it: `sudo apt-get install nats-server` (Debian/Ubuntu), or put the\n" +
    "  NATS project's binary on PATH or point NATS_SERVER at it.",
);
await ensurePackage(
  "rsyslog",
  async () => (await findRsyslogd()) !== null,
  "The syslog sink tests receive with it: `sudo apt-get install rsyslog`.",
);
await ensurePackage(
  "rsyslog-gnutls",
  hasRsyslogGtls,
  "The syslog-over-TLS test receives with it: `sudo apt-get install rsyslog-gnutls`.",
);
await ensurePackage(
  "python3-torch",
  hasPythonTorch,
  "The Python tap's end-to-end tests run a small PyTorch model: `sudo apt-get install\n" +
    "  --no-install-recommends python3-torch` (Debian/Ubuntu), or `pip install torch`.",
  ["--no-install-recommends"],
);
Deno.exit(await runTests(Deno.args));
