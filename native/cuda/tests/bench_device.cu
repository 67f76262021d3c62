// Timings of the CUDA kernels for bench/device/run.sh, one JSON line per figure
//   {"bench", "impl": "rlhf", "shape", "median_ms", "value", "unit"}
// on random (never zero) inputs, CUDA events around each call after warm-up, median of repeats:
//   gemm   bf16 A·B → bf16 C (cuBLASLt, fp32 accumulation), square sizes: TFLOP/s
//   adamw  the fused update over n fp32 parameters (28 bytes each), and the whole step with the
//          gradient norm: GB/s counted as 28·n bytes
//   copy   device-to-device cudaMemcpy of 4·n bytes: GB/s counting bytes read + written
//   attention_paged_decode  one decode step (Tq = 1) of B sequences of ctx cached keys each over a
//          paged KV cache (blocks of 16, the sequences' blocks interleaved), NH 32, KVH 8, HD 128, f32 and bf16 pools:
//          GB/s counting the k and v bytes read once (B·ctx·2·KVH·HD·element size)
// Usage: bench_cuda_device [--sizes 1024,2048,4096,8192] [--adamw-n N] [--repeats R] [--attn B,ctx]
// Also builds under host emulation (bench_cuda_host) so its code paths are checked on a CPU, at
// small sizes only.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../adamw.h"
#include "../attention.h"
#include "../cuda_common.h"
#include "../gemm.h"

namespace {

__global__ void fill_kernel(float* x, int64_t n, uint32_t seed, float lo, float hi) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 16, h *= 0x7feb352du, h ^= h >> 15, h *= 0x846ca68bu, h ^= h >> 16;
    x[i] = lo + (hi - lo) * (static_cast<float>(h >> 8) * (1.0f / 16777216.0f));
  }
}
__global__ void to_bf16_kernel(__nv_bfloat16* y, const float* x, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = __float2bfloat16(x[i]);
}
__global__ void to_bf16_bits_kernel(uint16_t* y, const float* x, int64_t n) {  // the paged pool's storage
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = static_cast<uint16_t>(__float_as_uint(x[i]) >> 16);
}

bool ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  std::fprintf(stderr, "bench: %s: %s\n", what, cudaGetErrorString(e));
  return false;
}
bool ok(const rlhf::cuda::Status& s) {
  if (s.ok()) return true;
  std::fprintf(stderr, "bench: %s\n", s.message.c_str());
  return false;
}

void fill(float* x, int64_t n, uint32_t seed, float lo, float hi) {
  RLHF_LAUNCH(fill_kernel, dim3(1024), dim3(256), 0, nullptr)(x, n, seed, lo, hi);
}

// Median over `repeats` timed calls after `warmup` untimed ones; -1 when a call failed.
double median_ms(const std::function<bool()>& fn, int warmup, int repeats) {
  for (int i = 0; i < warmup; ++i)
    if (!fn()) return -1;
  cudaEvent_t a, b;
  cudaEventCreate(&a), cudaEventCreate(&b);
  std::vector<float> t;
  for (int i = 0; i < repeats; ++i) {
    cudaEventRecord(a);
    if (!fn()) return -1;
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    t.push_back(ms);
  }
  cudaEventDestroy(a), cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t.size() % 2 ? t[t.size() / 2] : 0.5 * (t[t.size() / 2 - 1] + t[t.size() / 2]);
}

void emit(const char* bench, const std::string& shape, double ms, double value, const char* unit) {
  std::printf(
      "{\"bench\": \"%s\", \"impl\": \"rlhf\", \"shape\": \"%s\", \"median_ms\": %.6g, \"value\": %.6g, "
      "\"unit\": \"%s\"}\n",
      bench, shape.c_str(), ms, value, unit);
  std::fflush(stdout);
}

