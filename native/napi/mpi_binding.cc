// The process group over Open MPI (core/mpi.h), for data parallelism across processes:
//   mpiInfo() -> {loadable, launched, library, error}        never initialises MPI
//   mpiInit(tensorParallel?) -> {rank, size, worldRank, worldSize, tensorParallelRank, tensorParallelSize}
//                                                           initialises MPI once (throws when absent);
//                                                           tensorParallel K > 1: splits the job into
//                                                           TP groups of K and DP groups (MpiGroup::set_layout);
//                                                           rank/size are the data-parallel group's
//   mpiAllReduce(x: Float32Array | Float64Array, op: 'sum' | 'max', comm?)   in place, synchronous
//   mpiAllGather(x: Float32Array, comm?) -> Float32Array (size · x.length, rank order)
//   mpiBroadcast(x: Float32Array | Float64Array | Uint8Array, root, comm?)   in place, synchronous
//   mpiBarrier(comm?), mpiAbort()
//     comm: 'data' (default: the data-parallel group), 'tensor' (this rank's tensor-parallel group)
//     or 'world' (every rank of the job); root is a rank of that group
//   mpiAllReduceGradients(target, bucketBytes) -> Promise   grads (of a model or {params, grads}) ←
//                                                       Σ_ranks grads, on a worker thread; bucketBytes > 0:
//                                                       in buckets of that size, last first (0: one call)
//   mpiBroadcastParameters(target, root) -> Promise     params ← params of rank `root`
//   mpiAllGatherParameters(target, offsets) -> Promise  params[offsets[r], offsets[r+1]) ← rank r's
//                                                       (ZeRO-1: each rank updated its range)
//   ncclInfo() -> {loadable, library, error, version}  never creates a communicator
//   ncclAbi() -> {uniqueIdBytes, success, inProgress, float32, float64, sum, max, symbols}  what core/nccl.cc declares
// The small synchronous calls are for scalars and short vectors (loss sums, token counts, rewards);
// anything parameter-sized goes through the Promise-returning calls. Every collective here runs over
// the data-parallel group (the world unless mpiInit split it) unless given another comm; mpiAbort
// ends the whole job.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/mpi.h"
#include "../core/nccl.h"
#include "adamw_target.h"
#include "args.h"
#include "async_job.h"
#include "bindings.h"
#include "js_errors.h"

namespace rlhf {
namespace napi {

namespace {

MpiGroup& group() { return MpiGroup::data_parallel(); }

// The group named by argument i: 'data' (default when absent or undefined), 'tensor' or 'world'.
MpiGroup& comm_arg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  if (info.Length() <= i || info[i].IsUndefined()) return group();
  const std::string c = info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "";
  if (c == "data") return group();
  if (c == "tensor") return MpiGroup::tensor_parallel();
  if (c == "world") return MpiGroup::world();
  throw_expected_range(info.Env(), std::string(fn) + ": comm", "'data', 'tensor' or 'world'", info[i]);
}

Napi::Value mpi_info_js(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    MpiInfo m = mpi_info();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("loadable", m.loadable);
    o.Set("launched", m.launched);
    o.Set("library", m.library);
    o.Set("error", m.error);
    return o;
  });
}

Napi::Value mpi_init(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    MpiGroup& w = MpiGroup::world();
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      if (!info[0].IsNumber() || info[0].As<Napi::Number>().DoubleValue() < 1 ||
          std::floor(info[0].As<Napi::Number>().DoubleValue()) != info[0].As<Napi::Number>().DoubleValue())
        throw_expected_range(info.Env(), "mpiInit: tensorParallel", "an integer >= 1", info[0]);
      const int k = info[0].As<Napi::Number>().Int32Value();
      if (k > 1 || MpiGroup::layout_tensor_parallel() != 0) MpiGroup::set_layout(k);
    }
    MpiGroup &g = group(), &tp = MpiGroup::tensor_parallel();
    const bool split = MpiGroup::layout_tensor_parallel() != 0;
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("rank", g.rank());
    o.Set("size", g.size());
    o.Set("worldRank", w.rank());
    o.Set("worldSize", w.size());
    o.Set("tensorParallelRank", split ? tp.rank() : 0);
    o.Set("tensorParallelSize", split ? tp.size() : 1);
    return o;
  });
}

Napi::TypedArray typed_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsTypedArray())
    throw_expected_type(info.Env(), what, "a typed array", info.Length() > i ? info[i] : info.Env().Undefined());
  return info[i].As<Napi::TypedArray>();
}

