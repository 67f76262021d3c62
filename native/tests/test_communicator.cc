// native/core/communicator: the CPU (thread-rank) collectives against plain loops, for 1–4 ranks
// and sizes that do not divide evenly; rank-order sums are bit-identical on every rank; an aborted
// rank releases the others with an error instead of a hang.
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "../core/communicator.h"
#include "../core/error.h"
#include "check.h"

using namespace rlhf;

namespace {
void on_ranks(CpuGroup& g, const std::function<void(Communicator&)>& fn) {
  std::vector<std::thread> t;
  for (int r = 0; r < g.size(); ++r) t.emplace_back([&, r] { fn(g.rank(r)); });
  for (auto& x : t) x.join();
}
float value(int rank, int64_t i) {
  return std::sin(0.37f * static_cast<float>(i) + static_cast<float>(rank)) * (rank + 1);
}
}  // namespace

TEST(all_reduce_sum_and_max_match_plain_loops) {
  for (int P : {1, 2, 3, 4})
    for (int64_t n : {1, 7, 1000}) {
      CpuGroup g(P);
      std::vector<std::vector<float>> sum(P), mx(P);
      on_ranks(g, [&](Communicator& c) {
        const int r = c.rank();
        sum[r].resize(n), mx[r].resize(n);
        for (int64_t i = 0; i < n; ++i) sum[r][i] = mx[r][i] = value(r, i);
        c.all_reduce_sum(sum[r].data(), n);
        c.all_reduce_max(mx[r].data(), n);
      });
      for (int64_t i = 0; i < n; ++i) {
        float s = value(0, i), m = value(0, i);
        for (int r = 1; r < P; ++r) s += value(r, i), m = std::max(m, value(r, i));
        for (int r = 0; r < P; ++r) {
          CHECK(sum[r][i] == s);  // rank-order sum: bit-identical to the plain loop on every rank
          CHECK(mx[r][i] == m);
        }
      }
    }
}

TEST(all_gather_broadcast_barrier) {
  for (int P : {1, 2, 4}) {
    CpuGroup g(P);
    const int64_t n = 5;
    std::vector<std::vector<float>> got(P), b(P);
    on_ranks(g, [&](Communicator& c) {
      const int r = c.rank();
      std::vector<float> mine(n);
      for (int64_t i = 0; i < n; ++i) mine[i] = value(r, i);
      got[r].resize(P * n);
      c.all_gather(mine.data(), n, got[r].data());
      b[r] = mine;
      c.broadcast(b[r].data(), n, P - 1);
      for (int k = 0; k < 100; ++k) c.barrier();
    });
    for (int r = 0; r < P; ++r)
      for (int q = 0; q < P; ++q)
        for (int64_t i = 0; i < n; ++i) {
          CHECK(got[r][q * n + i] == value(q, i));
          CHECK(b[r][i] == value(P - 1, i));
        }
  }
}

TEST(an_aborted_rank_releases_the_others) {
  CpuGroup g(3);
  std::vector<int> threw(3, 0);
  on_ranks(g, [&](Communicator& c) {
    std::vector<float> x(10, 1.0f);
    try {
      if (c.rank() == 1) {
        c.abort();  // fails before its collective
        return;
      }
      c.all_reduce_sum(x.data(), 10);
    } catch (const Error& e) {
      threw[c.rank()] = e.code() == ErrorCode::Internal ? 1 : 2;
    }
  });
  CHECK(threw[0] == 1 && threw[2] == 1);
  g.reset();  // usable again
  std::vector<float> ok(3);
  on_ranks(g, [&](Communicator& c) {
    float x = 1.0f;
    c.all_reduce_sum(&x, 1);
    ok[c.rank()] = x;
  });
  CHECK(ok[0] == 3.0f && ok[1] == 3.0f && ok[2] == 3.0f);
}

int main() { return rlhf_test::run_all_tests(); }
