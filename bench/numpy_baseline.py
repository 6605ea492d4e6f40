"""NumPy baseline for `deno task bench`: the SAE encode as SAELens computes it
(x - b_dec, @ W_enc + b_enc, then the activation), timed on this machine in
the same run as latentwatch. Reads a JSON job on stdin, prints JSON results.

Job: {"cases": [{"name", "architecture", "weights", "k", "batch"}], "seconds": s}
where "weights" is a folder of .npy files written by the bench (W_enc, b_enc,
b_dec, threshold, x): the very weights and inputs latentwatch encodes.
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
        idx = np.argpartition(h, -k, axis=-1)[:, -k:]
        vals = np.maximum(np.take_along_axis(h, idx, axis=-1), 0)
        out = np.zeros_like(h)
        np.put_along_axis(out, idx, vals, axis=-1)
        return out
    return np.maximum(h, 0)


def main():
    job = json.load(sys.stdin)
    weights = {}
    results = []
    for case in job["cases"]:
        folder = case["weights"]
        if folder not in weights:
            load = lambda name: np.load(f"{folder}/{name}.npy")  # noqa: E731
            threshold = load("threshold") if case["architecture"] == "jumprelu" else None
            weights = {folder: (load("W_enc"), load("b_enc"), load("b_dec"), threshold, load("x"))}
        w_enc, b_enc, b_dec, threshold, x_all = weights[folder]
        x = x_all[: case["batch"]]
        for _ in range(3):
            encode(x, w_enc, b_enc, b_dec, case["architecture"], case.get("k", 0), threshold)
        lat = []
        t_end = time.perf_counter() + job["seconds"]
        while time.perf_counter() < t_end or len(lat) < 5:
            t0 = time.perf_counter()
            encode(x, w_enc, b_enc, b_dec, case["architecture"], case.get("k", 0), threshold)
            lat.append(time.perf_counter() - t0)
        lat = np.array(lat)
        results.append({
            "name": case["name"],
            "tokens_per_s": case["batch"] * len(lat) / lat.sum(),
            "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3),
        })
    json.dump({"numpy": np.__version__, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
