import assert from "node:assert/strict";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats } from "./nats_connect.ts";
import { encodeLinesFromSlab } from "./protocol_lines.ts";
import { startNatsServer } from "./nats_server.ts";

// a real nats-server reads the lines: a line written wrong is a protocol error or a lost message
for (const transport of ["deno", "node"] as const) {
  Deno.test(`protocol lines from a slab (${transport} transport): 3,000 messages, ASCII and UTF-8 subjects, arrive as sent`, async () => {
    const server = await startNatsServer();
    const nc = await connectNats({ servers: server.url, reconnect: false }, transport);
    try {
      assert.equal(
        (nc as unknown as { protocol: { linesFromSlab?: true } }).protocol.linesFromSlab,
        true,
      );
      const got: string[] = [];
      const sub = nc.subscribe("lw.>", {
        callback: (_err, msg) => {
          got.push(`${msg.subject} ${msg.string()} ${msg.reply ?? ""}`);
        },
      });
      const sent: string[] = [];
      for (let i = 0; i < 3000; i++) {
        // subjects and replies of every length, so lines straddle the slabs' ends
        const subject = i % 3 === 0 ? `lw.ü€.${i}` : `lw.t.${"x".repeat(1 + i % 97)}.${i}`;
        const reply = i % 2 === 0 ? `_INBOX.r${i}` : undefined;
        nc.publish(subject, `payload ${i}`, reply ? { reply } : undefined);
        sent.push(`${subject} payload ${i} ${reply ?? ""}`);
      }
      await nc.flush();
      for (let t = 0; t < 100 && got.length < sent.length; t++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      sub.unsubscribe();
      assert.deepEqual(got, sent);
    } finally {
      await nc.close();
      await server.stop();
      await Deno.remove(server.storeDir, { recursive: true }).catch(() => {});
    }
  });
}

Deno.test("encodeLinesFromSlab: a client without the internals is left as it is; a wrapped one is not wrapped twice", () => {
  assert.equal(encodeLinesFromSlab({} as NatsConnection), false);
  assert.equal(encodeLinesFromSlab({ protocol: {} } as unknown as NatsConnection), false);
  const lines: Uint8Array[] = [];
  const protocol = { sendCommand: (cmd: string | Uint8Array) => lines.push(cmd as Uint8Array) };
  const nc = { protocol } as unknown as NatsConnection;
  assert.equal(encodeLinesFromSlab(nc), true);
  const wrapped = protocol.sendCommand;
  assert.equal(encodeLinesFromSlab(nc), true);
  assert.equal(protocol.sendCommand, wrapped);
  protocol.sendCommand("PUB a 1\r\n");
  const bytes = new Uint8Array([1, 2]);
  protocol.sendCommand(bytes);
  assert.deepEqual(lines[0], new TextEncoder().encode("PUB a 1\r\n"));
  assert.equal(lines[1], bytes); // bytes pass through as they are
});
