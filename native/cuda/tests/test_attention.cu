// Attention on the device against the CPU: forward against cpu::attention_forward_reference (plain
// loops in double), backward against cpu::attention_backward (itself checked by finite
// differences in native/tests/test_attention.cc). Cases: fused-QKV training rows with GQA, ragged
// query lengths (padding rows), packed segments, several key tiles, HD not a multiple of 32;
// prefill after a cached prefix (kv_offset); KV-cached decode (Tq = 1, kv_seq remapping); the paged
// KV cache (f32 and bf16 pools, shared blocks, block sizes 1/3/16, windows, soft-cap, padding rows).
// Tolerance (fp32 with online softmax vs double / vs the CPU's blocked fp32): atol 2e-5 + rtol 1e-4.
#include <algorithm>

#include "../../core/dtype.h"
#include "../../cpu/attention.h"
#include "../attention.h"
#include "cuda_test_util.h"

using namespace rlhf_cuda_test;
namespace cpu = rlhf::cpu;

namespace {

struct Case {
  int64_t B;
  int NH, KVH, HD;
  int64_t Tq, kv_stride;
  std::vector<int64_t> q_len, kv_offset, kv_seq;
  bool segments, fused;
  const char* name;
};

void run_case(const Case& c, bool backward) {
  const int64_t qkv_w = int64_t(c.NH + 2 * c.KVH) * c.HD;
  const int64_t ldq = c.fused ? qkv_w : int64_t(c.NH) * c.HD, ldkv = c.fused ? qkv_w : int64_t(c.KVH) * c.HD;
  const int64_t kv_rows =
      (c.kv_seq.empty() ? c.B : 1 + *std::max_element(c.kv_seq.begin(), c.kv_seq.end())) * c.kv_stride;
  std::vector<float> qbuf = random_vector(c.B * c.Tq * ldq), kbuf = random_vector(kv_rows * ldkv),
                     vbuf = random_vector(kv_rows * ldkv);
  if (c.fused) kbuf = vbuf = qbuf;  // one QKV activation: q, k, v are column ranges
  std::vector<int32_t> seg;
  if (c.segments) {
    seg.resize(kv_rows);
    for (int64_t r = 0; r < kv_rows; ++r) seg[r] = static_cast<int32_t>((r % c.kv_stride) / 11);  // segments of 11 keys
  }
  cpu::AttentionArgs a;
  a.B = c.B, a.NH = c.NH, a.KVH = c.KVH, a.HD = c.HD, a.scale = 1.0f / std::sqrt(float(c.HD)), a.Tq = c.Tq;
  a.ldq = ldq, a.ldk = ldkv, a.ldv = ldkv, a.kv_stride = c.kv_stride;
  const int64_t k_off = c.fused ? int64_t(c.NH) * c.HD : 0, v_off = c.fused ? int64_t(c.NH + c.KVH) * c.HD : 0;
  cpu::AttentionArgs h = a;  // host pointers
  h.q = qbuf.data(), h.k = kbuf.data() + k_off, h.v = vbuf.data() + v_off;
  h.q_len = c.q_len.empty() ? nullptr : c.q_len.data();
  h.kv_offset = c.kv_offset.empty() ? nullptr : c.kv_offset.data();
  h.kv_seq = c.kv_seq.empty() ? nullptr : c.kv_seq.data();
  h.segments = c.segments ? seg.data() : nullptr;
  const int64_t ldo = int64_t(c.NH) * c.HD, rows = c.B * c.Tq;
  std::vector<float> out(rows * ldo), lse(rows * c.NH);
  cpu::attention_forward_reference(h, out.data(), ldo, lse.data());

  DeviceArray<float> qd(qbuf), kd(kbuf), vd(vbuf), outd(rows * ldo), lsed(rows * c.NH);
  DeviceArray<int64_t> qlend(c.q_len), offd(c.kv_offset), seqd(c.kv_seq);
  DeviceArray<int32_t> segd(seg);
  cpu::AttentionArgs d = a;  // device pointers
  d.q = qd.ptr, d.k = kd.ptr + k_off, d.v = vd.ptr + v_off;
  d.q_len = c.q_len.empty() ? nullptr : qlend.ptr;
  d.kv_offset = c.kv_offset.empty() ? nullptr : offd.ptr;
  d.kv_seq = c.kv_seq.empty() ? nullptr : seqd.ptr;
  d.segments = c.segments ? segd.ptr : nullptr;
  CHECK_OK(rlhf::cuda::attention_forward(d, outd, ldo, lsed, nullptr));
  EXPECT_CLOSE((std::string(c.name) + ": out").c_str(), outd.download(), out, 2e-5, 1e-4);
  EXPECT_CLOSE((std::string(c.name) + ": lse").c_str(), lsed.download(), lse, 2e-5, 1e-4);
  if (!backward) return;

  // backward against the CPU kernel, from the same (reference) out and lse
  auto dout = random_vector(rows * ldo);
  const int64_t ldg = int64_t(c.KVH) * c.HD;
  std::vector<float> dq(rows * ldo), dk(kv_rows * ldg, 7.0f), dv(kv_rows * ldg, 7.0f);  // 7: rows left untouched
  cpu::attention_backward(h, out.data(), ldo, lse.data(), dout.data(), ldo, dq.data(), ldo, dk.data(), ldg, dv.data(),
                          ldg);
  DeviceArray<float> doutd(dout), dqd(rows * ldo), dkd(std::vector<float>(kv_rows * ldg, 7.0f)),
      dvd(std::vector<float>(kv_rows * ldg, 7.0f));
  DeviceArray<unsigned char> ws(rlhf::cuda::attention_backward_workspace_bytes(d));
  outd.upload(out), lsed.upload(lse);
  CHECK_OK(rlhf::cuda::attention_backward(d, outd, ldo, lsed, doutd, ldo, dqd, ldo, dkd, ldg, dvd, ldg, ws, nullptr));
  EXPECT_CLOSE((std::string(c.name) + ": dq").c_str(), dqd.download(), dq, 2e-5, 1e-4);
  EXPECT_CLOSE((std::string(c.name) + ": dk").c_str(), dkd.download(), dk, 2e-5, 1e-4);
  EXPECT_CLOSE((std::string(c.name) + ": dv").c_str(), dvd.download(), dv, 2e-5, 1e-4);
}

}  // namespace

