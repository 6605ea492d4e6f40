import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import {
  ALLOWED_GLOBALS,
  isTorchTensor,
  loadTorchCheckpoint,
  readTorchCheckpoint,
  TorchCheckpointError,
  TorchPickleRefusedError,
  type TorchTensor,
} from "./torch_pickle.ts";
import { torchFixtureDir } from "./testdata/python.ts";
import { readZip, writeZip } from "./zip.ts";

function tensor(v: unknown): TorchTensor {
  assert.ok(isTorchTensor(v as never), `expected a tensor, found ${v}`);
  return v as TorchTensor;
}

Deno.test("reads a torch.save state dict: tensors, ints, strings, nested dicts", async () => {
  const dir = await torchFixtureDir();
  const sd = await loadTorchCheckpoint(`${dir}/openai_topk/6.pt`);
  assert.deepEqual([...sd.keys()], [
    "pre_bias",
    "latent_bias",
    "stats_last_nonzero",
    "latents_activation_frequency",
    "latents_mean_square",
    "encoder.weight",
    "decoder.weight",
    "activation",
    "activation_state_dict",
  ]);
  const enc = tensor(sd.get("encoder.weight"));
  assert.equal(enc.dtype, "float32");
  assert.deepEqual(enc.shape, [5, 3]);
  assert.equal(enc.data[0], Math.fround(0.37));
  assert.deepEqual([...tensor(sd.get("stats_last_nonzero")).data], [0, 3, 12, 7, 100000]);
  assert.equal(sd.get("activation"), "TopK");
  assert.deepEqual(
    sd.get("activation_state_dict"),
    new Map<string, unknown>([["k", 2], ["postact_fn", "ReLU"]]),
  );
});

Deno.test("f32 storages 64-byte aligned in the archive are read without a copy", async () => {
  const dir = await torchFixtureDir();
  const bytes = await Deno.readFile(`${dir}/openai_topk/6.pt`);
  const sd = await readTorchCheckpoint(bytes, "6.pt");
  assert.equal(tensor(sd.get("encoder.weight")).data.buffer, bytes.buffer);
});

Deno.test("dtypes widen to f32; shared storages, offsets, 0-d, empty and Parameter tensors", async () => {
  const dir = await torchFixtureDir();
  const sd = await loadTorchCheckpoint(`${dir}/odd/mixed.pt`);
  assert.deepEqual([...tensor(sd.get("a")).data], [0, 1, 2, 3]);
  assert.deepEqual(tensor(sd.get("b")).shape, [3]);
  assert.deepEqual([...tensor(sd.get("b")).data], [7, 8, 9]); // storage offset 7
  assert.deepEqual([...tensor(sd.get("half")).data], [1, -0.5, 65504]);
  assert.equal(tensor(sd.get("half")).dtype, "float16");
  // bf16(0.1) rounds to nearest even: 0x3dcd = 0.10009765625
  assert.deepEqual([...tensor(sd.get("bf16")).data], [1, -2.5, 0.10009765625]);
  assert.deepEqual([...tensor(sd.get("f64")).data], [Math.fround(0.1), Math.fround(1e-3)]);
  assert.deepEqual([...tensor(sd.get("i64")).data], [-3, 2 ** 40]);
  const i32 = tensor(sd.get("i32"));
  assert.deepEqual([i32.shape, [...i32.data]], [[], [7]]);
  assert.deepEqual(tensor(sd.get("scalar")).shape, []);
  assert.deepEqual(tensor(sd.get("empty")).shape, [0, 3]);
  assert.deepEqual([...tensor(sd.get("param")).data], [4, 5]);
  const meta = sd.get("meta") as Map<string, unknown>;
  assert.deepEqual(Object.fromEntries(meta), {
    n: 3,
    big: 2 ** 40,
    neg: -70000,
    x: 0.25,
    s: "héllo",
    t: true,
    f: false,
    none: null,
    list: [1, [2, 3]],
    tuple: [1, "a"],
    "5": "int key",
  });
});

for (
  const [file, asked] of [
    ["os_system.pt", /asks for the global posix\.system/],
    ["eval.pt", /asks for the global __builtin__\.eval/],
    ["stack_global.pt", /asks for the global builtins\.exec/],
    ["newobj.pt", /asks for the pickle opcode NEWOBJ/],
    ["inst.pt", /asks for the pickle opcode INST/],
  ] as const
) {
  Deno.test(`a malicious pickle (${file}) is refused before anything runs`, async () => {
    const dir = await torchFixtureDir();
    const marker = JSON.parse(await Deno.readTextFile(`${dir}/expected.json`)).evil_marker;
    await assert.rejects(() => loadTorchCheckpoint(`${dir}/evil/${file}`), (e) => {
      assert.ok(e instanceof TorchPickleRefusedError, String(e));
      assert.match(e.message, asked);
      assert.match(e.message, /nothing from the file was executed/);
      assert.ok(e.message.includes(`${dir}/evil/${file}`));
      return true;
    });
    assert.equal(existsSync(marker), false);
  });
}

