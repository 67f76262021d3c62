// Rotary position embedding (Su et al. 2021, "RoFormer"), as Hugging Face applies it:
//   the first rot_dim dims of every q/k head are rotated in pairs by angle pos·inv_freq[i],
//   inv_freq[i] = 1 / theta^(2i / rot_dim), i < rot_dim/2; dims rot_dim..HD pass unchanged.
//   half-split pairs (Llama, Qwen2: rotate_half on halves)   (x[i], x[i + rot_dim/2])
//   interleaved pairs (GLM-4: rotate_half on even/odd dims)   (x[2i], x[2i+1])
//   (a, b) -> (a·cos − b·sin, b·cos + a·sin)
// The table mirrors HF's float32 arithmetic (inv_freq and pos·inv_freq in fp32) so checkpoints
// behave as in transformers, with cos/sin correctly rounded from that fp32 angle.
// Scaled RoPE (transformers' rope_type linear / llama3 / yarn / dynamic): the caller passes the
// frequencies (inv_freq, rot_dim/2 of them) and the factor cos and sin are multiplied by
// (`attention_scaling`, YaRN's mscale); `position_limit` > 0 makes ensure() refuse positions >= it.
#pragma once
#include <cstdint>
#include <vector>

namespace rlhf {
namespace cpu {

class RopeTable {
 public:
  RopeTable(int rot_dim, float theta, bool interleaved);
  // inv_freq empty: the default frequencies of `theta`.
  RopeTable(int rot_dim, float theta, bool interleaved, const std::vector<float>& inv_freq, float attention_scaling,
            int64_t position_limit);
  void ensure(int64_t max_position);  // grows the cos/sin table to cover positions [0, max_position]
  int rot_dim() const { return rot_dim_; }
  bool interleaved() const { return interleaved_; }
  int64_t rows() const { return rows_; }  // positions [0, rows) are in the table
  const float* cos_at(int64_t pos) const { return cos_.data() + pos * (rot_dim_ / 2); }
  const float* sin_at(int64_t pos) const { return sin_.data() + pos * (rot_dim_ / 2); }

 private:
  int rot_dim_;
  bool interleaved_;
  std::vector<float> inv_freq_, cos_, sin_;
  float scaling_ = 1.0f;
  int64_t limit_ = 0;
  int64_t rows_ = 0;
};

// Rotates heads [0, nheads) of width HD found at x + r·ld + h·HD for rows r < N, each at position
// pos[r] (in place). backward = true rotates by −angle (the transpose, for gradients).
// The table must cover max(pos) (ensure()).
void rope_apply(float* x, int64_t N, int64_t ld, int nheads, int HD, const int32_t* pos, const RopeTable& table,
                bool backward);

}  // namespace cpu
}  // namespace rlhf
