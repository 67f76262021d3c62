// Host emulation of the part of CUDA C++ our kernels use, so that native/cuda/*.cu compiles with a
// plain C++17 compiler and runs on the CPU (a test tool, not a backend; see native/cuda/README.md).
//
// Execution model of rlhf_emu::launch(grid, block, smem, fn):
//   - blocks run one after another, in blockIdx order (x fastest), on the calling OS thread;
//   - the threads of a block are fibers (ucontext), each with its own guarded stack; a fiber runs
//     until it waits at a barrier or returns, so __syncthreads and warp operations really
//     synchronise: __syncthreads waits for every live thread of the block, a warp operation for
//     every lane named in its mask (32 lanes per warp, lane = linear thread index % 32);
//   - `__shared__` variables are function-local statics: one copy, and only one block is alive at a
//     time, so each block sees its own (uninitialised: the dynamic area is NaN-filled per block);
//   - atomics are plain read-modify-writes (fibers switch only at barriers, so they are atomic);
//   - a deadlock (threads waiting on a barrier that can no longer complete, a lane leaving a warp
//     operation its mask names) or a bad launch configuration sets the error that
//     cudaGetLastError() returns, as a failed launch would on a device.
// The runtime API subset (cudaMalloc, cudaMemcpy, streams, errors) works on host memory; cudaMalloc
// fills new memory with 0xFF bytes (NaN floats, −1 ints) so unwritten outputs show.
// Launches must not run concurrently (a mutex serialises them).
#pragma once
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

// ---- qualifiers --------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static
#define __grid_constant__

