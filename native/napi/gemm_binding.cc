// gemm(options) -> Promise<void>: C = alpha·op(A)·op(B) + beta·C on Float32Arrays (row-major).
// dtype: 'bf16' takes B as a Uint16Array of bf16 bits and runs cpu::gemm_bf16 (A rounded to bf16,
// f32 accumulation); 'f32' (default) runs cpu::sgemm.
#include "gemm_binding.h"

#include <algorithm>

#include "../cpu/gemm.h"
#include "../cpu/gemm_bf16.h"
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

void GemmCall::run() const {
  if (b16)
    cpu::gemm_bf16(trans_a, trans_b, m, n, k, alpha, a, lda, b16, ldb, beta, c, ldc);
  else
    cpu::sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

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
  const size_t b_elems = view_elements(g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n, g.ldb);
  const std::string dtype = o.Has("dtype") && !o.Get("dtype").IsUndefined() ? get_string(o, fn, "dtype") : "f32";
  Napi::TypedArray b;
  if (dtype == "bf16") {
    Napi::Value v = field(o, fn, "b");
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array)
      throw_expected_type(o.Env(), std::string(fn) + ": b", "a Uint16Array of bf16 bits (dtype 'bf16')", v);
    auto b16 = v.As<Napi::Uint16Array>();
    if (b16.ElementLength() < b_elems)
      throw_expected_range(o.Env(), std::string(fn) + ": b", "a Uint16Array of at least " + std::to_string(b_elems), v);
    g.b16 = b16.Data();
    b = b16;
  } else if (dtype == "f32") {
    auto b32 = get_f32(o, fn, "b", b_elems);
    g.b = b32.Data();
    b = b32;
  } else {
    throw_expected_type(o.Env(), std::string(fn) + ": dtype", "'f32' or 'bf16'", o.Get("dtype"));
  }
  auto c = get_f32(o, fn, "c", view_elements(g.m, g.n, g.ldc));
  g.a = a.Data(), g.c = c.Data();
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
