// NativeModel: the transformer (native/model) behind an ObjectWrap.
//
//   new NativeModel(config)                 allocate (parameters zero); see lib/engine/config.ts;
//                                           config.tensorParallel = P > 1: P thread ranks, each
//                                           with RLHF_THREADS / P threads (native/model/tensor_parallel.h);
//                                           config.tensorParallelGroup = 'mpi': this process is one
//                                           rank of the MPI tensor-parallel group (core/mpi.h), P its
//                                           size, holding its shard (tensor_parallel_process.h)
//   parameters(): [{name, shape, offset, size, weightDecayScale}]      (sync, metadata)
//   initRandom(seed, std) -> Promise<void>
//   forward({batch, seqLen, tokens, targets?, lengths?, positions?, segments?, entropy?, values?,
//            logits?, temperature?, saveForBackward?}) -> Promise<{logprobs, entropy?, values?, logits?}>
//   backward({dLogprobs?, dEntropy?, dValues?}, allReduceBucketBytes?) -> Promise<void>; with
//     allReduceBucketBytes: the gradient all-reduce overlapped (backward_all_reduce), resolving with
//     {readyPoints, earlyBuckets}
//   zeroGrad() -> Promise<void>
//   generate({prompts, maxNewTokens, temperature, topK, topP, seed, streamOffset, stopTokens, staticBatch?, kvBf16?})
//       -> Promise<{tokens: Int32Array[], logprobs: Float32Array[], stopped: boolean[]}>
//   readParameter(name, 'param' | 'grad') -> Promise<Float32Array>; readParameter(name, 'bf16') -> Promise<Uint16Array>
//   writeParameter(name, data: Float32Array | Uint16Array of bf16 bits) -> Promise<void>
//   storageBytes: {parameters, weightCopy, gradients} bytes held (config.dtype, config.trainable: transformer.h)
//   releaseActivations(); setGradientCheckpointing(bool); activationBytes; numParameters; dispose()
//   tensorParallelRank: this process's rank in its MPI tensor-parallel group (0 otherwise)
// Inputs are copied on the main thread, so JS may reuse its arrays as soon as the call returns.
// One call at a time (ERR_RLHF_BUSY otherwise); an AdamW over the model shares the same guard.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>

#include "../core/buffer.h"
#include "../core/mpi.h"
#include "../model/transformer.h"
#include "adamw_target.h"
#include "args.h"
#include "async_job.h"
#include "backward_all_reduce.h"
#include "bindings.h"
#include "js_errors.h"
#include "model_args.h"

namespace rlhf {
namespace napi {

namespace {

class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::FunctionReference* constructor;

  static Napi::Function define(Napi::Env env) {
    return DefineClass(
        env, "NativeModel",
        {InstanceMethod("parameters", &ModelWrap::parameters), InstanceMethod("initRandom", &ModelWrap::init_random),
         InstanceMethod("forward", &ModelWrap::forward), InstanceMethod("backward", &ModelWrap::backward),
         InstanceMethod("zeroGrad", &ModelWrap::zero_grad), InstanceMethod("generate", &ModelWrap::generate),
         InstanceMethod("readParameter", &ModelWrap::read_parameter),
         InstanceMethod("writeParameter", &ModelWrap::write_parameter),
         InstanceMethod("releaseActivations", &ModelWrap::release_activations),
         InstanceMethod("setGradientCheckpointing", &ModelWrap::set_gradient_checkpointing),
         InstanceMethod("dispose", &ModelWrap::dispose),
         InstanceAccessor("numParameters", &ModelWrap::num_parameters, nullptr),
         InstanceAccessor("activationBytes", &ModelWrap::activation_bytes, nullptr),
         InstanceAccessor("storageBytes", &ModelWrap::storage_bytes, nullptr),
         InstanceAccessor("tensorParallelRank", &ModelWrap::tensor_parallel_rank, nullptr)});
  }

  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    Napi::Env env = info.Env();
    try {
      model_ = make_model_engine(arg_object(info, 0, "Model: config"), &tp_rank_);
    } catch (const Error& e) {
      throw make_js_error(env, e.code(), e.what());
    } catch (const std::bad_alloc&) {
      throw make_js_error(env, ErrorCode::OutOfMemory, "Model: out of memory allocating the parameters");
    }
    // parameters + gradients (a tensor-parallel model's shards hold replicas: its optimizer view is larger)
    if (auto* t = dynamic_cast<model::Transformer*>(model_.get()))
      reported_ = t->parameter_bytes() + t->weight_copy_bytes() + t->gradient_bytes();
    else
      reported_ =
          2 * std::max(model_->optimizer_view().size, model_->full_num_params()) * static_cast<int64_t>(sizeof(float));
    Napi::MemoryManagement::AdjustExternalMemory(env, reported_);
  }

