// GenerationSession::step (session.h): the passes through the model, sampling, and
// Transformer::generate's requests run on a session (generate_on_session).
#include <algorithm>
#include <cstring>

#include "../core/error.h"
#include "../core/rng.h"
#include "../core/thread_pool.h"
#include "../cpu/logsoftmax.h"
#include "session.h"

namespace rlhf {
namespace model {

void GenerationSession::run(const std::vector<Seq*>& seqs, int64_t T, const std::vector<int32_t>& tokens,
                            const std::vector<int64_t>& q_len, const std::vector<int64_t>& want) {
  const ModelConfig& c = m_.cfg_;
  Backend* be = m_.be_;
  const int64_t A = static_cast<int64_t>(seqs.size()), N = A * T, C = c.hidden, V = c.vocab, bs = opt_.block_size;
  RLHF_CHECK(N <= Nmax_ && N >= 1, ErrorCode::Internal, "GenerationSession: pass of ", N, " rows");
  std::vector<int32_t> pos(N);
  const size_t G = pools_.size();
  std::vector<int64_t> kv_seq(A), kv_off(A), sslot(N, 0), slen(N, 0);
  // per group: the block tables (A × stride) and the block each row's k/v go to
  std::vector<std::vector<int32_t>> table(G);
  std::vector<std::vector<int64_t>> sblock(G, std::vector<int64_t>(N, 0));
  std::vector<int64_t> stride(G, 1);
  for (size_t g = 0; g < G; ++g) {
    for (const Seq* s : seqs) stride[g] = std::max<int64_t>(stride[g], static_cast<int64_t>(s->kv[g].table.size()));
    table[g].assign(A * stride[g], 0);
    for (int64_t i = 0; i < A; ++i)
      std::copy(seqs[i]->kv[g].table.begin(), seqs[i]->kv[g].table.end(), table[g].begin() + i * stride[g]);
  }
  for (int64_t i = 0; i < A; ++i) {
    const Seq& s = *seqs[i];
    kv_seq[i] = i, kv_off[i] = s.cached;
    for (int64_t t = 0; t < T; ++t) {
      pos[i * T + t] = static_cast<int32_t>(s.cached + std::min(t, q_len[i] - 1));
      if (t < q_len[i]) {
        const int64_t p = s.cached + t;
        sslot[i * T + t] = p % bs, slen[i * T + t] = 1;
        for (size_t g = 0; g < G; ++g) sblock[g][i * T + t] = s.kv[g].table[p / bs];
      }
    }
  }
  Staging staged(be);  // the pass's per-row arrays where the backend reads them
  const int64_t *seq_d = staged.to_device(kv_seq), *off_d = staged.to_device(kv_off), *len_d = staged.to_device(q_len);
  const int32_t* pos_d = staged.to_device(pos);
  const int64_t *sslot_d = staged.to_device(sslot), *slen_d = staged.to_device(slen);
  for (size_t g = 0; g < G; ++g) {
    KvCache& kc = pools_[g]->cache();
    kc.block_table = staged.to_device(table[g]);
    kc.table_stride = stride[g];
    kc.store_block = staged.to_device(sblock[g]), kc.store_slot = sslot_d, kc.store_len = slen_d;
  }

  const LayerActs& a = acts_;
  float* x = a.x_in;
  m_.embed_tokens(x, staged.to_device(tokens), N);
  m_.sum_over_ranks(x, N * C);
  m_.scale_embeddings(x, N);
  for (int l = 0; l < c.layers; ++l) {
    float* x_next = (x == a.x_in) ? x_other_ : a.x_in;
    LayerActs la = a;
    la.x_in = x;
    m_.layer_forward(l, x, x_next, la, A, T, len_d, pos_d, nullptr, &pools_[group_of_[l]]->cache(), seq_d, off_d);
    x = x_next;
  }
  const int64_t W = static_cast<int64_t>(want.size());
  if (W == 0) return;
  for (int64_t k = 0; k < W; ++k) {
    const int64_t i = want[k];
    be->copy_rows(a.h + k * C, x + (i * T + q_len[i] - 1) * C, C);
  }
  be->rmsnorm_forward(xlast_, rstd_.as<float>(), a.h, m_.nw(m_.layout_.final_norm), W, static_cast<int>(C), c.rms_eps);
  // the LM head once per distinct temperature (alpha is applied inside the GEMM, as generate does)
  logits_store_.resize(static_cast<size_t>(W * Vt_));
  std::vector<bool> done(W, false);
  for (int64_t k0 = 0; k0 < W; ++k0) {
    if (done[k0]) continue;
    const float alpha = seqs[want[k0]]->alpha;
    std::vector<int64_t> rows;
    for (int64_t k = k0; k < W; ++k)
      if (!done[k] && seqs[want[k]]->alpha == alpha) rows.push_back(k), done[k] = true;
    const int64_t n = static_cast<int64_t>(rows.size());
    for (int64_t r = 0; r < n; ++r) be->copy_rows(xsel_ + r * C, xlast_ + rows[r] * C, C);
    be->gemm_packed_b(false, n, alpha, xsel_, C, packed_->lm_head, 0.0f, zrank_, V);
    m_.softcap_logits(zrank_, n * V, alpha);
    for (int64_t r = 0; r < n; ++r)
      be->copy(logits_store_.data() + rows[r] * Vt_, Device::Cpu, zrank_ + r * V, be->device(),
               static_cast<size_t>(V) * sizeof(float));
  }
  logits_h_ = logits_store_.data();
}

void GenerationSession::sample(Seq& s, const float* z) {
  const uint64_t step = static_cast<uint64_t>(s.out.tokens.size());
  const float u = philox_uniform(s.req.seed, s.req.stream, step);
  const int32_t tok = cpu::sample_token(z, Vt_, s.sp_tempered, u);
  s.out.tokens.push_back(tok);
  s.out.logprobs.push_back(z[tok] - cpu::row_logsumexp(z, Vt_));
  if (std::find(s.req.stop_tokens.begin(), s.req.stop_tokens.end(), tok) != s.req.stop_tokens.end())
    s.out.stopped = true;
}

StepReport GenerationSession::step() {
  StepReport r;
  ++counters_.steps;
  m_.adapters_on_ = opt_.adapters;
  m_.refresh_norm_shadow();
  struct Unset {
    const PackedWeights*& p;
    ~Unset() { p = nullptr; }
  } unset{m_.packed_};
  m_.packed_ = packed_.get();

  while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < opt_.max_running) {
    Seq& s = seqs_.at(waiting_.front());
    if (!try_admit(s)) break;
    waiting_.pop_front();
    running_.push_back(s.id);
    ++r.admitted;
  }

