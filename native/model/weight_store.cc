// Where a Transformer's weights and gradients live (WeightStorage in transformer.h): the f32
// store, the bf16 weights (mixed-precision copy or the only copy of frozen matrices), gradients
// for what trains, and every read, write and initialisation of them.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/error.h"
#include "../core/rng.h"
#include "../core/thread_pool.h"
#include "internal.h"
#include "transformer.h"

namespace rlhf {
namespace model {

namespace {
bool is_matrix(const ParamLayout& L, const ParamView& v) { return v.shape.size() == 2 && v.offset != L.score; }
}  // namespace

void Engine::read_parameter_bf16(const ParamView& v, uint16_t* out) {
  Buffer tmp(static_cast<size_t>(v.size) * sizeof(float), false);
  read_parameter(v, false, tmp.as<float>());
  const float* f = tmp.as<float>();
  for (int64_t i = 0; i < v.size; ++i) out[i] = f32_to_bf16(f[i]);
}

void Engine::write_parameter_bf16(const ParamView& v, const uint16_t* data) {
  Buffer tmp(static_cast<size_t>(v.size) * sizeof(float), false);
  float* f = tmp.as<float>();
  for (int64_t i = 0; i < v.size; ++i) f[i] = bf16_to_f32(data[i]);
  write_parameter(v, f);
}

void Transformer::allocate_storage(const WeightStorage& storage, bool external_params, bool external_grads) {
  trainable_ = storage.trainable;
  const bool owned = !external_params && !external_grads;
  RLHF_CHECK(owned || (storage.dtype == DType::F32 && storage.trainable), ErrorCode::Internal,
             "Transformer: bf16 or frozen storage needs owned parameter storage");
  if (storage.dtype == DType::BF16) set_weight_dtype(DType::BF16);  // refuses CUDA, names it
  const int64_t frozen_end = !trainable_ ? layout_.total : cfg_.lora_rank > 0 ? layout_.trainable_begin : 0;
  // bf16-only: the frozen matrices of a bf16 model; their f32 copy is never allocated
  int64_t f32_total = layout_.total;
  if (owned && weight_dtype_ == DType::BF16 && frozen_end > 0) {
    f32_total = 0;
    for (const ParamView& v : layout_.views) {
      view_offsets_.push_back(v.offset);
      const bool adapter = cfg_.lora_rank > 0 && v.offset >= layout_.trainable_begin && v.offset != layout_.score;
      const bool only_bf16 = v.offset < frozen_end && is_matrix(layout_, v) && !adapter;
      f32_at_.push_back(only_bf16 ? -1 : f32_total);
      if (!only_bf16) f32_total += v.size;
    }
    params_bf16_ = Buffer(static_cast<size_t>(std::max<int64_t>(1, frozen_end)) * sizeof(uint16_t), true);
  }
  if (!external_params)
    params_ = Buffer(static_cast<size_t>(f32_total) * sizeof(float), true, be_->device()),
    params_ptr_ = params_.as<float>();
  grad_begin_ = external_grads ? 0 : frozen_end;
  if (!external_grads)
    grads_ = Buffer(static_cast<size_t>(layout_.total - grad_begin_) * sizeof(float), true, be_->device()),
    grads_ptr_ = grads_.as<float>();
  if (grad_begin_ > 0 && trainable_) {  // LoRA: the frozen norms' weight gradients go to a sink
    int64_t largest = 0;
    for (const ParamView& v : layout_.views)
      if (v.offset < grad_begin_ && v.shape.size() == 1) largest = std::max(largest, v.size);
    dw_sink_ = Buffer(static_cast<size_t>(std::max<int64_t>(1, largest)) * sizeof(float), true, be_->device());
  }
}

bool Transformer::bf16_only(const ParamView& v) const {
  if (f32_at_.empty()) return false;
  const auto it = std::lower_bound(view_offsets_.begin(), view_offsets_.end(), v.offset);
  return it != view_offsets_.end() && *it == v.offset && f32_at_[it - view_offsets_.begin()] < 0;
}

int64_t Transformer::f32_offset(int64_t offset) const {
  // the view holding `offset`: the last one starting at or before it
  const auto it = std::upper_bound(view_offsets_.begin(), view_offsets_.end(), offset);
  RLHF_CHECK(it != view_offsets_.begin(), ErrorCode::Internal, "model: parameter offset ", offset, " out of range");
  const size_t i = static_cast<size_t>(it - view_offsets_.begin()) - 1;
  RLHF_CHECK(f32_at_[i] >= 0, ErrorCode::Internal, "model: parameter \"", layout_.views[i].name,
             "\" is stored in bf16 only and has no f32 copy");
  return f32_at_[i] + (offset - view_offsets_[i]);
}

void Transformer::embed_tokens(float* x, const int32_t* tokens, int64_t N) {
  const int C = cfg_.hidden;
  if (!bf16_only(layout_.views[0])) {  // the embedding is the first view
    be_->embedding_forward(x, w(layout_.embed), tokens, N, cfg_.vocab, C, shard_.vocab_begin);
    return;
  }
  const uint16_t* E = params_bf16_.as<uint16_t>() + layout_.embed;  // CPU (bf16 is CPU only)
  const int64_t V = cfg_.vocab, begin = shard_.vocab_begin;
  parallel_for(N, 64, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t id = static_cast<int64_t>(tokens[r]) - begin;
      float* row = x + r * C;
      if (id >= 0 && id < V)
        for (int c = 0; c < C; ++c) row[c] = bf16_to_f32(E[id * C + c]);
      else
        std::fill(row, row + C, 0.0f);
    }
  });
}

