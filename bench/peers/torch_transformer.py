"""Minimal plain-PyTorch re-implementation of Hugging Face transformers' Llama, Qwen2, Qwen3 and GLM (HF `glm`,
GlmForCausalLM / GLM-4-9B) decoder-only models, used to dump test fixtures and as the benchmark peer.

It follows (re-written, not copied) the HF modeling files:
  - src/transformers/models/llama/modeling_llama.py  (LlamaRMSNorm, LlamaRotaryEmbedding, rotate_half,
    apply_rotary_pos_emb, LlamaMLP, repeat_kv, LlamaAttention / eager_attention_forward, LlamaDecoderLayer)
  - src/transformers/models/qwen2/modeling_qwen2.py  (Qwen2Attention: q/k/v bias=True, o_proj bias=False)
  - src/transformers/models/qwen3/modeling_qwen3.py  (Qwen3Attention: q/k/v/o bias = attention_bias; q_norm, k_norm:
    RMSNorm(head_dim) over each head of q_proj / k_proj output, before RoPE)
  - src/transformers/models/mistral/modular_mistral.py (MistralAttention: no biases, sliding_window on every layer;
    masking_utils.sliding_window_overlay: query i sees keys j with i - sliding_window < j <= i)
  - src/transformers/models/gemma2/modeling_gemma2.py, gemma3/modeling_gemma3.py (text): RMSNorm times (1 + w),
    embeddings times sqrt(hidden_size), GeGLU with the tanh GELU, norms on the attention and MLP outputs
    (post_attention_layernorm, pre/post_feedforward_layernorm), scaling query_pre_attn_scalar^-1/2, attention and
    final logit soft-capping c*tanh(x/c), sliding (local) and global layers (layer_types); Gemma 3: q_norm/k_norm
    per head and the local layers' RoPE base rope_local_base_freq
  - src/transformers/models/glm4/modular_glm4.py (Glm4ForCausalLM, GLM-4-0414: GLM's attention and fused MLP, plus
    post_self_attn_layernorm on the attention output and post_mlp_layernorm on the MLP output)
  - src/transformers/models/glm/modeling_glm.py      (GlmMLP fused gate_up_proj, interleaved partial RoPE,
    o_proj bias=False)
  - src/transformers/modeling_layers.py              (GenericForSequenceClassification: `score` Linear,
    bias=False, applied to every token of the final-normed hidden states; HF then pools the last non-pad token)

Parameter names equal the HF state_dict names (model.embed_tokens.weight, model.layers.{i}..., model.norm.weight,
lm_head.weight unless tied, score.weight for *ForSequenceClassification).
"""
import math

import torch
import torch.nn as nn
import torch.utils.checkpoint
import torch.nn.functional as F

FAMILIES = {"LlamaFor": "llama", "Qwen2For": "qwen2", "Qwen3For": "qwen3", "MistralFor": "mistral",
            "Gemma2For": "gemma2", "Gemma3For": "gemma3", "GlmFor": "glm", "Glm4For": "glm4"}
GEMMA = ("gemma2", "gemma3")


def sliding_layers(cfg, fam):
    """Per layer: True where the layer uses the sliding window (Gemma's layer_types; Mistral: every layer)."""
    n = cfg["num_hidden_layers"]
    if fam == "mistral":
        return [cfg.get("sliding_window", 4096) is not None] * n
    if fam not in GEMMA:
        return [False] * n
    if cfg.get("layer_types") is not None:
        return [t == "sliding_attention" for t in cfg["layer_types"]]
    pattern = 2 if fam == "gemma2" else cfg.get("sliding_window_pattern", 6)
    return [bool((i + 1) % pattern) for i in range(n)]


def family_of(config):
    arch = config["architectures"][0]
    for prefix, fam in FAMILIES.items():
        if arch.startswith(prefix):
            return fam, arch.endswith("ForSequenceClassification")
    raise ValueError(f"unsupported architecture {arch}")


