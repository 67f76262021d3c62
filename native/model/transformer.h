// The transformer: parameters and gradients in flat fp32 buffers (named views: layout.h; frozen
// bf16 matrices in a bf16 store, WeightStorage below), forward to per-token heads, backward from
// per-token gradients, KV-cached generation.
//
// Shapes: B sequences × T positions, N = B·T rows (row-major, row r = b·T + t); C hidden; V vocab.
//   forward:  tokens (N) → logprobs (N) of targets (N, −1 = none), entropy (N), values (N)
//   backward: dlogprobs, dentropy, dvalues (N) → parameter gradients (ACCUMULATE; zero_grad resets)
// Rows at t >= lengths[b] are right padding: their outputs are 0 and they get no gradient.
//
// Activations saved by a forward(save = true), per token per layer, in floats:
//   2C (layer input, mid residual) + 2 (two rstd) + (NH + 2KVH)·HD (q, k, v after RoPE)
//   + NH (attention log-sum-exp) + NH·HD (attention output) + 2F (gate, up)
// plus per token 2C + 1 at the end (final residual, normalised output, rstd), and for rows with a
// target 2 floats (lse, entropy) and V floats of logits when the logits fit the cache budget
// (they are recomputed in backward otherwise). Everything else is per-call scratch.
#pragma once
#include <cstdint>
#include <array>
#include <memory>
#include <unordered_map>
#include <vector>

#include "../core/buffer.h"
#include "../core/dtype.h"
#include "../cpu/rope.h"
#include "../cpu/sampling.h"
#include "backend.h"
#include "config.h"
#include "engine.h"
#include "layout.h"

namespace rlhf {
class Communicator;  // core/communicator.h

namespace model {

// Set when this Transformer is one rank of a tensor-parallel model (tensor_parallel.h). Its config
// then holds the rank's share: heads, kv_heads and ffn divided, vocab = rows
// [vocab_begin, vocab_begin + vocab) of the full_vocab; the other sizes are the full model's.
// Sums over ranks happen at the row-parallel outputs (o, down), the embedding, the LM head's
// log-softmax and the column-parallel input gradients; everything else is computed on each rank.
struct ShardInfo {
  Communicator* comm = nullptr;
  int rank = 0, size = 1;
  int64_t vocab_begin = 0, full_vocab = 0;
};

struct LayerActs;         // internal.h
struct KvCache;           // internal.h
struct BackScratch;       // internal.h
struct PackedWeights;     // internal.h
class GenerationSession;  // session.h

struct ForwardInput {
  int64_t B = 0, T = 0;
  const int32_t* tokens = nullptr;     // (N) in [0, V)
  const int32_t* targets = nullptr;    // (N) in [−1, V); null: no LM outputs
  const int64_t* lengths = nullptr;    // (B) in [0, T]; null: T
  const int32_t* positions = nullptr;  // (N) RoPE positions; null: t
  const int32_t* segments = nullptr;   // (N) packed documents: attention stays within a segment id; null: one
  bool entropy = false;
  float temperature = 1.0f;  // logits are divided by it before the softmax
  bool save = true;          // keep activations for backward
  bool adapters = true;      // false: the base model without its LoRA adapters (save must be false)
};

struct ForwardOutput {  // caller-owned, length N each; null when not wanted
  float* logprobs = nullptr;
  float* entropy = nullptr;
  float* values = nullptr;
  float* logits = nullptr;  // (N, V), optional, for tests and small models
};

struct BackwardInput {  // (N) each, null = zero
  const float* dlogprobs = nullptr;
  const float* dentropy = nullptr;
  const float* dvalues = nullptr;
};

struct GenerateRequest {
  std::vector<std::vector<int32_t>> prompts;  // each non-empty
  int64_t max_new_tokens = 16;
  cpu::SamplingParams sampling;
  uint64_t seed = 0;
  int64_t stream_offset = 0;     // row r draws from Philox stream stream_offset + r ...
  std::vector<int64_t> streams;  // ... or, when non-empty (one per prompt), from stream streams[r]
  std::vector<int32_t> stop_tokens;
  bool adapters = true;  // false: sample from the base model without its LoRA adapters
  // true: the static batch below (contiguous KV cache, every prompt prefilled); false: a
  // GenerationSession (paged cache, shared prefixes) where the model allows it (CPU, one rank).
  // Both give the same tokens and log-probs.
  bool static_batch = false;
  bool kv_bf16 = false;  // the session's KV pool in bf16 (SessionOptions::kv_bf16); the static batch refuses it
};

struct GenerateResult {
  std::vector<std::vector<int32_t>> tokens;  // generated tokens per row (stop token included)
  std::vector<std::vector<float>>
      logprobs;  // log π_T(token) of the full tempered distribution (T = 1 when greedy), per generated token
  std::vector<bool> stopped;  // true: ended on a stop token; false: length
};

// How an owned Transformer stores its weights (weight_store.cc). dtype F32: f32 parameters. BF16:
// the weight products run the bf16 GEMM (set_weight_dtype); weight matrices that train keep f32
// masters beside their bf16 copy (mixed precision), and the frozen ones (every matrix of a LoRA
// base, and of a model with trainable = false: the embedding, the projections, an untied LM head)
// exist only in bf16 ("bf16-only": no f32 copy is ever allocated; reads widen exactly, writes
// round to nearest even). trainable = false: a frozen model (reference, reward model for scoring):
// no gradient storage, backward and optimizer_view refuse. Gradients are stored only for what
// trains: [layout.trainable_begin, total) (the adapters and a scalar head under LoRA).
struct WeightStorage {
  DType dtype = DType::F32;
  bool trainable = true;
};

class Transformer final : public Engine {
 public:
  // params/grads: external storage of num_params() floats each (a tensor-parallel model keeps its
  // shards in one buffer; CPU only); null: owned, on the backend's device. backend null: the CPU's.
  // storage: see WeightStorage (owned storage only; external storage is whole f32).
  explicit Transformer(const ModelConfig& config, float* params = nullptr, float* grads = nullptr,
                       std::shared_ptr<Backend> backend = nullptr, const WeightStorage& storage = {});
  Device device() const { return be_->device(); }
  void set_shard(const ShardInfo& shard) { shard_ = shard; }

