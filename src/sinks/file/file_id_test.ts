/**
 * Every record the file sink writes carries the alert id where its format
 * keeps an event id (native `id`, ECS `event.id`, OCSF `metadata.uid`), so a
 * reader can drop the second copy of an alert delivered twice.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ALERT, MINIMAL } from "../../core/render/test_alert.ts";
import { Logger } from "../../shared/log.ts";
import { loadOcsfSchema } from "../../../tests/helpers/ocsf_schema.ts";
import { formatIssues, validateOcsf } from "../../../tests/helpers/ocsf_validator.ts";
import type { JsonFormat } from "../formats.ts";
import { FileSink } from "./sink.ts";

const log = new Logger({ quiet: true, write: () => {} });
const OCSF = await loadOcsfSchema(new URL("../../../tests/testdata/ocsf-1.3.0/", import.meta.url));

/** Where each format keeps the event id (read by hand, not by the renderers). */
const ID_OF: Record<JsonFormat, (record: Record<string, unknown>) => unknown> = {
  json: (r) => r["id"],
  ecs: (r) => (r["event"] as Record<string, unknown>)["id"],
  ocsf: (r) => (r["metadata"] as Record<string, unknown>)["uid"],
};

Deno.test("FileSink: each record carries the alert id; an alert delivered twice, twice with the same id", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lw-file-id-" });
  try {
    for (const format of ["json", "ecs", "ocsf"] as const) {
      const path = join(dir, `${format}.jsonl`);
      const sink = new FileSink({ path, format, maxQueue: 10, timeoutMs: 2000, fsync: "never" }, {
        log,
      });
      await sink.start();
      // ALERT twice: the same alert raised again (a trace replayed into the monitor a second time)
      sink.submit(ALERT);
      sink.submit(MINIMAL);
      sink.submit(ALERT);
      assert.equal(await sink.drain(2000), 0);
      await sink.close();
      const records = (await Deno.readTextFile(path)).trimEnd().split("\n").map((l) =>
        JSON.parse(l)
      );
      assert.deepEqual(records.map(ID_OF[format]), [ALERT.id, MINIMAL.id, ALERT.id], format);
      if (format === "ocsf") {
        for (const r of records) {
          const report = validateOcsf(OCSF, r);
          assert.ok(report.valid, formatIssues(report.errors));
        }
        // the validator knows metadata.uid: a record without it is still valid, with a wrong type not
        const broken = structuredClone(records[0]);
        broken.metadata.uid = 42;
        assert.equal(validateOcsf(OCSF, broken).valid, false);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
