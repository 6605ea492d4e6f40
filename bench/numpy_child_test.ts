import assert from "node:assert/strict";
import { fairNumpyEnv, NumpyChildError, runNumpyChild } from "./numpy_child.ts";

/** OpenBLAS's AVX-512 kernels (its `driver/others/dynamic.c` core names). */
const AVX512_CORES = ["SkylakeX", "Cooperlake", "SapphireRapids"];

async function numpyImports(): Promise<boolean> {
  try {
    const { code } = await new Deno.Command("python3", {
      args: ["-c", "import numpy"],
      stdout: "null",
      stderr: "null",
    }).output();
    return code === 0;
  } catch {
    return false;
  }
}
const hasNumpy = await numpyImports();
if (!hasNumpy) console.error("numpy_child_test: python3 with NumPy not found; child tests skipped");

/** avx512f in /proc/cpuinfo's flags, read here apart from the code under test. */
function cpuHasAvx512f(): boolean {
  try {
    return /^flags\s*:.*\bavx512f\b/m.test(Deno.readTextFileSync("/proc/cpuinfo"));
  } catch {
    return false;
  }
}

Deno.test("fairNumpyEnv drops OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE and nothing else", () => {
  const env = {
    PATH: "/usr/bin",
    OPENBLAS_CORETYPE: "Haswell",
    OPENBLAS_L2_SIZE: "512",
    OPENBLAS_NUM_THREADS: "2",
    HOME: "/root",
  };
  assert.deepEqual(fairNumpyEnv(env), {
    PATH: "/usr/bin",
    OPENBLAS_NUM_THREADS: "2",
    HOME: "/root",
  });
  assert.deepEqual(env.OPENBLAS_CORETYPE, "Haswell", "the caller's object is left alone");
});

Deno.test({
  name: "the child reports OpenBLAS's kernel: Haswell when forced",
  ignore: !hasNumpy,
  fn: async () => {
    const report = await runNumpyChild({
      job: { cases: [], seconds: 0.1 },
      extraEnv: { OPENBLAS_CORETYPE: "Haswell" },
    });
    assert(report.blas, "a blas record");
    if (report.blas.library !== "openblas") return; // another BLAS: no kernel to force
    assert.deepEqual(report.blas.corename, "Haswell");
    assert((report.blas.threads ?? 0) >= 1, `threads ${report.blas.threads}`);
  },
});

Deno.test({
  name: "the child runs without the forcing variables even when this process has them",
  ignore: !hasNumpy,
  fn: async () => {
    const saved = Deno.env.get("OPENBLAS_CORETYPE");
    Deno.env.set("OPENBLAS_CORETYPE", "Haswell");
    try {
      const report = await runNumpyChild({ job: { cases: [], seconds: 0.1 } });
      assert(report.blas, "a blas record");
      if (report.blas.library !== "openblas") return;
      assert(report.blas.corename, "a corename");
      if (cpuHasAvx512f()) {
        assert(
          AVX512_CORES.includes(report.blas.corename),
          `an AVX-512 kernel on an avx512f CPU, found ${report.blas.corename}`,
        );
      }
    } finally {
      if (saved === undefined) Deno.env.delete("OPENBLAS_CORETYPE");
      else Deno.env.set("OPENBLAS_CORETYPE", saved);
    }
  },
});

Deno.test("a missing Python is a NumpyChildError", async () => {
  await assert.rejects(
    () => runNumpyChild({ job: { cases: [] }, python: "/nonexistent/python3" }),
    (err: Error) => err instanceof NumpyChildError && err.message.includes("/nonexistent/python3"),
  );
});

Deno.test({
  name: "a job the script cannot run is a NumpyChildError naming the exit",
  ignore: !hasNumpy,
  fn: async () => {
    const job = {
      seconds: 0.1,
      cases: [{ name: "x", architecture: "relu", weights: "/nonexistent", k: 0, batch: 1 }],
    };
    await assert.rejects(
      () => runNumpyChild({ job }),
      (err: Error) => err instanceof NumpyChildError && /exited with 1/.test(err.message),
    );
  },
});
