#include "rmsnorm.h"

#include <cmath>
#include <vector>

#include "../core/thread_pool.h"

namespace rlhf {
namespace cpu {

namespace {

// Σ x² over a row in 16 fixed lanes (index mod 16), lanes added in order: the same bits whatever
// the ISA the clone runs on.
__attribute__((target_clones("avx512f", "avx2", "default"))) float row_sumsq(const float* __restrict x, int C) {
  float lanes[16] = {};
  int c = 0;
  for (; c + 16 <= C; c += 16)
    for (int l = 0; l < 16; ++l) lanes[l] += x[c + l] * x[c + l];
  for (; c < C; ++c) lanes[c & 15] += x[c] * x[c];
  float s = 0.0f;
  for (int l = 0; l < 16; ++l) s += lanes[l];
  return s;
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void row_scale(float* __restrict out,
                                                                            const float* __restrict x,
                                                                            const float* __restrict w, float r, int C) {
  for (int c = 0; c < C; ++c) out[c] = (x[c] * r) * w[c];
}

}  // namespace

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int C, float eps) {
  parallel_for(N, 16, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * C;
      float ms = row_sumsq(xr, C) / static_cast<float>(C);
      float rs = 1.0f / std::sqrt(ms + eps);
      if (rstd) rstd[r] = rs;
      row_scale(out + r * C, xr, w, rs, C);
    }
  });
}

void rmsnorm_apply(float* out, const float* x, const float* w, const float* rstd, int64_t N, int C) {
  parallel_for(N, 16, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) row_scale(out + r * C, x + r * C, w, rstd[r], C);
  });
}

void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                      int64_t N, int C) {
  const int threads = current_pool().size();
  std::vector<float> partial(static_cast<size_t>(threads) * C, 0.0f);  // dw per thread, added in order
  parallel_for(N, 16, [&](int64_t b, int64_t e, int t) {
    float* dwt = partial.data() + static_cast<size_t>(t) * C;
    for (int64_t r = b; r < e; ++r) {
      const float* xr = x + r * C;
      const float* gr = dout + r * C;
      float* dxr = dx + r * C;
      const float rs = rstd[r];
      float dot = 0.0f;  // Σ g·x̂ in row order
      for (int c = 0; c < C; ++c) dot += (gr[c] * w[c]) * (xr[c] * rs);
      const float mean = dot / static_cast<float>(C);
      for (int c = 0; c < C; ++c) {
        float xh = xr[c] * rs;
        dxr[c] += rs * (gr[c] * w[c] - xh * mean);
        dwt[c] += gr[c] * xh;
      }
    }
  });
  for (int t = 0; t < threads; ++t)
    for (int c = 0; c < C; ++c) dw[c] += partial[static_cast<size_t>(t) * C + c];
}

void rmsnorm_heads_forward(float* out, int64_t ldo, float* rstd, const float* x, int64_t ldx, const float* w, int64_t N,
                           int nheads, int HD, float eps) {
  parallel_for(N, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r)
      for (int h = 0; h < nheads; ++h) {
        const float* xr = x + r * ldx + int64_t(h) * HD;
        float* o = out + r * ldo + int64_t(h) * HD;
        const float rs = 1.0f / std::sqrt(row_sumsq(xr, HD) / static_cast<float>(HD) + eps);
        if (rstd) rstd[r * nheads + h] = rs;
        for (int c = 0; c < HD; ++c) o[c] = (xr[c] * rs) * w[c];  // in-place safe: element by element
      }
  });
}