  // Weight dtype (CPU backend only): F32, or BF16 = mixed precision: params() stay the f32 masters
  // (what AdamW updates, what read/write_parameter see) and every product with a weight matrix
  // (forward, generate, backward's input gradients) runs cpu::gemm_bf16 on a bf16 copy of the
  // parameters, re-rounded from the masters before the first forward/generate after they may have
  // changed (init_random, write_parameter, optimizer_view, weights_changed). Norms, biases,
  // embeddings, LoRA adapters and all gradients stay f32. Throws Unsupported on other backends.
  // Frozen matrices under WeightStorage{BF16} have no master: the bf16 store is their only copy.
  // A model with bf16-only weights (WeightStorage) keeps its dtype: changing it throws InvalidState.
  void set_weight_dtype(DType dtype);
  DType weight_dtype() const { return weight_dtype_; }
  void weights_changed() { bf16_stale_ = true; }  // params() were written directly
  // Bytes held: the f32 parameter store (bf16-only matrices not in it), the bf16 weights (masters'
  // copy or the only store), the gradient store (what trains, and the frozen norms' sink).
  int64_t parameter_bytes() const { return static_cast<int64_t>(params_.bytes()); }
  int64_t weight_copy_bytes() const { return static_cast<int64_t>(params_bf16_.bytes()); }
  int64_t gradient_bytes() const { return static_cast<int64_t>(grads_.bytes() + dw_sink_.bytes()); }
  bool trainable() const { return trainable_; }
  bool bf16_only(const ParamView& v) const;  // v's only copy is bf16

  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  int64_t num_params() const { return layout_.total; }
  // Device memory (device()). params(): num_params() floats, except with bf16-only matrices (then
  // only the f32-stored views, in layout order). grads(): parameters [grad_begin(), total).
  float* params() { return params_ptr_; }
  float* grads() { return grads_ptr_; }
  int64_t grad_begin() const { return grad_begin_; }

