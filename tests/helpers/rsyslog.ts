/**
 * A real rsyslog (Debian's `rsyslog` package) as the receiver of the syslog
 * sink tests: started on a free loopback port with a generated config
 * (imtcp, which takes octet-counted frames, optionally over TLS with the
 * `gtls` driver of `rsyslog-gnutls`) that writes every message, raw, one per
 * line, to a file the test reads back.
 *
 * @module
 */

const CANDIDATES = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd", "/usr/local/sbin/rsyslogd"];
const GTLS_DIRS = [
  "/usr/lib/x86_64-linux-gnu/rsyslog",
  "/usr/lib/aarch64-linux-gnu/rsyslog",
  "/usr/lib/rsyslog",
];

async function isFile(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isFile;
  } catch {
    return false;
  }
}

/** Path of `rsyslogd` (`RSYSLOGD` env, then the usual places), or null. */
export async function findRsyslogd(): Promise<string | null> {
  const env = Deno.env.get("RSYSLOGD");
  for (const p of env ? [env, ...CANDIDATES] : CANDIDATES) if (await isFile(p)) return p;
  return null;
}

/** Whether rsyslog's GnuTLS stream driver (`rsyslog-gnutls`) is installed. */
export async function hasRsyslogGtls(): Promise<boolean> {
  for (const d of GTLS_DIRS) if (await isFile(`${d}/lmnsd_gtls.so`)) return true;
  return false;
}

/** The message a test prints when it skips for want of a package. */
export function skipMessage(pkg: string, what: string): string {
  return `\n  SKIPPED ${what}: ${pkg} is not installed — \`sudo apt-get install ${pkg}\` ` +
    `(Debian package), then run the tests again.\n`;
}

/** A running rsyslogd. */
export interface Rsyslog {
  port: number;
  /** Messages received so far, raw (`%rawmsg%`), in order. */
  lines(): Promise<string[]>;
  /** Wait until `n` messages arrived (or throw after `timeoutMs`). */
  waitFor(n: number, timeoutMs?: number): Promise<string[]>;
  stop(): Promise<void>;
}

/** TLS files for an rsyslog gtls listener (PEM paths). */
export interface RsyslogTls {
  ca: string;
  cert: string;
  key: string;
}

/**
 * Start rsyslogd in the foreground on 127.0.0.1 and a port the kernel picks.
 *
 * @example
 * ```ts
 * const rs = await startRsyslog("/usr/sbin/rsyslogd");
 * // send octet-counted frames to 127.0.0.1:rs.port
 * const lines = await rs.waitFor(2);
 * await rs.stop();
 * ```
 */
export async function startRsyslog(
  rsyslogd: string,
  opts: { tls?: RsyslogTls } = {},
): Promise<Rsyslog> {
  const dir = await Deno.makeTempDir({ prefix: "lw-rsyslog-" });
  const out = `${dir}/messages.log`;
  const portFile = `${dir}/port`;
  const tls = opts.tls;
  const conf = [
    `global(workDirectory="${dir}" maxMessageSize="256k"`,
    `  parser.escapeControlCharactersOnReceive="off"`,
    ...(tls
      ? [
        `  defaultNetstreamDriver="gtls"`,
        `  defaultNetstreamDriverCAFile="${tls.ca}"`,
        `  defaultNetstreamDriverCertFile="${tls.cert}"`,
        `  defaultNetstreamDriverKeyFile="${tls.key}"`,
      ]
      : []),
    `)`,
    tls
      ? `module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")`
      : `module(load="imtcp")`,
    `template(name="raw" type="string" string="%rawmsg%\\n")`,
    `ruleset(name="lw") { action(type="omfile" file="${out}" template="raw" flushOnTXEnd="on" asyncWriting="off") }`,
    `input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="${portFile}" ruleset="lw")`,
    "",
  ].join("\n");
  await Deno.writeTextFile(`${dir}/rsyslog.conf`, conf);
  const child = new Deno.Command(rsyslogd, {
    args: ["-n", "-f", `${dir}/rsyslog.conf`, "-i", `${dir}/rsyslogd.pid`],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let errText = "";
  (async () => {
    for (;;) {
      const { value, done } = await stderr.read().catch(() => ({ value: "", done: true }));
      if (done) break;
      errText += value;
    }
  })();
  let port = 0;
  const deadline = Date.now() + 10_000;
  while (port === 0) {
    try {
      port = Number((await Deno.readTextFile(portFile)).trim());
    } catch {
      // not written yet
    }
    if (port === 0) {
      if (Date.now() > deadline) {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
        await child.status;
        throw new Error(`rsyslogd did not start within 10 s, found stderr: ${errText}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const lines = async () => {
    try {
      const text = await Deno.readTextFile(out);
      return text.split("\n").slice(0, -1);
    } catch {
      return [];
    }
  };
  return {
    port,
    lines,
    async waitFor(n, timeoutMs = 10_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const got = await lines();
        if (got.length >= n) return got;
        if (Date.now() > end) {
          throw new Error(
            `expected ${n} messages at rsyslog within ${timeoutMs} ms, found ${got.length}; ` +
              `stderr: ${errText}`,
          );
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
