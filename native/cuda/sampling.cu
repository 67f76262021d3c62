// Sampling kernel (contract in sampling.h). One block per row. The order the CPU walks candidates
// in (logit descending, index ascending) is encoded as a unique 64-bit key per element
//   key = orderable(z) << 32 | (0xFFFFFFFF − index)      (larger key = earlier)
// so top-k, top-p and the inverse CDF each become "the largest key t whose count / mass of
// elements with key ≥ t passes a bound", found by a radix select (8 passes of a 256-bin shared
// histogram of count and mass, most significant byte first): no sort needed. Without top-k/top-p
// the CPU walks candidates in index order: chunk sums per thread, then one thread walks.
#include "sampling.h"

#include <cmath>

#include "cuda_common.h"

namespace rlhf {
namespace cuda {

namespace {

constexpr int kThreads = 256;

// Philox4x32-10 exactly as native/core/rng.cc.
__host__ __device__ __forceinline__ uint32_t philox_word(uint64_t seed, uint64_t stream, uint64_t counter, int lane) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = static_cast<uint32_t>(stream), c3 = static_cast<uint32_t>(stream >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0, p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
  }
  return lane == 0 ? c0 : lane == 1 ? c1 : lane == 2 ? c2 : c3;
}
__host__ __device__ __forceinline__ float philox_unit(uint64_t seed, uint64_t stream, uint64_t counter) {
  uint32_t x = philox_word(seed, stream, counter / 4, static_cast<int>(counter % 4));
  return static_cast<float>(x >> 8) * (1.0f / 16777216.0f);
}

__device__ __forceinline__ uint64_t order_key(float z, int64_t j) {
  uint32_t b = __float_as_uint(z);
  b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // monotone in z
  return (static_cast<uint64_t>(b) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(j));
}

__device__ __forceinline__ uint64_t block_max_u64(uint64_t v, uint64_t* scratch) {
  for (int o = 16; o > 0; o >>= 1) {
    uint64_t w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < int(blockDim.x / 32) ? scratch[lane] : 0;
  for (int o = 16; o > 0; o >>= 1) {
    uint64_t w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

struct SelectState {
  uint64_t prefix;
  double above_count, above_mass;  // over keys above the current prefix range
};

// The largest t with pass(count, mass of elements with key ≥ t and key ≥ floor_key); the caller
// guarantees pass holds at t = floor_key. That t is always some element's key.
template <typename Pass>
__device__ uint64_t radix_select(const float* zr, int64_t V, uint64_t floor_key, double m, double inv_t, Pass pass,
                                 double* hcount, double* hmass, SelectState* state) {
  uint64_t prefix = 0;
  double above_c = 0, above_s = 0;
  for (int level = 7; level >= 0; --level) {
    const int shift = level * 8;
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hcount[i] = 0, hmass[i] = 0;
    __syncthreads();
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      const uint64_t k = order_key(zr[j], j);
      if (k < floor_key || (level < 7 && (k >> (shift + 8)) != (prefix >> (shift + 8)))) continue;
      const int d = static_cast<int>((k >> shift) & 255u);
      atomicAdd(&hcount[d], 1.0);
      atomicAdd(&hmass[d], exp((double(zr[j]) - m) * inv_t));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      double c = above_c, s = above_s;
      int chosen = 0;
      for (int d = 255; d >= 0; --d) {
        if (pass(c + hcount[d], s + hmass[d])) {
          chosen = d;
          break;
        }
        c += hcount[d], s += hmass[d];
      }
      *state = {prefix | (static_cast<uint64_t>(chosen) << shift), c, s};
    }
    __syncthreads();
    prefix = state->prefix, above_c = state->above_count, above_s = state->above_mass;
  }
  return prefix < floor_key ? floor_key : prefix;  // rounding between the two sums: stay a candidate
}

// Σ over candidates (key ≥ floor_key) of exp((z − m)·inv_t), by the whole block.
__device__ double candidate_mass(const float* zr, int64_t V, uint64_t floor_key, double m, double inv_t,
                                 double* scratch) {
  double s = 0;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
    if (order_key(zr[j], j) >= floor_key) s += exp((double(zr[j]) - m) * inv_t);
  return block_sum(s, scratch);
}

__global__ void sample_kernel(int32_t* tokens, const float* z, int64_t ldz, int64_t V, const uint64_t* streams,
                              const uint64_t* steps, uint64_t seed, float temperature, int64_t top_k, float top_p) {
  __shared__ double scratch[32];
  __shared__ uint64_t kscratch[32];
  __shared__ double hcount[256], hmass[256];
  __shared__ SelectState state;
  __shared__ int64_t picked;
  const int64_t r = blockIdx.x;
  const float* zr = z + r * ldz;
  uint64_t best = 0;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    uint64_t k = order_key(zr[j], j);
    best = k > best ? k : best;
  }
  best = block_max_u64(best, kscratch);
  const int64_t best_index = 0xFFFFFFFFu - static_cast<uint32_t>(best);
  if (temperature == 0.0f) {
    if (threadIdx.x == 0) tokens[r] = static_cast<int32_t>(best_index);
    return;
  }
  const double m = zr[best_index], inv_t = 1.0 / double(temperature);
  const float u = philox_unit(seed, streams[r], steps[r]);
  const bool filter = (top_k > 0 && top_k < V) || top_p < 1.0f;
  if (!filter) {  // index order: per-thread contiguous chunks, then thread 0 walks
    const int64_t chunk = (V + blockDim.x - 1) / blockDim.x, j0 = threadIdx.x * chunk;
    const int64_t j1 = j0 + chunk < V ? j0 + chunk : V;
    double s = 0;
    for (int64_t j = j0; j < j1; ++j) s += exp((double(zr[j]) - m) * inv_t);
    hmass[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
      double total = 0;
      for (unsigned t = 0; t < blockDim.x; ++t) total += hmass[t];
      const double target = double(u) * total;
      double cum = 0;
      int64_t pick = V - 1;  // u·total rounding at the very top
      for (unsigned t = 0; t < blockDim.x && pick == V - 1; ++t) {
        if (!(target < cum + hmass[t])) {
          cum += hmass[t];
          continue;
        }
        const int64_t b = int64_t(t) * chunk, e = b + chunk < V ? b + chunk : V;
        for (int64_t j = b; j < e; ++j) {
          cum += exp((double(zr[j]) - m) * inv_t);
          if (target < cum) {
            pick = j;
            break;
          }
        }
        break;
      }
      tokens[r] = static_cast<int32_t>(pick);
    }
    return;
  }
  uint64_t floor_key = 0;  // candidates: key ≥ floor_key
  if (top_k > 0 && top_k < V) {
    const double k = double(top_k);
    floor_key = radix_select(
        zr, V, 0, m, inv_t, [k](double c, double) { return c >= k; }, hcount, hmass, &state);
  }
  double total = candidate_mass(zr, V, floor_key, m, inv_t, scratch);
  if (top_p < 1.0f) {
    const double keep_mass = double(top_p) * total;
    floor_key = radix_select(
        zr, V, floor_key, m, inv_t, [keep_mass](double, double s) { return s >= keep_mass; }, hcount, hmass, &state);
    total = candidate_mass(zr, V, floor_key, m, inv_t, scratch);
  }
  const double target = double(u) * total;
  // the first candidate in order whose inclusive prefix mass exceeds target; if rounding leaves
  // none, the last candidate (key == floor_key), as the CPU does
  uint64_t pick = floor_key;
  if (total > target)
    pick = radix_select(
        zr, V, floor_key, m, inv_t, [target](double, double s) { return s > target; }, hcount, hmass, &state);
  if (threadIdx.x == 0) picked = pick;
  __syncthreads();
  if (threadIdx.x == 0) tokens[r] = static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(picked));
}

__global__ void philox_kernel(float* out, const uint64_t* streams, const uint64_t* steps, int64_t N, uint64_t seed) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r < N) out[r] = philox_unit(seed, streams[r], steps[r]);
}

}  // namespace

