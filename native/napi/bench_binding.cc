// Benchmark hooks: run a kernel `repeats` times on a worker thread after one warm-up call and
// return the wall time of each repeat in milliseconds, so that Promise and event-loop overhead are
// not part of the measurement (the PyTorch side is timed in-process the same way).
//
// Why these ship in the addon instead of a separate bench target: `npm run bench` is meant to be
// run by users on their own machine against the addon they installed (same compiler flags, same
// SIMD dispatch), and a second target would compile and link every kernel again (doubling the
// install's build time) for 41 KB of code (6% of the addon's text). They are reachable only as
// `native().bench`; lib/index.ts does not export them and they are not part of the public API.
//
//   bench.gemm(gemmOptions, repeats)                       -> Promise<number[]>
//   bench.adamw({params, grads, m, v, lr?, ..., repeats})  -> Promise<number[]>  (steps 1, 2, ...)
//   bench.copy({src, dst, repeats})                         -> Promise<number[]>  (threaded copy loop)
//   bench.scaleInPlace({x, repeats})                        -> Promise<number[]>  (x *= s, threaded)
//   bench.fmaPeak({iterations, repeats})                    -> Promise<{ms[], flops, simd}>
//
// fmaPeak runs an FMA loop on every pool thread at once (12 independent accumulators of the widest
// vectors this CPU has, `iterations` rounds each): flops = 2 · lanes · 12 · iterations · threads.
// flops / time is the machine's attainable fp32 peak, the yardstick of the step-profile bench.
//
// copy reads src and writes dst (a separate buffer: the CPU also reads dst's lines before writing
// them, traffic the usual 2-bytes-per-byte count leaves out); scaleInPlace reads and writes the
// same lines, AdamW's access pattern, and is the ceiling an in-place optimizer can approach.
#include <napi.h>

#include <immintrin.h>

#include <chrono>
#include <memory>
#include <vector>

#include "../core/cpu_features.h"
#include "../core/thread_pool.h"
#include "../cpu/adamw.h"
#include "args.h"
#include "async_job.h"
#include "bindings.h"
#include "gemm_binding.h"
#include "js_errors.h"

namespace rlhf {
namespace napi {

namespace {

using Times = std::shared_ptr<std::vector<double>>;

template <typename F>
void time_repeats(int64_t repeats, const Times& out, F&& f) {
  f(0);  // warm-up
  for (int64_t r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f(r + 1);
    auto t1 = std::chrono::steady_clock::now();
    out->push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
}

Napi::Value to_array(Napi::Env env, const Times& t) {
  Napi::Array a = Napi::Array::New(env, t->size());
  for (size_t i = 0; i < t->size(); ++i) a.Set(static_cast<uint32_t>(i), (*t)[i]);
  return a;
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void copy_range(float* __restrict d,
                                                                             const float* __restrict s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = s[i];
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void scale_range(float* __restrict x, int64_t n, float s) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * s;
}

// 12 chains of dependent FMAs: enough to cover the FMA latency (4 cycles) on two pipes.
// Returns a value depending on every chain so the loop is not optimised away.
__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iterations) {
  const __m512 a = _mm512_set1_ps(1e-3f), b = _mm512_set1_ps(0.999f);
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = a;
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], b, a);
  float s = 0;
  for (int i = 0; i < 12; ++i) s += _mm512_cvtss_f32(acc[i]);
  return s;
}

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iterations) {
  const __m256 a = _mm256_set1_ps(1e-3f), b = _mm256_set1_ps(0.999f);
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = a;
  for (int64_t it = 0; it < iterations; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], b, a);
  float s = 0;
  for (int i = 0; i < 12; ++i) s += _mm256_cvtss_f32(acc[i]);
  return s;
}

int64_t read_repeats(const Napi::CallbackInfo& info, size_t index) {
  if (info.Length() <= index || !info[index].IsNumber())
    throw_expected_type(info.Env(), "bench: repeats", "a number",
                        info.Length() > index ? info[index] : info.Env().Undefined());
  double d = info[index].As<Napi::Number>().DoubleValue();
  if (d != static_cast<int64_t>(d) || d < 1 || d > 100000)
    throw_expected_range(info.Env(), "bench: repeats", "an integer in [1, 100000]", info[index]);
  return static_cast<int64_t>(d);
}

Napi::Value bench_gemm(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    std::vector<Napi::Value> keep;
    GemmCall call = read_gemm_call(arg_object(info, 0, "bench.gemm: options"), "bench.gemm", &keep);
    int64_t repeats = read_repeats(info, 1);
    auto times = std::make_shared<std::vector<double>>();
    return AsyncJob::queue(
        info.Env(), "rlhf.bench.gemm", [=] { time_repeats(repeats, times, [&](int64_t) { call.run(); }); },
        [times](Napi::Env env) { return to_array(env, times); }, keep);
  });
}