def upcast(dtype):
    """float32 for half types and float32 (HF's `.to(torch.float32)`), float64 kept for double-precision checks."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class RMSNorm(nn.Module):
    """LlamaRMSNorm / Qwen2RMSNorm / GlmRMSNorm: normalise in float32, cast back, then multiply by the weight.
    (HF always casts to float32; here float64 stays float64 so the fixture reference / finite differences can run
    in double. Identical to HF for float32/bfloat16/float16.)"""

    def __init__(self, size, eps, offset=0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps, self.offset = eps, offset

    def forward(self, x):
        dtype = x.dtype
        h = x.to(upcast(dtype))
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:  # Gemma2RMSNorm / Gemma3RMSNorm: (x_hat * (1 + w)) in the upcast type, then cast
            return (h * (self.offset + self.weight.to(h.dtype))).to(dtype)
        return self.weight * h.to(dtype)


class Rotary(nn.Module):
    """RoPE tables (Llama/Qwen2/GlmRotaryEmbedding.forward). rot_dim = int(head_dim * partial_rotary_factor),
    inv_freq = 1 / theta^(arange(0, rot_dim, 2) / rot_dim); angles computed in float32 as cat(freqs, freqs)."""

    def __init__(self, rot_dim, theta, interleaved):
        super().__init__()
        self.rot_dim, self.interleaved = rot_dim, interleaved
        inv_freq = 1.0 / (theta ** (torch.arange(0, rot_dim, 2, dtype=torch.int64).float() / rot_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def tables(self, positions, dtype):
        # positions (B, T) -> cos, sin (B, 1, T, rot_dim), broadcast over heads
        freqs = positions[:, :, None].float() * self.inv_freq[None, None, :].float()
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        if self.interleaved:
            # modeling_glm.apply_rotary_pos_emb: keep the first half of the table and repeat_interleave(2), so
            # dims (2i, 2i+1) share frequency inv_freq[i]
            half = cos.shape[-1] // 2
            cos = cos[..., :half].repeat_interleave(2, dim=-1)
            sin = sin[..., :half].repeat_interleave(2, dim=-1)
        return cos.to(dtype)[:, None], sin.to(dtype)[:, None]

    def apply(self, x, cos, sin):
        """x (B, H, T, head_dim). Rotates the first rot_dim dims, passes the rest through (GLM partial RoPE)."""
        r = self.rot_dim
        x_rot, x_pass = x[..., :r], x[..., r:]
        if self.interleaved:
            # GLM rotate_half: pairs (2i, 2i+1) -> (-x[2i+1], x[2i])
            rotated = torch.stack((-x_rot[..., 1::2], x_rot[..., 0::2]), dim=-1).flatten(-2)
        else:
            # Llama/Qwen2 rotate_half: pairs (i, i + d/2) -> cat(-x2, x1)
            x1, x2 = x_rot[..., : r // 2], x_rot[..., r // 2:]
            rotated = torch.cat((-x2, x1), dim=-1)
        out = x_rot * cos + rotated * sin
        return torch.cat((out, x_pass), dim=-1) if x_pass.shape[-1] else out


class KVCache:
    """Preallocated per-layer K/V buffers (B, kv_heads, max_len, head_dim); `length` tokens are valid."""

    def __init__(self, n_layers, batch, kv_heads, max_len, head_dim, dtype=torch.float32):
        self.k = [torch.zeros(batch, kv_heads, max_len, head_dim, dtype=dtype) for _ in range(n_layers)]
        self.v = [torch.zeros(batch, kv_heads, max_len, head_dim, dtype=dtype) for _ in range(n_layers)]
        self.length = 0

    def update(self, layer, k, v):
        start, end = self.length, self.length + k.shape[2]
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class Attention(nn.Module):
    """Llama/Qwen2/GlmAttention with eager_attention_forward (GQA via repeat_kv, fp32 softmax, causal)."""

    def __init__(self, cfg, fam, layer_idx):
        super().__init__()
        C, H, KV, D = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        self.layer_idx, self.H, self.KV, self.D = layer_idx, H, KV, D
        self.scaling = D ** -0.5
        # Biases: Llama and Qwen3 q,k,v,o all = attention_bias; Qwen2 q,k,v always True, o False; GLM q,k,v =
        # attention_bias, o False.
        qkv_bias = True if fam == "qwen2" else bool(cfg.get("attention_bias", False)) and fam != "mistral"
        o_bias = bool(cfg.get("attention_bias", False)) if fam in ("llama", "qwen3") + GEMMA else False
        self.softcap = cfg.get("attn_logit_softcapping") if fam in GEMMA else None
        if fam in GEMMA:
            self.scaling = cfg["query_pre_attn_scalar"] ** -0.5
        self.q_proj = nn.Linear(C, H * D, bias=qkv_bias)
        self.k_proj = nn.Linear(C, KV * D, bias=qkv_bias)
        self.v_proj = nn.Linear(C, KV * D, bias=qkv_bias)
        self.o_proj = nn.Linear(H * D, C, bias=o_bias)
        # Mistral: sliding window (MistralConfig default 4096 when the key is absent, None: full attention)
        self.window = cfg.get("sliding_window", 4096) if sliding_layers(cfg, fam)[layer_idx] else None
        self.qk_norm = fam in ("qwen3", "gemma3")
        if self.qk_norm:  # Qwen3, Gemma 3: per-head RMSNorm on q and k (over head_dim), before RoPE
            offset = 1.0 if fam == "gemma3" else 0.0
            self.q_norm = RMSNorm(D, cfg["rms_norm_eps"], offset)
            self.k_norm = RMSNorm(D, cfg["rms_norm_eps"], offset)

    def forward(self, x, rope, cos, sin, cache=None):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.D)
        k = self.k_proj(x).view(B, T, self.KV, self.D)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.KV, self.D).transpose(1, 2)
        q, k = rope.apply(q, cos, sin), rope.apply(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.update(self.layer_idx, k, v)
        S = k.shape[2]
        rep = self.H // self.KV  # repeat_kv: kv head j serves query heads j*rep .. j*rep+rep-1
        if rep > 1:
            k = k[:, :, None].expand(B, self.KV, rep, S, self.D).reshape(B, self.H, S, self.D)
            v = v[:, :, None].expand(B, self.KV, rep, S, self.D).reshape(B, self.H, S, self.D)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        if self.softcap is not None:  # Gemma 2: before the mask
            scores = torch.tanh(scores / self.softcap) * self.softcap
        # causal mask: query i (absolute position past + i) sees keys j <= past + i (HF adds finfo.min)
        if T > 1 or self.window is not None:
            qi = torch.arange(T)[:, None] + past
            kj = torch.arange(S)[None, :]
            blocked = kj > qi
            if self.window is not None:  # sliding_window_overlay: keys j <= i - window are blocked too
                blocked = blocked | (kj <= qi - self.window)
            mask = torch.zeros(T, S, dtype=scores.dtype).masked_fill(blocked, torch.finfo(scores.dtype).min)
            scores = scores + mask
        probs = F.softmax(scores, dim=-1, dtype=upcast(q.dtype)).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, self.H * self.D)
        return self.o_proj(out)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate) * up). Llama/Qwen2 have separate gate_proj/up_proj; GLM one fused gate_up_proj
    of shape (2*I, C) whose output is chunked as (gate, up) in that order (GlmMLP.forward)."""

    def __init__(self, cfg, fam):
        super().__init__()
        C, I = cfg["hidden_size"], cfg["intermediate_size"]
        self.fused = fam in ("glm", "glm4")
        self.act = (lambda g: F.gelu(g, approximate="tanh")) if fam in GEMMA else F.silu
        bias = bool(cfg.get("mlp_bias", False)) if fam == "llama" else False  # LlamaMLP bias=config.mlp_bias
        if self.fused:
            self.gate_up_proj = nn.Linear(C, 2 * I, bias=False)
        else:
            self.gate_proj = nn.Linear(C, I, bias=bias)
            self.up_proj = nn.Linear(C, I, bias=bias)
        self.down_proj = nn.Linear(I, C, bias=bias)

    def forward(self, x):
        if self.fused:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(self.act(gate) * up)


