import assert from "node:assert/strict";
import { randomSae } from "../formats/random_sae.ts";
import { cudaAvailability } from "../runtime/cuda_choice.ts";
import { writeSaeLensFolder } from "../formats/saelens_writer.ts";
import { providerWithoutModel } from "../runtime/provider.ts";
import { runLatentwatch } from "../../tests/helpers/cli.ts";
import { providerNoteShown } from "./sae_inspect.ts";

const BRIEF = "auto: no GPU provider started; running on cpu (--verbose: why)";

/** The `provider_note: …` lines of a text `sae inspect`. */
const noteLines = (stdout: string) =>
  stdout.split("\n").filter((l) => l.startsWith("provider_note"));

Deno.test("sae inspect: auto without a GPU says so in one short line; --verbose and a named provider in full", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_inspect_" });
  try {
    await writeSaeLensFolder(
      dir,
      randomSae({ architecture: "standard", dIn: 8, dSae: 16, seed: 3 }),
    );
    const inspect = (...args: string[]) => runLatentwatch(["sae", "inspect", dir, ...args]);

    const auto = await providerWithoutModel("auto");
    if (auto?.provider === "cpu" && auto.providerNote) {
      const full = auto.providerNote;
      assert.match(full, /^auto: .*could not start: .*; running on cpu$/);
      assert.ok(full.length > BRIEF.length, full);

      const plain = await inspect();
      assert.equal(plain.code, 0, plain.stderr);
      assert.deepEqual(noteLines(plain.stdout), [`provider_note: ${BRIEF}`]);
      assert.ok(!plain.stderr.includes("could not start"), plain.stderr);
      const plainJson = await inspect("--json");
      assert.equal(JSON.parse(plainJson.stdout).provider_note, BRIEF);

      const verbose = await inspect("--verbose");
      assert.equal(verbose.code, 0, verbose.stderr);
      assert.deepEqual(noteLines(verbose.stdout), [`provider_note: ${full}`]);
      const verboseJson = await inspect("--verbose", "--json");
      assert.equal(JSON.parse(verboseJson.stdout).provider_note, full);
    } else {
      console.warn("a GPU provider starts here: the note of auto without a GPU is not checked");
    }

    // a provider asked for by name: why it did not start, in full
    for (const named of ["webgpu", "cuda"] as const) {
      const known = await providerWithoutModel(named);
      if (known?.provider !== "cpu") continue; // it starts here: no note
      const r = await inspect("--provider", named, "--json");
      assert.equal(r.code, 0, r.stderr);
      const note: string = JSON.parse(r.stdout).provider_note;
      // cuda: latentwatch's own CUDA encoder is tried first for this (standard) SAE
      const cuda = named === "cuda" ? cudaAvailability() : null;
      if (cuda?.available) continue; // it starts here: no note
      const first = cuda ? "cuda-ffi could not start: .+; cuda" : named;
      assert.match(note, new RegExp(`^${first} could not start: .+; running on cpu$`));
      assert.equal(
        note,
        cuda
          ? `cuda-ffi could not start: ${cuda.reason}; ${known.providerNote}`
          : known.providerNote,
      );
    }

    // --provider cpu: nothing was tried, nothing to say
    const cpu = await inspect("--provider", "cpu");
    assert.deepEqual(noteLines(cpu.stdout), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sae inspect: the note shown for each setting, from a report given by hand", () => {
  const cpuNote =
    "auto: webgpu could not start: no Vulkan; cuda could not start: no CUDA; running on cpu";
  const onCpu = { provider: "cpu", providerFallback: false, providerNote: cpuNote } as const;
  assert.equal(providerNoteShown(onCpu, { provider: "auto", verbose: false }), BRIEF);
  assert.equal(providerNoteShown(onCpu, { provider: "auto", verbose: true }), cpuNote);
  const onCuda = {
    provider: "cuda",
    providerFallback: false,
    providerNote: "webgpu could not start: no Vulkan; running on cuda",
  } as const;
  assert.equal(
    providerNoteShown(onCuda, { provider: "auto", verbose: false }),
    "auto: running on cuda, an earlier GPU provider did not start (--verbose: why)",
  );
  const asked = {
    provider: "cpu",
    providerFallback: true,
    providerNote: "cuda could not start: x; running on cpu",
  } as const;
  assert.equal(providerNoteShown(asked, { provider: "cuda", verbose: false }), asked.providerNote);
  assert.equal(
    providerNoteShown({ provider: "webgpu", providerFallback: false }, {
      provider: "auto",
      verbose: false,
    }),
    undefined,
  );
});
