"""NumPy baseline for `deno task bench`: the SAE encode as SAELens computes it
(x - b_dec, @ W_enc + b_enc, then the activation), timed on this machine in
the same run as latentwatch. Reads a JSON job on stdin, prints JSON results.

Job: {"cases": [{"name", "architecture", "weights", "k", "batch"}], "seconds": s,
      "warmup_seconds": w, "matmul": [[m, k, n], ...]}
where "weights" is a folder of .npy files written by the bench (W_enc, b_enc,
b_dec, threshold, x): the very weights and inputs latentwatch encodes. bf16
SAEs arrive already widened to f32 (the bf16-rounded values), and are
computed in f32, as SAELens does on CPU after `.float()`.

"matmul" (optional): time a plain f32 GEMM of each [m, k] @ [k, n] for the
machine's matmul peak (same threads as the encode: OpenBLAS's default).

Every report carries "blas": the BLAS library NumPy loaded and the kernel it
chose at run time ({"library", "version", "corename", "threads", "source"}),
asked of the library itself (threadpoolctl when installed, otherwise
OpenBLAS's own `openblas_get_corename` through ctypes on the shared library
this process mapped), so a run records whether OpenBLAS picked e.g. its
AVX2 `Haswell` or its AVX-512 `SkylakeX` kernels.
"""
import ctypes
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


def blas_runtime():
    """The BLAS NumPy loaded, and the kernel (core) it runs, asked at run time."""
    np.ones((2, 2), dtype=np.float32) @ np.ones((2, 2), dtype=np.float32)  # load BLAS
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if info.get("user_api") == "blas":
                return {
                    "library": info.get("internal_api"),
                    "version": info.get("version"),
                    "corename": info.get("architecture"),
                    "threads": info.get("num_threads"),
                    "source": "threadpoolctl",
                }
    except ImportError:
        pass
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({ln.split()[-1] for ln in maps if "blas" in ln.lower()})
    except OSError:
        paths = []
    for path in paths:
        lib = ctypes.CDLL(path)
        # scipy-openblas (NumPy's wheels) prefixes and suffixes its symbols
        for prefix, suffix in (("scipy_openblas_", "64_"), ("scipy_openblas_", ""), ("openblas_", "")):
            corename = getattr(lib, f"{prefix}get_corename{suffix}", None)
            if corename is None:
                continue
            corename.restype = ctypes.c_char_p
            config = getattr(lib, f"{prefix}get_config{suffix}")
            config.restype = ctypes.c_char_p
            threads = getattr(lib, f"{prefix}get_num_threads{suffix}")
            threads.restype = ctypes.c_int
            words = config().decode().split()
            return {
                "library": "openblas",
                "version": words[1] if len(words) > 1 else None,
                "corename": corename().decode(),
                "threads": int(threads()),
                "source": f"{path.rsplit('/', 1)[-1]}: {prefix}get_corename{suffix}",
            }
    # another BLAS (e.g. the reference libblas): named by its file, no kernel to report
    library = paths[0].rsplit("/", 1)[-1] if paths else None
    return {"library": library, "version": None, "corename": None, "threads": None, "source": None}


def timed(fn, seconds, warmup_seconds=0.0):
    """Latencies of `fn` over at least `seconds` and 5 calls, after at least
    3 calls and `warmup_seconds` of warm-up (the same rule as the bench's
    TypeScript side, in --quick and full runs alike)."""
    t_warm = time.perf_counter() + warmup_seconds
    calls = 0
    while calls < 3 or time.perf_counter() < t_warm:
        fn()
        calls += 1
    lat = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(lat) < 5:
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
    return np.array(lat)


def matmul_peak(shapes, seconds, warmup):
    out = []
    rng = np.random.default_rng(1)
    for m, k, n in shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        lat = timed(lambda: np.matmul(a, b, out=c), seconds, warmup)
        out.append({"shape": [m, k, n], "gflops": 2 * m * k * n * len(lat) / lat.sum() / 1e9})
    return out


def main():
    job = json.load(sys.stdin)
    weights = {}
    results = []
    cases = job.get("cases", [])
    primed = set()
    for case in cases:
        folder = case["weights"]
        if folder not in weights:
            load = lambda name: np.load(f"{folder}/{name}.npy")  # noqa: E731
            threshold = load("threshold") if case["architecture"] == "jumprelu" else None
            weights = {folder: (load("W_enc"), load("b_enc"), load("b_dec"), threshold, load("x"))}
        w_enc, b_enc, b_dec, threshold, x_all = weights[folder]
        x = x_all[: case["batch"]]
        arch, k = case["architecture"], case.get("k", 0)
        if folder not in primed:
            # OpenBLAS runs at its best only when the process's first GEMMs are large: measured
            # here, a process that starts with batch 1 or 16 then runs batch 128 at less than
            # half speed (2,444 against 5,679 tokens/s) and batch 1 at about half (409–500
            # against 742–908), whatever comes later. So every weight set is first run untimed
            # at the largest batch asked for.
            primed.add(folder)
            largest = max(c["batch"] for c in cases if c["weights"] == folder)
            for _ in range(3):
                encode(x_all[:largest], w_enc, b_enc, b_dec, arch, k, threshold)
        lat = timed(
            lambda: encode(x, w_enc, b_enc, b_dec, arch, k, threshold),
            job["seconds"],
            job.get("warmup_seconds", 0.0),
        )
        results.append({
            "name": case["name"],
            "tokens_per_s": case["batch"] * len(lat) / lat.sum(),
            "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3),
        })
    report = {"numpy": np.__version__, "blas": blas_runtime(), "results": results}
    if job.get("matmul"):
        report["matmul"] = matmul_peak(job["matmul"], job["seconds"], job.get("warmup_seconds", 0.0))
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
