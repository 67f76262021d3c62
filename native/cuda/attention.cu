// Attention kernels (contract in attention.h). One warp per row (a query row in forward and dq, a
// key row in dk/dv), kWarps rows per block; a warp's lanes own head dims d = lane + 32·t, and
// during score computation each lane owns one key (or query) of the current tile of 32, with the
// tile's probabilities passed through shared memory. No T×T buffer, no atomics: deterministic.
// The forward also reads a paged KV cache (block table, f32 or bf16 pool) and applies the sliding
// window and the soft-cap; the backward takes the contiguous layout without them (refused).
#include "attention.h"

#include <cmath>

#include "cuda_common.h"

namespace rlhf {
namespace cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kMaxHD = 256, kPerLane = kMaxHD / 32;

struct SeqInfo {
  int64_t kv_base, offset, qlen;
  const int32_t* table;  // this sequence's block-table row (paged cache); null: contiguous
};
__device__ __forceinline__ SeqInfo seq_info(const cpu::AttentionArgs& a, int64_t b) {
  SeqInfo s;
  const int64_t kv = a.kv_seq ? a.kv_seq[b] : b;
  s.kv_base = kv * a.kv_stride;
  s.offset = a.kv_offset ? a.kv_offset[b] : 0;
  s.qlen = a.q_len ? a.q_len[b] : a.Tq;
  s.table = a.block_table ? a.block_table + kv * a.table_stride : nullptr;
  return s;
}
// Row of k / v holding key j of the sequence: kv_base + j, or through the block table
// (table[j / block_size]·block_size + j % block_size, as cpu::attention_internal::paged_row).
__device__ __forceinline__ int64_t key_row(const cpu::AttentionArgs& a, const SeqInfo& s, int64_t j) {
  return s.table ? int64_t(s.table[j / a.block_size]) * a.block_size + j % a.block_size : s.kv_base + j;
}
// Element e of the k (v) storage as f32: the bf16 pool's bits widened (exact), or the f32 value.
__device__ __forceinline__ float k_at(const cpu::AttentionArgs& a, int64_t e) {
  return a.k_bf16 ? __uint_as_float(static_cast<unsigned>(a.k_bf16[e]) << 16) : a.k[e];
}
__device__ __forceinline__ float v_at(const cpu::AttentionArgs& a, int64_t e) {
  return a.v_bf16 ? __uint_as_float(static_cast<unsigned>(a.v_bf16[e]) << 16) : a.v[e];
}
// Key j of the sequence visible from key position pos (causal, same segment, inside the window).
__device__ __forceinline__ bool visible(const cpu::AttentionArgs& a, const SeqInfo& s, int64_t j, int64_t pos) {
  return j <= pos && (a.window <= 0 || j > pos - a.window) &&
         (!a.segments || a.segments[s.kv_base + j] == a.segments[s.kv_base + pos]);
}

// grid (ceil(Tq / W), NH, B), W = min(Tq, kWarps) warps per block (decode: one); warp w handles
// query i = blockIdx.x·W + w of head h.
// Keys before the window are skipped (the first tile starts at the window's first key); a key of
// probability 0 (masked) adds nothing, and its value is not read.
__global__ void attention_forward_kernel(cpu::AttentionArgs a, float* out, int64_t ldo, float* lse) {
  __shared__ float q_sh[kWarps][kMaxHD];
  __shared__ float p_sh[kWarps][32];
  __shared__ int64_t row_sh[kWarps][32];  // the tile's key rows in k / v
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t b = blockIdx.z, h = blockIdx.y, i = int64_t(blockIdx.x) * (blockDim.x / 32) + warp;
  if (i >= a.Tq) return;  // whole warp
  const SeqInfo s = seq_info(a, b);
  const int HD = a.HD;
  float* o = out + (b * a.Tq + i) * ldo + h * HD;
  if (i >= s.qlen) {
    for (int d = lane; d < HD; d += 32) o[d] = 0.0f;
    if (lse && lane == 0) lse[(b * a.Tq + i) * a.NH + h] = 0.0f;
    return;
  }
  const int64_t g = h / (a.NH / a.KVH), pos = s.offset + i;
  const float* q = a.q + (b * a.Tq + i) * a.ldq + h * HD;
  for (int d = lane; d < HD; d += 32) q_sh[warp][d] = q[d];
  __syncwarp();
  float acc[kPerLane];
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) acc[t] = 0.0f;
  float m = -INFINITY, l = 0.0f;  // running max and Σ exp(s − m)
  const int64_t j_first = a.window > 0 && pos - a.window + 1 > 0 ? pos - a.window + 1 : 0;
  for (int64_t j0 = j_first; j0 <= pos; j0 += 32) {
    const int64_t j = j0 + lane;
    float sc = -INFINITY;
    int64_t row = -1;
    if (j <= pos && visible(a, s, j, pos)) {
      row = key_row(a, s, j);
      const int64_t k0 = row * a.ldk + g * HD;
      float dot = 0.0f;
      for (int d = 0; d < HD; ++d) dot += q_sh[warp][d] * k_at(a, k0 + d);
      sc = dot * a.scale;
      if (a.softcap > 0.0f) sc = a.softcap * tanhf(sc / a.softcap);
    }
    const float m_new = fmaxf(m, warp_max(sc));
    const float p = sc == -INFINITY ? 0.0f : expf(sc - m_new);
    const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
    l = l * corr + warp_sum(p);
    m = m_new;
    p_sh[warp][lane] = p;
    row_sh[warp][lane] = p != 0.0f ? row : -1;
    __syncwarp();
    const int64_t n = pos - j0 + 1 < 32 ? pos - j0 + 1 : 32;
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < HD) {
        float sum = 0.0f;
        for (int64_t jj = 0; jj < n; ++jj)
          if (row_sh[warp][jj] >= 0) sum += p_sh[warp][jj] * v_at(a, row_sh[warp][jj] * a.ldv + g * HD + d);
        acc[t] = acc[t] * corr + sum;
      }
    }
    __syncwarp();
  }
  const float inv = 1.0f / l;
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    if (d < HD) o[d] = acc[t] * inv;
  }
  if (lse && lane == 0) lse[(b * a.Tq + i) * a.NH + h] = m + logf(l);
}

