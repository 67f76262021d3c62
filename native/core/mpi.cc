#include "mpi.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>

#include "error.h"

namespace rlhf {

namespace {

// Open MPI's handle types are pointers to opaque objects; these stand in for them.
using Comm = void*;
using Datatype = void*;
using Op = void*;
void* const kInPlace = reinterpret_cast<void*>(1);  // MPI_IN_PLACE in Open MPI
constexpr int kThreadSerialized = 2;                // MPI_THREAD_SERIALIZED in Open MPI
constexpr int kSuccess = 0;

struct Api {
  void* lib = nullptr;
  std::string library, error;
  int (*Initialized)(int*) = nullptr;
  int (*Finalized)(int*) = nullptr;
  int (*Init_thread)(int*, char***, int, int*) = nullptr;
  int (*Finalize)() = nullptr;
  int (*Comm_rank)(Comm, int*) = nullptr;
  int (*Comm_size)(Comm, int*) = nullptr;
  int (*Allreduce)(const void*, void*, int, Datatype, Op, Comm) = nullptr;
  int (*Allgather)(const void*, int, Datatype, void*, int, Datatype, Comm) = nullptr;
  int (*Allgatherv)(const void*, int, Datatype, void*, const int*, const int*, Datatype, Comm) = nullptr;
  int (*Bcast)(void*, int, Datatype, int, Comm) = nullptr;
  int (*Barrier)(Comm) = nullptr;
  int (*Abort)(Comm, int) = nullptr;
  int (*Comm_split)(Comm, int, int, Comm*) = nullptr;
  Comm world = nullptr;
  Datatype f32 = nullptr, f64 = nullptr, byte = nullptr;
  Op sum = nullptr, max = nullptr;
};

template <typename F>
bool bind(Api& api, F& fn, const char* name) {
  fn = reinterpret_cast<F>(dlsym(api.lib, name));
  if (!fn) api.error = std::string("libmpi has no symbol ") + name + " (only Open MPI's ABI is supported)";
  return fn != nullptr;
}

bool object(Api& api, void*& out, const char* name) {
  out = dlsym(api.lib, name);
  if (!out) api.error = std::string("libmpi has no object ") + name + " (only Open MPI's ABI is supported)";
  return out != nullptr;
}

Api load() {
  Api api;
  // RLHF_MPI_LIBRARY first, then the names Debian's and Open MPI's own installs use.
  const char* env = std::getenv("RLHF_MPI_LIBRARY");
  const char* names[] = {env, "libmpi.so.40", "libmpi.so"};
  std::string tried;
  for (const char* name : names) {
    if (!name || !*name) continue;
    tried += (tried.empty() ? "" : ", ") + std::string(name);
    // RTLD_GLOBAL: Open MPI's plugins resolve libmpi's symbols through the global namespace.
    api.lib = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (api.lib) {
      api.library = name;
      break;
    }
  }
  if (!api.lib) {
    api.library = tried;
    api.error = "could not load libmpi (tried " + tried +
                "); install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev) or set RLHF_MPI_LIBRARY";
    return api;
  }
  bool ok = bind(api, api.Initialized, "MPI_Initialized") && bind(api, api.Finalized, "MPI_Finalized") &&
            bind(api, api.Init_thread, "MPI_Init_thread") && bind(api, api.Finalize, "MPI_Finalize") &&
            bind(api, api.Comm_rank, "MPI_Comm_rank") && bind(api, api.Comm_size, "MPI_Comm_size") &&
            bind(api, api.Allreduce, "MPI_Allreduce") && bind(api, api.Allgather, "MPI_Allgather") &&
            bind(api, api.Allgatherv, "MPI_Allgatherv") && bind(api, api.Bcast, "MPI_Bcast") &&
            bind(api, api.Barrier, "MPI_Barrier") && bind(api, api.Abort, "MPI_Abort") &&
            bind(api, api.Comm_split, "MPI_Comm_split") && object(api, api.world, "ompi_mpi_comm_world") &&
            object(api, api.f32, "ompi_mpi_float") && object(api, api.f64, "ompi_mpi_double") &&
            object(api, api.byte, "ompi_mpi_byte") && object(api, api.sum, "ompi_mpi_op_sum") &&
            object(api, api.max, "ompi_mpi_op_max");
  if (!ok) {
    dlclose(api.lib);
    api.lib = nullptr;
  }
  return api;
}

Api& api() {
  static Api instance = load();
  return instance;
}

std::mutex& call_mutex() {
  static std::mutex m;
  return m;
}

void check(int rc, const char* call) {
  RLHF_CHECK(rc == kSuccess, ErrorCode::Internal, "MPI: ", call, " failed with error ", rc);
}

// MPI counts are int: large buffers go in chunks of at most 2^28 elements.
constexpr int64_t kChunk = int64_t(1) << 28;

void finalize_at_exit() {
  Api& a = api();
  int done = 0;
  if (a.lib && a.Finalized(&done) == kSuccess && !done) a.Finalize();
}

}  // namespace

MpiInfo mpi_info() {
  MpiInfo info;
  const Api& a = api();
  info.loadable = a.lib != nullptr;
  info.library = a.library;
  info.error = a.error;
  info.launched = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
  return info;
}

MpiGroup& MpiGroup::world() {
  static std::once_flag once;
  static MpiGroup* group = nullptr;
  std::call_once(once, [] { group = new MpiGroup(); });
  return *group;
}

namespace {
struct Layout {
  std::mutex m;
  int tp = 0;
  MpiGroup* dp_group = nullptr;
  MpiGroup* tp_group = nullptr;
};
Layout& layout() {
  static Layout l;
  return l;
}
}  // namespace

MpiGroup::MpiGroup(void* comm, int rank, int size) : comm_(comm), size_(size), rank_(rank) {}

void MpiGroup::set_layout(int tensor_parallel) {
  MpiGroup& w = world();
  Layout& l = layout();
  std::lock_guard<std::mutex> guard(l.m);
  if (l.tp == tensor_parallel) return;
  RLHF_CHECK(l.tp == 0, ErrorCode::InvalidState, "MPI layout: already split into tensor-parallel groups of ", l.tp,
             ", asked for ", tensor_parallel);
  RLHF_CHECK(tensor_parallel >= 1 && w.size() % tensor_parallel == 0, ErrorCode::InvalidArgument,
             "MPI layout: tensorParallel ", tensor_parallel, " must divide the number of ranks (", w.size(), ")");
  const int K = tensor_parallel, r = w.rank();
  Comm tp = nullptr, dp = nullptr;
  {
    std::lock_guard<std::mutex> lock(call_mutex());
    check(api().Comm_split(w.comm_, r / K, r, &tp), "MPI_Comm_split");
    check(api().Comm_split(w.comm_, r % K, r, &dp), "MPI_Comm_split");
  }
  // ranks within each group follow world order (key = world rank)
  l.tp_group = new MpiGroup(tp, r % K, K);
  l.dp_group = new MpiGroup(dp, r / K, w.size() / K);
  l.tp = K;
}

MpiGroup& MpiGroup::data_parallel() {
  Layout& l = layout();
  std::lock_guard<std::mutex> guard(l.m);
  return l.dp_group ? *l.dp_group : world();
}

MpiGroup& MpiGroup::tensor_parallel() {
  Layout& l = layout();
  std::lock_guard<std::mutex> guard(l.m);
  return l.tp_group ? *l.tp_group : world();
}

int MpiGroup::layout_tensor_parallel() {
  Layout& l = layout();
  std::lock_guard<std::mutex> guard(l.m);
  return l.tp;
}

MpiGroup::MpiGroup() {
  Api& a = api();
  RLHF_CHECK(a.lib != nullptr, ErrorCode::Unsupported, "MPI is not available: ", a.error);
  int initialized = 0;
  check(a.Initialized(&initialized), "MPI_Initialized");
  if (!initialized) {
    int provided = 0;
    check(a.Init_thread(nullptr, nullptr, kThreadSerialized, &provided), "MPI_Init_thread");
    RLHF_CHECK(provided >= kThreadSerialized, ErrorCode::Unsupported, "MPI: the library provides thread level ",
               provided, ", MPI_THREAD_SERIALIZED (2) is needed");
    std::atexit(finalize_at_exit);
  }
  comm_ = a.world;
  check(a.Comm_rank(a.world, &rank_), "MPI_Comm_rank");
  check(a.Comm_size(a.world, &size_), "MPI_Comm_size");
}

void MpiGroup::all_reduce_sum(float* x, int64_t n) {
  std::lock_guard<std::mutex> lock(call_mutex());
  for (int64_t i = 0; i < n; i += kChunk)
    check(api().Allreduce(kInPlace, x + i, int(std::min(kChunk, n - i)), api().f32, api().sum, comm_), "MPI_Allreduce");
}

void MpiGroup::all_reduce_max(float* x, int64_t n) {
  std::lock_guard<std::mutex> lock(call_mutex());
  for (int64_t i = 0; i < n; i += kChunk)
    check(api().Allreduce(kInPlace, x + i, int(std::min(kChunk, n - i)), api().f32, api().max, comm_), "MPI_Allreduce");
}

void MpiGroup::all_reduce_sum_f64(double* x, int64_t n) {
  std::lock_guard<std::mutex> lock(call_mutex());
  for (int64_t i = 0; i < n; i += kChunk)
    check(api().Allreduce(kInPlace, x + i, int(std::min(kChunk, n - i)), api().f64, api().sum, comm_), "MPI_Allreduce");
}

void MpiGroup::all_gather(const float* send, int64_t n, float* recv) {
  RLHF_CHECK(n <= kChunk, ErrorCode::OutOfRange, "MPI all_gather: at most ", kChunk, " floats per rank, got ", n);
  std::lock_guard<std::mutex> lock(call_mutex());
  check(api().Allgather(send, int(n), api().f32, recv, int(n), api().f32, comm_), "MPI_Allgather");
}

void MpiGroup::all_gather_ranges(float* x, const std::vector<int64_t>& offsets) {
  RLHF_CHECK(int(offsets.size()) == size_ + 1 && offsets[0] == 0, ErrorCode::OutOfRange,
             "MPI all_gather_ranges: expected ", size_ + 1, " offsets starting at 0, got ", offsets.size());
  std::vector<int> counts(size_), displs(size_);
  for (int r = 0; r < size_; ++r) {
    const int64_t len = offsets[r + 1] - offsets[r];
    RLHF_CHECK(len >= 0 && len < (int64_t(1) << 31) && offsets[r] < (int64_t(1) << 31), ErrorCode::OutOfRange,
               "MPI all_gather_ranges: range ", r, " [", offsets[r], ", ", offsets[r + 1],
               ") must be ascending and below 2^31");
    counts[r] = int(len), displs[r] = int(offsets[r]);
  }
  std::lock_guard<std::mutex> lock(call_mutex());
  check(api().Allgatherv(kInPlace, 0, api().f32, x, counts.data(), displs.data(), api().f32, comm_), "MPI_Allgatherv");
}

void MpiGroup::broadcast(float* x, int64_t n, int root) {
  RLHF_CHECK(root >= 0 && root < size_, ErrorCode::OutOfRange, "MPI broadcast: root must be in [0, ", size_, "), got ",
             root);
  std::lock_guard<std::mutex> lock(call_mutex());
  for (int64_t i = 0; i < n; i += kChunk)
    check(api().Bcast(x + i, int(std::min(kChunk, n - i)), api().f32, root, comm_), "MPI_Bcast");
}

void MpiGroup::broadcast_bytes(void* x, int64_t bytes, int root) {
  RLHF_CHECK(root >= 0 && root < size_, ErrorCode::OutOfRange, "MPI broadcast: root must be in [0, ", size_, "), got ",
             root);
  std::lock_guard<std::mutex> lock(call_mutex());
  char* p = static_cast<char*>(x);
  for (int64_t i = 0; i < bytes; i += kChunk)
    check(api().Bcast(p + i, int(std::min(kChunk, bytes - i)), api().byte, root, comm_), "MPI_Bcast");
}

void MpiGroup::barrier() {
  std::lock_guard<std::mutex> lock(call_mutex());
  check(api().Barrier(comm_), "MPI_Barrier");
}

void MpiGroup::abort() { api().Abort(api().world, 1); }

void MpiGroup::all_reduce_sum_bucketed(float* x, int64_t n, int64_t bucket_floats,
                                       const std::function<void(int64_t)>& before_bucket) {
  RLHF_CHECK(bucket_floats >= 1, ErrorCode::OutOfRange, "MPI bucketed all-reduce: bucket size must be >= 1 float, got ",
             bucket_floats);
  bucket_floats = std::min(bucket_floats, kChunk);
  for (int64_t end = n; end > 0;) {
    const int64_t begin = std::max<int64_t>(0, end - bucket_floats);
    if (before_bucket) before_bucket(begin);
    std::lock_guard<std::mutex> lock(call_mutex());
    check(api().Allreduce(kInPlace, x + begin, int(end - begin), api().f32, api().sum, comm_), "MPI_Allreduce");
    end = begin;
  }
}

}  // namespace rlhf
