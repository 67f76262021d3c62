// NcclGroup: the Communicator of GPUs (one per process) over NCCL, loaded at run time with dlopen
// like MpiGroup, so the addon builds and runs where NCCL and CUDA are absent. The few calls used
// are declared by hand in nccl.cc against nccl.h of NCCL 2.x (checked against the header's
// documented values: ncclUniqueId is 128 bytes passed by value; ncclSuccess 0; ncclFloat32 7,
// ncclFloat64 8; ncclSum 0, ncclMax 2; enums are int-sized), and cudaStreamSynchronize /
// cudaMalloc / cudaFree from libcudart the same way.
//
// Contracts (the Communicator's, communicator.h), on DEVICE pointers of the current GPU:
//   all_reduce_sum / all_reduce_max   ncclAllReduce (in place), then the stream is synchronised,
//                                     so the result is ready on return. NCCL's summation order is
//                                     its own (ring or tree): the same on every rank and run to run
//                                     for a fixed topology, not rank order.
//   all_gather, broadcast             ncclAllGather, ncclBroadcast (in place)
//   barrier                           an all-reduce of one float on a device scratch
//   abort                             ncclCommAbort, then MPI_Abort on the job (mpirun names the rank)
// Construction is collective over an MPI group: its rank 0 calls ncclGetUniqueId and broadcasts
// the id over MPI, then every rank calls ncclCommInitRank with its GPU already current
// (cudaSetDevice). Not run here: this machine has no GPU and no NCCL; nccl_info() says why.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "communicator.h"

namespace rlhf {

class MpiGroup;

struct NcclInfo {
  bool loadable = false;  // libnccl and libcudart could be dlopen'ed and have the symbols we use
  std::string library;    // the file that loaded, or the names tried
  std::string error;      // why not (empty when loadable), e.g. "libnccl not found (tried ...)"
  int version = 0;        // ncclGetVersion (e.g. 22105 for 2.21.5) when loadable
};

// Looks for libnccl (RLHF_NCCL_LIBRARY, libnccl.so.2, libnccl.so) and libcudart without creating
// anything (safe to call anywhere, any number of times).
NcclInfo nccl_info();

// What nccl.cc declares: the values tests compare with nccl.h's, and the symbols it binds.
struct NcclAbi {
  int unique_id_bytes, success, in_progress, float32, float64, sum, max;
  std::vector<std::string> symbols;
};
NcclAbi nccl_abi();

class NcclGroup final : public Communicator {
 public:
  // Collective over `bootstrap`. stream: a cudaStream_t (null: the default stream).
  explicit NcclGroup(MpiGroup& bootstrap, void* stream = nullptr);
  ~NcclGroup() override;
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;

  int size() const override { return size_; }
  int rank() const override { return rank_; }
  void all_reduce_sum(float* x, int64_t n) override;
  void all_reduce_max(float* x, int64_t n) override;
  void all_gather(const float* send, int64_t n, float* recv) override;
  void broadcast(float* x, int64_t n, int root) override;
  void barrier() override;
  void abort() override;

 private:
  void sync(const char* after);
  MpiGroup* bootstrap_;
  void* comm_ = nullptr;
  void* stream_ = nullptr;
  float* scratch_ = nullptr;  // one float on the device (barrier)
  int size_ = 1, rank_ = 0;
};

}  // namespace rlhf
