#include "async_job.h"

#include "js_errors.h"
#include "pin.h"

namespace rlhf {
namespace napi {

namespace {
std::atomic<int> g_in_flight{0};
}

AsyncJob::AsyncJob(Napi::Env env, const char* name, Work execute, Resolve resolve,
                   std::shared_ptr<std::atomic<bool>> busy)
    : Napi::AsyncWorker(env, name),
      deferred_(Napi::Promise::Deferred::New(env)),
      execute_(std::move(execute)),
      resolve_(std::move(resolve)),
      busy_(std::move(busy)) {
  ++g_in_flight;
}

AsyncJob::~AsyncJob() {
  if (busy_) busy_->store(false);
  --g_in_flight;
}

int AsyncJob::in_flight() { return g_in_flight.load(); }

Napi::Promise AsyncJob::queue(Napi::Env env, const char* name, Work execute, Resolve resolve,
                              const std::vector<Napi::Value>& keep_alive, std::shared_ptr<std::atomic<bool>> busy) {
  if (busy) busy->store(true);
  auto* job = new AsyncJob(env, name, std::move(execute), std::move(resolve), std::move(busy));
  for (const auto& v : keep_alive) {
    job->keep_alive_.push_back(Napi::Persistent(v));
    if (auto pin = pin_memory(v)) job->pinned_.push_back(std::move(pin));
  }
  Napi::Promise promise = job->deferred_.Promise();
  job->Queue();  // the worker deletes itself after OnOK/OnError
  return promise;
}

void AsyncJob::check_not_busy(Napi::Env env, const std::shared_ptr<std::atomic<bool>>& busy, const char* object,
                              const char* call) {
  if (busy && busy->load())
    throw make_js_error(env, ErrorCode::Busy,
                        std::string(object) + " is busy with another call; await it before calling " + call);
}

void AsyncJob::Execute() {
  try {
    execute_();
  } catch (const Error& e) {
    error_code_ = e.code();
    SetError(e.what());
  } catch (const std::bad_alloc&) {
    error_code_ = ErrorCode::OutOfMemory;
    SetError("out of memory");
  } catch (const std::exception& e) {
    error_code_ = ErrorCode::Internal;
    SetError(e.what());
  } catch (...) {
    error_code_ = ErrorCode::Internal;
    SetError("unknown native exception");
  }
}

void AsyncJob::OnOK() {
  Napi::Env env = Env();
  if (busy_) busy_->store(false);  // the resolved continuation may start the next call at once
  try {
    deferred_.Resolve(resolve_ ? resolve_(env) : env.Undefined());
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (const Error& e) {
    deferred_.Reject(make_js_error(env, e.code(), e.what()).Value());
  } catch (const std::exception& e) {
    deferred_.Reject(make_js_error(env, ErrorCode::Internal, e.what()).Value());
  }
}

void AsyncJob::OnError(const Napi::Error& e) {
  if (busy_) busy_->store(false);
  deferred_.Reject(make_js_error(Env(), error_code_, e.Message()).Value());
}

}  // namespace napi
}  // namespace rlhf
