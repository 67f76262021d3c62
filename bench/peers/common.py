"""Shared helpers for the PyTorch peers: argument parsing, thread setup, timing, JSON lines."""
import json
import sys
import time

import torch


def blas_library():
    """The BLAS shared object(s) torch has loaded (after one matmul), e.g. .../openblas-pthread/libblas.so.3."""
    torch.ones(64, 64) @ torch.ones(64, 64)
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "blas" in path.lower() or "lapack" in path.lower():
                    libs.add(path)
    except OSError:
        return "unknown"
    return ", ".join(sorted(libs)) or "none loaded"


def setup():
    args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    threads = int(args.get("threads", 1))
    torch.set_num_threads(threads)
    print(json.dumps({"meta": True, "version": torch.__version__, "threads": threads, "blas": blas_library()}), flush=True)
    return args


def time_ms(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    n = len(times)
    return times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])


def emit(bench, shape, median_ms, value, unit, dtype=None):
    row = {"bench": bench, "impl": "torch", "shape": shape, "median_ms": median_ms, "value": value, "unit": unit}
    if dtype is not None:
        row["dtype"] = dtype
    print(json.dumps(row), flush=True)