// D[row, h] = Σ_d dout·out (one thread each).
__global__ void attention_delta_kernel(float* D, const float* out, int64_t ldo, const float* dout, int64_t lddo,
                                       int64_t rows, int NH, int HD) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * NH) return;
  const int64_t r = idx / NH, h = idx % NH;
  float s = 0.0f;
  for (int d = 0; d < HD; ++d) s += dout[r * lddo + h * HD + d] * out[r * ldo + h * HD + d];
  D[idx] = s;
}

// dq: grid (ceil(Tq / kWarps), NH, B). dS_j = P_j (dP_j − D), dq = scale Σ_j dS_j k_j.
__global__ void attention_dq_kernel(cpu::AttentionArgs a, const float* lse, const float* D, const float* dout,
                                    int64_t lddo, float* dq, int64_t lddq) {
  __shared__ float q_sh[kWarps][kMaxHD], do_sh[kWarps][kMaxHD];
  __shared__ float ds_sh[kWarps][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t b = blockIdx.z, h = blockIdx.y, i = int64_t(blockIdx.x) * kWarps + warp;
  if (i >= a.Tq) return;
  const SeqInfo s = seq_info(a, b);
  const int HD = a.HD;
  float* dqr = dq + (b * a.Tq + i) * lddq + h * HD;
  if (i >= s.qlen) {
    for (int d = lane; d < HD; d += 32) dqr[d] = 0.0f;
    return;
  }
  const int64_t g = h / (a.NH / a.KVH), pos = s.offset + i, row = b * a.Tq + i;
  for (int d = lane; d < HD; d += 32)
    q_sh[warp][d] = a.q[row * a.ldq + h * HD + d], do_sh[warp][d] = dout[row * lddo + h * HD + d];
  __syncwarp();
  const float L = lse[row * a.NH + h], Di = D[row * a.NH + h];
  float acc[kPerLane];
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) acc[t] = 0.0f;
  for (int64_t j0 = 0; j0 <= pos; j0 += 32) {
    const int64_t j = j0 + lane;
    float ds = 0.0f;
    if (j <= pos && visible(a, s, j, pos)) {
      const float* k = a.k + (s.kv_base + j) * a.ldk + g * HD;
      const float* v = a.v + (s.kv_base + j) * a.ldv + g * HD;
      float qk = 0.0f, dp = 0.0f;
      for (int d = 0; d < HD; ++d) qk += q_sh[warp][d] * k[d], dp += do_sh[warp][d] * v[d];
      const float p = expf(qk * a.scale - L);
      ds = p * (dp - Di);
    }
    ds_sh[warp][lane] = ds;
    __syncwarp();
    const int64_t n = pos - j0 + 1 < 32 ? pos - j0 + 1 : 32;
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < HD)
        for (int64_t jj = 0; jj < n; ++jj) acc[t] += ds_sh[warp][jj] * a.k[(s.kv_base + j0 + jj) * a.ldk + g * HD + d];
    }
    __syncwarp();
  }
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    if (d < HD) dqr[d] = acc[t] * a.scale;
  }
}

