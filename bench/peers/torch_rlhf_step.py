"""Benchmark peer for bench/rlhf-step.bench.ts: one PPO iteration and one DPO step in eager PyTorch (float32, CPU),
the same models and shapes as ours, the phases named and bounded as our trainer's `time/<phase>` metrics.

Usage: /usr/bin/python3 bench/peers/torch_rlhf_step.py '{"config": {HF config of the policy}, "prompt_len": P,
        "prompts": 16, "new_tokens": 64, "mini_batch": 8, "iterations": 4, "dpo_lengths": [[[prompt_len, chosen_len], [prompt_len, rejected_len]], ...],
        "dpo_steps": 3, "threads": N}'

PPO iteration (policy, frozen reference = a copy of the policy, critic and reward model = the same backbone with a
`score` head; what an OpenRLHF/TRL-style PPO step does, in plain torch):
  generate   the policy samples `prompts` rows x `new_tokens` (temperature 1, KV cache, no early stop) and keeps the
             log-prob of each sampled token
  score      the reward model scores prompt+response at the last token
  baseline   ChatGLM-RLHF's reference baseline: the reference samples one y_ref per (new) prompt, batched, and
             the reward model scores it
  reference  reference log-probs of the response tokens (no grad)
  critic     old values (no grad) + per minibatch: values, clipped value loss, backward
  policy     per minibatch: log-probs and entropy of the response tokens, clipped surrogate, backward
  optimizer  per minibatch: clip_grad_norm_(1.0) and AdamW(foreach=True) for policy and critic
GAE (gamma 1, lambda 0.95) with a k1 KL penalty (0.05) in the reward and whitened advantages, between the phases,
untimed (it is microseconds here as in ours).

DPO step: 8 pairs, chosen and rejected right-padded into one batch of 16, policy forward/backward on the response
tokens, reference forward (no grad), -logsigmoid(beta * margin), clip_grad_norm_(1.0), AdamW step.

Emits `ppo-phase` lines (shape = phase, median_ms = mean ms per measured iteration), `ppo-iteration`, `dpo-step`
and `rlhf-peak-memory` (peak RSS of this process, MB).
"""
import copy
import resource
import statistics
import sys
import time

sys.dont_write_bytecode = True

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import setup, emit  # noqa: E402
from torch_transformer import Transformer, default_config  # noqa: E402


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def seq_cls(cfg):
    return dict(cfg, architectures=[cfg["architectures"][0].replace("ForCausalLM", "ForSequenceClassification")],
                num_labels=1)


@torch.no_grad()
def sample(model, prompts, new_tokens):
    """prompts (B, P) -> tokens (B, n), log pi(token) (B, n); temperature 1, KV cache."""
    B, P = prompts.shape
    cache = model.new_cache(B, P + new_tokens)
    hidden = model(prompts, cache=cache)[:, -1]
    toks, lps = [], []
    for step in range(new_tokens):
        logp = F.log_softmax(model.logits(hidden), dim=-1)
        nxt = torch.multinomial(logp.exp(), 1)[:, 0]
        toks.append(nxt)
        lps.append(logp.gather(1, nxt[:, None])[:, 0])
        if step + 1 < new_tokens:
            hidden = model(nxt[:, None], cache=cache)[:, -1]
    return torch.stack(toks, 1), torch.stack(lps, 1)


def response_logprobs(model, seq, P, entropy=False):
    """log pi(seq[:, t]) for the response tokens t >= P (logits only where they are needed), optional entropy."""
    hidden = model(seq)[:, P - 1:-1]
    logp = F.log_softmax(model.logits(hidden), dim=-1)
    lp = logp.gather(2, seq[:, P:, None])[..., 0]
    if not entropy:
        return lp, None
    return lp, -(logp.exp() * logp).sum(-1)


def last_score(model, seq):
    return model.values(model(seq))[:, -1]


def gae(rewards, values, gamma=1.0, lam=0.95):
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0])
    n = rewards.shape[1]
    for t in reversed(range(n)):
        nxt = values[:, t + 1] if t + 1 < n else torch.zeros(rewards.shape[0])
        delta = rewards[:, t] + gamma * nxt - values[:, t]
        last = delta + gamma * lam * last
        adv[:, t] = last
    return adv, adv + values


