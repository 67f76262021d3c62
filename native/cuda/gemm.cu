// GEMM (contract in gemm.h). cuBLASLt is column-major: the row-major product C = op(A)·op(B) is
// computed as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, i.e. cuBLASLt's (m, n, k) = (N, M, K) with its
// "A" = our B and its "B" = our A, same transposition flags, same leading dimensions.
#include "gemm.h"

#include <cstdlib>
#include <mutex>
#include <vector>

#include "../cpu/gemm.h"
#include "cuda_common.h"

#if !RLHF_HOST_EMULATION
#include <dlfcn.h>
#include <glob.h>
#endif

namespace rlhf {
namespace cuda {

namespace {

Status check_args(const GemmArgs& g) {
  if (g.M < 0 || g.N < 0 || g.K < 0) return Status::Invalid("gemm: M, N, K must be >= 0");
  const int64_t a_cols = g.trans_a ? g.M : g.K, b_cols = g.trans_b ? g.K : g.N;
  if (g.lda < (a_cols > 1 ? a_cols : 1) || g.ldb < (b_cols > 1 ? b_cols : 1) || g.ldc < (g.N > 1 ? g.N : 1))
    return Status::Invalid("gemm: a row stride is smaller than its row (lda, ldb or ldc)");
  if ((g.ab != DType::F32 && g.ab != DType::BF16) || (g.c != DType::F32 && g.c != DType::BF16))
    return Status::Invalid("gemm: A/B and C must be f32 or bf16");
  return Status::Ok();
}

}  // namespace

#if RLHF_HOST_EMULATION

bool gemm_available(std::string* detail) {
  if (detail) *detail = "cpu::sgemm (host emulation)";
  return true;
}

namespace {
std::vector<float> to_f32_matrix(const void* p, DType t, int64_t rows, int64_t ld) {
  std::vector<float> out(static_cast<size_t>(rows * ld));
  for (size_t i = 0; i < out.size(); ++i)
    out[i] =
        t == DType::F32 ? static_cast<const float*>(p)[i] : __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  return out;
}
}  // namespace

Status gemm(const GemmArgs& g, Stream) {
  Status st = check_args(g);
  if (!st.ok() || g.M == 0 || g.N == 0) return st;
  const int64_t a_rows = g.trans_a ? g.K : g.M, b_rows = g.trans_b ? g.N : g.K;
  std::vector<float> a = to_f32_matrix(g.A, g.ab, a_rows, g.lda), b = to_f32_matrix(g.B, g.ab, b_rows, g.ldb);
  std::vector<float> c(static_cast<size_t>(g.M * g.ldc), 0.0f);
  if (g.beta != 0.0f) c = to_f32_matrix(g.C, g.c, g.M, g.ldc);
  cpu::sgemm(g.trans_a, g.trans_b, g.M, g.N, g.K, g.alpha, a.data(), g.lda, b.data(), g.ldb, g.beta, c.data(), g.ldc);
  for (int64_t i = 0; i < g.M; ++i)
    for (int64_t j = 0; j < g.N; ++j) {
      float v = c[i * g.ldc + j];
      if (g.bias)
        v += g.c == DType::F32 ? static_cast<const float*>(g.bias)[j]
                               : __bfloat162float(static_cast<const __nv_bfloat16*>(g.bias)[j]);
      if (g.c == DType::F32)
        static_cast<float*>(g.C)[i * g.ldc + j] = v;
      else
        static_cast<__nv_bfloat16*>(g.C)[i * g.ldc + j] = __float2bfloat16(v);
    }
  return Status::Ok();
}

#else  // the device build: cuBLASLt through dlopen

namespace {

// The few cuBLASLt declarations used (values from cublasLt.h / cublas_api.h / library_types.h).
using lt_handle = void*;
using lt_desc = void*;
using lt_layout = void*;
using lt_pref = void*;
struct LtAlgo {
  uint64_t data[8];
};
struct LtHeuristic {
  LtAlgo algo;
  size_t workspace_size;
  int state;
  float waves_count;
  int reserved[4];
};
constexpr int kCudaR32F = 0, kCudaR16BF = 14, kComputeF32 = 68, kOpN = 0, kOpT = 1;
constexpr int kDescComputeType = 0, kDescScaleType = 1, kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7,
              kDescBiasPointer = 8;
constexpr int kEpilogueDefault = 1, kEpilogueBias = 4;
constexpr int kPrefMaxWorkspace = 1;
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

struct CublasLt {
  std::string path, error;
  lt_handle handle = nullptr;
  void* workspace = nullptr;
  int (*create)(lt_handle*) = nullptr;
  int (*desc_create)(lt_desc*, int, int) = nullptr;
  int (*desc_destroy)(lt_desc) = nullptr;
  int (*desc_set)(lt_desc, int, const void*, size_t) = nullptr;
  int (*layout_create)(lt_layout*, int, uint64_t, uint64_t, int64_t) = nullptr;
  int (*layout_destroy)(lt_layout) = nullptr;
  int (*pref_create)(lt_pref*) = nullptr;
  int (*pref_destroy)(lt_pref) = nullptr;
  int (*pref_set)(lt_pref, int, const void*, size_t) = nullptr;
  int (*heuristic)(lt_handle, lt_desc, lt_layout, lt_layout, lt_layout, lt_layout, lt_pref, int, LtHeuristic*,
                   int*) = nullptr;
  int (*matmul)(lt_handle, lt_desc, const void*, const void*, lt_layout, const void*, lt_layout, const void*,
                const void*, lt_layout, void*, lt_layout, const LtAlgo*, void*, size_t, cudaStream_t) = nullptr;
};

std::vector<std::string> candidate_paths() {
  std::vector<std::string> out;
  if (const char* p = std::getenv("RLHF_CUBLASLT")) out.push_back(p);
  for (const char* n : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}) out.push_back(n);
  std::vector<std::string> dirs;
  if (const char* h = std::getenv("CUDA_HOME")) dirs.push_back(std::string(h) + "/lib64");
  dirs.push_back("/usr/local/cuda/lib64");
  for (const std::string& d : dirs)
    for (const char* n : {"libcublasLt.so.13", "libcublasLt.so.12"}) out.push_back(d + "/" + n);
  for (const char* pattern : {"/usr/local/lib/python3*/dist-packages/nvidia/cu*/lib/libcublasLt.so*",
                              "/usr/local/lib/python3*/site-packages/nvidia/cu*/lib/libcublasLt.so*",
                              "/usr/lib/python3/dist-packages/nvidia/cu*/lib/libcublasLt.so*",
                              "/opt/*/.venv/lib/python3*/site-packages/nvidia/cu*/lib/libcublasLt.so*",
                              "/usr/local/lib/python3*/dist-packages/nvidia/cublas/lib/libcublasLt.so*",
                              "/opt/*/.venv/lib/python3*/site-packages/nvidia/cublas/lib/libcublasLt.so*"}) {
    glob_t g;
    if (glob(pattern, 0, nullptr, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
    globfree(&g);
  }
  return out;
}

CublasLt& lt() {
  static CublasLt lib;
  static std::once_flag once;
  std::call_once(once, [] {
    void* so = nullptr;
    std::string tried;
    for (const std::string& p : candidate_paths()) {
      so = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (so) {
        lib.path = p;
        break;
      }
      tried += (tried.empty() ? "" : ", ") + p;
    }
    if (!so) {
      lib.error = "cuBLASLt not found (set RLHF_CUBLASLT to libcublasLt.so; tried " + tried + ")";
      return;
    }
    auto sym = [&](const char* name) {
      void* f = dlsym(so, name);
      if (!f && lib.error.empty()) lib.error = std::string("cuBLASLt at ") + lib.path + " lacks " + name;
      return f;
    };
    lib.create = reinterpret_cast<decltype(lib.create)>(sym("cublasLtCreate"));
    lib.desc_create = reinterpret_cast<decltype(lib.desc_create)>(sym("cublasLtMatmulDescCreate"));
    lib.desc_destroy = reinterpret_cast<decltype(lib.desc_destroy)>(sym("cublasLtMatmulDescDestroy"));
    lib.desc_set = reinterpret_cast<decltype(lib.desc_set)>(sym("cublasLtMatmulDescSetAttribute"));
    lib.layout_create = reinterpret_cast<decltype(lib.layout_create)>(sym("cublasLtMatrixLayoutCreate"));
    lib.layout_destroy = reinterpret_cast<decltype(lib.layout_destroy)>(sym("cublasLtMatrixLayoutDestroy"));
    lib.pref_create = reinterpret_cast<decltype(lib.pref_create)>(sym("cublasLtMatmulPreferenceCreate"));
    lib.pref_destroy = reinterpret_cast<decltype(lib.pref_destroy)>(sym("cublasLtMatmulPreferenceDestroy"));
    lib.pref_set = reinterpret_cast<decltype(lib.pref_set)>(sym("cublasLtMatmulPreferenceSetAttribute"));
    lib.heuristic = reinterpret_cast<decltype(lib.heuristic)>(sym("cublasLtMatmulAlgoGetHeuristic"));
    lib.matmul = reinterpret_cast<decltype(lib.matmul)>(sym("cublasLtMatmul"));
    if (!lib.error.empty()) return;
    if (int s = lib.create(&lib.handle)) {
      lib.error = "cublasLtCreate failed with status " + std::to_string(s) + " (" + lib.path + ")";
      return;
    }
    if (cudaMalloc(&lib.workspace, kWorkspaceBytes) != cudaSuccess) {
      cudaGetLastError();
      lib.workspace = nullptr;  // run without a workspace (fewer algorithms)
    }
  });
  return lib;
}

// Destroys the descriptors of one call on every path out.
struct LtCall {
  CublasLt& l;
  lt_desc desc = nullptr;
  lt_layout la = nullptr, lb = nullptr, lc = nullptr;
  lt_pref pref = nullptr;
  ~LtCall() {
    if (pref) l.pref_destroy(pref);
    for (lt_layout x : {la, lb, lc})
      if (x) l.layout_destroy(x);
    if (desc) l.desc_destroy(desc);
  }
};

Status lt_fail(const char* what, int s) {
  return {StatusCode::CudaError, std::string("gemm: ") + what + " failed with cuBLAS status " + std::to_string(s)};
}

}  // namespace

bool gemm_available(std::string* detail) {
  CublasLt& l = lt();
  if (detail) *detail = l.error.empty() ? l.path : l.error;
  return l.error.empty();
}

Status gemm(const GemmArgs& g, Stream stream) {
  Status st = check_args(g);
  if (!st.ok() || g.M == 0 || g.N == 0) return st;
  CublasLt& l = lt();
  if (!l.error.empty()) return {StatusCode::Unavailable, "gemm: " + l.error};
  const int ab = g.ab == DType::F32 ? kCudaR32F : kCudaR16BF, ct = g.c == DType::F32 ? kCudaR32F : kCudaR16BF;
  LtCall call{l};
  int s;
  if ((s = l.desc_create(&call.desc, kComputeF32, kCudaR32F))) return lt_fail("cublasLtMatmulDescCreate", s);
  const int32_t op_lt_a = g.trans_b ? kOpT : kOpN, op_lt_b = g.trans_a ? kOpT : kOpN;
  const int32_t scale_type = kCudaR32F;
  const int32_t epilogue = g.bias ? kEpilogueBias : kEpilogueDefault;
  l.desc_set(call.desc, kDescScaleType, &scale_type, sizeof scale_type);
  l.desc_set(call.desc, kDescTransA, &op_lt_a, sizeof op_lt_a);
  l.desc_set(call.desc, kDescTransB, &op_lt_b, sizeof op_lt_b);
  if ((s = l.desc_set(call.desc, kDescEpilogue, &epilogue, sizeof epilogue))) return lt_fail("epilogue", s);
  if (g.bias && (s = l.desc_set(call.desc, kDescBiasPointer, &g.bias, sizeof g.bias))) return lt_fail("bias", s);
  (void)kDescComputeType;
  // Column-major views: lt A = our B (stored K×N or N×K row-major = N×K / K×N column-major).
  const uint64_t la_rows = g.trans_b ? g.K : g.N, la_cols = g.trans_b ? g.N : g.K;
  const uint64_t lb_rows = g.trans_a ? g.M : g.K, lb_cols = g.trans_a ? g.K : g.M;
  if ((s = l.layout_create(&call.la, ab, la_rows, la_cols, g.ldb)) ||
      (s = l.layout_create(&call.lb, ab, lb_rows, lb_cols, g.lda)) ||
      (s = l.layout_create(&call.lc, ct, g.N, g.M, g.ldc)))
    return lt_fail("cublasLtMatrixLayoutCreate", s);
  if ((s = l.pref_create(&call.pref))) return lt_fail("cublasLtMatmulPreferenceCreate", s);
  const uint64_t ws = l.workspace ? kWorkspaceBytes : 0;
  l.pref_set(call.pref, kPrefMaxWorkspace, &ws, sizeof ws);
  LtHeuristic h{};
  int found = 0;
  if ((s = l.heuristic(l.handle, call.desc, call.la, call.lb, call.lc, call.lc, call.pref, 1, &h, &found)) ||
      found == 0)
    return {StatusCode::CudaError,
            "gemm: cuBLASLt has no algorithm for this shape/type (status " + std::to_string(s) + ")"};
  if ((s = l.matmul(l.handle, call.desc, &g.alpha, g.B, call.la, g.A, call.lb, &g.beta, g.C, call.lc, g.C, call.lc,
                    &h.algo, l.workspace, ws, as_stream(stream))))
    return lt_fail("cublasLtMatmul", s);
  return launch_status("gemm");
}

#endif

}  // namespace cuda
}  // namespace rlhf
