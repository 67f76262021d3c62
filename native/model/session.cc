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
  RLHF_CHECK(opt_.window_blocks >= 0 && opt_.window_blocks < (int64_t(1) << 31), ErrorCode::OutOfRange,
             "GenerationSession: windowBlocks must be in [0, 2^31), got ", opt_.window_blocks);
  Backend* be = m_.be_;
  const int64_t C = c.hidden, V = c.vocab, KVD = int64_t(c.kv_heads) * c.head_dim;
  Vt_ = m_.vocab_total();
  // the groups: global layers first, then the sliding ones
  group_of_.assign(c.layers, -1);
  for (const bool sliding : {false, true}) {
    std::vector<int> layers;
    for (int l = 0; l < c.layers; ++l)
      if (c.is_sliding(l) == sliding) layers.push_back(l);
    if (layers.empty()) continue;
    for (int l : layers) group_of_[l] = static_cast<int>(pools_.size());
    const int64_t blocks = sliding && opt_.window_blocks > 0 ? opt_.window_blocks : opt_.num_blocks;
    pools_.push_back(std::make_unique<KvBlockPool>(be, std::move(layers), c.layers, sliding ? c.sliding_window : 0,
                                                   blocks, opt_.block_size, KVD, opt_.kv_bf16));
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
}

GenerationSession::~GenerationSession() = default;

int64_t kv_blocks_kept(int64_t prompt, int64_t max_new_tokens, int64_t block_size) {
  // positions written: the prompt and every generated token but the last; plus one block for the
  // copy-on-write of a partially filled last prompt block
  return ceil_div(prompt + max_new_tokens - 1, block_size) + (prompt % block_size != 0 ? 1 : 0);
}

int64_t kv_blocks_sliding(int64_t prompt, int64_t max_new_tokens, int64_t block_size, int64_t window,
                          int64_t token_budget) {
  // live during a pass: the keys of the window before the rows written (W − 1) and the rows (a
  // prefill chunk of at most min(prompt, token_budget), or one decode row), within the prompt while
  // prefilling; n consecutive positions touch at most ⌊(n − 2)/bs⌋ + 2 blocks
  const int64_t chunk = std::min(prompt, token_budget);
  const int64_t n = std::max(window, std::min(prompt, window - 1 + chunk));
  return std::min(ceil_div(prompt + max_new_tokens - 1, block_size), (n + 2 * block_size - 2) / block_size);
}

int64_t GenerationSession::worst_blocks(const Seq& s, const KvBlockPool& p) const {
  const int64_t plen = static_cast<int64_t>(s.req.prompt.size());
  return p.slides() ? kv_blocks_sliding(plen, s.req.max_new_tokens, opt_.block_size, p.window(), opt_.token_budget)
                    : kv_blocks_kept(plen, s.req.max_new_tokens, opt_.block_size);
}

int64_t GenerationSession::dead_blocks(const KvBlockPool& p, int64_t cached) const {
  // keys j <= cached − window are masked for every later query (their positions are >= cached)
  return p.slides() ? std::max<int64_t>(0, (cached - p.window() + 1) / opt_.block_size) : 0;
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
  for (const auto& p : pools_) {
    const int64_t need = worst_blocks(s, *p);
    RLHF_CHECK(need <= p->num_blocks(), ErrorCode::OutOfRange, fn, ": the request needs up to ", need,
               " KV blocks of the ", p->slides() ? "sliding-window" : "global", " layers' pool, which holds ",
               p->num_blocks(), " (raise ", p->slides() && pools_.size() > 1 ? "windowBlocks" : "numBlocks", ")");
  }
  s.kv.resize(pools_.size());
  m_.ensure_rope(plen + s.req.max_new_tokens);
  s.id = next_id_++;
  s.out.id = s.id;
  waiting_.push_back(s.id);
  seqs_.emplace(s.id, std::move(s));
  return next_id_ - 1;
}

// ---- blocks

void GenerationSession::note_peak() {
  int64_t blocks = 0, bytes = 0;
  for (const auto& p : pools_) blocks += p->in_use(), bytes += p->in_use() * p->block_bytes();
  peak_blocks_ = std::max(peak_blocks_, blocks);
  peak_bytes_ = std::max(peak_bytes_, bytes);
}

int32_t GenerationSession::alloc_block(Seq& s, size_t g, bool grows) {
  KvBlockPool& p = *pools_[g];
  SeqBlocks& k = s.kv[g];
  if (!p.slides()) {
    RLHF_CHECK(k.reserve > 0, ErrorCode::Internal, "GenerationSession: sequence ", s.id, " outgrew its reservation");
    --k.reserve, --p.reserved;
  } else {
    const int64_t live = static_cast<int64_t>(k.table.size()) - k.released;
    RLHF_CHECK(!grows || live < k.reserve, ErrorCode::Internal, "GenerationSession: sequence ", s.id,
               " holds more blocks than its window reservation");
  }
  const int32_t b = p.alloc();
  note_peak();
  return b;
}

