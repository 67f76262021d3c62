// Paged decode of a batch (attention_internal.h: decode_paged_batch), with shared-prefix
// clusters: sequences whose block tables begin with the same blocks (the n samples of one prompt,
// prompts behind one cached system prompt) read those keys/values once for the whole cluster.
//
// Bits: every score and output element is computed by the same chain as attention_decode.cc's
// one-sequence kernel (which is the gather path's GEMM arithmetic): score s_j = scale·(sequential
// FMA chain over d from +0); output o_d = chain over keys j in depth blocks of kc keys from +0,
// each block's chain merged as c (first) or c + o. A cluster only changes which loop issues a
// chain's steps, not their order, so results are bitwise those of each sequence alone: they do not
// depend on what else is in the batch.
//
// The chunked kernel (decode_cluster, clusters of one included) runs where the AVX-512 kernel
// does, head_dim <= kc and the query sees no more keys than a sliding window holds; clusters need
// at least kMinShared shared keys. Otherwise a sequence runs attention_decode.cc's kernel alone.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "../core/cpu_features.h"
#include "../core/thread_pool.h"
#include "attention_decode_avx512.h"
#include "gemm_microkernels.h"

namespace rlhf {
namespace cpu {
namespace attention_internal {

namespace {

constexpr int64_t kMinShared = 16;                // keys: fewer shared keys are not worth a cluster
constexpr int64_t kMaxMembers = 16;               // sequences per cluster (more are split into several)
constexpr int64_t kAheadV = 12;                   // value rows prefetched ahead of the P·V chains
constexpr int64_t kMaxScores = int64_t(1) << 22;  // floats of a cluster's score rows (16 MiB of scratch)

struct Member {
  int64_t b, kv_end;  // query sequence, keys it reads (its query sits at kv_end − 1)
  const int32_t* table;
};

// acc_q ← acc_q + Σ_{j in [j0, j1)} p_q[j] · v_j[d0 .. d0 + 16·NV) in key order (one FMA chain per
// lane), for the nq queries whose probability rows are prow[q] and chain states state[q] (64 floats:
// read unless from_zero, then written). Keys are read through `table`.
template <int QN, int NV>
RLHF_AVX512 void pv_chain(const AttentionArgs& a, const int32_t* table, int64_t g, int d0, int64_t j0, int64_t j1,
                          const float* const* prow, int nq, float* const* state, bool from_zero, const __mmask16* m,
                          bool whole_rows, int64_t pf_limit) {
  const int64_t bs = a.block_size, vsz = a.v_bf16 ? 2 : 4;
  const char* vbase = a.v_bf16 ? reinterpret_cast<const char*>(a.v_bf16) : reinterpret_cast<const char*>(a.v);
  // prefetched per row: the bytes this chain reads, or the whole row (every head) for the heads after
  const int64_t pf_from = whole_rows ? 0 : (g * a.HD + d0) * vsz,
                pf_bytes = whole_rows ? a.ldv * vsz : std::min<int64_t>(16 * NV, a.HD - d0) * vsz;
  auto prefetch_row = [&](int64_t j) {
    const char* row = vbase + paged_row(a, table, j) * a.ldv * vsz + pf_from;
    for (int64_t by = 0; by < pf_bytes; by += 64) _mm_prefetch(row + by, _MM_HINT_T1);
  };
  for (int q0 = 0; q0 < nq; q0 += QN) {
    const int qn = std::min(QN, nq - q0);
    __m512 acc[QN][NV];
#pragma GCC unroll 16
    for (int q = 0; q < QN; ++q)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        acc[q][v] = (from_zero || q >= qn) ? _mm512_setzero_ps() : _mm512_loadu_ps(state[q0 + q] + 16 * v);
    if (q0 == 0)
      for (int64_t j = j0; j < std::min(pf_limit, j0 + kAheadV); ++j) prefetch_row(j);
    for (int64_t j = j0; j < j1;) {
      const int64_t n = std::min(bs - j % bs, j1 - j);
      int64_t at = paged_row(a, table, j) * a.ldv + g * a.HD + d0;
      for (int64_t i = 0; i < n; ++i, at += a.ldv) {
        if (q0 == 0 && j + i + kAheadV < pf_limit) prefetch_row(j + i + kAheadV);
        __m512 vv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) vv[v] = load_v16(a, at + 16 * v, m[v]);
#pragma GCC unroll 16
        for (int q = 0; q < QN; ++q) {
          if (q >= qn) break;
          const __m512 pj = _mm512_set1_ps(prow[q0 + q][j + i]);
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[q][v] = _mm512_fmadd_ps(pj, vv[v], acc[q][v]);
        }
      }
      j += n;
    }
#pragma GCC unroll 16
    for (int q = 0; q < QN; ++q) {
      if (q >= qn) break;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) _mm512_storeu_ps(state[q0 + q] + 16 * v, acc[q][v]);
    }
  }
}

// pv_chain with the widest register tile for the vectors that dims [d0, d0 + 64) need.
RLHF_AVX512 void pv_chain_any(const AttentionArgs& a, const int32_t* table, int64_t g, int d0, int64_t j0, int64_t j1,
                              const float* const* prow, int nq, float* const* state, bool from_zero, const __mmask16* m,
                              bool whole_rows, int64_t pf_limit) {
  const int nv = (m[0] != 0) + (m[1] != 0) + (m[2] != 0) + (m[3] != 0);
  if (nv <= 1) return pv_chain<16, 1>(a, table, g, d0, j0, j1, prow, nq, state, from_zero, m, whole_rows, pf_limit);
  if (nv == 2) return pv_chain<8, 2>(a, table, g, d0, j0, j1, prow, nq, state, from_zero, m, whole_rows, pf_limit);
  return pv_chain<4, 4>(a, table, g, d0, j0, j1, prow, nq, state, from_zero, m, whole_rows, pf_limit);
}

// Decode of the cluster's members (M >= 1) for every head: keys [0, L) are shared (the same pool
// rows for every member; L may be 0), keys [L, kv_end_m) are member m's own. Keys go in chunks of 64
// with every kv head done on a chunk before the next chunk, so each pool row is read whole and in
// order (a row interleaves the heads). out/lse rows of the members overwritten.
RLHF_AVX512 void decode_cluster(const AttentionArgs& a, const Member* mem, int M, int64_t L, float* out, int64_t ldo,
                                float* lse, int64_t kc) {
  const int group = a.NH / a.KVH, HD = a.HD, KVH = a.KVH, Q = M * a.NH;
  // query index qi = (g·M + m)·group + r: head g·group + r of member m, so the queries of one kv
  // head are consecutive over the cluster, and those of one member within it too
  auto qi_of = [&](int64_t g, int m, int r) { return static_cast<int>((g * M + m) * group + r); };
  int64_t ldS = 0;
  for (int m = 0; m < M; ++m) ldS = std::max(ldS, mem[m].kv_end);
  float* S = scratch(3, static_cast<size_t>(Q) * ldS);
  float* tile = scratch(4, static_cast<size_t>(HD * 64 + 16));
  tile = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(tile) + 63) & ~uintptr_t(63));
  float* C = scratch(6, static_cast<size_t>(Q) * 64);
  std::vector<const float*> q(Q), prow(Q);
  std::vector<float*> state(Q), orow(Q);
  for (int64_t g = 0; g < KVH; ++g)
    for (int m = 0; m < M; ++m)
      for (int r = 0; r < group; ++r) {
        const int qi = qi_of(g, m, r);
        const int64_t h = g * group + r;
        q[qi] = a.q + mem[m].b * a.Tq * a.ldq + h * HD;
        orow[qi] = out + mem[m].b * a.Tq * ldo + h * HD;
        prow[qi] = S + qi * ldS;
        state[qi] = C + qi * 64;
      }
  // scores: the shared keys once for every member's queries, then each member's own keys
  for (int64_t j0 = 0; j0 < L; j0 += 64) {
    const int n = static_cast<int>(std::min<int64_t>(64, L - j0));
    for (int64_t g = 0; g < KVH; ++g) {
      transpose_keys64(a, g, mem[0].table, j0, n, L, tile, g == 0);
      for (int i = 0; i < M * group; ++i) {
        const int qi = qi_of(g, 0, i);
        scores_from_tile(a, tile, n, q[qi], S + qi * ldS + j0);
      }
    }
  }
  for (int m = 0; m < M; ++m)
    for (int64_t j0 = L; j0 < mem[m].kv_end; j0 += 64) {
      const int n = static_cast<int>(std::min<int64_t>(64, mem[m].kv_end - j0));
      for (int64_t g = 0; g < KVH; ++g) {
        transpose_keys64(a, g, mem[m].table, j0, n, mem[m].kv_end, tile, g == 0);
        for (int r = 0; r < group; ++r) {
          const int qi = qi_of(g, m, r);
          scores_from_tile(a, tile, n, q[qi], S + qi * ldS + j0);
        }
      }
    }
  for (int64_t g = 0; g < KVH; ++g)
    for (int m = 0; m < M; ++m)
      for (int r = 0; r < group; ++r) {
        float* s = S + qi_of(g, m, r) * ldS;
        if (a.softcap > 0) softcap_row(s, mem[m].kv_end - 1, a.softcap, nullptr);
        const float l = softmax_row(s, mem[m].kv_end - 1, mem[m].kv_end);
        if (lse) lse[mem[m].b * a.Tq * a.NH + g * group + r] = l;
      }
  // P·V per depth block [pb, pb + kc) (its chains start at +0 and merge into the output as c or
  // c + o), in chunks of 64 keys: the shared part for every member, then each member's own part
  for (int d0 = 0; d0 < HD; d0 += 64) {
    __mmask16 mk[4];
    dim_masks(HD, d0, mk);
    for (int64_t pb = 0; pb < ldS; pb += kc) {
      const int64_t pe = pb + kc;
      for (int64_t c0 = pb; c0 < std::min(pe, L); c0 += 64) {
        const int64_t c1 = std::min({c0 + 64, pe, L});
        for (int64_t g = 0; g < KVH; ++g)
          pv_chain_any(a, mem[0].table, g, d0, c0, c1, &prow[qi_of(g, 0, 0)], M * group, &state[qi_of(g, 0, 0)],
                       c0 == pb, mk, g == 0, L);
      }
      for (int m = 0; m < M; ++m) {
        if (pb >= mem[m].kv_end) continue;
        const int64_t e = std::min(pe, mem[m].kv_end);
        for (int64_t c0 = std::max(pb, L); c0 < e; c0 += 64) {
          const int64_t c1 = std::min(c0 + 64, e);
          for (int64_t g = 0; g < KVH; ++g)
            pv_chain_any(a, mem[m].table, g, d0, c0, c1, &prow[qi_of(g, m, 0)], group, &state[qi_of(g, m, 0)], c0 == pb,
                         mk, g == 0, mem[m].kv_end);
        }
        for (int64_t g = 0; g < KVH; ++g)
          for (int r = 0; r < group; ++r) {
            const int qi = qi_of(g, m, r);
            float* o = orow[qi] + d0;
            for (int v = 0; v < 4; ++v) {
              if (!mk[v]) continue;
              const __m512 cv = _mm512_loadu_ps(state[qi] + 16 * v);
              _mm512_mask_storeu_ps(o + 16 * v, mk[v],
                                    pb == 0 ? cv : _mm512_add_ps(cv, _mm512_maskz_loadu_ps(mk[v], o + 16 * v)));
            }
          }
      }
    }
  }
}

