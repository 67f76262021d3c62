"""Benchmark peer for the native decoder-only model: eager PyTorch (torch_transformer.Transformer), float32, CPU.

Usage: /usr/bin/python3 bench/peers/torch_model.py '{"mode": "train" | "generate", "config": {HF config dict},
        "batch": B, "seq_len": T, "repeats": R, "threads": N, "new_tokens": n, "prompt_len": p}'

train:    random tokens (B, T); one step = forward, mean next-token cross-entropy (or, for *ForSequenceClassification,
          mean squared score), backward, AdamW(foreach=True, lr 1e-4) step, zero_grad. Reports B*T / step time.
          "checkpoint": true wraps every decoder layer in torch.utils.checkpoint (non-reentrant).
          "lora": {"rank", "alpha", "modules"} freezes the model and trains LoRA adapters (torch_transformer.add_lora).
generate: random prompts (B, p); greedy decoding of n new tokens with the KV cache under torch.no_grad.
          Reports B*n / (prefill + decode time).
Both emit a second line "<mode>-peak-memory": peak RSS of this process in MB (getrusage ru_maxrss).
"""
import resource
import sys

sys.dont_write_bytecode = True

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import setup, time_ms, emit  # noqa: E402
from torch_transformer import Transformer, add_lora, default_config, param_count  # noqa: E402


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def shape_of(cfg, **kw):
    arch = cfg["architectures"][0]
    dims = (f"{arch} C{cfg['hidden_size']} L{cfg['num_hidden_layers']} H{cfg['num_attention_heads']}"
            f"/{cfg.get('num_key_value_heads', cfg['num_attention_heads'])} I{cfg['intermediate_size']}"
            f" V{cfg['vocab_size']}")
    return dims + "".join(f" {k}{v}" for k, v in kw.items())


def train(args, cfg):
    B, T, R = int(args.get("batch", 8)), int(args.get("seq_len", 256)), int(args.get("repeats", 5))
    torch.manual_seed(0)
    model = Transformer(cfg)
    model.train()
    model.checkpoint_layers = bool(args.get("checkpoint", False))
    lora = args.get("lora")
    if lora:
        add_lora(model, int(lora["rank"]), float(lora["alpha"]), lora["modules"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, foreach=True)
    tokens = torch.randint(0, cfg["vocab_size"], (B, T))

    def step():
        hidden = model(tokens)
        if model.is_seq_cls:
            loss = model.values(hidden).pow(2).mean()
        else:
            logits = model.logits(hidden[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    ms = time_ms(step, R, warmup=0)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    shape = shape_of(cfg, B=B, T=T)
    emit("train-step", shape, ms, B * T / (ms * 1e-3), "tokens/s")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    emit("train-sys-share", shape, ms, 100.0 * (r1.ru_stime - r0.ru_stime) / cpu if cpu > 0 else 0.0, "%")
    emit("train-faults-per-step", shape, ms, (r1.ru_minflt - r0.ru_minflt) / R, "faults/step")
    emit("train-cpu-per-step", shape, ms, 1000.0 * cpu / R, "ms")
    emit("train-peak-memory", shape, ms, peak_rss_mb(), "MB")


def generate(args, cfg):
    B, P = int(args.get("batch", 1)), int(args.get("prompt_len", 32))
    n, R = int(args.get("new_tokens", 64)), int(args.get("repeats", 5))
    torch.manual_seed(0)
    model = Transformer(cfg)
    model.eval()
    prompts = torch.randint(0, cfg["vocab_size"], (B, P))

    def run():
        with torch.no_grad():
            model.generate(prompts, n, use_cache=True)

    ms = time_ms(run, R, warmup=1)
    shape = shape_of(cfg, B=B, P=P, N=n)
    emit("generate", shape, ms, B * n / (ms * 1e-3), "tokens/s")
    emit("generate-peak-memory", shape, ms, peak_rss_mb(), "MB")


def main():
    args = setup()
    cfg = default_config(**args.get("config", {}))  # given HF keys override the defaults
    mode = args.get("mode", "train")
    # peak RSS after the imports, before any model exists: the runtime's own floor
    emit(f"{mode}-baseline-memory", "", 0.0, peak_rss_mb(), "MB")
    if mode == "train":
        train(args, cfg)
    elif mode == "generate":
        generate(args, cfg)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
