// One long native call = one AsyncJob: a Promise-returning AsyncWorker.
//
//   return AsyncJob::queue(env, "gemm", [=] { /* no Napi:: here */ }, [=](Napi::Env e) { return ...; },
//                          {a, b, c} /* JS values kept alive until the job ends */, busy_flag);
//
// `execute` runs on a libuv worker thread and must not touch any JS value: copy what it needs into
// the lambda on the main thread. The memory of every typed array in `keep_alive` is pinned
// (pin.h) until the job ends, so raw pointers into it stay valid even if JS transfers the buffer. Errors thrown there
// (rlhf::Error, std::exception, anything) reject the promise with a coded JS error. `busy`, when given, is set for the
// job's lifetime; a caller that finds it set gets ERR_RLHF_BUSY instead of racing (check_not_busy).
#pragma once
#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../core/error.h"

namespace rlhf {
namespace napi {

class AsyncJob : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Resolve = std::function<Napi::Value(Napi::Env)>;

  static Napi::Promise queue(Napi::Env env, const char* name, Work execute, Resolve resolve,
                             const std::vector<Napi::Value>& keep_alive,
                             std::shared_ptr<std::atomic<bool>> busy = nullptr);

  // Throws ERR_RLHF_BUSY naming the object and the call when `busy` is set.
  static void check_not_busy(Napi::Env env, const std::shared_ptr<std::atomic<bool>>& busy, const char* object,
                             const char* call);

  // Jobs currently queued or running, across the process (setThreads refuses while > 0).
  static int in_flight();

 protected:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  AsyncJob(Napi::Env env, const char* name, Work execute, Resolve resolve, std::shared_ptr<std::atomic<bool>> busy);
  ~AsyncJob() override;

  Napi::Promise::Deferred deferred_;
  Work execute_;
  Resolve resolve_;
  std::vector<Napi::Reference<Napi::Value>> keep_alive_;
  std::vector<std::shared_ptr<void>> pinned_;  // typed-array memory, released with the job
  std::shared_ptr<std::atomic<bool>> busy_;
  ErrorCode error_code_ = ErrorCode::Internal;
};

}  // namespace napi
}  // namespace rlhf
