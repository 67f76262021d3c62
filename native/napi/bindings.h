// One register_* function per binding file; addon.cc calls them all.
#pragma once
#include <napi.h>

namespace rlhf {
namespace napi {

void register_build_info(Napi::Env env, Napi::Object exports);
void register_gemm(Napi::Env env, Napi::Object exports);
void register_adamw(Napi::Env env, Napi::Object exports);
void register_bench(Napi::Env env, Napi::Object exports);
void register_model(Napi::Env env, Napi::Object exports);
void register_pg(Napi::Env env, Napi::Object exports);
void register_mpi(Napi::Env env, Napi::Object exports);

}  // namespace napi
}  // namespace rlhf
