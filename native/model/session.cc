#include "session.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/error.h"
#include "../core/rng.h"
#include "../cpu/logsoftmax.h"

namespace rlhf {
namespace model {

namespace {

// Hash chain over full blocks: h_i = mix(h_{i−1}, tokens of block i) (FNV-1a, then splitmix64).
uint64_t chain_hash(uint64_t parent, const int32_t* tokens, int64_t n) {
  uint64_t h = parent ^ 0xcbf29ce484222325ull;
  for (int64_t i = 0; i < n; ++i) {
    h ^= static_cast<uint32_t>(tokens[i]);
    h *= 0x100000001b3ull;
  }
  h += 0x9e3779b97f4a7c15ull;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

GenerationSession::GenerationSession(Transformer& model, const SessionOptions& options) : m_(model), opt_(options) {
  const ModelConfig& c = m_.cfg_;
  RLHF_CHECK(c.lm_head, ErrorCode::Unsupported,
             "GenerationSession: the model has no LM head (it is a *ForSequenceClassification)");
  RLHF_CHECK(!m_.sharded(), ErrorCode::Unsupported, "GenerationSession: a tensor-parallel model (use generate)");
  RLHF_CHECK(opt_.block_size >= 1 && opt_.block_size <= (int64_t(1) << 16), ErrorCode::OutOfRange,
             "GenerationSession: blockSize must be in [1, 65536], got ", opt_.block_size);
  RLHF_CHECK(opt_.num_blocks >= 1 && opt_.num_blocks < (int64_t(1) << 31), ErrorCode::OutOfRange,
             "GenerationSession: numBlocks must be in [1, 2^31), got ", opt_.num_blocks);
  RLHF_CHECK(opt_.token_budget >= 1, ErrorCode::OutOfRange, "GenerationSession: tokenBudget must be >= 1, got ",
             opt_.token_budget);
  RLHF_CHECK(opt_.max_running >= 1, ErrorCode::OutOfRange, "GenerationSession: maxRunning must be >= 1, got ",
             opt_.max_running);
  Backend* be = m_.be_;
  const int64_t C = c.hidden, V = c.vocab, KVD = int64_t(c.kv_heads) * c.head_dim;
  Vt_ = m_.vocab_total();
  bool all_slide = c.sliding_window > 0;
  for (int l = 0; l < c.layers; ++l) all_slide = all_slide && c.is_sliding(l);
  window_ = all_slide ? c.sliding_window : 0;
  pool_.rows = opt_.num_blocks + (window_ > 0 ? 1 : 0), pool_.len = opt_.block_size, pool_.kvd = KVD;
  pool_.bf16 = opt_.kv_bf16;
  const size_t elem = opt_.kv_bf16 ? sizeof(uint16_t) : sizeof(float);
  pool_.buf =
      Buffer(static_cast<size_t>(2 * c.layers * pool_.rows * opt_.block_size * KVD) * elem, false, be->device());
  if (window_ > 0) {  // the last pool row: zeros, never allocated (zeroed through the backend)
    zero_block_ = static_cast<int32_t>(opt_.num_blocks);
    const int64_t n = opt_.block_size * KVD;
    const size_t bytes = static_cast<size_t>(n) * elem;
    for (int l = 0; l < c.layers; ++l)
      if (opt_.kv_bf16) {
        be->zero(cache_k16(&pool_, l) + zero_block_ * n, bytes);
        be->zero(cache_v16(&pool_, l) + zero_block_ * n, bytes);
      } else {
        be->zero(cache_k(&pool_, l) + zero_block_ * n, bytes);
        be->zero(cache_v(&pool_, l) + zero_block_ * n, bytes);
      }
  }

  // Activations for up to Nmax rows per pass; logits for up to R rows (decode rows, or one prompt)
  Nmax_ = opt_.token_budget;
  const int64_t R = std::min(Nmax_, std::max<int64_t>(opt_.max_running, 1));
  const int64_t per_layer = Nmax_ * Transformer::activation_floats_per_token_per_layer(c);
  work_ = Buffer(static_cast<size_t>(per_layer + Nmax_ * (2 * C + c.ffn) + R * (2 * C + V)) * sizeof(float), false,
                 be->device());
  float* wp = work_.as<float>();
  LayerActs& a = acts_;
  a.x_in = wp;
  a.xmid = a.x_in + Nmax_ * C;
  a.rstd1 = a.xmid + Nmax_ * C;
  a.rstd2 = a.rstd1 + Nmax_;
  a.qkv = a.rstd2 + Nmax_;
  a.lse = a.qkv + Nmax_ * c.qkv_width();
  a.attn = a.lse + Nmax_ * c.heads;
  a.gu = carve_extra_slots(&a, a.attn + Nmax_ * int64_t(c.heads) * c.head_dim, c, Nmax_);
  x_other_ = a.gu + Nmax_ * 2 * c.ffn;
  a.h = x_other_ + Nmax_ * C;
  a.act = a.h + Nmax_ * C;
  xlast_ = a.act + Nmax_ * c.ffn;  // (R, C)
  xsel_ = xlast_ + R * C;          // (R, C)
  zrank_ = xsel_ + R * C;          // (R, V)
  rstd_ = Buffer(static_cast<size_t>(R) * sizeof(float), false, be->device());

  m_.release_activations();
  packed_ = std::make_unique<PackedWeights>();
  m_.pack_weights(packed_.get());

  ref_.assign(opt_.num_blocks, 0);
  hash_of_.assign(opt_.num_blocks, 0);
  for (int64_t b = opt_.num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

GenerationSession::~GenerationSession() = default;

int64_t GenerationSession::total_blocks(const Seq& s) const {
  // positions written: the prompt and every generated token but the last; plus one block for the
  // copy-on-write of a partially filled last prompt block
  const int64_t plen = static_cast<int64_t>(s.req.prompt.size()), bs = opt_.block_size;
  return ceil_div(plen + s.req.max_new_tokens - 1, bs) + (plen % bs != 0 ? 1 : 0);
}

int64_t GenerationSession::add_request(SessionRequest r) {
  const ModelConfig& c = m_.cfg_;
  const char* fn = "GenerationSession.addRequest";
  const int64_t plen = static_cast<int64_t>(r.prompt.size());
  RLHF_CHECK(plen >= 1, ErrorCode::OutOfRange, fn, ": prompt is empty");
  for (size_t i = 0; i < r.prompt.size(); ++i)
    RLHF_CHECK(r.prompt[i] >= 0 && r.prompt[i] < Vt_, ErrorCode::OutOfRange, fn, ": prompt[", i, "] = ", r.prompt[i],
               " is outside the vocabulary [0, ", Vt_, ")");
  RLHF_CHECK(r.max_new_tokens >= 1, ErrorCode::OutOfRange, fn, ": maxNewTokens must be >= 1, got ", r.max_new_tokens);
  RLHF_CHECK(plen + r.max_new_tokens <= c.max_positions, ErrorCode::OutOfRange, fn, ": prompt length (", plen,
             ") + maxNewTokens (", r.max_new_tokens, ") exceeds max_position_embeddings (", c.max_positions, ")");
  const auto& sp = r.sampling;
  RLHF_CHECK(sp.temperature >= 0 && std::isfinite(sp.temperature), ErrorCode::OutOfRange, fn,
             ": temperature must be finite and >= 0, got ", sp.temperature);
  RLHF_CHECK(sp.top_p > 0 && sp.top_p <= 1, ErrorCode::OutOfRange, fn, ": topP must be in (0, 1], got ", sp.top_p);
  RLHF_CHECK(sp.top_k >= 0, ErrorCode::OutOfRange, fn, ": topK must be >= 0, got ", sp.top_k);
  Seq s;
  s.alpha = sp.temperature > 0 ? 1.0f / sp.temperature : 1.0f;  // as lm_head_forward
  RLHF_CHECK(std::isfinite(s.alpha), ErrorCode::OutOfRange, fn, ": temperature ", sp.temperature,
             " is too small (1/temperature overflows float); use 0 for greedy");
  s.sp_tempered = sp;
  if (sp.temperature > 0) s.sp_tempered.temperature = 1.0f;  // the logits are tempered in the GEMM
  s.req = std::move(r);
  const int64_t need = total_blocks(s);
  RLHF_CHECK(need <= opt_.num_blocks, ErrorCode::OutOfRange, fn, ": the request needs up to ", need,
             " KV blocks, the pool holds ", opt_.num_blocks, " (raise numBlocks)");
  m_.ensure_rope(plen + s.req.max_new_tokens);
  s.id = next_id_++;
  s.out.id = s.id;
  waiting_.push_back(s.id);
  seqs_.emplace(s.id, std::move(s));
  return next_id_ - 1;
}

// ---- the block pool

int32_t GenerationSession::alloc_block(Seq& s) {
  RLHF_CHECK(s.reserve > 0, ErrorCode::Internal, "GenerationSession: sequence ", s.id, " outgrew its reservation");
  --s.reserve, --reserved_;
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    RLHF_CHECK(!lru_.empty(), ErrorCode::Internal, "GenerationSession: no free KV block");
    b = lru_.front();  // evict the least recently used cached prompt block
    lru_.pop_front();
    by_hash_.erase(hash_of_[b]);
    cached_.erase(b);
  }
  ref_[b] = 1;
  peak_ = std::max(peak_, ++in_use_);
  return b;
}

void GenerationSession::release_block(int32_t b) {
  if (--ref_[b] > 0) return;
  --in_use_;
  auto it = cached_.find(b);
  if (it == cached_.end()) {
    free_.push_back(b);
  } else {
    lru_.push_back(b);
    it->second.lru = std::prev(lru_.end());
  }
}

void GenerationSession::acquire_cached(int32_t b) {
  if (ref_[b] == 0) {
    lru_.erase(cached_.at(b).lru);
    peak_ = std::max(peak_, ++in_use_);
  }
  ++ref_[b];
}

void GenerationSession::copy_block(int32_t dst, int32_t src, int64_t slots) {
  const int64_t n = opt_.block_size * pool_.kvd;
  if (pool_.bf16) {
    const Device d = m_.be_->device();
    const size_t bytes = static_cast<size_t>(slots * pool_.kvd) * sizeof(uint16_t);
    for (int l = 0; l < m_.cfg_.layers; ++l) {
      m_.be_->copy(cache_k16(&pool_, l) + dst * n, d, cache_k16(&pool_, l) + src * n, d, bytes);
      m_.be_->copy(cache_v16(&pool_, l) + dst * n, d, cache_v16(&pool_, l) + src * n, d, bytes);
    }
    return;
  }
  for (int l = 0; l < m_.cfg_.layers; ++l) {
    m_.be_->copy_rows(cache_k(&pool_, l) + dst * n, cache_k(&pool_, l) + src * n, slots * pool_.kvd);
    m_.be_->copy_rows(cache_v(&pool_, l) + dst * n, cache_v(&pool_, l) + src * n, slots * pool_.kvd);
  }
}

void GenerationSession::ensure_writable(Seq& s, int64_t pos) {
  const int64_t idx = pos / opt_.block_size;
  RLHF_CHECK(idx <= static_cast<int64_t>(s.table.size()), ErrorCode::Internal, "GenerationSession: position ", pos,
             " skips a block");
  if (idx == static_cast<int64_t>(s.table.size())) {
    s.table.push_back(alloc_block(s));
  } else if (ref_[s.table[idx]] > 1) {  // copy on write
    const int32_t old = s.table[idx];
    const int32_t fresh = alloc_block(s);
    copy_block(fresh, old, pos % opt_.block_size);
    release_block(old);
    s.table[idx] = fresh;
  }
}

void GenerationSession::register_prompt_blocks(Seq& s) {
  if (!opt_.prefix_cache) return;
  const int64_t bs = opt_.block_size, plen = static_cast<int64_t>(s.req.prompt.size());
  const int64_t full = std::min(s.cached, plen) / bs;
  for (; s.registered < full; ++s.registered) {
    const int32_t* toks = s.req.prompt.data() + s.registered * bs;
    const uint64_t h = chain_hash(s.chain, toks, bs);
    const int32_t b = s.table[s.registered];
    if (!by_hash_.count(h) && !cached_.count(b)) {
      by_hash_[h] = b;
      hash_of_[b] = h;
      CachedBlock& e = cached_[b];
      e.parent = s.chain;
      e.tokens.assign(toks, toks + bs);
    }
    s.chain = h;
  }
}

void GenerationSession::release_outside_window(Seq& s) {
  if (window_ <= 0) return;
  const int64_t bs = opt_.block_size;
  // keys j <= cached − window are masked for every later query (their positions are >= cached);
  // full prompt blocks are registered in the prefix cache before this runs (register_prompt_blocks)
  const int64_t dead = std::min<int64_t>((s.cached - window_ + 1) / bs, static_cast<int64_t>(s.table.size()));
  for (; s.released < dead; ++s.released) {
    int32_t& b = s.table[s.released];
    if (!live(b)) continue;  // taken over from a leader that had released it
    release_block(b);
    b = zero_block_;
    ++counters_.window_released;
  }
}

// ---- admission

bool GenerationSession::try_admit(Seq& s) {
  const int64_t plen = static_cast<int64_t>(s.req.prompt.size()), bs = opt_.block_size;
  const int64_t total = total_blocks(s), avail = opt_.num_blocks - in_use_ - reserved_;
  for (int64_t id : running_) {  // follow a sequence still prefilling the same prompt
    Seq& L = seqs_.at(id);
    if (L.state != State::Prefill || L.alpha != s.alpha || L.req.prompt != s.req.prompt) continue;
    const int64_t need = total - plen / bs;
    if (need > avail) return false;
    s.state = State::Following;
    s.leader = L.id;
    L.followers.push_back(s.id);
    s.reserve = need, reserved_ += need;
    return true;
  }
  std::vector<int32_t> hits;
  uint64_t h = 0;
  if (opt_.prefix_cache)
    for (int64_t i = 0; i < (plen - 1) / bs; ++i) {  // the last prompt position is always computed
      const int32_t* toks = s.req.prompt.data() + i * bs;
      const uint64_t hi = chain_hash(h, toks, bs);
      auto it = by_hash_.find(hi);
      if (it == by_hash_.end()) break;
      const CachedBlock& e = cached_.at(it->second);
      if (e.parent != h || !std::equal(e.tokens.begin(), e.tokens.end(), toks)) break;
      hits.push_back(it->second);
      h = hi;
    }
  int64_t newly = 0;
  for (int32_t b : hits) newly += ref_[b] == 0;
  const int64_t need = total - static_cast<int64_t>(hits.size());
  if (need + newly > avail) return false;
  for (int32_t b : hits) acquire_cached(b);
  s.table = hits;
  s.cached = static_cast<int64_t>(hits.size()) * bs;
  s.registered = static_cast<int64_t>(hits.size());
  s.chain = h;
  counters_.shared_tokens += s.cached;
  s.reserve = need, reserved_ += need;
  s.state = State::Prefill;
  return true;
}

// ---- ending

void GenerationSession::promote_followers(Seq& L) {
  Seq& F = seqs_.at(L.followers.front());
  F.table = std::move(L.table);  // the references pass to F
  L.table.clear();
  F.cached = L.cached, F.registered = L.registered, F.chain = L.chain, F.released = L.released;
  F.state = State::Prefill;
  F.leader = -1;
  F.followers.assign(L.followers.begin() + 1, L.followers.end());
  for (int64_t id : F.followers) seqs_.at(id).leader = F.id;
  L.followers.clear();
  const int64_t fresh = total_blocks(F) - static_cast<int64_t>(F.table.size());
  reserved_ += fresh - F.reserve;
  F.reserve = fresh;
}

void GenerationSession::finish(Seq& s, bool cancelled) {
  if (s.state == State::Prefill && !s.followers.empty()) promote_followers(s);
  if (s.state == State::Following) {
    auto& fl = seqs_.at(s.leader).followers;
    fl.erase(std::find(fl.begin(), fl.end(), s.id));
  }
  for (int32_t b : s.table)
    if (live(b)) release_block(b);
  s.table.clear();
  reserved_ -= s.reserve;
  s.reserve = 0;
  if (s.state == State::Waiting)
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), s.id));
  else
    running_.erase(std::find(running_.begin(), running_.end(), s.id));
  s.out.cancelled = cancelled;
  done_.push_back(std::move(s.out));
  const int64_t id = s.id;
  seqs_.erase(id);
}

bool GenerationSession::cancel(int64_t id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return false;
  finish(it->second, true);
  return true;
}

std::vector<SessionOutput> GenerationSession::collect() {
  std::vector<SessionOutput> r;
  r.swap(done_);
  return r;
}

std::vector<SessionOutput> GenerationSession::progress() {
  std::vector<SessionOutput> r;
  for (int64_t id : running_) {
    Seq& s = seqs_.at(id);
    if (s.out.tokens.size() == s.reported) continue;
    SessionOutput o;
    o.id = s.id;
    o.tokens.assign(s.out.tokens.begin() + s.reported, s.out.tokens.end());
    o.logprobs.assign(s.out.logprobs.begin() + s.reported, s.out.logprobs.end());
    s.reported = s.out.tokens.size();
    r.push_back(std::move(o));
  }
  return r;
}

SessionStats GenerationSession::stats() const {
  SessionStats s = counters_;
  s.block_size = opt_.block_size;
  s.blocks_total = opt_.num_blocks;
  s.blocks_in_use = in_use_;
  s.blocks_cached = static_cast<int64_t>(lru_.size());
  s.peak_blocks_in_use = peak_;
  s.block_bytes = 2 * int64_t(m_.cfg_.layers) * opt_.block_size * pool_.kvd *
                  static_cast<int64_t>(pool_.bf16 ? sizeof(uint16_t) : sizeof(float));
  s.pool_bytes = pool_.rows * s.block_bytes;
  s.waiting = static_cast<int64_t>(waiting_.size());
  s.running = static_cast<int64_t>(running_.size());
  s.unread = static_cast<int64_t>(done_.size());
  return s;
}

}  // namespace model
}  // namespace rlhf