Status sample_tokens(int32_t* tokens, const float* z, int64_t ldz, int64_t N, int64_t V, const uint64_t* streams,
                     const uint64_t* steps, uint64_t seed, const cpu::SamplingParams& p, Stream stream) {
  if (N < 0 || N > 0x7fffffff || V <= 0 || V > 0x7fffffff || ldz < V)
    return Status::Invalid("sample_tokens: need 0 <= N < 2^31, 0 < V < 2^31, ldz >= V");
  if (!(p.temperature >= 0) || !std::isfinite(p.temperature) || p.top_k < 0 || !(p.top_p > 0 && p.top_p <= 1))
    return Status::Invalid("sample_tokens: need temperature >= 0, top_k >= 0, top_p in (0, 1]");
  if (N == 0) return Status::Ok();
  RLHF_LAUNCH(sample_kernel, dim3(static_cast<unsigned>(N)), dim3(kThreads), 0, as_stream(stream))
  (tokens, z, ldz, V, streams, steps, seed, p.temperature, p.top_k, p.top_p);
  return launch_status("sample_tokens");
}

Status philox_uniforms(float* out, const uint64_t* streams, const uint64_t* steps, int64_t N, uint64_t seed,
                       Stream stream) {
  if (N < 0) return Status::Invalid("philox_uniforms: N must be >= 0");
  if (N == 0) return Status::Ok();
  RLHF_LAUNCH(philox_kernel, dim3(ceil_div(N, kThreads)), dim3(kThreads), 0, as_stream(stream))
  (out, streams, steps, N, seed);
  return launch_status("philox_uniforms");
}

}  // namespace cuda
}  // namespace rlhf
