// Transformer construction, initialisation and forward (see transformer.h for the contracts).
#include "transformer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "../core/error.h"
#include "../core/rng.h"
#include "../core/thread_pool.h"
#include "../cpu/attention.h"
#include "../cpu/embedding.h"
#include "../cpu/gemm.h"
#include "../cpu/gemm_bf16.h"
#include "../cpu/logsoftmax.h"
#include "../cpu/rmsnorm.h"
#include "../cpu/geglu.h"
#include "../cpu/swiglu.h"
#include "internal.h"

namespace rlhf {
namespace model {

namespace {
// The device backends other than the CPU run the Llama/Qwen2/GLM-4 layer; the newer layer
// features run through host loops and CPU kernels that are not behind the Backend seam yet, so a
// model that needs one is refused on those devices (naming the feature) instead of reading device
// memory on the host.
void check_backend_supports(const Backend& be, const ModelConfig& c) {
  if (be.device() == Device::Cpu) return;
  const char* missing = c.qk_norm                           ? "per-head q/k RMSNorm (Qwen3)"
                        : c.sliding_window > 0              ? "sliding-window attention"
                        : c.attn_softcap > 0                ? "attention logit soft-capping"
                        : c.final_softcap > 0               ? "final logit soft-capping"
                        : c.gelu_tanh                       ? "the GELU-tanh gated MLP"
                        : c.sandwich_norms != kSandwichNone ? "sandwich norms"
                        : c.embed_scale != 1.0f             ? "embedding scaling"
                        : c.norm_offset != 0.0f             ? "(1 + w) RMSNorm weights"
                        : c.rope_local_theta > 0            ? "a second RoPE base for local layers"
                                                            : nullptr;
  RLHF_CHECK(missing == nullptr, ErrorCode::Unsupported, "model: the ", device_name(be.device()),
             " backend does not run ", missing, " yet; use device 'cpu' for this architecture");
}
}  // namespace

Transformer::Transformer(const ModelConfig& config, float* params, float* grads, std::shared_ptr<Backend> backend,
                         const WeightStorage& storage)
    : cfg_((validate_config(config), config)),
      layout_(build_layout(cfg_)),
      backend_(backend ? std::move(backend) : make_backend(Device::Cpu)),
      be_(backend_.get()),
      params_ptr_(params),
      grads_ptr_(grads),
      rope_(cfg_.rotary_dim, cfg_.rope_theta, cfg_.rope_interleaved, cfg_.rope_inv_freq, cfg_.rope_attention_scaling,
            cfg_.rope_position_limit),
      rope_local_(cfg_.rotary_dim, cfg_.rope_local_theta > 0 ? cfg_.rope_local_theta : cfg_.rope_theta,
                  cfg_.rope_interleaved) {
  RLHF_CHECK(!(params || grads) || be_->device() == Device::Cpu, ErrorCode::Internal,
             "Transformer: external parameter storage is host memory");
  check_backend_supports(*be_, cfg_);
  allocate_storage(storage, params != nullptr, grads != nullptr);
  if (cfg_.norm_offset != 0.0f)  // (offset + w) of every norm weight lives in norm_shadow_
    for (const ParamView& v : layout_.views)
      if (v.name.find("norm") != std::string::npos) {
        norm_shadow_at_[v.offset] = static_cast<int64_t>(norm_shadow_.size());
        norm_shadow_views_.push_back({v.offset, static_cast<int64_t>(norm_shadow_.size()), v.size});
        norm_shadow_.resize(norm_shadow_.size() + static_cast<size_t>(v.size));
      }
}

void Transformer::scale_embeddings(float* x, int64_t N) {
  const float s = cfg_.embed_scale;
  if (s == 1.0f) return;
  const int64_t n = N * cfg_.hidden;
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) x[i] *= s;
  });
}

void Transformer::refresh_norm_shadow() {
  for (const auto& [off, at, size] : norm_shadow_views_)
    for (int64_t i = 0; i < size; ++i) norm_shadow_[at + i] = cfg_.norm_offset + w(off)[i];
}

float* Transformer::nw(int64_t offset) {
  if (cfg_.norm_offset == 0.0f) return w(offset);
  return norm_shadow_.data() + norm_shadow_at_.at(offset);
}

