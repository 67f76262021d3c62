// What an optimizer updates: flat parameters and gradients (and weight-decay segments), either
// two Float32Arrays or a native model's parameter store. Resolved when the optimizer is created;
// the JS objects are referenced by the optimizer, and refresh() re-validates before every step:
//   - Float32Arrays: their memory is pinned (pin.h) for the optimizer's lifetime, so a transfer of
//     the buffer during a pending step cannot free what the step writes; the next step() after a
//     detach throws a TypeError instead of reading the moved memory.
//   - a model: the optimizer → model link. resolve_model_target (declared below, defined in
//     model_binding.cc beside the model's wrapper) recognises NativeModel objects and hands back a
//     target whose refresh() re-reads
//     the model's parameter store and throws ERR_RLHF_DISPOSED once the model was disposed, so the
//     raw pointers below are never used after the model freed them. The model and optimizer share
//     one busy flag, so the model cannot be disposed while a step runs.
#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "../cpu/adamw.h"

namespace rlhf {
namespace model {
class Backend;  // native/model/backend.h
}
namespace napi {

struct AdamWTarget {
  float* params = nullptr;
  const float* grads = nullptr;
  int64_t size = 0;
  std::vector<cpu::AdamWSegment> segments;
  std::vector<std::pair<int64_t, int64_t>> norm_ranges;  // empty: the norm covers [0, size)
  model::Backend* backend = nullptr;                     // a model's: params/grads are its device's memory; null: host
  std::function<void(double*, int64_t)> sum_sumsq_over_ranks;  // a process-TP model's (engine.h); null: none
  std::shared_ptr<std::atomic<bool>> busy;                     // shared with the owner (a model's busy flag)
  std::vector<Napi::Reference<Napi::Value>> keep_alive;
  std::vector<std::shared_ptr<void>> pinned;  // the Float32Arrays' memory (pin.h)
  // Re-reads the pointers and checks the owner is still alive (throws a JS error otherwise).
  // Called on the main thread before every use of params/grads.
  std::function<void(AdamWTarget*, const char* call)> refresher;
  void refresh(const char* call) {
    if (refresher) refresher(this, call);
  }
};

// {params: Float32Array, grads: Float32Array, segments?: [{offset, length, weightDecayScale}]}
// or a NativeModel (resolve_model_target). Throws JS errors naming fields.
AdamWTarget resolve_adamw_target(const Napi::Object& target);

// A NativeModel's parameter store as an optimizer target: false (out untouched) when `target` is
// not a NativeModel. Defined in model_binding.cc.
bool resolve_model_target(const Napi::Object& target, AdamWTarget* out);

}  // namespace napi
}  // namespace rlhf
