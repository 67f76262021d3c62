// buildInfo(), thread count control, and process-level facts.
#include <napi.h>

#include "../core/block_cache.h"
#include "../core/buffer.h"
#include "../core/cpu_features.h"
#include "../core/dtype.h"
#include "../core/mpi.h"
#include "../core/nccl.h"
#include "../core/thread_pool.h"
#include "../cpu/gemm_microkernels.h"
#include "../cpu/gemm_bf16.h"
#include "../cuda/cuda_probe.h"
#include "../model/backend.h"
#include "args.h"
#include "async_job.h"
#include "bindings.h"
#include "js_errors.h"

#ifndef RLHF_VERSION
#define RLHF_VERSION "0.0.0"
#endif
#ifndef RLHF_CUDA_ARCHS
#define RLHF_CUDA_ARCHS ""
#endif
#ifndef RLHF_BUILD_SYSTEM
#define RLHF_BUILD_SYSTEM "unknown"
#endif

namespace rlhf {
namespace napi {

namespace {

Napi::Value build_info(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("version", RLHF_VERSION);
    Napi::Array backends = Napi::Array::New(env);
    backends.Set(uint32_t(0), "cpu");
    if (cuda::compiled()) backends.Set(uint32_t(1), "cuda");
    o.Set("backends", backends);
    o.Set("simd", simd_level_name(simd_level()));
    o.Set("gemmKernel", cpu::gemm_select_kernel().name);
    o.Set("gemmBf16Kernel", cpu::gemm_bf16_kernel_name());
    o.Set("threads", default_thread_count());
    o.Set("cudaCompiled", cuda::compiled());
    Napi::Array archs = Napi::Array::New(env);
    std::string list = RLHF_CUDA_ARCHS;
    uint32_t n = 0;
    for (size_t start = 0; start < list.size();) {
      size_t end = list.find_first_of(";, ", start);
      if (end == std::string::npos) end = list.size();
      if (end > start) archs.Set(n++, list.substr(start, end - start));
      start = end + 1;
    }
    o.Set("cudaArchitectures", archs);
    std::string why;
    int devices = cuda::device_count(&why);
    o.Set("cudaDevices", devices);
    if (!why.empty()) o.Set("cudaUnavailableReason", why);
    // devices a Model can run on now ({device}); for cuda: compiled in, a GPU present, cuBLASLt loadable
    Napi::Array model_devices = Napi::Array::New(env);
    model_devices.Set(uint32_t(0), "cpu");
    std::string backend_why;
    if (cuda::new_model_backend(&backend_why))
      model_devices.Set(uint32_t(1), "cuda");
    else
      o.Set("cudaBackendUnavailableReason", backend_why);
    o.Set("modelDevices", model_devices);
    MpiInfo mpi = mpi_info();  // looked up, never initialised
    Napi::Object m = Napi::Object::New(env);
    m.Set("available", mpi.loadable);
    m.Set("library", mpi.library);
    if (!mpi.error.empty()) m.Set("reason", mpi.error);
    o.Set("mpi", m);
    NcclInfo nccl = nccl_info();  // looked up, nothing created
    Napi::Object nc = Napi::Object::New(env);
    nc.Set("available", nccl.loadable);
    nc.Set("library", nccl.library);
    if (nccl.loadable) nc.Set("version", nccl.version);
    if (!nccl.error.empty()) nc.Set("reason", nccl.error);
    o.Set("nccl", nc);
    o.Set("compiler", __VERSION__);
    o.Set("napiVersion", NAPI_VERSION);
    o.Set("buildSystem", RLHF_BUILD_SYSTEM);
    return o;
  });
}

Napi::Value set_threads(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber())
      throw_expected_type(env, "setThreads: n", "a number", info.Length() > 0 ? info[0] : env.Undefined());
    double d = info[0].As<Napi::Number>().DoubleValue();
    if (d != static_cast<int>(d) || d < 1 || d > 1024)
      throw_expected_range(env, "setThreads: n", "an integer in [1, 1024]", info[0]);
    if (AsyncJob::in_flight() > 0)
      throw make_js_error(env, ErrorCode::Busy, "setThreads: native calls are still running; await them first");
    set_default_threads(static_cast<int>(d));
    return env.Undefined();
  });
}

