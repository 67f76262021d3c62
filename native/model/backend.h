// The backend seam: every operation the transformer (native/model) and its optimizer run on
// parameters and activations goes through one Backend, named by the kernel families of
// native/cpu and native/cuda (gemm, rmsnorm, rope, attention, swiglu, embedding, logsoftmax,
// adamw) plus the model's element-wise glue ("rows": biases, column sums, row gathers, the value
// head, the KV cache).
//
// Memory: every pointer an op takes is memory of the backend's device() (Buffers allocated with
// that Device tag; core/buffer.h) unless the comment says host. Host code in the model never
// dereferences device memory: bytes cross between host and device only through Backend::copy
// (Staging wraps it for the small per-call arrays), which is the one place that happens. On the
// CPU backend device memory is host memory and Staging hands back the same pointers, so the CPU
// path copies nothing it did not copy before and stays bit-identical to the kernels it wraps.
//
// Contracts (shapes, strides, accumulate vs overwrite) are those of the CPU kernels named in each
// comment; a backend adds no semantics. Ops are synchronous with respect to copy(): a copy to the
// host returns once every earlier op's result is in it. A failed op throws rlhf::Error.
//
// Adding a backend: implement this class (native/cuda/backend.cu is the model), register the
// device's allocator with set_device_allocator, and return it from make_backend().
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/buffer.h"
#include "../cpu/adamw.h"
#include "../cpu/attention.h"
#include "../cpu/gemm.h"
#include "../cpu/gemm_bf16.h"
#include "../cpu/rope.h"

namespace rlhf {
namespace model {

// op(B) of a weight prepared once for many GEMMs (generate's decode steps): the CPU backend packs
// it into `cpu` (`cpu_bf16` with bf16 = true for a bf16 weight: gemm_pack_b_bf16); other backends
// keep a view of the weight (`b`, which must outlive the packing). gemm_packed_b takes either kind.
struct PackedWeight {
  cpu::PackedMatrix cpu;
  cpu::PackedMatrixBf16 cpu_bf16;
  bool bf16 = false;
  const float* b = nullptr;
  bool trans_b = false;
  int64_t K = 0, N = 0, ldb = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  // ---- memory
  // dst ← src (bytes), each on the device its tag names (Device::Cpu: host memory).
  virtual void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) = 0;
  virtual void fill(float* x, float value, int64_t n) = 0;              // x[0, n) = value
  virtual void zero(void* x, size_t bytes) = 0;                         // bytes [0, bytes) of x = 0 (any type)
  virtual void copy_rows(float* dst, const float* src, int64_t n) = 0;  // dst[0, n) = src[0, n), same device

