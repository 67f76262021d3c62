// NativeAdamW: fused AdamW over a flat parameter/gradient pair, owning its moment buffers.
//
//   new NativeAdamW({params: Float32Array, grads: Float32Array, segments?}, options, shard?)
//     shard {index, count}: ZeRO stage 1 — this optimizer is shard `index` of `count`: it keeps
//     moments for its contiguous range [shardBegin, shardEnd) of the parameters only (ranges as even
//     as possible, in order); step() takes the norm over every gradient and updates that range
//     (cpu::adamw_step_range); getState/setState move the range's moments
//   step({lr?}) -> Promise<{gradNorm, skipped, step}>     one fused update (skips on NaN/Inf)
//   setOptions(options)                                     lr, betas, eps, weightDecay, maxGradNorm
//   getState() -> Promise<{step, m, v}>                     copies (external Float32Arrays)
//   setState({step, m, v}) -> Promise<void>                 copies in; exact resume
//   dispose(); size (number of parameters)
//
// The target's arrays stay referenced and their memory pinned for the optimizer's lifetime; a
// model target is checked for liveness before every step (adamw_target.h: ERR_RLHF_DISPOSED once
// the model was disposed). One call at a time: a second call while a step or a state copy runs
// throws ERR_RLHF_BUSY.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>

#include "../core/buffer.h"
#include "../model/backend.h"
#include "../model/tensor_parallel_process.h"
#include "../cpu/adamw.h"
#include "adamw_target.h"
#include "args.h"
#include "async_job.h"
#include "bindings.h"
#include "js_errors.h"

namespace rlhf {
namespace napi {

namespace {

cpu::AdamWOptions read_options(const Napi::Object& o, const cpu::AdamWOptions& base) {
  const char* fn = "AdamW";
  cpu::AdamWOptions r = base;
  r.lr = static_cast<float>(get_number_or(o, fn, "lr", base.lr));
  r.beta1 = static_cast<float>(get_number_or(o, fn, "beta1", base.beta1));
  r.beta2 = static_cast<float>(get_number_or(o, fn, "beta2", base.beta2));
  r.eps = static_cast<float>(get_number_or(o, fn, "eps", base.eps));
  r.weight_decay = static_cast<float>(get_number_or(o, fn, "weightDecay", base.weight_decay));
  r.max_grad_norm = static_cast<float>(get_number_or(o, fn, "maxGradNorm", base.max_grad_norm));
  try {
    cpu::adamw_check_options(r);
  } catch (const Error& e) {
    throw make_js_error(o.Env(), e.code(), e.what());
  }
  return r;
}

class AdamWWrap : public Napi::ObjectWrap<AdamWWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(
        env, "NativeAdamW",
        {InstanceMethod("step", &AdamWWrap::step), InstanceMethod("setOptions", &AdamWWrap::set_options),
         InstanceMethod("getState", &AdamWWrap::get_state), InstanceMethod("setState", &AdamWWrap::set_state),
         InstanceMethod("dispose", &AdamWWrap::dispose), InstanceAccessor("size", &AdamWWrap::size, nullptr),
         InstanceAccessor("shardBegin", &AdamWWrap::shard_begin, nullptr),
         InstanceAccessor("shardEnd", &AdamWWrap::shard_end, nullptr)});
  }

