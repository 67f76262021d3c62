"""Peer for bench/gemm.bench.ts: torch.matmul on the CPU, square, f32 (OpenBLAS on Debian's CPU
build) and bf16 (both operands torch.bfloat16, as torch runs a bf16 model's linear layers)."""
from common import setup, time_ms, emit
import torch

args = setup()
dtypes = {"f32": torch.float32, "bf16": torch.bfloat16}
for name in args.get("dtypes", ["f32"]):
    for n in args["sizes"].get(name, []) if isinstance(args["sizes"], dict) else args["sizes"]:
        a, b = torch.rand(n, n).to(dtypes[name]), torch.rand(n, n).to(dtypes[name])
        c = torch.empty(n, n, dtype=dtypes[name])
        ms = time_ms(lambda: torch.matmul(a, b, out=c), args["repeats"][str(n)], warmup=2)
        emit("gemm", f"{n}x{n}x{n}", ms, 2.0 * n ** 3 / (ms * 1e-3) / 1e9, "GFLOP/s", name)
