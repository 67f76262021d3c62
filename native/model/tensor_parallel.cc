#include "tensor_parallel.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <thread>

#include "../core/error.h"
#include "../cpu/vmath.h"
#include "internal.h"

namespace rlhf {
namespace model {

// ---------------------------------------------------------------------------------------------
// The shard side (Transformer members used by forward/backward/generate when sharded)

void Transformer::sum_over_ranks(float* x, int64_t n) {
  if (sharded()) shard_.comm->all_reduce_sum(x, n);
}

void Transformer::sharded_logsoftmax(const float* z, int64_t n, const int32_t* targets, float* lse, float* logp,
                                     float* ent) {
  const int64_t V = cfg_.vocab, v0 = shard_.vocab_begin;
  std::vector<float> m(n), s(n);
  parallel_for(n, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) m[r] = *std::max_element(z + r * V, z + r * V + V);
  });
  shard_.comm->all_reduce_max(m.data(), n);
  parallel_for(n, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      double acc = 0.0;
      for (int64_t j = 0; j < V; ++j) acc += cpu::exp_approx(z[r * V + j] - m[r]);
      s[r] = static_cast<float>(acc);
    }
  });
  shard_.comm->all_reduce_sum(s.data(), n);
  for (int64_t r = 0; r < n; ++r) lse[r] = m[r] + std::log(s[r]);
  if (!logp && !ent) return;
  std::vector<float> te(2 * n);  // target logit (0 off this rank), Σ p·(lse − z) over this rank
  parallel_for(n, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      const int32_t y = targets ? targets[r] : -1;
      te[r] = (y >= v0 && y < v0 + V) ? z[r * V + (y - v0)] : 0.0f;
      double h = 0.0;
      if (ent)
        for (int64_t j = 0; j < V; ++j) {
          const float lp = z[r * V + j] - lse[r];
          h -= static_cast<double>(cpu::exp_approx(lp)) * lp;
        }
      te[n + r] = static_cast<float>(h);
    }
  });
  shard_.comm->all_reduce_sum(te.data(), 2 * n);
  for (int64_t r = 0; r < n; ++r) {
    const bool has = targets && targets[r] >= 0;
    if (logp) logp[r] = has ? te[r] - lse[r] : 0.0f;
    if (ent) ent[r] = has ? te[n + r] : 0.0f;
  }
}

// dz_j = dlogp·(1[j = y] − p_j) − dH·p_j·(log p_j + H), on this rank's columns.
void Transformer::sharded_logsoftmax_backward(float* dz, const float* z, int64_t n, const int32_t* targets,
                                              const float* lse, const float* ent, const float* dlogp,
                                              const float* dent) {
  const int64_t V = cfg_.vocab, v0 = shard_.vocab_begin;
  parallel_for(n, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      float* d = dz + r * V;
      const int32_t y = targets[r];
      if (y < 0) {
        std::fill(d, d + V, 0.0f);
        continue;
      }
      const float g = dlogp ? dlogp[r] : 0.0f, h = dent ? dent[r] : 0.0f, H = ent[r];
      for (int64_t j = 0; j < V; ++j) {
        const float lp = z[r * V + j] - lse[r];
        d[j] = -cpu::exp_approx(lp) * (g + h * (lp + H));
      }
      if (y >= v0 && y < v0 + V) d[y - v0] += g;
    }
  });
}

void Transformer::gather_vocab(const float* z, int64_t n, float* full) {
  const int P = shard_.size;
  const int64_t Vt = shard_.full_vocab, Vmax = (Vt + P - 1) / P, V = cfg_.vocab;
  std::vector<float> send(static_cast<size_t>(n * Vmax), 0.0f), recv(static_cast<size_t>(P * n * Vmax));
  for (int64_t r = 0; r < n; ++r) std::memcpy(send.data() + r * Vmax, z + r * V, sizeof(float) * V);
  shard_.comm->all_gather(send.data(), n * Vmax, recv.data());
  for (int q = 0; q < P; ++q) {
    int64_t b, e;
    split_range(Vt, P, q, &b, &e);
    for (int64_t r = 0; r < n; ++r)
      std::memcpy(full + r * Vt + b, recv.data() + (q * n + r) * Vmax, sizeof(float) * (e - b));
  }
}

// ---------------------------------------------------------------------------------------------
// The group

namespace {
bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}
}  // namespace

