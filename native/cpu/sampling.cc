#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace rlhf {
namespace cpu {

int32_t sample_token(const float* z, int64_t V, const SamplingParams& sp, float u) {
  if (sp.temperature == 0.0f) {
    int64_t best = 0;
    for (int64_t j = 1; j < V; ++j)
      if (z[j] > z[best]) best = j;
    return static_cast<int32_t>(best);
  }
  thread_local std::vector<int32_t> idx;
  thread_local std::vector<double> prob;
  const bool filter = (sp.top_k > 0 && sp.top_k < V) || sp.top_p < 1.0f;
  idx.resize(V);
  std::iota(idx.begin(), idx.end(), 0);
  int64_t n = V;
  auto before = [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
  if (filter) {
    if (sp.top_k > 0 && sp.top_k < V) {
      std::partial_sort(idx.begin(), idx.begin() + sp.top_k, idx.end(), before);
      n = sp.top_k;
    } else {
      std::sort(idx.begin(), idx.end(), before);
    }
  }
  const double inv_t = 1.0 / static_cast<double>(sp.temperature);
  double m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(z[idx[i]]));
  prob.resize(n);
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += (prob[i] = std::exp((z[idx[i]] - m) * inv_t));
  if (sp.top_p < 1.0f) {  // candidates are sorted by decreasing probability here
    double cum = 0.0, keep_mass = sp.top_p * total;
    int64_t keep = n;
    for (int64_t i = 0; i < n; ++i) {
      cum += prob[i];
      if (cum >= keep_mass) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    total = 0.0;
    for (int64_t i = 0; i < n; ++i) total += prob[i];
  }
  double target = static_cast<double>(u) * total, cum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    cum += prob[i];
    if (target < cum) return idx[i];
  }
  return idx[n - 1];  // u·total rounding at the very top
}

}  // namespace cpu
}  // namespace rlhf
