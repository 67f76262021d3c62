// Transformer construction, initialisation and forward (see transformer.h for the contracts).
#include "transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/error.h"
#include "../core/rng.h"
#include "../core/thread_pool.h"
#include "../cpu/attention.h"
#include "../cpu/embedding.h"
#include "../cpu/gemm.h"
#include "../cpu/logsoftmax.h"
#include "../cpu/rmsnorm.h"
#include "../cpu/swiglu.h"
#include "internal.h"

namespace rlhf {
namespace model {

Transformer::Transformer(const ModelConfig& config, float* params, float* grads, std::shared_ptr<Backend> backend)
    : cfg_((validate_config(config), config)),
      layout_(build_layout(cfg_)),
      backend_(backend ? std::move(backend) : make_backend(Device::Cpu)),
      be_(backend_.get()),
      params_(params ? 0 : static_cast<size_t>(layout_.total) * sizeof(float), true, be_->device()),
      grads_(grads ? 0 : static_cast<size_t>(layout_.total) * sizeof(float), true, be_->device()),
      params_ptr_(params ? params : params_.as<float>()),
      grads_ptr_(grads ? grads : grads_.as<float>()),
      rope_(cfg_.rotary_dim, cfg_.rope_theta, cfg_.rope_interleaved, cfg_.rope_inv_freq, cfg_.rope_attention_scaling,
            cfg_.rope_position_limit) {
  RLHF_CHECK(!(params || grads) || be_->device() == Device::Cpu, ErrorCode::Internal,
             "Transformer: external parameter storage is host memory");
}

void init_parameter(const ParamView& v, uint64_t index, uint64_t seed, float std, float* p) {
  RLHF_CHECK(std::isfinite(std) && std >= 0, ErrorCode::OutOfRange, "init: std must be finite and >= 0, got ", std);
  if (v.name.find(".lora_B.") != std::string::npos) return void(std::fill(p, p + v.size, 0.0f));  // PEFT: B = 0
  if (v.name.find(".lora_A.") != std::string::npos)  // PEFT's kaiming_uniform(a=√5) variance, 1/(3·in)
    return philox_normal_fill(seed, index, 0.0f, 1.0f / std::sqrt(3.0f * static_cast<float>(v.shape[1])), p, v.size);
  const bool is_norm = v.name.find("norm") != std::string::npos;
  const bool is_bias = v.name.size() > 5 && v.name.compare(v.name.size() - 5, 5, ".bias") == 0;
  if (is_norm)
    std::fill(p, p + v.size, 1.0f);
  else if (is_bias)
    std::fill(p, p + v.size, 0.0f);
  else
    philox_normal_fill(seed, index, 0.0f, std, p, v.size);
}

void Transformer::init_random(uint64_t seed, float std) {
  RLHF_CHECK(std::isfinite(std) && std >= 0, ErrorCode::OutOfRange, "init: std must be finite and >= 0, got ", std);
  const auto& views = layout_.views;
  Buffer host(device() == Device::Cpu ? 0 : static_cast<size_t>(layout_.total) * sizeof(float), false);
  float* p = device() == Device::Cpu ? params() : host.as<float>();  // initialised on the host
  parallel_for(static_cast<int64_t>(views.size()), 1, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) init_parameter(views[i], static_cast<uint64_t>(i), seed, std, p + views[i].offset);
  });
  if (p != params()) be_->copy(params(), device(), p, Device::Cpu, sizeof(float) * layout_.total);
}

void Transformer::read_parameter(const ParamView& v, bool grad, float* out) {
  be_->copy(out, Device::Cpu, (grad ? grads() : params()) + v.offset, device(), sizeof(float) * v.size);
}

void Transformer::write_parameter(const ParamView& v, const float* data) {
  be_->copy(params() + v.offset, device(), data, Device::Cpu, sizeof(float) * v.size);
}