ShardPlan::ShardPlan(const ModelConfig& full, int size) : full_((validate_config(full), full)), size_(size) {
  const int P = size;
  RLHF_CHECK(P >= 1 && P <= 64, ErrorCode::OutOfRange, "tensorParallel must be in [1, 64], got ", P);
  RLHF_CHECK(P == 1 || full_.lora_rank == 0, ErrorCode::Unsupported, "LoRA with tensorParallel > 1 is not implemented");
  RLHF_CHECK(full_.heads % P == 0, ErrorCode::Unsupported, "tensorParallel ", P, " must divide num_attention_heads (",
             full_.heads, ")");
  RLHF_CHECK(full_.kv_heads % P == 0 || P % full_.kv_heads == 0, ErrorCode::Unsupported, "tensorParallel ", P,
             " must divide num_key_value_heads (", full_.kv_heads, ") or be a multiple of it (KV heads replicated)");
  kv_rep_ = full_.kv_heads % P == 0 ? 1 : P / full_.kv_heads;
  RLHF_CHECK(full_.ffn >= P && full_.vocab >= P, ErrorCode::Unsupported, "tensorParallel ", P,
             " needs intermediate_size and vocab_size >= ", P);
}

ModelConfig ShardPlan::shard_config(int r) const {
  const int P = size_;
  ModelConfig c = full_;
  int64_t b, e;
  c.heads /= P;
  c.kv_heads = kv_rep_ > 1 ? 1 : c.kv_heads / P;
  split_range(full_.ffn, P, r, &b, &e);
  c.ffn = static_cast<int>(e - b);
  split_range(full_.vocab, P, r, &b, &e);
  c.vocab = e - b;
  return c;
}

TensorParallelModel::TensorParallelModel(const ModelConfig& full, int size, int threads_per_rank)
    : full_((validate_config(full), full)), full_layout_(build_layout(full_)), size_(size), plan_(full_, size) {
  const int P = size;
  RLHF_CHECK(P >= 2, ErrorCode::OutOfRange, "tensorParallel must be in [1, 64], got ", P);
  kv_rep_ = plan_.kv_rep();
  group_ = std::make_unique<CpuGroup>(P);
  std::vector<ModelConfig> cfgs;
  int64_t total = 0;
  for (int r = 0; r < P; ++r) {
    cfgs.push_back(plan_.shard_config(r));
    base_.push_back(total);
    total += build_layout(cfgs.back()).total;
    pools_.push_back(std::make_unique<ThreadPool>(threads_per_rank));
  }
  params_ = Buffer(static_cast<size_t>(total) * sizeof(float));
  grads_ = Buffer(static_cast<size_t>(total) * sizeof(float));
  for (int r = 0; r < P; ++r) {
    ranks_.push_back(
        std::make_unique<Transformer>(cfgs[r], params_.as<float>() + base_[r], grads_.as<float>() + base_[r]));
    int64_t v0, v1;
    split_range(full_.vocab, P, r, &v0, &v1);
    ranks_[r]->set_shard({&group_->rank(r), r, P, v0, full_.vocab});
    const auto& sv = ranks_[r]->layout().views;
    RLHF_CHECK(sv.size() == full_layout_.views.size(), ErrorCode::Internal, "shard layout mismatch");
    for (size_t i = 0; i < sv.size(); ++i)
      RLHF_CHECK(sv[i].name == full_layout_.views[i].name, ErrorCode::Internal, "shard layout mismatch at ",
                 sv[i].name);
  }
}

TensorParallelModel::~TensorParallelModel() = default;

ShardPlan::Slice ShardPlan::slice_of(const ParamView& v, int r) const {
  const int P = size_;
  const int64_t HD = full_.head_dim, hq = full_.heads / P, F = full_.ffn;
  const int64_t hk = kv_rep_ > 1 ? 1 : full_.kv_heads / P,
                k0 = kv_rep_ > 1 ? r / kv_rep_ : r * hk;  // KV heads [k0, k0 + hk)
  int64_t f0, f1, v0, v1;
  split_range(F, P, r, &f0, &f1);
  split_range(full_.vocab, P, r, &v0, &v1);
  const std::string& n = v.name;
  Slice s;
  if (ends_with(n, "embed_tokens.weight") || ends_with(n, "lm_head.weight"))
    s = {0, {{v0, v1}}};
  else if (n.find("q_proj.") != std::string::npos)
    s = {0, {{r * hq * HD, (r + 1) * hq * HD}}};
  else if (n.find("k_proj.") != std::string::npos || n.find("v_proj.") != std::string::npos)
    s = {0, {{k0 * HD, (k0 + hk) * HD}}};
  else if (ends_with(n, "o_proj.weight"))
    s = {1, {{r * hq * HD, (r + 1) * hq * HD}}};
  else if (ends_with(n, "gate_proj.weight") || ends_with(n, "up_proj.weight"))
    s = {0, {{f0, f1}}};
  else if (ends_with(n, "down_proj.weight"))
    s = {1, {{f0, f1}}};
  if (ends_with(n, "gate_up_proj.weight")) s = {0, {{f0, f1}, {F + f0, F + f1}}};
  return s;
}

