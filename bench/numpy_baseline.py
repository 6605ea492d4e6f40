"""NumPy baseline for `deno task bench`: the SAE encode as SAELens computes it
(x - b_dec, @ W_enc + b_enc, then the activation), timed on this machine in
the same run as latentwatch. Reads a JSON job on stdin, prints JSON results.

Job: {"cases": [{"name", "architecture", "weights", "k", "batch"}], "seconds": s,
      "matmul": [[m, k, n], ...]}
where "weights" is a folder of .npy files written by the bench (W_enc, b_enc,
b_dec, threshold, x): the very weights and inputs latentwatch encodes. bf16
SAEs arrive already widened to f32 (the bf16-rounded values), and are
computed in f32, as SAELens does on CPU after `.float()`.

"matmul" (optional): time a plain f32 GEMM of each [m, k] @ [k, n] for the
machine's matmul peak (same threads as the encode: OpenBLAS's default).
"""
import json
import sys
import time

import numpy as np


def encode(x, w_enc, b_enc, b_dec, arch, k, threshold):
    h = (x - b_dec) @ w_enc + b_enc
    if arch == "jumprelu":
        return np.maximum(h, 0) * (h > threshold)
    if arch == "topk":
        # SAELens TopK: torch.topk, relu of the values, scattered into zeros
        idx = np.argpartition(h, -k, axis=-1)[:, -k:]
        vals = np.maximum(np.take_along_axis(h, idx, axis=-1), 0)
        out = np.zeros_like(h)
        np.put_along_axis(out, idx, vals, axis=-1)
        return out
    return np.maximum(h, 0)


def timed(fn, seconds):
    for _ in range(3):
        fn()
    lat = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(lat) < 5:
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
    return np.array(lat)


def matmul_peak(shapes, seconds):
    out = []
    rng = np.random.default_rng(1)
    for m, k, n in shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        lat = timed(lambda: np.matmul(a, b, out=c), seconds)
        out.append({"shape": [m, k, n], "gflops": 2 * m * k * n * len(lat) / lat.sum() / 1e9})
    return out


def main():
    job = json.load(sys.stdin)
    weights = {}
    results = []
    for case in job.get("cases", []):
        folder = case["weights"]
        if folder not in weights:
            load = lambda name: np.load(f"{folder}/{name}.npy")  # noqa: E731
            threshold = load("threshold") if case["architecture"] == "jumprelu" else None
            weights = {folder: (load("W_enc"), load("b_enc"), load("b_dec"), threshold, load("x"))}
        w_enc, b_enc, b_dec, threshold, x_all = weights[folder]
        x = x_all[: case["batch"]]
        arch, k = case["architecture"], case.get("k", 0)
        lat = timed(lambda: encode(x, w_enc, b_enc, b_dec, arch, k, threshold), job["seconds"])
        results.append({
            "name": case["name"],
            "tokens_per_s": case["batch"] * len(lat) / lat.sum(),
            "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3),
        })
    report = {"numpy": np.__version__, "results": results}
    if job.get("matmul"):
        report["matmul"] = matmul_peak(job["matmul"], job["seconds"])
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