TEST(cuda_attention_training_rows) {
  run_case({2, 4, 2, 16, 37, 37, {37, 20}, {}, {}, false, true, "gqa fused ragged"}, true);
  run_case({1, 2, 2, 64, 70, 70, {}, {}, {}, false, false, "mha three key tiles"}, true);
  run_case({2, 3, 1, 40, 45, 45, {45, 33}, {}, {}, true, true, "segments, HD 40"}, true);
}

TEST(cuda_attention_prefill_after_cached_prefix) {
  run_case({2, 4, 2, 32, 5, 16, {5, 3}, {7, 11}, {}, false, false, "prefill at offset"}, true);
}

TEST(cuda_attention_kv_cached_decode) {
  run_case({2, 6, 2, 40, 1, 50, {}, {10, 45}, {1, 0}, false, false, "decode, remapped kv"}, false);
  run_case({3, 8, 8, 128, 1, 300, {}, {0, 150, 299}, {}, false, false, "decode, long cache"}, false);
}

TEST(cuda_attention_rejects_bad_shapes) {
  cpu::AttentionArgs a;
  a.B = 1, a.NH = 3, a.KVH = 2, a.HD = 8, a.Tq = 1;
  DeviceArray<float> o(64);
  CHECK(!rlhf::cuda::attention_forward(a, o, 24, nullptr, nullptr).ok());
  a.NH = 2, a.HD = 512;
  CHECK(!rlhf::cuda::attention_forward(a, o, 24, nullptr, nullptr).ok());
}