  int64_t budget = opt_.token_budget;
  {  // decode: one token for each running sequence past its prompt
    std::vector<Seq*> rows;
    for (int64_t id : running_) {
      Seq& s = seqs_.at(id);
      if (s.state == State::Decode && budget > 0) rows.push_back(&s), --budget;
    }
    if (!rows.empty()) {
      const int64_t A = static_cast<int64_t>(rows.size());
      std::vector<int32_t> tokens(A);
      std::vector<int64_t> want(A);
      for (int64_t i = 0; i < A; ++i) {
        ensure_writable(*rows[i], rows[i]->cached);
        tokens[i] = rows[i]->out.tokens.back();
        want[i] = i;
      }
      run(rows, 1, tokens, std::vector<int64_t>(A, 1), want);
      // each row draws from its own Philox stream into its own sequence: rows in parallel
      parallel_for(A, 4, [&](int64_t i0, int64_t i1, int) {
        for (int64_t i = i0; i < i1; ++i) {
          rows[i]->cached += 1;
          sample(*rows[i], logits(i));
        }
      });
      r.decode_rows = A;
      counters_.decode_tokens += A;
    }
  }
  // prefill: chunks of the admitted prompts, oldest first, with what is left of the budget; the
  // chunks run together, right-padded to the longest, in passes of at most Nmax rows
  std::vector<Seq*> pre;
  std::vector<int64_t> chunks;
  for (int64_t id : running_) {
    if (budget <= 0) break;
    Seq& s = seqs_.at(id);
    if (s.state != State::Prefill) continue;
    const int64_t chunk = std::min(static_cast<int64_t>(s.req.prompt.size()) - s.cached, budget);
    budget -= chunk;
    for (int64_t p = s.cached; p < s.cached + chunk; ++p) ensure_writable(s, p);
    pre.push_back(&s);
    chunks.push_back(chunk);
  }
  for (size_t i0 = 0, i1; i0 < pre.size(); i0 = i1) {
    int64_t T = chunks[i0];
    for (i1 = i0 + 1; i1 < pre.size(); ++i1) {
      const int64_t T2 = std::max(T, chunks[i1]);
      if (static_cast<int64_t>(i1 - i0 + 1) * T2 > Nmax_) break;
      T = T2;
    }
    const std::vector<Seq*> seqs(pre.begin() + i0, pre.begin() + i1);
    const std::vector<int64_t> q_len(chunks.begin() + i0, chunks.begin() + i1);
    const int64_t A = static_cast<int64_t>(seqs.size());
    std::vector<int32_t> tokens(A * T, 0);
    std::vector<int64_t> want;
    for (int64_t k = 0; k < A; ++k) {
      const Seq& s = *seqs[k];
      std::copy(s.req.prompt.begin() + s.cached, s.req.prompt.begin() + s.cached + q_len[k], tokens.begin() + k * T);
      if (s.cached + q_len[k] == static_cast<int64_t>(s.req.prompt.size())) want.push_back(k);
    }
    run(seqs, T, tokens, q_len, want);
    for (int64_t k = 0, w = 0; k < A; ++k) {
      Seq& s = *seqs[k];
      s.cached += q_len[k];
      r.prefill_tokens += q_len[k];
      counters_.prefill_tokens += q_len[k];
      register_prompt_blocks(s);
      if (w >= static_cast<int64_t>(want.size()) || want[w] != k) continue;
      const float* z = logits(w++);
      s.state = State::Decode;
      sample(s, z);
      for (int64_t fid : s.followers) {  // share the prompt's blocks and its logits row
        Seq& f = seqs_.at(fid);
        for (size_t g = 0; g < pools_.size(); ++g) {
          f.kv[g].table = s.kv[g].table;
          f.kv[g].released = s.kv[g].released;
          for (int32_t b : f.kv[g].table)
            if (pools_[g]->live(b)) pools_[g]->retain(b);
        }
        f.cached = s.cached;
        f.registered = s.registered, f.chain = s.chain;
        f.state = State::Decode;
        f.leader = -1;
        counters_.shared_tokens += s.cached;
        sample(f, z);
      }
      s.followers.clear();
    }
  }