// ---- vector types and built-in variables ----------------------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct float2 {
  float x, y;
};
struct float4 {
  float x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// ---- runtime API subset -------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
struct CUstream_st;
typedef CUstream_st* cudaStream_t;

namespace rlhf_emu {

constexpr int kWarpSize = 32;
constexpr int kMaxThreadsPerBlock = 1024;
constexpr size_t kMaxDynamicShared = 227 * 1024;  // Hopper's per-block opt-in limit
constexpr size_t kFiberStack = 256 * 1024;        // per thread; the lowest page is a guard

enum class FiberState { Ready, AtBlockBarrier, AtWarpBarrier, Done };

// Context switch. x86-64: a hand-written switch of the callee-saved registers (no signal-mask
// system call, unlike swapcontext: barriers switch millions of times in a test run); elsewhere
// ucontext.
#if defined(__x86_64__) && !defined(RLHF_EMU_UCONTEXT)  // -DRLHF_EMU_UCONTEXT: the portable path
#define RLHF_EMU_FAST_SWITCH 1
// Saves rbx, rbp, r12–r15 and the stack pointer into *save, resumes the context at `to`.
__attribute__((naked, noinline)) static void switch_stack(void** /*save*/, void* /*to*/) {
  __asm__ volatile(
      "pushq %rbp\n pushq %rbx\n pushq %r12\n pushq %r13\n pushq %r14\n pushq %r15\n"
      "movq %rsp, (%rdi)\n movq %rsi, %rsp\n"
      "popq %r15\n popq %r14\n popq %r13\n popq %r12\n popq %rbx\n popq %rbp\n ret\n");
}
struct Context {
  void* sp = nullptr;
};
#else
#define RLHF_EMU_FAST_SWITCH 0
struct Context {
  ucontext_t uc;
};
#endif

struct Fiber {
  Context ctx;
  FiberState state = FiberState::Ready;
  uint3 tid{0, 0, 0};
  int linear = 0;
  uint32_t warp_mask_waiting = 0;  // the mask this lane passed to the warp op it waits in
};

struct Warp {
  uint32_t arrived = 0;  // lanes waiting at the current warp barrier
  uint32_t present = 0;  // lanes that exist (the last warp of a block may be partial)
  uint32_t done = 0;     // lanes that returned
  uint64_t slot[kWarpSize] = {};
};

struct State {
  // the grid being run
  dim3 grid, block;
  uint3 block_idx{0, 0, 0};
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  std::vector<char*> stacks;
  std::vector<unsigned char> dynamic_shared;
  Context scheduler;
  Fiber* current = nullptr;
  int live = 0, at_block_barrier = 0;
  std::function<void()> body;
  std::string failure;  // first error of this launch
  cudaError_t last_error = cudaSuccess;
  std::mutex launch_mutex;
};
inline State& state() {
  static State s;
  return s;
}

inline void set_error(cudaError_t e) {
  if (state().last_error == cudaSuccess) state().last_error = e;
}

// ---- scheduling primitives ---------------------------------------------------------------------
inline void switch_to(Context* save, Context* to) {
#if RLHF_EMU_FAST_SWITCH
  switch_stack(&save->sp, to->sp);
#else
  swapcontext(&save->uc, &to->uc);
#endif
}

inline void yield_to_scheduler() {
  State& s = state();
  switch_to(&s.current->ctx, &s.scheduler);
}

inline void release_block_barrier() {
  State& s = state();
  for (Fiber& f : s.fibers)
    if (f.state == FiberState::AtBlockBarrier) f.state = FiberState::Ready;
  s.at_block_barrier = 0;
}

// Releases the lanes of warp w waiting with mask `mask` once all of them arrived.
inline bool try_release_warp(int w, uint32_t mask) {
  State& s = state();
  Warp& wp = s.warps[w];
  if ((wp.arrived & mask) != mask) return false;
  for (int lane = 0; lane < kWarpSize; ++lane) {
    if (!(mask >> lane & 1u)) continue;
    Fiber& f = s.fibers[w * kWarpSize + lane];
    f.state = FiberState::Ready;
  }
  wp.arrived &= ~mask;
  return true;
}

inline void block_barrier() {
  State& s = state();
  Fiber* self = s.current;
  self->state = FiberState::AtBlockBarrier;
  if (++s.at_block_barrier == s.live) {
    release_block_barrier();
    return;
  }
  yield_to_scheduler();
}

inline void warp_barrier(uint32_t mask) {
  State& s = state();
  Fiber* self = s.current;
  int lane = self->linear % kWarpSize, w = self->linear / kWarpSize;
  if (!(mask >> lane & 1u)) {
    s.failure = "a warp operation's mask does not name the calling lane";
    set_error(cudaErrorLaunchFailure);
    return;
  }
  Warp& wp = s.warps[w];
  if ((mask & ~wp.present) != 0) {
    s.failure = "a warp operation's mask names lanes that do not exist";
    set_error(cudaErrorLaunchFailure);
    return;
  }
  self->state = FiberState::AtWarpBarrier;
  self->warp_mask_waiting = mask;
  wp.arrived |= 1u << lane;
  if (try_release_warp(w, mask)) return;
  yield_to_scheduler();
}

inline void fiber_entry() {
  State& s = state();
  s.body();
  Fiber* self = s.current;
  self->state = FiberState::Done;
  --s.live;
  int w = self->linear / kWarpSize;
  s.warps[w].done |= 1u << (self->linear % kWarpSize);
  // A thread that returns no longer holds back a block barrier (as on sm_70+).
  if (s.at_block_barrier > 0 && s.at_block_barrier == s.live) release_block_barrier();
  switch_to(&self->ctx, &s.scheduler);  // never resumed
}

inline char* stack_for(size_t i) {
  State& s = state();
  while (s.stacks.size() <= i) {
    void* p = mmap(nullptr, kFiberStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    mprotect(p, static_cast<size_t>(sysconf(_SC_PAGESIZE)), PROT_NONE);  // guard page
    s.stacks.push_back(static_cast<char*>(p));
  }
  return s.stacks[i];
}

// Runs one block to completion; false (and s.failure set) on deadlock.
inline bool run_block() {
  State& s = state();
  const int n = static_cast<int>(s.block.x * s.block.y * s.block.z);
  const int nwarps = (n + kWarpSize - 1) / kWarpSize;
  s.fibers.assign(n, Fiber{});
  s.warps.assign(nwarps, Warp{});
  for (int w = 0; w < nwarps; ++w) {
    int lanes = std::min(kWarpSize, n - w * kWarpSize);
    s.warps[w].present = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
  }
  for (int i = 0; i < n; ++i) {
    Fiber& f = s.fibers[i];
    f.linear = i;
    f.tid = {i % s.block.x, (i / s.block.x) % s.block.y, i / (s.block.x * s.block.y)};
    char* stack = stack_for(static_cast<size_t>(i));
    if (!stack) {
      s.failure = "could not allocate a fiber stack";
      return false;
    }
#if RLHF_EMU_FAST_SWITCH
    // The first switch pops six zero registers and `ret`s into fiber_entry with the stack aligned
    // as after a call (rsp ≡ 8 mod 16).
    void** top = reinterpret_cast<void**>(stack + kFiberStack);
    top[-1] = nullptr;  // fiber_entry's return address (it never returns)
    top[-2] = reinterpret_cast<void*>(&fiber_entry);
    for (int r = 3; r <= 8; ++r) top[-r] = nullptr;
    f.ctx.sp = top - 8;
#else
    getcontext(&f.ctx.uc);
    f.ctx.uc.uc_stack.ss_sp = stack;
    f.ctx.uc.uc_stack.ss_size = kFiberStack;
    f.ctx.uc.uc_link = nullptr;
    makecontext(&f.ctx.uc, fiber_entry, 0);
#endif
  }
  s.live = n;
  s.at_block_barrier = 0;
  for (;;) {
    bool ran = false;
    for (Fiber& f : s.fibers) {
      if (f.state != FiberState::Ready) continue;
      s.current = &f;
      switch_to(&s.scheduler, &f.ctx);
      s.current = nullptr;
      ran = true;
      if (!s.failure.empty()) return false;
    }
    if (s.live == 0) return true;
    if (!ran) {
      int at_block = 0, at_warp = 0;
      for (Fiber& f : s.fibers) {
        at_block += f.state == FiberState::AtBlockBarrier;
        at_warp += f.state == FiberState::AtWarpBarrier;
      }
      char msg[200];
      std::snprintf(msg, sizeof msg,
                    "deadlock in block (%u,%u,%u): %d threads at __syncthreads, %d at a warp operation, %d returned",
                    s.block_idx.x, s.block_idx.y, s.block_idx.z, at_block, at_warp, n - s.live);
      s.failure = msg;
      return false;
    }
  }
}

// Runs `body` as the kernel for every thread of every block. Returns the launch's error (also kept
// for cudaGetLastError); the reason for a failure is printed once to stderr.
inline cudaError_t launch(dim3 grid, dim3 block, size_t dynamic_shared_bytes, std::function<void()> body) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.launch_mutex);
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxThreadsPerBlock || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 ||
      grid.z > 65535 || block.z > 64 || dynamic_shared_bytes > kMaxDynamicShared) {
    set_error(cudaErrorInvalidConfiguration);
    return cudaErrorInvalidConfiguration;
  }
  s.grid = grid;
  s.block = block;
  s.body = std::move(body);
  s.failure.clear();
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        s.block_idx = {x, y, z};
        s.dynamic_shared.assign(dynamic_shared_bytes, 0xFF);
        if (!run_block()) {
          std::fprintf(stderr, "cuda_emu: launch failed: %s\n", s.failure.c_str());
          s.body = nullptr;
          set_error(cudaErrorLaunchFailure);
          return cudaErrorLaunchFailure;
        }
      }
  s.body = nullptr;
  return cudaSuccess;
}

