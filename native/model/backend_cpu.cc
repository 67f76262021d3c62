// The CPU backend (backend.h): each op is the native/cpu kernel of the same family, or the model's
// own host glue (internal.cc), called with the arguments the model passes; nothing is added.
#include <cstring>

#include "../core/dtype.h"
#include "../core/error.h"
#include "../core/thread_pool.h"
#include "../cpu/adamw.h"
#include "../cpu/attention.h"
#include "../cpu/embedding.h"
#include "../cpu/gemm.h"
#include "../cpu/logsoftmax.h"
#include "../cpu/rmsnorm.h"
#include "../cpu/rope.h"
#include "../cpu/geglu.h"
#include "../cpu/swiglu.h"
#include "backend.h"
#include "internal.h"

namespace rlhf {
namespace model {

namespace {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::Cpu; }

  void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) override {
    RLHF_CHECK(dst_device == Device::Cpu && src_device == Device::Cpu, ErrorCode::Internal,
               "cpu backend: copy between '", device_name(src_device), "' and '", device_name(dst_device), "'");
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void fill(float* x, float value, int64_t n) override {
    if (value == 0.0f)
      parallel_for(n, 1 << 16, [&](int64_t b, int64_t e, int) { std::memset(x + b, 0, sizeof(float) * (e - b)); });
    else
      parallel_for(n, 1 << 16, [&](int64_t b, int64_t e, int) { std::fill(x + b, x + e, value); });
  }
  void zero(void* x, size_t bytes) override {
    if (bytes) std::memset(x, 0, bytes);
  }
  void copy_rows(float* dst, const float* src, int64_t n) override { model::copy_rows(dst, src, n); }

  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
            const float* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    cpu::sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  void gemm_pack_b(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb, PackedWeight* out) override {
    cpu::sgemm_pack_b(trans_b, K, N, B, ldb, &out->cpu);
  }
  void gemm_packed_b(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const PackedWeight& Bp,
                     float beta, float* C, int64_t ldc) override {
    if (Bp.bf16)
      cpu::gemm_bf16_packed_b(trans_a, M, alpha, A, lda, Bp.cpu_bf16, beta, C, ldc);
    else
      cpu::sgemm_packed_b(trans_a, M, alpha, A, lda, Bp.cpu, beta, C, ldc);
  }
  void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) override {
    cpu::gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  void gemm_pack_b_bf16(bool trans_b, int64_t K, int64_t N, const uint16_t* B, int64_t ldb,
                        PackedWeight* out) override {
    cpu::gemm_bf16_pack_b(trans_b, K, N, B, ldb, &out->cpu_bf16);
    out->bf16 = true;
  }
  void round_to_bf16(const float* src, uint16_t* dst, int64_t n) override { cpu::f32_to_bf16_array(src, dst, n); }

  void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int C, float eps) override {
    cpu::rmsnorm_forward(out, rstd, x, w, N, C, eps);
  }
  void rmsnorm_apply(float* out, const float* x, const float* w, const float* rstd, int64_t N, int C) override {
    cpu::rmsnorm_apply(out, x, w, rstd, N, C);
  }
  void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                        int64_t N, int C) override {
    cpu::rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C);
  }

  void rope_apply(float* x, int64_t N, int64_t ld, int nheads, int HD, const int32_t* pos, const cpu::RopeTable& table,
                  bool backward) override {
    cpu::rope_apply(x, N, ld, nheads, HD, pos, table, backward);
  }

  void attention_forward(const cpu::AttentionArgs& a, float* out, int64_t ldo, float* lse) override {
    cpu::attention_forward(a, out, ldo, lse);
  }
  void attention_backward(const cpu::AttentionArgs& a, const float* out, int64_t ldo, const float* lse,
                          const float* dout, int64_t lddo, float* dq, int64_t lddq, float* dk, int64_t lddk, float* dv,
                          int64_t lddv) override {
    cpu::attention_backward(a, out, ldo, lse, dout, lddo, dq, lddq, dk, lddk, dv, lddv);
  }

  void swiglu_forward(float* a, const float* gu, int64_t N, int F) override { cpu::swiglu_forward(a, gu, N, F); }
  void geglu_forward(float* a, const float* gu, int64_t N, int F) override { cpu::geglu_forward(a, gu, N, F); }
  void geglu_backward(float* dgu, const float* da, const float* gu, int64_t N, int F) override {
    cpu::geglu_backward(dgu, da, gu, N, F);
  }
  void rmsnorm_heads_forward(float* out, int64_t ldo, float* rstd, const float* x, int64_t ldx, const float* w,
                             int64_t N, int nheads, int HD, float eps) override {
    cpu::rmsnorm_heads_forward(out, ldo, rstd, x, ldx, w, N, nheads, HD, eps);
  }
  void rmsnorm_heads_backward(float* dx, int64_t lddx, float* dw, const float* dout, int64_t lddo, const float* x,
                              int64_t ldx, const float* w, const float* rstd, int64_t N, int nheads, int HD) override {
    cpu::rmsnorm_heads_backward(dx, lddx, dw, dout, lddo, x, ldx, w, rstd, N, nheads, HD);
  }
  void swiglu_backward(float* dgu, const float* da, const float* gu, int64_t N, int F) override {
    cpu::swiglu_backward(dgu, da, gu, N, F);
  }

  void embedding_forward(float* x, const float* E, const int32_t* tokens, int64_t N, int64_t V, int C,
                         int64_t vocab_begin) override {
    cpu::embedding_forward(x, E, tokens, N, V, C, vocab_begin);
  }
  void embedding_backward(float* dE, const float* dx, const int32_t* tokens, int64_t N, int64_t V, int C,
                          int64_t vocab_begin) override {
    cpu::embedding_backward(dE, dx, tokens, N, V, C, vocab_begin);
  }

  void logsoftmax_forward(float* logp, float* ent, float* lse, const float* z, int64_t ldz, const int32_t* targets,
                          int64_t N, int64_t V) override {
    cpu::logsoftmax_forward(logp, ent, lse, z, ldz, targets, N, V);
  }
  void logsoftmax_backward(float* dz, int64_t lddz, const float* z, int64_t ldz, const int32_t* targets,
                           const float* lse, const float* ent, const float* dlogp, const float* dent, int64_t N,
                           int64_t V) override {
    cpu::logsoftmax_backward(dz, lddz, z, ldz, targets, lse, ent, dlogp, dent, N, V);
  }

  cpu::AdamWResult adamw_step(float* p, const float* g, float* m, float* v, int64_t n, const cpu::AdamWOptions& o,
                              int64_t step, const std::vector<cpu::AdamWSegment>& segments,
                              const std::vector<std::pair<int64_t, int64_t>>& norm_ranges) override {
    return norm_ranges.empty() ? cpu::adamw_step(p, g, m, v, n, o, step, segments)
                               : cpu::adamw_step_norm_ranges(p, g, m, v, n, o, step, segments, norm_ranges);
  }

  void add_row_bias(float* x, const float* bias, int64_t N, int64_t W) override { model::add_row_bias(x, bias, N, W); }
  void column_sums(float* out, const float* x, int64_t N, int64_t W) override { model::column_sums(out, x, N, W); }
  void gather_rows(float* dst, const float* src, const int64_t* rows, int64_t M, int64_t C) override {
    parallel_for(M, 64, [&](int64_t b, int64_t e, int) {
      for (int64_t m = b; m < e; ++m) std::memcpy(dst + m * C, src + rows[m] * C, sizeof(float) * C);
    });
  }
  void scatter_add_rows(float* dst, const float* src, const int64_t* rows, int64_t M, int64_t C) override {
    for (int64_t m = 0; m < M; ++m) {
      float* d = dst + rows[m] * C;
      for (int64_t c = 0; c < C; ++c) d[c] += src[m * C + c];
    }
  }
  void value_head_forward(const float* xf, const float* w, int64_t N, int64_t C, int64_t T, const int64_t* lengths,
                          float* values) override {
    model::value_head_forward(xf, w, N, C, T, lengths, values);
  }
  void value_head_backward(float* dxf, float* dw, const float* dvalues, const float* xf, const float* w, int64_t N,
                           int64_t C, int64_t T, const int64_t* lengths) override {
    auto valid = [&](int64_t r) { return r % T < lengths[r / T]; };
    parallel_for(N, 64, [&](int64_t b, int64_t e, int) {
      for (int64_t r = b; r < e; ++r)
        if (valid(r))
          for (int64_t k = 0; k < C; ++k) dxf[r * C + k] += dvalues[r] * w[k];
    });
    parallel_for(C, 16, [&](int64_t b, int64_t e, int) {
      for (int64_t k = b; k < e; ++k) {
        float acc = 0.0f;
        for (int64_t r = 0; r < N; ++r)
          if (valid(r)) acc += dvalues[r] * xf[r * C + k];
        dw[k] += acc;
      }
    });
  }
  void cache_store(float* ck, float* cv, int64_t cache_rows, int64_t cache_len, const float* k, const float* v,
                   int64_t ld, int64_t B, int64_t T, const int64_t* lengths, const int64_t* kv_seq,
                   const int64_t* kv_offset, int64_t kvd) override {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = lengths ? lengths[b] : T;
      const int64_t row = kv_seq ? kv_seq[b] : b, off = kv_offset ? kv_offset[b] : 0;
      RLHF_CHECK(row < cache_rows && off + n <= cache_len, ErrorCode::Internal, "kv cache overflow");
      for (int64_t t = 0; t < n; ++t) {
        const int64_t dst = (row * cache_len + off + t) * kvd;
        std::memcpy(ck + dst, k + (b * T + t) * ld, sizeof(float) * kvd);
        std::memcpy(cv + dst, v + (b * T + t) * ld, sizeof(float) * kvd);
      }
    }
  }
  void cache_store_bf16(uint16_t* ck, uint16_t* cv, int64_t cache_rows, int64_t cache_len, const float* k,
                        const float* v, int64_t ld, int64_t B, int64_t T, const int64_t* lengths, const int64_t* kv_seq,
                        const int64_t* kv_offset, int64_t kvd) override {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = lengths ? lengths[b] : T;
      const int64_t row = kv_seq ? kv_seq[b] : b, off = kv_offset ? kv_offset[b] : 0;
      RLHF_CHECK(row < cache_rows && off + n <= cache_len, ErrorCode::Internal, "kv cache overflow");
      for (int64_t t = 0; t < n; ++t) {
        const int64_t dst = (row * cache_len + off + t) * kvd;
        const float *kr = k + (b * T + t) * ld, *vr = v + (b * T + t) * ld;
        for (int64_t i = 0; i < kvd; ++i) ck[dst + i] = f32_to_bf16(kr[i]), cv[dst + i] = f32_to_bf16(vr[i]);
      }
    }
  }
};