Napi::Value mpi_all_reduce(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::TypedArray x = typed_arg(info, 0, "mpiAllReduce: x");
    std::string op = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "sum";
    if (op != "sum" && op != "max") throw_expected_range(info.Env(), "mpiAllReduce: op", "'sum' or 'max'", info[1]);
    MpiGroup& g = comm_arg(info, 2, "mpiAllReduce");
    if (x.TypedArrayType() == napi_float32_array) {
      float* p = x.As<Napi::Float32Array>().Data();
      op == "sum" ? g.all_reduce_sum(p, x.ElementLength()) : g.all_reduce_max(p, x.ElementLength());
    } else if (x.TypedArrayType() == napi_float64_array && op == "sum") {
      g.all_reduce_sum_f64(x.As<Napi::Float64Array>().Data(), x.ElementLength());
    } else {
      throw_expected_type(info.Env(), "mpiAllReduce: x", "a Float32Array (sum, max) or a Float64Array (sum)", x);
    }
    return x;
  });
}

Napi::Value mpi_all_gather(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::TypedArray x = typed_arg(info, 0, "mpiAllGather: x");
    if (x.TypedArrayType() != napi_float32_array)
      throw_expected_type(info.Env(), "mpiAllGather: x", "a Float32Array", x);
    MpiGroup& g = comm_arg(info, 1, "mpiAllGather");
    const size_t n = x.ElementLength();
    Napi::Float32Array out = Napi::Float32Array::New(info.Env(), n * size_t(g.size()));
    g.all_gather(x.As<Napi::Float32Array>().Data(), int64_t(n), out.Data());
    return out;
  });
}

int root_arg(const Napi::CallbackInfo& info, size_t i, const char* fn, MpiGroup& g = group()) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw_expected_type(info.Env(), std::string(fn) + ": root", "a number",
                        info.Length() > i ? info[i] : info.Env().Undefined());
  double r = info[i].As<Napi::Number>().DoubleValue();
  if (!(r >= 0 && r < g.size() && std::floor(r) == r))
    throw_expected_range(info.Env(), std::string(fn) + ": root", "an integer in [0, " + std::to_string(g.size()) + ")",
                         info[i]);
  return int(r);
}

Napi::Value mpi_broadcast(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::TypedArray x = typed_arg(info, 0, "mpiBroadcast: x");
    MpiGroup& g = comm_arg(info, 2, "mpiBroadcast");
    int root = root_arg(info, 1, "mpiBroadcast", g);
    // any typed array: its bytes
    uint8_t* data = static_cast<uint8_t*>(x.ArrayBuffer().Data()) + x.ByteOffset();
    g.broadcast_bytes(data, int64_t(x.ByteLength()), root);
    return x;
  });
}

Napi::Value mpi_barrier(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    comm_arg(info, 0, "mpiBarrier").barrier();
    return info.Env().Undefined();
  });
}

Napi::Value mpi_abort(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    group().abort();
    return info.Env().Undefined();
  });
}

Napi::Value mpi_all_reduce_gradients(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object target_js = arg_object(info, 0, "mpiAllReduceGradients: target");
    double bucket_bytes = 0;
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsNumber() || !(info[1].As<Napi::Number>().DoubleValue() >= 0))
        throw_expected_range(info.Env(), "mpiAllReduceGradients: bucketBytes", "a number >= 0", info[1]);
      bucket_bytes = info[1].As<Napi::Number>().DoubleValue();
    }
    const int64_t bucket_floats = bucket_bytes > 0 ? std::max<int64_t>(1, int64_t(bucket_bytes / sizeof(float))) : 0;
    AdamWTarget t = resolve_adamw_target(target_js);
    AsyncJob::check_not_busy(info.Env(), t.busy, "the model", "mpiAllReduceGradients()");
    t.refresh("mpiAllReduceGradients()");
    float* g = const_cast<float*>(t.grads);
    const int64_t n = t.size;
    MpiGroup* comm = &group();
    auto pinned = t.pinned;  // Float32Array targets: their memory stays valid until the job ends
    return AsyncJob::queue(
        info.Env(), "rlhf.mpi.allReduceGradients",
        [=] {
          (void)pinned;
          if (bucket_floats > 0)
            comm->all_reduce_sum_bucketed(g, n, bucket_floats);
          else
            comm->all_reduce_sum(g, n);
        },
        nullptr, {target_js}, t.busy);
  });
}

