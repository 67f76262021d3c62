// Causal GQA attention: forward against the double reference (several query blocks, padding,
// packed segments, KV offsets as in generation), backward by finite differences, and decode (one
// query against a cache) bit-identical to the same row of a full forward; the softmax row gives
// the same bits on its AVX-512 and scalar paths.
#include <cmath>
#include <cstring>

#include "../core/cpu_features.h"
#include "../core/dtype.h"
#include "../cpu/attention.h"
#include "../cpu/attention_internal.h"
#include "fd.h"

using namespace rlhf;
using namespace rlhf_test;

namespace {
struct Setup {
  int64_t B, T;
  int NH, KVH, HD;
  std::vector<float> qkv;
  std::vector<int64_t> qlen;
  std::vector<int32_t> seg;
  int64_t QW() const { return int64_t(NH + 2 * KVH) * HD; }
  cpu::AttentionArgs args(bool segments) const {
    cpu::AttentionArgs a;
    a.B = B, a.NH = NH, a.KVH = KVH, a.HD = HD, a.scale = 1.0f / std::sqrt(float(HD)), a.Tq = T;
    a.q = qkv.data(), a.ldq = QW(), a.k = qkv.data() + NH * HD, a.v = qkv.data() + (NH + KVH) * HD;
    a.ldk = a.ldv = QW(), a.kv_stride = T, a.q_len = qlen.data(), a.segments = segments ? seg.data() : nullptr;
    return a;
  }
};
Setup make(int64_t B, int64_t T, int NH, int KVH, int HD, unsigned seed) {
  Setup s{B, T, NH, KVH, HD, {}, {}, {}};
  s.qkv = random_vec(B * T * s.QW(), seed, -1.5f, 1.5f);
  for (int64_t b = 0; b < B; ++b) s.qlen.push_back(b == 1 ? T - 7 : T);
  for (int64_t i = 0; i < B * T; ++i) s.seg.push_back(static_cast<int32_t>((i % T) / 50));  // documents of 50
  return s;
}
}  // namespace

// widths around multiples of 16, masked (−inf) entries, a padded tail (kmax < width − 1)
TEST(attention_softmax_row_same_bits_on_every_path) {
  unsigned seed = 40;
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(16), int64_t(33), int64_t(300)}) {
    auto s0 = random_vec(n + 5, seed++, -3, 3);  // terms of similar size: summation order shows
    for (int64_t j = 0; j < n; j += 3) s0[j] = -INFINITY;
    s0[n - 1] = 3.0f;  // one unmasked key at least
    std::vector<float> a = s0, b = s0;
    set_simd_level_cap(SimdLevel::Avx512);
    const float la = cpu::attention_internal::softmax_row(a.data(), n - 1, n + 5);
    set_simd_level_cap(SimdLevel::Scalar);
    const float lb = cpu::attention_internal::softmax_row(b.data(), n - 1, n + 5);
    set_simd_level_cap(SimdLevel::Avx512);
    CHECK(std::memcmp(&la, &lb, 4) == 0);
    CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += a[j];
    CHECK_NEAR(sum, 1.0, 1e-5, 0.0);
    CHECK(a[n] == 0.0f && a[n + 4] == 0.0f);
  }
}

TEST(attention_forward_matches_reference) {
  for (bool segments : {false, true}) {
    Setup s = make(3, 150, 4, 2, 16, 31);  // 150 rows: three query blocks of 64
    const int64_t N = s.B * s.T, AD = s.NH * s.HD;
    std::vector<float> out(N * AD), ref(N * AD), lse(N * s.NH), rlse(N * s.NH);
    auto a = s.args(segments);
    cpu::attention_forward(a, out.data(), AD, lse.data());
    cpu::attention_forward_reference(a, ref.data(), AD, rlse.data());
    for (int64_t i = 0; i < N * AD; ++i) CHECK_NEAR(out[i], ref[i], 2e-6, 1e-5);
    for (int64_t i = 0; i < N * s.NH; ++i) CHECK_NEAR(lse[i], rlse[i], 2e-6, 1e-5);
  }
}

