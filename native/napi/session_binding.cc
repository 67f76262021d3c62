// NativeGenerationSession: model/session.h behind an ObjectWrap.
//
//   new NativeGenerationSession(model, {blockSize, numBlocks, windowBlocks?, tokenBudget, maxRunning, prefixCache?,
//                                       adapters?, kvBf16?})
//   addRequest(prompt: Int32Array, {maxNewTokens, stopTokens?, temperature?, topK?, topP?, seed?, stream?}) -> id
//   step() -> Promise<{decodeRows, prefillTokens, admitted, finished}>
//   collect() -> [{id, tokens: Int32Array, logprobs: Float32Array, stopped, cancelled}]
//   progress() -> [{id, tokens, logprobs}]: the tokens running requests generated since the last call
//   cancel(id) -> boolean;  idle: boolean;  dispose()
//   stats: {...SessionStats in camelCase, groups: [...KvGroupStats in camelCase]}
// The session references the model's JS object and shares its busy flag: no other model call runs
// during a step, and every call refuses with ERR_RLHF_DISPOSED once the model was disposed.
#include <napi.h>

#include <cstring>
#include <memory>

#include "../model/session.h"
#include "../model/transformer.h"
#include "args.h"
#include "async_job.h"
#include "bindings.h"
#include "js_errors.h"

namespace rlhf {
namespace napi {

namespace {

class SessionWrap : public Napi::ObjectWrap<SessionWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(
        env, "NativeGenerationSession",
        {InstanceMethod("addRequest", &SessionWrap::add_request), InstanceMethod("step", &SessionWrap::step),
         InstanceMethod("collect", &SessionWrap::collect), InstanceMethod("progress", &SessionWrap::progress),
         InstanceMethod("cancel", &SessionWrap::cancel), InstanceMethod("dispose", &SessionWrap::dispose),
         InstanceAccessor("idle", &SessionWrap::idle, nullptr),
         InstanceAccessor("stats", &SessionWrap::stats, nullptr)});
  }

  explicit SessionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SessionWrap>(info) {
    Napi::Env env = info.Env();
    const char* fn = "GenerationSession";
    if (info.Length() < 1 || !info[0].IsObject() || !resolve_model_engine(info[0].As<Napi::Object>(), &engine_, &busy_))
      throw_expected_type(env, "GenerationSession: model", "a NativeModel",
                          info.Length() > 0 ? info[0] : env.Undefined());
    model_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
    Napi::Object o = arg_object(info, 1, "GenerationSession: options");
    model::SessionOptions opt;
    opt.block_size = get_int_or(o, fn, "blockSize", 1, 1 << 16, 16);
    opt.num_blocks = get_int(o, fn, "numBlocks", 1, (int64_t(1) << 31) - 1);
    opt.window_blocks = get_int_or(o, fn, "windowBlocks", 1, (int64_t(1) << 31) - 1, 0);
    opt.token_budget = get_int_or(o, fn, "tokenBudget", 1, int64_t(1) << 24, 512);
    opt.max_running = get_int_or(o, fn, "maxRunning", 1, int64_t(1) << 24, 256);
    opt.prefix_cache = get_bool_or(o, fn, "prefixCache", true);
    opt.adapters = get_bool_or(o, fn, "adapters", true);
    opt.kv_bf16 = get_bool_or(o, fn, "kvBf16", false);
    try {
      model::Transformer* t = transformer("constructor");
      owner_ = t;
      session_ = std::make_unique<model::GenerationSession>(*t, opt);
    } catch (const Napi::Error&) {
      throw;
    } catch (const Error& e) {
      throw make_js_error(env, e.code(), e.what());
    } catch (const std::bad_alloc&) {
      throw make_js_error(env, ErrorCode::OutOfMemory, "GenerationSession: out of memory allocating the KV pool");
    }
  }

