import assert from "node:assert/strict";
import { join } from "node:path";
import { randomSae } from "./random_sae.ts";
import {
  attachLabels,
  findLabelsNextTo,
  LabelFormatError,
  loadNeuronpediaLabels,
  readNeuronpediaExplanations,
} from "./neuronpedia.ts";

async function gzip(text: string): Promise<Uint8Array> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** One row in the exact shape of Neuronpedia's explanations export. */
function row(index: string, description: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    id: `clx${index}${description.length}`,
    modelId: "gpt2-small",
    layer: "8-res-jb",
    index,
    authorId: "neuronpedia",
    description,
    embedding: null,
    typeName: "oai_token-act-pair",
    explanationModelName: "gpt-4o-mini",
    umap_x: null,
    umap_y: null,
    umap_cluster: null,
    umap_log_feature_sparsity: null,
    ...extra,
  });
}

/**
 * An export paged like Neuronpedia's (`ORDER BY index` on a text column,
 * two rows per batch): batch-0 holds "0","1"; batch-1 "10","100"; batch-2
 * "11","2"; batch-10 "3","5" plus a second explanation of "10".
 */
async function writeExport(dir: string): Promise<void> {
  const batches: Record<string, string[]> = {
    "batch-0.jsonl.gz": [row("0", "the letter a"), row("1", "closing brackets")],
    "batch-1.jsonl.gz": [row("10", "French text"), row("100", "dates in May")],
    "batch-2.jsonl.gz": [row("11", "Python keywords"), "", row("2", "legal citations")],
    "batch-10.jsonl.gz": [
      row("3", "numbers"),
      row("5", "Paris"),
      row("10", "French words (second model)", { explanationModelName: "claude" }),
    ],
  };
  await Deno.mkdir(join(dir, "explanations"), { recursive: true });
  for (const [name, lines] of Object.entries(batches)) {
    await Deno.writeFile(join(dir, "explanations", name), await gzip(lines.join("\n") + "\n"));
  }
}

Deno.test("labels: gzipped batches keyed by each row's string index, first explanation kept", async () => {
  const dir = await Deno.makeTempDir({ prefix: "np_labels_" });
  await writeExport(dir);
  for (const path of [dir, join(dir, "explanations")]) {
    const r = await readNeuronpediaExplanations(path, { neuronpediaId: "gpt2-small/8-res-jb" });
    assert.deepEqual(
      [...r.labels].sort((a, b) => a[0] - b[0]),
      [
        [0, "the letter a"],
        [1, "closing brackets"],
        [2, "legal citations"],
        [3, "numbers"],
        [5, "Paris"],
        [10, "French text"], // batch-1 comes before batch-10: its explanation wins
        [11, "Python keywords"],
        [100, "dates in May"],
      ],
    );
    assert.equal(r.rows, 9);
    assert.equal(r.duplicates, 1);
    assert.equal(r.mismatched, 0);
    assert.deepEqual(
      r.files.map((f) => f.slice(f.lastIndexOf("/") + 1)),
      ["batch-0.jsonl.gz", "batch-1.jsonl.gz", "batch-2.jsonl.gz", "batch-10.jsonl.gz"],
    );
  }
  // A single gzipped batch and a plain .jsonl file read the same way.
  const one = await loadNeuronpediaLabels(join(dir, "explanations", "batch-2.jsonl.gz"));
  assert.deepEqual([...one], [[11, "Python keywords"], [2, "legal citations"]]);
  await Deno.writeTextFile(join(dir, "plain.jsonl"), row("7", "seven") + "\n");
  assert.deepEqual([...await loadNeuronpediaLabels(join(dir, "plain.jsonl"))], [[7, "seven"]]);

  assert.equal(await findLabelsNextTo(dir), join(dir, "explanations"));
  await Deno.writeTextFile(join(dir, "cfg.json"), "{}");
  assert.equal(await findLabelsNextTo(join(dir, "cfg.json")), join(dir, "explanations"));
  assert.equal(await findLabelsNextTo(join(dir, "explanations")), null);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("labels: a malformed line is an error naming file:line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "np_labels_" });
  const file = join(dir, "batch-0.jsonl.gz");
  await Deno.writeFile(
    file,
    await gzip([row("0", "a"), row("1", "b"), '{"index": "2", '].join("\n")),
  );
  await assert.rejects(
    () => loadNeuronpediaLabels(file),
    (e: Error) =>
      e instanceof LabelFormatError && /batch-0\.jsonl\.gz:3: .*malformed JSON/.test(e.message),
  );
  await Deno.writeTextFile(
    join(dir, "x.jsonl"),
    `\n${JSON.stringify({ index: -1, description: "" })}`,
  );
  await assert.rejects(
    () => loadNeuronpediaLabels(join(dir, "x.jsonl")),
    /x\.jsonl:2: expected "index" to be a latent index .*found -1/,
  );
  await Deno.writeTextFile(join(dir, "y.jsonl"), JSON.stringify({ index: "4" }));
  await assert.rejects(
    () => loadNeuronpediaLabels(join(dir, "y.jsonl")),
    /y\.jsonl:1: expected "description" to be a string, found nothing/,
  );
  await Deno.writeFile(join(dir, "z.jsonl.gz"), (await gzip(row("0", "a"))).subarray(0, 12));
  await assert.rejects(
    () => loadNeuronpediaLabels(join(dir, "z.jsonl.gz")),
    /corrupt or truncated gzip/,
  );
  await Deno.mkdir(join(dir, "empty"));
  await assert.rejects(() => loadNeuronpediaLabels(join(dir, "empty")), /found none/);
  await assert.rejects(
    () => loadNeuronpediaLabels(join(dir, "absent")),
    /no such explanation export/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("labels: rows of another model/source are counted and left out, never mixed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "np_labels_" });
  const file = join(dir, "mixed.jsonl");
  await Deno.writeTextFile(
    file,
    [row("0", "mine"), row("1", "theirs", { layer: "9-res-jb" }), row("2", "mine too")].join("\n"),
  );
  const warnings: string[] = [];
  const r = await readNeuronpediaExplanations(file, {
    neuronpediaId: "gpt2-small/8-res-jb",
    onWarning: (m) => warnings.push(m),
  });
  assert.deepEqual([...r.labels], [[0, "mine"], [2, "mine too"]]);
  assert.equal(r.mismatched, 1);
  assert.equal(warnings.length, 1);
  assert.match(
    warnings[0],
    /left out 1 of 3 explanations .*gpt2-small\/8-res-jb.*gpt2-small\/9-res-jb/,
  );

  // Without the SAE's id, the first row's source is the export's own.
  const first = await readNeuronpediaExplanations(file);
  assert.equal(first.neuronpediaId, "gpt2-small/8-res-jb");
  assert.equal(first.mismatched, 1);

  await assert.rejects(
    () => loadNeuronpediaLabels(file, { neuronpediaId: "gemma-2-2b/20-gemmascope-res-16k" }),
    /explanations are for gpt2-small\/8-res-jb, gpt2-small\/9-res-jb, expected gemma-2-2b/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("attachLabels keeps the weights and range-checks the indices", () => {
  const sae = randomSae({ architecture: "standard", dIn: 4, dSae: 8, seed: 3 });
  const labelled = attachLabels(sae, new Map([[7, "last"]]));
  assert.equal(labelled.labels?.get(7), "last");
  assert.equal(labelled.wEnc, sae.wEnc);
  assert.equal(sae.labels, undefined);
  assert.throws(
    () => attachLabels(sae, new Map([[8, "too far"]])),
    /labels go up to latent 8, expected indices below d_sae = 8/,
  );
});