// ---- paged KV cache (forward only): keys/values in a pool of blocks (f32, or bf16 bits), each
// sequence's block-table row listing its blocks in a shuffled order with spare entries after them;
// with `share`, sequence 1's leading blocks are sequence 0's (the same block ids). Against
// cpu::attention_forward_reference on the same paged arguments (double loops, widening bf16 the
// same way), with the tolerance above. Scale 1 so that the soft-cap bites.
namespace {

struct PagedCase {
  int64_t B;
  int NH, KVH, HD;
  int64_t Tq, block_size;
  std::vector<int64_t> q_len, kv_offset;
  int64_t window;
  float softcap;
  bool bf16, share;
  const char* name;
};

void run_paged(const PagedCase& c) {
  const int64_t bs = c.block_size, KVD = int64_t(c.KVH) * c.HD, ldq = int64_t(c.NH) * c.HD;
  std::vector<int64_t> blocks(c.B);
  int64_t stride = 1, total = 2;  // two blocks nobody reads
  for (int64_t b = 0; b < c.B; ++b) {
    const int64_t qlen = c.q_len.empty() ? c.Tq : c.q_len[b];
    blocks[b] = (c.kv_offset[b] + qlen + bs - 1) / bs;
    stride = std::max(stride, blocks[b] + 1);
    total += blocks[b];
  }
  std::vector<int32_t> ids(total);
  for (int64_t i = 0; i < total; ++i) ids[i] = static_cast<int32_t>(i);
  std::shuffle(ids.begin(), ids.end(), rng());
  std::vector<int32_t> table(c.B * stride, 0);
  for (int64_t b = 0, next = 0; b < c.B; ++b)
    for (int64_t e = 0; e < blocks[b]; ++e) table[b * stride + e] = ids[next++];
  int64_t shared = 0;
  if (c.share && c.B >= 2)
    for (; shared < std::min(blocks[0], blocks[1]); ++shared) table[stride + shared] = table[shared];
  CHECK(!c.share || shared >= 1);
  const int64_t pool_rows = total * bs;
  std::vector<float> kf = random_vector(pool_rows * KVD), vf = random_vector(pool_rows * KVD);
  std::vector<uint16_t> kh(kf.size()), vh(vf.size());
  for (size_t i = 0; i < kf.size(); ++i) kh[i] = rlhf::f32_to_bf16(kf[i]), vh[i] = rlhf::f32_to_bf16(vf[i]);
  std::vector<float> q = random_vector(c.B * c.Tq * ldq);

  cpu::AttentionArgs a;
  a.B = c.B, a.NH = c.NH, a.KVH = c.KVH, a.HD = c.HD, a.scale = 1.0f, a.Tq = c.Tq, a.ldq = ldq;
  a.ldk = a.ldv = KVD, a.kv_stride = bs, a.window = c.window, a.softcap = c.softcap;
  a.block_size = bs, a.table_stride = stride;
  cpu::AttentionArgs h = a;
  h.q = q.data(), h.kv_offset = c.kv_offset.data(), h.q_len = c.q_len.empty() ? nullptr : c.q_len.data();
  h.block_table = table.data();
  if (c.bf16)
    h.k_bf16 = kh.data(), h.v_bf16 = vh.data();
  else
    h.k = kf.data(), h.v = vf.data();
  const int64_t rows = c.B * c.Tq;
  std::vector<float> out(rows * ldq), lse(rows * c.NH);
  cpu::attention_forward_reference(h, out.data(), ldq, lse.data());

  DeviceArray<float> qd(q), kd(kf), vd(vf), outd(rows * ldq), lsed(rows * c.NH);
  DeviceArray<uint16_t> khd(kh), vhd(vh);
  DeviceArray<int64_t> offd(c.kv_offset), qlend(c.q_len);
  DeviceArray<int32_t> tabled(table);
  cpu::AttentionArgs d = a;
  d.q = qd.ptr, d.kv_offset = offd.ptr, d.q_len = c.q_len.empty() ? nullptr : qlend.ptr, d.block_table = tabled.ptr;
  if (c.bf16)
    d.k_bf16 = khd.ptr, d.v_bf16 = vhd.ptr;
  else
    d.k = kd.ptr, d.v = vd.ptr;
  CHECK_OK(rlhf::cuda::attention_forward(d, outd, ldq, lsed, nullptr));
  EXPECT_CLOSE((std::string(c.name) + ": out").c_str(), outd.download(), out, 2e-5, 1e-4);
  EXPECT_CLOSE((std::string(c.name) + ": lse").c_str(), lsed.download(), lse, 2e-5, 1e-4);
}

}  // namespace

