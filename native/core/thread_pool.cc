#include "thread_pool.h"

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "error.h"

namespace rlhf {

namespace {
thread_local bool tl_inside_pool_task = false;

// Spin this long on the generation counter before sleeping: model code issues many short
// parallel regions back to back, and a condition-variable wake costs tens of microseconds.
constexpr auto kSpinTime = std::chrono::microseconds(200);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins until done() or kSpinTime has passed; returns done(). The clock is read once every 64
// polls (a read costs about as much as the poll and the pause together), and each poll pauses,
// which leaves the core's pipeline (and an SMT sibling) to the threads doing the work. After
// kPauseTime the polls yield the core instead: when other processes hold the cores, the thread
// being waited for may be queued behind this one (on an idle core sched_yield returns at once).
constexpr auto kPauseTime = std::chrono::microseconds(20);
template <typename Done>
bool spin_until(Done&& done) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + kSpinTime, pause_until = start + kPauseTime;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return done();
    if (now >= pause_until) std::this_thread::yield();
  }
}
}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads < 1 ? 1 : num_threads) {
  for (int t = 1; t < num_threads_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    generation_.fetch_add(1);
  }
  wake_cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run(const std::function<void(int)>& task) {
  if (num_threads_ == 1 || tl_inside_pool_task) {
    // Nested or single-threaded: same static split, executed in order on this thread.
    for (int t = 0; t < num_threads_; ++t) task(t);
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mutex_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    task_ = &task;
    error_ = nullptr;
    pending_.store(num_threads_ - 1);
    generation_.fetch_add(1);
  }
  wake_cv_.notify_all();
  tl_inside_pool_task = true;
  try {
    task(0);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_) error_ = std::current_exception();
  }
  tl_inside_pool_task = false;
  // Wait for the workers: spin briefly, then sleep.
  if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return pending_.load() == 0; });
  }
  std::exception_ptr err;
  {
    std::lock_guard<std::mutex> lock(mu_);
    err = error_;
    task_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

void ThreadPool::worker_loop(int t) {
  tl_inside_pool_task = true;
  uint64_t seen = 0;  // generation at construction; read here it could already be past a run()
  for (;;) {
    spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
    const std::function<void(int)>* task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_cv_.wait(lock, [&] { return generation_.load() != seen; });
      seen = generation_.load();
      if (stop_) return;
      task = task_;
    }
    try {
      (*task)(t);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      done_cv_.notify_one();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Default pool

namespace {
std::mutex g_default_mu;
std::unique_ptr<ThreadPool> g_default_pool;
int g_default_threads = 0;  // 0: not decided yet

int threads_from_environment() {
  const char* env = std::getenv("RLHF_THREADS");
  if (env && *env) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end && *end == '\0' && v >= 1 && v <= 1024) return static_cast<int>(v);
    // A bad value is ignored rather than fatal; buildInfo() reports the count actually used.
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}
}  // namespace

ThreadPool& default_pool() {
  std::lock_guard<std::mutex> lock(g_default_mu);
  if (!g_default_pool) {
    if (g_default_threads == 0) g_default_threads = threads_from_environment();
    g_default_pool = std::make_unique<ThreadPool>(g_default_threads);
  }
  return *g_default_pool;
}

void set_default_threads(int n) {
  RLHF_CHECK(n >= 1 && n <= 1024, ErrorCode::OutOfRange, "thread count must be in [1, 1024], got ", n);
  std::lock_guard<std::mutex> lock(g_default_mu);
  if (g_default_pool && g_default_pool->size() == n) return;
  g_default_pool.reset();  // joins the old workers
  g_default_threads = n;
}

int default_thread_count() {
  std::lock_guard<std::mutex> lock(g_default_mu);
  if (g_default_threads == 0) g_default_threads = threads_from_environment();
  return g_default_threads;
}

namespace {
thread_local ThreadPool* tl_current_pool = nullptr;
}

ThreadPool& current_pool() { return tl_current_pool ? *tl_current_pool : default_pool(); }

ScopedPool::ScopedPool(ThreadPool* pool) : previous_(tl_current_pool) { tl_current_pool = pool; }
ScopedPool::~ScopedPool() { tl_current_pool = previous_; }

void parallel_for(int64_t n, int64_t min_per_thread, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  ThreadPool& pool = current_pool();
  int parts = pool.size();
  if (min_per_thread > 0 && n < min_per_thread * 2) parts = 1;
  if (parts == 1) {
    fn(0, n, 0);
    return;
  }
  pool.run([&](int t) {
    int64_t b, e;
    split_range(n, parts, t, &b, &e);
    if (b < e) fn(b, e, t);
  });
}

}  // namespace rlhf
