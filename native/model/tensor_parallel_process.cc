#include "tensor_parallel_process.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "../core/error.h"
#include "../core/thread_pool.h"
#include "internal.h"

namespace rlhf {
namespace model {

ProcessTensorParallelModel::ProcessTensorParallelModel(const ModelConfig& full, Communicator* comm,
                                                       std::function<void(double*, int64_t)> sum_f64)
    : full_((validate_config(full), full)),
      full_layout_(build_layout(full_)),
      plan_(full_, comm->size()),
      comm_(comm),
      sum_f64_(std::move(sum_f64)),
      rank_(comm->rank()) {
  const int P = plan_.size();
  for (int r = 0; r < P; ++r) layouts_.push_back(build_layout(plan_.shard_config(r)));
  shard_ = std::make_unique<Transformer>(plan_.shard_config(rank_));
  int64_t v0, v1;
  split_range(full_.vocab, P, rank_, &v0, &v1);
  shard_->set_shard({comm_, rank_, P, v0, full_.vocab});
  const auto& sv = shard_->layout().views;
  RLHF_CHECK(sv.size() == full_layout_.views.size(), ErrorCode::Internal, "shard layout mismatch");
  for (size_t i = 0; i < sv.size(); ++i)
    RLHF_CHECK(sv[i].name == full_layout_.views[i].name, ErrorCode::Internal, "shard layout mismatch at ", sv[i].name);
}

ProcessTensorParallelModel::~ProcessTensorParallelModel() = default;

void ProcessTensorParallelModel::run_collective(const char* what, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    // Bad inputs and call-order mistakes are found alike on every rank (same inputs, same
    // checks): they throw everywhere and nobody waits. Anything else may be this rank's alone.
    const ErrorCode c = e.code();
    if (c == ErrorCode::InvalidArgument || c == ErrorCode::OutOfRange || c == ErrorCode::InvalidState ||
        c == ErrorCode::Unsupported)
      throw;
    std::fprintf(stderr, "tensor-parallel rank %d of %d: %s failed: %s; aborting the job\n", rank_, plan_.size(), what,
                 e.what());
    comm_->abort();
    throw;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tensor-parallel rank %d of %d: %s failed: %s; aborting the job\n", rank_, plan_.size(), what,
                 e.what());
    comm_->abort();
    throw;
  }
}

void ProcessTensorParallelModel::init_random(uint64_t seed, float std) {
  const auto& views = full_layout_.views;
  std::vector<float> tmp;
  for (size_t i = 0; i < views.size(); ++i) {
    tmp.resize(static_cast<size_t>(views[i].size));
    init_parameter(views[i], static_cast<uint64_t>(i), seed, std, tmp.data(), 1.0f - full_.norm_offset);
    write_parameter(views[i], tmp.data());
  }
}

void ProcessTensorParallelModel::forward(const ForwardInput& in, const ForwardOutput& out) {
  check_inputs(full_, full_.vocab, in);
  run_collective("forward", [&] { shard_->forward(in, out); });
}

void ProcessTensorParallelModel::backward(const BackwardInput& in) {
  shard_->check_backward(in);
  const int rep = plan_.kv_rep();
  if (rep == 1) return run_collective("backward", [&] { shard_->backward(in); });
  // Replicated KV heads (as TensorParallelModel::backward): each copy's backward sees only this
  // rank's query heads; the copies' contributions are summed over the ranks sharing the head, on
  // top of the gradient accumulated so far (identical on those ranks).
  std::vector<size_t> kv;
  for (size_t i = 0; i < full_layout_.views.size(); ++i)
    if (plan_.replicated_kv(full_layout_.views[i])) kv.push_back(i);
  const auto& views = shard_->layout().views;
  std::vector<std::vector<float>> before(kv.size());
  for (size_t k = 0; k < kv.size(); ++k) {
    float* g = shard_->grads() + views[kv[k]].offset;
    before[k].assign(g, g + views[kv[k]].size);
    std::memset(g, 0, sizeof(float) * views[kv[k]].size);
  }
  run_collective("backward", [&] {
    shard_->backward(in);
    // One all-reduce over the group: slot h (KV head h) holds the contributions of its ranks, the
    // others add zeros (exact), so each slot is the sum over that head's ranks.
    const int heads = plan_.size() / rep;
    for (size_t k = 0; k < kv.size(); ++k) {
      const int64_t n = views[kv[k]].size;
      std::vector<float> slots(static_cast<size_t>(heads * n), 0.0f);
      float* g = shard_->grads() + views[kv[k]].offset;
      std::memcpy(slots.data() + (rank_ / rep) * n, g, sizeof(float) * n);
      comm_->all_reduce_sum(slots.data(), heads * n);
      const float* sum = slots.data() + (rank_ / rep) * n;
      for (int64_t j = 0; j < n; ++j) g[j] = before[k][j] + sum[j];
    }
  });
}

GenerateResult ProcessTensorParallelModel::generate(const GenerateRequest& req) {
  GenerateResult r;
  run_collective("generate", [&] { r = shard_->generate(req); });
  return r;
}

void ProcessTensorParallelModel::read_parameter(const ParamView& v, bool grad, float* out) {
  const size_t i = view_index(full_layout_, v);
  const ParamView& fv = full_layout_.views[i];
  const ParamView& own = shard_->layout().views[i];
  float* mine = (grad ? shard_->grads() : shard_->params()) + own.offset;
  if (plan_.slice_of(fv, rank_).axis < 0) {  // replicated: every rank holds the same values
    std::memcpy(out, mine, sizeof(float) * fv.size);
    return;
  }
  const int P = plan_.size();
  int64_t width = 0;
  for (int r = 0; r < P; ++r) width = std::max(width, layouts_[r].views[i].size);
  std::vector<float> send(static_cast<size_t>(width), 0.0f), recv(static_cast<size_t>(P * width));
  std::memcpy(send.data(), mine, sizeof(float) * own.size);
  run_collective("read_parameter", [&] { comm_->all_gather(send.data(), width, recv.data()); });
  for (int r = 0; r < P; ++r) {
    if (plan_.replicated_kv(fv) && r % plan_.kv_rep() != 0) continue;  // the copy of its group's first rank
    plan_.copy_piece(fv, layouts_[r].views[i], r, out, recv.data() + r * width, false);
  }
}

void ProcessTensorParallelModel::write_parameter(const ParamView& v, const float* data) {
  const size_t i = view_index(full_layout_, v);
  plan_.copy_piece(full_layout_.views[i], shard_->layout().views[i], rank_, const_cast<float*>(data),
                   shard_->params() + shard_->layout().views[i].offset, true);
}

OptimizerView ProcessTensorParallelModel::optimizer_view() {
  OptimizerView o = shard_->optimizer_view();
  o.norm_ranges.clear();
  for (size_t i = 0; i < full_layout_.views.size(); ++i) {
    if (!plan_.counts_in_norm(full_layout_.views[i], rank_)) continue;
    const ParamView& v = shard_->layout().views[i];
    if (!o.norm_ranges.empty() && o.norm_ranges.back().first + o.norm_ranges.back().second == v.offset)
      o.norm_ranges.back().second += v.size;
    else
      o.norm_ranges.push_back({v.offset, v.size});
  }
  if (o.norm_ranges.empty()) o.norm_ranges.push_back({0, 0});  // nothing of this rank counts (empty ≠ all)
  o.sum_sumsq_over_ranks = sum_f64_;
  return o;
}

}  // namespace model
}  // namespace rlhf