const cpu::RopeTable& Transformer::rope_for(int l) const {
  return cfg_.rope_local_theta > 0 && cfg_.is_sliding(l) ? rope_local_ : rope_;
}

void Transformer::ensure_rope(int64_t max_position) {
  rope_.ensure(max_position);
  if (cfg_.rope_local_theta > 0) rope_local_.ensure(max_position);
}

float Transformer::attention_scale() const {
  return cfg_.attn_scale > 0 ? cfg_.attn_scale : 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim));
}

// xout = resid + rmsnorm(src)·w (a sandwich norm before the residual add); tmp (N, C) scratch.
void Transformer::add_normed(float* xout, const float* resid, float* tmp, float* rstd, const float* src, int64_t norm,
                             int64_t N) {
  const int64_t C = cfg_.hidden;
  be_->rmsnorm_forward(tmp, rstd, src, nw(norm), N, static_cast<int>(C), cfg_.rms_eps);
  parallel_for(N, 16, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b * C; i < e * C; ++i) xout[i] = resid[i] + tmp[i];
  });
}

void init_parameter(const ParamView& v, uint64_t index, uint64_t seed, float std, float* p, float norm_value) {
  RLHF_CHECK(std::isfinite(std) && std >= 0, ErrorCode::OutOfRange, "init: std must be finite and >= 0, got ", std);
  if (v.name.find(".lora_B.") != std::string::npos) return void(std::fill(p, p + v.size, 0.0f));  // PEFT: B = 0
  if (v.name.find(".lora_A.") != std::string::npos)  // PEFT's kaiming_uniform(a=√5) variance, 1/(3·in)
    return philox_normal_fill(seed, index, 0.0f, 1.0f / std::sqrt(3.0f * static_cast<float>(v.shape[1])), p, v.size);
  const bool is_norm = v.name.find("norm") != std::string::npos;
  const bool is_bias = v.name.size() > 5 && v.name.compare(v.name.size() - 5, 5, ".bias") == 0;
  if (is_norm)
    std::fill(p, p + v.size, norm_value);
  else if (is_bias)
    std::fill(p, p + v.size, 0.0f);
  else
    philox_normal_fill(seed, index, 0.0f, std, p, v.size);
}

void Transformer::gemm_weight(bool trans_a, bool trans_w, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                              int64_t lda, int64_t offset, int64_t ldw, float beta, float* C, int64_t ldc) {
  if (weight_dtype_ == DType::BF16) {
    refresh_bf16();
    be_->gemm_bf16(trans_a, trans_w, M, N, K, alpha, A, lda, params_bf16_.as<uint16_t>() + offset, ldw, beta, C, ldc);
  } else {
    be_->gemm(trans_a, trans_w, M, N, K, alpha, A, lda, w(offset), ldw, beta, C, ldc);
  }
}

void Transformer::pack_weights(PackedWeights* packed) {
  refresh_bf16();
  const ModelConfig& c = cfg_;
  const int64_t C = c.hidden, V = c.vocab, AD = int64_t(c.heads) * c.head_dim;
  auto pack = [&](int64_t K, int64_t N, int64_t offset, PackedWeight* out) {
    if (weight_dtype_ == DType::BF16)
      be_->gemm_pack_b_bf16(true, K, N, params_bf16_.as<uint16_t>() + offset, K, out);
    else
      be_->gemm_pack_b(true, K, N, w(offset), K, out);
  };
  packed->layers.resize(c.layers);
  for (int l = 0; l < c.layers; ++l) {
    const LayerOffsets& o = layout_.layers[l];
    PackedLayer& pl = packed->layers[l];
    pack(C, c.qkv_width(), o.wqkv, &pl.qkv);
    pack(AD, C, o.wo, &pl.o);
    pack(C, 2 * int64_t(c.ffn), o.wgu, &pl.gu);
    pack(c.ffn, C, o.wdown, &pl.down);
  }
  pack(C, V, layout_.lm_head, &packed->lm_head);
}