def ppo(args, cfg):
    B, P, n = int(args.get("prompts", 16)), int(args.get("prompt_len", 38)), int(args.get("new_tokens", 64))
    mb, iters = int(args.get("mini_batch", 8)), int(args.get("iterations", 4))
    torch.manual_seed(0)
    policy = Transformer(cfg)
    reference = copy.deepcopy(policy).requires_grad_(False).eval()
    critic, rm = Transformer(seq_cls(cfg)), Transformer(seq_cls(cfg)).requires_grad_(False).eval()
    opt_p = torch.optim.AdamW(policy.parameters(), lr=1e-5, foreach=True)
    opt_c = torch.optim.AdamW(critic.parameters(), lr=1e-4, foreach=True)
    V = cfg["vocab_size"]
    times = []
    for it in range(iters):
        t = {k: 0.0 for k in ("generate", "score", "baseline", "reference", "critic", "policy", "optimizer")}

        def timed(phase, fn):
            s = time.perf_counter()
            out = fn()
            t[phase] += time.perf_counter() - s
            return out

        prompts = torch.randint(0, V, (B, P))
        resp, old_lp = timed("generate", lambda: sample(policy, prompts, n))
        seq = torch.cat([prompts, resp], 1)

        with torch.no_grad():
            scores = timed("score", lambda: last_score(rm, seq))

            def baseline():
                y_ref, _ = sample(reference, prompts, n)
                return last_score(rm, torch.cat([prompts, y_ref], 1))
            shaped = scores - timed("baseline", baseline)
        with torch.no_grad():
            ref_lp = timed("reference", lambda: response_logprobs(reference, seq, P)[0])
            old_v = timed("critic", lambda: critic.values(critic(seq))[:, P - 1:-1])
        rewards = -0.05 * (old_lp - ref_lp)
        rewards[:, -1] += shaped
        adv, ret = gae(rewards, old_v)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)

        order = torch.randperm(B)
        for m0 in range(0, B, mb):
            rows = order[m0:m0 + mb]

            def policy_step():
                lp, ent = response_logprobs(policy, seq[rows], P, entropy=True)
                ratio = (lp - old_lp[rows]).exp()
                a = adv[rows]
                loss = torch.max(-a * ratio, -a * ratio.clamp(0.8, 1.2)).mean()
                loss.backward()
                return ent.mean().item()
            timed("policy", policy_step)

            def critic_step():
                v = critic.values(critic(seq[rows]))[:, P - 1:-1]
                vo, r = old_v[rows], ret[rows]
                vc = vo + (v - vo).clamp(-0.2, 0.2)
                loss = 0.5 * torch.max((v - r) ** 2, (vc - r) ** 2).mean()
                loss.backward()
            timed("critic", critic_step)

            def optimize():
                for model, opt in ((policy, opt_p), (critic, opt_c)):
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
            timed("optimizer", optimize)
        times.append(t)

    measured = times[1:] if len(times) > 1 else times
    total = 0.0
    for phase in times[0]:
        ms = 1000.0 * statistics.mean(x[phase] for x in measured)
        total += ms
        emit("ppo-phase", phase, ms, ms, "ms")
    emit("ppo-iteration", f"{B}x{n}", total, B * n / (total * 1e-3), "generated tokens/s")


def dpo(args, cfg):
    lengths, steps = args.get("dpo_lengths", []), int(args.get("dpo_steps", 3))
    if not lengths:
        return
    torch.manual_seed(1)
    policy = Transformer(cfg)
    reference = copy.deepcopy(policy).requires_grad_(False).eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-6, foreach=True)
    V, beta = cfg["vocab_size"], 0.1
    # rows 0..k-1 chosen, k..2k-1 rejected; each [prompt_len, total_len]; right-padded to the longest
    rows = [c for c, _ in lengths] + [r for _, r in lengths]
    T = max(total for _, total in rows)
    seq = torch.randint(0, V, (len(rows), T))
    mask = torch.zeros(len(rows), T - 1)
    for i, (p, total) in enumerate(rows):
        mask[i, p - 1:total - 1] = 1.0
    k = len(lengths)

    def seq_logp(model):
        logp = F.log_softmax(model.logits(model(seq)[:, :-1]), dim=-1)
        return (logp.gather(2, seq[:, 1:, None])[..., 0] * mask).sum(-1)

    def step():
        with torch.no_grad():
            ref = seq_logp(reference)
        pol = seq_logp(policy)
        margin = (pol[:k] - pol[k:]) - (ref[:k] - ref[k:])
        loss = -F.logsigmoid(beta * margin).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    ms = []
    for i in range(steps + 1):
        s = time.perf_counter()
        step()
        if i > 0:  # the first step warms up
            ms.append(1000.0 * (time.perf_counter() - s))
    tokens = sum(total for _, total in rows)
    m = statistics.mean(ms)
    emit("dpo-step", f"{k} pairs", m, tokens / (m * 1e-3), "tokens/s")


def main():
    args = setup()
    cfg = default_config(**args.get("config", {}))
    ppo(args, cfg)
    dpo(args, cfg)
    emit("rlhf-peak-memory", "", 0.0, peak_rss_mb(), "MB")


if __name__ == "__main__":
    main()
