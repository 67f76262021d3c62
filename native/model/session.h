// GenerationSession: step-level generation over a paged KV cache — continuous batching, chunked
// prefill under a token budget, and prefix sharing.
//
// The cache is one pool of `num_blocks` blocks of `block_size` token positions (every layer's k and
// v for those positions). A sequence owns a block table; blocks carry reference counts and return to
// the pool when their last sequence ends or is cancelled.
//
// Each step():
//   1. admits waiting requests in arrival order while the pool can hold their worst case
//      (prompt + maxNewTokens − 1 positions, the blocks they share not counted) and fewer than
//      max_running sequences hold blocks;
//   2. decodes one token for each running sequence past its prompt (up to token_budget rows);
//   3. spends the rest of the budget on prefill chunks of admitted prompts, oldest first, so a long
//      prompt is spread over several steps instead of stalling decoding.
// Prefix sharing, two ways:
//   - a request with the same prompt and temperature as one still in prefill follows it: it is
//     prefilled once, and when the leader's prefill ends every follower takes the leader's blocks
//     (reference counted) and samples its first token from the leader's logits row with its own
//     Philox stream. The partially filled last block is copied on write when a sequence appends to
//     a block someone else also holds;
//   - full prompt blocks are kept in a prefix cache keyed by the hash chain of their tokens (the
//     block's own tokens checked on a hit), so a later prompt with a common prefix (a system prompt)
//     reuses them; unreferenced cached blocks are evicted least recently used when the pool needs
//     blocks. The last prompt position is always computed (its logits are needed).
//
// Invariance: every row goes through the same layer_forward, GEMMs and kernels as forward() and
// Transformer::generate, attention reads the paged cache in the same key order, and sampling draws
// philox_uniform(seed, stream, step) — so a sequence's tokens and log-probs are bitwise independent
// of the batch, the block size, sharing, admission time and the token budget (CPU, fixed thread
// count), and its log-probs equal forward()'s (log π_T of the full tempered distribution, T = 1
// when greedy, as generate.cc states).
//
// Sliding windows: when every layer slides (Mistral), a block whose positions are all at or before
// cached − window of its sequence is read by no later query; it goes back to the pool (or to the
// prefix cache's LRU list) and its table entry points at a zero block that is never written. The
// attention still reads and masks those keys (probability exactly 0, and 0 · 0 adds nothing), so
// results are bitwise those of the full cache. Gemma's global layers read every position, so a
// model with any global layer keeps every block.
//
// bf16 KV (kv_bf16): k/v are rounded to bf16 (nearest even) as they are stored and widened to f32
// when attention gathers them, so a block takes half the bytes; the invariances above hold among
// bf16 sessions, and the results differ from f32's by the rounding of k/v only.
//
// The weights are packed when the session is created: a session must not outlive a change of the
// model's weights (make a new one). One rank (a tensor-parallel model is refused). On the CUDA
// backend the pool lives in device memory and the steps run its kernels: log-probs agree with the
// CPU session's within fp32 rounding, and so do the tokens unless that rounding decides a choice
// (the bitwise invariances above hold on the CPU).
#pragma once
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "../cpu/sampling.h"
#include "internal.h"
#include "transformer.h"

namespace rlhf {
namespace model {

struct SessionOptions {
  int64_t block_size = 16;     // token positions per KV block (>= 1)
  int64_t num_blocks = 0;      // blocks in the pool (>= 1)
  int64_t token_budget = 512;  // rows computed per step: decode rows + prefill chunk tokens (>= 1)
  int64_t max_running = 256;   // sequences holding blocks at once (>= 1)
  bool prefix_cache = true;    // keep full prompt blocks for later prompts (LRU-evicted)
  bool adapters = true;        // false: sample from the base model without its LoRA adapters
  bool kv_bf16 = false;        // the pool holds bf16 k/v (half the bytes; attention accumulates in f32)
};

struct SessionRequest {
  std::vector<int32_t> prompt;  // non-empty, tokens in [0, vocab)
  int64_t max_new_tokens = 16;  // >= 1
  std::vector<int32_t> stop_tokens;
  cpu::SamplingParams sampling;
  uint64_t seed = 0;
  uint64_t stream = 0;  // Philox stream of this request's draws
};

struct SessionOutput {
  int64_t id = 0;
  std::vector<int32_t> tokens;  // generated tokens (stop token included)
  std::vector<float> logprobs;  // per generated token, as GenerateResult
  bool stopped = false;         // ended on a stop token (false: maxNewTokens, or cancelled)
  bool cancelled = false;
};

struct StepReport {
  int64_t decode_rows = 0;     // tokens decoded this step
  int64_t prefill_tokens = 0;  // prompt positions computed this step
  int64_t admitted = 0, finished = 0;
};

struct SessionStats {
  int64_t block_size = 0, blocks_total = 0;
  int64_t blocks_in_use = 0;                     // referenced by a sequence
  int64_t blocks_cached = 0;                     // unreferenced, kept by the prefix cache (evictable)
  int64_t peak_blocks_in_use = 0;                // since the session began
  int64_t block_bytes = 0;                       // KV bytes of one block (all layers, k and v)
  int64_t pool_bytes = 0;                        // KV bytes allocated (the window's zero block included)
  int64_t window_released = 0;                   // blocks released for lying outside every layer's window
  int64_t waiting = 0, running = 0, unread = 0;  // unread: finished, not yet collected
  int64_t steps = 0;
  int64_t prefill_tokens = 0;  // prompt positions computed
  int64_t shared_tokens = 0;   // prompt positions taken from another sequence or the prefix cache
  int64_t decode_tokens = 0;   // tokens decoded (fed back through the model)
};

class GenerationSession {
 public:
  GenerationSession(Transformer& model, const SessionOptions& options);
  ~GenerationSession();
  GenerationSession(const GenerationSession&) = delete;
  GenerationSession& operator=(const GenerationSession&) = delete;

