"""The GPU bench's baseline: the same encode in PyTorch on CUDA (cuBLAS).

Reads the SAE shape and seed-free weights from the .npy files `bench/gpu.ts`
writes, and prints one JSON object: device properties, the f32 peak derived
from them, and for each precision (f32 with TF32 off: the exact one; TF32 and
bf16 for context) the device-resident throughput of `relu(h)·[h > θ]` with
`h = (x − b_dec) @ W_enc + b_enc` at a large batch, and the latency of a
64-token decode step from host memory to the active latents back on the host.

Usage: python3 bench/gpu_torch_baseline.py DIR BATCH
"""

import json
import sys
import time

import numpy as np
import torch


def encode(x, w, b_enc, b_dec, thr):
    h = (x - b_dec) @ w + b_enc
    return torch.where((h > thr) & (h > 0), h, torch.zeros((), dtype=h.dtype, device=h.device))


CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def sync():
    if CUDA:
        torch.cuda.synchronize()


def timed_throughput(x, w, b_enc, b_dec, thr, repeats=20):
    for _ in range(3):
        encode(x, w, b_enc, b_dec, thr)
    sync()
    if not CUDA:
        t0 = time.perf_counter()
        for _ in range(repeats):
            encode(x, w, b_enc, b_dec, thr)
        return x.shape[0] * repeats / (time.perf_counter() - t0)
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        encode(x, w, b_enc, b_dec, thr)
    end.record()
    sync()
    secs = start.elapsed_time(end) / 1000
    return x.shape[0] * repeats / secs


def decode_step_latency(x_host, w, b_enc, b_dec, thr, steps=300):
    times = []
    for i in range(steps + 20):
        t0 = time.perf_counter()
        x = x_host.to(DEVICE, non_blocking=False)
        f = encode(x, w, b_enc, b_dec, thr)
        nz = f.nonzero()
        vals = f[nz[:, 0], nz[:, 1]]
        _ = (nz.cpu(), vals.cpu())
        if i >= 20:
            times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "p50_ms": times[len(times) // 2] * 1e3,
        "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))] * 1e3,
    }


def main():
    folder, batch = sys.argv[1], int(sys.argv[2])
    load = lambda name: torch.from_numpy(np.load(f"{folder}/{name}.npy")).to(DEVICE)
    w, b_enc, b_dec, thr = (load(n) for n in ("W_enc", "b_enc", "b_dec", "threshold"))
    x_all = torch.from_numpy(np.load(f"{folder}/x.npy"))
    out = {"torch": torch.__version__, "device": "cpu", "sms": None, "rows": []}
    if CUDA:
        props = torch.cuda.get_device_properties(0)
        out.update(device=props.name, sms=props.multi_processor_count)
    x_big = x_all[:batch].to(DEVICE)
    precisions = [("f32", torch.float32, False)]
    if CUDA:
        precisions += [("tf32", torch.float32, True), ("bf16", torch.bfloat16, False)]
    for name, dtype, tf32 in precisions:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        args = [t.to(dtype) for t in (w, b_enc, b_dec, thr)]
        row = {
            "precision": name,
            "exact": name == "f32",
            "tokens_per_s": timed_throughput(x_big.to(dtype), *args),
        }
        row.update(decode_step_latency(x_all[:64].to(dtype), *args, steps=300 if CUDA else 20))
        out["rows"].append(row)
    torch.backends.cuda.matmul.allow_tf32 = False
    print(json.dumps(out))


if __name__ == "__main__":
    main()
