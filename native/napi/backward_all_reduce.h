// The data-parallel gradient all-reduce overlapped with a model's backward (NativeModel.backward
// with allReduceBucketBytes; model_binding.cc). Runs on the job's worker thread, never on the JS
// thread; throws rlhf::Error (the binding turns it into a JS error).
#pragma once
#include <cstdint>

#include "../model/transformer.h"

namespace rlhf {
namespace napi {

// m->backward(in) while a second thread all-reduces the gradients over the MPI data-parallel group
// in buckets of bucket_floats, the last first, each once backward has made it final (the model's
// gradient-ready hook): the buckets and calls of MpiGroup::all_reduce_sum_bucketed after backward,
// so the same bits. A failure other than a bad input (found alike on every rank) ends the job, as
// the other ranks may wait in a bucket.
struct OverlapReport {
  int ready_points = 0;   // times backward reported newly final gradients (heads, each layer, the end)
  int early_buckets = 0;  // buckets whose all-reduce began before backward's last report
};
OverlapReport backward_all_reduce(model::Engine* m, const model::BackwardInput& in, int64_t bucket_floats);

}  // namespace napi
}  // namespace rlhf