  // ---- gemm (cpu::sgemm, cpu::sgemm_pack_b, cpu::sgemm_packed_b)
  virtual void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) = 0;
  virtual void gemm_pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb, PackedWeight* out) = 0;
  virtual void gemm_packed_b(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const PackedWeight& Bp,
                             float beta, float* C, int64_t ldc) = 0;

  // ---- gemm with bf16 weights (cpu::gemm_bf16, cpu::gemm_bf16_pack_b): B holds bf16 bits, A and C
  // are f32 (A rounded to bf16 inside). Only the CPU backend runs them; the default refuses
  // (Unsupported) naming the op.
  virtual void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                         int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);
  virtual void gemm_pack_b_bf16(bool trans_b, int64_t K, int64_t N, const uint16_t* B, int64_t ldb, PackedWeight* out);
  // dst[0, n) = bf16(src[0, n)), rounded to nearest even (cpu::f32_to_bf16_array): the weights' bf16 copy.
  virtual void round_to_bf16(const float* src, uint16_t* dst, int64_t n);

  // ---- rmsnorm (cpu::rmsnorm_forward / _apply / _backward)
  virtual void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int C,
                               float eps) = 0;
  virtual void rmsnorm_apply(float* out, const float* x, const float* w, const float* rstd, int64_t N, int C) = 0;
  virtual void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                                const float* rstd, int64_t N, int C) = 0;

  // ---- rope (cpu::rope_apply; the table is host memory, covering max(pos))
  virtual void rope_apply(float* x, int64_t N, int64_t ld, int nheads, int HD, const int32_t* pos,
                          const cpu::RopeTable& table, bool backward) = 0;

  // ---- attention (cpu::attention_forward / _backward; every pointer in `a` on the device)
  virtual void attention_forward(const cpu::AttentionArgs& a, float* out, int64_t ldo, float* lse) = 0;
  virtual void attention_backward(const cpu::AttentionArgs& a, const float* out, int64_t ldo, const float* lse,
                                  const float* dout, int64_t lddo, float* dq, int64_t lddq, float* dk, int64_t lddk,
                                  float* dv, int64_t lddv) = 0;

  // ---- swiglu (cpu::swiglu_forward / _backward)
  virtual void swiglu_forward(float* a, const float* gu, int64_t N, int F) = 0;
  virtual void swiglu_backward(float* dgu, const float* da, const float* gu, int64_t N, int F) = 0;

  // ---- the newer layers' ops (Gemma's GeGLU: cpu::geglu_*; Qwen3/Gemma 3's per-head q/k norm:
  // cpu::rmsnorm_heads_*). Only the CPU backend runs them so far; the default refuses (Unsupported),
  // and Transformer refuses a model that needs them on such a backend before any call.
  virtual void geglu_forward(float* a, const float* gu, int64_t N, int F);
  virtual void geglu_backward(float* dgu, const float* da, const float* gu, int64_t N, int F);
  virtual void rmsnorm_heads_forward(float* out, int64_t ldo, float* rstd, const float* x, int64_t ldx, const float* w,
                                     int64_t N, int nheads, int HD, float eps);
  virtual void rmsnorm_heads_backward(float* dx, int64_t lddx, float* dw, const float* dout, int64_t lddo,
                                      const float* x, int64_t ldx, const float* w, const float* rstd, int64_t N,
                                      int nheads, int HD);

  // ---- embedding (cpu::embedding_forward / _backward)
  virtual void embedding_forward(float* x, const float* E, const int32_t* tokens, int64_t N, int64_t V, int C,
                                 int64_t vocab_begin) = 0;
  virtual void embedding_backward(float* dE, const float* dx, const int32_t* tokens, int64_t N, int64_t V, int C,
                                  int64_t vocab_begin) = 0;

  // ---- logsoftmax (cpu::logsoftmax_forward / _backward)
  virtual void logsoftmax_forward(float* logp, float* ent, float* lse, const float* z, int64_t ldz,
                                  const int32_t* targets, int64_t N, int64_t V) = 0;
  virtual void logsoftmax_backward(float* dz, int64_t lddz, const float* z, int64_t ldz, const int32_t* targets,
                                   const float* lse, const float* ent, const float* dlogp, const float* dent, int64_t N,
                                   int64_t V) = 0;

  // ---- adamw (cpu::adamw_step; cpu::adamw_step_norm_ranges when norm_ranges is not empty):
  // p, m, v updated in place, g read; all n floats on the device. Returns the norm and whether
  // the step was skipped, as the CPU does.
  virtual cpu::AdamWResult adamw_step(float* p, const float* g, float* m, float* v, int64_t n,
                                      const cpu::AdamWOptions& o, int64_t step,
                                      const std::vector<cpu::AdamWSegment>& segments,
                                      const std::vector<std::pair<int64_t, int64_t>>& norm_ranges) = 0;

  // ---- rows: the model's glue (internal.h states each contract)
  virtual void add_row_bias(float* x, const float* bias, int64_t N, int64_t W) = 0;
  virtual void column_sums(float* out, const float* x, int64_t N, int64_t W) = 0;
  // dst[m] = src[rows[m]] (M rows of C floats)
  virtual void gather_rows(float* dst, const float* src, const int64_t* rows, int64_t M, int64_t C) = 0;
  // dst[rows[m]] += src[m] (M rows of C floats; rows distinct)
  virtual void scatter_add_rows(float* dst, const float* src, const int64_t* rows, int64_t M, int64_t C) = 0;
  virtual void value_head_forward(const float* xf, const float* w, int64_t N, int64_t C, int64_t T,
                                  const int64_t* lengths, float* values) = 0;
  // rows inside their sequence: dxf[r] += dvalues[r]·w and dw += Σ_r dvalues[r]·xf[r] (ACCUMULATE)
  virtual void value_head_backward(float* dxf, float* dw, const float* dvalues, const float* xf, const float* w,
                                   int64_t N, int64_t C, int64_t T, const int64_t* lengths) = 0;
  // internal.h's cache_store on the cache rows starting at ck / cv (rows × len positions × kvd)
  virtual void cache_store(float* ck, float* cv, int64_t cache_rows, int64_t cache_len, const float* k, const float* v,
                           int64_t ld, int64_t B, int64_t T, const int64_t* lengths, const int64_t* kv_seq,
                           const int64_t* kv_offset, int64_t kvd) = 0;
  // cache_store into a bf16 cache (k/v rounded to nearest even, bits as f32_to_bf16 in core/dtype.h)
  virtual void cache_store_bf16(uint16_t* ck, uint16_t* cv, int64_t cache_rows, int64_t cache_len, const float* k,
                                const float* v, int64_t ld, int64_t B, int64_t T, const int64_t* lengths,
                                const int64_t* kv_seq, const int64_t* kv_offset, int64_t kvd);
};