TEST(attention_backward_matches_finite_differences) {
  for (bool segments : {false, true}) {
    Setup s = make(2, 70, 4, 2, 8, 32);
    for (auto& v : s.seg) v = v % 2;  // 50-position documents -> two segments
    const int64_t N = s.B * s.T, AD = s.NH * s.HD, QW = s.QW();
    auto gw = random_vec(N * AD, 33);
    for (int64_t i = 63 * AD; i < 70 * AD; ++i) gw[N * AD / 2 + i - 63 * AD] = 0;  // padded rows of b=1 carry no loss
    std::vector<float> out(N * AD), lse(N * s.NH), dqkv(N * QW, 0.f);
    auto a = s.args(segments);
    cpu::attention_forward(a, out.data(), AD, lse.data());
    cpu::attention_backward(a, out.data(), AD, lse.data(), gw.data(), AD, dqkv.data(), QW, dqkv.data() + s.NH * s.HD,
                            QW, dqkv.data() + (s.NH + s.KVH) * s.HD, QW);
    auto loss = [&](const std::vector<float>& x) {
      Setup t = s;
      t.qkv = x;
      std::vector<float> o(N * AD);
      cpu::attention_forward_reference(t.args(segments), o.data(), AD, nullptr);
      return dot(o, gw);
    };
    CHECK(fd_check(loss, s.qkv, dqkv, 150, 2e-3, 5e-4, 3e-3, segments ? "attention (segments)" : "attention"));
  }
}

TEST(attention_decode_equals_full_forward_bitwise) {
  // One query at position p against keys 0..p in a separate cache layout == row p of the full pass.
  Setup s = make(1, 90, 4, 2, 16, 34);
  s.qlen = {90};
  const int64_t AD = s.NH * s.HD, QW = s.QW(), KVD = s.KVH * s.HD;
  std::vector<float> out(90 * AD);
  cpu::attention_forward(s.args(false), out.data(), AD, nullptr);
  std::vector<float> kc(90 * KVD), vc(90 * KVD);
  for (int64_t t = 0; t < 90; ++t) {
    std::memcpy(&kc[t * KVD], &s.qkv[t * QW + AD], KVD * 4);
    std::memcpy(&vc[t * KVD], &s.qkv[t * QW + AD + KVD], KVD * 4);
  }
  for (int64_t p : {0, 1, 63, 64, 89}) {
    cpu::AttentionArgs d;
    d.B = 1, d.NH = s.NH, d.KVH = s.KVH, d.HD = s.HD, d.scale = 1.0f / std::sqrt(16.0f), d.Tq = 1;
    d.q = s.qkv.data() + p * QW, d.ldq = QW, d.k = kc.data(), d.v = vc.data(), d.ldk = d.ldv = KVD, d.kv_stride = 90;
    int64_t off = p, one = 1;
    d.kv_offset = &off, d.q_len = &one;
    std::vector<float> o(AD);
    cpu::attention_forward(d, o.data(), AD, nullptr);
    CHECK(std::memcmp(o.data(), &out[p * AD], AD * 4) == 0);
  }
}