  ~ModelWrap() override { release(); }

  model::Engine* model() { return model_.get(); }
  Napi::Value tensor_parallel_rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), tp_rank_); }
  const std::shared_ptr<std::atomic<bool>>& busy() const { return busy_; }

 private:
  void release() {
    if (!model_) return;
    model_.reset();
    if (reported_) Napi::MemoryManagement::AdjustExternalMemory(Env(), -reported_);
    reported_ = 0;
  }

  model::Engine* usable(const char* call) {
    if (!model_)
      throw make_js_error(Env(), ErrorCode::Disposed, std::string("Model.") + call + ": the model was disposed");
    AsyncJob::check_not_busy(Env(), busy_, "the model", (std::string(call) + "()").c_str());
    return model_.get();
  }

  Napi::Value parameters(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      model::Engine* m = model_.get();
      if (!m) throw make_js_error(info.Env(), ErrorCode::Disposed, "Model.parameters: the model was disposed");
      const auto& views = m->full_views();
      Napi::Array out = Napi::Array::New(info.Env(), views.size());
      for (size_t i = 0; i < views.size(); ++i) {
        Napi::Object v = Napi::Object::New(info.Env());
        v.Set("name", views[i].name);
        Napi::Array shape = Napi::Array::New(info.Env(), views[i].shape.size());
        for (size_t d = 0; d < views[i].shape.size(); ++d)
          shape.Set(static_cast<uint32_t>(d), static_cast<double>(views[i].shape[d]));
        v.Set("shape", shape);
        v.Set("offset", static_cast<double>(views[i].offset));
        v.Set("size", static_cast<double>(views[i].size));
        v.Set("weightDecayScale", views[i].weight_decay_scale);
        out.Set(static_cast<uint32_t>(i), v);
      }
      return out;
    });
  }

  Napi::Value init_random(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      model::Engine* m = usable("initRandom");
      for (size_t i = 0; i < 2; ++i)
        if (info.Length() <= i || !info[i].IsNumber())
          throw_expected_type(info.Env(), i == 0 ? "Model.initRandom: seed" : "Model.initRandom: std", "a number",
                              info.Length() > i ? info[i] : info.Env().Undefined());
      uint64_t seed = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
      float std = info[1].As<Napi::Number>().FloatValue();
      return AsyncJob::queue(
          info.Env(), "rlhf.model.initRandom", [=] { m->init_random(seed, std); }, nullptr, {Value()}, busy_);
    });
  }

  Napi::Value forward(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      model::Engine* m = usable("forward");
      Napi::Object o = arg_object(info, 0, "Model.forward: batch");
      const char* fn = "Model.forward";
      const int64_t B = get_int(o, fn, "batch", 1, int64_t(1) << 24), T = get_int(o, fn, "seqLen", 1, int64_t(1) << 24);
      const size_t N = static_cast<size_t>(B * T);
      auto tokens = std::make_shared<std::vector<int32_t>>(copy_typed<int32_t>(o, fn, "tokens", N, true));
      auto targets = std::make_shared<std::vector<int32_t>>(copy_typed<int32_t>(o, fn, "targets", N, false));
      auto positions = std::make_shared<std::vector<int32_t>>(copy_typed<int32_t>(o, fn, "positions", N, false));
      auto segments = std::make_shared<std::vector<int32_t>>(copy_typed<int32_t>(o, fn, "segments", N, false));
      auto len32 = copy_typed<int32_t>(o, fn, "lengths", static_cast<size_t>(B), false);
      auto lengths = std::make_shared<std::vector<int64_t>>(len32.begin(), len32.end());
      const bool want_entropy = get_bool_or(o, fn, "entropy", false);
      const bool want_values = get_bool_or(o, fn, "values", false);
      const bool want_logits = get_bool_or(o, fn, "logits", false);
      const bool save = get_bool_or(o, fn, "saveForBackward", true);
      const bool adapters = get_bool_or(o, fn, "adapters", true);
      const float temperature = static_cast<float>(get_number_or(o, fn, "temperature", 1.0));
      const int64_t V = m->full_config().vocab;
      struct Out {
        Buffer logp, ent, val, logits;
      };
      auto out = std::make_shared<Out>();
      return AsyncJob::queue(
          info.Env(), "rlhf.model.forward",
          [=] {
            model::ForwardInput in;
            in.B = B, in.T = T, in.tokens = tokens->data();
            in.targets = targets->empty() ? nullptr : targets->data();
            in.positions = positions->empty() ? nullptr : positions->data();
            in.segments = segments->empty() ? nullptr : segments->data();
            in.lengths = lengths->empty() ? nullptr : lengths->data();
            in.entropy = want_entropy, in.temperature = temperature, in.save = save, in.adapters = adapters;
            model::ForwardOutput fo;
            out->logp = Buffer(N * sizeof(float), false);
            fo.logprobs = out->logp.as<float>();
            if (want_entropy) out->ent = Buffer(N * sizeof(float), false), fo.entropy = out->ent.as<float>();
            if (want_values) out->val = Buffer(N * sizeof(float), false), fo.values = out->val.as<float>();
            if (want_logits) out->logits = Buffer(N * V * sizeof(float), false), fo.logits = out->logits.as<float>();
            m->forward(in, fo);
          },
          [=](Napi::Env env) -> Napi::Value {
            Napi::Object r = Napi::Object::New(env);
            r.Set("logprobs", external_f32(env, std::move(out->logp), N));
            if (want_entropy) r.Set("entropy", external_f32(env, std::move(out->ent), N));
            if (want_values) r.Set("values", external_f32(env, std::move(out->val), N));
            if (want_logits) r.Set("logits", external_f32(env, std::move(out->logits), N * V));
            return r;
          },
          {Value()}, busy_);
    });
  }

  Napi::Value backward(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      model::Engine* m = usable("backward");
      Napi::Object o = arg_object(info, 0, "Model.backward: gradients");
      const char* fn = "Model.backward";
      // The saved forward's N is not known here cheaply; take the array lengths and let native check.
      auto take = [&](const char* name) {
        Napi::Value v = o.Get(name);
        if (v.IsUndefined() || v.IsNull()) return std::make_shared<std::vector<float>>();
        auto a = as_f32(info.Env(), v, std::string(fn) + ": options." + name, 0);
        return std::make_shared<std::vector<float>>(a.Data(), a.Data() + a.ElementLength());
      };
      auto dl = take("dLogprobs"), de = take("dEntropy"), dv = take("dValues");
      // allReduceBucketBytes (second argument): overlap the data-parallel gradient all-reduce
      int64_t bucket_bytes = -1;
      if (info.Length() > 1 && !info[1].IsUndefined()) {
        if (!info[1].IsNumber() || !(info[1].As<Napi::Number>().DoubleValue() >= 4))
          throw_expected_range(info.Env(), "Model.backward: allReduceBucketBytes", "a number >= 4", info[1]);
        bucket_bytes = static_cast<int64_t>(info[1].As<Napi::Number>().DoubleValue());
        RLHF_CHECK(mpi_info().loadable && MpiGroup::layout_tensor_parallel() <= 1, ErrorCode::Unsupported,
                   "backward with a gradient all-reduce: needs MPI (initDistributed) without tensor-parallel process "
                   "groups");
      }
      auto report = std::make_shared<OverlapReport>();
      return AsyncJob::queue(
          info.Env(), "rlhf.model.backward",
          [=] {
            const int64_t N = m->saved_rows();
            auto check = [&](const std::shared_ptr<std::vector<float>>& x, const char* name) {
              // N == 0: nothing saved; backward itself reports that (ERR_RLHF_INVALID_STATE)
              RLHF_CHECK(N == 0 || x->empty() || static_cast<int64_t>(x->size()) == N, ErrorCode::OutOfRange,
                         "Model.backward: expected options.", name, " to be a Float32Array of batch·seqLen = ", N,
                         " elements (the last forward's), received Float32Array(", x->size(), ")");
            };
            check(dl, "dLogprobs"), check(de, "dEntropy"), check(dv, "dValues");
            model::BackwardInput in;
            in.dlogprobs = dl->empty() ? nullptr : dl->data();
            in.dentropy = de->empty() ? nullptr : de->data();
            in.dvalues = dv->empty() ? nullptr : dv->data();
            if (bucket_bytes > 0)
              *report = backward_all_reduce(m, in, std::max<int64_t>(1, bucket_bytes / int64_t(sizeof(float))));
            else
              m->backward(in);
          },
          [=](Napi::Env env) -> Napi::Value {
            if (bucket_bytes <= 0) return env.Undefined();
            Napi::Object r = Napi::Object::New(env);
            r.Set("readyPoints", report->ready_points);
            r.Set("earlyBuckets", report->early_buckets);
            return r;
          },
          {Value()}, busy_);
    });
  }

  Napi::Value zero_grad(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      model::Engine* m = usable("zeroGrad");
      return AsyncJob::queue(
          info.Env(), "rlhf.model.zeroGrad", [=] { m->zero_grad(); }, nullptr, {Value()}, busy_);
    });
  }

  Napi::Value generate(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      model::Engine* m = usable("generate");
      auto req = read_generate_request(arg_object(info, 0, "Model.generate: options"));
      auto res = std::make_shared<model::GenerateResult>();
      return AsyncJob::queue(
          info.Env(), "rlhf.model.generate", [=] { *res = m->generate(*req); },
          [=](Napi::Env env) -> Napi::Value {
            Napi::Object r = Napi::Object::New(env);
            const size_t B = res->tokens.size();
            Napi::Array toks = Napi::Array::New(env, B), lps = Napi::Array::New(env, B),
                        stopped = Napi::Array::New(env, B);
            for (size_t b = 0; b < B; ++b) {
              auto t = Napi::Int32Array::New(env, res->tokens[b].size());
              std::memcpy(t.Data(), res->tokens[b].data(), res->tokens[b].size() * sizeof(int32_t));
              auto l = Napi::Float32Array::New(env, res->logprobs[b].size());
              std::memcpy(l.Data(), res->logprobs[b].data(), res->logprobs[b].size() * sizeof(float));
              toks.Set(static_cast<uint32_t>(b), t);
              lps.Set(static_cast<uint32_t>(b), l);
              stopped.Set(static_cast<uint32_t>(b), Napi::Boolean::New(env, res->stopped[b]));
            }
            r.Set("tokens", toks);
            r.Set("logprobs", lps);
            r.Set("stopped", stopped);
            return r;
          },
          {Value()}, busy_);
    });
  }

  const model::ParamView& find_view(const std::string& name) {
    for (const auto& v : model_->full_views())
      if (v.name == name) return v;
    throw make_js_error(Env(), ErrorCode::OutOfRange, "Model: no parameter named \"" + name + "\"");
  }

  Napi::Value read_parameter(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      model::Engine* m = usable("readParameter");
      if (info.Length() < 1 || !info[0].IsString())
        throw_expected_type(info.Env(), "Model.readParameter: name", "a string",
                            info.Length() > 0 ? info[0] : info.Env().Undefined());
      const model::ParamView& v = find_view(info[0].As<Napi::String>().Utf8Value());
      const std::string what =
          info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : std::string("param");
      if (what != "param" && what != "grad" && what != "bf16")
        throw_expected_type(info.Env(), "Model.readParameter: what", "'param', 'grad' or 'bf16'", info[1]);
      const model::ParamView* view = &v;
      const size_t n = static_cast<size_t>(v.size);
      auto buf = std::make_shared<Buffer>();
      if (what == "bf16")  // Uint16Array of bf16 bits
        return AsyncJob::queue(
            info.Env(), "rlhf.model.readParameter",
            [=] {
              *buf = Buffer(n * sizeof(uint16_t), false);
              m->read_parameter_bf16(*view, buf->as<uint16_t>());
            },
            [=](Napi::Env env) -> Napi::Value { return external_u16(env, std::move(*buf), n); }, {Value()}, busy_);
      const bool grad = what == "grad";
      return AsyncJob::queue(
          info.Env(), "rlhf.model.readParameter",
          [=] {
            *buf = Buffer(n * sizeof(float), false);
            m->read_parameter(*view, grad, buf->as<float>());
          },
          [=](Napi::Env env) -> Napi::Value { return external_f32(env, std::move(*buf), n); }, {Value()}, busy_);
    });
  }

  // writeParameter(name, data): data a Float32Array, or a Uint16Array of bf16 bits
  Napi::Value write_parameter(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      model::Engine* m = usable("writeParameter");
      if (info.Length() < 2 || !info[0].IsString())
        throw_expected_type(info.Env(), "Model.writeParameter: name", "a string (arguments: name, data)",
                            info.Length() > 0 ? info[0] : info.Env().Undefined());
      const std::string name = info[0].As<Napi::String>().Utf8Value();
      const model::ParamView& v = find_view(name);
      const model::ParamView* view = &v;
      const std::string expected = std::to_string(v.size) + " elements (parameter \"" + name + "\")";
      if (info[1].IsTypedArray() && info[1].As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array) {
        auto bits = info[1].As<Napi::Uint16Array>();
        if (static_cast<int64_t>(bits.ElementLength()) != v.size)
          throw_expected_range(info.Env(), "Model.writeParameter: data", "a Uint16Array of bf16 bits, " + expected,
                               bits);
        const uint16_t* src = bits.Data();
        return AsyncJob::queue(
            info.Env(), "rlhf.model.writeParameter", [=] { m->write_parameter_bf16(*view, src); }, nullptr,
            {Value(), bits}, busy_);
      }
      auto data = as_f32(info.Env(), info[1], "Model.writeParameter: data", 0);
      if (static_cast<int64_t>(data.ElementLength()) != v.size)
        throw_expected_range(info.Env(), "Model.writeParameter: data", "a Float32Array of " + expected, data);
      const float* src = data.Data();
      return AsyncJob::queue(
          info.Env(), "rlhf.model.writeParameter", [=] { m->write_parameter(*view, src); }, nullptr, {Value(), data},
          busy_);
    });
  }

  // {parameters, weightCopy, gradients}: bytes of the f32 store, the bf16 weights, the gradients
  Napi::Value storage_bytes(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    auto* t = dynamic_cast<model::Transformer*>(model_.get());
    const int64_t full = model_ ? model_->full_num_params() * static_cast<int64_t>(sizeof(float)) : 0;
    o.Set("parameters", static_cast<double>(t ? t->parameter_bytes() : full));
    o.Set("weightCopy", static_cast<double>(t ? t->weight_copy_bytes() : 0));
    o.Set("gradients", static_cast<double>(t ? t->gradient_bytes() : full));
    return o;
  }

  Napi::Value release_activations(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      usable("releaseActivations")->release_activations();
      return info.Env().Undefined();
    });
  }

  Napi::Value set_gradient_checkpointing(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      model::Engine* m = usable("setGradientCheckpointing");
      if (info.Length() < 1 || !info[0].IsBoolean())
        throw_expected_type(info.Env(), "Model.setGradientCheckpointing: enabled", "a boolean",
                            info.Length() > 0 ? info[0] : info.Env().Undefined());
      m->set_gradient_checkpointing(info[0].As<Napi::Boolean>().Value());
      return info.Env().Undefined();
    });
  }

  Napi::Value dispose(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      if (model_) AsyncJob::check_not_busy(Env(), busy_, "the model", "dispose()");
      release();
      return info.Env().Undefined();
    });
  }

  Napi::Value num_parameters(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), model_ ? static_cast<double>(model_->full_num_params()) : 0.0);
  }

  Napi::Value activation_bytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), model_ ? static_cast<double>(model_->activation_bytes()) : 0.0);
  }

  std::unique_ptr<model::Engine> model_;
  std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
  int64_t reported_ = 0;
  int tp_rank_ = 0;  // rank in the MPI tensor-parallel group (process TP), else 0
};