bool Transformer::set_gradient_ready_hook(std::function<void(int64_t)> ready) {
  grad_ready_ = nullptr;
  if (!ready) return true;
  // the host backend only (gradients final when a kernel returns), the whole model trainable, not a shard
  if (device() != Device::Cpu || frozen_base() || shard_.comm || layout_.trainable_begin != 0) return false;
  // layer l's views: names "model.layers.<l>."; each layer one contiguous run, in order, after the
  // embedding and before the final norm and the heads (what `from` decreasing through them needs)
  const int L = cfg_.layers;
  std::vector<int64_t> begin(L + 1, -1), end(L, -1);
  int64_t heads_begin = layout_.total;
  for (const auto& v : layout_.views) {
    int l = -1;
    if (std::sscanf(v.name.c_str(), "model.layers.%d.", &l) == 1 && l >= 0 && l < L) {
      begin[l] = begin[l] < 0 ? v.offset : std::min(begin[l], v.offset);
      end[l] = std::max(end[l], v.offset + v.size);
    } else if (v.offset != layout_.embed) {
      heads_begin = std::min(heads_begin, v.offset);
    }
  }
  begin[L] = heads_begin;
  for (int l = 0; l < L; ++l)
    if (begin[l] < 0 || end[l] != begin[l + 1] || (l == 0 && begin[0] <= layout_.embed)) return false;
  layer_begin_ = std::move(begin);
  grad_ready_ = std::move(ready);
  return true;
}

float* Transformer::lora_scratch(int64_t N) {
  return static_cast<float*>(
      grow_buffer(lora_buf_, static_cast<size_t>(2 * N * cfg_.lora_rank) * sizeof(float), be_->device()));
}

void Transformer::lora_forward(int l, LoraSite site, const float* x, int64_t N, float* out, int64_t ld_out) {
  if (!adapters_on_) return;
  const int64_t r = cfg_.lora_rank;
  for (const LoraAdapter& ad : layout_.layers[l].lora) {
    if (ad.site != site) continue;
    float* t = lora_scratch(N);
    be_->gemm(false, true, N, r, ad.in, 1.0f, x, ad.in, w(ad.a), ad.in, 0.0f, t, r);
    be_->gemm(false, true, N, ad.out, r, cfg_.lora_scale(), t, r, w(ad.b), r, 1.0f, out + ad.out_begin, ld_out);
  }
}

int64_t Transformer::activation_floats_per_token_per_layer(const ModelConfig& c) {
  return 2 * int64_t(c.hidden) + 2 + c.qkv_width() + c.heads + int64_t(c.heads) * c.head_dim + 2 * int64_t(c.ffn) +
         qk_norm_floats_per_token(c) + sandwich_floats_per_token(c);
}

int64_t sandwich_floats_per_token(const ModelConfig& c) {
  return c.sandwich_norms != kSandwichNone ? 2 * int64_t(c.hidden) + 2 : 0;
}

float* carve_extra_slots(LayerActs* a, float* base, const ModelConfig& c, int64_t N) {
  a->qk_raw = base;
  a->qk_rstd = a->qk_raw + N * int64_t(c.heads + c.kv_heads) * c.head_dim * c.qk_norm;
  base += N * qk_norm_floats_per_token(c);
  const int64_t C = c.sandwich_norms != kSandwichNone ? c.hidden : 0;
  a->attn_o = base;
  a->rstd_ao = a->attn_o + N * C;
  a->mlp_o = a->rstd_ao + (C ? N : 0);
  a->rstd_mo = a->mlp_o + N * C;
  return base + N * sandwich_floats_per_token(c);
}

int64_t qk_norm_floats_per_token(const ModelConfig& c) {
  return c.qk_norm ? int64_t(c.heads + c.kv_heads) * (c.head_dim + 1) : 0;
}

void Transformer::qk_norm_forward(int l, const LayerActs& a, int64_t N) {
  const ModelConfig& c = cfg_;
  const LayerOffsets& o = layout_.layers[l];
  const int64_t QW = c.qkv_width(), AD = int64_t(c.heads) * c.head_dim, QK = int64_t(c.heads + c.kv_heads) * c.head_dim;
  parallel_for(N, 64, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) std::memcpy(a.qk_raw + r * QK, a.qkv + r * QW, sizeof(float) * QK);
  });
  const int NH = c.heads, KVH = c.kv_heads;
  be_->rmsnorm_heads_forward(a.qkv, QW, a.qk_rstd, a.qk_raw, QK, nw(o.q_norm), N, NH, c.head_dim, c.rms_eps);
  // k's rstd after q's: (N, NH) then (N, KVH)
  be_->rmsnorm_heads_forward(a.qkv + AD, QW, a.qk_rstd + N * NH, a.qk_raw + AD, QK, nw(o.k_norm), N, KVH, c.head_dim,
                             c.rms_eps);
}

