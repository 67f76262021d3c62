// One register_* function per binding file; addon.cc calls them all.
#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>

namespace rlhf {
namespace napi {

void register_build_info(Napi::Env env, Napi::Object exports);
void register_gemm(Napi::Env env, Napi::Object exports);
void register_adamw(Napi::Env env, Napi::Object exports);
void register_bench(Napi::Env env, Napi::Object exports);
void register_model(Napi::Env env, Napi::Object exports);
void register_pg(Napi::Env env, Napi::Object exports);
void register_mpi(Napi::Env env, Napi::Object exports);
void register_generation_session(Napi::Env env, Napi::Object exports);

}  // namespace napi
namespace model {
class Engine;
}
namespace napi {
// A NativeModel's engine (a getter: null once the model is disposed; the caller keeps the JS object
// referenced) and its busy flag; false when obj is not a NativeModel. Defined in model_binding.cc.
bool resolve_model_engine(const Napi::Object& obj, std::function<model::Engine*()>* engine,
                          std::shared_ptr<std::atomic<bool>>* busy);

}  // namespace napi
}  // namespace rlhf
