// Output heads: the LM head with the fused log-softmax (forward and backward) and the scalar
// value head's backward. Only rows that have a target go through the LM head (prompt and padding
// rows cost nothing); they are processed in chunks of rows so at most kChunkFloats logits exist
// at once, unless all of them fit logits_cache_budget_bytes, in which case forward keeps them for
// backward instead of recomputing.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/error.h"
#include "../core/thread_pool.h"
#include "../cpu/gemm.h"
#include "../cpu/logsoftmax.h"
#include "internal.h"

namespace rlhf {
namespace model {

namespace {
constexpr int64_t kChunkFloats = int64_t(8) << 20;  // 32 MiB of logits per chunk
}  // namespace

// Final logit soft-cap (Gemma 2): logits z = α·x·Wᵀ (α = 1/temperature) become
// α·c·tanh(x·Wᵀ / c) = c'·tanh(z / c') with c' = α·c, so the temperature divides the capped logits.
void Transformer::softcap_logits(float* z, int64_t n, float alpha) const {
  const float c = cfg_.final_softcap * alpha;
  if (cfg_.final_softcap <= 0) return;
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) z[i] = c * std::tanh(z[i] / c);
  });
}

// dz (w.r.t. the capped logits z) ← dz·(1 − (z / c')²): the gradient w.r.t. α·x·Wᵀ.
void Transformer::softcap_logits_backward(float* dz, const float* z, int64_t n, float alpha) const {
  const float c = cfg_.final_softcap * alpha;
  if (cfg_.final_softcap <= 0) return;
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      const float t = z[i] / c;
      dz[i] *= 1.0f - t * t;
    }
  });
}

void Transformer::lm_head_forward(const float* xf, int64_t N, const int32_t* targets, float temperature,
                                  const ForwardOutput& out, bool save) {
  const int64_t V = cfg_.vocab, C = cfg_.hidden, Vt = vocab_total();  // V: this rank's share of Vt
  std::vector<int64_t> rows;
  std::vector<int32_t> tg;
  for (int64_t r = 0; r < N; ++r)
    if (out.logits || targets[r] >= 0) rows.push_back(r), tg.push_back(targets[r]);
  const int64_t M = static_cast<int64_t>(rows.size());
  Staging staged(be_);  // rows and targets where the backend reads them
  const int64_t* rows_d = staged.to_device(rows);
  const int32_t* tg_d = staged.to_device(tg);
  if (out.logprobs) std::fill(out.logprobs, out.logprobs + N, 0.0f);
  if (out.entropy) std::fill(out.entropy, out.entropy + N, 0.0f);
  const bool cache = save && M * V * int64_t(sizeof(float)) <= logits_cache_budget_bytes;
  if (save) {
    saved_.lm = Buffer(static_cast<size_t>(2 * M + (cache ? M * V : 0)) * sizeof(float), false, device());
    saved_.logits_cached = cache;
  }
  Buffer local_lse;
  float* lse = save ? saved_.lm.as<float>() : (local_lse = Buffer(M * sizeof(float), false, device())).as<float>();
  float* ent = save ? lse + M : nullptr;
  const int64_t R = std::max<int64_t>(1, std::min<int64_t>(M, kChunkFloats / Vt));  // the same on every rank
  Buffer chunk_z(cache ? 0 : static_cast<size_t>(R * V) * sizeof(float), false, device());
  Buffer chunk_x(static_cast<size_t>(R * C) * sizeof(float), false, device());
  Buffer chunk_full(out.logits && sharded() ? static_cast<size_t>(R * Vt) * sizeof(float) : 0, false);
  Buffer lp(static_cast<size_t>(R) * sizeof(float), false, device()),
      en(static_cast<size_t>(R) * sizeof(float), false, device());
  const float alpha = 1.0f / temperature;
  for (int64_t m0 = 0; m0 < M; m0 += R) {
    const int64_t n = std::min(R, M - m0);
    float* xc = chunk_x.as<float>();
    be_->gather_rows(xc, xf, rows_d + m0, n, C);
    float* z = cache ? saved_.lm.as<float>() + 2 * M + m0 * V : chunk_z.as<float>();
    gemm_weight(false, true, n, V, C, alpha, xc, C, layout_.lm_head, C, 0.0f, z, V);
    softcap_logits(z, n * V, alpha);
    if (out.logits) {
      const float* full = z;
      if (sharded()) gather_vocab(z, n, chunk_full.as<float>()), full = chunk_full.as<float>();
      for (int64_t m = 0; m < n; ++m)
        be_->copy(out.logits + rows[m0 + m] * Vt, Device::Cpu, full + m * Vt, device(), sizeof(float) * Vt);
    }
    const bool want_ent = out.entropy || save;
    float* ent_out = want_ent ? (ent ? ent + m0 : en.as<float>()) : nullptr;
    if (sharded())
      sharded_logsoftmax(z, n, tg.data() + m0, lse + m0, lp.as<float>(), ent_out);
    else
      be_->logsoftmax_forward(lp.as<float>(), ent_out, lse + m0, z, V, tg_d + m0, n, V);
    Staging back(be_);  // this chunk's per-row results on the host
    const float* lp_h = back.to_host(lp.as<const float>(), n);
    const float* ent_h = out.entropy ? back.to_host<float>(ent_out, n) : nullptr;
    for (int64_t m = 0; m < n; ++m) {
      if (out.logprobs) out.logprobs[rows[m0 + m]] = lp_h[m];
      if (out.entropy) out.entropy[rows[m0 + m]] = ent_h[m];
    }
  }
  if (save) {
    saved_.lm_rows = std::move(rows);
    saved_.lm_targets = std::move(tg);
  }
}

