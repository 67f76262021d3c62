// Transformer backward (see transformer.h). Layer by layer in reverse, recomputing the cheap
// per-row values (normalised inputs, silu(gate)·up) instead of saving them. Parameter gradients
// accumulate; every GEMM writes either an activation gradient (beta 0) or adds into a parameter
// gradient (beta 1).
#include <cmath>
#include <cstring>

#include "../core/error.h"
#include "../core/thread_pool.h"
#include "../cpu/attention.h"
#include "../cpu/embedding.h"
#include "../cpu/gemm.h"
#include "../cpu/rmsnorm.h"
#include "../cpu/rope.h"
#include "../cpu/geglu.h"
#include "../cpu/swiglu.h"
#include "internal.h"

namespace rlhf {
namespace model {

void Transformer::layer_backward(int l, float* dx, const LayerActs& a, const BackScratch& s) {
  const ModelConfig& c = cfg_;
  const LayerOffsets& o = layout_.layers[l];
  const int64_t N = saved_.N, T = saved_.T, C = c.hidden, QW = c.qkv_width(), AD = int64_t(c.heads) * c.head_dim;
  const int64_t F = c.ffn, KVD = int64_t(c.kv_heads) * c.head_dim;

  // MLP: x_out = xmid + act·Wdownᵀ, act = swiglu(h2·Wguᵀ), h2 = rmsnorm(xmid)
  // (sandwich norms: x_out = xmid + rmsnorm(mlp_o), mlp_o = act·Wdownᵀ; dy = d(mlp_o) in s.dh)
  be_->rmsnorm_apply(s.h, a.xmid, nw(o.post_norm), a.rstd2, N, static_cast<int>(C));
  if (c.gelu_tanh)
    be_->geglu_forward(s.act, a.gu, N, static_cast<int>(F));
  else
    be_->swiglu_forward(s.act, a.gu, N, static_cast<int>(F));
  const bool base = !frozen_base();  // LoRA: no gradients for the base weights
  const float* dy = sandwich_backward(o.mlp_out_norm, a.mlp_o, a.rstd_mo, dx, s.dh, N);
  if (base) be_->gemm(true, false, C, F, N, 1.0f, dy, C, s.act, F, 1.0f, g(o.wdown), F);
  gemm_weight(false, false, N, F, C, 1.0f, dy, C, o.wdown, F, 0.0f, s.da, F);
  lora_backward(l, LoraSite::kDown, s.act, dy, C, s.da, N);
  if (c.gelu_tanh)
    be_->geglu_backward(s.dgu, s.da, a.gu, N, static_cast<int>(F));
  else
    be_->swiglu_backward(s.dgu, s.da, a.gu, N, static_cast<int>(F));
  if (base) be_->gemm(true, false, 2 * F, C, N, 1.0f, s.dgu, 2 * F, s.h, C, 1.0f, g(o.wgu), C);
  gemm_weight(false, false, N, C, 2 * F, 1.0f, s.dgu, 2 * F, o.wgu, C, 0.0f, s.dh, C);
  lora_backward(l, LoraSite::kGateUp, s.h, s.dgu, 2 * F, s.dh, N);
  sum_over_ranks(s.dh, N * C);  // column-parallel gate/up: partial input gradients
  be_->rmsnorm_backward(dx, dw(o.post_norm), s.dh, a.xmid, nw(o.post_norm), a.rstd2, N, static_cast<int>(C));

  // Attention: xmid = x_in + attn·Woᵀ (+ bo)   (sandwich norms: x_in + rmsnorm(attn_o), dy = d(attn_o))
  dy = sandwich_backward(o.attn_out_norm, a.attn_o, a.rstd_ao, dx, s.dh, N);
  if (base) be_->gemm(true, false, C, AD, N, 1.0f, dy, C, a.attn, AD, 1.0f, g(o.wo), AD);
  if (base && o.bo >= 0) be_->column_sums(g(o.bo), dy, N, C);
  gemm_weight(false, false, N, AD, C, 1.0f, dy, C, o.wo, AD, 0.0f, s.dattn, AD);
  lora_backward(l, LoraSite::kO, a.attn, dy, C, s.dattn, N);
  be_->fill(s.dqkv, 0.0f, N * QW);
  cpu::AttentionArgs at;
  at.B = saved_.B, at.NH = c.heads, at.KVH = c.kv_heads, at.HD = c.head_dim;
  at.scale = attention_scale();
  at.Tq = T, at.q = a.qkv, at.ldq = QW, at.k = a.qkv + AD, at.v = a.qkv + AD + KVD, at.ldk = at.ldv = QW;
  at.kv_stride = T, at.q_len = saved_.d_lengths;
  at.segments = saved_.d_segments;
  at.window = c.is_sliding(l) ? c.sliding_window : 0;
  at.softcap = c.attn_softcap;
  be_->attention_backward(at, a.attn, AD, a.lse, s.dattn, AD, s.dqkv, QW, s.dqkv + AD, QW, s.dqkv + AD + KVD, QW);
  be_->rope_apply(s.dqkv, N, QW, c.heads, c.head_dim, saved_.d_positions, rope_for(l), true);
  be_->rope_apply(s.dqkv + AD, N, QW, c.kv_heads, c.head_dim, saved_.d_positions, rope_for(l), true);
  if (c.qk_norm) qk_norm_backward(l, a, s.dqkv, N);
  be_->rmsnorm_apply(s.h, a.x_in, nw(o.in_norm), a.rstd1, N, static_cast<int>(C));
  if (base) be_->gemm(true, false, QW, C, N, 1.0f, s.dqkv, QW, s.h, C, 1.0f, g(o.wqkv), C);
  if (base && o.bqkv >= 0) be_->column_sums(g(o.bqkv), s.dqkv, N, QW);
  gemm_weight(false, false, N, C, QW, 1.0f, s.dqkv, QW, o.wqkv, C, 0.0f, s.dh, C);
  lora_backward(l, LoraSite::kQkv, s.h, s.dqkv, QW, s.dh, N);
  sum_over_ranks(s.dh, N * C);  // column-parallel q/k/v
  be_->rmsnorm_backward(dx, dw(o.in_norm), s.dh, a.x_in, nw(o.in_norm), a.rstd1, N, static_cast<int>(C));
}

void Transformer::qk_norm_backward(int l, const LayerActs& a, float* dqkv, int64_t N) {
  const ModelConfig& c = cfg_;
  const LayerOffsets& o = layout_.layers[l];
  const int64_t QW = c.qkv_width(), AD = int64_t(c.heads) * c.head_dim, QK = int64_t(c.heads + c.kv_heads) * c.head_dim;
  const int HD = c.head_dim;
  // Each rank holds a share of the heads, so its weight gradients are partial: summed over ranks
  // in a zeroed buffer before they are added (the accumulated gradients are the same on every rank).
  std::vector<float> part(sharded() && !frozen_base() ? 2 * HD : 0, 0.0f);
  float* dq = frozen_base() ? nullptr : sharded() ? part.data() : g(o.q_norm);
  float* dk = frozen_base() ? nullptr : sharded() ? part.data() + HD : g(o.k_norm);
  be_->rmsnorm_heads_backward(dqkv, QW, dq, dqkv, QW, a.qk_raw, QK, nw(o.q_norm), a.qk_rstd, N, c.heads, HD);
  be_->rmsnorm_heads_backward(dqkv + AD, QW, dk, dqkv + AD, QW, a.qk_raw + AD, QK, nw(o.k_norm),
                              a.qk_rstd + N * c.heads, N, c.kv_heads, HD);
  if (!part.empty()) {
    sum_over_ranks(part.data(), 2 * HD);
    for (int i = 0; i < HD; ++i) g(o.q_norm)[i] += part[i], g(o.k_norm)[i] += part[HD + i];
  }
}

// Sandwich norm backward: returns d(src) for y = rmsnorm(src)·w added to the residual, given
// dx = d(residual sum); it is written to tmp (N, C) and the norm's weight gradient accumulates.
// Without sandwich norms (norm < 0): dx itself.
const float* Transformer::sandwich_backward(int64_t norm, const float* src, const float* rstd, const float* dx,
                                            float* tmp, int64_t N) {
  if (norm < 0) return dx;
  const int64_t C = cfg_.hidden;
  be_->fill(tmp, 0.0f, N * C);
  be_->rmsnorm_backward(tmp, dw(norm), dx, src, nw(norm), rstd, N, static_cast<int>(C));
  return tmp;
}

// The layer's forward again, from its saved input, with the arithmetic of the first time (so the
// activations, and the gradients from them, are bit-identical). h and act come from s (free now:
// layer_backward recomputes them itself); under tensor parallelism every rank recomputes in step.
LayerActs Transformer::recompute_layer(int l, float* base, float* x_out, const BackScratch& s) {
  adapters_on_ = true;  // a saved forward always ran with its adapters
  LayerActs a = layer_slots(base, saved_.N);
  a.x_in = saved_layer(l).x_in;
  a.h = s.h;
  a.act = s.act;
  layer_forward(l, a.x_in, x_out, a, saved_.B, saved_.T, saved_.d_lengths, saved_.d_positions, saved_.d_segments,
                nullptr, nullptr, nullptr);
  return a;
}

void Transformer::lora_backward(int l, LoraSite site, const float* x, const float* dy, int64_t ld_dy, float* dx,
                                int64_t N) {
  const int64_t r = cfg_.lora_rank;
  const float scale = cfg_.lora_scale();
  for (const LoraAdapter& ad : layout_.layers[l].lora) {
    if (ad.site != site) continue;
    float* t = lora_scratch(N);
    float* dt = t + N * r;
    const float* dyc = dy + ad.out_begin;
    be_->gemm(false, true, N, r, ad.in, 1.0f, x, ad.in, w(ad.a), ad.in, 0.0f, t, r);     // t = x·Aᵀ
    be_->gemm(true, false, ad.out, r, N, scale, dyc, ld_dy, t, r, 1.0f, g(ad.b), r);     // dB += s·dyᵀ·t
    be_->gemm(false, false, N, r, ad.out, scale, dyc, ld_dy, w(ad.b), r, 0.0f, dt, r);   // dt = s·dy·B
    be_->gemm(true, false, r, ad.in, N, 1.0f, dt, r, x, ad.in, 1.0f, g(ad.a), ad.in);    // dA += dtᵀ·x
    be_->gemm(false, false, N, ad.in, r, 1.0f, dt, r, w(ad.a), ad.in, 1.0f, dx, ad.in);  // dx += dt·A
  }
}

void Transformer::check_backward(const BackwardInput& in) const {
  const ModelConfig& c = cfg_;
  RLHF_CHECK(trainable_, ErrorCode::InvalidState,
             "backward: the model was made with trainable: false (frozen: it has no gradients); "
             "run its forward with saveForBackward: false");
  RLHF_CHECK(saved_.valid, ErrorCode::InvalidState,
             "backward: no saved activations; call forward({..., saveForBackward: true}) first");
  RLHF_CHECK(!saved_.backward_done, ErrorCode::InvalidState,
             "backward: already ran on the last forward's activations; run forward again before another backward "
             "(gradients accumulate across forward/backward pairs)");
  RLHF_CHECK(!in.dentropy || saved_.entropy, ErrorCode::InvalidArgument,
             "backward: dEntropy needs the forward to have computed entropy (forward({entropy: true}))");
  RLHF_CHECK(!in.dvalues || c.value_head, ErrorCode::InvalidArgument,
             "backward: dValues given but the model has no value head");
  RLHF_CHECK(!(in.dlogprobs || in.dentropy) || c.lm_head, ErrorCode::InvalidArgument,
             "backward: dLogprobs/dEntropy given but the model has no LM head");
}

void Transformer::backward(const BackwardInput& in) {
  const ModelConfig& c = cfg_;
  check_backward(in);
  saved_.backward_done = true;  // set before any gradient moves: a failed backward is not retried either
  const int64_t N = saved_.N, C = c.hidden, F = c.ffn, QW = c.qkv_width(), AD = int64_t(c.heads) * c.head_dim;

  // checkpointed: one layer's recomputed activations and its (discarded) output after the rest
  const int64_t recompute = saved_.checkpointed ? N * activation_floats_per_token_per_layer(c) + N * C : 0;
  const int64_t sizes[] = {N * C, N * F, N * C, N * C, N * F, N * 2 * F, N * QW, N * AD, recompute};
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  float* base = scratch(static_cast<size_t>(total));
  BackScratch s;
  float** slots[] = {&s.h, &s.act, &s.dx, &s.dh, &s.da, &s.dgu, &s.dqkv, &s.dattn};
  for (int i = 0; i < 8; ++i) *slots[i] = base, base += sizes[i];
  float* layer_base = base;  // the recompute slots (when checkpointed)

  // Heads -> d(xf) in s.dh
  float* dxf = s.dh;
  be_->fill(dxf, 0.0f, N * C);
  if (c.lm_head) lm_head_backward(in.dlogprobs, in.dentropy, dxf);
  const float* xf = saved_.acts.as<float>() + saved_.final_off + N * C;
  if (c.value_head && in.dvalues) {
    Staging staged(be_);
    be_->value_head_backward(dxf, g(layout_.score), staged.to_device(in.dvalues, N), xf, w(layout_.score), N, C,
                             saved_.T, saved_.d_lengths);
  }
  // final norm -> d(residual) in s.dx
  be_->fill(s.dx, 0.0f, N * C);
  const float* x_final = saved_.acts.as<float>() + saved_.final_off;
  const float* rstd_f = xf + N * C;
  be_->rmsnorm_backward(s.dx, dw(layout_.final_norm), dxf, x_final, nw(layout_.final_norm), rstd_f, N,
                        static_cast<int>(C));
  if (grad_ready_) gradients_ready(c.layers > 0 ? layer_begin_[c.layers] : layout_.final_norm);
  for (int l = c.layers - 1; l >= 0; --l) {
    const LayerActs a =
        saved_.checkpointed
            ? recompute_layer(l, layer_base, layer_base + N * activation_floats_per_token_per_layer(c), s)
            : saved_layer(l);
    layer_backward(l, s.dx, a, s);
    if (grad_ready_) gradients_ready(layer_begin_[l]);
  }
  scale_embeddings(s.dx, N);  // x = embed_scale·E[token]
  if (!frozen_base())
    be_->embedding_backward(g(layout_.embed), s.dx, saved_.d_tokens, N, c.vocab, static_cast<int>(C),
                            shard_.vocab_begin);
  gradients_ready(0);
}

}  // namespace model
}  // namespace rlhf
