/**
 * `deno task test` (also `deno task ok`: the same gate): make sure what the
 * suite needs is here (installing `nats-server` through apt-get when running
 * as root), run the static gates (fmt, lint, type check, layering, doc
 * examples; see tools/gates.ts), each as one test line, then every test, and
 * end with one line `tests: N passed, M failed` that CI reads, gates
 * included.
 *
 * `deno task test [--no-gates | --only-gates] [deno test args…]`: with test
 * paths or filters, only those tests run (and the gates, unless `--no-gates`).
 *
 * @module
 */
import { findNatsServer } from "../src/bus/nats_server.ts";
import { findRsyslogd, hasRsyslogGtls } from "./helpers/rsyslog.ts";
import { hasPythonTorch } from "../support/python.ts";
import { type Gate, staticGates } from "../tools/gates.ts";
import { findChromium } from "./helpers/chromium.ts";

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

/** Whether Deno's WebGPU finds an adapter, asked in a child (the loader is read once per process). */
async function hasWebGpuAdapter(): Promise<boolean> {
  const probe = "Deno.exit((await navigator.gpu?.requestAdapter()) ? 0 : 1)";
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", probe],
    stdout: "null",
    stderr: "null",
  }).output();
  return code === 0;
}

/** Passed and failed counts. */
interface Tally {
  passed: number;
  failed: number;
}

/**
 * Run one gate from the repository `root`, printing `gate <name> ... ok
 * (Ns)` or `... FAILED (Ns)` followed by its output.
 */
async function runGate(gate: Gate, root: string): Promise<boolean> {
  const t0 = performance.now();
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: gate.args,
    cwd: root, // the gates' paths are repository-relative, wherever the task was started
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  if (code === 0) {
    console.log(`gate ${gate.name} ... ok (${secs}s)`);
    return true;
  }
  const dec = new TextDecoder();
  // deno's progress lines ("Check …", "Download …") are noise next to the failure
  const output = (dec.decode(stdout) + dec.decode(stderr))
    .split("\n")
    .filter((l) => !/^(Check|Download|Initialize) /.test(l))
    .join("\n")
    .trimEnd();
  console.log(`gate ${gate.name} ... FAILED (${secs}s)\n${output}\n`);
  return false;
}

async function runGates(): Promise<Tally> {
  const tally = { passed: 0, failed: 0 };
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  for (const gate of await staticGates(root)) {
    if (await runGate(gate, root)) tally.passed++;
    else tally.failed++;
  }
  return tally;
}

async function runTests(filters: string[], gates: Tally): Promise<number> {
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
  if (gates.passed + gates.failed > 0) {
    console.log(`gates: ${gates.passed} passed, ${gates.failed} failed`);
  }
  console.log(`tests: ${passed + gates.passed} passed, ${failed + gates.failed} failed`);
  return code !== 0 ? code : gates.failed > 0 ? 1 : 0;
}

/** Run only the static gates (`--only-gates`). */
function gatesOnly(gates: Tally): number {
  console.log(`tests: ${gates.passed} passed, ${gates.failed} failed`);
  return gates.failed > 0 ? 1 : 0;
}

const noGates = Deno.args.includes("--no-gates");
const onlyGates = Deno.args.includes("--only-gates");
const rest = Deno.args.filter((a) => a !== "--no-gates" && a !== "--only-gates");
// the gates first: they take about a minute and say quickly what is wrong
const gates = noGates ? { passed: 0, failed: 0 } : await runGates();
if (onlyGates) Deno.exit(gatesOnly(gates));

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
  "openssl",
  async () => {
    try {
      return (await new Deno.Command("openssl", { args: ["version"], stdout: "null" }).output())
        .success;
    } catch {
      return false;
    }
  },
  "The Python tap's TLS tests make a throwaway CA with it: `sudo apt-get install openssl`.",
);
await ensurePackage(
  "gcc",
  async () => {
    try {
      const cc = Deno.env.get("CC") ?? "cc";
      return (await new Deno.Command(cc, { args: ["--version"], stdout: "null" }).output()).success;
    } catch {
      return false;
    }
  },
  "The native CPU kernels' tests compile them (on a CPU with AVX-512 VNNI; elsewhere they skip):\n" +
    "  `sudo apt-get install gcc`, or point CC at a C compiler.",
);
await ensurePackage(
  "python3-torch",
  hasPythonTorch,
  "The Python tap's end-to-end tests run a small PyTorch model: `sudo apt-get install\n" +
    "  --no-install-recommends python3-torch` (Debian/Ubuntu), or `pip install torch`.",
  ["--no-install-recommends"],
);
await ensurePackage(
  "chromium",
  () => Promise.resolve(findChromium() !== null),
  "The workbench's browser tests drive it headless: `sudo apt-get install chromium` (Debian),\n" +
    "  or point CHROMIUM at a Chromium binary; without it they skip.",
  ["--no-install-recommends"],
);
await ensurePackage(
  "mesa-vulkan-drivers",
  hasWebGpuAdapter,
  "The WebGPU encoder's tests need a Vulkan device; without a GPU, Mesa's lavapipe runs them on\n" +
    "  the CPU: `sudo apt-get install mesa-vulkan-drivers` (Debian/Ubuntu).",
  ["--no-install-recommends"],
);
Deno.exit(await runTests(rest, gates));