// One decode step over a paged pool of B·ctx/16 blocks, interleaved; false when a call failed.
bool bench_paged_decode(int64_t B, int64_t ctx, int repeats) {
  const int NH = 32, KVH = 8, HD = 128;
  const int64_t bs = 16, per_seq = (ctx + bs - 1) / bs, blocks = B * per_seq, KVD = int64_t(KVH) * HD;
  const int64_t pool = blocks * bs * KVD;
  std::vector<int32_t> table(blocks);
  for (int64_t b = 0; b < B; ++b)  // the sequences' blocks interleaved in the pool
    for (int64_t e = 0; e < per_seq; ++e) table[b * per_seq + e] = static_cast<int32_t>(e * B + b);
  std::vector<int64_t> offset(B, ctx - 1);
  float *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr, *lse = nullptr;
  uint16_t *k16 = nullptr, *v16 = nullptr;
  int32_t* table_d = nullptr;
  int64_t* offset_d = nullptr;
  bool good = ok(cudaMalloc(&q, B * NH * HD * 4), "cudaMalloc") && ok(cudaMalloc(&k, pool * 4), "cudaMalloc") &&
              ok(cudaMalloc(&v, pool * 4), "cudaMalloc") && ok(cudaMalloc(&k16, pool * 2), "cudaMalloc") &&
              ok(cudaMalloc(&v16, pool * 2), "cudaMalloc") && ok(cudaMalloc(&out, B * NH * HD * 4), "cudaMalloc") &&
              ok(cudaMalloc(&lse, B * NH * 4), "cudaMalloc") && ok(cudaMalloc(&table_d, blocks * 4), "cudaMalloc") &&
              ok(cudaMalloc(&offset_d, B * 8), "cudaMalloc");
  if (good) {
    fill(q, B * NH * HD, 7, -1.0f, 1.0f), fill(k, pool, 8, -1.0f, 1.0f), fill(v, pool, 9, -1.0f, 1.0f);
    RLHF_LAUNCH(to_bf16_bits_kernel, dim3(1024), dim3(256), 0, nullptr)(k16, k, pool);
    RLHF_LAUNCH(to_bf16_bits_kernel, dim3(1024), dim3(256), 0, nullptr)(v16, v, pool);
    good = ok(cudaMemcpy(table_d, table.data(), blocks * 4, cudaMemcpyHostToDevice), "copy") &&
           ok(cudaMemcpy(offset_d, offset.data(), B * 8, cudaMemcpyHostToDevice), "copy");
  }
  rlhf::cpu::AttentionArgs a;
  a.B = B, a.NH = NH, a.KVH = KVH, a.HD = HD, a.scale = 0.088f, a.Tq = 1, a.q = q, a.ldq = int64_t(NH) * HD;
  a.ldk = a.ldv = KVD, a.kv_stride = bs, a.kv_offset = offset_d;
  a.block_table = table_d, a.block_size = bs, a.table_stride = per_seq;
  const std::string shape = "B=" + std::to_string(B) + " ctx=" + std::to_string(ctx) + " NH=32 KVH=8 HD=128 bs=16";
  for (int bf16 = 0; good && bf16 < 2; ++bf16) {
    rlhf::cpu::AttentionArgs d = a;
    if (bf16)
      d.k_bf16 = k16, d.v_bf16 = v16;
    else
      d.k = k, d.v = v;
    const double ms = median_ms(
        [&] { return ok(rlhf::cuda::attention_forward(d, out, int64_t(NH) * HD, lse, nullptr)); }, 2, repeats);
    if (ms < 0) good = false;
    const double bytes = double(B) * ctx * 2 * KVD * (bf16 ? 2 : 4);
    if (good)
      emit(bf16 ? "attention_paged_decode_bf16" : "attention_paged_decode_f32", shape, ms, bytes / (ms * 1e-3) / 1e9,
           "GB/s");
  }
  cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(k16), cudaFree(v16), cudaFree(out), cudaFree(lse);
  cudaFree(table_d), cudaFree(offset_d);
  return good;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> sizes = {1024, 2048, 4096, 8192};
  int64_t adamw_n = int64_t(1) << 28;
  int repeats = 20;
  int64_t attn_b = 32, attn_ctx = 2048;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--sizes") {
      sizes.clear();
      for (size_t p = 0; p < v.size();) {
        size_t q = v.find(',', p);
        sizes.push_back(std::atoll(v.substr(p, q - p).c_str()));
        p = q == std::string::npos ? v.size() : q + 1;
      }
    } else if (k == "--adamw-n") {
      adamw_n = std::atoll(v.c_str());
    } else if (k == "--attn") {
      const size_t c = v.find(',');
      attn_b = std::atoll(v.substr(0, c).c_str());
      attn_ctx = c == std::string::npos ? 0 : std::atoll(v.substr(c + 1).c_str());
    } else if (k == "--repeats") {
      repeats = std::atoi(v.c_str());
    } else {
      std::fprintf(stderr, "bench: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (repeats < 1 || adamw_n < 1 || sizes.empty() || attn_b < 1 || attn_ctx < 1) {
    std::fprintf(stderr, "bench: need --repeats >= 1, --adamw-n >= 1, --attn B,ctx >= 1 and at least one size\n");
    return 2;
  }
  int failures = 0;
  std::string detail;
  if (!rlhf::cuda::gemm_available(&detail)) {
    std::fprintf(stderr, "bench: gemm skipped: %s\n", detail.c_str());
    ++failures;
  } else {
    for (int64_t n : sizes) {
      float* f = nullptr;
      __nv_bfloat16 *A = nullptr, *B = nullptr, *C = nullptr;
      const size_t elems = size_t(n) * size_t(n);
      if (!ok(cudaMalloc(&f, elems * 4), "cudaMalloc") || !ok(cudaMalloc(&A, elems * 2), "cudaMalloc") ||
          !ok(cudaMalloc(&B, elems * 2), "cudaMalloc") || !ok(cudaMalloc(&C, elems * 2), "cudaMalloc")) {
        ++failures;
        break;
      }
      fill(f, n * n, 1, -1.0f, 1.0f);
      RLHF_LAUNCH(to_bf16_kernel, dim3(1024), dim3(256), 0, nullptr)(A, f, n * n);
      fill(f, n * n, 2, -1.0f, 1.0f);
      RLHF_LAUNCH(to_bf16_kernel, dim3(1024), dim3(256), 0, nullptr)(B, f, n * n);
      rlhf::cuda::GemmArgs g;
      g.M = g.N = g.K = n, g.A = A, g.B = B, g.C = C, g.lda = g.ldb = g.ldc = n;
      g.ab = g.c = rlhf::DType::BF16;
      double ms = median_ms([&] { return ok(rlhf::cuda::gemm(g, nullptr)); }, 3, repeats);
      if (ms < 0)
        ++failures;
      else
        emit("gemm_bf16", std::to_string(n) + "x" + std::to_string(n) + "x" + std::to_string(n), ms,
             2.0 * double(n) * n * n / (ms * 1e-3) / 1e12, "TFLOP/s");
      cudaFree(f), cudaFree(A), cudaFree(B), cudaFree(C);
    }
  }
  {  // AdamW and the copy ceiling on the same n
    const int64_t n = adamw_n;
    float *p = nullptr, *g = nullptr, *m = nullptr, *v = nullptr;
    double* partials = nullptr;
    if (ok(cudaMalloc(&p, n * 4), "cudaMalloc") && ok(cudaMalloc(&g, n * 4), "cudaMalloc") &&
        ok(cudaMalloc(&m, n * 4), "cudaMalloc") && ok(cudaMalloc(&v, n * 4), "cudaMalloc") &&
        ok(cudaMalloc(&partials, rlhf::cuda::adamw_sumsq_partials() * 8), "cudaMalloc")) {
      fill(p, n, 3, -1.0f, 1.0f), fill(g, n, 4, -1e-2f, 1e-2f), fill(m, n, 5, -1e-3f, 1e-3f),
          fill(v, n, 6, 0.0f, 1e-5f);
      rlhf::cpu::AdamWOptions o;
      o.lr = 1e-4f, o.weight_decay = 0.01f;
      const auto s = rlhf::cpu::adamw_scalars(o, 10, 1.0f);
      const std::string shape = "n=" + std::to_string(n);
      double ms =
          median_ms([&] { return ok(rlhf::cuda::adamw_apply(p, g, m, v, nullptr, n, s, {}, nullptr)); }, 3, repeats);
      if (ms < 0)
        ++failures;
      else
        emit("adamw_update", shape, ms, 28.0 * double(n) / (ms * 1e-3) / 1e9, "GB/s");
      rlhf::cpu::AdamWResult r{};
      int64_t step = 1;
      ms = median_ms(
          [&] { return ok(rlhf::cuda::adamw_step(p, g, m, v, nullptr, n, o, step++, {}, partials, &r, nullptr)); }, 3,
          repeats);
      if (ms < 0)
        ++failures;
      else
        emit("adamw_step", shape, ms, 28.0 * double(n) / (ms * 1e-3) / 1e9, "GB/s");
      // copy p → m: 4·n bytes read, 4·n written
      ms = median_ms([&] { return ok(cudaMemcpy(m, p, size_t(n) * 4, cudaMemcpyDeviceToDevice), "copy"); }, 3, repeats);
      if (ms < 0)
        ++failures;
      else
        emit("copy_d2d", "bytes=" + std::to_string(n * 4), ms, 2.0 * 4.0 * double(n) / (ms * 1e-3) / 1e9, "GB/s");
    } else {
      ++failures;
    }
    cudaFree(p), cudaFree(g), cudaFree(m), cudaFree(v), cudaFree(partials);
  }
  if (!bench_paged_decode(attn_b, attn_ctx, repeats)) ++failures;
  return failures == 0 ? 0 : 1;
}
