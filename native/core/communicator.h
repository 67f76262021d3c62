// Collectives between the ranks of a tensor-parallel group (docs/architecture.md). Model code
// talks to other ranks only through this interface.
//
// Contracts (every rank calls every collective, in the same order, with the same n):
//   all_reduce_sum(x, n)         x (n) ← Σ_ranks x, summed in rank order 0, 1, …, P−1: every rank
//                                gets bit-identical results, run after run
//   all_reduce_max(x, n)         x (n) ← max over ranks (exact)
//   all_gather(send, n, recv)    recv (P·n) ← [send of rank 0, send of rank 1, …]
//   broadcast(x, n, root)        x (n) ← x of rank `root`
//   barrier()
// A rank that fails calls abort(); every rank blocked in (or later entering) a collective then
// throws rlhf::Error(Internal, "... another rank failed") instead of waiting forever.
//
// CpuGroup: ranks are threads of one process; collectives go through shared memory (each rank
// publishes a pointer, a barrier, then every rank reads the others' buffers). An NCCL
// implementation (ranks = GPUs) is the CUDA backend's; it is not built yet.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace rlhf {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int size() const = 0;
  virtual int rank() const = 0;
  virtual void all_reduce_sum(float* x, int64_t n) = 0;
  virtual void all_reduce_max(float* x, int64_t n) = 0;
  virtual void all_gather(const float* send, int64_t n, float* recv) = 0;
  virtual void broadcast(float* x, int64_t n, int root) = 0;
  virtual void barrier() = 0;
  virtual void abort() = 0;
};

// The shared state of P thread ranks; rank(r) is the communicator rank r's thread uses.
class CpuGroup {
 public:
  explicit CpuGroup(int size);
  ~CpuGroup();
  CpuGroup(const CpuGroup&) = delete;
  CpuGroup& operator=(const CpuGroup&) = delete;

  int size() const { return size_; }
  Communicator& rank(int r);
  // Clears a previous abort (between calls, when no rank is inside a collective).
  void reset();

 private:
  friend class CpuCommunicator;
  void wait(int rank);  // sense-reversing barrier; throws when aborted

  int size_;
  std::vector<std::unique_ptr<Communicator>> ranks_;
  std::vector<const float*> published_;  // one slot per rank
  std::atomic<int> arrived_{0};
  std::atomic<uint64_t> phase_{0};
  std::atomic<bool> aborted_{false};
};

}  // namespace rlhf