TEST(cuda_attention_paged_decode) {
  run_paged({3, 8, 2, 64, 1, 16, {}, {40, 17, 0}, 0, 0.0f, false, true, "paged decode, bs 16, shared"});
  run_paged({3, 4, 4, 32, 1, 1, {1, 0, 1}, {9, 30, 33}, 0, 0.0f, true, true, "paged decode, bs 1, bf16, pad"});
  run_paged({2, 6, 3, 40, 1, 3, {}, {25, 11}, 7, 1.5f, false, false, "paged decode, bs 3, window, softcap"});
  run_paged({2, 4, 1, 16, 1, 3, {}, {70, 70}, 0, 0.0f, true, true, "paged decode, bs 3, bf16, 3 tiles"});
}

TEST(cuda_attention_paged_prefill_chunks) {
  run_paged({3, 4, 2, 32, 6, 3, {6, 2, 4}, {5, 0, 11}, 0, 0.0f, true, true, "paged prefill, bs 3, bf16, pad"});
  run_paged({2, 4, 1, 40, 20, 16, {20, 13}, {18, 3}, 9, 2.0f, false, true, "paged prefill, bs 16, window, softcap"});
  run_paged({2, 2, 2, 24, 5, 1, {5, 3}, {7, 36}, 4, 0.0f, true, false, "paged prefill, bs 1, bf16, window"});
  run_paged({2, 4, 2, 16, 3, 3, {3, 1}, {4, 9}, 0, 0.0f, false, true, "paged prefill, Tq 3 (3 warps a block)"});
}

TEST(cuda_attention_paged_rejects_bad_arguments) {
  DeviceArray<float> buf(256);
  DeviceArray<int32_t> table(std::vector<int32_t>{0, 1});
  cpu::AttentionArgs a;
  a.B = 1, a.NH = 2, a.KVH = 2, a.HD = 8, a.Tq = 1, a.q = a.k = a.v = buf.ptr, a.ldq = a.ldk = a.ldv = 16;
  a.block_table = table.ptr, a.block_size = 0, a.table_stride = 2;
  CHECK(!rlhf::cuda::attention_forward(a, buf, 16, nullptr, nullptr).ok());  // block_size 0
  a.block_size = 4, a.softcap = -1.0f;
  CHECK(!rlhf::cuda::attention_forward(a, buf, 16, nullptr, nullptr).ok());  // softcap < 0
  a.softcap = 0.0f, a.k_bf16 = reinterpret_cast<const uint16_t*>(buf.ptr);
  CHECK(!rlhf::cuda::attention_forward(a, buf, 16, nullptr, nullptr).ok());  // k_bf16 without v_bf16
  a.k_bf16 = nullptr, a.block_table = nullptr, a.v_bf16 = reinterpret_cast<const uint16_t*>(buf.ptr);
  CHECK(!rlhf::cuda::attention_forward(a, buf, 16, nullptr, nullptr).ok());  // bf16 without a table
  a.v_bf16 = nullptr, a.window = 3;  // the backward has no window (nor table, nor soft-cap)
  DeviceArray<unsigned char> ws(rlhf::cuda::attention_backward_workspace_bytes(a));
  CHECK(!rlhf::cuda::attention_backward(a, buf, 16, buf, buf, 16, buf, 16, buf, 16, buf, 16, ws, nullptr).ok());
}
