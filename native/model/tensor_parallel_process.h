// Tensor parallelism across processes: this process is rank r of a tensor-parallel group of P
// processes (an MPI sub-communicator, core/mpi.h) and holds rank r's shard only, cut by the same
// ShardPlan as the thread group (tensor_parallel.h), so the two give the same shards, the same
// collectives at the same points and agree to summation order (MPI's order is not rank order).
//
// Contracts that differ from a one-process Engine:
//   - every call that runs the model (forward, backward, generate) and read_parameter are
//     collective over the group: every rank calls them in the same order with the same inputs;
//   - write_parameter is local: each rank is handed the full tensor and keeps its piece, so every
//     rank must write the same data (e.g. each reads the same checkpoint);
//   - optimizer_view() is this rank's shard; its norm_ranges leave replicas to rank 0 and
//     sum_sumsq_over_ranks adds the ranks' partial Σg² (the norm is then the full model's);
//   - a rank whose model call fails after the inputs were checked calls the group's abort() (MPI:
//     MPI_Abort; mpirun ends every rank and names the one that failed), since the other ranks may
//     already wait in a collective. Input errors are found on every rank alike and just throw.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "../core/communicator.h"
#include "../cpu/adamw.h"
#include "tensor_parallel.h"
#include "transformer.h"

namespace rlhf {
namespace model {

class ProcessTensorParallelModel final : public Engine {
 public:
  // comm: the group (outlives the model). sum_f64: x ← Σ over the group's ranks (for the norm).
  ProcessTensorParallelModel(const ModelConfig& full, Communicator* comm,
                             std::function<void(double*, int64_t)> sum_f64);
  ~ProcessTensorParallelModel() override;

  const ModelConfig& full_config() const override { return full_; }
  const std::vector<ParamView>& full_views() const override { return full_layout_.views; }
  int64_t full_num_params() const override { return full_layout_.total; }
  int tensor_parallel() const override { return plan_.size(); }
  int rank() const { return rank_; }

  void init_random(uint64_t seed, float std) override;
  void zero_grad() override { shard_->zero_grad(); }
  void forward(const ForwardInput& in, const ForwardOutput& out) override;
  void backward(const BackwardInput& in) override;
  GenerateResult generate(const GenerateRequest& req) override;
  void release_activations() override { shard_->release_activations(); }
  int64_t saved_rows() const override { return shard_->saved_rows(); }
  int64_t activation_bytes() const override { return shard_->activation_bytes(); }
  void set_gradient_checkpointing(bool on) override { shard_->set_gradient_checkpointing(on); }
  void read_parameter(const ParamView& v, bool grad, float* out) override;
  void write_parameter(const ParamView& v, const float* data) override;
  OptimizerView optimizer_view() override;

 private:
  // fn() on this rank; a failure aborts the group (see above) after printing it with the rank.
  void run_collective(const char* what, const std::function<void()>& fn);

  ModelConfig full_;
  ParamLayout full_layout_;
  ShardPlan plan_;
  Communicator* comm_;
  std::function<void(double*, int64_t)> sum_f64_;
  int rank_;
  std::vector<ParamLayout> layouts_;  // every rank's shard layout (piece sizes for gathers)
  std::unique_ptr<Transformer> shard_;
};

}  // namespace model
}  // namespace rlhf
