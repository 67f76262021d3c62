// What the bindings drive: one transformer (Transformer) or a tensor-parallel group of shards
// (TensorParallelModel) behind the same calls. Parameters are addressed by their Hugging Face
// name and full (unsharded) shape; the optimizer sees flat storage plus the ranges that count
// toward the global gradient norm (each parameter once, even when ranks hold copies).
#pragma once
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "../cpu/adamw.h"
#include "config.h"
#include "layout.h"

namespace rlhf {
namespace model {

class Backend;  // backend.h
struct ForwardInput;
struct ForwardOutput;
struct BackwardInput;
struct GenerateRequest;
struct GenerateResult;

struct OptimizerView {
  float* params = nullptr;
  float* grads = nullptr;
  int64_t size = 0;
  std::vector<cpu::AdamWSegment> segments;               // weight-decay runs tiling [0, size)
  std::vector<std::pair<int64_t, int64_t>> norm_ranges;  // (offset, length); empty: all of [0, size)
  Backend* backend = nullptr;  // whose device params/grads live on (its adamw_step updates them); null: host
  // Set when other processes hold the rest of the model (tensor parallelism across processes):
  // x ← Σ over those ranks, applied to this rank's Σg² so the clipping norm is the whole model's.
  std::function<void(double*, int64_t)> sum_sumsq_over_ranks;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const ModelConfig& full_config() const = 0;
  virtual const std::vector<ParamView>& full_views() const = 0;  // HF names, full shapes
  virtual int64_t full_num_params() const = 0;
  virtual int tensor_parallel() const = 0;

  virtual void init_random(uint64_t seed, float std) = 0;
  virtual void zero_grad() = 0;
  virtual void forward(const ForwardInput& in, const ForwardOutput& out) = 0;
  virtual void backward(const BackwardInput& in) = 0;
  virtual GenerateResult generate(const GenerateRequest& req) = 0;
  virtual void release_activations() = 0;
  virtual int64_t saved_rows() const = 0;
  virtual int64_t activation_bytes() const = 0;
  // Gradient (activation) checkpointing: a forward that saves for backward keeps only each
  // layer's input, and backward recomputes the layer's activations from it (one more layer
  // forward per layer; gradients bit-identical). Applies from the next forward on.
  virtual void set_gradient_checkpointing(bool on) = 0;

  // The whole tensor `v` (one of full_views()): out (v.size) ← parameter or gradient.
  virtual void read_parameter(const ParamView& v, bool grad, float* out) = 0;
  // parameter `v` ← data (v.size), cut into shards where sharded.
  virtual void write_parameter(const ParamView& v, const float* data) = 0;
  // The same as bf16 bits (out/data: v.size): read rounds to nearest even, write widens; a model
  // storing `v` in bf16 moves the bits as they are (Transformer, bf16-only weights).
  virtual void read_parameter_bf16(const ParamView& v, uint16_t* out);
  virtual void write_parameter_bf16(const ParamView& v, const uint16_t* data);
  virtual OptimizerView optimizer_view() = 0;

  // For overlapping the gradient all-reduce with backward: during each backward, ready(from) is
  // called (on backward's thread) each time the gradients [from, full_num_params()) become final,
  // with `from` decreasing, last ready(0). Returns false (and keeps no hook) where not supported
  // (models split over ranks, LoRA, other devices); null clears it.
  virtual bool set_gradient_ready_hook(std::function<void(int64_t)> ready) {
    (void)ready;
    return false;
  }
};

// Normal(0, std) for matrices and embeddings, 1 for norm weights, 0 for biases; Philox stream =
// `index` (the view's position in the full layout), so weights do not depend on threads or ranks.
// Norm weights are set to norm_value (1, or 0 where the norm multiplies by 1 + w).
void init_parameter(const ParamView& v, uint64_t index, uint64_t seed, float std, float* out, float norm_value = 1.0f);

}  // namespace model
}  // namespace rlhf
