// The CUDA backend of the model (native/model/backend.h): the families' launchers of native/cuda
// in fp32 on device buffers, plus the model's glue kernels ("rows") below. Every Status that is
// not ok becomes an rlhf::Error. Device memory comes from cudaMalloc (registered as the Cuda
// allocator of core/buffer.h when the backend is made); host<->device bytes move only in copy().
// Launches go to the default stream in order, and copy() to the host synchronises, so results
// read back are complete.
//
// Under the host emulation harness (native/cuda/emu) this same file compiles with the C++
// compiler: the kernels run on the CPU, device memory is host memory, and GEMM routes to the CPU
// sgemm (gemm.h). native/cuda/tests/test_model_backend.cu runs the model end to end that way.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "../core/error.h"
#include "../model/backend.h"
#include "adamw.h"
#include "attention.h"
#include "cuda_common.h"
#include "cuda_probe.h"
#include "embedding.h"
#include "gemm.h"
#include "logsoftmax.h"
#include "rmsnorm.h"
#include "rope.h"
#include "swiglu.h"

namespace rlhf {
namespace cuda {

namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

// ---- the model's glue kernels (contracts: native/model/backend.h, "rows") ------------------------
// Grid-stride loops, one thread per output element; the per-column and per-row sums run over
// rows / columns in index order, as the CPU does, so their results are the CPU's bit for bit.

__global__ void fill_kernel(float* __restrict__ x, float value, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) x[i] = value;
}

__global__ void rmsnorm_apply_kernel(float* __restrict__ out, const float* __restrict__ x, const float* __restrict__ w,
                                     const float* __restrict__ rstd, int64_t N, int C) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N * C; i += stride)
    out[i] = x[i] * rstd[i / C] * w[i % C];
}

__global__ void add_row_bias_kernel(float* __restrict__ x, const float* __restrict__ bias, int64_t N, int64_t W) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N * W; i += stride) x[i] += bias[i % W];
}

__global__ void column_sums_kernel(float* __restrict__ out, const float* __restrict__ x, int64_t N, int64_t W) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < W; c += stride) {
    float s = 0.0f;
    for (int64_t r = 0; r < N; ++r) s += x[r * W + c];
    out[c] += s;
  }
}

__global__ void gather_rows_kernel(float* __restrict__ dst, const float* __restrict__ src,
                                   const int64_t* __restrict__ rows, int64_t M, int64_t C) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < M * C; i += stride)
    dst[i] = src[rows[i / C] * C + i % C];
}

__global__ void scatter_add_rows_kernel(float* __restrict__ dst, const float* __restrict__ src,
                                        const int64_t* __restrict__ rows, int64_t M, int64_t C) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < M * C; i += stride)
    dst[rows[i / C] * C + i % C] += src[i];
}

__device__ __forceinline__ bool row_valid(int64_t r, int64_t T, const int64_t* lengths) {
  return r % T < lengths[r / T];
}

__global__ void value_head_forward_kernel(float* __restrict__ values, const float* __restrict__ xf,
                                          const float* __restrict__ w, int64_t N, int64_t C, int64_t T,
                                          const int64_t* __restrict__ lengths) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < N; r += stride) {
    float s = 0.0f;
    if (row_valid(r, T, lengths))
      for (int64_t c = 0; c < C; ++c) s += xf[r * C + c] * w[c];
    values[r] = s;
  }
}

__global__ void value_head_dx_kernel(float* __restrict__ dxf, const float* __restrict__ dvalues,
                                     const float* __restrict__ w, int64_t N, int64_t C, int64_t T,
                                     const int64_t* __restrict__ lengths) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N * C; i += stride) {
    const int64_t r = i / C;
    if (row_valid(r, T, lengths)) dxf[i] += dvalues[r] * w[i % C];
  }
}

__global__ void value_head_dw_kernel(float* __restrict__ dw, const float* __restrict__ dvalues,
                                     const float* __restrict__ xf, int64_t N, int64_t C, int64_t T,
                                     const int64_t* __restrict__ lengths) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < C; k += stride) {
    float acc = 0.0f;
    for (int64_t r = 0; r < N; ++r)
      if (row_valid(r, T, lengths)) acc += dvalues[r] * xf[r * C + k];
    dw[k] += acc;
  }
}