// The default of the ops only some backends run (backend.h).
[[noreturn]] void refuse(const Backend& be, const char* op) {
  throw Error(ErrorCode::Unsupported, std::string("the ") + device_name(be.device()) + " backend has no " + op +
                                          " kernel yet; use device 'cpu' for this architecture");
}
}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

std::shared_ptr<Backend> make_backend(Device device) {
  if (device == Device::Cpu) return std::shared_ptr<Backend>(&cpu_backend(), [](Backend*) {});
  std::string why;
  std::shared_ptr<Backend> be = cuda::new_model_backend(&why);
  RLHF_CHECK(be != nullptr, ErrorCode::Unsupported, "device 'cuda' is not available: ", why);
  return be;
}

void Backend::gemm_bf16(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const uint16_t*, int64_t,
                        float, float*, int64_t) {
  refuse(*this, "gemm_bf16 (bf16 weights)");
}
void Backend::gemm_pack_b_bf16(bool, int64_t, int64_t, const uint16_t*, int64_t, PackedWeight*) {
  refuse(*this, "gemm_bf16 (bf16 weights)");
}
void Backend::round_to_bf16(const float*, uint16_t*, int64_t) { refuse(*this, "round_to_bf16 (bf16 weights)"); }
void Backend::cache_store_bf16(uint16_t*, uint16_t*, int64_t, int64_t, const float*, const float*, int64_t, int64_t,
                               int64_t, const int64_t*, const int64_t*, const int64_t*, int64_t) {
  refuse(*this, "cache_store_bf16 (bf16 KV cache)");
}
void Backend::geglu_forward(float*, const float*, int64_t, int) { refuse(*this, "geglu"); }
void Backend::geglu_backward(float*, const float*, const float*, int64_t, int) { refuse(*this, "geglu"); }
void Backend::rmsnorm_heads_forward(float*, int64_t, float*, const float*, int64_t, const float*, int64_t, int, int,
                                    float) {
  refuse(*this, "rmsnorm_heads");
}
void Backend::rmsnorm_heads_backward(float*, int64_t, float*, const float*, int64_t, const float*, int64_t,
                                     const float*, const float*, int64_t, int, int) {
  refuse(*this, "rmsnorm_heads");
}

}  // namespace model
}  // namespace rlhf
