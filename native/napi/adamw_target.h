// What an optimizer updates: flat parameters and gradients (and weight-decay segments), either
// two Float32Arrays or a native model's parameter store. Resolved once when the optimizer is
// created; the JS objects are kept alive by the optimizer.
#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "../cpu/adamw.h"

namespace rlhf {
namespace napi {

struct AdamWTarget {
  float* params = nullptr;
  const float* grads = nullptr;
  int64_t size = 0;
  std::vector<cpu::AdamWSegment> segments;
  std::vector<std::pair<int64_t, int64_t>> norm_ranges;  // empty: the norm covers [0, size)
  std::shared_ptr<std::atomic<bool>> busy;  // shared with the owner (a model's busy flag)
  std::vector<Napi::Reference<Napi::Value>> keep_alive;
  std::function<void(AdamWTarget*)> refresher;  // re-reads pointers (a model may reallocate)
  void refresh() {
    if (refresher) refresher(this);
  }
};

// {params: Float32Array, grads: Float32Array, segments?: [{offset, length, weightDecayScale}]}
// or a native model object (registered by the model binding). Throws JS errors naming fields.
AdamWTarget resolve_adamw_target(const Napi::Object& target);

// The model binding installs this to recognise its objects (returns false for anything else).
using ModelTargetResolver = bool (*)(const Napi::Object& target, AdamWTarget* out);
void set_model_target_resolver(ModelTargetResolver resolver);

}  // namespace napi
}  // namespace rlhf