Napi::FunctionReference* ModelWrap::constructor = nullptr;

// The optimizer → model link (adamw_target.h): AdamW over a model's flat parameters and
// gradients, weight decay 0 on norms and biases. The target references the JS model object (so
// the ModelWrap outlives the optimizer), shares its busy flag (no dispose during a step) and
// re-reads the parameter store before every step, refusing with ERR_RLHF_DISPOSED once the model
// was disposed: the optimizer never holds the model's memory past a dispose.
void read_model_target(ModelWrap* w, AdamWTarget* out, const char* call) {
  model::Engine* m = w->model();
  if (!m)
    throw make_js_error(w->Env(), ErrorCode::Disposed,
                        std::string("AdamW.") + call + ": the model it updates was disposed");
  model::OptimizerView view = m->optimizer_view();
  if (out->params && view.size != out->size)
    throw make_js_error(w->Env(), ErrorCode::Internal,
                        "AdamW: the model's parameter count changed under the optimizer");
  out->params = view.params;
  out->grads = view.grads;
  out->size = view.size;
  out->segments = std::move(view.segments);
  out->norm_ranges = std::move(view.norm_ranges);
  out->backend = view.backend;
  out->sum_sumsq_over_ranks = std::move(view.sum_sumsq_over_ranks);
}

}  // namespace

