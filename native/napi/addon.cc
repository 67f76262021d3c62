// Module init: registers the exports of every binding file, nothing else.
#include <napi.h>

#include "bindings.h"
#include "js_errors.h"

namespace {
Napi::Object init(Napi::Env env, Napi::Object exports) {
  using namespace rlhf::napi;
  register_errors(env, exports);
  register_build_info(env, exports);
  register_gemm(env, exports);
  register_adamw(env, exports);
  register_bench(env, exports);
  register_model(env, exports);
  register_generation_session(env, exports);
  register_pg(env, exports);
  register_mpi(env, exports);
  return exports;
}
}  // namespace

NODE_API_MODULE(rlhf, init)
