"""Benchmark peer for data parallelism: PyTorch DistributedDataParallel, gloo backend, CPU, float32.

Usage: /usr/bin/python3 bench/peers/torch_ddp.py '{"config": {HF config dict}, "batch": B, "seq_len": T,
        "repeats": R, "nproc": N, "rank_threads": n}'

N processes (torch.multiprocessing, rendezvous on 127.0.0.1) each build the same model
(torch_transformer.Transformer, seed 0), wrap it in DDP and train on their share of the global batch
(B × T random tokens, rows split as evenly as lib/distributed shardRange does): forward, mean
next-token cross-entropy over the global batch, backward (DDP all-reduces the gradients, bucketed,
overlapping backward), AdamW(foreach=True, lr 1e-4) step, zero_grad. Rank 0 reports B·T / median step
time ("ddp-train-step", tokens/s) and the median of one all-reduce of every gradient
("ddp-allreduce", GB/s of gradient bytes).
"""
import os
import socket
import sys

sys.dont_write_bytecode = True

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import setup, time_ms, emit  # noqa: E402
from torch_transformer import Transformer, default_config  # noqa: E402


def share(n, rank, size):
    base, extra = divmod(n, size)
    begin = rank * base + min(rank, extra)
    return begin, begin + base + (1 if rank < extra else 0)


def worker(rank, args, port):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    N = int(args["nproc"])
    dist.init_process_group("gloo", rank=rank, world_size=N)
    torch.set_num_threads(int(args.get("rank_threads", args.get("threads", 1))))
    cfg = default_config(**args.get("config", {}))
    B, T, R = int(args["batch"]), int(args["seq_len"]), int(args.get("repeats", 5))
    torch.manual_seed(0)
    model = Transformer(cfg)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
    b0, b1 = share(B, rank, N)
    mine = tokens[b0:b1]

    def step():
        hidden = ddp(mine)
        logits = model.logits(hidden[:, :-1])
        # a mean over the global batch: this rank's sum ÷ all target tokens (DDP averages over ranks, so × N)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), mine[:, 1:].reshape(-1), reduction="sum")
        (loss * N / (B * (T - 1))).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    ms = time_ms(step, R, warmup=0)
    flat = torch.ones(sum(p.numel() for p in model.parameters()))

    def allreduce():
        dist.all_reduce(flat)

    ar = time_ms(allreduce, R, warmup=1)
    if rank == 0:
        shape = f"C{cfg['hidden_size']} L{cfg['num_hidden_layers']} V{cfg['vocab_size']} B{B} T{T} N{N}"
        emit("ddp-train-step", shape, ms, B * T / (ms * 1e-3), "tokens/s")
        emit("ddp-allreduce", shape, ar, 4 * flat.numel() / (ar * 1e-3) / 1e9, "GB/s")
    dist.destroy_process_group()


def main():
    args = setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(args, port), nprocs=int(args["nproc"]), join=True)


if __name__ == "__main__":
    main()