// Sliding window (8 keys, across query blocks and with padding): forward against the reference,
// which differs from the unwindowed output; backward by finite differences; decode against a
// cache bit-identical to the full forward's row.
TEST(attention_sliding_window) {
  Setup s = make(2, 150, 4, 2, 16, 35);
  const int64_t N = s.B * s.T, AD = s.NH * s.HD, QW = s.QW(), W = 8;
  std::vector<float> out(N * AD), ref(N * AD), full(N * AD), lse(N * s.NH), rlse(N * s.NH);
  auto a = s.args(false);
  a.window = W;
  cpu::attention_forward(a, out.data(), AD, lse.data());
  cpu::attention_forward_reference(a, ref.data(), AD, rlse.data());
  for (int64_t i = 0; i < N * AD; ++i) CHECK_NEAR(out[i], ref[i], 2e-6, 1e-5);
  for (int64_t i = 0; i < N * s.NH; ++i) CHECK_NEAR(lse[i], rlse[i], 2e-6, 1e-5);
  cpu::attention_forward(s.args(false), full.data(), AD, nullptr);
  for (int64_t i = 0; i < W * AD; ++i) CHECK(out[i] == full[i]);  // rows < W see all their keys
  double diff = 0;
  for (int64_t i = W * AD; i < s.T * AD; ++i) diff = std::max(diff, double(std::fabs(out[i] - full[i])));
  CHECK(diff > 1e-3);

  Setup f = make(2, 40, 4, 2, 8, 36);
  const int64_t Nf = f.B * f.T, ADf = f.NH * f.HD, QWf = f.QW();
  auto gw = random_vec(Nf * ADf, 37);
  for (int64_t i = (f.T + f.qlen[1]) * ADf; i < Nf * ADf; ++i) gw[i] = 0;  // padded rows carry no loss
  auto af = f.args(false);
  af.window = 5;
  std::vector<float> of(Nf * ADf), lf(Nf * f.NH), dqkv(Nf * QWf, 0.f);
  cpu::attention_forward(af, of.data(), ADf, lf.data());
  cpu::attention_backward(af, of.data(), ADf, lf.data(), gw.data(), ADf, dqkv.data(), QWf, dqkv.data() + f.NH * f.HD,
                          QWf, dqkv.data() + (f.NH + f.KVH) * f.HD, QWf);
  auto loss = [&](const std::vector<float>& x) {
    Setup t = f;
    t.qkv = x;
    auto at = t.args(false);
    at.window = 5;
    std::vector<float> o(Nf * ADf);
    cpu::attention_forward_reference(at, o.data(), ADf, nullptr);
    return dot(o, gw);
  };
  CHECK(fd_check(loss, f.qkv, dqkv, 150, 2e-3, 5e-4, 3e-3, "attention (window)"));

  const int64_t KVD = s.KVH * s.HD;
  std::vector<float> kc(s.T * KVD), vc(s.T * KVD);
  for (int64_t t = 0; t < s.T; ++t) {
    std::memcpy(&kc[t * KVD], &s.qkv[t * QW + AD], KVD * 4);
    std::memcpy(&vc[t * KVD], &s.qkv[t * QW + AD + KVD], KVD * 4);
  }
  for (int64_t p : {0, 7, 8, 63, 64, 149}) {
    cpu::AttentionArgs d;
    d.B = 1, d.NH = s.NH, d.KVH = s.KVH, d.HD = s.HD, d.scale = 1.0f / std::sqrt(16.0f), d.Tq = 1, d.window = W;
    d.q = s.qkv.data() + p * QW, d.ldq = QW, d.k = kc.data(), d.v = vc.data(), d.ldk = d.ldv = KVD, d.kv_stride = s.T;
    int64_t off = p, one = 1;
    d.kv_offset = &off, d.q_len = &one;
    std::vector<float> o(AD);
    cpu::attention_forward(d, o.data(), AD, nullptr);
    CHECK(std::memcmp(o.data(), &out[p * AD], AD * 4) == 0);
  }
}

// Logit soft-cap (small, so that it bites: raw scores reach several times the cap) with a sliding
// window: forward against the reference, different from the uncapped output; backward by finite
// differences.
TEST(attention_softcap) {
  Setup s = make(2, 70, 4, 2, 8, 38);
  for (auto& x : s.qkv) x *= 3.0f;
  const int64_t N = s.B * s.T, AD = s.NH * s.HD, QW = s.QW();
  auto a = s.args(false);
  a.softcap = 1.5f, a.window = 20;
  std::vector<float> out(N * AD), ref(N * AD), plain(N * AD), lse(N * s.NH), rlse(N * s.NH);
  cpu::attention_forward(a, out.data(), AD, lse.data());
  cpu::attention_forward_reference(a, ref.data(), AD, rlse.data());
  for (int64_t i = 0; i < N * AD; ++i) CHECK_NEAR(out[i], ref[i], 2e-6, 1e-5);
  for (int64_t i = 0; i < N * s.NH; ++i) CHECK_NEAR(lse[i], rlse[i], 2e-6, 1e-5);
  auto b = a;
  b.softcap = 0;
  cpu::attention_forward(b, plain.data(), AD, nullptr);
  double diff = 0;
  for (int64_t i = AD; i < N * AD; ++i) diff = std::max(diff, double(std::fabs(out[i] - plain[i])));
  CHECK(diff > 1e-2);
  auto gw = random_vec(N * AD, 39);
  for (int64_t i = (s.T + s.qlen[1]) * AD; i < N * AD; ++i) gw[i] = 0;
  std::vector<float> dqkv(N * QW, 0.f);
  cpu::attention_backward(a, out.data(), AD, lse.data(), gw.data(), AD, dqkv.data(), QW, dqkv.data() + s.NH * s.HD, QW,
                          dqkv.data() + (s.NH + s.KVH) * s.HD, QW);
  auto loss = [&](const std::vector<float>& x) {
    Setup t = s;
    t.qkv = x;
    auto at = t.args(false);
    at.softcap = 1.5f, at.window = 20;
    std::vector<float> o(N * AD);
    cpu::attention_forward_reference(at, o.data(), AD, nullptr);
    return dot(o, gw);
  };
  CHECK(fd_check(loss, s.qkv, dqkv, 150, 2e-3, 5e-4, 3e-3, "attention (softcap)"));
}

