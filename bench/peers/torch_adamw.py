"""Peer for bench/adamw.bench.ts: torch.optim.AdamW(foreach=True) over one flat fp32 parameter."""
from common import setup, time_ms, emit
import torch

args = setup()
for n in args["sizes"]:
    p = torch.nn.Parameter(torch.randn(n))
    p.grad = torch.randn(n) * 0.01
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.01, foreach=True)
    ms = time_ms(opt.step, args["repeats"][str(n)], warmup=2)
    emit("adamw", f"{n}", ms, 28.0 * n / (ms * 1e-3) / 1e9, "GB/s@28B")
    del p, opt