void Transformer::lm_head_backward(const float* dlogp, const float* dent, float* dxf) {
  const int64_t V = cfg_.vocab, C = cfg_.hidden, M = static_cast<int64_t>(saved_.lm_rows.size()), Vt = vocab_total();
  if (M == 0 || (!dlogp && !dent)) return;
  const float* xf = saved_.acts.as<float>() + saved_.final_off + saved_.N * C;
  const float* lse = saved_.lm.as<float>();
  const float* ent = lse + M;
  const int64_t* rows = saved_.lm_rows.data();
  std::vector<float> gl(M), ge(M);
  for (int64_t m = 0; m < M; ++m) {
    gl[m] = dlogp ? dlogp[rows[m]] : 0.0f;
    ge[m] = dent ? dent[rows[m]] : 0.0f;
  }
  Staging staged(be_);  // rows, targets and upstream gradients where the backend reads them
  const int64_t* rows_d = staged.to_device(saved_.lm_rows);
  const int32_t* tg_d = staged.to_device(saved_.lm_targets);
  const float* gl_d = staged.to_device(gl);
  const float* ge_d = staged.to_device(ge);
  const int64_t R = std::max<int64_t>(1, std::min<int64_t>(M, kChunkFloats / Vt));
  Buffer chunk_z(saved_.logits_cached ? 0 : static_cast<size_t>(R * V) * sizeof(float), false, device());
  Buffer chunk_dz(static_cast<size_t>(R * V) * sizeof(float), false, device());
  Buffer chunk_x(static_cast<size_t>(R * C) * sizeof(float), false, device()),
      chunk_dx(static_cast<size_t>(R * C) * sizeof(float), false, device());
  const float alpha = 1.0f / saved_.temperature;
  for (int64_t m0 = 0; m0 < M; m0 += R) {
    const int64_t n = std::min(R, M - m0);
    float* xc = chunk_x.as<float>();
    be_->gather_rows(xc, xf, rows_d + m0, n, C);
    float* z = saved_.logits_cached ? saved_.lm.as<float>() + 2 * M + m0 * V : chunk_z.as<float>();
    if (!saved_.logits_cached) {
      gemm_weight(false, true, n, V, C, alpha, xc, C, layout_.lm_head, C, 0.0f, z, V);
      softcap_logits(z, n * V, alpha);
    }
    float* dz = chunk_dz.as<float>();
    if (sharded())
      sharded_logsoftmax_backward(dz, z, n, saved_.lm_targets.data() + m0, lse + m0, ent + m0, gl.data() + m0,
                                  dent ? ge.data() + m0 : nullptr);
    else
      be_->logsoftmax_backward(dz, V, z, V, tg_d + m0, lse + m0, ent + m0, gl_d + m0, dent ? ge_d + m0 : nullptr, n, V);
    softcap_logits_backward(dz, z, n * V, alpha);
    float* dxc = chunk_dx.as<float>();
    gemm_weight(false, false, n, C, V, alpha, dz, V, layout_.lm_head, C, 0.0f, dxc, C);
    sum_over_ranks(dxc, n * C);  // vocab-parallel: each rank holds a partial d(xf)
    be_->scatter_add_rows(dxf, dxc, rows_d + m0, n, C);
    if (!frozen_base()) be_->gemm(true, false, V, C, n, alpha, dz, V, xc, C, 1.0f, g(layout_.lm_head), C);
  }
}

}  // namespace model
}  // namespace rlhf