// Paged KV cache: the keys of 3 sequences (lengths 150, 37, 96) scattered over a pool of blocks of
// 16 in shuffled order; chunked queries (offsets 80, 30, 0; lengths 65, 7, 96, plus padding) give
// the same bits as the contiguous cache holding the same keys, window and soft-cap included, and
// agree with the double reference that reads through the block table. Bad tables are refused.
TEST(attention_paged_equals_contiguous_bitwise) {
  const int NH = 4, KVH = 2, HD = 16;
  const int64_t KVD = KVH * HD, AD = NH * HD, L = 150, Tq = 96, bs = 16, stride = (L + bs - 1) / bs;
  const int64_t B = 3, off[3] = {80, 30, 0}, qlen[3] = {65, 7, 96};
  auto kc = random_vec(B * L * KVD, 41, -1.5f, 1.5f), vc = random_vec(B * L * KVD, 42);
  auto q = random_vec(B * Tq * AD, 43, -1.5f, 1.5f);
  // blocks handed out in a shuffled order; block 0 left unused
  const int64_t nblocks = B * stride + 1;
  std::vector<int32_t> order;
  for (int64_t i = 1; i < nblocks; ++i) order.push_back(static_cast<int32_t>((i * 7) % (nblocks - 1) + 1));
  std::vector<int32_t> table(B * stride);
  for (int64_t i = 0; i < B * stride; ++i) table[i] = order[i];
  std::vector<float> kp(nblocks * bs * KVD, NAN), vp(nblocks * bs * KVD, NAN);  // unread slots stay NaN
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < off[b] + qlen[b]; ++j) {
      const int64_t row = int64_t(table[b * stride + j / bs]) * bs + j % bs;
      std::memcpy(&kp[row * KVD], &kc[(b * L + j) * KVD], KVD * 4);
      std::memcpy(&vp[row * KVD], &vc[(b * L + j) * KVD], KVD * 4);
    }
  for (int variant = 0; variant < 3; ++variant) {
    cpu::AttentionArgs c;
    c.B = B, c.NH = NH, c.KVH = KVH, c.HD = HD, c.scale = 0.25f, c.Tq = Tq, c.q = q.data(), c.ldq = AD;
    c.k = kc.data(), c.v = vc.data(), c.ldk = c.ldv = KVD, c.kv_stride = L, c.kv_offset = off, c.q_len = qlen;
    if (variant == 1) c.window = 20;
    if (variant == 2) c.softcap = 1.0f;
    cpu::AttentionArgs p = c;
    p.k = kp.data(), p.v = vp.data(), p.block_table = table.data(), p.block_size = bs, p.table_stride = stride;
    std::vector<float> oc(B * Tq * AD), op(B * Tq * AD), ref(B * Tq * AD), lc(B * Tq * NH), lp(B * Tq * NH),
        lr(B * Tq * NH);
    cpu::attention_forward(c, oc.data(), AD, lc.data());
    cpu::attention_forward(p, op.data(), AD, lp.data());
    cpu::attention_forward_reference(p, ref.data(), AD, lr.data());
    CHECK(std::memcmp(oc.data(), op.data(), oc.size() * 4) == 0);
    CHECK(std::memcmp(lc.data(), lp.data(), lc.size() * 4) == 0);
    for (size_t i = 0; i < ref.size(); ++i) CHECK_NEAR(op[i], ref[i], 2e-6, 1e-5);
    for (size_t i = 0; i < lr.size(); ++i) CHECK_NEAR(lp[i], lr[i], 2e-6, 1e-5);
  }
  // decode: one query per sequence at the end of its keys (the group's heads in one GEMM)
  for (int variant = 0; variant < 3; ++variant) {
    const int64_t doff[3] = {149, 36, 95}, one[3] = {1, 1, 1};
    cpu::AttentionArgs c;
    c.B = B, c.NH = NH, c.KVH = KVH, c.HD = HD, c.scale = 0.25f, c.Tq = 1, c.q = q.data(), c.ldq = AD;
    c.k = kc.data(), c.v = vc.data(), c.ldk = c.ldv = KVD, c.kv_stride = L, c.kv_offset = doff, c.q_len = one;
    if (variant == 1) c.window = 20;
    if (variant == 2) c.softcap = 1.0f;
    std::vector<float> kq(nblocks * bs * KVD, NAN), vq(nblocks * bs * KVD, NAN);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j <= doff[b]; ++j) {
        const int64_t row = int64_t(table[b * stride + j / bs]) * bs + j % bs;
        std::memcpy(&kq[row * KVD], &kc[(b * L + j) * KVD], KVD * 4);
        std::memcpy(&vq[row * KVD], &vc[(b * L + j) * KVD], KVD * 4);
      }
    cpu::AttentionArgs p = c;
    p.k = kq.data(), p.v = vq.data(), p.block_table = table.data(), p.block_size = bs, p.table_stride = stride;
    std::vector<float> oc(B * AD), op(B * AD), ref(B * AD), lc(B * NH), lp(B * NH), lr(B * NH);
    cpu::attention_forward(c, oc.data(), AD, lc.data());
    cpu::attention_forward(p, op.data(), AD, lp.data());
    cpu::attention_forward_reference(p, ref.data(), AD, lr.data());
    CHECK(std::memcmp(oc.data(), op.data(), oc.size() * 4) == 0);
    CHECK(std::memcmp(lc.data(), lp.data(), lc.size() * 4) == 0);
    for (size_t i = 0; i < ref.size(); ++i) CHECK_NEAR(op[i], ref[i], 2e-6, 1e-5);
    for (size_t i = 0; i < lr.size(); ++i) CHECK_NEAR(lp[i], lr[i], 2e-6, 1e-5);
  }
  cpu::AttentionArgs bad;
  bad.B = B, bad.NH = NH, bad.KVH = KVH, bad.HD = HD, bad.Tq = Tq, bad.q = q.data(), bad.ldq = AD;
  bad.k = kp.data(), bad.v = vp.data(), bad.ldk = bad.ldv = KVD, bad.kv_offset = off, bad.q_len = qlen;
  bad.block_table = table.data(), bad.block_size = bs, bad.table_stride = 2;  // too short for 150 keys
  std::vector<float> o(B * Tq * AD);
  CHECK_THROWS(cpu::attention_forward(bad, o.data(), AD, nullptr), rlhf::ErrorCode::OutOfRange);
  bad.table_stride = stride, bad.block_size = 0;
  CHECK_THROWS(cpu::attention_forward(bad, o.data(), AD, nullptr), rlhf::ErrorCode::OutOfRange);
  bad.block_size = bs;
  CHECK_THROWS(
      cpu::attention_backward(bad, o.data(), AD, o.data(), o.data(), AD, o.data(), AD, o.data(), KVD, o.data(), KVD),
      rlhf::ErrorCode::Unsupported);
}

