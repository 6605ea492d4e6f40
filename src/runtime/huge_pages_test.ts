import assert from "node:assert/strict";
import {
  adviseHugePages,
  collapseHugePages,
  hugeBytesAround,
  hugePageAdvice,
  hugePageBytes,
  kernelCanCollapse,
  transparentHugePageMode,
} from "./huge_pages.ts";

const mode = transparentHugePageMode();
const page = hugePageBytes();
const canCollapse = kernelCanCollapse();

/**
 * `bytes` of memory the process has never touched: WebAssembly memory is a fresh mapping every
 * time, where a large typed array may come from heap memory that the allocator reused and zeroed
 * (once a test before has freed one), already on small pages before any advice.
 */
function untouched(bytes: number): Uint8Array {
  const memory = new WebAssembly.Memory({ initial: Math.ceil(bytes / 65536) });
  return new Uint8Array(memory.buffer, 0, bytes);
}

// first in the file: before any test here advises memory that a later allocation could reuse
Deno.test({
  name:
    "huge pages: on a madvise-mode host, an array nobody advised stays on small pages (control)",
  ignore: mode !== "madvise",
  fn() {
    const a = untouched(8 * page).fill(1);
    assert.equal(hugeBytesAround(a), 0);
  },
});

Deno.test({
  name: "adviseHugePages: an array advised before it is written lies on huge pages",
  ignore: mode === null || mode === "never",
  fn() {
    const pages = 8;
    const a = untouched(pages * page);
    const before = hugePageAdvice();
    const advised = adviseHugePages(a);
    // the whole huge pages inside it: 7, or 8 where the array starts on one
    assert.ok(advised >= (pages - 1) * page, `advised ${advised}`);
    assert.equal(advised % page, 0);
    assert.deepEqual(hugePageAdvice(), {
      ...before,
      arrays: before.arrays + 1,
      bytes: before.bytes + advised,
    });
    a.fill(1);
    const huge = hugeBytesAround(a);
    // the kernel may fall short of free 2 MiB blocks now and then; most must be huge
    assert.ok(huge >= advised / 2, `${huge} of ${advised} advised bytes on huge pages (${mode})`);
  },
});

Deno.test({
  name: "collapseHugePages: an array written before any advice is collapsed into huge pages",
  ignore: !canCollapse || mode === null || mode === "never",
  fn() {
    const a = new Uint8Array(8 * page);
    a.fill(3); // heap or fresh, touched now: small pages on a madvise-mode host
    const collapsed = collapseHugePages(a);
    assert.ok(collapsed >= 7 * page, `collapsed ${collapsed}`);
    assert.ok(hugeBytesAround(a) >= collapsed / 2, `${hugeBytesAround(a)} of ${collapsed}`);
    assert.ok(a.every((v) => v === 3), "the contents survive the collapse");
  },
});

Deno.test("huge pages: an array with no whole huge page inside is left alone", () => {
  assert.equal(adviseHugePages(new Uint8Array(page - 4096)), 0);
  assert.equal(collapseHugePages(new Uint8Array(page - 4096)), 0);
  assert.equal(adviseHugePages(new Float32Array(0)), 0);
});

Deno.test({
  name: "hugePageBytes: the kernel's huge page size",
  ignore: Deno.build.os !== "linux" || mode === null,
  fn() {
    const said = Deno.readTextFileSync("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
    assert.equal(page, Number(said.trim()));
  },
});
