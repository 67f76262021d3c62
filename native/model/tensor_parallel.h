// Megatron-style tensor parallelism over P ranks (docs/architecture.md). Each rank is a
// Transformer holding its shard (transformer.h, ShardInfo) and running on its own thread with its
// own thread pool; ranks meet only in the Communicator's collectives.
//
// Sharding of the Hugging Face tensors (full shape → rank r's piece):
//   embed_tokens, lm_head (V, C)          rows: vocabulary split into P contiguous ranges
//   q_proj (NH·HD, C) (+ bias)            rows of heads [r·NH/P, (r+1)·NH/P)
//   k_proj, v_proj (KVH·HD, C) (+ bias)   rows of KV heads [r·KVH/P, …) when P divides KVH; when
//                                         KVH divides P, KV head r·KVH/P (replicated, see kv_rep)
//   o_proj (C, NH·HD)                     columns of the rank's heads (row-parallel, summed)
//   gate_proj, up_proj (F, C)             rows [f0, f1) of F split into P ranges (uneven allowed)
//   gate_up_proj (2F, C)                  rows [f0, f1) and [F + f0, F + f1)
//   down_proj (C, F)                      columns [f0, f1) (row-parallel, summed)
//   norms, o_proj.bias, score             replicated (each rank computes the same values)
// Checkpoints stay in this full layout: read_parameter gathers, write_parameter cuts.
// The shards live in one flat buffer (rank 0's layout, then rank 1's, ...) so one fused AdamW
// pass updates them all; its gradient norm counts every parameter once (replicas on rank 0 only).
#pragma once
#include <memory>
#include <vector>

#include "../core/communicator.h"
#include "../core/thread_pool.h"
#include "transformer.h"

namespace rlhf {
namespace model {

// Which piece of every full tensor rank r of P holds (the table above); shared by the thread
// group (TensorParallelModel) and the process group (ProcessTensorParallelModel,
// tensor_parallel_process.h). The constructor validates P against the config.
// The index of v among layout.views: by address when v is one of them, else by name (OutOfRange
// naming it when absent). Both tensor-parallel models map a caller's view to the full layout with it.
size_t view_index(const ParamLayout& layout, const ParamView& v);

class ShardPlan {
 public:
  ShardPlan(const ModelConfig& full, int size);
  struct Slice {
    int axis = -1;                                    // -1 replicated, 0 rows, 1 columns
    std::vector<std::pair<int64_t, int64_t>> ranges;  // along `axis`, full-tensor indices, in shard order
  };
  ModelConfig shard_config(int r) const;  // rank r's Transformer config
  Slice slice_of(const ParamView& v, int r) const;
  // k_proj/v_proj weight or bias while KV heads are replicated (kv_rep() > 1)
  bool replicated_kv(const ParamView& v) const;
  // Whether rank r's piece of `v` counts toward the gradient norm (replicas count on one rank).
  bool counts_in_norm(const ParamView& v, int r) const;
  // Copies between full tensor `full` (full view fv) and rank r's piece `shard` (its view sv).
  void copy_piece(const ParamView& fv, const ParamView& sv, int r, float* full, float* shard, bool to_shard) const;
  int size() const { return size_; }
  // Ranks sharing one KV head: 1 when num_key_value_heads divides by size (each rank owns
  // kv_heads / size heads); size / kv_heads when size is a multiple of it (Megatron's KV
  // replication: ranks r with the same r / kv_rep hold copies of KV head r / kv_rep; each copy's
  // gradient is the group's sum, so the copies stay identical through every AdamW step).
  int kv_rep() const { return kv_rep_; }

 private:
  ModelConfig full_;
  int size_;
  int kv_rep_ = 1;
};

class TensorParallelModel final : public Engine {
 public:
  // threads_per_rank: each rank's pool size (>= 1).
  TensorParallelModel(const ModelConfig& full, int size, int threads_per_rank);
  ~TensorParallelModel() override;

  const ModelConfig& full_config() const override { return full_; }
  const std::vector<ParamView>& full_views() const override { return full_layout_.views; }
  int64_t full_num_params() const override { return full_layout_.total; }
  int tensor_parallel() const override { return size_; }

  void init_random(uint64_t seed, float std) override;
  void zero_grad() override;
  void forward(const ForwardInput& in, const ForwardOutput& out) override;
  void backward(const BackwardInput& in) override;
  GenerateResult generate(const GenerateRequest& req) override;
  void release_activations() override;
  int64_t saved_rows() const override { return ranks_[0]->saved_rows(); }
  int64_t activation_bytes() const override;
  void set_gradient_checkpointing(bool on) override;
  void read_parameter(const ParamView& v, bool grad, float* out) override;
  void write_parameter(const ParamView& v, const float* data) override;
  OptimizerView optimizer_view() override;

  Transformer& rank(int r) { return *ranks_[r]; }

 private:
  // Copies between full tensor `full` (view index i) and rank r's shard piece (to_shard: full → shard).
  void copy_piece(size_t i, int r, float* full, float* shard, bool to_shard) const;
  bool replicated_kv(const ParamView& v) const { return plan_.replicated_kv(v); }
  // fn(r) on every rank, concurrently (rank 0 on the calling thread); the first failure aborts
  // the others' collectives and is rethrown.
  void run_ranks(const std::function<void(int)>& fn);

  ModelConfig full_;
  ParamLayout full_layout_;
  int size_;
  ShardPlan plan_;
  int kv_rep_ = 1;  // plan_.kv_rep()
  std::unique_ptr<CpuGroup> group_;
  std::vector<std::unique_ptr<ThreadPool>> pools_;
  std::vector<int64_t> base_;  // rank r's shard starts at params_/grads_ + base_[r]
  Buffer params_, grads_;
  std::vector<std::unique_ptr<Transformer>> ranks_;
};

}  // namespace model
}  // namespace rlhf