void Transformer::init_random(uint64_t seed, float std) {
  RLHF_CHECK(std::isfinite(std) && std >= 0, ErrorCode::OutOfRange, "init: std must be finite and >= 0, got ", std);
  const auto& views = layout_.views;
  const float norm_value = 1.0f - cfg_.norm_offset;
  if (!f32_at_.empty()) {  // bf16-only matrices: each drawn in f32, then rounded (CPU)
    parallel_for(static_cast<int64_t>(views.size()), 1, [&](int64_t b, int64_t e, int) {
      std::vector<float> tmp;
      for (int64_t i = b; i < e; ++i) {
        const ParamView& v = views[i];
        if (f32_at_[i] >= 0) {
          init_parameter(v, static_cast<uint64_t>(i), seed, std, params_ptr_ + f32_at_[i], norm_value);
          continue;
        }
        // a matrix: init_parameter's normal(0, std) fill, drawn in chunks (no f32 copy of the whole matrix)
        constexpr int64_t kChunk = int64_t(1) << 20;  // even: chunks continue the stream
        tmp.resize(static_cast<size_t>(std::min(kChunk, v.size)));
        uint16_t* dst = params_bf16_.as<uint16_t>() + v.offset;
        for (int64_t k = 0; k < v.size; k += kChunk) {
          const int64_t n = std::min(kChunk, v.size - k);
          philox_normal_fill(seed, static_cast<uint64_t>(i), 0.0f, std, tmp.data(), n, k);
          for (int64_t j = 0; j < n; ++j) dst[k + j] = f32_to_bf16(tmp[j]);
        }
      }
    });
    return;
  }
  Buffer host(device() == Device::Cpu ? 0 : static_cast<size_t>(layout_.total) * sizeof(float), false);
  float* p = device() == Device::Cpu ? params() : host.as<float>();  // initialised on the host
  parallel_for(static_cast<int64_t>(views.size()), 1, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i)
      init_parameter(views[i], static_cast<uint64_t>(i), seed, std, p + views[i].offset, norm_value);
  });
  if (p != params()) be_->copy(params(), device(), p, Device::Cpu, sizeof(float) * layout_.total);
  bf16_stale_ = true;
}

void Transformer::read_parameter(const ParamView& v, bool grad, float* out) {
  if (grad && v.offset < grad_begin_) return void(std::fill(out, out + v.size, 0.0f));  // frozen: no gradient
  if (grad) return be_->copy(out, Device::Cpu, g(v.offset), device(), sizeof(float) * v.size);
  if (bf16_only(v)) {
    const uint16_t* src = params_bf16_.as<uint16_t>() + v.offset;
    parallel_for(v.size, 1 << 16, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) out[i] = bf16_to_f32(src[i]);
    });
    return;
  }
  be_->copy(out, Device::Cpu, w(v.offset), device(), sizeof(float) * v.size);
}