  // Engine (a Transformer that is not a shard is its own full model)
  const ModelConfig& full_config() const override { return cfg_; }
  const std::vector<ParamView>& full_views() const override { return layout_.views; }
  int64_t full_num_params() const override { return layout_.total; }
  int tensor_parallel() const override { return 1; }
  // A frozen parameter's gradient reads as zeros; a bf16-only parameter reads widened (exact) and
  // is written rounded to bf16 (nearest even).
  void read_parameter(const ParamView& v, bool grad, float* out) override;
  void write_parameter(const ParamView& v, const float* data) override;
  // bf16 bits straight in and out of a bf16-only parameter (no f32 round trip); other
  // parameters round on read and widen on write.
  void read_parameter_bf16(const ParamView& v, uint16_t* out) override;
  void write_parameter_bf16(const ParamView& v, const uint16_t* data) override;
  OptimizerView optimizer_view() override;
  bool set_gradient_ready_hook(std::function<void(int64_t)> ready) override;

  // init_parameter() for every view (stream = view index).
  void init_random(uint64_t seed, float std) override;
  void zero_grad() override;

  void forward(const ForwardInput& in, const ForwardOutput& out) override;
  // Needs the last forward to have save = true, and runs once per such forward: a second backward
  // on the same saved activations throws ErrorCode::InvalidState (a new forward re-arms it).
  void backward(const BackwardInput& in) override;
  // The checks backward runs first (throws, changes nothing): for callers that must validate
  // before touching gradients (TensorParallelModel).
  void check_backward(const BackwardInput& in) const;
  GenerateResult generate(const GenerateRequest& req) override;

  void release_activations() override;
  int64_t saved_rows() const override { return saved_.valid ? saved_.N : 0; }  // N of the saved forward
  int64_t activation_bytes() const override;  // saved activations + scratch currently held
  static int64_t activation_floats_per_token_per_layer(const ModelConfig& c);
  void set_gradient_checkpointing(bool on) override { checkpointing_ = on; }
  int64_t logits_cache_budget_bytes = int64_t(256) << 20;

