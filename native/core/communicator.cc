#include "communicator.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "error.h"

namespace rlhf {

class CpuCommunicator final : public Communicator {
 public:
  CpuCommunicator(CpuGroup* g, int rank) : g_(g), rank_(rank) {}
  int size() const override { return g_->size_; }
  int rank() const override { return rank_; }

  // Each rank reduces its own slice of the n elements over all ranks' buffers (rank order), into
  // a scratch; then every rank copies every slice back. Three barriers: published, reduced, read.
  void all_reduce_sum(float* x, int64_t n) override { reduce(x, n, false); }
  void all_reduce_max(float* x, int64_t n) override { reduce(x, n, true); }

  void all_gather(const float* send, int64_t n, float* recv) override {
    publish(send);
    for (int r = 0; r < g_->size_; ++r) std::memcpy(recv + r * n, g_->published_[r], sizeof(float) * n);
    g_->wait(rank_);
  }

  void broadcast(float* x, int64_t n, int root) override {
    RLHF_CHECK(root >= 0 && root < g_->size_, ErrorCode::OutOfRange, "broadcast: root ", root, " out of range");
    publish(x);
    if (rank_ != root) std::memcpy(x, g_->published_[root], sizeof(float) * n);
    g_->wait(rank_);
  }

  void barrier() override { g_->wait(rank_); }
  void abort() override { g_->aborted_.store(true); }

 private:
  void publish(const float* p) {
    g_->published_[rank_] = p;
    g_->wait(rank_);
  }

  void reduce(float* x, int64_t n, bool max) {
    const int P = g_->size_;
    if (P == 1) return;
    const int64_t base = n / P, rem = n % P;
    const int64_t b = rank_ * base + std::min<int64_t>(rank_, rem), e = b + base + (rank_ < rem ? 1 : 0);
    if (scratch_.size() < static_cast<size_t>(e - b)) scratch_.resize(e - b);
    publish(x);
    for (int64_t i = b; i < e; ++i) {
      float acc = g_->published_[0][i];
      for (int r = 1; r < P; ++r) acc = max ? std::max(acc, g_->published_[r][i]) : acc + g_->published_[r][i];
      scratch_[i - b] = acc;
    }
    g_->wait(rank_);  // every slice reduced: nobody reads x any more
    std::memcpy(x + b, scratch_.data(), sizeof(float) * (e - b));
    // The others' slices, from their x (now final in their own slice range).
    g_->wait(rank_);
    for (int r = 0; r < P; ++r) {
      if (r == rank_) continue;
      const int64_t rb = r * base + std::min<int64_t>(r, rem), re = rb + base + (r < rem ? 1 : 0);
      std::memcpy(x + rb, g_->published_[r] + rb, sizeof(float) * (re - rb));
    }
    g_->wait(rank_);  // x of every rank may be reused after this
  }

  CpuGroup* g_;
  int rank_;
  std::vector<float> scratch_;
};

CpuGroup::CpuGroup(int size) : size_(size), published_(static_cast<size_t>(size), nullptr) {
  RLHF_CHECK(size >= 1 && size <= 256, ErrorCode::OutOfRange, "tensor-parallel size must be in [1, 256], got ", size);
  for (int r = 0; r < size; ++r) ranks_.push_back(std::make_unique<CpuCommunicator>(this, r));
}

CpuGroup::~CpuGroup() = default;

Communicator& CpuGroup::rank(int r) { return *ranks_.at(static_cast<size_t>(r)); }

void CpuGroup::reset() {
  aborted_.store(false);
  arrived_.store(0);
}

// Spin, then yield (ranks may outnumber cores), watching the abort flag.
void CpuGroup::wait(int) {
  if (size_ == 1) return;
  if (aborted_.load(std::memory_order_acquire))
    RLHF_FAIL(ErrorCode::Internal, "tensor-parallel collective abandoned: another rank failed");
  const uint64_t phase = phase_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == size_) {
    arrived_.store(0, std::memory_order_relaxed);
    phase_.store(phase + 1, std::memory_order_release);
    return;
  }
  int spins = 0;
  while (phase_.load(std::memory_order_acquire) == phase) {
    if (aborted_.load(std::memory_order_acquire))
      RLHF_FAIL(ErrorCode::Internal, "tensor-parallel collective abandoned: another rank failed");
    if (++spins > 2000) std::this_thread::yield();
  }
}

}  // namespace rlhf
