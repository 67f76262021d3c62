// GenerationSession: step-level generation over a paged KV cache — continuous batching, chunked
// prefill under a token budget, and prefix sharing.
//
// The cache is paged in blocks of `block_size` token positions, one pool per group of layers with
// the same attention window (kv_block_pool.h): the global layers (every layer of Llama, Qwen, ...;
// the global layers of Gemma 2/3) form one group, the sliding-window layers (Mistral's every layer,
// Gemma's local layers) another. A block of a group holds k and v of that group's layers only; a
// sequence owns a block table per group; blocks carry reference counts and return to their pool
// when their last sequence ends or is cancelled. The global pool has `num_blocks` blocks, the
// sliding pool `window_blocks` (default num_blocks). Every group runs the same code; a model with
// one kind of layer simply has one group.
//
// Each step():
//   1. admits waiting requests in arrival order while every pool can hold their worst case
//      (worst_blocks below) and fewer than max_running sequences hold blocks;
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
//     reuses them; unreferenced cached blocks are evicted least recently used when their pool needs
//     blocks. The last prompt position is always computed (its logits are needed). Each pool keeps
//     and evicts its own entries; a prompt takes its first h blocks from the cache only when every
//     group holds what its layers read of them: the global group all h blocks, a sliding group the
//     blocks from the first one inside the window of position h·block_size on (the others become
//     zero entries at once). h is the largest such count.
//
// Invariance: every row goes through the same layer_forward, GEMMs and kernels as forward() and
// Transformer::generate, attention reads the paged cache in the same key order, and sampling draws
// philox_uniform(seed, stream, step) — so a sequence's tokens and log-probs are bitwise independent
// of the batch, the block size, sharing, admission time and the token budget (CPU, fixed thread
// count), and its log-probs equal forward()'s (log π_T of the full tempered distribution, T = 1
// when greedy, as generate.cc states).
//
// Sliding windows: in a sliding group, a block whose positions are all at or before cached − window
// of its sequence is read by no later query of those layers; at the end of each step it goes back
// to the pool (or to the prefix cache's LRU list) and its table entry points at the group's zero
// block, which is never written. The attention still reads and masks those keys (probability
// exactly 0, and 0 · 0 adds nothing), so results are bitwise those of the full cache. The global
// group keeps every block.
//
// Admission (worst_blocks, per group; kv_blocks_kept / kv_blocks_sliding below):
//   - the global group reserves the blocks a sequence may still allocate: ⌈(prompt + maxNewTokens
//     − 1) / block_size⌉, + 1 copied on write when the prompt ends mid-block, less the blocks it
//     takes shared (a leader's full prompt blocks, prefix-cache hits); each allocation uses one;
//   - a sliding group reserves the most live table entries the sequence holds at once: the blocks
//     that the window's positions and a prefill chunk can touch — n = max(W, min(prompt, W − 1 +
//     min(prompt, token_budget))) consecutive positions touch ⌊(n − 2)/block_size⌋ + 2 blocks —
//     and never more than its table's length ⌈(prompt + maxNewTokens − 1)/block_size⌉. Sharing is not
//     subtracted (a shared block may be unshared later) and no copy-on-write block is added: the
//     pool's blocks in use never exceed the sum of the sequences' live entries (a shared block
//     counts once in the pool, once per holder in the sum), which the reservations bound.
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
#include <map>
#include <memory>
#include <vector>

#include "../cpu/sampling.h"
#include "internal.h"
#include "kv_block_pool.h"
#include "transformer.h"