 private:
  friend class GenerationSession;  // runs layer_forward and the LM head on its paged KV cache
  void layer_forward(int l, const float* x_in, float* x_out, const LayerActs& a, int64_t B, int64_t T,
                     const int64_t* lengths, const int32_t* pos, const int32_t* segments, KvCache* cache,
                     const int64_t* kv_seq, const int64_t* kv_offset);
  void layer_backward(int l, float* dx, const LayerActs& a, const BackScratch& s);
  // q/k norm (qk_norm): forward saves the raw q, k into a.qk_raw and normalises them in a.qkv;
  // backward turns dqkv's q, k columns (N rows, stride QW) from d(normed) into d(raw) in place and
  // accumulates the q_norm / k_norm gradients (summed over ranks when sharded).
  void qk_norm_forward(int l, const LayerActs& a, int64_t N);
  void qk_norm_backward(int l, const LayerActs& a, float* dqkv, int64_t N);
  // Gemma / GLM-4-0414 pieces (no-ops with the Llama-family defaults):
  float* nw(int64_t offset);   // a norm's effective weight: w, or (norm_offset + w) from norm_shadow_
  void refresh_norm_shadow();  // norm_shadow_ ← norm_offset + w (each forward / generate)
  std::vector<float> norm_shadow_;
  std::unordered_map<int64_t, int64_t> norm_shadow_at_;    // parameter offset -> index in norm_shadow_
  std::vector<std::array<int64_t, 3>> norm_shadow_views_;  // (parameter offset, index, size)
  const cpu::RopeTable& rope_for(int l) const;             // Gemma 3: local layers' own RoPE base
  void ensure_rope(int64_t max_position);
  float attention_scale() const;
  void softcap_logits(float* z, int64_t n, float alpha) const;                            // heads.cc
  void softcap_logits_backward(float* dz, const float* z, int64_t n, float alpha) const;  // heads.cc
  const float* sandwich_backward(int64_t norm, const float* src, const float* rstd, const float* dx, float* tmp,
                                 int64_t N);
  void scale_embeddings(float* x, int64_t N);  // x (N, C) *= embed_scale
  void add_normed(float* xout, const float* resid, float* tmp, float* rstd, const float* src, int64_t norm, int64_t N);
  void lm_head_forward(const float* xf, int64_t N, const int32_t* targets, float temperature, const ForwardOutput& out,
                       bool save);
  void lm_head_backward(const float* dlogp, const float* dent, float* dxf);
  LayerActs saved_layer(int l);
  // One layer's activation slots (all but h, act) carved from `base` (activation_floats_per_token_per_layer · N
  // floats).
  LayerActs layer_slots(float* base, int64_t N) const;
  // Checkpointed backward: layer l's activations recomputed from its saved input into `base`.
  LayerActs recompute_layer(int l, float* base, float* x_out, const BackScratch& s);
  // The f32 parameter at layout `offset` (never of a bf16-only matrix: Internal error).
  float* w(int64_t offset) { return params_ptr_ + (f32_at_.empty() ? offset : f32_offset(offset)); }
  int64_t f32_offset(int64_t offset) const;  // layout offset -> offset in the compact f32 store
  // x (N, C) ← embedding rows of tokens (zero rows outside this rank's vocabulary); reads the bf16
  // table (widened) when the embedding is bf16-only.
  void embed_tokens(float* x, const int32_t* tokens, int64_t N);
  // Tensor-parallel pieces (no-ops / plain paths when not a shard); tensor_parallel.cc.
  bool sharded() const { return shard_.comm != nullptr; }
  int64_t vocab_total() const { return sharded() ? shard_.full_vocab : cfg_.vocab; }
  void sum_over_ranks(float* x, int64_t n);
  // Sharded log-softmax over rows of this rank's logits z (n, vocab) with targets in full-vocab
  // ids (−1: none): lse, logp, entropy of the full distribution (one all-reduce each of max, sum,
  // and (target logit, entropy)). logp/ent may be null.
  void sharded_logsoftmax(const float* z, int64_t n, const int32_t* targets, float* lse, float* logp, float* ent);
  void sharded_logsoftmax_backward(float* dz, const float* z, int64_t n, const int32_t* targets, const float* lse,
                                   const float* ent, const float* dlogp, const float* dent);
  // full (n, full_vocab) ← this rank's (n, vocab) logits and everybody else's.
  void gather_vocab(const float* z, int64_t n, float* full);
  // LoRA at one site of layer l: out (N rows, leading dimension ld_out) += s·(x·Aᵀ)·Bᵀ for each
  // adapter there, x (N × in) the site's input.
  void lora_forward(int l, LoraSite site, const float* x, int64_t N, float* out, int64_t ld_out);
  // Its backward, dy the gradient of the site's output: the adapters' gradients accumulate and
  // dx (N × in) += dt·A (dt = s·dy·B).
  void lora_backward(int l, LoraSite site, const float* x, const float* dy, int64_t ld_dy, float* dx, int64_t N);
  bool frozen_base() const { return cfg_.lora_rank > 0 || !trainable_; }
  // set_gradient_ready_hook: the hook, and where each layer's parameters begin (the layout puts
  // the embedding first, then the layers in order, then the final norm and the heads)
  std::function<void(int64_t)> grad_ready_;
  std::vector<int64_t> layer_begin_;
  void gradients_ready(int64_t from) {
    if (grad_ready_) grad_ready_(from);
  }
  bool adapters_on_ = true;        // set by each forward / generate call
  Buffer lora_buf_;                // t and dt (N × rank each) of the adapter being computed
  float* lora_scratch(int64_t N);  // lora_buf_ grown to 2·N·rank floats
  // C (N×out) = A (N×in)·Wᵀ (+ beta·C) for a weight W (out×in) at `offset`, or its packed copy.
  void linear(const float* A, int64_t N, int64_t in, int64_t offset, int64_t out, float beta, float* C,
              const void* packed);
  const PackedWeights* packed_ = nullptr;  // set while generate() runs
  // C = alpha·op(A)·op(W) + beta·C for the weight matrix at `offset` (row stride ldw): sgemm on the
  // f32 parameters, or gemm_bf16 on their bf16 copy (weight_dtype_ BF16).
  void gemm_weight(bool trans_a, bool trans_w, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, int64_t offset, int64_t ldw, float beta, float* C, int64_t ldc);
  // Packs every weight matrix generate multiplies (f32 or bf16 as the weights are).
  void pack_weights(PackedWeights* out);
  void refresh_bf16();  // params_bf16_ ← bf16(params) when stale
  DType weight_dtype_ = DType::F32;
  // BF16: the bf16 weights at their layout offsets: num_params() values (mixed precision), or the
  // frozen prefix [0, trainable_begin) under LoRA with bf16-only matrices
  Buffer params_bf16_;
  bool bf16_stale_ = true;
  float* g(int64_t offset) { return grads_ptr_ + (offset - grad_begin_); }  // offset >= grad_begin_
  // A norm's weight-gradient destination: g(offset), or a sink when the norm is frozen.
  float* dw(int64_t offset) { return offset >= grad_begin_ ? g(offset) : dw_sink_.as<float>(); }
  void allocate_storage(const WeightStorage& storage, bool external_params, bool external_grads);
  bool trainable_ = true;
  int64_t grad_begin_ = 0;
  // bf16-only storage: per view (layout order), its offset in the compact f32 store, −1 when
  // bf16-only; empty when every parameter has an f32 copy (w(offset) = params + offset).
  std::vector<int64_t> f32_at_;
  std::vector<int64_t> view_offsets_;  // views' layout offsets (ascending), for f32_offset
  Buffer dw_sink_;                     // frozen norms' discarded weight gradients (max norm size)