float* Transformer::scratch(size_t floats) {
  return static_cast<float*>(grow_buffer(scratch_, floats * sizeof(float), be_->device()));
}

void Transformer::release_activations() {
  saved_ = Saved();
  scratch_ = Buffer();
  lora_buf_ = Buffer();
}

int64_t Transformer::activation_bytes() const {
  return static_cast<int64_t>(saved_.acts.bytes() + saved_.lm.bytes() + scratch_.bytes() + lora_buf_.bytes());
}

void Transformer::linear(const float* A, int64_t N, int64_t in, int64_t offset, int64_t out, float beta, float* C,
                         const void* packed) {
  if (packed)
    be_->gemm_packed_b(false, N, 1.0f, A, in, *static_cast<const PackedWeight*>(packed), beta, C, out);
  else
    gemm_weight(false, true, N, out, in, 1.0f, A, in, offset, in, beta, C, out);
}

// ---------------------------------------------------------------------------------------------
// One layer, shared by training forward, inference forward and generation (identical arithmetic).

void Transformer::layer_forward(int l, const float* x_in, float* x_out, const LayerActs& a, int64_t B, int64_t T,
                                const int64_t* lengths, const int32_t* pos, const int32_t* segments, KvCache* cache,
                                const int64_t* kv_seq, const int64_t* kv_offset) {
  const ModelConfig& c = cfg_;
  const LayerOffsets& o = layout_.layers[l];
  const int64_t N = B * T, C = c.hidden, QW = c.qkv_width(), AD = int64_t(c.heads) * c.head_dim, F = c.ffn;
  const int64_t KVD = int64_t(c.kv_heads) * c.head_dim;

  be_->rmsnorm_forward(a.h, a.rstd1, x_in, nw(o.in_norm), N, static_cast<int>(C), c.rms_eps);
  const PackedLayer* pl = packed_ ? &packed_->layers[l] : nullptr;
  linear(a.h, N, C, o.wqkv, QW, 0.0f, a.qkv, pl ? &pl->qkv : nullptr);
  if (o.bqkv >= 0) be_->add_row_bias(a.qkv, w(o.bqkv), N, QW);
  lora_forward(l, LoraSite::kQkv, a.h, N, a.qkv, QW);
  if (c.qk_norm) qk_norm_forward(l, a, N);
  be_->rope_apply(a.qkv, N, QW, c.heads, c.head_dim, pos, rope_for(l), false);
  be_->rope_apply(a.qkv + AD, N, QW, c.kv_heads, c.head_dim, pos, rope_for(l), false);

  cpu::AttentionArgs at;
  at.B = B, at.NH = c.heads, at.KVH = c.kv_heads, at.HD = c.head_dim;
  at.scale = attention_scale();
  at.Tq = T, at.q = a.qkv, at.ldq = QW, at.q_len = lengths, at.segments = segments;
  at.window = c.is_sliding(l) ? c.sliding_window : 0;
  at.softcap = c.attn_softcap;
  if (cache) {
    cache_store(*be_, cache, l, a.qkv + AD, a.qkv + AD + KVD, QW, B, T, lengths, kv_seq, kv_offset, KVD);
    cache_bind(cache, l, kv_seq, kv_offset, &at);
  } else {
    at.k = a.qkv + AD, at.v = a.qkv + AD + KVD, at.ldk = at.ldv = QW, at.kv_stride = T;
  }
  be_->attention_forward(at, a.attn, AD, a.lse);

  // Row-parallel o: rank 0 adds the residual and bias, the partial products are summed. With
  // sandwich norms the output goes to attn_o first (no residual), is normalised, then added.
  const bool lead = shard_.rank == 0, sandwich = c.sandwich_norms != kSandwichNone;
  float* o_out = sandwich ? a.attn_o : a.xmid;
  if (lead && !sandwich)
    be_->copy_rows(a.xmid, x_in, N * C);
  else
    be_->fill(o_out, 0.0f, N * C);
  linear(a.attn, N, AD, o.wo, C, 1.0f, o_out, pl ? &pl->o : nullptr);
  lora_forward(l, LoraSite::kO, a.attn, N, o_out, C);
  if (o.bo >= 0 && lead) be_->add_row_bias(o_out, w(o.bo), N, C);
  sum_over_ranks(o_out, N * C);
  if (sandwich) add_normed(a.xmid, x_in, a.h, a.rstd_ao, a.attn_o, o.attn_out_norm, N);

  be_->rmsnorm_forward(a.h, a.rstd2, a.xmid, nw(o.post_norm), N, static_cast<int>(C), c.rms_eps);
  linear(a.h, N, C, o.wgu, 2 * F, 0.0f, a.gu, pl ? &pl->gu : nullptr);
  lora_forward(l, LoraSite::kGateUp, a.h, N, a.gu, 2 * F);
  if (c.gelu_tanh)
    be_->geglu_forward(a.act, a.gu, N, static_cast<int>(F));
  else
    be_->swiglu_forward(a.act, a.gu, N, static_cast<int>(F));
  float* m_out = sandwich ? a.mlp_o : x_out;
  if (lead && !sandwich)
    be_->copy_rows(x_out, a.xmid, N * C);
  else
    be_->fill(m_out, 0.0f, N * C);
  linear(a.act, N, F, o.wdown, C, 1.0f, m_out, pl ? &pl->down : nullptr);
  lora_forward(l, LoraSite::kDown, a.act, N, m_out, C);
  sum_over_ranks(m_out, N * C);
  if (sandwich) add_normed(x_out, a.xmid, a.h, a.rstd_mo, a.mlp_o, o.mlp_out_norm, N);
}