// A unit of work: members [first, first + count) of the sorted list, sharing `shared` keys.
struct Task {
  int64_t first, count, shared;
};

}  // namespace

void decode_paged_batch(const AttentionArgs& a, float* out, int64_t ldo, float* lse) {
  const int64_t kc = gemm_select_kernel().kc;
  // the chunked kernel: AVX-512, head_dim within one depth block, and no key the window masks
  // (a query that sees fewer keys than the window reads exactly what it would without one)
  const bool fast = simd_level() == SimdLevel::Avx512 && a.HD <= kc;
  std::vector<Member> mem, alone;  // alone: decoded by decode_paged_in_place
  mem.reserve(a.B);
  std::vector<int64_t> padding;
  for (int64_t b = 0; b < a.B; ++b) {
    const int64_t qlen = a.q_len ? a.q_len[b] : a.Tq;
    const int64_t kv_end = qlen >= 1 ? (a.kv_offset ? a.kv_offset[b] : 0) + 1 : 0;
    const int32_t* table = paged_table(a, b, kv_end);
    if (kv_end == 0)
      padding.push_back(b);
    else if (fast && (a.window == 0 || kv_end <= a.window))
      mem.push_back({b, kv_end, table});
    else
      alone.push_back({b, kv_end, table});
  }
  std::vector<Task> tasks;  // over mem: clusters of equal first blocks and the blocks they all share
  if (a.decode_share_prefix)
    std::stable_sort(mem.begin(), mem.end(), [](const Member& x, const Member& y) { return x.table[0] < y.table[0]; });
  const int64_t n = static_cast<int64_t>(mem.size());
  for (int64_t i0 = 0, i1; i0 < n; i0 = i1) {
    int64_t L = mem[i0].kv_end, widest = mem[i0].kv_end;
    for (i1 = i0 + 1; a.decode_share_prefix && i1 < n && i1 - i0 < kMaxMembers && mem[i1].table[0] == mem[i0].table[0];
         ++i1) {
      widest = std::max(widest, mem[i1].kv_end);
      if ((i1 - i0 + 1) * a.NH * widest > kMaxScores) break;  // the cluster's score rows stay bounded
      int64_t common = 0;
      const int64_t blocks = (std::min(L, mem[i1].kv_end) + a.block_size - 1) / a.block_size;
      while (common < blocks && mem[i1].table[common] == mem[i0].table[common]) ++common;
      L = std::min({L, common * a.block_size, mem[i1].kv_end});
    }
    if (i1 - i0 >= 2 && L >= kMinShared)
      tasks.push_back({i0, i1 - i0, L});
    else
      for (int64_t i = i0; i < i1; ++i) tasks.push_back({i, 1, 0});
  }
  // Every task (a cluster, or a sequence alone) writes only its own rows and uses thread-local
  // scratch, so tasks can go to whichever thread is free: largest first, taken from a shared
  // counter — no thread waits on a static share when clusters differ in size or a core is busy.
  struct Job {
    int64_t task;  // index into tasks, or tasks.size() + index into alone
    double cost;   // ~ key rows read + score/P·V work
  };
  const int64_t nt = static_cast<int64_t>(tasks.size()), nj = nt + static_cast<int64_t>(alone.size());
  std::vector<Job> jobs(nj);
  for (int64_t t = 0; t < nt; ++t) {
    double rows = static_cast<double>(tasks[t].shared), work = 0;
    for (int64_t i = tasks[t].first; i < tasks[t].first + tasks[t].count; ++i)
      rows += static_cast<double>(mem[i].kv_end - tasks[t].shared), work += static_cast<double>(mem[i].kv_end);
    jobs[t] = {t, rows + 0.25 * work};
  }
  for (int64_t i = 0; i < static_cast<int64_t>(alone.size()); ++i)
    jobs[nt + i] = {nt + i, 1.25 * static_cast<double>(alone[i].kv_end)};
  std::stable_sort(jobs.begin(), jobs.end(), [](const Job& x, const Job& y) { return x.cost > y.cost; });
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(nj, current_pool().size());
  parallel_for(workers, 1, [&](int64_t, int64_t, int) {
    for (int64_t j; (j = next.fetch_add(1, std::memory_order_relaxed)) < nj;) {
      const int64_t t = jobs[j].task;
      if (t < nt) {
        decode_cluster(a, &mem[tasks[t].first], static_cast<int>(tasks[t].count), tasks[t].shared, out, ldo, lse, kc);
      } else {
        const Member& s = alone[t - nt];
        decode_paged_in_place(a, s.b, s.kv_end, s.table, out, ldo, lse);
      }
    }
  });
  for (int64_t b : padding) {  // padding query: zeros
    for (int64_t h = 0; h < a.NH; ++h) {
      std::fill(out + b * a.Tq * ldo + h * a.HD, out + b * a.Tq * ldo + (h + 1) * a.HD, 0.0f);
      if (lse) lse[b * a.Tq * a.NH + h] = 0.0f;
    }
  }
}

}  // namespace attention_internal
}  // namespace cpu
}  // namespace rlhf