bool resolve_model_target(const Napi::Object& target, AdamWTarget* out) {
  if (!ModelWrap::constructor || !target.InstanceOf(ModelWrap::constructor->Value())) return false;
  ModelWrap* w = ModelWrap::Unwrap(target);
  read_model_target(w, out, "constructor");
  out->busy = w->busy();
  out->keep_alive.push_back(Napi::Persistent(Napi::Value(target)));
  out->refresher = [](AdamWTarget* self, const char* call) {
    read_model_target(ModelWrap::Unwrap(self->keep_alive[0].Value().As<Napi::Object>()), self, call);
  };
  return true;
}

bool resolve_model_engine(const Napi::Object& obj, std::function<model::Engine*()>* engine,
                          std::shared_ptr<std::atomic<bool>>* busy) {
  if (!ModelWrap::constructor || !obj.InstanceOf(ModelWrap::constructor->Value())) return false;
  ModelWrap* w = ModelWrap::Unwrap(obj);
  *engine = [w] { return w->model(); };
  *busy = w->busy();
  return true;
}

void register_model(Napi::Env env, Napi::Object exports) {
  Napi::Function ctor = ModelWrap::define(env);
  ModelWrap::constructor = new Napi::FunctionReference(Napi::Persistent(ctor));
  exports.Set("NativeModel", ctor);
}

}  // namespace napi
}  // namespace rlhf
