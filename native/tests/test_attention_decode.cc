// Paged decode reading K/V in place (cpu/attention_decode.cc): on random inputs, for every ISA the
// GEMM can pick, block sizes 1..64, GQA groups 1..8 (row kernel and tile kernel in the gather
// path), head_dim 16..80, sequences longer than the GEMM's depth block, sliding windows (shorter
// and longer than a depth block), soft-capping, f32 and bf16 pools, its output and log-sum-exp are
// bitwise those of the gather path (decode_gather: gather, then GEMM) and of a contiguous cache
// holding the same keys, and within 2e-6 + 1e-5·|x| of the double reference; sequences sharing
// leading blocks give the bits they give decoded one at a time (decode_share_prefix = false).
#include <cmath>
#include <cstring>

#include "../core/cpu_features.h"
#include "../core/dtype.h"
#include "../cpu/attention.h"
#include "fd.h"

using namespace rlhf;
using namespace rlhf_test;

namespace {

struct Case {
  int NH, KVH, HD;
  int64_t bs;
  int64_t len[3];  // keys of each sequence (the query is the last)
  int64_t window;
  float softcap;
  bool bf16;
  int64_t shared = 0;  // the three sequences' tables share their first shared / bs blocks (same keys)
};

// One case: the three layouts and the reference on the same keys/values/queries.
void run_case(const Case& cs, unsigned seed) {
  const int64_t B = 3, KVD = int64_t(cs.KVH) * cs.HD, AD = int64_t(cs.NH) * cs.HD;
  int64_t L = 0;
  for (int64_t b = 0; b < B; ++b) L = std::max(L, cs.len[b]);
  const int64_t stride = (L + cs.bs - 1) / cs.bs, nblocks = B * stride + 1;
  auto kc = random_vec(B * L * KVD, seed, -1.5f, 1.5f), vc = random_vec(B * L * KVD, seed + 1);
  auto q = random_vec(B * AD, seed + 2, -1.5f, 1.5f);
  if (cs.bf16)  // contiguous copy holds the values the bf16 pool holds
    for (size_t i = 0; i < kc.size(); ++i)
      kc[i] = bf16_to_f32(f32_to_bf16(kc[i])), vc[i] = bf16_to_f32(f32_to_bf16(vc[i]));
  std::vector<int32_t> table(B * stride);  // shuffled blocks, block 0 unused
  for (int64_t i = 0; i < B * stride; ++i) table[i] = static_cast<int32_t>((i * 7) % (nblocks - 1) + 1);
  const int64_t shared_blocks = std::min(cs.shared / cs.bs, stride);
  for (int64_t b = 1; b < B; ++b)  // a shared prefix: the same blocks, so the same keys/values
    for (int64_t i = 0; i < shared_blocks; ++i) {
      table[b * stride + i] = table[i];
      for (int64_t j = i * cs.bs; j < std::min((i + 1) * cs.bs, L); ++j)
        for (int64_t e = 0; e < KVD; ++e)
          kc[(b * L + j) * KVD + e] = kc[j * KVD + e], vc[(b * L + j) * KVD + e] = vc[j * KVD + e];
    }
  std::vector<float> kp(nblocks * cs.bs * KVD, NAN), vp(nblocks * cs.bs * KVD, NAN);  // unread slots NaN
  std::vector<uint16_t> kh(kp.size(), 0x7fc0), vh(vp.size(), 0x7fc0);
  int64_t off[3], one[3] = {1, 1, 1};
  for (int64_t b = 0; b < B; ++b) {
    off[b] = cs.len[b] - 1;
    for (int64_t j = 0; j < cs.len[b]; ++j) {
      const int64_t row = int64_t(table[b * stride + j / cs.bs]) * cs.bs + j % cs.bs;
      for (int64_t e = 0; e < KVD; ++e) {
        kp[row * KVD + e] = kc[(b * L + j) * KVD + e], vp[row * KVD + e] = vc[(b * L + j) * KVD + e];
        kh[row * KVD + e] = f32_to_bf16(kp[row * KVD + e]), vh[row * KVD + e] = f32_to_bf16(vp[row * KVD + e]);
      }
    }
  }
  cpu::AttentionArgs c;
  c.B = B, c.NH = cs.NH, c.KVH = cs.KVH, c.HD = cs.HD, c.scale = 1.0f / std::sqrt(float(cs.HD)), c.Tq = 1;
  c.q = q.data(), c.ldq = AD, c.k = kc.data(), c.v = vc.data(), c.ldk = c.ldv = KVD, c.kv_stride = L;
  c.kv_offset = off, c.q_len = one, c.window = cs.window, c.softcap = cs.softcap;
  cpu::AttentionArgs p = c;
  p.block_table = table.data(), p.block_size = cs.bs, p.table_stride = stride;
  if (cs.bf16)
    p.k = nullptr, p.v = nullptr, p.k_bf16 = kh.data(), p.v_bf16 = vh.data();
  else
    p.k = kp.data(), p.v = vp.data();
  cpu::AttentionArgs g = p, alone = p;
  g.decode_gather = true;
  alone.decode_share_prefix = false;
  const size_t n = B * AD, nl = B * cs.NH;
  std::vector<float> oi(n), og(n), oc(n), oa(n), ref(n), li(nl), lg(nl), lc(nl), la(nl), lr(nl);
  cpu::attention_forward(p, oi.data(), AD, li.data());
  cpu::attention_forward(g, og.data(), AD, lg.data());
  cpu::attention_forward(c, oc.data(), AD, lc.data());
  cpu::attention_forward(alone, oa.data(), AD, la.data());
  cpu::attention_forward_reference(p, ref.data(), AD, lr.data());
  CHECK(std::memcmp(oi.data(), og.data(), n * 4) == 0);
  CHECK(std::memcmp(li.data(), lg.data(), nl * 4) == 0);
  CHECK(std::memcmp(oi.data(), oa.data(), n * 4) == 0);
  CHECK(std::memcmp(li.data(), la.data(), nl * 4) == 0);
  CHECK(std::memcmp(oi.data(), oc.data(), n * 4) == 0);
  CHECK(std::memcmp(li.data(), lc.data(), nl * 4) == 0);
  for (size_t i = 0; i < n; ++i) CHECK_NEAR(oi[i], ref[i], 2e-6, 1e-5);
  for (size_t i = 0; i < nl; ++i) CHECK_NEAR(li[i], lr[i], 2e-6, 1e-5);
}

const SimdLevel kLevels[] = {SimdLevel::Avx512, SimdLevel::Avx2, SimdLevel::Scalar};

}  // namespace