// The CPU backend: today's native/cpu kernels, called with exactly the arguments the model used
// to pass them. Process-wide and stateless.
Backend& cpu_backend();

// The backend for `device` (cpu_backend() for Device::Cpu). Throws rlhf::Error(Unsupported)
// saying why when that device cannot run here (not compiled in, no device present).
std::shared_ptr<Backend> make_backend(Device device);

// Small per-call arrays (token ids, positions, lengths, row indices, per-row outputs) moved
// between host and the backend's device. On a backend whose device is the host both calls return
// their argument (no copy); otherwise they copy once through Backend::copy into storage this
// object owns, valid until it is destroyed. null stays null.
class Staging {
 public:
  Staging() = default;
  explicit Staging(Backend* be) : be_(be) {}
  template <typename T>
  const T* to_device(const T* host, int64_t n) {
    if (!host || be_->device() == Device::Cpu) return host;
    device_.emplace_back(static_cast<size_t>(n) * sizeof(T), false, be_->device());
    be_->copy(device_.back().data(), be_->device(), host, Device::Cpu, static_cast<size_t>(n) * sizeof(T));
    return device_.back().template as<T>();
  }
  template <typename T>
  const T* to_device(const std::vector<T>& host) {
    return host.empty() ? nullptr : to_device(host.data(), static_cast<int64_t>(host.size()));
  }
  template <typename T>
  const T* to_host(const T* dev, int64_t n) {
    if (!dev || be_->device() == Device::Cpu) return dev;
    host_.emplace_back(static_cast<size_t>(n) * sizeof(T), false);
    be_->copy(host_.back().data(), Device::Cpu, dev, be_->device(), static_cast<size_t>(n) * sizeof(T));
    return reinterpret_cast<const T*>(host_.back().data());
  }
  // Device storage for a host output of n elements (the output itself on a host backend);
  // flush() copies every such storage to its host output.
  template <typename T>
  T* output(T* host, int64_t n) {
    if (!host || be_->device() == Device::Cpu) return host;
    device_.emplace_back(static_cast<size_t>(n) * sizeof(T), false, be_->device());
    outputs_.push_back({host, device_.back().data(), static_cast<size_t>(n) * sizeof(T)});
    return device_.back().template as<T>();
  }
  void flush() {
    for (const Output& o : outputs_) be_->copy(o.host, Device::Cpu, o.device, be_->device(), o.bytes);
    outputs_.clear();
  }

 private:
  Backend* be_ = nullptr;
  std::vector<Buffer> device_;
  std::vector<Buffer> host_;
  struct Output {
    void* host;
    const void* device;
    size_t bytes;
  };
  std::vector<Output> outputs_;
};

}  // namespace model

namespace cuda {
// A new CUDA backend for one model: native/cuda/backend.cu in CUDA builds (and under the host
// emulation harness in the CUDA kernel tests), native/cuda/backend_stub.cc otherwise. Null, with
// *why set, when it cannot run here (not compiled in, no GPU, cuBLASLt not loadable).
std::shared_ptr<model::Backend> new_model_backend(std::string* why);
}  // namespace cuda
}  // namespace rlhf