Napi::Value bench_adamw(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object o = arg_object(info, 0, "bench.adamw: options");
    const char* fn = "bench.adamw";
    auto p = get_f32(o, fn, "params", 0);
    size_t n = p.ElementLength();
    auto g = get_f32(o, fn, "grads", n), m = get_f32(o, fn, "m", n), v = get_f32(o, fn, "v", n);
    cpu::AdamWOptions opt;
    opt.lr = static_cast<float>(get_number_or(o, fn, "lr", opt.lr));
    opt.weight_decay = static_cast<float>(get_number_or(o, fn, "weightDecay", opt.weight_decay));
    opt.max_grad_norm = static_cast<float>(get_number_or(o, fn, "maxGradNorm", opt.max_grad_norm));
    int64_t repeats = get_int(o, fn, "repeats", 1, 100000);
    float *pp = p.Data(), *mp = m.Data(), *vp = v.Data();
    const float* gp = g.Data();
    auto times = std::make_shared<std::vector<double>>();
    return AsyncJob::queue(
        info.Env(), "rlhf.bench.adamw",
        [=] {
          time_repeats(repeats, times,
                       [&](int64_t r) { cpu::adamw_step(pp, gp, mp, vp, static_cast<int64_t>(n), opt, r + 1); });
        },
        [times](Napi::Env env) { return to_array(env, times); }, {p, g, m, v});
  });
}

Napi::Value bench_copy(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object o = arg_object(info, 0, "bench.copy: options");
    auto src = get_f32(o, "bench.copy", "src", 0);
    size_t n = src.ElementLength();
    auto dst = get_f32(o, "bench.copy", "dst", n);
    int64_t repeats = get_int(o, "bench.copy", "repeats", 1, 100000);
    const float* s = src.Data();
    float* d = dst.Data();
    auto times = std::make_shared<std::vector<double>>();
    return AsyncJob::queue(
        info.Env(), "rlhf.bench.copy",
        [=] {
          time_repeats(repeats, times, [&](int64_t) {
            parallel_for(static_cast<int64_t>(n), 1 << 16,
                         [&](int64_t b, int64_t e, int) { copy_range(d + b, s + b, e - b); });
          });
        },
        [times](Napi::Env env) { return to_array(env, times); }, {src, dst});
  });
}

Napi::Value bench_scale_in_place(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object o = arg_object(info, 0, "bench.scaleInPlace: options");
    auto x = get_f32(o, "bench.scaleInPlace", "x", 0);
    int64_t n = static_cast<int64_t>(x.ElementLength());
    int64_t repeats = get_int(o, "bench.scaleInPlace", "repeats", 1, 100000);
    float* p = x.Data();
    auto times = std::make_shared<std::vector<double>>();
    return AsyncJob::queue(
        info.Env(), "rlhf.bench.scaleInPlace",
        [=] {
          time_repeats(repeats, times, [&](int64_t r) {
            float s = (r % 2) ? 1.0001f : 0.9999f;  // keeps values bounded over many repeats
            parallel_for(n, 1 << 16, [&](int64_t b, int64_t e, int) { scale_range(p + b, e - b, s); });
          });
        },
        [times](Napi::Env env) { return to_array(env, times); }, {x});
  });
}

Napi::Value bench_fma_peak(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object o = arg_object(info, 0, "bench.fmaPeak: options");
    const int64_t iterations = get_int(o, "bench.fmaPeak", "iterations", 1, int64_t(1) << 32);
    const int64_t repeats = get_int(o, "bench.fmaPeak", "repeats", 1, 1000);
    const SimdLevel level = simd_level();
    const int lanes = level == SimdLevel::Avx512 ? 16 : level == SimdLevel::Avx2 ? 8 : 0;
    const int threads = current_pool().size();
    auto times = std::make_shared<std::vector<double>>();
    auto sink = std::make_shared<std::vector<float>>(threads);
    return AsyncJob::queue(
        info.Env(), "rlhf.bench.fmaPeak",
        [=] {
          if (lanes == 0) return;
          time_repeats(repeats, times, [&](int64_t) {
            current_pool().run(
                [&](int t) { (*sink)[t] += lanes == 16 ? fma_loop_avx512(iterations) : fma_loop_avx2(iterations); });
          });
        },
        [=](Napi::Env env) {
          Napi::Object r = Napi::Object::New(env);
          r.Set("ms", to_array(env, times));
          r.Set("flops", static_cast<double>(2 * lanes * 12) * static_cast<double>(iterations) * threads);
          r.Set("threads", threads);
          r.Set("simd", simd_level_name(level));
          return r;
        },
        {});
  });
}

}  // namespace

void register_bench(Napi::Env env, Napi::Object exports) {
  Napi::Object bench = Napi::Object::New(env);
  bench.Set("gemm", Napi::Function::New(env, bench_gemm, "gemm"));
  bench.Set("adamw", Napi::Function::New(env, bench_adamw, "adamw"));
  bench.Set("copy", Napi::Function::New(env, bench_copy, "copy"));
  bench.Set("scaleInPlace", Napi::Function::New(env, bench_scale_in_place, "scaleInPlace"));
  bench.Set("fmaPeak", Napi::Function::New(env, bench_fma_peak, "fmaPeak"));
  exports.Set("bench", bench);
}

}  // namespace napi
}  // namespace rlhf