// dk, dv: grid (ceil(kv_stride / kWarps), KVH, B); warp w handles key j of kv head g, summing
// over the group's query heads and the queries that see j, a tile of 32 queries at a time.
__global__ void attention_dkv_kernel(cpu::AttentionArgs a, const float* lse, const float* D, const float* dout,
                                     int64_t lddo, float* dk, int64_t lddk, float* dv, int64_t lddv) {
  __shared__ float k_sh[kWarps][kMaxHD], v_sh[kWarps][kMaxHD];
  __shared__ float p_sh[kWarps][32], ds_sh[kWarps][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t b = blockIdx.z, g = blockIdx.y, j = int64_t(blockIdx.x) * kWarps + warp;
  const SeqInfo s = seq_info(a, b);
  if (j >= s.offset + s.qlen || j >= a.kv_stride) return;  // rows past the queries: untouched
  const int HD = a.HD, group = a.NH / a.KVH;
  const int64_t krow = s.kv_base + j;
  for (int d = lane; d < HD; d += 32)
    k_sh[warp][d] = a.k[krow * a.ldk + g * HD + d], v_sh[warp][d] = a.v[krow * a.ldv + g * HD + d];
  __syncwarp();
  float dk_acc[kPerLane], dv_acc[kPerLane];
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) dk_acc[t] = dv_acc[t] = 0.0f;
  const int64_t i_first = j - s.offset > 0 ? j - s.offset : 0;  // queries at positions ≥ j
  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    for (int64_t i0 = i_first; i0 < s.qlen; i0 += 32) {
      const int64_t i = i0 + lane;
      float p = 0.0f, ds = 0.0f;
      if (i < s.qlen && visible(a, s, j, s.offset + i)) {
        const int64_t row = b * a.Tq + i;
        const float* q = a.q + row * a.ldq + h * HD;
        const float* dor = dout + row * lddo + h * HD;
        float qk = 0.0f, dp = 0.0f;
        for (int d = 0; d < HD; ++d) qk += q[d] * k_sh[warp][d], dp += dor[d] * v_sh[warp][d];
        p = expf(qk * a.scale - lse[row * a.NH + h]);
        ds = p * (dp - D[row * a.NH + h]);
      }
      p_sh[warp][lane] = p, ds_sh[warp][lane] = ds;
      __syncwarp();
      const int64_t n = s.qlen - i0 < 32 ? s.qlen - i0 : 32;
#pragma unroll
      for (int t = 0; t < kPerLane; ++t) {
        const int d = lane + 32 * t;
        if (d < HD)
          for (int64_t ii = 0; ii < n; ++ii) {
            const int64_t row = b * a.Tq + i0 + ii;
            dv_acc[t] += p_sh[warp][ii] * dout[row * lddo + h * HD + d];
            dk_acc[t] += ds_sh[warp][ii] * a.q[row * a.ldq + h * HD + d];
          }
      }
      __syncwarp();
    }
  }
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    if (d < HD) dk[krow * lddk + g * HD + d] = dk_acc[t] * a.scale, dv[krow * lddv + g * HD + d] = dv_acc[t];
  }
}

