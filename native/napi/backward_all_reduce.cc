// The overlapped gradient all-reduce: see backward_all_reduce.h.
#include "backward_all_reduce.h"

#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>

#include "../core/error.h"
#include "../core/mpi.h"

namespace rlhf {
namespace napi {

OverlapReport backward_all_reduce(model::Engine* m, const model::BackwardInput& in, int64_t bucket_floats) {
  OverlapReport report;
  const model::OptimizerView o = m->optimizer_view();
  float* g = o.grads;
  const int64_t n = o.size;
  std::mutex mu;
  std::condition_variable cv;
  int64_t ready = n;
  bool ended = false;  // backward returned or threw
  RLHF_CHECK(m->set_gradient_ready_hook([&](int64_t from) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ready = from;
      ++report.ready_points;
    }
    cv.notify_one();
  }),
             ErrorCode::Unsupported,
             "backward with a gradient all-reduce: only a whole model on the CPU without LoRA (not split over ranks)");
  std::exception_ptr comm_error;
  std::thread comm([&] {
    try {
      MpiGroup::data_parallel().all_reduce_sum_bucketed(g, n, bucket_floats, [&](int64_t begin) {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return ready <= begin || ended; });
        RLHF_CHECK(ready <= begin, ErrorCode::InvalidState, "backward ended before its gradients were final");
        if (ready > 0) ++report.early_buckets;
      });
    } catch (...) {
      comm_error = std::current_exception();
    }
  });
  auto finish = [&] {
    {
      std::lock_guard<std::mutex> lock(mu);
      ended = true;
    }
    cv.notify_one();
    comm.join();
    m->set_gradient_ready_hook(nullptr);
  };
  try {
    m->backward(in);
  } catch (const Error& e) {
    finish();
    const ErrorCode c = e.code();
    if (c == ErrorCode::InvalidArgument || c == ErrorCode::OutOfRange || c == ErrorCode::InvalidState ||
        c == ErrorCode::Unsupported)
      throw;
    std::fprintf(stderr, "backward with a gradient all-reduce failed: %s; aborting the job\n", e.what());
    MpiGroup::world().abort();
    throw;
  }
  finish();
  if (comm_error) std::rethrow_exception(comm_error);
  return report;
}

}  // namespace napi
}  // namespace rlhf