TEST(attention_decode_in_place_equals_gather_bitwise) {
  unsigned seed = 100;
  for (SimdLevel level : kLevels) {
    set_simd_level_cap(level);  // no effect above what the CPU has
    for (int64_t bs : {int64_t(1), int64_t(3), int64_t(16), int64_t(64)})
      for (int group : {1, 2, 4, 8})
        for (bool bf16 : {false, true}) {
          Case cs{2 * group, 2, 16, bs, {37, 1, 200}, 0, 0.0f, bf16};
          run_case(cs, seed++);
          cs.window = 5, run_case(cs, seed++);
          cs.window = 0, cs.softcap = 1.5f, cs.HD = 80, run_case(cs, seed++);
        }
  }
  set_simd_level_cap(SimdLevel::Avx512);
}

// Sequences longer than the GEMM's depth block (AVX-512: 1024 keys; AVX2/scalar: 256), so the
// P·V chain is merged over several blocks; windows that skip whole blocks and end mid-block.
TEST(attention_decode_in_place_long_and_windowed) {
  unsigned seed = 500;
  for (SimdLevel level : kLevels) {
    set_simd_level_cap(level);
    for (int64_t window : {int64_t(0), int64_t(300), int64_t(1030)})
      for (bool bf16 : {false, true}) {
        Case cs{4, 1, 64, 16, {1300, 257, 1025}, window, window == 300 ? 2.0f : 0.0f, bf16};
        run_case(cs, seed++);
      }
  }
  set_simd_level_cap(SimdLevel::Avx512);
}

// Shared prefixes (the samples of one prompt): the three tables begin with the same blocks, so
// the AVX-512 path decodes them as one cluster over those keys; shared ranges that end inside a
// sequence's last block, cover all of a short sequence, or hold no whole block (bs 64).
TEST(attention_decode_shared_prefix_bitwise) {
  unsigned seed = 900;
  for (SimdLevel level : kLevels) {
    set_simd_level_cap(level);
    for (int64_t bs : {int64_t(1), int64_t(3), int64_t(16), int64_t(64)})
      for (int group : {1, 2, 4})
        for (bool bf16 : {false, true})
          for (int64_t shared : {int64_t(48), int64_t(200)}) {
            Case cs{2 * group, 2, 32, bs, {201, 37, 260}, 0, 0.0f, bf16, shared};
            run_case(cs, seed++);
            cs.softcap = 1.5f, cs.HD = 80, run_case(cs, seed++);
            cs.softcap = 0.0f, cs.HD = 16, cs.window = 40, run_case(cs, seed++);  // windows: one at a time
          }
    // several depth blocks (AVX-512: 1024 keys) under the shared range and past it
    Case cs{4, 1, 64, 16, {1300, 1100, 1250}, 0, 0.0f, false, 1088};
    run_case(cs, seed++);
    cs.bf16 = true, cs.shared = 1000, run_case(cs, seed++);
  }
  set_simd_level_cap(SimdLevel::Avx512);
}

int main() { return run_all_tests(); }