Status check(const cpu::AttentionArgs& a, const char* what) {
  const std::string fn(what);
  if (a.B < 0 || a.B > 65535 || a.NH <= 0 || a.KVH <= 0 || a.NH % a.KVH != 0 || a.NH > 65535 || a.HD <= 0 ||
      a.HD > kMaxHD || a.Tq < 0 || a.kv_stride < 0)
    return Status::Invalid(fn + ": need NH % KVH == 0, 0 < HD <= 256, B <= 65535, Tq >= 0");
  if (a.window < 0) return Status::Invalid(fn + ": window must be >= 0, got " + std::to_string(a.window));
  if (!(a.softcap >= 0.0f) || !std::isfinite(a.softcap))
    return Status::Invalid(fn + ": softcap must be finite and >= 0, got " + std::to_string(a.softcap));
  if (a.block_table) {
    if (a.block_size <= 0 || a.table_stride <= 0)
      return Status::Invalid(fn + ": a block table needs block_size > 0 and table_stride > 0, got " +
                             std::to_string(a.block_size) + ", " + std::to_string(a.table_stride));
    if (a.segments) return Status::Invalid(fn + ": packed segments with a paged KV cache");
    if (!a.k_bf16 != !a.v_bf16) return Status::Invalid(fn + ": k_bf16 and v_bf16 go together");
  } else if (a.k_bf16 || a.v_bf16) {
    return Status::Invalid(fn + ": bf16 keys/values (k_bf16, v_bf16) need a paged KV cache (block table)");
  }
  if (a.B > 0 && a.Tq > 0 && (!a.q || !(a.k || a.k_bf16) || !(a.v || a.v_bf16)))
    return Status::Invalid(fn + ": null q, k or v");
  return Status::Ok();
}

}  // namespace

Status attention_forward(const cpu::AttentionArgs& a, float* out, int64_t ldo, float* lse, Stream stream) {
  Status st = check(a, "attention_forward");
  if (!st.ok() || a.B == 0 || a.Tq == 0) return st;
  const int warps = a.Tq < kWarps ? static_cast<int>(a.Tq) : kWarps;
  RLHF_LAUNCH(attention_forward_kernel, dim3(ceil_div(a.Tq, warps), a.NH, static_cast<unsigned>(a.B)),
              dim3(32 * warps), 0, as_stream(stream))
  (a, out, ldo, lse);
  return launch_status("attention_forward");
}

size_t attention_backward_workspace_bytes(const cpu::AttentionArgs& a) {
  return static_cast<size_t>(a.B * a.Tq * a.NH) * sizeof(float);
}

Status attention_backward(const cpu::AttentionArgs& a, const float* out, int64_t ldo, const float* lse,
                          const float* dout, int64_t lddo, float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv,
                          int64_t lddv, void* workspace, Stream stream) {
  Status st = check(a, "attention_backward");
  if (!st.ok()) return st;
  if (a.block_table || a.window > 0 || a.softcap > 0.0f)
    return Status::Invalid("attention_backward: a block table, a sliding window or a soft-cap (forward only on cuda)");
  if (a.B == 0 || a.Tq == 0) return st;
  if (!workspace || !lse) return Status::Invalid("attention_backward: null workspace or lse");
  float* D = static_cast<float*>(workspace);
  const int64_t rows = a.B * a.Tq;
  RLHF_LAUNCH(attention_delta_kernel, dim3(ceil_div(rows * a.NH, 256)), dim3(256), 0, as_stream(stream))
  (D, out, ldo, dout, lddo, rows, a.NH, a.HD);
  if (!(st = launch_status("attention_backward (delta)")).ok()) return st;
  RLHF_LAUNCH(attention_dq_kernel, dim3(ceil_div(a.Tq, kWarps), a.NH, static_cast<unsigned>(a.B)), dim3(32 * kWarps), 0,
              as_stream(stream))
  (a, lse, D, dout, lddo, dq, lddq);
  if (!(st = launch_status("attention_backward (dq)")).ok()) return st;
  if (a.kv_stride > 0)
    RLHF_LAUNCH(attention_dkv_kernel, dim3(ceil_div(a.kv_stride, kWarps), a.KVH, static_cast<unsigned>(a.B)),
                dim3(32 * kWarps), 0, as_stream(stream))
    (a, lse, D, dout, lddo, dk, lddk, dv, lddv);
  return launch_status("attention_backward (dk, dv)");
}

}  // namespace cuda
}  // namespace rlhf