  explicit AdamWWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AdamWWrap>(info) {
    Napi::Env env = info.Env();
    try {
      Napi::Object target = arg_object(info, 0, "AdamW: target");
      target_ = resolve_adamw_target(target);
      options_ =
          info.Length() > 1 && info[1].IsObject() ? read_options(info[1].As<Napi::Object>(), {}) : cpu::AdamWOptions{};
      shard_end_ = target_.size;
      if (info.Length() > 2 && info[2].IsObject()) {
        Napi::Object sh = info[2].As<Napi::Object>();
        const int64_t count = get_int(sh, "AdamW: shard", "count", 1, 1 << 20);
        const int64_t index = get_int(sh, "AdamW: shard", "index", 0, count - 1);
        const int64_t base = target_.size / count, extra = target_.size % count;
        shard_begin_ = index * base + std::min(index, extra);
        shard_end_ = shard_begin_ + base + (index < extra ? 1 : 0);
        sharded_ = true;
      }
      const size_t n = static_cast<size_t>(shard_end_ - shard_begin_);
      // a model on a device: its backend's fused AdamW, the moments on that device
      if (target_.backend && target_.backend->device() != Device::Cpu) {
        RLHF_CHECK(!sharded_, ErrorCode::Unsupported, "AdamW: shard is for host parameters; this model's are on '",
                   device_name(target_.backend->device()), "'");
        device_backend_ = target_.backend;
      }
      const Device device = device_backend_ ? device_backend_->device() : Device::Cpu;
      m_ = Buffer(n * sizeof(float), true, device);
      v_ = Buffer(n * sizeof(float), true, device);
      reported_ = static_cast<int64_t>(2 * n * sizeof(float));
      Napi::MemoryManagement::AdjustExternalMemory(env, reported_);
    } catch (const Error& e) {
      throw make_js_error(env, e.code(), e.what());
    }
  }

  ~AdamWWrap() override { release(); }

 private:
  void release() {
    if (disposed_) return;
    disposed_ = true;
    m_ = Buffer();
    v_ = Buffer();
    target_.keep_alive.clear();
    target_.pinned.clear();
    if (reported_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_);
    reported_ = 0;
  }

  void check_usable(const char* call) {
    if (disposed_)
      throw make_js_error(Env(), ErrorCode::Disposed, std::string("AdamW.") + call + ": optimizer was disposed");
    AsyncJob::check_not_busy(Env(), target_.busy, "AdamW's parameters", call);
  }

