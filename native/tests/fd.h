// Finite-difference helpers for the native kernel tests: the loss is L(x) = Σ w·f(x) with fixed
// random weights w, evaluated in double from the kernel's fp32 output; central differences with a
// step large enough for fp32 outputs (eps·|x| ~ 1e-3), so tolerances are ~1e-3 relative.
#pragma once
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "check.h"

namespace rlhf_test {

inline std::vector<float> random_vec(size_t n, unsigned seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

inline double dot(const std::vector<float>& a, const std::vector<float>& w) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * w[i];
  return s;
}

// Checks analytic[i] ≈ (L(x + e·u_i) − L(x − e·u_i)) / 2e for `samples` random coordinates.
inline bool fd_check(const std::function<double(const std::vector<float>&)>& loss, std::vector<float> x,
                     const std::vector<float>& analytic, int samples, double eps, double atol, double rtol,
                     const char* what) {
  std::mt19937 rng(99);
  std::uniform_int_distribution<size_t> pick(0, x.size() - 1);
  bool ok = true;
  for (int s = 0; s < samples; ++s) {
    size_t i = pick(rng);
    float saved = x[i];
    x[i] = saved + static_cast<float>(eps);
    double up = loss(x);
    x[i] = saved - static_cast<float>(eps);
    double down = loss(x);
    x[i] = saved;
    double num = (up - down) / (2 * eps);
    if (!(std::fabs(analytic[i] - num) <= atol + rtol * std::fabs(num))) {
      std::printf("  %s: d/dx[%zu] analytic %.7g vs numeric %.7g\n", what, i, analytic[i], num);
      ok = false;
    }
  }
  return ok;
}

}  // namespace rlhf_test