  for (int64_t id : running_) release_outside_window(seqs_.at(id));
  const std::vector<int64_t> now = running_;
  for (int64_t id : now) {
    Seq& s = seqs_.at(id);
    if (s.state == State::Decode &&
        (s.out.stopped || static_cast<int64_t>(s.out.tokens.size()) >= s.req.max_new_tokens)) {
      finish(s, false);
      ++r.finished;
    }
  }
  return r;
}

GenerateResult generate_on_session(Transformer& model, const GenerateRequest& req) {
  const int64_t B = static_cast<int64_t>(req.prompts.size());
  SessionOptions o;
  o.block_size = 16;
  o.adapters = req.adapters;
  o.kv_bf16 = req.kv_bf16;
  o.max_running = B;
  int64_t longest = 1, blocks = 0, window_blocks = 0;
  for (const auto& p : req.prompts) longest = std::max(longest, static_cast<int64_t>(p.size()));
  o.token_budget = std::max(B, longest);
  const int64_t window = model.config().sliding_window;
  for (const auto& p : req.prompts) {  // every request's worst case (lib/engine/kv-memory.ts mirrors them)
    const int64_t plen = static_cast<int64_t>(p.size());
    blocks += kv_blocks_kept(plen, req.max_new_tokens, o.block_size);
    if (window > 0) window_blocks += kv_blocks_sliding(plen, req.max_new_tokens, o.block_size, window, o.token_budget);
  }
  o.num_blocks = blocks;  // every request admitted at once, as the static batch holds them
  o.window_blocks = window_blocks;
  GenerationSession session(model, o);
  for (int64_t b = 0; b < B; ++b) {
    SessionRequest r;
    r.prompt = req.prompts[b];
    r.max_new_tokens = req.max_new_tokens;
    r.stop_tokens = req.stop_tokens;
    r.sampling = req.sampling;
    r.seed = req.seed;
    r.stream = static_cast<uint64_t>(req.streams.empty() ? req.stream_offset + b : req.streams[b]);
    session.add_request(std::move(r));  // ids 0..B-1
  }
  GenerateResult res;
  res.tokens.resize(B);
  res.logprobs.resize(B);
  res.stopped.assign(B, false);
  while (!session.idle()) session.step();
  for (SessionOutput& o2 : session.collect()) {
    res.tokens[o2.id] = std::move(o2.tokens);
    res.logprobs[o2.id] = std::move(o2.logprobs);
    res.stopped[o2.id] = o2.stopped;
  }
  return res;
}

}  // namespace model
}  // namespace rlhf