inline void* dynamic_shared() { return state().dynamic_shared.data(); }
inline const uint3& thread_idx() { return state().current->tid; }
inline int lane_id() { return state().current->linear % kWarpSize; }

// ---- warp exchange: write own slot, wait for the mask, read, wait again (slots reusable) ----
template <typename T>
inline T exchange(uint32_t mask, T value, int src_lane) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type wider than 8 bytes");
  State& s = state();
  int lane = lane_id(), w = s.current->linear / kWarpSize;
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  s.warps[w].slot[lane] = bits;
  warp_barrier(mask);
  uint64_t got = s.warps[w].slot[src_lane & (kWarpSize - 1)];
  warp_barrier(mask);
  T out;
  std::memcpy(&out, &got, sizeof(T));
  return out;
}
inline uint32_t ballot(uint32_t mask, bool pred) {
  State& s = state();
  int lane = lane_id(), w = s.current->linear / kWarpSize;
  s.warps[w].slot[lane] = pred ? 1 : 0;
  warp_barrier(mask);
  uint32_t b = 0;
  for (int l = 0; l < kWarpSize; ++l)
    if ((mask >> l & 1u) && s.warps[w].slot[l]) b |= 1u << l;
  warp_barrier(mask);
  return b;
}

// The launch-syntax bridge: RLHF_LAUNCH(k, grid, block, smem, stream)(args...).
template <typename... P>
struct Launch {
  void (*kernel)(P...);
  dim3 grid, block;
  size_t smem;
  template <typename... A>
  void operator()(A&&... args) const {
    std::tuple<P...> bound(std::forward<A>(args)...);  // converted like kernel parameters
    auto k = kernel;
    launch(grid, block, smem, [&bound, k] { std::apply(k, bound); });
  }
};
template <typename... P>
Launch<P...> make_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem) {
  return Launch<P...>{kernel, grid, block, smem};
}

}  // namespace rlhf_emu

#define threadIdx (::rlhf_emu::thread_idx())
#define blockIdx (::rlhf_emu::state().block_idx)
#define blockDim (::rlhf_emu::state().block)
#define gridDim (::rlhf_emu::state().grid)
#define warpSize 32

inline void __syncthreads() { rlhf_emu::block_barrier(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { rlhf_emu::warp_barrier(mask); }
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  int lane = rlhf_emu::lane_id();
  return rlhf_emu::exchange(mask, v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  int lane = rlhf_emu::lane_id();
  int src = lane ^ lane_mask;
  if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
  return rlhf_emu::exchange(mask, v, src);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  int lane = rlhf_emu::lane_id();
  int src = lane + static_cast<int>(delta);
  if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;  // beyond the segment: own value
  return rlhf_emu::exchange(mask, v, src);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  int lane = rlhf_emu::lane_id();
  int src = lane - static_cast<int>(delta);
  if (src < (lane & ~(width - 1))) src = lane;
  return rlhf_emu::exchange(mask, v, src);
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return rlhf_emu::ballot(mask, pred != 0); }
inline int __any_sync(unsigned mask, int pred) { return rlhf_emu::ballot(mask, pred != 0) != 0; }
inline int __all_sync(unsigned mask, int pred) { return rlhf_emu::ballot(mask, pred != 0) == mask; }

#include "cuda_emu_api.h"  // atomics, math intrinsics, bf16, the runtime API

#define RLHF_EMU_LAUNCH(kernel, grid, block, smem, stream) ::rlhf_emu::make_launch(kernel, grid, block, smem)
#define RLHF_EMU_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::rlhf_emu::dynamic_shared())
