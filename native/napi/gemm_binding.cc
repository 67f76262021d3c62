// gemm(options) -> Promise<void>: C = alpha·op(A)·op(B) + beta·C on Float32Arrays (row-major).
#include "gemm_binding.h"

#include <algorithm>

#include "../cpu/gemm.h"
#include "args.h"
#include "async_job.h"
#include "bindings.h"
#include "js_errors.h"

namespace rlhf {
namespace napi {

namespace {
// Elements needed for a rows×cols row-major view with row stride ld.
size_t view_elements(int64_t rows, int64_t cols, int64_t ld) {
  return (rows == 0 || cols == 0) ? 0 : static_cast<size_t>((rows - 1) * ld + cols);
}
}  // namespace

void GemmCall::run() const { cpu::sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); }

GemmCall read_gemm_call(const Napi::Object& o, const char* fn, std::vector<Napi::Value>* keep_alive) {
  GemmCall g;
  const int64_t kMax = int64_t(1) << 40;
  g.trans_a = get_bool_or(o, fn, "transA", false);
  g.trans_b = get_bool_or(o, fn, "transB", false);
  g.m = get_int(o, fn, "m", 0, kMax);
  g.n = get_int(o, fn, "n", 0, kMax);
  g.k = get_int(o, fn, "k", 0, kMax);
  g.lda = get_int_or(o, fn, "lda", 1, kMax, std::max<int64_t>(1, g.trans_a ? g.m : g.k));
  g.ldb = get_int_or(o, fn, "ldb", 1, kMax, std::max<int64_t>(1, g.trans_b ? g.k : g.n));
  g.ldc = get_int_or(o, fn, "ldc", 1, kMax, std::max<int64_t>(1, g.n));
  g.alpha = static_cast<float>(get_number_or(o, fn, "alpha", 1.0));
  g.beta = static_cast<float>(get_number_or(o, fn, "beta", 0.0));
  try {
    cpu::sgemm_check_args(g.trans_a, g.trans_b, g.m, g.n, g.k, g.lda, g.ldb, g.ldc);
  } catch (const Error& e) {
    throw make_js_error(o.Env(), e.code(), e.what());
  }
  auto a = get_f32(o, fn, "a", view_elements(g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k, g.lda));
  auto b = get_f32(o, fn, "b", view_elements(g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n, g.ldb));
  auto c = get_f32(o, fn, "c", view_elements(g.m, g.n, g.ldc));
  g.a = a.Data(), g.b = b.Data(), g.c = c.Data();
  keep_alive->insert(keep_alive->end(), {a, b, c});
  return g;
}

namespace {
Napi::Value gemm(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    std::vector<Napi::Value> keep;
    GemmCall call = read_gemm_call(arg_object(info, 0, "gemm: options"), "gemm", &keep);
    return AsyncJob::queue(
        info.Env(), "rlhf.gemm", [call] { call.run(); }, nullptr, keep);
  });
}
}  // namespace

void register_gemm(Napi::Env env, Napi::Object exports) { exports.Set("gemm", Napi::Function::New(env, gemm, "gemm")); }

}  // namespace napi
}  // namespace rlhf