void TensorParallelModel::copy_piece(size_t i, int r, float* full, float* shard, bool to_shard) const {
  plan_.copy_piece(full_layout_.views[i], ranks_[r]->layout().views[i], r, full, shard, to_shard);
}

void ShardPlan::copy_piece(const ParamView& fv, const ParamView& sv, int r, float* full, float* shard,
                           bool to_shard) const {
  const Slice s = slice_of(fv, r);
  auto copy = [&](float* f, float* sh, int64_t count) {
    if (to_shard)
      std::memcpy(sh, f, sizeof(float) * count);
    else
      std::memcpy(f, sh, sizeof(float) * count);
  };
  if (s.axis < 0) return copy(full, shard, fv.size);
  const int64_t rows = fv.shape[0], cols = fv.size / rows;
  if (s.axis == 0) {
    int64_t at = 0;
    for (auto [b, e] : s.ranges) copy(full + b * cols, shard + at * cols, (e - b) * cols), at += e - b;
    RLHF_CHECK(at * cols == sv.size, ErrorCode::Internal, "shard size mismatch for ", fv.name);
  } else {
    const int64_t scols = sv.size / rows;
    for (int64_t row = 0; row < rows; ++row) {
      int64_t at = 0;
      for (auto [b, e] : s.ranges) copy(full + row * cols + b, shard + row * scols + at, e - b), at += e - b;
    }
  }
}

bool ShardPlan::replicated_kv(const ParamView& v) const {
  return kv_rep_ > 1 && (v.name.find("k_proj.") != std::string::npos || v.name.find("v_proj.") != std::string::npos);
}

bool ShardPlan::counts_in_norm(const ParamView& v, int r) const {
  if (r > 0 && slice_of(v, r).axis < 0) return false;      // a replica: counted on rank 0
  if (replicated_kv(v) && r % kv_rep_ != 0) return false;  // a KV replica: on its group's first rank
  return true;
}

size_t view_index(const ParamLayout& layout, const ParamView& v) {
  const auto& views = layout.views;
  if (&v >= views.data() && &v < views.data() + views.size()) return static_cast<size_t>(&v - views.data());
  for (size_t i = 0; i < views.size(); ++i)
    if (views[i].name == v.name) return i;
  RLHF_FAIL(ErrorCode::OutOfRange, "no parameter named \"", v.name, "\"");
}

void TensorParallelModel::read_parameter(const ParamView& v, bool grad, float* out) {
  const size_t i = view_index(full_layout_, v);
  for (int r = 0; r < size_; ++r) {
    if (plan_.slice_of(v, r).axis < 0 && r > 0) break;   // replicated: rank 0's copy
    if (replicated_kv(v) && r % kv_rep_ != 0) continue;  // a replicated KV head: its group's first rank
    Transformer& t = *ranks_[r];
    copy_piece(i, r, out, (grad ? t.grads() : t.params()) + t.layout().views[i].offset, false);
  }
}

void TensorParallelModel::write_parameter(const ParamView& v, const float* data) {
  const size_t i = view_index(full_layout_, v);
  for (int r = 0; r < size_; ++r)
    copy_piece(i, r, const_cast<float*>(data), ranks_[r]->params() + ranks_[r]->layout().views[i].offset, true);
}

void TensorParallelModel::init_random(uint64_t seed, float std) {
  const auto& views = full_layout_.views;
  std::vector<float> tmp;
  for (size_t i = 0; i < views.size(); ++i) {
    tmp.resize(static_cast<size_t>(views[i].size));
    init_parameter(views[i], static_cast<uint64_t>(i), seed, std, tmp.data(), 1.0f - full_.norm_offset);
    write_parameter(views[i], tmp.data());
  }
}

void TensorParallelModel::zero_grad() {
  float* g = grads_.as<float>();
  const int64_t n = static_cast<int64_t>(grads_.bytes() / sizeof(float));
  parallel_for(n, 1 << 16, [&](int64_t b, int64_t e, int) { std::memset(g + b, 0, sizeof(float) * (e - b)); });
}

