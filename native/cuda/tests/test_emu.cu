// The semantics the kernels rely on, checked wherever the tests run: under the host emulation
// harness these test the harness itself (barriers, per-block shared memory, warp shuffles and
// votes, atomics, launch errors); on a GPU the same kernels must give the same answers.
#include "cuda_test_util.h"

using namespace rlhf_cuda_test;

namespace {

// Each thread writes its slot, then (after the barrier) reads its right neighbour's: without a
// real barrier a thread would read a slot not yet written (poisoned with -1).
__global__ void rotate_kernel(int* out, int rounds) {
  __shared__ int slots[256];
  const int t = threadIdx.x, n = blockDim.x;
  int value = t + 1000 * blockIdx.x;
  for (int r = 0; r < rounds; ++r) {
    slots[t] = value;
    __syncthreads();
    value = slots[(t + 1) % n];
    __syncthreads();
  }
  out[blockIdx.x * n + t] = value;
}

// Per-block shared memory: every block accumulates into its own shared counter (atomics) and
// the block's counter must equal its own thread count times its index, whatever ran before.
__global__ void shared_per_block_kernel(int* out) {
  __shared__ int counter;
  if (threadIdx.x == 0) counter = 0;
  __syncthreads();
  atomicAdd(&counter, static_cast<int>(blockIdx.x));
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = counter;
}

__global__ void shuffle_kernel(float* sum_out, int* down_out, int* xor_out, int* idx_out, unsigned* ballot_out,
                               int* any_out) {
  const int lane = threadIdx.x % 32, i = blockIdx.x * blockDim.x + threadIdx.x;
  float v = static_cast<float>(i);
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  sum_out[i] = v;
  down_out[i] = __shfl_down_sync(0xffffffffu, lane * 3, 5);
  xor_out[i] = __shfl_xor_sync(0xffffffffu, lane, 7);
  idx_out[i] = __shfl_sync(0xffffffffu, lane * 2, 31 - lane);
  ballot_out[i] = __ballot_sync(0xffffffffu, lane % 3 == 0);
  any_out[i] = __any_sync(0xffffffffu, lane == 17) + 2 * __any_sync(0xffffffffu, lane > 40);
}

// Half the warp in a partial-mask shuffle while the other half skips it.
__global__ void partial_mask_kernel(int* out) {
  const int lane = threadIdx.x;
  int v = lane;
  if (lane < 16) v = __shfl_down_sync(0x0000ffffu, v, 1, 16);
  out[lane] = v;
}

// __shfl_up_sync, __all_sync, and a block barrier after some threads returned (they no longer
// count, as on sm_70+; the harness must not deadlock).
__global__ void up_all_early_exit_kernel(int* up, int* all, int* after_barrier) {
  __shared__ int count;
  const int t = threadIdx.x, lane = t % 32;
  up[t] = __shfl_up_sync(0xffffffffu, lane * 10, 3);
  all[t] = __all_sync(0xffffffffu, lane < 32) + 2 * __all_sync(0xffffffffu, lane < 31);
  if (t == 0) count = 0;
  __syncthreads();
  if (t >= 64) return;  // the last two warps leave
  atomicAdd(&count, 1);
  __syncthreads();
  after_barrier[t] = count;
}

__global__ void atomics_kernel(float* fsum, int* isum, int* imax, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;  // early return: the later barrier-free atomics must still be counted
  atomicAdd(fsum, 0.5f);
  atomicAdd(isum, i);
  atomicMax(imax, (i * 7919) % 1000);
}

__global__ void dynamic_shared_kernel(float* out) {
  RLHF_DYNAMIC_SHARED(float, buf);
  buf[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}

__global__ void block_sum_kernel(float* out, const float* in) {
  __shared__ float scratch[32];
  float s = rlhf::cuda::block_sum(in[blockIdx.x * blockDim.x + threadIdx.x], scratch);
  float m = rlhf::cuda::block_max(in[blockIdx.x * blockDim.x + threadIdx.x], scratch);
  if (threadIdx.x == 0) out[2 * blockIdx.x] = s, out[2 * blockIdx.x + 1] = m;
}

#if RLHF_HOST_EMULATION
__global__ void deadlock_kernel(int* out) {
  if (threadIdx.x == 0) __syncwarp(0xffffffffu);  // lanes 1..31 never join: a deadlock
  out[threadIdx.x] = 1;
}
#endif

}  // namespace

TEST(emu_barrier_rotates_values_through_shared_memory) {
  const int blocks = 3, n = 96, rounds = 5;
  DeviceArray<int> out(blocks * n);
  RLHF_LAUNCH(rotate_kernel, dim3(blocks), dim3(n), 0, nullptr)(out.ptr, rounds);
  CHECK(cudaGetLastError() == cudaSuccess);
  auto h = out.download();
  int bad = 0;
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < n; ++t) bad += h[b * n + t] != (t + rounds) % n + 1000 * b;
  CHECK(bad == 0);
}

TEST(emu_shared_memory_is_per_block) {
  const int blocks = 7;
  DeviceArray<int> out(blocks);
  RLHF_LAUNCH(shared_per_block_kernel, dim3(blocks), dim3(64), 0, nullptr)(out.ptr);
  auto h = out.download();
  for (int b = 0; b < blocks; ++b) CHECK(h[b] == 64 * b);
}

