#include "adamw_target.h"

#include "args.h"
#include "js_errors.h"
#include "pin.h"

namespace rlhf {
namespace napi {

AdamWTarget resolve_adamw_target(const Napi::Object& target) {
  AdamWTarget t;
  if (resolve_model_target(target, &t)) return t;
  const char* fn = "AdamW";
  Napi::Float32Array params = get_f32(target, fn, "params", 0);
  Napi::Float32Array grads = get_f32(target, fn, "grads", 0);
  if (params.ElementLength() != grads.ElementLength())
    throw_expected_range(target.Env(), "AdamW: target.grads",
                         "a Float32Array as long as target.params (" + std::to_string(params.ElementLength()) + ")",
                         grads);
  t.params = params.Data();
  t.grads = grads.Data();
  t.size = static_cast<int64_t>(params.ElementLength());
  t.busy = std::make_shared<std::atomic<bool>>(false);
  Napi::Value segs = target.Get("segments");
  if (!segs.IsUndefined()) {
    if (!segs.IsArray()) throw_expected_type(target.Env(), "AdamW: target.segments", "an array", segs);
    Napi::Array a = segs.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      if (!a.Get(i).IsObject())
        throw_expected_type(target.Env(), "AdamW: target.segments[" + std::to_string(i) + "]", "an object", a.Get(i));
      Napi::Object s = a.Get(i).As<Napi::Object>();
      cpu::AdamWSegment seg;
      seg.offset = get_int(s, "AdamW.segments[]", "offset", 0, t.size);
      seg.length = get_int(s, "AdamW.segments[]", "length", 0, t.size);
      seg.weight_decay_scale = static_cast<float>(get_number_or(s, "AdamW.segments[]", "weightDecayScale", 1.0));
      t.segments.push_back(seg);
    }
    try {
      cpu::adamw_check_segments(t.segments, t.size);
    } catch (const Error& e) {
      throw make_js_error(target.Env(), e.code(), e.what());
    }
  }
  t.keep_alive.push_back(Napi::Persistent(Napi::Value(params)));
  t.keep_alive.push_back(Napi::Persistent(Napi::Value(grads)));
  for (Napi::Value a : {Napi::Value(params), Napi::Value(grads)})
    if (auto pin = pin_memory(a)) t.pinned.push_back(std::move(pin));
  // A typed array's data pointer is stable unless its buffer is detached (transferred).
  t.refresher = [](AdamWTarget* self, const char* call) {
    Napi::Env env = self->keep_alive[0].Env();
    Napi::Value pv = self->keep_alive[0].Value(), gv = self->keep_alive[1].Value();
    auto p = pv.As<Napi::Float32Array>();
    auto g = gv.As<Napi::Float32Array>();
    if (is_detached(pv) || is_detached(gv) || p.Data() == nullptr || g.Data() == nullptr ||
        static_cast<int64_t>(p.ElementLength()) != self->size || static_cast<int64_t>(g.ElementLength()) != self->size)
      throw_type_error(env, std::string("AdamW.") + call +
                                ": the target's params/grads arrays were detached (transferred) or resized after the "
                                "optimizer was created");
    self->params = p.Data();
    self->grads = g.Data();
  };
  return t;
}

}  // namespace napi
}  // namespace rlhf
