import assert from "node:assert/strict";
import { crc32, readZip, writeZip, ZipError } from "./zip.ts";
import { readNpz, writeNpz } from "./npz.ts";
import { NpyError } from "./npy.ts";
import { runPython } from "./testdata/python.ts";

const enc = new TextEncoder();

let fixtures: Promise<string> | undefined;
/** CPython-written archives, made once per test run. */
function pythonZips(): Promise<string> {
  fixtures ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "latentwatch-zip-" });
    await runPython("zip_fixtures.py", [dir]);
    return dir;
  })();
  return fixtures;
}

Deno.test("crc32 matches the IEEE check value", () => {
  assert.equal(crc32(enc.encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array()), 0);
});

Deno.test("readZip reads deflated and stored entries CPython's zipfile wrote", async () => {
  const dir = await pythonZips();
  const bytes = await Deno.readFile(`${dir}/deflated.zip`);
  const zip = readZip(bytes, "deflated.zip");
  assert.deepEqual([...zip.entries.keys()], ["hello.txt", "dir/", "dir/stored.bin"]);
  assert.equal(zip.entries.get("hello.txt")!.method, 8);
  assert.equal(new TextDecoder().decode(await zip.read("hello.txt")), "latentwatch ".repeat(500));
  const stored = await zip.read("dir/stored.bin");
  assert.deepEqual([...stored], [...Array(256).keys()]);
  // Stored entries are views into the archive, not copies.
  assert.equal(stored.buffer, bytes.buffer);
});

Deno.test("readZip follows the zip64 end record and zip64 local extra fields", async () => {
  const dir = await pythonZips();
  const zip = readZip(await Deno.readFile(`${dir}/zip64.zip`), "zip64.zip");
  assert.equal(zip.entries.size, 70001);
  const big = await zip.read("big.bin");
  assert.equal(big.byteLength, 4000);
  assert.deepEqual([...big.subarray(0, 8)], [1, 2, 3, 4, 1, 2, 3, 4]);
  assert.equal((await zip.read("e/69999")).byteLength, 0);
});

Deno.test("readNpz reads numpy.savez_compressed-style members without the .npy suffix", async () => {
  const dir = await pythonZips();
  const npz = await readNpz(await Deno.readFile(`${dir}/compressed.npz`), "compressed.npz");
  assert.deepEqual([...npz.keys()], ["W_enc", "threshold"]);
  assert.deepEqual(npz.get("W_enc")!.shape, [2, 3]);
  assert.deepEqual([...npz.get("W_enc")!.data], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...npz.get("threshold")!.data], [0.5, -1, 2.25]);
});

Deno.test("writeNpz round-trips through readNpz", async () => {
  const bytes = writeNpz({
    W_dec: { data: new Float32Array([1, -2, 3.5, 4, 5, 6]), shape: [3, 2] },
    b_enc: { data: new Float32Array([0.25, 0.5, 0.75]), shape: [3] },
  });
  const npz = await readNpz(bytes, "mem.npz");
  assert.deepEqual(npz.get("W_dec")!.shape, [3, 2]);
  assert.deepEqual([...npz.get("W_dec")!.data], [1, -2, 3.5, 4, 5, 6]);
  assert.deepEqual([...npz.get("b_enc")!.data], [0.25, 0.5, 0.75]);
});

Deno.test("writeNpz output is readable by CPython's zipfile", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/w.npz`;
  await Deno.writeFile(path, writeNpz({ a: { data: new Float32Array([1, 2]), shape: [2] } }));
  const cmd = new Deno.Command("python3", {
    args: [
      "-c",
      `import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(z.namelist())`,
      path,
    ],
  });
  const out = await cmd.output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "['a.npy']");
});

Deno.test("readZip names the file when it is not a ZIP or is truncated", () => {
  assert.throws(() => readZip(enc.encode("not a zip at all, just text"), "x.pt"), (e) => {
    assert.ok(e instanceof ZipError);
    assert.match(e.message, /^x\.pt: not a ZIP archive/);
    return true;
  });
  const zip = writeZip({ "a.npy": new Uint8Array(100) });
  assert.throws(() => readZip(zip.subarray(0, 60), "cut.npz"), /cut\.npz: truncated ZIP archive/);
  assert.throws(() => readZip(new Uint8Array(), "empty.npz"), /empty\.npz: not a ZIP archive/);
});

Deno.test("readZip reports a directory that points past the end of the file", () => {
  const zip = writeZip({ "a.npy": new Uint8Array(100) });
  // Keep the end record but drop the bytes before it: the directory offset
  // now points beyond the file.
  const eocd = zip.subarray(zip.length - 22);
  const cut = new Uint8Array(50 + 22);
  cut.set(eocd, 50);
  assert.throws(
    () => readZip(cut, "short.npz"),
    /short\.npz: truncated ZIP archive: the central directory/,
  );
});

Deno.test("readZip detects a CRC mismatch and names the entry", async () => {
  const zip = writeZip({ "W_enc.npy": new Uint8Array([1, 2, 3, 4, 5]) });
  zip[30 + "W_enc.npy".length + 2] ^= 0xff; // flip a data byte
  const archive = readZip(zip, "params.npz");
  await assert.rejects(() => archive.read("W_enc.npy"), (e) => {
    assert.ok(e instanceof ZipError);
    assert.match(
      e.message,
      /params\.npz: corrupt ZIP entry W_enc\.npy: CRC-32 mismatch, expected 0x[0-9a-f]{8}, found 0x[0-9a-f]{8}/,
    );
    return true;
  });
});

Deno.test("readZip reports a corrupt deflate stream and a missing entry", async () => {
  const dir = await pythonZips();
  const bytes = new Uint8Array(await Deno.readFile(`${dir}/deflated.zip`));
  const zip = readZip(bytes, "d.zip");
  const e = zip.entries.get("hello.txt")!;
  // Overwrite the deflate data with garbage.
  const start = e.localOffset + 30 + "hello.txt".length;
  bytes.fill(0xff, start, start + e.compressedSize);
  await assert.rejects(() => zip.read("hello.txt"), /d\.zip: corrupt ZIP entry hello\.txt/);
  await assert.rejects(
    () => zip.read("nope"),
    /d\.zip: no entry "nope" in the archive; it holds hello\.txt/,
  );
});

Deno.test("readNpz names the member whose .npy is bad", async () => {
  const bytes = writeZip({ "W_enc.npy": enc.encode("garbage") });
  await assert.rejects(() => readNpz(bytes, "params.npz"), (e) => {
    assert.ok(e instanceof NpyError);
    assert.match(e.message, /params\.npz\[W_enc\]: not a \.npy file/);
    return true;
  });
});