class DecoderLayer(nn.Module):
    """Pre-norm block (Llama/Qwen2/GlmDecoderLayer): x += attn(norm(x)); x += mlp(norm(x))."""

    def __init__(self, cfg, fam, layer_idx):
        super().__init__()
        C, eps = cfg["hidden_size"], cfg["rms_norm_eps"]
        self.gemma = fam in GEMMA
        self.sliding = sliding_layers(cfg, fam)[layer_idx]
        offset = 1.0 if self.gemma else 0.0
        self.input_layernorm = RMSNorm(C, eps, offset)
        self.self_attn = Attention(cfg, fam, layer_idx)
        self.post_attention_layernorm = RMSNorm(C, eps, offset)
        if self.gemma:  # Gemma: post_attention_layernorm is on the attention output; pre/post around the MLP
            self.pre_feedforward_layernorm = RMSNorm(C, eps, offset)
            self.post_feedforward_layernorm = RMSNorm(C, eps, offset)
        self.glm4 = fam == "glm4"
        if self.glm4:  # GLM-4-0414: norms on the attention and MLP outputs; post_attention_layernorm before the MLP
            self.post_self_attn_layernorm = RMSNorm(C, eps)
            self.post_mlp_layernorm = RMSNorm(C, eps)
        self.mlp = MLP(cfg, fam)

    def forward(self, x, rope, cos, sin, cache=None):
        if self.gemma:
            x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), rope, cos, sin, cache))
            return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))
        if self.glm4:
            x = x + self.post_self_attn_layernorm(self.self_attn(self.input_layernorm(x), rope, cos, sin, cache))
            return x + self.post_mlp_layernorm(self.mlp(self.post_attention_layernorm(x)))
        x = x + self.self_attn(self.input_layernorm(x), rope, cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    """LlamaModel / Qwen2Model / GlmModel: embed_tokens -> layers -> norm."""

    def __init__(self, cfg, fam):
        super().__init__()
        # HF passes padding_idx=config.pad_token_id (only effect: no gradient flows into that embedding row)
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"], cfg.get("pad_token_id"))
        self.layers = nn.ModuleList([DecoderLayer(cfg, fam, i) for i in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"], 1.0 if fam in GEMMA else 0.0)


class Transformer(nn.Module):
    """*ForCausalLM (lm_head, or tied to embed_tokens) or *ForSequenceClassification (score, no lm_head)."""

    def __init__(self, config):
        super().__init__()
        cfg = dict(config)
        cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
        cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
        cfg.setdefault("rope_theta", 10000.0)
        self.config = cfg
        self.family, self.is_seq_cls = family_of(cfg)
        # GLM: partial_rotary_factor (GlmConfig default 0.5) and interleaved pairs; Llama/Qwen2: full, half-split
        factor = cfg.get("partial_rotary_factor", 0.5 if self.family in ("glm", "glm4") else 1.0)
        rot_dim = int(cfg["head_dim"] * factor)
        self.rope = Rotary(rot_dim, float(cfg["rope_theta"]), interleaved=self.family in ("glm", "glm4"))
        # Gemma 3: the sliding layers' RoPE (default, base rope_local_base_freq); rope_scaling is the global one's
        self.rope_local = (Rotary(rot_dim, float(cfg["rope_local_base_freq"]), interleaved=False)
                           if self.family == "gemma3" else None)
        self.final_softcap = cfg.get("final_logit_softcapping") if self.family in GEMMA else None
        self.model = Backbone(cfg, self.family)
        self.tied = bool(cfg.get("tie_word_embeddings", False))
        self.checkpoint_layers = False  # torch.utils.checkpoint around each layer while training
        if self.is_seq_cls:
            self.score = nn.Linear(cfg["hidden_size"], cfg.get("num_labels", 1), bias=False)
        elif not self.tied:
            self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)

    def forward(self, tokens, positions=None, cache=None):
        """tokens (B, T) -> final-normed hidden states (B, T, C). positions default to past + arange(T)."""
        B, T = tokens.shape
        if positions is None:
            past = cache.length if cache is not None else 0
            positions = (torch.arange(T) + past)[None].expand(B, T)
        x = self.model.embed_tokens(tokens)
        if self.family == "gemma2":  # normalizer = torch.tensor(hidden_size**0.5, dtype=hidden_states.dtype)
            x = x * torch.tensor(self.config["hidden_size"] ** 0.5, dtype=x.dtype)
        elif self.family == "gemma3":  # Gemma3TextScaledWordEmbedding: a float32 buffer cast to the weights' dtype
            x = x * torch.tensor(self.config["hidden_size"] ** 0.5).to(x.dtype)
        cos, sin = self.rope.tables(positions, x.dtype)
        local = self.rope_local.tables(positions, x.dtype) if self.rope_local is not None else (cos, sin)
        for layer in self.model.layers:
            c, s = local if getattr(layer, "sliding", False) else (cos, sin)
            if self.checkpoint_layers and self.training and torch.is_grad_enabled() and cache is None:
                x = torch.utils.checkpoint.checkpoint(layer, x, self.rope, c, s, None, use_reentrant=False)
            else:
                x = layer(x, self.rope, c, s, cache)
        if cache is not None:
            cache.length += T
        return self.model.norm(x)

    def logits(self, hidden):
        w = self.model.embed_tokens.weight if self.tied else self.lm_head.weight
        logits = F.linear(hidden, w)
        if self.final_softcap is not None:  # Gemma 2: final_logit_softcapping
            logits = torch.tanh(logits / self.final_softcap) * self.final_softcap
        return logits

    def values(self, hidden):
        """Score head per token (B, T) (num_labels 1); HF's pooled reward is values[b, last non-pad index]."""
        return self.score(hidden)[..., 0]

    def new_cache(self, batch, max_len):
        c = self.config
        return KVCache(c["num_hidden_layers"], batch, c["num_key_value_heads"], max_len, c["head_dim"],
                       self.model.embed_tokens.weight.dtype)

    @torch.no_grad()
    def generate(self, tokens, max_new_tokens, use_cache=True):
        """Greedy decoding of same-length prompts (B, P) -> new tokens (B, max_new_tokens)."""
        B, P = tokens.shape
        out = []
        if use_cache:
            cache = self.new_cache(B, P + max_new_tokens)
            hidden = self.forward(tokens, cache=cache)
            for step in range(max_new_tokens):
                nxt = self.logits(hidden[:, -1]).argmax(-1)
                out.append(nxt)
                if step + 1 < max_new_tokens:
                    hidden = self.forward(nxt[:, None], cache=cache)
        else:  # full recomputation of the whole prefix each step
            seq = tokens
            for _ in range(max_new_tokens):
                nxt = self.logits(self.forward(seq)[:, -1]).argmax(-1)
                out.append(nxt)
                seq = torch.cat([seq, nxt[:, None]], dim=1)
        return torch.stack(out, dim=1)

    generate_greedy = generate


class LoraLinear(nn.Module):
    """PEFT's LoRA on a frozen nn.Linear: y = base(x) + (alpha / r) * B(A(x)), B = 0 at the start."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base, self.scale = base, alpha / rank
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        return self.base(x) + self.scale * self.lora_B(self.lora_A(x))


def add_lora(model, rank, alpha, modules):
    """Freezes every parameter of `model`, then wraps the named projections of every layer with LoraLinear
    (what peft.get_peft_model does for a LoraConfig(r, lora_alpha, target_modules))."""
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers:
        for block in (layer.self_attn, layer.mlp):
            for name in modules:
                if hasattr(block, name):
                    setattr(block, name, LoraLinear(getattr(block, name), rank, alpha))
    return model


def param_count(model):
    return sum(p.numel() for p in model.parameters())


def default_config(arch="LlamaForCausalLM", **kw):
    cfg = {"architectures": [arch], "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 6,
           "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 4096, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "tie_word_embeddings": False, "attention_bias": False,
           "max_position_embeddings": 2048}
    cfg.update(kw)
    return cfg


if __name__ == "__main__":  # smoke test: KV-cache decoding == full recomputation for every family
    torch.manual_seed(0)
    for arch in ("LlamaForCausalLM", "Qwen2ForCausalLM", "GlmForCausalLM"):
        m = Transformer(default_config(arch, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, vocab_size=101,
                                       attention_bias=True, partial_rotary_factor=0.5 if "Glm" in arch else 1.0))
        t = torch.randint(0, 101, (3, 7))
        a, b = m.generate(t, 6, use_cache=True), m.generate(t, 6, use_cache=False)
        assert torch.equal(a, b), (arch, a, b)
        print(arch, param_count(m), a[0].tolist())
