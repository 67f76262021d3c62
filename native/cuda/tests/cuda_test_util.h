// Helpers for the CUDA kernel tests, which compile both with nvcc (run on a GPU) and with a plain
// C++ compiler against the host emulation harness (npm run test:cuda-host):
//   DeviceArray<T>     device memory filled from / copied back to a std::vector;
//   random_vector      reproducible inputs (never all zero);
//   expect_close       one CHECK per array: max |got − want| ≤ atol + rtol·|want| over all elements,
//                      reporting the worst element; NaN anywhere fails.
#pragma once
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "../../tests/check.h"
#include "../cuda_common.h"

namespace rlhf_cuda_test {

template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  size_t n = 0;
  DeviceArray() = default;
  explicit DeviceArray(size_t count) : n(count) {
    if (cudaMalloc(reinterpret_cast<void**>(&ptr), (n ? n : 1) * sizeof(T)) != cudaSuccess) ptr = nullptr;
    if (ptr) cudaMemset(ptr, 0xFF, (n ? n : 1) * sizeof(T));  // poison: unwritten outputs show as NaN / −1
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr); }
  void upload(const std::vector<T>& host) {
    cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  std::vector<T> download() const {
    std::vector<T> host(n);
    cudaDeviceSynchronize();
    cudaMemcpy(host.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }
  operator T*() const { return ptr; }
};

inline std::mt19937& rng() {
  static std::mt19937 g(12345);
  return g;
}
inline std::vector<float> random_vector(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng());
  return v;
}
inline std::vector<int32_t> random_ints(size_t n, int32_t lo, int32_t hi) {  // [lo, hi]
  std::uniform_int_distribution<int32_t> d(lo, hi);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = d(rng());
  return v;
}

inline std::vector<__nv_bfloat16> to_bf16(const std::vector<float>& v) {
  std::vector<__nv_bfloat16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __float2bfloat16(v[i]);
  return out;
}
inline std::vector<float> to_f32(const std::vector<__nv_bfloat16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __bfloat162float(v[i]);
  return out;
}
inline std::vector<float> round_bf16(const std::vector<float>& v) { return to_f32(to_bf16(v)); }

// Storage of type T from fp32 values, and back (for tests templated on float / __nv_bfloat16).
template <typename T>
inline std::vector<T> as_storage(const std::vector<float>& v);
template <>
inline std::vector<float> as_storage<float>(const std::vector<float>& v) {
  return v;
}
template <>
inline std::vector<__nv_bfloat16> as_storage<__nv_bfloat16>(const std::vector<float>& v) {
  return to_bf16(v);
}
inline std::vector<float> as_f32(const std::vector<float>& v) { return v; }
inline std::vector<float> as_f32(const std::vector<__nv_bfloat16>& v) { return to_f32(v); }
inline std::string shape_tag(const char* what, int64_t a, int64_t b, int64_t c = -1) {
  std::string s = std::string(what) + " at (" + std::to_string(a) + ", " + std::to_string(b);
  if (c >= 0) s += ", " + std::to_string(c);
  return s + ")";
}

// One check over a whole array (a per-element CHECK would print thousands of lines).
inline bool expect_close_impl(const char* what, const std::vector<float>& got, const std::vector<float>& want,
                              double atol, double rtol, const char* file, int line) {
  if (got.size() != want.size()) {
    std::printf("  %s:%d: %s: %zu elements, expected %zu\n", file, line, what, got.size(), want.size());
    ++::rlhf_test::failures();
    return false;
  }
  double worst = 0.0;
  size_t worst_i = 0;
  bool bad = false;
  for (size_t i = 0; i < got.size(); ++i) {
    double err = std::fabs(double(got[i]) - double(want[i]));
    double allowed = atol + rtol * std::fabs(double(want[i]));
    bool fails = got[i] != want[i] &&  // equal values (infinities included) pass
                 (std::isnan(got[i]) != std::isnan(want[i]) || (!std::isnan(want[i]) && !(err <= allowed)));
    if (fails && (!bad || err - allowed > worst)) worst = err - allowed, worst_i = i;
    bad = bad || fails;
  }
  if (bad) {
    std::printf("  %s:%d: %s: element %zu = %.9g, expected %.9g (atol %g, rtol %g)\n", file, line, what, worst_i,
                double(got[worst_i]), double(want[worst_i]), atol, rtol);
    ++::rlhf_test::failures();
  }
  return !bad;
}
#define EXPECT_CLOSE(what, got, want, atol, rtol) \
  ::rlhf_cuda_test::expect_close_impl((what), (got), (want), (atol), (rtol), __FILE__, __LINE__)

#define CHECK_OK(status_expr)                                                                         \
  do {                                                                                                \
    ::rlhf::cuda::Status st_ = (status_expr);                                                         \
    if (!st_.ok()) {                                                                                  \
      std::printf("  %s:%d: %s failed: %s\n", __FILE__, __LINE__, #status_expr, st_.message.c_str()); \
      ++::rlhf_test::failures();                                                                      \
    }                                                                                                 \
  } while (0)

}  // namespace rlhf_cuda_test