void Transformer::write_parameter(const ParamView& v, const float* data) {
  if (bf16_only(v)) {
    uint16_t* dst = params_bf16_.as<uint16_t>() + v.offset;
    parallel_for(v.size, 1 << 16, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) dst[i] = f32_to_bf16(data[i]);
    });
    return;
  }
  be_->copy(w(v.offset), device(), data, Device::Cpu, sizeof(float) * v.size);
  bf16_stale_ = true;
}

void Transformer::read_parameter_bf16(const ParamView& v, uint16_t* out) {
  if (!bf16_only(v)) return Engine::read_parameter_bf16(v, out);
  std::memcpy(out, params_bf16_.as<uint16_t>() + v.offset, sizeof(uint16_t) * v.size);
}

void Transformer::write_parameter_bf16(const ParamView& v, const uint16_t* data) {
  if (!bf16_only(v)) return Engine::write_parameter_bf16(v, data);
  std::memcpy(params_bf16_.as<uint16_t>() + v.offset, data, sizeof(uint16_t) * v.size);
}

void Transformer::set_weight_dtype(DType dtype) {
  RLHF_CHECK(dtype == DType::F32 || dtype == DType::BF16, ErrorCode::InvalidArgument,
             "model: dtype must be 'f32' or 'bf16', got '", dtype_name(dtype), "'");
  if (dtype == DType::BF16) {
    RLHF_CHECK(device() == Device::Cpu, ErrorCode::Unsupported, "model: the ", device_name(device()),
               " backend has no gemm_bf16 (bf16 weights) kernel yet; use device 'cpu' for dtype 'bf16'");
    RLHF_CHECK(!sharded(), ErrorCode::Unsupported, "model: dtype 'bf16' is not supported with tensor parallelism");
  }
  RLHF_CHECK(f32_at_.empty(), ErrorCode::InvalidState,
             "model: the frozen weights are stored in bf16 only (no f32 copy); the dtype cannot change");
  weight_dtype_ = dtype;
  params_bf16_ = Buffer();
  bf16_stale_ = true;
}

void Transformer::refresh_bf16() {
  // bf16-only storage: the bf16 weights are the store itself, never stale
  if (weight_dtype_ != DType::BF16 || !bf16_stale_ || !f32_at_.empty()) return;
  if (params_bf16_.bytes() == 0)
    params_bf16_ = Buffer(static_cast<size_t>(std::max<int64_t>(1, layout_.total)) * sizeof(uint16_t), false);
  be_->round_to_bf16(params(), params_bf16_.as<uint16_t>(), layout_.total);
  bf16_stale_ = false;
}

OptimizerView Transformer::optimizer_view() {
  RLHF_CHECK(trainable_, ErrorCode::InvalidState,
             "optimizer: the model was made with trainable: false (frozen: no gradients, nothing to update)");
  bf16_stale_ = true;  // the caller (AdamW) is about to update the masters
  OptimizerView o;
  o.backend = be_;
  const int64_t begin = layout_.trainable_begin;  // 0 unless LoRA freezes the base
  RLHF_CHECK(begin >= grad_begin_, ErrorCode::Internal, "optimizer: trainable parameters without gradients");
  // [begin, total) has an f32 copy and sits contiguously at the end of the f32 store
  o.params = begin < layout_.total ? w(begin) : params();
  o.grads = g(begin), o.size = layout_.total - begin;
  for (const auto& v : layout_.views) {
    if (v.offset < begin) continue;
    if (!o.segments.empty() && o.segments.back().weight_decay_scale == v.weight_decay_scale)
      o.segments.back().length += v.size;
    else
      o.segments.push_back({v.offset - begin, v.size, v.weight_decay_scale});
  }
  return o;
}

void Transformer::zero_grad() { be_->fill(grads(), 0.0f, layout_.total - grad_begin_); }

}  // namespace model
}  // namespace rlhf
