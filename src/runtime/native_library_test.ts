import assert from "node:assert/strict";
import {
  buildNativeKernels,
  missingCpuFlags,
  type NativeKernelsStatus,
  nativeKernelsStatus,
} from "./native_library.ts";
import { evalWithoutCompiler } from "./testdata/no_compiler.ts";

/** The tests below need a CPU the kernels run on. */
const ignore = missingCpuFlags().length > 0;

Deno.test({
  name: "native kernels load on a CPU with AVX-512 VNNI (the test command installs a C compiler)",
  ignore,
  async fn() {
    const status = await nativeKernelsStatus();
    if (!status.available) assert.fail(status.reason);
    assert.match(status.library, /kernels-[0-9a-f]{16}\.so$/);
  },
});

/**
 * In a fresh process with no compiler (`CC` names none, unless `cc` is
 * given) and `cache` as the kernels' folder: the status, and what opening
 * the product says.
 */
async function withoutCompiler(
  cache: string,
  cc = "/nonexistent/cc",
): Promise<{ s: NativeKernelsStatus; opened: string }> {
  const code = `
    import { nativeKernelsStatus, openNativeInt8, NativeKernelsUnavailableError } from
      ${JSON.stringify(new URL("./native_kernels.ts", import.meta.url).href)};
    const s = await nativeKernelsStatus();
    let opened = "opened";
    try { await openNativeInt8(new Int8Array(4), 2, 2); }
    catch (e) { opened = (e instanceof NativeKernelsUnavailableError ? "unavailable: " : "other: ") + e.message; }
    console.log(JSON.stringify({ s, opened }));`;
  return await evalWithoutCompiler(code, cache, cc);
}

Deno.test({
  name: "native kernels: without a compiler the status says so, and opening names the reason",
  ignore,
  async fn() {
    const cache = await Deno.makeTempDir();
    try {
      const { s, opened } = await withoutCompiler(cache);
      assert.equal(s.available, false);
      assert.match(
        s.available ? "" : s.reason,
        /needs? a C compiler: cannot run `\/nonexistent\/cc`/,
      );
      assert.match(opened, /^unavailable: .*\/nonexistent\/cc/);
    } finally {
      await Deno.remove(cache, { recursive: true });
    }
  },
});

Deno.test({
  name: "native kernels built into a folder load from it on a machine without a compiler",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const built = await buildNativeKernels(dir);
      assert.ok(built.startsWith(dir + "/") && (await Deno.stat(built)).isFile);
      // the same process twice: once with the folder, once without it
      const { s, opened } = await withoutCompiler(dir);
      assert.deepEqual(s, { available: true, library: built });
      assert.equal(opened, "opened");
      const empty = await Deno.makeTempDir();
      try {
        const without = await withoutCompiler(empty);
        assert.equal(without.s.available, false);
      } finally {
        await Deno.remove(empty, { recursive: true });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "native kernels: a damaged library at the cached name is built again, once",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const built = await buildNativeKernels(dir);
      await Deno.writeTextFile(built, "not a library"); // a copy cut short
      const { s, opened } = await withoutCompiler(dir, Deno.env.get("CC") ?? "cc");
      assert.deepEqual(s, { available: true, library: built });
      assert.equal(opened, "opened");
      assert.ok((await Deno.stat(built)).size > 1000, "the library was written again");
      // without a compiler it cannot be rebuilt: unavailable, saying why
      await Deno.writeTextFile(built, "not a library");
      const again = await withoutCompiler(dir);
      assert.equal(again.s.available, false);
      assert.match(again.s.available ? "" : again.s.reason, /C compiler/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
