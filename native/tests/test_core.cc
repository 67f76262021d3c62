// native/core: Philox known-answer vectors, RNG purity, thread pool split/exceptions/nesting,
// dtype conversions, error codes.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/buffer.h"
#include "../core/dtype.h"
#include "../core/error.h"
#include "../core/rng.h"
#include "../core/thread_pool.h"
#include "check.h"

using namespace rlhf;

TEST(philox_known_answers) {
  // Random123 kat_vectors for philox4x32_10 (ctr words, key words -> output). Our mapping:
  // ctr = (counter lo, counter hi, stream lo, stream hi), key = (seed lo, seed hi).
  auto z = philox4x32(0, 0, 0);
  CHECK(z[0] == 0x6627e8d5u && z[1] == 0xe169c58du && z[2] == 0xbc57ac4cu && z[3] == 0x9b00dbd8u);
  auto f = philox4x32(~0ull, ~0ull, ~0ull);
  CHECK(f[0] == 0x408f276du && f[1] == 0x41c83b0eu && f[2] == 0xa20bc7c6u && f[3] == 0x6d5451fdu);
  auto pi = philox4x32(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull);
  CHECK(pi[0] == 0xd16cfe09u && pi[1] == 0x94fdccebu && pi[2] == 0x5001e420u && pi[3] == 0x24126ea1u);
}

TEST(rng_is_a_pure_function_of_seed_stream_counter) {
  std::vector<float> a(1000), b(10);
  philox_uniform_fill(42, 3, 0, a.data(), 1000);
  philox_uniform_fill(42, 3, 500, b.data(), 10);  // a window reproduces alone
  CHECK(std::memcmp(a.data() + 500, b.data(), 40) == 0);
  double mean = 0;
  for (float x : a) {
    CHECK(x >= 0.0f && x < 1.0f);
    mean += x;
  }
  CHECK_NEAR(mean / 1000, 0.5, 0.05, 0);
  CHECK(philox_uniform(42, 3, 7) != philox_uniform(42, 4, 7));  // streams differ
  std::vector<float> nrm(20000);
  philox_normal_fill(1, 0, 0.0f, 2.0f, nrm.data(), nrm.size());
  double s = 0, s2 = 0;
  for (float x : nrm) s += x, s2 += double(x) * x;
  CHECK_NEAR(s / nrm.size(), 0.0, 0.05, 0);
  CHECK_NEAR(std::sqrt(s2 / nrm.size()), 2.0, 0.05, 0);
  // a fill from an even `first` continues the stream: chunks of 6 and 7 rebuild the whole fill
  std::vector<float> chunked(nrm.size());
  for (size_t k = 0; k < nrm.size(); k += 6)
    philox_normal_fill(1, 0, 0.0f, 2.0f, chunked.data() + k, std::min<int64_t>(6, nrm.size() - k), k);
  CHECK(std::memcmp(chunked.data(), nrm.data(), nrm.size() * sizeof(float)) == 0);
  std::vector<float> odd_tail(7);
  philox_normal_fill(1, 0, 0.0f, 2.0f, odd_tail.data(), 7, 19992);
  CHECK(std::memcmp(odd_tail.data(), nrm.data() + 19992, 7 * sizeof(float)) == 0);
}

TEST(thread_pool_static_split_and_order) {
  int64_t b, e, total = 0;
  for (int t = 0; t < 3; ++t) {
    split_range(10, 3, t, &b, &e);
    CHECK(b == total);
    total = e;
  }
  CHECK(total == 10);
  ThreadPool pool(3);
  std::vector<int> seen(3, 0);
  pool.run([&](int t) { seen[t] += 1; });
  CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
  for (int rep = 0; rep < 2000; ++rep) pool.run([&](int t) { seen[t] += 1; });  // no lost wake-ups
  CHECK(seen[0] == 2001 && seen[1] == 2001 && seen[2] == 2001);
}

