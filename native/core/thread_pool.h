// A fixed-size pool of worker threads. Work is split *statically*: parallel_for gives thread t the
// same contiguous range every time for the same (n, thread count), so any per-thread partial sums
// combined in thread order give bit-identical results run after run (the determinism contract).
//
// The calling thread is rank 0 of the pool and does its share. Calls from different host threads
// (two AsyncWorkers at once) are serialised by a mutex; a nested call from inside a task runs
// inline on the calling thread, which keeps the static split (and its results) unchanged.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace rlhf {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return num_threads_; }

  // Runs task(t) for every t in [0, size()), t = 0 on the calling thread; returns when all are
  // done. The first exception thrown by any task is rethrown here after all tasks finished.
  void run(const std::function<void(int)>& task);

 private:
  void worker_loop(int t);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one run() at a time
  std::mutex mu_;
  std::condition_variable wake_cv_, done_cv_;
  const std::function<void(int)>* task_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  bool stop_ = false;
  std::exception_ptr error_;
};

// The process-wide pool. Its size is RLHF_THREADS when set (1..1024), else the number of cores;
// set_default_threads() changes it before or between uses.
ThreadPool& default_pool();
void set_default_threads(int n);
int default_thread_count();

// The pool kernels run on from this thread: the default pool, unless a ScopedPool on this thread
// says otherwise (tensor-parallel ranks each run on their own thread group).
ThreadPool& current_pool();
class ScopedPool {
 public:
  explicit ScopedPool(ThreadPool* pool);
  ~ScopedPool();
  ScopedPool(const ScopedPool&) = delete;
  ScopedPool& operator=(const ScopedPool&) = delete;

 private:
  ThreadPool* previous_;
};

// The static split used everywhere: range of items of thread t when n items go to `parts` threads.
inline void split_range(int64_t n, int parts, int t, int64_t* begin, int64_t* end) {
  int64_t base = n / parts, rem = n % parts;
  *begin = t * base + (t < rem ? t : rem);
  *end = *begin + base + (t < rem ? 1 : 0);
}

// fn(begin, end, t) over [0, n) split statically across current_pool(). Runs inline when n is
// below min_per_thread * 2 (not worth waking workers).
void parallel_for(int64_t n, int64_t min_per_thread, const std::function<void(int64_t, int64_t, int)>& fn);

}  // namespace rlhf