namespace rlhf {
namespace model {

struct SessionOptions {
  int64_t block_size = 16;     // token positions per KV block (>= 1)
  int64_t num_blocks = 0;      // blocks in the global layers' pool, and the sliding one's by default (>= 1)
  int64_t window_blocks = 0;   // blocks in the sliding-window layers' pool (0: num_blocks)
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

struct KvGroupStats {  // one pool (a group of layers with one window)
  int64_t window = 0;  // 0: the global layers
  int64_t layers = 0;  // layers in the group
  int64_t blocks_total = 0, blocks_in_use = 0, blocks_cached = 0, peak_blocks_in_use = 0;
  int64_t block_bytes = 0;      // one block: the group's layers, k and v
  int64_t pool_bytes = 0;       // blocks_total · block_bytes, + one zero block when the group slides
  int64_t window_released = 0;  // blocks released for lying outside the window
};

// Block counts sum the groups' (a Gemma position range takes a block in each pool); bytes are exact.
struct SessionStats {
  int64_t block_size = 0, blocks_total = 0;
  int64_t blocks_in_use = 0;                     // referenced by a sequence
  int64_t blocks_cached = 0;                     // unreferenced, kept by the prefix cache (evictable)
  int64_t peak_blocks_in_use = 0;                // the peak of the sum, since the session began
  int64_t block_bytes = 0;                       // KV bytes of block_size positions of every layer (k and v)
  int64_t pool_bytes = 0;                        // KV bytes allocated (the zero blocks included)
  int64_t kv_bytes_in_use = 0;                   // bytes of the blocks in use
  int64_t peak_kv_bytes = 0;                     // the peak of kv_bytes_in_use
  int64_t window_released = 0;                   // blocks the sliding groups released
  std::vector<KvGroupStats> groups;              // the global group first
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
  struct SeqBlocks {             // a sequence's blocks in one group
    std::vector<int32_t> table;  // block ids
    // counted in the pool's reserved: blocks it may still allocate (the global group), or the most
    // live entries it holds at once (a sliding group)
    int64_t reserve = 0;
    int64_t released = 0;  // leading entries released for the window (now the zero block)
  };
  struct Seq {
    int64_t id = 0;
    SessionRequest req;
    float alpha = 1.0f;               // 1/T applied in the LM-head GEMM (1 when greedy)
    cpu::SamplingParams sp_tempered;  // what the sampler sees (temperature 1 or 0)
    State state = State::Waiting;
    std::vector<SeqBlocks> kv;  // per group (pools_)
    int64_t cached = 0;         // positions whose k/v are in the cache
    int64_t registered = 0;     // leading full prompt blocks entered in the prefix cache
    uint64_t chain = 0;         // hash chain value after the registered blocks
    int64_t leader = -1;        // Following: the sequence it shares the prefill of
    std::vector<int64_t> followers;
    SessionOutput out;
    size_t reported = 0;  // out.tokens already returned by progress()
  };

  bool try_admit(Seq& s);
  // The sequence's worst case in pool p's blocks (admission, above).
  int64_t worst_blocks(const Seq& s, const KvBlockPool& p) const;
  // Leading blocks of pool p no query of its layers reads once `cached` positions are stored.
  int64_t dead_blocks(const KvBlockPool& p, int64_t cached) const;
  // Prompt blocks the prefix cache supplies (above); keys[i]: the hash chain of blocks [0, i).
  int64_t prefix_hits(const Seq& s, std::vector<uint64_t>* keys) const;
  bool fits(const std::vector<int64_t>& need, const std::vector<int64_t>& newly) const;
  int32_t alloc_block(Seq& s, size_t g, bool grows);  // grows: a new table entry (not a copy on write)
  void note_peak();
  void ensure_writable(Seq& s, int64_t pos);  // a block (own, unshared) for position pos, every group
  void register_prompt_blocks(Seq& s);
  void finish(Seq& s, bool cancelled);
  void promote_followers(Seq& leader);
  void release_outside_window(Seq& s);  // the sliding-window release (see above)
  // Runs rows (A sequences × T positions) through the layers and the LM head; the logits of the
  // rows in `want` (indices into seqs) come back on the host, row i of `want` at logits(i).
  void run(const std::vector<Seq*>& seqs, int64_t T, const std::vector<int32_t>& tokens,
           const std::vector<int64_t>& q_len, const std::vector<int64_t>& want);
  void sample(Seq& s, const float* z);
  const float* logits(int64_t i) const { return logits_h_ + i * Vt_; }

  Transformer& m_;
  SessionOptions opt_;
  int64_t Vt_ = 0, Nmax_ = 0;
  std::vector<std::unique_ptr<KvBlockPool>> pools_;  // the groups, global first
  std::vector<int> group_of_;                        // per layer: its index in pools_
  std::unique_ptr<PackedWeights> packed_;
  Buffer work_, rstd_;
  LayerActs acts_{};
  float *x_other_ = nullptr, *xlast_ = nullptr, *xsel_ = nullptr, *zrank_ = nullptr;
  std::vector<float> logits_store_;  // host logits of the current pass (backends off the host)
  const float* logits_h_ = nullptr;

  int64_t peak_blocks_ = 0, peak_bytes_ = 0;  // of the sums over the pools

  int64_t next_id_ = 0;
  std::map<int64_t, Seq> seqs_;  // waiting and running
  std::deque<int64_t> waiting_;
  std::vector<int64_t> running_;  // admission order
  std::vector<SessionOutput> done_;
  SessionStats counters_;
};

// A sequence's worst case in blocks of a group (admission, above; lib/engine/kv-memory.ts mirrors
// them): the global group's, and a sliding group's of window `window`.
int64_t kv_blocks_kept(int64_t prompt, int64_t max_new_tokens, int64_t block_size);
int64_t kv_blocks_sliding(int64_t prompt, int64_t max_new_tokens, int64_t block_size, int64_t window,
                          int64_t token_budget);

// Transformer::generate's batch run on a session (every request admitted at once, each prompt
// prefilled in one chunk, identical prompts shared): the same tokens and log-probs as the static
// batch, bit for bit.
GenerateResult generate_on_session(Transformer& model, const GenerateRequest& req);

}  // namespace model
}  // namespace rlhf