Deno.test("the allow-list names only tensor, storage, dtype and OrderedDict globals", () => {
  for (const g of ALLOWED_GLOBALS) {
    assert.match(
      g,
      /^(collections\.OrderedDict|torch\._utils\._rebuild_(tensor_v2|parameter)|torch\.(storage\.)?\w+)$/,
    );
  }
});

Deno.test("a non-contiguous tensor is refused with a hint to call .contiguous()", async () => {
  const dir = await torchFixtureDir();
  await assert.rejects(
    () => loadTorchCheckpoint(`${dir}/odd/noncontig.pt`),
    /size \(4,3\) has stride \(1,4\), expected the contiguous stride; re-save it with tensor\.contiguous\(\)/,
  );
});

Deno.test("legacy, big-endian, damaged and non-zip files give clear errors", async () => {
  const dir = await torchFixtureDir();
  await assert.rejects(
    () => loadTorchCheckpoint(`${dir}/odd/legacy.pt`),
    /legacy \(pre-1\.6, non-zip\) torch\.save file.*Re-save it with torch >= 1\.6/,
  );
  await assert.rejects(
    () => loadTorchCheckpoint(`${dir}/odd/bigendian.pt`),
    /byteorder is "big", expected "little"/,
  );
  // No byteorder record (torch < 1.10 omitted it): little-endian is assumed.
  const old = await loadTorchCheckpoint(`${dir}/odd/nobyteorder.pt`);
  assert.deepEqual([...tensor(old.get("w")).data], [1]);
  await assert.rejects(
    () => loadTorchCheckpoint(`${dir}/odd/missing_storage.pt`),
    /references storage 0, but the archive has no entry archive\/data\/0/,
  );
  await assert.rejects(
    () => loadTorchCheckpoint(`${dir}/odd/short_storage.pt`),
    /elements 0\.\.3 of size \(3\) run past storage 0, which holds 2/,
  );
  await assert.rejects(
    () => readTorchCheckpoint(new TextEncoder().encode("hello"), "x.pt"),
    (e) =>
      e instanceof TorchCheckpointError && /x\.pt: not a PyTorch zip checkpoint/.test(e.message),
  );
  await assert.rejects(
    () => loadTorchCheckpoint(`${dir}/nope.pt`),
    /nope\.pt: cannot read the checkpoint/,
  );
});

Deno.test("a truncated or bit-flipped checkpoint names the file and entry", async () => {
  const dir = await torchFixtureDir();
  const bytes = await Deno.readFile(`${dir}/openai_relu/5.pt`);
  await assert.rejects(
    () => readTorchCheckpoint(bytes.subarray(0, bytes.length - 200), "cut.pt"),
    (e) => e instanceof TorchCheckpointError && /cut\.pt: truncated ZIP archive/.test(e.message),
  );
  const flipped = bytes.slice();
  const entry = readZip(bytes, "5.pt").entries.get("5/data/3")!;
  const local = new DataView(bytes.buffer, bytes.byteOffset + entry.localOffset);
  flipped[entry.localOffset + 30 + local.getUint16(26, true) + local.getUint16(28, true)] ^= 0x40;
  await assert.rejects(
    () => readTorchCheckpoint(flipped, "flip.pt"),
    /flip\.pt: corrupt ZIP entry 5\/data\/3: CRC-32 mismatch/,
  );
});

Deno.test("corrupt pickles: truncated stream, bad memo, top level not a dict", async () => {
  const arc = (pkl: number[]) => writeZip({ "a/data.pkl": new Uint8Array(pkl) });
  await assert.rejects(
    () => readTorchCheckpoint(arc([0x80, 0x02, 0x7d]), "t.pt"),
    /t\.pt: data\.pkl byte 3: corrupt pickle: ran out of bytes before STOP/,
  );
  await assert.rejects(
    () => readTorchCheckpoint(arc([0x80, 0x02, 0x68, 0x05, 0x2e]), "m.pt"),
    /memo slot 5 was never written/,
  );
  await assert.rejects(
    () => readTorchCheckpoint(arc([0x80, 0x02, 0x4b, 0x07, 0x2e]), "i.pt"),
    /expected the checkpoint to hold a dict \(a state dict\), found number/,
  );
  await assert.rejects(
    () => readTorchCheckpoint(arc([0x80, 0x02, 0xff, 0x2e]), "u.pt"),
    /unknown pickle opcode 0xff/,
  );
  await assert.rejects(
    () => readTorchCheckpoint(writeZip({ "a/other": new Uint8Array(1) }), "n.pt"),
    /n\.pt: expected a <prefix>\/data\.pkl entry/,
  );
});
