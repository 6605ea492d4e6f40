import assert from "node:assert/strict";
import { addressOf, adviseHugePages, HUGE_PAGE_BYTES } from "./huge_pages.ts";

/** The kernel's transparent huge page mode: "always", "madvise" or "never" (null: not Linux). */
function thpMode(): string | null {
  try {
    const text = Deno.readTextFileSync("/sys/kernel/mm/transparent_hugepage/enabled");
    return /\[(\w+)\]/.exec(text)?.[1] ?? null;
  } catch {
    return null;
  }
}

/** Bytes of `view` that /proc/self/smaps shows on huge pages (the mappings inside its range). */
function hugeBytesIn(view: ArrayBufferView): number {
  const start = addressOf(view)!, end = start + BigInt(view.byteLength);
  let inside = false, total = 0;
  for (const line of Deno.readTextFileSync("/proc/self/smaps").split("\n")) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (range) {
      const from = BigInt(`0x${range[1]}`), to = BigInt(`0x${range[2]}`);
      // only mappings wholly inside the array: madvise split them out of the heap's
      inside = from >= start && to <= end;
      continue;
    }
    const huge = /^AnonHugePages:\s+(\d+) kB/.exec(line);
    if (inside && huge) total += Number(huge[1]) * 1024;
  }
  return total;
}

const mode = thpMode();

Deno.test({
  name: "adviseHugePages: an array advised before it is written lies on huge pages",
  ignore: mode === null || mode === "never",
  fn() {
    const pages = 8;
    const a = new Uint8Array(pages * HUGE_PAGE_BYTES);
    const advised = adviseHugePages(a);
    // the whole huge pages inside it: 7, or 8 where the array starts on one
    assert.ok(advised >= (pages - 1) * HUGE_PAGE_BYTES, `advised ${advised}`);
    assert.equal(advised % HUGE_PAGE_BYTES, 0);
    a.fill(1);
    const huge = hugeBytesIn(a);
    // the kernel may fall short of free 2 MiB blocks now and then; most must be huge
    assert.ok(huge >= advised / 2, `${huge} of ${advised} advised bytes on huge pages (${mode})`);
  },
});

Deno.test({
  name: "adviseHugePages: without the advice, a madvise-mode host gives small pages (the control)",
  ignore: mode !== "madvise",
  fn() {
    const a = new Uint8Array(8 * HUGE_PAGE_BYTES);
    a.fill(1);
    // no mapping of its own (nothing split it out), and none of its pages huge
    assert.equal(hugeBytesIn(a), 0);
  },
});

Deno.test("adviseHugePages: an array with no whole huge page inside is left alone", () => {
  assert.equal(adviseHugePages(new Uint8Array(HUGE_PAGE_BYTES - 4096)), 0);
  assert.equal(adviseHugePages(new Float32Array(0)), 0);
});