OptimizerView TensorParallelModel::optimizer_view() {
  OptimizerView o;
  o.params = params_.as<float>(), o.grads = grads_.as<float>();
  o.size = static_cast<int64_t>(params_.bytes() / sizeof(float));
  for (int r = 0; r < size_; ++r)
    for (size_t i = 0; i < full_layout_.views.size(); ++i) {
      const ParamView& v = ranks_[r]->layout().views[i];
      const int64_t off = base_[r] + v.offset;
      if (!o.segments.empty() && o.segments.back().weight_decay_scale == v.weight_decay_scale)
        o.segments.back().length += v.size;
      else
        o.segments.push_back({off, v.size, v.weight_decay_scale});
      if (!plan_.counts_in_norm(full_layout_.views[i], r)) continue;
      if (!o.norm_ranges.empty() && o.norm_ranges.back().first + o.norm_ranges.back().second == off)
        o.norm_ranges.back().second += v.size;
      else
        o.norm_ranges.push_back({off, v.size});
    }
  return o;
}

void TensorParallelModel::run_ranks(const std::function<void(int)>& fn) {
  group_->reset();
  std::atomic<bool> failed{false};
  std::exception_ptr first;
  auto body = [&](int r) {
    ScopedPool use(pools_[r].get());
    try {
      fn(r);
    } catch (...) {
      if (!failed.exchange(true)) first = std::current_exception();
      group_->rank(r).abort();
    }
  };
  std::vector<std::thread> threads;
  for (int r = 1; r < size_; ++r) threads.emplace_back(body, r);
  body(0);
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

void TensorParallelModel::forward(const ForwardInput& in, const ForwardOutput& out) {
  check_inputs(full_, full_.vocab, in);  // fail here, before any rank starts
  const int64_t N = in.B * in.T;
  // Ranks other than 0 compute the same outputs into buffers of their own.
  std::vector<std::vector<float>> extra(static_cast<size_t>(size_));
  std::vector<ForwardOutput> outs(static_cast<size_t>(size_), out);
  for (int r = 1; r < size_; ++r) {
    const int64_t logits = out.logits ? N * full_.vocab : 0;
    extra[r].resize(static_cast<size_t>(3 * N + logits));
    float* p = extra[r].data();
    outs[r].logprobs = out.logprobs ? p : nullptr;
    outs[r].entropy = out.entropy ? p + N : nullptr;
    outs[r].values = out.values ? p + 2 * N : nullptr;
    outs[r].logits = out.logits ? p + 3 * N : nullptr;
  }
  run_ranks([&](int r) { ranks_[r]->forward(in, outs[r]); });
}

void TensorParallelModel::backward(const BackwardInput& in) {
  ranks_[0]->check_backward(in);  // before the replicated-KV gradients below are touched
  if (kv_rep_ == 1) return run_ranks([&](int r) { ranks_[r]->backward(in); });
  // Replicated KV heads: each copy's backward sees only its own rank's query heads. The group's
  // first rank keeps the accumulated gradient, the others start from 0; afterwards the first rank
  // adds theirs and every copy gets the sum (accumulate semantics kept across backward calls).
  std::vector<size_t> kv;
  for (size_t i = 0; i < full_layout_.views.size(); ++i)
    if (replicated_kv(full_layout_.views[i])) kv.push_back(i);
  auto grad_of = [&](int r, size_t i) { return ranks_[r]->grads() + ranks_[r]->layout().views[i].offset; };
  for (int r = 0; r < size_; ++r)
    if (r % kv_rep_ != 0)
      for (size_t i : kv) std::memset(grad_of(r, i), 0, sizeof(float) * ranks_[r]->layout().views[i].size);
  run_ranks([&](int r) { ranks_[r]->backward(in); });
  for (int g = 0; g < size_; g += kv_rep_)
    for (size_t i : kv) {
      const int64_t n = ranks_[g]->layout().views[i].size;
      float* sum = grad_of(g, i);
      for (int r = g + 1; r < g + kv_rep_; ++r) {
        const float* part = grad_of(r, i);
        for (int64_t j = 0; j < n; ++j) sum[j] += part[j];
      }
      for (int r = g + 1; r < g + kv_rep_; ++r) std::memcpy(grad_of(r, i), sum, sizeof(float) * n);
    }
}

GenerateResult TensorParallelModel::generate(const GenerateRequest& req) {
  std::vector<GenerateResult> res(static_cast<size_t>(size_));
  run_ranks([&](int r) { res[r] = ranks_[r]->generate(req); });
  return std::move(res[0]);
}

void TensorParallelModel::release_activations() {
  for (auto& t : ranks_) t->release_activations();
}

void TensorParallelModel::set_gradient_checkpointing(bool on) {
  for (auto& t : ranks_) t->set_gradient_checkpointing(on);
}

int64_t TensorParallelModel::activation_bytes() const {
  int64_t s = 0;
  for (const auto& t : ranks_) s += t->activation_bytes();
  return s;
}

}  // namespace model
}  // namespace rlhf
