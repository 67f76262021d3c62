#include "nccl.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

#include "error.h"
#include "mpi.h"

namespace rlhf {

namespace {

// nccl.h (NCCL 2.x): the ABI pieces used, declared by hand.
constexpr int kUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
struct UniqueId {
  char internal[kUniqueIdBytes];
};
using Comm = void*;                // ncclComm_t: struct ncclComm*
using Result = int;                // ncclResult_t
constexpr Result kSuccess = 0;     // ncclSuccess
constexpr Result kInProgress = 7;  // ncclInProgress (non-blocking communicators only; not used)
constexpr int kFloat32 = 7;        // ncclFloat32 (= ncclFloat)
constexpr int kFloat64 = 8;        // ncclFloat64 (= ncclDouble)
constexpr int kSum = 0;            // ncclSum
constexpr int kMax = 2;            // ncclMax

struct Api {
  void *lib = nullptr, *cudart = nullptr;
  std::string library, error;
  Result (*GetVersion)(int*) = nullptr;
  Result (*GetUniqueId)(UniqueId*) = nullptr;
  Result (*CommInitRank)(Comm*, int, UniqueId, int) = nullptr;
  Result (*AllReduce)(const void*, void*, size_t, int, int, Comm, void*) = nullptr;
  Result (*AllGather)(const void*, void*, size_t, int, Comm, void*) = nullptr;
  Result (*Broadcast)(const void*, void*, size_t, int, int, Comm, void*) = nullptr;
  Result (*CommDestroy)(Comm) = nullptr;
  Result (*CommAbort)(Comm) = nullptr;
  const char* (*GetErrorString)(Result) = nullptr;
  // libcudart (cudaError_t is an int enum, 0 = cudaSuccess)
  int (*StreamSynchronize)(void*) = nullptr;
  int (*Malloc)(void**, size_t) = nullptr;
  int (*Free)(void*) = nullptr;
  const char* (*CudaErrorString)(int) = nullptr;
};

const char* const kSymbols[] = {"ncclGetVersion",  "ncclGetUniqueId", "ncclCommInitRank",
                                "ncclAllReduce",   "ncclAllGather",   "ncclBroadcast",
                                "ncclCommDestroy", "ncclCommAbort",   "ncclGetErrorString"};

template <typename F>
bool bind(void* lib, F& fn, const char* name, std::string& error, const char* what) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn) error = std::string(what) + " has no symbol " + name;
  return fn != nullptr;
}

void* open_first(const std::vector<const char*>& names, std::string* tried) {
  for (const char* name : names) {
    if (!name || !*name) continue;
    *tried += (tried->empty() ? "" : ", ") + std::string(name);
    if (void* h = dlopen(name, RTLD_NOW | RTLD_GLOBAL)) {
      *tried = name;
      return h;
    }
  }
  return nullptr;
}

Api load() {
  Api api;
  std::string tried;
  api.lib = open_first({std::getenv("RLHF_NCCL_LIBRARY"), "libnccl.so.2", "libnccl.so"}, &tried);
  api.library = tried;
  if (!api.lib) {
    api.error = "libnccl not found (tried " + tried +
                "); install NCCL (e.g. Debian/Ubuntu libnccl2 from NVIDIA's repository) or set RLHF_NCCL_LIBRARY";
    return api;
  }
  std::string& e = api.error;
  bool ok = bind(api.lib, api.GetVersion, kSymbols[0], e, "libnccl") &&
            bind(api.lib, api.GetUniqueId, kSymbols[1], e, "libnccl") &&
            bind(api.lib, api.CommInitRank, kSymbols[2], e, "libnccl") &&
            bind(api.lib, api.AllReduce, kSymbols[3], e, "libnccl") &&
            bind(api.lib, api.AllGather, kSymbols[4], e, "libnccl") &&
            bind(api.lib, api.Broadcast, kSymbols[5], e, "libnccl") &&
            bind(api.lib, api.CommDestroy, kSymbols[6], e, "libnccl") &&
            bind(api.lib, api.CommAbort, kSymbols[7], e, "libnccl") &&
            bind(api.lib, api.GetErrorString, kSymbols[8], e, "libnccl");
  std::string cudart_tried;
  if (ok) {
    api.cudart = open_first({"libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so"}, &cudart_tried);
    if (!api.cudart) {
      e = "libcudart not found (tried " + cudart_tried + "); NCCL needs the CUDA runtime";
      ok = false;
    }
  }
  ok = ok && bind(api.cudart, api.StreamSynchronize, "cudaStreamSynchronize", e, "libcudart") &&
       bind(api.cudart, api.Malloc, "cudaMalloc", e, "libcudart") &&
       bind(api.cudart, api.Free, "cudaFree", e, "libcudart") &&
       bind(api.cudart, api.CudaErrorString, "cudaGetErrorString", e, "libcudart");
  if (!ok) {
    if (api.cudart) dlclose(api.cudart);
    dlclose(api.lib);
    api.lib = api.cudart = nullptr;
  }
  return api;
}