OptimizerView Transformer::optimizer_view() {
  OptimizerView o;
  o.backend = be_;
  const int64_t begin = layout_.trainable_begin;  // 0 unless LoRA freezes the base
  o.params = params() + begin, o.grads = grads() + begin, o.size = layout_.total - begin;
  for (const auto& v : layout_.views) {
    if (v.offset < begin) continue;
    if (!o.segments.empty() && o.segments.back().weight_decay_scale == v.weight_decay_scale)
      o.segments.back().length += v.size;
    else
      o.segments.push_back({v.offset - begin, v.size, v.weight_decay_scale});
  }
  return o;
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

void Transformer::zero_grad() { be_->fill(grads(), 0.0f, layout_.total); }

int64_t Transformer::activation_floats_per_token_per_layer(const ModelConfig& c) {
  return 2 * int64_t(c.hidden) + 2 + c.qkv_width() + c.heads + int64_t(c.heads) * c.head_dim + 2 * int64_t(c.ffn);
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
    be_->gemm(false, true, N, out, in, 1.0f, A, in, w(offset), in, beta, C, out);
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

  be_->rmsnorm_forward(a.h, a.rstd1, x_in, w(o.in_norm), N, static_cast<int>(C), c.rms_eps);
  const PackedLayer* pl = packed_ ? &packed_->layers[l] : nullptr;
  linear(a.h, N, C, o.wqkv, QW, 0.0f, a.qkv, pl ? &pl->qkv : nullptr);
  if (o.bqkv >= 0) be_->add_row_bias(a.qkv, w(o.bqkv), N, QW);
  lora_forward(l, LoraSite::kQkv, a.h, N, a.qkv, QW);
  be_->rope_apply(a.qkv, N, QW, c.heads, c.head_dim, pos, rope_, false);
  be_->rope_apply(a.qkv + AD, N, QW, c.kv_heads, c.head_dim, pos, rope_, false);

  cpu::AttentionArgs at;
  at.B = B, at.NH = c.heads, at.KVH = c.kv_heads, at.HD = c.head_dim;
  at.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  at.Tq = T, at.q = a.qkv, at.ldq = QW, at.q_len = lengths, at.segments = segments;
  if (cache) {
    cache_store(*be_, cache, l, a.qkv + AD, a.qkv + AD + KVD, QW, B, T, lengths, kv_seq, kv_offset, KVD);
    at.k = cache_k(cache, l), at.v = cache_v(cache, l), at.ldk = at.ldv = KVD, at.kv_stride = cache_len(cache);
    at.kv_seq = kv_seq, at.kv_offset = kv_offset;
  } else {
    at.k = a.qkv + AD, at.v = a.qkv + AD + KVD, at.ldk = at.ldv = QW, at.kv_stride = T;
  }
  be_->attention_forward(at, a.attn, AD, a.lse);

  // Row-parallel o: rank 0 adds the residual and bias, the partial products are summed.
  const bool lead = shard_.rank == 0;
  if (lead)
    be_->copy_rows(a.xmid, x_in, N * C);
  else
    be_->fill(a.xmid, 0.0f, N * C);
  linear(a.attn, N, AD, o.wo, C, 1.0f, a.xmid, pl ? &pl->o : nullptr);
  lora_forward(l, LoraSite::kO, a.attn, N, a.xmid, C);
  if (o.bo >= 0 && lead) be_->add_row_bias(a.xmid, w(o.bo), N, C);
  sum_over_ranks(a.xmid, N * C);

  be_->rmsnorm_forward(a.h, a.rstd2, a.xmid, w(o.post_norm), N, static_cast<int>(C), c.rms_eps);
  linear(a.h, N, C, o.wgu, 2 * F, 0.0f, a.gu, pl ? &pl->gu : nullptr);
  lora_forward(l, LoraSite::kGateUp, a.h, N, a.gu, 2 * F);
  be_->swiglu_forward(a.act, a.gu, N, static_cast<int>(F));
  if (lead)
    be_->copy_rows(x_out, a.xmid, N * C);
  else
    be_->fill(x_out, 0.0f, N * C);
  linear(a.act, N, F, o.wdown, C, 1.0f, x_out, pl ? &pl->down : nullptr);
  lora_forward(l, LoraSite::kDown, a.act, N, x_out, C);
  sum_over_ranks(x_out, N * C);
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
  a.gu = a.attn + N * int64_t(c.heads) * c.head_dim;
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
  Staging staged(be_);  // the per-row inputs where the backend reads them, and the values output
  const int32_t* tokens = staged.to_device(in.tokens, N);
  const int64_t* lengths = staged.to_device(inputs.lengths);
  const int32_t* positions = staged.to_device(inputs.positions);
  const int32_t* segments = staged.to_device(in.segments, N);
  adapters_on_ = in.adapters;
  rope_.ensure(inputs.max_position);

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
  be_->embedding_forward(x, w(layout_.embed), tokens, N, c.vocab, static_cast<int>(C), shard_.vocab_begin);
  sum_over_ranks(x, N * C);
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
  be_->rmsnorm_forward(xf, rstd_f, x, w(layout_.final_norm), N, static_cast<int>(C), c.rms_eps);

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