TEST(thread_pool_rethrows_task_exceptions_and_stays_usable) {
  ThreadPool pool(2);
  CHECK_THROWS(pool.run([](int t) {
    if (t == 1) RLHF_FAIL(ErrorCode::Internal, "boom");
  }),
               ErrorCode::Internal);
  std::atomic<int> n{0};
  pool.run([&](int) { n++; });
  CHECK(n == 2);
}

TEST(thread_pool_nested_run_executes_inline) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  pool.run([&](int) { pool.run([&](int) { inner++; }); });
  CHECK(inner == 4);
}

TEST(dtype_conversions_round_trip) {
  for (float x : {0.0f, 1.0f, -2.5f, 3.140625f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f}) {
    CHECK(f16_to_f32(f32_to_f16(x)) == x);  // exactly representable in f16
  }
  CHECK(f32_to_f16(1e6f) == 0x7c00);  // overflow -> +inf
  CHECK(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));
  CHECK(f16_to_f32(0x3555) == 0.333251953125f);  // nearest f16 to 1/3
  CHECK(f32_to_f16(1.0f / 3.0f) == 0x3555);
  CHECK(bf16_to_f32(f32_to_bf16(1.0f)) == 1.0f);
  CHECK(bf16_to_f32(f32_to_bf16(1.00390625f)) == 1.0f);  // halfway, rounds to even
  CHECK(bf16_to_f32(f32_to_bf16(1.01171875f)) == 1.015625f);
  CHECK(dtype_size(DType::BF16) == 2 && std::strcmp(dtype_name(DType::I32), "i32") == 0);
}

TEST(errors_carry_code_and_location) {
  try {
    RLHF_CHECK(1 == 2, ErrorCode::Format, "bad header of ", "x.safetensors");
    CHECK(false);
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::Format);
    CHECK(std::strstr(e.what(), "bad header of x.safetensors (test_core.cc:") != nullptr);
    CHECK(std::strcmp(error_code_name(e.code()), "ERR_RLHF_FORMAT") == 0);
  }
  int64_t before = buffer_bytes_in_use();
  {
    Buffer b(1000);
    CHECK(buffer_bytes_in_use() == before + 1000);
    CHECK(reinterpret_cast<uintptr_t>(b.data()) % 64 == 0);
  }
  CHECK(buffer_bytes_in_use() == before);
}

TEST(buffers_large_mapped_zeroed_counted_peak_and_workspace) {
  const int64_t before = buffer_bytes_in_use();
  buffer_bytes_peak(true);
  {
    const size_t n = (size_t(16) << 20) / sizeof(float) + 3;  // past the 8 MiB mapping threshold
    Buffer big(n * sizeof(float));
    const float* p = big.as<float>();
    bool zero = true;
    for (size_t i = 0; i < n; i += 4093) zero = zero && p[i] == 0.0f;
    CHECK(zero && p[n - 1] == 0.0f);
    CHECK(reinterpret_cast<uintptr_t>(big.data()) % 64 == 0);
    big.as<float>()[n - 1] = 1.0f;  // writable to its last element
    Buffer moved(std::move(big));
    CHECK(big.data() == nullptr && moved.bytes() == n * sizeof(float));
    CHECK(buffer_bytes_in_use() == before + int64_t(n * sizeof(float)));
  }
  CHECK(buffer_bytes_in_use() == before);
  CHECK(buffer_bytes_peak(false) >= before + int64_t((size_t(16) << 20) + 12));
  buffer_bytes_peak(true);
  CHECK(buffer_bytes_peak(false) == before);  // reset to what is in use now
  const int64_t ws = workspace_bytes();
  {
    Workspace w;
    w.grow(100);
    float* p = w.grow(50);  // big enough already: kept
    CHECK(p == w.buffer().as<float>() && workspace_bytes() == ws + 400);
    w.grow(300);
    CHECK(workspace_bytes() == ws + 1200 && w.buffer().bytes() == 1200);
  }
  CHECK(workspace_bytes() == ws);  // a destroyed workspace (a thread that ended) is uncounted
}

int main() { return rlhf_test::run_all_tests(); }