// bf16 bits of f32 x, rounded to nearest even exactly as rlhf::f32_to_bf16 (core/dtype.h) does on
// the CPU: a NaN keeps its top bits with the quiet bit set.
__device__ __forceinline__ uint16_t bf16_bits(float x) {
  unsigned bits = __float_as_uint(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
__device__ __forceinline__ void store_kv(float* dst, float x) { *dst = x; }
__device__ __forceinline__ void store_kv(uint16_t* dst, float x) { *dst = bf16_bits(x); }

// One thread per (query row, element): row b·T + t goes to cache row kv_seq[b], position
// kv_offset[b] + t, for t < lengths[b]. The caller guarantees kv_offset[b] + lengths[b] <= len.
// The paged cache calls it with T = 1 and (block, slot, 0/1) as (kv_seq, kv_offset, lengths).
template <typename KV>
__global__ void cache_store_kernel(KV* __restrict__ ck, KV* __restrict__ cv, int64_t cache_len,
                                   const float* __restrict__ k, const float* __restrict__ v, int64_t ld, int64_t B,
                                   int64_t T, const int64_t* __restrict__ lengths, const int64_t* __restrict__ kv_seq,
                                   const int64_t* __restrict__ kv_offset, int64_t kvd) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < B * T * kvd; i += stride) {
    const int64_t b = i / (T * kvd), t = (i / kvd) % T, e = i % kvd;
    if (t >= (lengths ? lengths[b] : T)) continue;
    const int64_t row = kv_seq ? kv_seq[b] : b, off = kv_offset ? kv_offset[b] : 0;
    const int64_t dst = (row * cache_len + off + t) * kvd + e;
    store_kv(ck + dst, k[(b * T + t) * ld + e]);
    store_kv(cv + dst, v[(b * T + t) * ld + e]);
  }
}

void throw_if(const Status& st) {
  if (st.ok()) return;
  throw Error(st.code == StatusCode::Unavailable ? ErrorCode::Unsupported : ErrorCode::Internal,
              "cuda backend: " + st.message);
}
void throw_if(cudaError_t e, const char* what) { throw_if(cuda_status(e, what)); }

void* device_allocate(size_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return p;
}
void device_release(void* p) { cudaFree(p); }
void device_zero(void* p, size_t bytes) { cudaMemset(p, 0, bytes); }

class CudaBackend final : public model::Backend {
 public:
  CudaBackend() { set_device_allocator(Device::Cuda, {device_allocate, device_release, device_zero}); }
  Device device() const override { return Device::Cuda; }