TEST(emu_warp_shuffles_and_votes) {
  const int blocks = 2, n = 64, total = blocks * n;
  DeviceArray<float> sum(total);
  DeviceArray<int> down(total), x(total), idx(total), any(total);
  DeviceArray<unsigned> ballot(total);
  RLHF_LAUNCH(shuffle_kernel, dim3(blocks), dim3(n), 0, nullptr)
  (sum.ptr, down.ptr, x.ptr, idx.ptr, ballot.ptr, any.ptr);
  CHECK(cudaGetLastError() == cudaSuccess);
  auto hs = sum.download();
  auto hd = down.download(), hx = x.download(), hi = idx.download(), ha = any.download();
  auto hb = ballot.download();
  unsigned want_ballot = 0;
  for (int l = 0; l < 32; l += 3) want_ballot |= 1u << l;
  int bad = 0;
  for (int i = 0; i < total; ++i) {
    int lane = i % 32, warp0 = i - lane;
    float want_sum = 32.0f * warp0 + 496.0f;  // Σ of the warp's 32 consecutive indices
    bad += hs[i] != want_sum;
    bad += hd[i] != (lane + 5 < 32 ? (lane + 5) * 3 : lane * 3);
    bad += hx[i] != (lane ^ 7);
    bad += hi[i] != (31 - lane) * 2;
    bad += hb[i] != want_ballot;
    bad += ha[i] != 1;
  }
  CHECK(bad == 0);
}

TEST(emu_partial_mask_shuffle) {
  DeviceArray<int> out(32);
  RLHF_LAUNCH(partial_mask_kernel, dim3(1), dim3(32), 0, nullptr)(out.ptr);
  CHECK(cudaGetLastError() == cudaSuccess);
  auto h = out.download();
  for (int l = 0; l < 32; ++l) CHECK(h[l] == (l < 15 ? l + 1 : l));
}

TEST(emu_shfl_up_all_and_barrier_after_early_exit) {
  DeviceArray<int> up(128), all(128), after(128);
  RLHF_LAUNCH(up_all_early_exit_kernel, dim3(1), dim3(128), 0, nullptr)(up.ptr, all.ptr, after.ptr);
  CHECK(cudaGetLastError() == cudaSuccess);
  auto hu = up.download(), ha = all.download(), hb = after.download();
  for (int t = 0; t < 128; ++t) {
    const int lane = t % 32;
    CHECK(hu[t] == (lane >= 3 ? (lane - 3) * 10 : lane * 10));
    CHECK(ha[t] == 1);
    if (t < 64) CHECK(hb[t] == 64);
  }
}

TEST(emu_atomics) {
  const int n = 1000;
  DeviceArray<float> fsum(std::vector<float>{0.0f});
  DeviceArray<int> isum(std::vector<int>{0}), imax(std::vector<int>{-1});
  RLHF_LAUNCH(atomics_kernel, dim3(4), dim3(256), 0, nullptr)(fsum.ptr, isum.ptr, imax.ptr, n);
  CHECK(cudaGetLastError() == cudaSuccess);
  int want_max = 0;
  for (int i = 0; i < n; ++i) want_max = std::max(want_max, (i * 7919) % 1000);
  CHECK(fsum.download()[0] == 500.0f);
  CHECK(isum.download()[0] == n * (n - 1) / 2);
  CHECK(imax.download()[0] == want_max);
}

TEST(emu_dynamic_shared_memory_and_block_reductions) {
  const int blocks = 3, n = 160;
  DeviceArray<float> out(blocks * n);
  RLHF_LAUNCH(dynamic_shared_kernel, dim3(blocks), dim3(n), n * sizeof(float), nullptr)(out.ptr);
  auto h = out.download();
  for (int i = 0; i < blocks * n; ++i) CHECK(h[i] == static_cast<float>(n - 1 - i % n));
  auto in = random_vector(blocks * n);
  DeviceArray<float> din(in), red(2 * blocks);
  RLHF_LAUNCH(block_sum_kernel, dim3(blocks), dim3(n), 0, nullptr)(red.ptr, din.ptr);
  auto r = red.download();
  for (int b = 0; b < blocks; ++b) {
    double s = 0;
    float m = -INFINITY;
    for (int t = 0; t < n; ++t) s += in[b * n + t], m = std::max(m, in[b * n + t]);
    CHECK_NEAR(r[2 * b], s, 1e-4, 1e-5);
    CHECK(r[2 * b + 1] == m);
  }
}

TEST(emu_launch_errors_are_reported_not_fatal) {
  DeviceArray<int> out(2048);
  RLHF_LAUNCH(shared_per_block_kernel, dim3(1), dim3(2048), 0, nullptr)(out.ptr);  // > 1024 threads
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(cudaGetLastError() == cudaSuccess);  // reading clears it
#if RLHF_HOST_EMULATION
  std::printf("  (expected: the harness reports the deadlock this launch provokes)\n");
  std::fflush(stdout);
  RLHF_LAUNCH(deadlock_kernel, dim3(1), dim3(32), 0, nullptr)(out.ptr);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
#endif
}

TEST(emu_bf16_conversion_rounds_to_nearest_even) {
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even one (1).
  CHECK(__bfloat162float(__float2bfloat16(1.0f + 1.0f / 256)) == 1.0f);
  CHECK(__bfloat162float(__float2bfloat16(1.0f + 3.0f / 256)) == 1.0f + 4.0f / 256);
  CHECK(__bfloat162float(__float2bfloat16(1.0f + 1.5f / 256)) == 1.0f + 2.0f / 256);
  CHECK(__bfloat162float(__float2bfloat16(-3.0f)) == -3.0f);
  CHECK(std::isinf(__bfloat162float(__float2bfloat16(3.4e38f))));  // rounds past the largest bf16
  CHECK(std::isnan(__bfloat162float(__float2bfloat16(NAN))));
}