void GenerationSession::ensure_writable(Seq& s, int64_t pos) {
  const int64_t idx = pos / opt_.block_size;
  for (size_t g = 0; g < pools_.size(); ++g) {
    KvBlockPool& p = *pools_[g];
    std::vector<int32_t>& table = s.kv[g].table;
    RLHF_CHECK(idx <= static_cast<int64_t>(table.size()), ErrorCode::Internal, "GenerationSession: position ", pos,
               " skips a block");
    if (idx == static_cast<int64_t>(table.size())) {
      const int32_t b = alloc_block(s, g, true);
      table.push_back(b);
    } else if (p.refs(table[idx]) > 1) {  // copy on write
      const int32_t old = table[idx];
      const int32_t fresh = alloc_block(s, g, false);
      p.copy(fresh, old, pos % opt_.block_size);
      p.release(old);
      table[idx] = fresh;
    }
  }
}

void GenerationSession::register_prompt_blocks(Seq& s) {
  if (!opt_.prefix_cache) return;
  const int64_t bs = opt_.block_size, plen = static_cast<int64_t>(s.req.prompt.size());
  const int64_t full = std::min(s.cached, plen) / bs;
  for (; s.registered < full; ++s.registered) {
    const int32_t* toks = s.req.prompt.data() + s.registered * bs;
    const uint64_t h = chain_hash(s.chain, toks, bs);
    for (size_t g = 0; g < pools_.size(); ++g) {
      const int32_t b = s.kv[g].table[s.registered];
      if (pools_[g]->live(b)) pools_[g]->enter(h, s.chain, toks, b);
    }
    s.chain = h;
  }
}

void GenerationSession::release_outside_window(Seq& s) {
  for (size_t g = 0; g < pools_.size(); ++g) {
    KvBlockPool& p = *pools_[g];
    SeqBlocks& k = s.kv[g];
    // full prompt blocks are registered in the prefix cache before this runs (register_prompt_blocks)
    const int64_t dead = std::min(dead_blocks(p, s.cached), static_cast<int64_t>(k.table.size()));
    for (; k.released < dead; ++k.released) {
      int32_t& b = k.table[k.released];
      if (!p.live(b)) continue;  // taken over from a leader that had released it
      p.release(b);
      b = p.zero_block();
      ++p.released;
    }
  }
}

// ---- admission

int64_t GenerationSession::prefix_hits(const Seq& s, std::vector<uint64_t>* keys) const {
  const int64_t bs = opt_.block_size, plen = static_cast<int64_t>(s.req.prompt.size());
  const int32_t* prompt = s.req.prompt.data();
  // the last prompt position is always computed; a global group's blocks must all be there, so the
  // first one it lacks ends the search
  int64_t cap = opt_.prefix_cache ? (plen - 1) / bs : 0;
  keys->assign(1, 0);
  for (int64_t i = 0; i < cap; ++i) {
    keys->push_back(chain_hash((*keys)[i], prompt + i * bs, bs));
    for (const auto& p : pools_)
      if (!p->slides() && p->lookup((*keys)[i + 1], (*keys)[i], prompt + i * bs) < 0) cap = i;
  }
  // per group: the last block below i + 1 that the group does not hold (−1: none)
  std::vector<std::vector<int64_t>> missing(pools_.size(), std::vector<int64_t>(cap, -1));
  for (size_t g = 0; g < pools_.size(); ++g)
    for (int64_t i = 0; i < cap; ++i) {
      const bool held = pools_[g]->lookup((*keys)[i + 1], (*keys)[i], prompt + i * bs) >= 0;
      missing[g][i] = held ? (i > 0 ? missing[g][i - 1] : -1) : i;
    }
  for (int64_t h = cap; h > 0; --h) {
    bool ok = true;
    for (size_t g = 0; g < pools_.size() && ok; ++g) ok = missing[g][h - 1] < dead_blocks(*pools_[g], h * bs);
    if (ok) return h;
  }
  return 0;
}

bool GenerationSession::fits(const std::vector<int64_t>& need, const std::vector<int64_t>& newly) const {
  for (size_t g = 0; g < pools_.size(); ++g) {
    const KvBlockPool& p = *pools_[g];
    // a sliding group's reservations bound its blocks in use by themselves (see admission above)
    const int64_t avail = p.num_blocks() - p.reserved - (p.slides() ? 0 : p.in_use());
    if (need[g] + newly[g] > avail) return false;
  }
  return true;
}