  Napi::Value step(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      check_usable("step()");
      cpu::AdamWOptions o = options_;
      if (info.Length() > 0 && info[0].IsObject()) o = read_options(info[0].As<Napi::Object>(), options_);
      target_.refresh("step()");
      auto result = std::make_shared<cpu::AdamWResult>();
      const int64_t next_step = step_ + 1;
      float *p = target_.params, *m = m_.as<float>(), *v = v_.as<float>();
      const float* g = target_.grads;
      int64_t n = target_.size;
      auto segments = target_.segments;
      auto norm_ranges = target_.norm_ranges;
      const bool sharded = sharded_;
      const int64_t begin = shard_begin_, end = shard_end_;
      model::Backend* be = device_backend_;
      auto across = target_.sum_sumsq_over_ranks;  // tensor parallelism across processes
      return AsyncJob::queue(
          info.Env(), "rlhf.adamw.step",
          [=] {
            *result = across    ? cpu::adamw_step_across_ranks(p, g, m, v, n, begin, end, o, next_step, segments,
                                                               norm_ranges, across)
                      : be      ? be->adamw_step(p, g, m, v, n, o, next_step, segments, norm_ranges)
                      : sharded ? cpu::adamw_step_range(p, g, m, v, n, begin, end, o, next_step, segments, norm_ranges)
                      : norm_ranges.empty()
                          ? cpu::adamw_step(p, g, m, v, n, o, next_step, segments)
                          : cpu::adamw_step_norm_ranges(p, g, m, v, n, o, next_step, segments, norm_ranges);
          },
          [this, result](Napi::Env env) -> Napi::Value {
            if (!result->skipped) step_ += 1;
            Napi::Object r = Napi::Object::New(env);
            r.Set("gradNorm", result->grad_norm);
            r.Set("skipped", result->skipped);
            r.Set("step", static_cast<double>(step_));
            return r;
          },
          {Value()}, target_.busy);
    });
  }

  Napi::Value set_options(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      check_usable("setOptions()");
      options_ = read_options(arg_object(info, 0, "AdamW.setOptions: options"), options_);
      return info.Env().Undefined();
    });
  }

  Napi::Value get_state(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      check_usable("getState()");
      const size_t n = static_cast<size_t>(shard_end_ - shard_begin_);
      auto mc = std::make_shared<Buffer>(), vc = std::make_shared<Buffer>();
      const float *m = m_.as<float>(), *v = v_.as<float>();
      int64_t step = step_;
      model::Backend* be = device_backend_;
      return AsyncJob::queue(
          info.Env(), "rlhf.adamw.getState",
          [=] {
            *mc = Buffer(n * sizeof(float), false);
            *vc = Buffer(n * sizeof(float), false);
            if (n && be) {
              be->copy(mc->data(), Device::Cpu, m, be->device(), n * sizeof(float));
              be->copy(vc->data(), Device::Cpu, v, be->device(), n * sizeof(float));
            } else if (n) {
              std::memcpy(mc->data(), m, n * sizeof(float)), std::memcpy(vc->data(), v, n * sizeof(float));
            }
          },
          [=](Napi::Env env) -> Napi::Value {
            Napi::Object r = Napi::Object::New(env);
            r.Set("step", static_cast<double>(step));
            r.Set("m", external_f32(env, std::move(*mc), n));
            r.Set("v", external_f32(env, std::move(*vc), n));
            return r;
          },
          {Value()}, target_.busy);
    });
  }

  Napi::Value set_state(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      check_usable("setState()");
      Napi::Object s = arg_object(info, 0, "AdamW.setState: state");
      const size_t n = static_cast<size_t>(shard_end_ - shard_begin_);
      int64_t step = get_int(s, "AdamW.setState", "step", 0, int64_t(1) << 53);
      auto m = get_f32(s, "AdamW.setState", "m", n);
      auto v = get_f32(s, "AdamW.setState", "v", n);
      if (m.ElementLength() != n || v.ElementLength() != n)
        throw_expected_range(
            info.Env(), m.ElementLength() != n ? "AdamW.setState: state.m" : "AdamW.setState: state.v",
            "a Float32Array of exactly " + std::to_string(n) + " elements (the parameters this optimizer updates)",
            m.ElementLength() != n ? Napi::Value(m) : Napi::Value(v));
      const float *ms = m.Data(), *vs = v.Data();
      float *md = m_.as<float>(), *vd = v_.as<float>();
      model::Backend* be = device_backend_;
      return AsyncJob::queue(
          info.Env(), "rlhf.adamw.setState",
          [=] {
            if (n && be) {
              be->copy(md, be->device(), ms, Device::Cpu, n * sizeof(float));
              be->copy(vd, be->device(), vs, Device::Cpu, n * sizeof(float));
            } else if (n) {
              std::memcpy(md, ms, n * sizeof(float)), std::memcpy(vd, vs, n * sizeof(float));
            }
          },
          [this, step](Napi::Env env) -> Napi::Value {
            step_ = step;
            return env.Undefined();
          },
          {Value(), m, v}, target_.busy);
    });
  }

  Napi::Value dispose(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      if (!disposed_) AsyncJob::check_not_busy(Env(), target_.busy, "AdamW's parameters", "dispose()");
      release();
      return info.Env().Undefined();
    });
  }

  Napi::Value size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(target_.size));
  }

  Napi::Value shard_begin(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(shard_begin_));
  }
  Napi::Value shard_end(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(shard_end_)); }

  AdamWTarget target_;
  cpu::AdamWOptions options_;
  Buffer m_, v_;                              // on the device of device_backend_ (host when null)
  model::Backend* device_backend_ = nullptr;  // a device model's backend: it runs the step
  int64_t step_ = 0;
  int64_t shard_begin_ = 0, shard_end_ = 0;  // the range this optimizer updates: [0, size) unless sharded
  bool sharded_ = false;
  int64_t reported_ = 0;
  bool disposed_ = false;
};

}  // namespace

void register_adamw(Napi::Env env, Napi::Object exports) { exports.Set("NativeAdamW", AdamWWrap::define(env)); }

}  // namespace napi
}  // namespace rlhf