void rmsnorm_heads_backward(float* dx, int64_t lddx, float* dw, const float* dout, int64_t lddo, const float* x,
                            int64_t ldx, const float* w, const float* rstd, int64_t N, int nheads, int HD) {
  const int threads = current_pool().size();
  std::vector<float> partial(dw ? static_cast<size_t>(threads) * HD : 0, 0.0f);  // dw per thread, added in order
  parallel_for(N, 4, [&](int64_t b, int64_t e, int t) {
    float* dwt = dw ? partial.data() + static_cast<size_t>(t) * HD : nullptr;
    for (int64_t r = b; r < e; ++r)
      for (int h = 0; h < nheads; ++h) {
        const float* xr = x + r * ldx + int64_t(h) * HD;
        const float* gr = dout + r * lddo + int64_t(h) * HD;
        float* dxr = dx + r * lddx + int64_t(h) * HD;
        const float rs = rstd[r * nheads + h];
        float dot = 0.0f;  // Σ g·x̂, all of it read before dx (which may alias dout) is written
        for (int c = 0; c < HD; ++c) dot += (gr[c] * w[c]) * (xr[c] * rs);
        const float mean = dot / static_cast<float>(HD);
        for (int c = 0; c < HD; ++c) {
          const float xh = xr[c] * rs, g = gr[c];
          if (dwt) dwt[c] += g * xh;
          dxr[c] = rs * (g * w[c] - xh * mean);
        }
      }
  });
  if (dw)
    for (int t = 0; t < threads; ++t)
      for (int c = 0; c < HD; ++c) dw[c] += partial[static_cast<size_t>(t) * HD + c];
}

void rmsnorm_forward_reference(float* out, float* rstd, const float* x, const float* w, int64_t N, int C, float eps) {
  for (int64_t r = 0; r < N; ++r) {
    double ss = 0;
    for (int c = 0; c < C; ++c) ss += double(x[r * C + c]) * x[r * C + c];
    double rs = 1.0 / std::sqrt(ss / C + eps);
    if (rstd) rstd[r] = static_cast<float>(rs);
    for (int c = 0; c < C; ++c) out[r * C + c] = static_cast<float>(x[r * C + c] * rs * w[c]);
  }
}

void rmsnorm_backward_reference(float* dx, float* dw, const float* dout, const float* x, const float* w,
                                const float* rstd, int64_t N, int C) {
  for (int64_t r = 0; r < N; ++r) {
    double rs = rstd[r], dot = 0;
    for (int c = 0; c < C; ++c) dot += double(dout[r * C + c]) * w[c] * x[r * C + c] * rs;
    for (int c = 0; c < C; ++c) {
      double xh = x[r * C + c] * rs;
      dx[r * C + c] += static_cast<float>(rs * (double(dout[r * C + c]) * w[c] - xh * dot / C));
      dw[c] += static_cast<float>(dout[r * C + c] * xh);
    }
  }
}

void rmsnorm_heads_forward_reference(float* out, int64_t ldo, float* rstd, const float* x, int64_t ldx, const float* w,
                                     int64_t N, int nheads, int HD, float eps) {
  for (int64_t r = 0; r < N; ++r)
    for (int h = 0; h < nheads; ++h) {
      const float* xr = x + r * ldx + int64_t(h) * HD;
      double ss = 0;
      for (int c = 0; c < HD; ++c) ss += double(xr[c]) * xr[c];
      const double rs = 1.0 / std::sqrt(ss / HD + eps);
      if (rstd) rstd[r * nheads + h] = static_cast<float>(rs);
      for (int c = 0; c < HD; ++c) out[r * ldo + int64_t(h) * HD + c] = static_cast<float>(xr[c] * rs * w[c]);
    }
}

void rmsnorm_heads_backward_reference(float* dx, int64_t lddx, float* dw, const float* dout, int64_t lddo,
                                      const float* x, int64_t ldx, const float* w, const float* rstd, int64_t N,
                                      int nheads, int HD) {
  for (int64_t r = 0; r < N; ++r)
    for (int h = 0; h < nheads; ++h) {
      const float* xr = x + r * ldx + int64_t(h) * HD;
      const float* gr = dout + r * lddo + int64_t(h) * HD;
      const double rs = rstd[r * nheads + h];
      double dot = 0;
      for (int c = 0; c < HD; ++c) dot += double(gr[c]) * w[c] * xr[c] * rs;
      std::vector<double> d(HD);
      for (int c = 0; c < HD; ++c) {
        const double xh = xr[c] * rs;
        d[c] = rs * (double(gr[c]) * w[c] - xh * dot / HD);
        if (dw) dw[c] += static_cast<float>(gr[c] * xh);
      }
      for (int c = 0; c < HD; ++c) dx[r * lddx + int64_t(h) * HD + c] = static_cast<float>(d[c]);
    }
}

}  // namespace cpu
}  // namespace rlhf