bool GenerationSession::try_admit(Seq& s) {
  const int64_t plen = static_cast<int64_t>(s.req.prompt.size()), bs = opt_.block_size;
  const size_t G = pools_.size();
  std::vector<int64_t> need(G), newly(G, 0);
  for (int64_t id : running_) {  // follow a sequence still prefilling the same prompt
    Seq& L = seqs_.at(id);
    if (L.state != State::Prefill || L.alpha != s.alpha || L.req.prompt != s.req.prompt) continue;
    for (size_t g = 0; g < G; ++g)  // the global group: the leader's full prompt blocks come shared
      need[g] = worst_blocks(s, *pools_[g]) - (pools_[g]->slides() ? 0 : plen / bs);
    if (!fits(need, newly)) return false;
    s.state = State::Following;
    s.leader = L.id;
    L.followers.push_back(s.id);
    for (size_t g = 0; g < G; ++g) s.kv[g].reserve = need[g], pools_[g]->reserved += need[g];
    return true;
  }
  std::vector<uint64_t> keys;
  const int64_t h = prefix_hits(s, &keys);
  std::vector<std::vector<int32_t>> hits(G);  // per group: the cached blocks [first, h) its layers read
  for (size_t g = 0; g < G; ++g) {
    KvBlockPool& p = *pools_[g];
    for (int64_t i = dead_blocks(p, h * bs); i < h; ++i) {
      const int32_t b = p.lookup(keys[i + 1], keys[i], s.req.prompt.data() + i * bs);
      hits[g].push_back(b);
      newly[g] += !p.slides() && p.refs(b) == 0;  // taken off the LRU list: more blocks in use
    }
    need[g] = worst_blocks(s, p) - (p.slides() ? 0 : h);
  }
  if (!fits(need, newly)) return false;
  for (size_t g = 0; g < G; ++g) {
    KvBlockPool& p = *pools_[g];
    SeqBlocks& k = s.kv[g];
    k.released = h - static_cast<int64_t>(hits[g].size());
    k.table.assign(k.released, p.zero_block());
    for (int32_t b : hits[g]) p.retain(b), k.table.push_back(b);
    k.reserve = need[g], p.reserved += need[g];
  }
  note_peak();
  s.cached = h * bs;
  s.registered = h;
  s.chain = keys[h];
  counters_.shared_tokens += s.cached;
  s.state = State::Prefill;
  return true;
}

// ---- ending

void GenerationSession::promote_followers(Seq& L) {
  Seq& F = seqs_.at(L.followers.front());
  for (size_t g = 0; g < pools_.size(); ++g) {
    SeqBlocks &f = F.kv[g], &l = L.kv[g];
    f.table = std::move(l.table);  // the references pass to F
    l.table.clear();
    f.released = l.released;
    if (pools_[g]->slides()) continue;  // its reservation does not depend on the blocks held
    const int64_t fresh = worst_blocks(F, *pools_[g]) - static_cast<int64_t>(f.table.size());
    pools_[g]->reserved += fresh - f.reserve;
    f.reserve = fresh;
  }
  F.cached = L.cached, F.registered = L.registered, F.chain = L.chain;
  F.state = State::Prefill;
  F.leader = -1;
  F.followers.assign(L.followers.begin() + 1, L.followers.end());
  for (int64_t id : F.followers) seqs_.at(id).leader = F.id;
  L.followers.clear();
}

void GenerationSession::finish(Seq& s, bool cancelled) {
  if (s.state == State::Prefill && !s.followers.empty()) promote_followers(s);
  if (s.state == State::Following) {
    auto& fl = seqs_.at(s.leader).followers;
    fl.erase(std::find(fl.begin(), fl.end(), s.id));
  }
  for (size_t g = 0; g < s.kv.size(); ++g) {
    KvBlockPool& p = *pools_[g];
    SeqBlocks& k = s.kv[g];
    for (int32_t b : k.table)
      if (p.live(b)) p.release(b);
    k.table.clear();
    p.reserved -= k.reserve;
    k.reserve = 0;
  }
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
  for (const auto& p : pools_) {
    KvGroupStats g;
    g.window = p->window();
    g.layers = static_cast<int64_t>(p->layers().size());
    g.blocks_total = p->num_blocks();
    g.blocks_in_use = p->in_use();
    g.blocks_cached = p->cached_unreferenced();
    g.peak_blocks_in_use = p->peak_in_use();
    g.block_bytes = p->block_bytes();
    g.pool_bytes = p->pool_bytes();
    g.window_released = p->released;
    s.blocks_total += g.blocks_total;
    s.blocks_in_use += g.blocks_in_use;
    s.blocks_cached += g.blocks_cached;
    s.block_bytes += g.block_bytes;
    s.pool_bytes += g.pool_bytes;
    s.kv_bytes_in_use += g.blocks_in_use * g.block_bytes;
    s.window_released += g.window_released;
    s.groups.push_back(g);
  }
  s.peak_blocks_in_use = peak_blocks_;
  s.peak_kv_bytes = peak_bytes_;
  s.waiting = static_cast<int64_t>(waiting_.size());
  s.running = static_cast<int64_t>(running_.size());
  s.unread = static_cast<int64_t>(done_.size());
  return s;
}

}  // namespace model
}  // namespace rlhf
