// Minimal test harness for the native unit tests (no third-party framework to install).
//
//   TEST(name) { CHECK(cond); CHECK_NEAR(a, b, atol, rtol); CHECK_THROWS(expr, code); }
//   int main() { return run_all_tests(); }
//
// Every failed check prints file:line and the values; the binary exits 1 if any check failed,
// so ctest (and CI) see numeric regressions. SKIP("reason") ends a test as skipped, visibly.
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "../core/error.h"

namespace rlhf_test {

struct TestCase {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}
struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};
inline int& failures() {
  static int f = 0;
  return f;
}
struct Skip {
  std::string reason;
};

inline int run_all_tests() {
  int failed_tests = 0, skipped = 0, passed = 0;
  for (auto& t : registry()) {
    int before = failures();
    try {
      t.fn();
    } catch (const Skip& s) {
      std::printf("SKIP %s: %s\n", t.name, s.reason.c_str());
      ++skipped;
      continue;
    } catch (const std::exception& e) {
      std::printf("  unexpected exception: %s\n", e.what());
      ++failures();
    }
    if (failures() != before) {
      std::printf("FAIL %s\n", t.name);
      ++failed_tests;
    } else {
      std::printf("ok   %s\n", t.name);
      ++passed;
    }
  }
  std::printf("%d passed, %d failed, %d skipped\n", passed, failed_tests, skipped);
  return failed_tests == 0 ? 0 : 1;
}

}  // namespace rlhf_test

#define RLHF_TEST_CAT2(a, b) a##b
#define RLHF_TEST_CAT(a, b) RLHF_TEST_CAT2(a, b)
#define TEST(name)                                                            \
  static void name();                                                         \
  static ::rlhf_test::Registrar RLHF_TEST_CAT(registrar_, name)(#name, name); \
  static void name()

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++::rlhf_test::failures();                                             \
    }                                                                        \
  } while (0)

// |a - b| <= atol + rtol·|b|  (b is the reference)
#define CHECK_NEAR(a, b, atol, rtol)                                                                                   \
  do {                                                                                                                 \
    double va_ = (a), vb_ = (b);                                                                                       \
    if (!(std::fabs(va_ - vb_) <= (atol) + (rtol)*std::fabs(vb_))) {                                                   \
      std::printf("  %s:%d: %s = %.9g, expected %s = %.9g (atol %g, rtol %g)\n", __FILE__, __LINE__, #a, va_, #b, vb_, \
                  (double)(atol), (double)(rtol));                                                                     \
      ++::rlhf_test::failures();                                                                                       \
    }                                                                                                                  \
  } while (0)

#define CHECK_THROWS(expr, expected_code)                                                             \
  do {                                                                                                \
    bool threw_ = false;                                                                              \
    try {                                                                                             \
      expr;                                                                                           \
    } catch (const ::rlhf::Error& e_) {                                                               \
      threw_ = (e_.code() == (expected_code));                                                        \
      if (!threw_) std::printf("  %s:%d: wrong error code: %s\n", __FILE__, __LINE__, e_.what());     \
    }                                                                                                 \
    if (!threw_) {                                                                                    \
      std::printf("  %s:%d: %s did not throw the expected rlhf::Error\n", __FILE__, __LINE__, #expr); \
      ++::rlhf_test::failures();                                                                      \
    }                                                                                                 \
  } while (0)

#define SKIP(reason) \
  throw ::rlhf_test::Skip { reason }