 private:
  model::Transformer* transformer(const char* call) {
    model::Engine* e = engine_();
    if (!e)
      throw make_js_error(Env(), ErrorCode::Disposed,
                          std::string("GenerationSession.") + call + ": the model was disposed");
    auto* t = dynamic_cast<model::Transformer*>(e);
    if (!t)
      throw make_js_error(Env(), ErrorCode::Unsupported,
                          "GenerationSession: a tensor-parallel model (use Model.generate)");
    return t;
  }

  model::GenerationSession* usable(const char* call) {
    if (!session_)
      throw make_js_error(Env(), ErrorCode::Disposed,
                          std::string("GenerationSession.") + call + ": the session was disposed");
    if (transformer(call) != owner_)
      throw make_js_error(Env(), ErrorCode::Disposed,
                          std::string("GenerationSession.") + call + ": the model was disposed");
    AsyncJob::check_not_busy(Env(), busy_, "the model", (std::string("GenerationSession.") + call + "()").c_str());
    return session_.get();
  }

  Napi::Value add_request(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      model::GenerationSession* s = usable("addRequest");
      const char* fn = "GenerationSession.addRequest";
      model::SessionRequest r;
      auto p =
          as_i32(info.Env(), info.Length() > 0 ? info[0] : info.Env().Undefined(), std::string(fn) + ": prompt", 0);
      r.prompt.assign(p.Data(), p.Data() + p.ElementLength());
      Napi::Object o = arg_object(info, 1, "GenerationSession.addRequest: options");
      r.max_new_tokens = get_int(o, fn, "maxNewTokens", 1, int64_t(1) << 24);
      r.sampling.temperature = static_cast<float>(get_number_or(o, fn, "temperature", 1.0));
      r.sampling.top_k = get_int_or(o, fn, "topK", 0, int64_t(1) << 31, 0);
      r.sampling.top_p = static_cast<float>(get_number_or(o, fn, "topP", 1.0));
      r.seed = static_cast<uint64_t>(get_int_or(o, fn, "seed", 0, int64_t(1) << 53, 0));
      r.stream = static_cast<uint64_t>(get_int_or(o, fn, "stream", 0, int64_t(1) << 53, 0));
      Napi::Value st = o.Get("stopTokens");
      if (!st.IsUndefined()) {
        auto a = as_i32(info.Env(), st, std::string(fn) + ": options.stopTokens", 0);
        r.stop_tokens.assign(a.Data(), a.Data() + a.ElementLength());
      }
      return Napi::Number::New(info.Env(), static_cast<double>(s->add_request(std::move(r))));
    });
  }

  Napi::Value step(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      model::GenerationSession* s = usable("step");
      auto rep = std::make_shared<model::StepReport>();
      return AsyncJob::queue(
          info.Env(), "rlhf.generationSession.step", [=] { *rep = s->step(); },
          [=](Napi::Env env) -> Napi::Value {
            Napi::Object r = Napi::Object::New(env);
            r.Set("decodeRows", static_cast<double>(rep->decode_rows));
            r.Set("prefillTokens", static_cast<double>(rep->prefill_tokens));
            r.Set("admitted", static_cast<double>(rep->admitted));
            r.Set("finished", static_cast<double>(rep->finished));
            return r;
          },
          {Value(), model_ref_.Value()}, busy_);
    });
  }

  static Napi::Array outputs(Napi::Env env, const std::vector<model::SessionOutput>& v, bool ended) {
    Napi::Array out = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      Napi::Object r = Napi::Object::New(env);
      r.Set("id", static_cast<double>(v[i].id));
      auto t = Napi::Int32Array::New(env, v[i].tokens.size());
      std::memcpy(t.Data(), v[i].tokens.data(), v[i].tokens.size() * sizeof(int32_t));
      auto l = Napi::Float32Array::New(env, v[i].logprobs.size());
      std::memcpy(l.Data(), v[i].logprobs.data(), v[i].logprobs.size() * sizeof(float));
      r.Set("tokens", t);
      r.Set("logprobs", l);
      if (ended) {
        r.Set("stopped", v[i].stopped);
        r.Set("cancelled", v[i].cancelled);
      }
      out.Set(static_cast<uint32_t>(i), r);
    }
    return out;
  }

  Napi::Value collect(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value { return outputs(info.Env(), usable("collect")->collect(), true); });
  }

  Napi::Value progress(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value { return outputs(info.Env(), usable("progress")->progress(), false); });
  }

  Napi::Value cancel(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      model::GenerationSession* s = usable("cancel");
      Napi::Value v = info.Length() > 0 ? info[0] : info.Env().Undefined();
      const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 0 && d <= 9007199254740992.0 && d == static_cast<double>(static_cast<int64_t>(d))))
        throw_expected_range(info.Env(), "GenerationSession.cancel: id", "an integer in [0, 2^53]", v);
      return Napi::Boolean::New(info.Env(), s->cancel(static_cast<int64_t>(d)));
    });
  }

  Napi::Value idle(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), usable("idle")->idle()); });
  }

  Napi::Value stats(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      const model::SessionStats st = usable("stats")->stats();
      Napi::Object r = Napi::Object::New(info.Env());
      r.Set("blockSize", static_cast<double>(st.block_size));
      r.Set("blocksTotal", static_cast<double>(st.blocks_total));
      r.Set("blocksInUse", static_cast<double>(st.blocks_in_use));
      r.Set("blocksCached", static_cast<double>(st.blocks_cached));
      r.Set("peakBlocksInUse", static_cast<double>(st.peak_blocks_in_use));
      r.Set("blockBytes", static_cast<double>(st.block_bytes));
      r.Set("peakKvBytes", static_cast<double>(st.peak_kv_bytes));
      r.Set("kvBytesInUse", static_cast<double>(st.kv_bytes_in_use));
      r.Set("poolBytes", static_cast<double>(st.pool_bytes));
      r.Set("windowReleased", static_cast<double>(st.window_released));
      r.Set("waiting", static_cast<double>(st.waiting));
      r.Set("running", static_cast<double>(st.running));
      r.Set("unread", static_cast<double>(st.unread));
      r.Set("steps", static_cast<double>(st.steps));
      r.Set("prefillTokens", static_cast<double>(st.prefill_tokens));
      r.Set("sharedTokens", static_cast<double>(st.shared_tokens));
      r.Set("decodeTokens", static_cast<double>(st.decode_tokens));
      Napi::Array groups = Napi::Array::New(info.Env(), st.groups.size());
      for (size_t i = 0; i < st.groups.size(); ++i) {
        const model::KvGroupStats& g = st.groups[i];
        Napi::Object o = Napi::Object::New(info.Env());
        o.Set("window", static_cast<double>(g.window));
        o.Set("layers", static_cast<double>(g.layers));
        o.Set("blocksTotal", static_cast<double>(g.blocks_total));
        o.Set("blocksInUse", static_cast<double>(g.blocks_in_use));
        o.Set("blocksCached", static_cast<double>(g.blocks_cached));
        o.Set("peakBlocksInUse", static_cast<double>(g.peak_blocks_in_use));
        o.Set("blockBytes", static_cast<double>(g.block_bytes));
        o.Set("poolBytes", static_cast<double>(g.pool_bytes));
        o.Set("windowReleased", static_cast<double>(g.window_released));
        groups.Set(static_cast<uint32_t>(i), o);
      }
      r.Set("groups", groups);
      return r;
    });
  }

  Napi::Value dispose(const Napi::CallbackInfo& info) {
    return guard(info, [&]() -> Napi::Value {
      if (session_) AsyncJob::check_not_busy(info.Env(), busy_, "the model", "GenerationSession.dispose()");
      session_.reset();
      return info.Env().Undefined();
    });
  }

  std::function<model::Engine*()> engine_;
  std::shared_ptr<std::atomic<bool>> busy_;
  Napi::ObjectReference model_ref_;
  model::Transformer* owner_ = nullptr;
  std::unique_ptr<model::GenerationSession> session_;
};

}  // namespace

void register_generation_session(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeGenerationSession", SessionWrap::define(env));
}

}  // namespace napi
}  // namespace rlhf
