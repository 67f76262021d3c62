#include "rope.h"

#include <cmath>

#include "../core/error.h"
#include "../core/thread_pool.h"

namespace rlhf {
namespace cpu {

RopeTable::RopeTable(int rot_dim, float theta, bool interleaved)
    : RopeTable(rot_dim, theta, interleaved, {}, 1.0f, 0) {}

RopeTable::RopeTable(int rot_dim, float theta, bool interleaved, const std::vector<float>& inv_freq,
                     float attention_scaling, int64_t position_limit)
    : rot_dim_(rot_dim), interleaved_(interleaved), scaling_(attention_scaling), limit_(position_limit) {
  RLHF_CHECK(rot_dim >= 2 && rot_dim % 2 == 0, ErrorCode::OutOfRange, "rope: rotary dim must be even and >= 2, got ",
             rot_dim);
  RLHF_CHECK(inv_freq.empty() || inv_freq.size() == static_cast<size_t>(rot_dim / 2), ErrorCode::OutOfRange,
             "rope: expected ", rot_dim / 2, " frequencies, got ", inv_freq.size());
  RLHF_CHECK(std::isfinite(attention_scaling) && attention_scaling > 0, ErrorCode::OutOfRange,
             "rope: attention scaling must be finite and > 0, got ", attention_scaling);
  if (!inv_freq.empty()) {
    inv_freq_ = inv_freq;
    return;
  }
  for (int i = 0; i < rot_dim / 2; ++i) {
    // transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all in float32
    float exponent = static_cast<float>(2 * i) / static_cast<float>(rot_dim);
    inv_freq_.push_back(1.0f / std::pow(theta, exponent));
  }
}

void RopeTable::ensure(int64_t max_position) {
  RLHF_CHECK(max_position >= 0 && max_position < (int64_t(1) << 24), ErrorCode::OutOfRange,
             "rope: position must be in [0, 2^24), got ", max_position);
  RLHF_CHECK(
      limit_ == 0 || max_position < limit_, ErrorCode::Unsupported, "rope: position ", max_position,
      " is past max_position_embeddings (", limit_,
      ") of a model with dynamic NTK rope scaling, which this engine implements only within that length (where it is "
      "the identity)");
  if (max_position < rows_) return;
  int64_t rows = std::max<int64_t>(max_position + 1, rows_ * 2);
  const int half = rot_dim_ / 2;
  cos_.resize(rows * half);
  sin_.resize(rows * half);
  for (int64_t p = rows_; p < rows; ++p)
    for (int i = 0; i < half; ++i) {
      float angle = static_cast<float>(p) * inv_freq_[i];  // fp32 product, as HF
      cos_[p * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)) * scaling_);
      sin_[p * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)) * scaling_);
    }
  rows_ = rows;
}

void rope_apply(float* x, int64_t N, int64_t ld, int nheads, int HD, const int32_t* pos, const RopeTable& table,
                bool backward) {
  const int half = table.rot_dim() / 2;
  const bool inter = table.interleaved();
  parallel_for(N, 32, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      const float* cs = table.cos_at(pos[r]);
      const float* sn = table.sin_at(pos[r]);
      for (int h = 0; h < nheads; ++h) {
        float* v = x + r * ld + static_cast<int64_t>(h) * HD;
        for (int i = 0; i < half; ++i) {
          float* pa = inter ? v + 2 * i : v + i;
          float* pb = inter ? v + 2 * i + 1 : v + i + half;
          float a = *pa, bb = *pb, c = cs[i], s = backward ? -sn[i] : sn[i];
          *pa = a * c - bb * s;
          *pb = bb * c + a * s;
        }
      }
    }
  });
}

}  // namespace cpu
}  // namespace rlhf