  ModelConfig cfg_;
  ParamLayout layout_;
  std::shared_ptr<Backend> backend_;  // every op on params, grads and activations goes through it
  Backend* be_;
  Buffer params_, grads_;  // empty when the storage is external
  float* params_ptr_;
  float* grads_ptr_;
  ShardInfo shard_;
  cpu::RopeTable rope_;
  cpu::RopeTable rope_local_;  // rope_local_theta's table (unused when it is 0)

  // State of the last forward(save = true).
  struct Saved {
    bool valid = false;
    bool backward_done = false;  // a backward already ran on these activations
    int64_t B = 0, T = 0, N = 0;
    float temperature = 1.0f;
    bool entropy = false;
    std::vector<int32_t> tokens, positions, segments;
    std::vector<int64_t> lengths;
    Staging staged;  // tokens, positions, segments, lengths where the backend reads them (d_*)
    const int32_t *d_tokens = nullptr, *d_positions = nullptr, *d_segments = nullptr;
    const int64_t* d_lengths = nullptr;
    Buffer acts;  // per layer (activation_floats_per_token_per_layer · N, or N·C: the input alone
                  // when checkpointed), then x_final, xf, rstd_f
    int64_t per_layer = 0, final_off = 0;
    bool checkpointed = false;
    // LM head state: rows with a target (compacted), their targets, lse, entropy, cached logits
    std::vector<int64_t> lm_rows;
    std::vector<int32_t> lm_targets;
    Buffer lm;  // lse (M), entropy (M), logits (M·V) when cached
    bool logits_cached = false;
  } saved_;
  Buffer scratch_;
  float* scratch(size_t floats);  // scratch_ grown to `floats` (grow_buffer: contents not kept)
  bool checkpointing_ = false;
};

}  // namespace model
}  // namespace rlhf
