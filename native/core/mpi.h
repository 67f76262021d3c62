// MpiGroup: the Communicator of processes (one or many machines) over Open MPI, loaded at run time
// with dlopen so that the addon builds, installs and runs where MPI is absent. Only the few calls
// used are declared (mpi.cc), against Open MPI's ABI (libmpi.so.40: handles such as MPI_COMM_WORLD
// are the addresses of exported objects, e.g. ompi_mpi_comm_world).
//
// Contracts (the Communicator's, communicator.h), with these differences from CpuGroup:
//   all_reduce_sum   MPI_Allreduce(MPI_SUM). Open MPI picks a fixed algorithm for a given size and
//                    process count, so every rank gets the same bits and a rerun gives the same
//                    bits; the order of the additions is MPI's, not rank order, so results can differ
//                    from a one-process sum in the last bits (tests state the tolerance).
//   abort()          MPI_Abort on the world: mpirun then ends every rank and names the one that failed.
// A rank that dies (kill -9) is detected by mpirun, which ends the others and exits non-zero.
//
// Thread use: MPI is initialised with MPI_THREAD_SERIALIZED; callers must not run two collectives
// at once (every call holds one process-wide mutex).
//
// Layout (2-D parallelism): set_layout(K) splits the world (MPI_Comm_split) into tensor-parallel
// groups of K consecutive ranks (world ranks [g·K, (g+1)·K)) and data-parallel groups of the ranks
// with the same position in their tensor-parallel group (world ranks r ≡ t mod K). Without a layout
// the data-parallel group is the world and the tensor-parallel group is the world too.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "communicator.h"

namespace rlhf {

struct MpiInfo {
  bool loadable = false;  // libmpi could be dlopen'ed and has the symbols we use
  bool launched = false;  // the environment says this process was started by mpirun (OMPI_COMM_WORLD_SIZE)
  std::string library;    // the file that loaded, or the names tried
  std::string error;      // why it did not load (empty when loadable)
};

// Looks for libmpi without initialising it (safe to call anywhere, any number of times).
MpiInfo mpi_info();

// The process group of every rank started by mpirun. The first call initialises MPI (throws
// rlhf::Error(Unsupported) naming the packages to install when libmpi is absent); later calls
// return the same object. MPI_Finalize runs at process exit.
class MpiGroup : public Communicator {
 public:
  static MpiGroup& world();
  // Collective over the world, once per process (a second call with the same K returns; another K
  // throws InvalidState). K must divide the world size.
  static void set_layout(int tensor_parallel);
  static MpiGroup& data_parallel();     // the world until set_layout
  static MpiGroup& tensor_parallel();   // the world until set_layout
  static int layout_tensor_parallel();  // K of set_layout, 0 when none was set

  int size() const override { return size_; }
  int rank() const override { return rank_; }
  void all_reduce_sum(float* x, int64_t n) override;
  void all_reduce_max(float* x, int64_t n) override;
  void all_gather(const float* send, int64_t n, float* recv) override;
  void broadcast(float* x, int64_t n, int root) override;
  void barrier() override;
  void abort() override;

  // x[offsets[r], offsets[r+1]) ← that range of rank r, for every r (in place; MPI_Allgatherv).
  // offsets has size()+1 entries, ascending, offsets[0] = 0; each range below 2^31 elements.
  void all_gather_ranges(float* x, const std::vector<int64_t>& offsets);

  // Doubles, for counts and sums that must not lose precision (token counts, loss sums).
  void all_reduce_sum_f64(double* x, int64_t n);
  void broadcast_bytes(void* x, int64_t bytes, int root);

  // x ← Σ_ranks x in buckets of at most bucket_floats elements, the last bucket first (the order in
  // which backward produces gradients: last layer first). Each bucket is one MPI_Allreduce; at 2
  // ranks the sums are bitwise those of one all-reduce over x (a + b per element either way).
  // before_bucket(begin), when given, runs before each bucket [begin, end) (outside the call lock):
  // it may block until x[begin, n) is final, so the buckets overlap with whatever produces x.
  void all_reduce_sum_bucketed(float* x, int64_t n, int64_t bucket_floats,
                               const std::function<void(int64_t)>& before_bucket = nullptr);

 private:
  MpiGroup();                                // the world (initialises MPI)
  MpiGroup(void* comm, int rank, int size);  // a sub-communicator
  void* comm_ = nullptr;
  int size_ = 1, rank_ = 0;
};

}  // namespace rlhf