// The engine's error-code and dtype tables, so TS can check its mirrors against them.
Napi::Value tables(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  Napi::Array codes = Napi::Array::New(env);
  for (int i = 0; i < static_cast<int>(ErrorCode::kCount); ++i)
    codes.Set(static_cast<uint32_t>(i), error_code_name(static_cast<ErrorCode>(i)));
  o.Set("errorCodes", codes);
  Napi::Array dtypes = Napi::Array::New(env);
  for (int i = 0; i < static_cast<int>(DType::kCount); ++i) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", dtype_name(static_cast<DType>(i)));
    d.Set("size", static_cast<double>(dtype_size(static_cast<DType>(i))));
    dtypes.Set(static_cast<uint32_t>(i), d);
  }
  o.Set("dtypes", dtypes);
  return o;
}

Napi::Value memory_in_use(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(buffer_bytes_in_use()));
}

Napi::Value workspace(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(workspace_bytes()));
}

// nativeMemoryPeak(reset?: boolean): the high-water mark of nativeMemoryInUse.
Napi::Value memory_peak(const Napi::CallbackInfo& info) {
  const bool reset = info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
  return Napi::Number::New(info.Env(), static_cast<double>(buffer_bytes_peak(reset)));
}

// The block cache (core/block_cache.h): bytes held, release, limit, huge pages, OS call counts.
Napi::Value memory_cached(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(cached_block_bytes()));
}

Napi::Value release_cached(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(release_cached_blocks()));
}

// setCacheLimit(bytes) (validated in lib/engine/device.ts; checked again here)
Napi::Value set_limit(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber())
      throw_expected_type(info.Env(), "setCacheLimit: bytes", "a number",
                          info.Length() > 0 ? info[0] : info.Env().Undefined());
    const double d = info[0].As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<int64_t>(d)))
      throw_expected_range(info.Env(), "setCacheLimit: bytes", "an integer >= 0", info[0]);
    set_cache_limit(static_cast<int64_t>(d));
    return info.Env().Undefined();
  });
}

Napi::Value set_huge(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsBoolean())
      throw_expected_type(info.Env(), "setHugePages: on", "a boolean",
                          info.Length() > 0 ? info[0] : info.Env().Undefined());
    set_huge_pages(info[0].As<Napi::Boolean>().Value());
    return info.Env().Undefined();
  });
}

Napi::Value cache_stats(const Napi::CallbackInfo& info) {
  const BlockCacheStats s = block_cache_stats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("maps", static_cast<double>(s.maps));
  o.Set("unmaps", static_cast<double>(s.unmaps));
  o.Set("hits", static_cast<double>(s.hits));
  o.Set("misses", static_cast<double>(s.misses));
  o.Set("mappedBytes", static_cast<double>(s.mapped_bytes));
  o.Set("cachedBytes", static_cast<double>(cached_block_bytes()));
  o.Set("limitBytes", static_cast<double>(cache_limit()));
  o.Set("hugePages", huge_pages());
  return o;
}

}  // namespace

void register_build_info(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, build_info, "buildInfo"));
  exports.Set("setThreads", Napi::Function::New(env, set_threads, "setThreads"));
  exports.Set("tables", Napi::Function::New(env, tables, "tables"));
  exports.Set("nativeMemoryInUse", Napi::Function::New(env, memory_in_use, "nativeMemoryInUse"));
  exports.Set("nativeMemoryPeak", Napi::Function::New(env, memory_peak, "nativeMemoryPeak"));
  exports.Set("nativeWorkspaceBytes", Napi::Function::New(env, workspace, "nativeWorkspaceBytes"));
  exports.Set("nativeMemoryCached", Napi::Function::New(env, memory_cached, "nativeMemoryCached"));
  exports.Set("releaseCachedMemory", Napi::Function::New(env, release_cached, "releaseCachedMemory"));
  exports.Set("setCacheLimit", Napi::Function::New(env, set_limit, "setCacheLimit"));
  exports.Set("setHugePages", Napi::Function::New(env, set_huge, "setHugePages"));
  exports.Set("blockCacheStats", Napi::Function::New(env, cache_stats, "blockCacheStats"));
}

}  // namespace napi
}  // namespace rlhf