Napi::Value mpi_broadcast_parameters(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object target_js = arg_object(info, 0, "mpiBroadcastParameters: target");
    int root = root_arg(info, 1, "mpiBroadcastParameters");
    AdamWTarget t = resolve_adamw_target(target_js);
    AsyncJob::check_not_busy(info.Env(), t.busy, "the model", "mpiBroadcastParameters()");
    t.refresh("mpiBroadcastParameters()");
    float* p = t.params;
    const int64_t n = t.size;
    MpiGroup* comm = &group();
    auto pinned = t.pinned;
    return AsyncJob::queue(
        info.Env(), "rlhf.mpi.broadcastParameters",
        [=] {
          (void)pinned;
          comm->broadcast(p, n, root);
        },
        nullptr, {target_js}, t.busy);
  });
}

Napi::Value mpi_all_gather_parameters(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object target_js = arg_object(info, 0, "mpiAllGatherParameters: target");
    if (info.Length() < 2 || !info[1].IsArray())
      throw_expected_type(info.Env(), "mpiAllGatherParameters: offsets", "an array",
                          info.Length() > 1 ? info[1] : info.Env().Undefined());
    Napi::Array arr = info[1].As<Napi::Array>();
    std::vector<int64_t> offsets(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); ++i) offsets[i] = int64_t(arr.Get(i).As<Napi::Number>().DoubleValue());
    AdamWTarget t = resolve_adamw_target(target_js);
    AsyncJob::check_not_busy(info.Env(), t.busy, "the model", "mpiAllGatherParameters()");
    t.refresh("mpiAllGatherParameters()");
    if (offsets.empty() || offsets.back() != t.size)
      throw_expected_range(info.Env(), "mpiAllGatherParameters: offsets",
                           "an array ending at the parameter count " + std::to_string(t.size), info[1]);
    float* p = t.params;
    MpiGroup* comm = &group();
    auto pinned = t.pinned;
    return AsyncJob::queue(
        info.Env(), "rlhf.mpi.allGatherParameters",
        [=] {
          (void)pinned;
          comm->all_gather_ranges(p, offsets);
        },
        nullptr, {target_js}, t.busy);
  });
}

Napi::Value nccl_info_js(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    NcclInfo n = nccl_info();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("loadable", n.loadable);
    o.Set("library", n.library);
    o.Set("error", n.error);
    o.Set("version", n.version);
    return o;
  });
}

Napi::Value nccl_abi_js(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    NcclAbi a = nccl_abi();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("uniqueIdBytes", a.unique_id_bytes);
    o.Set("success", a.success);
    o.Set("inProgress", a.in_progress);
    o.Set("float32", a.float32);
    o.Set("float64", a.float64);
    o.Set("sum", a.sum);
    o.Set("max", a.max);
    Napi::Array symbols = Napi::Array::New(info.Env(), a.symbols.size());
    for (size_t i = 0; i < a.symbols.size(); ++i) symbols.Set(uint32_t(i), a.symbols[i]);
    o.Set("symbols", symbols);
    return o;
  });
}

}  // namespace

void register_mpi(Napi::Env env, Napi::Object exports) {
  exports.Set("mpiInfo", Napi::Function::New(env, mpi_info_js, "mpiInfo"));
  exports.Set("ncclInfo", Napi::Function::New(env, nccl_info_js, "ncclInfo"));
  exports.Set("ncclAbi", Napi::Function::New(env, nccl_abi_js, "ncclAbi"));
  exports.Set("mpiInit", Napi::Function::New(env, mpi_init, "mpiInit"));
  exports.Set("mpiAllReduce", Napi::Function::New(env, mpi_all_reduce, "mpiAllReduce"));
  exports.Set("mpiAllGather", Napi::Function::New(env, mpi_all_gather, "mpiAllGather"));
  exports.Set("mpiBroadcast", Napi::Function::New(env, mpi_broadcast, "mpiBroadcast"));
  exports.Set("mpiBarrier", Napi::Function::New(env, mpi_barrier, "mpiBarrier"));
  exports.Set("mpiAbort", Napi::Function::New(env, mpi_abort, "mpiAbort"));
  exports.Set("mpiAllReduceGradients", Napi::Function::New(env, mpi_all_reduce_gradients, "mpiAllReduceGradients"));
  exports.Set("mpiAllGatherParameters", Napi::Function::New(env, mpi_all_gather_parameters, "mpiAllGatherParameters"));
  exports.Set("mpiBroadcastParameters", Napi::Function::New(env, mpi_broadcast_parameters, "mpiBroadcastParameters"));
}

}  // namespace napi
}  // namespace rlhf