  // Queues a request (validated: throws OutOfRange naming the field); returns its id (0, 1, ...).
  int64_t add_request(SessionRequest request);
  StepReport step();
  // Finished (or cancelled) requests since the last collect, in the order they finished; tokens
  // and logprobs are the whole generation (what progress() reported included).
  std::vector<SessionOutput> collect();
  // For every running request with tokens generated since its previous progress report, those new
  // tokens and logprobs only (stopped/cancelled false), in admission order. A request's last
  // tokens may come only through collect() (it ends in the step that produces them).
  std::vector<SessionOutput> progress();
  // Ends a waiting or running request and frees its blocks; false when the id is not active.
  bool cancel(int64_t id);
  bool idle() const { return waiting_.empty() && running_.empty(); }
  SessionStats stats() const;

 private:
  enum class State { Waiting, Prefill, Following, Decode };
  struct Seq {
    int64_t id = 0;
    SessionRequest req;
    float alpha = 1.0f;               // 1/T applied in the LM-head GEMM (1 when greedy)
    cpu::SamplingParams sp_tempered;  // what the sampler sees (temperature 1 or 0)
    State state = State::Waiting;
    std::vector<int32_t> table;  // block ids
    int64_t cached = 0;          // positions whose k/v are in the cache
    int64_t reserve = 0;         // blocks it may still allocate (counted in reserved_)
    int64_t registered = 0;      // leading full prompt blocks entered in the prefix cache
    uint64_t chain = 0;          // hash chain value after the registered blocks
    int64_t leader = -1;         // Following: the sequence it shares the prefill of
    std::vector<int64_t> followers;
    SessionOutput out;
    size_t reported = 0;   // out.tokens already returned by progress()
    int64_t released = 0;  // leading table entries released for the window (now zero_block_)
  };
  struct CachedBlock {  // a full prompt block in the prefix cache
    uint64_t parent = 0;
    std::vector<int32_t> tokens;
    std::list<int32_t>::iterator lru;  // valid while unreferenced
  };

  bool try_admit(Seq& s);
  int64_t total_blocks(const Seq& s) const;
  int32_t alloc_block(Seq& s);
  void release_block(int32_t b);
  void acquire_cached(int32_t b);
  void ensure_writable(Seq& s, int64_t pos);  // a block (own, unshared) for position pos
  void copy_block(int32_t dst, int32_t src, int64_t slots);
  void register_prompt_blocks(Seq& s);
  void finish(Seq& s, bool cancelled);
  void promote_followers(Seq& leader);
  void release_outside_window(Seq& s);  // the sliding-window release (see above)
  bool live(int32_t b) const { return b != zero_block_; }
  // Runs rows (A sequences × T positions) through the layers and the LM head; the logits of the
  // rows in `want` (indices into seqs) come back on the host, row i of `want` at logits(i).
  void run(const std::vector<Seq*>& seqs, int64_t T, const std::vector<int32_t>& tokens,
           const std::vector<int64_t>& q_len, const std::vector<int64_t>& want);
  void sample(Seq& s, const float* z);
  const float* logits(int64_t i) const { return logits_h_ + i * Vt_; }

  Transformer& m_;
  SessionOptions opt_;
  int64_t Vt_ = 0, Nmax_ = 0;
  int64_t window_ = 0;       // > 0: every layer slides by this many keys (blocks outside it are released)
  int32_t zero_block_ = -1;  // the all-zero block released table entries point at (window_ > 0)
  KvCache pool_;
  std::unique_ptr<PackedWeights> packed_;
  Buffer work_, rstd_;
  LayerActs acts_{};
  float *x_other_ = nullptr, *xlast_ = nullptr, *xsel_ = nullptr, *zrank_ = nullptr;
  std::vector<float> logits_store_;  // host logits of the current pass (backends off the host)
  const float* logits_h_ = nullptr;

  std::vector<int32_t> ref_;  // per block
  std::vector<int32_t> free_;
  std::list<int32_t> lru_;                         // unreferenced cached blocks, least recent first
  std::unordered_map<uint64_t, int32_t> by_hash_;  // hash chain → block
  std::map<int32_t, CachedBlock> cached_;          // block → its prefix-cache entry
  std::vector<uint64_t> hash_of_;                  // per block: its key in by_hash_ (when cached)
  int64_t in_use_ = 0, reserved_ = 0, peak_ = 0;

  int64_t next_id_ = 0;
  std::map<int64_t, Seq> seqs_;  // waiting and running
  std::deque<int64_t> waiting_;
  std::vector<int64_t> running_;  // admission order
  std::vector<SessionOutput> done_;
  SessionStats counters_;
};

// Transformer::generate's batch run on a session (every request admitted at once, each prompt
// prefilled in one chunk, identical prompts shared): the same tokens and log-probs as the static
// batch, bit for bit.
GenerateResult generate_on_session(Transformer& model, const GenerateRequest& req);

}  // namespace model
}  // namespace rlhf
