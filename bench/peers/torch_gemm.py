"""Peer for bench/gemm.bench.ts: torch.matmul (OpenBLAS on Debian's CPU build), f32, square."""
from common import setup, time_ms, emit
import torch

args = setup()
for n in args["sizes"]:
    a, b = torch.rand(n, n), torch.rand(n, n)
    c = torch.empty(n, n)
    ms = time_ms(lambda: torch.matmul(a, b, out=c), args["repeats"][str(n)], warmup=2)
    emit("gemm", f"{n}x{n}x{n}", ms, 2.0 * n ** 3 / (ms * 1e-3) / 1e9, "GFLOP/s")
