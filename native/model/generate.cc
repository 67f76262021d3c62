// KV-cached batched generation. The prompt batch is prefilled (right-padded, each row to its own
// length), then every step decodes one token for each unfinished row. Every number goes through
// the same layer_forward, GEMMs and row kernels as forward(), so the log-prob returned for a
// sampled token is bit-identical to what forward() computes for it (same thread count, CPU).
//
// Temperature T > 0: the LM-head GEMM computes z = (x·Wᵀ)·(1/T) exactly as forward(temperature = T)
// does (alpha = 1/T in the same kernel), the token is drawn from softmax(z) restricted by top-k /
// top-p, and the log-prob returned is log softmax(z)[token] — the FULL tempered distribution, not
// the renormalised top-k / top-p one. So forward(temperature = T) reproduces it bit for bit, and a
// trainer that samples at T computes ratios against the same π_T. T = 0 (greedy): log-probs at T = 1.
#include <algorithm>
#include <cmath>

#include "../core/error.h"
#include "../core/rng.h"
#include "../cpu/embedding.h"
#include "../cpu/gemm.h"
#include "../cpu/logsoftmax.h"
#include "../cpu/rmsnorm.h"
#include "internal.h"
#include "session.h"

namespace rlhf {
namespace model {

GenerateResult Transformer::generate(const GenerateRequest& req) {
  const ModelConfig& c = cfg_;
  RLHF_CHECK(c.lm_head, ErrorCode::Unsupported,
             "generate: the model has no LM head (it is a *ForSequenceClassification)");
  adapters_on_ = req.adapters;
  const int64_t B = static_cast<int64_t>(req.prompts.size());
  RLHF_CHECK(B >= 1, ErrorCode::OutOfRange, "generate: need at least one prompt");
  RLHF_CHECK(req.max_new_tokens >= 1, ErrorCode::OutOfRange, "generate: maxNewTokens must be >= 1");
  const auto& sp = req.sampling;
  // the logits are tempered in the GEMM, so the sampler sees temperature 1 (or 0: greedy)
  cpu::SamplingParams sp_tempered = sp;
  if (sp.temperature > 0) sp_tempered.temperature = 1.0f;
  RLHF_CHECK(sp.temperature >= 0 && std::isfinite(sp.temperature), ErrorCode::OutOfRange,
             "generate: temperature must be finite and >= 0");
  RLHF_CHECK(sp.top_p > 0 && sp.top_p <= 1, ErrorCode::OutOfRange, "generate: topP must be in (0, 1]");
  RLHF_CHECK(sp.top_k >= 0, ErrorCode::OutOfRange, "generate: topK must be >= 0");
  RLHF_CHECK(req.streams.empty() || static_cast<int64_t>(req.streams.size()) == B, ErrorCode::OutOfRange,
             "generate: streams has ", req.streams.size(), " entries for ", B, " prompts");
  int64_t Tp = 0;
  std::vector<int64_t> plen(B);
  for (int64_t b = 0; b < B; ++b) {
    plen[b] = static_cast<int64_t>(req.prompts[b].size());
    RLHF_CHECK(plen[b] >= 1, ErrorCode::OutOfRange, "generate: prompts[", b, "] is empty");
    for (int32_t t : req.prompts[b])
      RLHF_CHECK(t >= 0 && t < vocab_total(), ErrorCode::OutOfRange, "generate: prompts[", b, "] holds token ", t,
                 " outside the vocabulary [0, ", vocab_total(), ")");
    Tp = std::max(Tp, plen[b]);
  }
  const int64_t S = Tp + req.max_new_tokens;
  RLHF_CHECK(S <= c.max_positions, ErrorCode::OutOfRange, "generate: longest prompt (", Tp, ") + maxNewTokens (",
             req.max_new_tokens, ") exceeds max_position_embeddings (", c.max_positions, ")");
  ensure_rope(S);
  refresh_norm_shadow();
  release_activations();
  const float alpha = sp.temperature > 0 ? 1.0f / sp.temperature : 1.0f;  // as lm_head_forward
  RLHF_CHECK(std::isfinite(alpha), ErrorCode::OutOfRange, "generate: temperature ", sp.temperature,
             " is too small (1/temperature overflows float); use 0 for greedy");
  if (!req.static_batch && !sharded()) return generate_on_session(*this, req);
  RLHF_CHECK(!req.kv_bf16, ErrorCode::Unsupported,
             "generate: kvDtype 'bf16' needs the session (one rank, staticBatch false); the static batch keeps "
             "an f32 KV cache");

  // V: this rank's vocabulary rows (all of them unless sharded); Vt: the full vocabulary
  const int64_t C = c.hidden, V = c.vocab, Vt = vocab_total(), KVD = int64_t(c.kv_heads) * c.head_dim;
  KvCache cache;
  cache.rows = B, cache.len = S, cache.kvd = KVD;
  cache.buf = Buffer(static_cast<size_t>(2 * c.layers * B * S * KVD) * sizeof(float), false, device());

  // Buffers for up to Nmax = B·Tp rows (prefill), reused by the decode steps.
  const int64_t Nmax = B * Tp;
  const int64_t per_layer = Nmax * activation_floats_per_token_per_layer(c);
  Buffer work(static_cast<size_t>(per_layer + Nmax * (2 * C + c.ffn) + B * (C + V + Vt + 1)) * sizeof(float), false,
              device());
  float* wp = work.as<float>();
  LayerActs a{};
  a.x_in = wp;
  a.xmid = a.x_in + Nmax * C;
  a.rstd1 = a.xmid + Nmax * C;
  a.rstd2 = a.rstd1 + Nmax;
  a.qkv = a.rstd2 + Nmax;
  a.lse = a.qkv + Nmax * c.qkv_width();
  a.attn = a.lse + Nmax * c.heads;
  a.gu = carve_extra_slots(&a, a.attn + Nmax * int64_t(c.heads) * c.head_dim, c, Nmax);  // qk_norm, sandwich
  float* x_other = a.gu + Nmax * 2 * c.ffn;
  a.h = x_other + Nmax * C;
  a.act = a.h + Nmax * C;
  float* xlast = a.act + Nmax * c.ffn;                // (B, C) final-norm rows
  float* zrank = xlast + B * C;                       // (B, V) this rank's logits
  float* logits = sharded() ? zrank + B * V : zrank;  // (B, Vt) every rank's
  float* row_lse = zrank + B * (V + Vt);              // (B) when sharded

  // Every weight matrix is used at every decode step: pack each once for this call.
  PackedWeights packed;
  pack_weights(&packed);  // f32 or bf16, as the weights are
  struct Unset {
    const PackedWeights*& p;
    ~Unset() { p = nullptr; }
  } unset{packed_};
  packed_ = &packed;

  GenerateResult res;
  res.tokens.resize(B);
  res.logprobs.resize(B);
  res.stopped.assign(B, false);
  std::vector<int64_t> cur(B, 0);  // tokens in each row's cache
  // rstd of the rows sampled from; the last run's logits (A, Vt) on the host
  Buffer rstd(static_cast<size_t>(B) * sizeof(float), false, device());
  Staging logits_host;
  const float* logits_h = nullptr;

  // Runs the layers on `rows` (A sequences × T positions, tokens (A·T)), each at cache row
  // kv_seq[i] from position kv_off[i], q_len valid positions; leaves each row's last valid
  // position normalised in xlast.
  auto run = [&](int64_t A, int64_t T, const std::vector<int32_t>& tokens, const std::vector<int64_t>& kv_seq,
                 const std::vector<int64_t>& kv_off, const std::vector<int64_t>& q_len) {
    const int64_t N = A * T;
    std::vector<int32_t> pos(N);
    for (int64_t i = 0; i < A; ++i)
      for (int64_t t = 0; t < T; ++t) pos[i * T + t] = static_cast<int32_t>(kv_off[i] + std::min(t, q_len[i] - 1));
    Staging staged(be_);  // the step's per-row arrays where the backend reads them
    const int64_t *seq_d = staged.to_device(kv_seq), *off_d = staged.to_device(kv_off),
                  *len_d = staged.to_device(q_len);
    const int32_t* pos_d = staged.to_device(pos);
    float* x = a.x_in;
    embed_tokens(x, staged.to_device(tokens), N);
    sum_over_ranks(x, N * C);
    scale_embeddings(x, N);
    for (int l = 0; l < c.layers; ++l) {
      float* x_next = (x == a.x_in) ? x_other : a.x_in;
      LayerActs la = a;
      la.x_in = x;
      layer_forward(l, x, x_next, la, A, T, len_d, pos_d, nullptr, &cache, seq_d, off_d);
      x = x_next;
    }
    for (int64_t i = 0; i < A; ++i) be_->copy_rows(a.h + i * C, x + (i * T + q_len[i] - 1) * C, C);
    be_->rmsnorm_forward(xlast, rstd.as<float>(), a.h, nw(layout_.final_norm), A, static_cast<int>(C), c.rms_eps);
    be_->gemm_packed_b(false, A, alpha, xlast, C, packed.lm_head, 0.0f, zrank, V);
    softcap_logits(zrank, A * V, alpha);
    if (sharded()) {  // the log-softmax forward() uses, then the full rows for sampling
      sharded_logsoftmax(zrank, A, nullptr, row_lse, nullptr, nullptr);
      gather_vocab(zrank, A, logits);
    }
    logits_host = Staging(be_);
    logits_h = logits_host.to_host(logits, A * Vt);
  };

  // Samples row seq's next token from logits row i (step = tokens generated so far).
  auto pick = [&](int64_t i, int64_t seq) {
    const float* z = logits_h + i * Vt;  // sampled on the host, for every backend
    const int64_t step = static_cast<int64_t>(res.tokens[seq].size());
    const int64_t stream = req.streams.empty() ? req.stream_offset + seq : req.streams[seq];
    float u = philox_uniform(req.seed, static_cast<uint64_t>(stream), static_cast<uint64_t>(step));
    int32_t tok = cpu::sample_token(z, Vt, sp_tempered, u);
    float lse = sharded() ? row_lse[i] : cpu::row_logsumexp(z, Vt);
    res.tokens[seq].push_back(tok);
    res.logprobs[seq].push_back(z[tok] - lse);
    if (std::find(req.stop_tokens.begin(), req.stop_tokens.end(), tok) != req.stop_tokens.end())
      res.stopped[seq] = true;
  };

  {  // prefill
    std::vector<int32_t> tokens(B * Tp, 0);
    std::vector<int64_t> seq(B), off(B, 0);
    for (int64_t b = 0; b < B; ++b) {
      seq[b] = b;
      std::copy(req.prompts[b].begin(), req.prompts[b].end(), tokens.begin() + b * Tp);
    }
    run(B, Tp, tokens, seq, off, plen);
    for (int64_t b = 0; b < B; ++b) {
      cur[b] = plen[b];
      pick(b, b);
    }
  }
  for (int64_t step = 1; step < req.max_new_tokens; ++step) {
    std::vector<int32_t> tokens;
    std::vector<int64_t> seq, off;
    for (int64_t b = 0; b < B; ++b)
      if (!res.stopped[b]) seq.push_back(b), off.push_back(cur[b]), tokens.push_back(res.tokens[b].back());
    const int64_t A = static_cast<int64_t>(seq.size());
    if (A == 0) break;
    run(A, 1, tokens, seq, off, std::vector<int64_t>(A, 1));
    for (int64_t i = 0; i < A; ++i) {
      cur[seq[i]] += 1;
      pick(i, seq[i]);
    }
  }
  return res;
}

}  // namespace model
}  // namespace rlhf