// bf16 KV pool (k_bf16 / v_bf16): the result is bitwise that of the f32 pool holding the same
// (rounded) values, agrees with the double reference reading the bf16 pool, and stays within a
// stated tolerance of the unrounded f32 keys/values (bf16 keeps 8 bits: relative rounding 2^-9).
TEST(attention_paged_bf16_kv) {
  const int NH = 4, KVH = 2, HD = 16;
  const int64_t KVD = KVH * HD, AD = NH * HD, bs = 8, B = 2, L = 70, stride = (L + bs - 1) / bs;
  auto kf = random_vec(B * stride * bs * KVD, 51, -1.5f, 1.5f), vf = random_vec(B * stride * bs * KVD, 52);
  auto q = random_vec(B * 64 * AD, 53, -1.5f, 1.5f);
  std::vector<int32_t> table(B * stride);
  for (int64_t i = 0; i < B * stride; ++i) table[i] = static_cast<int32_t>((i * 5) % (B * stride));
  std::vector<uint16_t> kh(kf.size()), vh(vf.size());
  std::vector<float> kr(kf.size()), vr(vf.size());  // f32 pool holding the rounded values
  for (size_t i = 0; i < kf.size(); ++i) {
    kh[i] = f32_to_bf16(kf[i]), vh[i] = f32_to_bf16(vf[i]);
    kr[i] = bf16_to_f32(kh[i]), vr[i] = bf16_to_f32(vh[i]);
  }
  double worst = 0;
  for (int64_t Tq : {int64_t(64), int64_t(1)})
    for (int64_t window : {int64_t(0), int64_t(12)}) {
      const int64_t off[2] = {Tq == 1 ? 69 : 6, Tq == 1 ? 30 : 0}, qlen[2] = {Tq, Tq == 1 ? 1 : 40};
      cpu::AttentionArgs a;
      a.B = B, a.NH = NH, a.KVH = KVH, a.HD = HD, a.scale = 0.25f, a.Tq = Tq, a.q = q.data(), a.ldq = AD;
      a.ldk = a.ldv = KVD, a.kv_offset = off, a.q_len = qlen, a.window = window;
      a.block_table = table.data(), a.block_size = bs, a.table_stride = stride;
      cpu::AttentionArgs h = a, r = a, f = a;
      h.k_bf16 = kh.data(), h.v_bf16 = vh.data();
      r.k = kr.data(), r.v = vr.data();
      f.k = kf.data(), f.v = vf.data();
      const size_t n = B * Tq * AD;
      std::vector<float> oh(n), orr(n), of(n), ref(n), lh(B * Tq * NH), lr(B * Tq * NH), lref(B * Tq * NH);
      cpu::attention_forward(h, oh.data(), AD, lh.data());
      cpu::attention_forward(r, orr.data(), AD, lr.data());
      cpu::attention_forward(f, of.data(), AD, nullptr);
      cpu::attention_forward_reference(h, ref.data(), AD, lref.data());
      CHECK(std::memcmp(oh.data(), orr.data(), n * 4) == 0);
      CHECK(std::memcmp(lh.data(), lr.data(), lh.size() * 4) == 0);
      for (size_t i = 0; i < n; ++i) CHECK_NEAR(oh[i], ref[i], 2e-6, 1e-5);
      for (size_t i = 0; i < lh.size(); ++i) CHECK_NEAR(lh[i], lref[i], 2e-6, 1e-5);
      for (size_t i = 0; i < n; ++i) {
        CHECK_NEAR(oh[i], of[i], 2e-2, 0);
        worst = std::max(worst, std::fabs(double(oh[i]) - of[i]));
      }
    }
  CHECK(worst > 0);  // the rounding is there
  cpu::AttentionArgs bad;
  bad.B = 1, bad.NH = NH, bad.KVH = KVH, bad.HD = HD, bad.Tq = 1, bad.q = q.data(), bad.ldq = AD,
  bad.ldk = bad.ldv = KVD;
  bad.block_table = table.data(), bad.block_size = bs, bad.table_stride = stride, bad.k_bf16 = kh.data();
  std::vector<float> o(AD);
  CHECK_THROWS(cpu::attention_forward(bad, o.data(), AD, nullptr), rlhf::ErrorCode::InvalidArgument);
  bad.v_bf16 = vh.data(), bad.block_table = nullptr;  // bf16 only through a block table
  CHECK_THROWS(cpu::attention_forward(bad, o.data(), AD, nullptr), rlhf::ErrorCode::Unsupported);
}

int main() { return run_all_tests(); }