Api& api() {
  static Api instance = load();
  return instance;
}

void check(Result rc, const char* call) {
  if (rc == kSuccess) return;
  RLHF_FAIL(ErrorCode::Internal, "NCCL: ", call, " failed: ", api().GetErrorString(rc), " (", rc, ")");
}

void check_cuda(int rc, const char* call) {
  if (rc == 0) return;
  RLHF_FAIL(ErrorCode::Internal, "CUDA: ", call, " failed: ", api().CudaErrorString(rc), " (", rc, ")");
}

}  // namespace

NcclInfo nccl_info() {
  const Api& a = api();
  NcclInfo info;
  info.loadable = a.lib != nullptr;
  info.library = a.library;
  info.error = a.error;
  if (a.lib) a.GetVersion(&info.version);
  return info;
}

NcclAbi nccl_abi() {
  NcclAbi abi{kUniqueIdBytes, kSuccess, kInProgress, kFloat32, kFloat64, kSum, kMax, {}};
  for (const char* s : kSymbols) abi.symbols.push_back(s);
  static_assert(sizeof(UniqueId) == kUniqueIdBytes, "ncclUniqueId is 128 bytes");
  return abi;
}

NcclGroup::NcclGroup(MpiGroup& bootstrap, void* stream) : bootstrap_(&bootstrap), stream_(stream) {
  Api& a = api();
  RLHF_CHECK(a.lib != nullptr, ErrorCode::Unsupported, "NCCL is not available: ", a.error);
  size_ = bootstrap.size(), rank_ = bootstrap.rank();
  UniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (rank_ == 0) check(a.GetUniqueId(&id), "ncclGetUniqueId");
  bootstrap.broadcast_bytes(&id, sizeof(id), 0);
  check(a.CommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
  check_cuda(a.Malloc(reinterpret_cast<void**>(&scratch_), sizeof(float)), "cudaMalloc");
}

NcclGroup::~NcclGroup() {
  if (scratch_) api().Free(scratch_);
  if (comm_) api().CommDestroy(comm_);
}

void NcclGroup::sync(const char* after) { check_cuda(api().StreamSynchronize(stream_), after); }

void NcclGroup::all_reduce_sum(float* x, int64_t n) {
  check(api().AllReduce(x, x, size_t(n), kFloat32, kSum, comm_, stream_), "ncclAllReduce");
  sync("cudaStreamSynchronize after ncclAllReduce");
}

void NcclGroup::all_reduce_max(float* x, int64_t n) {
  check(api().AllReduce(x, x, size_t(n), kFloat32, kMax, comm_, stream_), "ncclAllReduce");
  sync("cudaStreamSynchronize after ncclAllReduce");
}

void NcclGroup::all_gather(const float* send, int64_t n, float* recv) {
  check(api().AllGather(send, recv, size_t(n), kFloat32, comm_, stream_), "ncclAllGather");
  sync("cudaStreamSynchronize after ncclAllGather");
}

void NcclGroup::broadcast(float* x, int64_t n, int root) {
  RLHF_CHECK(root >= 0 && root < size_, ErrorCode::OutOfRange, "NCCL broadcast: root must be in [0, ", size_, "), got ",
             root);
  check(api().Broadcast(x, x, size_t(n), kFloat32, root, comm_, stream_), "ncclBroadcast");
  sync("cudaStreamSynchronize after ncclBroadcast");
}

void NcclGroup::barrier() { all_reduce_sum(scratch_, 1); }

void NcclGroup::abort() {
  if (comm_) api().CommAbort(comm_);
  comm_ = nullptr;
  bootstrap_->abort();
}

}  // namespace rlhf