LayerActs Transformer::layer_slots(float* base, int64_t N) const {
  const ModelConfig& c = cfg_;
  const int64_t C = c.hidden;
  LayerActs a{};
  a.x_in = base;
  a.xmid = base + N * C;
  a.rstd1 = base + 2 * N * C;
  a.rstd2 = a.rstd1 + N;
  a.qkv = a.rstd2 + N;
  a.lse = a.qkv + N * c.qkv_width();
  a.attn = a.lse + N * c.heads;
  a.gu = carve_extra_slots(&a, a.attn + N * int64_t(c.heads) * c.head_dim, c, N);  // qk_norm, sandwich slots
  return a;
}

// Layer l's saved activations; checkpointed, only x_in (the rest is recompute_layer's).
LayerActs Transformer::saved_layer(int l) {
  float* base = saved_.acts.as<float>() + l * saved_.per_layer;
  if (saved_.checkpointed) {
    LayerActs a{};
    a.x_in = base;
    return a;
  }
  return layer_slots(base, saved_.N);
}

// ---------------------------------------------------------------------------------------------
// forward

void Transformer::forward(const ForwardInput& in, const ForwardOutput& out) {
  const ModelConfig& c = cfg_;
  RLHF_CHECK(in.B >= 1 && in.T >= 1, ErrorCode::OutOfRange, "forward: batch and seqLen must be >= 1");
  RLHF_CHECK(in.temperature > 0 && std::isfinite(in.temperature), ErrorCode::OutOfRange,
             "forward: temperature must be finite and > 0, got ", in.temperature);
  const int64_t B = in.B, T = in.T, N = B * T, C = c.hidden;
  RLHF_CHECK(in.adapters || !in.save, ErrorCode::InvalidArgument,
             "forward: the base model without its adapters is for inference (saveForBackward: false)");
  Inputs inputs = check_inputs(c, vocab_total(), in);  // lengths, positions, masked targets (owned copies)
  refresh_bf16();
  Staging staged(be_);  // the per-row inputs where the backend reads them, and the values output
  const int32_t* tokens = staged.to_device(in.tokens, N);
  const int64_t* lengths = staged.to_device(inputs.lengths);
  const int32_t* positions = staged.to_device(inputs.positions);
  const int32_t* segments = staged.to_device(in.segments, N);
  adapters_on_ = in.adapters;
  ensure_rope(inputs.max_position);
  refresh_norm_shadow();

  release_activations();
  const int64_t per_layer = N * activation_floats_per_token_per_layer(c);
  // keep_all: every layer's activations saved; otherwise they live in one layer's scratch (sa)
  // and, when saving checkpointed, only each layer's input is kept
  const bool keep_all = in.save && !checkpointing_;
  LayerActs sa{};
  float* x = nullptr;  // the residual stream buffers
  if (in.save) {
    const int64_t kept = keep_all ? per_layer : N * C;
    saved_.acts = Buffer(static_cast<size_t>(kept * c.layers + N * (2 * C + 1)) * sizeof(float), false, device());
    saved_.per_layer = kept;
    saved_.final_off = kept * c.layers;
    saved_.B = B, saved_.T = T, saved_.N = N;
    saved_.checkpointed = !keep_all;
  }
  // scratch: h, act (and, unless keep_all, one layer's activations + a second residual buffer)
  const int64_t scratch_floats = N * (C + c.ffn) + (keep_all ? 0 : per_layer + N * C);
  float* sc = scratch(static_cast<size_t>(scratch_floats));
  float* x_other = nullptr;
  if (!keep_all) {
    sa = layer_slots(sc + N * (C + c.ffn), N);
    x_other = sa.gu + N * 2 * c.ffn;
  }
  x = in.save ? saved_layer(0).x_in : sa.x_in;
  embed_tokens(x, tokens, N);
  sum_over_ranks(x, N * C);
  scale_embeddings(x, N);
  for (int l = 0; l < c.layers; ++l) {
    LayerActs a = keep_all ? saved_layer(l) : sa;
    a.h = sc;
    a.act = sc + N * C;
    float* x_next = in.save ? (l + 1 < c.layers ? saved_layer(l + 1).x_in : saved_.acts.as<float>() + saved_.final_off)
                            : (x == sa.x_in ? x_other : sa.x_in);
    if (!keep_all) a.x_in = x;
    layer_forward(l, x, x_next, a, B, T, lengths, positions, segments, nullptr, nullptr, nullptr);
    x = x_next;
  }
  // final norm: xf and rstd_f saved after the final residual (or in scratch)
  float* xf;
  float* rstd_f;
  if (in.save) {
    xf = saved_.acts.as<float>() + saved_.final_off + N * C;
    rstd_f = xf + N * C;
  } else {
    xf = sc;  // h is free now
    rstd_f = nullptr;
  }
  be_->rmsnorm_forward(xf, rstd_f, x, nw(layout_.final_norm), N, static_cast<int>(C), c.rms_eps);

  if (c.lm_head && (in.targets || out.logits)) {
    RLHF_CHECK(!out.logits || N * vocab_total() <= (int64_t(1) << 26), ErrorCode::OutOfRange,
               "forward: returning logits needs batch·seqLen·vocab <= 2^26, got ", N * vocab_total());
    lm_head_forward(xf, N, inputs.targets.data(), in.temperature, out, in.save);
  } else {
    if (out.logprobs) std::fill(out.logprobs, out.logprobs + N, 0.0f);
    if (out.entropy) std::fill(out.entropy, out.entropy + N, 0.0f);
  }
  if (c.value_head)
    be_->value_head_forward(xf, w(layout_.score), N, C, T, lengths, staged.output(out.values, N));
  else if (out.values)
    std::fill(out.values, out.values + N, 0.0f);
  staged.flush();

  if (in.save) {
    saved_.valid = true;
    saved_.temperature = in.temperature;
    saved_.entropy = in.entropy;
    saved_.tokens.assign(in.tokens, in.tokens + N);
    saved_.positions = std::move(inputs.positions);
    saved_.lengths = std::move(inputs.lengths);
    if (in.segments) saved_.segments.assign(in.segments, in.segments + N);
    saved_.staged = Staging(be_);
    saved_.d_tokens = saved_.staged.to_device(saved_.tokens);
    saved_.d_positions = saved_.staged.to_device(saved_.positions);
    saved_.d_segments = saved_.staged.to_device(saved_.segments);
    saved_.d_lengths = saved_.staged.to_device(saved_.lengths);
  }
}

}  // namespace model
}  // namespace rlhf