  void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) override {
    if (bytes == 0) return;
    const bool to_dev = dst_device == Device::Cuda, from_dev = src_device == Device::Cuda;
    const cudaMemcpyKind kind = to_dev ? (from_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                       : (from_dev ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    throw_if(cudaMemcpy(dst, src, bytes, kind), "copy");
    throw_if(launch_status("copy: an earlier kernel"));
  }
  void fill(float* x, float value, int64_t n) override {
    if (n <= 0) return;
    RLHF_LAUNCH(fill_kernel, dim3(grid_for(n)), dim3(kThreads), 0, nullptr)(x, value, n);
    throw_if(launch_status("fill"));
  }
  void zero(void* x, size_t bytes) override {
    if (bytes == 0) return;
    throw_if(cudaMemset(x, 0, bytes), "zero");
  }
  void copy_rows(float* dst, const float* src, int64_t n) override {
    copy(dst, Device::Cuda, src, Device::Cuda, static_cast<size_t>(n) * sizeof(float));
  }

  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
            const float* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    if (M == 0 || N == 0) return;
    GemmArgs g;
    g.trans_a = trans_a, g.trans_b = trans_b, g.M = M, g.N = N, g.K = K, g.alpha = alpha, g.beta = beta;
    g.A = A, g.lda = lda, g.B = B, g.ldb = ldb, g.C = C, g.ldc = ldc;
    throw_if(cuda::gemm(g, nullptr));
  }
  void gemm_pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb, model::PackedWeight* out) override {
    out->b = B, out->trans_b = trans_b, out->K = K, out->N = N, out->ldb = ldb;  // a view: cuBLASLt needs no packing
  }
  void gemm_packed_b(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const model::PackedWeight& Bp,
                     float beta, float* C, int64_t ldc) override {
    gemm(trans_a, Bp.trans_b, M, Bp.N, Bp.K, alpha, A, lda, Bp.b, Bp.ldb, beta, C, ldc);
  }

  void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int C, float eps) override {
    throw_if(cuda::rmsnorm_forward(out, rstd, x, w, N, C, eps, DType::F32, nullptr));
  }
  void rmsnorm_apply(float* out, const float* x, const float* w, const float* rstd, int64_t N, int C) override {
    if (N * C == 0) return;
    RLHF_LAUNCH(rmsnorm_apply_kernel, dim3(grid_for(N * C)), dim3(kThreads), 0, nullptr)(out, x, w, rstd, N, C);
    throw_if(launch_status("rmsnorm_apply"));
  }
  void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                        int64_t N, int C) override {
    void* ws = grow_buffer(workspace_, rmsnorm_backward_workspace_bytes(N, C), Device::Cuda);
    throw_if(cuda::rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C, DType::F32, ws, nullptr));
  }

  void rope_apply(float* x, int64_t N, int64_t ld, int nheads, int HD, const int32_t* pos, const cpu::RopeTable& table,
                  bool backward) override {
    const float *cos_t, *sin_t;
    upload_rope(table, &cos_t, &sin_t);
    throw_if(cuda::rope_apply(x, N, ld, nheads, HD, pos, cos_t, sin_t, table.rot_dim(), table.interleaved(), backward,
                              DType::F32, nullptr));
  }

  void attention_forward(const cpu::AttentionArgs& a, float* out, int64_t ldo, float* lse) override {
    throw_if(cuda::attention_forward(a, out, ldo, lse, nullptr));
  }
  void attention_backward(const cpu::AttentionArgs& a, const float* out, int64_t ldo, const float* lse,
                          const float* dout, int64_t lddo, float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv,
                          int64_t lddv) override {
    void* ws = grow_buffer(workspace_, attention_backward_workspace_bytes(a), Device::Cuda);
    throw_if(cuda::attention_backward(a, out, ldo, lse, dout, lddo, dq, lddq, dk, lddk, dv, lddv, ws, nullptr));
  }

  void swiglu_forward(float* a, const float* gu, int64_t N, int F) override {
    throw_if(cuda::swiglu_forward(a, gu, N, F, DType::F32, nullptr));
  }
  void swiglu_backward(float* dgu, const float* da, const float* gu, int64_t N, int F) override {
    throw_if(cuda::swiglu_backward(dgu, da, gu, N, F, DType::F32, nullptr));
  }

  void embedding_forward(float* x, const float* E, const int32_t* tokens, int64_t N, int64_t V, int C,
                         int64_t vocab_begin) override {
    throw_if(cuda::embedding_forward(x, E, tokens, N, V, C, vocab_begin, DType::F32, nullptr));
  }
  void embedding_backward(float* dE, const float* dx, const int32_t* tokens, int64_t N, int64_t V, int C,
                          int64_t vocab_begin) override {
    throw_if(cuda::embedding_backward(dE, dx, tokens, N, V, C, vocab_begin, DType::F32, nullptr));
  }

  void logsoftmax_forward(float* logp, float* ent, float* lse, const float* z, int64_t ldz, const int32_t* targets,
                          int64_t N, int64_t V) override {
    throw_if(cuda::logsoftmax_forward(logp, ent, lse, z, ldz, targets, N, V, 1.0f, DType::F32, nullptr));
  }
  void logsoftmax_backward(float* dz, int64_t lddz, const float* z, int64_t ldz, const int32_t* targets,
                           const float* lse, const float* ent, const float* dlogp, const float* dent, int64_t N,
                           int64_t V) override {
    throw_if(
        cuda::logsoftmax_backward(dz, lddz, z, ldz, targets, lse, ent, dlogp, dent, N, V, 1.0f, DType::F32, nullptr));
  }

  cpu::AdamWResult adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const cpu::AdamWOptions& o,
                              int64_t step, const std::vector<cpu::AdamWSegment>& segments,
                              const std::vector<std::pair<int64_t, int64_t>>& norm_ranges) override {
    if (!norm_ranges.empty())  // only tensor-parallel shards have them, and those run on the CPU
      throw Error(ErrorCode::Unsupported, "cuda backend: adamw_step over norm ranges");
    void* partials = grow_buffer(adamw_partials_, sizeof(double) * adamw_sumsq_partials(), Device::Cuda);
    cpu::AdamWResult result;
    throw_if(
        cuda::adamw_step(p, g, m, v, nullptr, n, o, step, segments, static_cast<double*>(partials), &result, nullptr));
    return result;
  }

  void add_row_bias(float* x, const float* bias, int64_t N, int64_t W) override {
    if (N * W == 0) return;
    RLHF_LAUNCH(add_row_bias_kernel, dim3(grid_for(N * W)), dim3(kThreads), 0, nullptr)(x, bias, N, W);
    throw_if(launch_status("add_row_bias"));
  }
  void column_sums(float* out, const float* x, int64_t N, int64_t W) override {
    if (W == 0) return;
    RLHF_LAUNCH(column_sums_kernel, dim3(grid_for(W)), dim3(kThreads), 0, nullptr)(out, x, N, W);
    throw_if(launch_status("column_sums"));
  }
  void gather_rows(float* dst, const float* src, const int64_t* rows, int64_t M, int64_t C) override {
    if (M * C == 0) return;
    RLHF_LAUNCH(gather_rows_kernel, dim3(grid_for(M * C)), dim3(kThreads), 0, nullptr)(dst, src, rows, M, C);
    throw_if(launch_status("gather_rows"));
  }
  void scatter_add_rows(float* dst, const float* src, const int64_t* rows, int64_t M, int64_t C) override {
    if (M * C == 0) return;
    RLHF_LAUNCH(scatter_add_rows_kernel, dim3(grid_for(M * C)), dim3(kThreads), 0, nullptr)(dst, src, rows, M, C);
    throw_if(launch_status("scatter_add_rows"));
  }
  void value_head_forward(const float* xf, const float* w, int64_t N, int64_t C, int64_t T, const int64_t* lengths,
                          float* values) override {
    if (!values || N == 0) return;
    RLHF_LAUNCH(value_head_forward_kernel, dim3(grid_for(N)), dim3(kThreads), 0, nullptr)
    (values, xf, w, N, C, T, lengths);
    throw_if(launch_status("value_head_forward"));
  }
  void value_head_backward(float* dxf, float* dw, const float* dvalues, const float* xf, const float* w, int64_t N,
                           int64_t C, int64_t T, const int64_t* lengths) override {
    if (N * C == 0) return;
    RLHF_LAUNCH(value_head_dx_kernel, dim3(grid_for(N * C)), dim3(kThreads), 0, nullptr)
    (dxf, dvalues, w, N, C, T, lengths);
    throw_if(launch_status("value_head_backward (dx)"));
    RLHF_LAUNCH(value_head_dw_kernel, dim3(grid_for(C)), dim3(kThreads), 0, nullptr)(dw, dvalues, xf, N, C, T, lengths);
    throw_if(launch_status("value_head_backward (dw)"));
  }
  void cache_store(float* ck, float* cv, int64_t cache_rows, int64_t cache_len, const float* k, const float* v,
                   int64_t ld, int64_t B, int64_t T, const int64_t* lengths, const int64_t* kv_seq,
                   const int64_t* kv_offset, int64_t kvd) override {
    (void)cache_rows;  // bounds are generate()'s invariant; checked on the CPU backend
    if (B * T * kvd == 0) return;
    RLHF_LAUNCH(cache_store_kernel<float>, dim3(grid_for(B * T * kvd)), dim3(kThreads), 0, nullptr)
    (ck, cv, cache_len, k, v, ld, B, T, lengths, kv_seq, kv_offset, kvd);
    throw_if(launch_status("cache_store"));
  }
  void cache_store_bf16(uint16_t* ck, uint16_t* cv, int64_t cache_rows, int64_t cache_len, const float* k,
                        const float* v, int64_t ld, int64_t B, int64_t T, const int64_t* lengths, const int64_t* kv_seq,
                        const int64_t* kv_offset, int64_t kvd) override {
    (void)cache_rows;  // as cache_store
    if (B * T * kvd == 0) return;
    RLHF_LAUNCH(cache_store_kernel<uint16_t>, dim3(grid_for(B * T * kvd)), dim3(kThreads), 0, nullptr)
    (ck, cv, cache_len, k, v, ld, B, T, lengths, kv_seq, kv_offset, kvd);
    throw_if(launch_status("cache_store_bf16"));
  }

 private:
  // Device copies of a RopeTable's cos and sin rows, refreshed when the table grew.
  void upload_rope(const cpu::RopeTable& table, const float** cos_t, const float** sin_t) {
    const int64_t floats = table.rows() * (table.rot_dim() / 2);
    if (&table != rope_source_ || table.rows() != rope_rows_) {
      rope_cos_ = Buffer(static_cast<size_t>(floats) * sizeof(float), false, Device::Cuda);
      rope_sin_ = Buffer(static_cast<size_t>(floats) * sizeof(float), false, Device::Cuda);
      copy(rope_cos_.data(), Device::Cuda, table.cos_at(0), Device::Cpu, static_cast<size_t>(floats) * sizeof(float));
      copy(rope_sin_.data(), Device::Cuda, table.sin_at(0), Device::Cpu, static_cast<size_t>(floats) * sizeof(float));
      rope_source_ = &table, rope_rows_ = table.rows();
    }
    *cos_t = rope_cos_.as<float>(), *sin_t = rope_sin_.as<float>();
  }

  Buffer workspace_;       // rmsnorm / attention backward workspaces (device)
  Buffer adamw_partials_;  // the gradient norm's per-block partial sums (device)
  const cpu::RopeTable* rope_source_ = nullptr;
  int64_t rope_rows_ = -1;
  Buffer rope_cos_, rope_sin_;
};

}  // namespace

std::shared_ptr<model::Backend> new_model_backend(std::string* why) {
#if !RLHF_HOST_EMULATION
  if (device_count(why) == 0) return nullptr;
  std::string detail;
  if (!gemm_available(&detail)) {
    if (why) *why = "cuBLASLt is not loadable: " + detail;
    return nullptr;
  }
#else
  (void)why;
#endif
  return std::make_shared<CudaBackend>();
}

}  // namespace cuda
}  // namespace rlhf
