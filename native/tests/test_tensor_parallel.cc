// native/model/tensor_parallel: the ShardPlan both tensor-parallel groups (thread ranks,
// TensorParallelModel; MPI processes, ProcessTensorParallelModel) cut tensors with. For every
// parameter, the pieces of the ranks that count it in the gradient norm cover each element of the
// full tensor exactly once (uneven FFN and vocabulary splits, fused gate_up, KV heads split and
// replicated), and cutting then gathering every rank's piece gives the full tensor back.
#include <cstdio>
#include <cstring>
#include <vector>

#include "../core/error.h"
#include "../model/config.h"
#include "../model/layout.h"
#include "../model/tensor_parallel.h"
#include "check.h"

using namespace rlhf;
using namespace rlhf::model;

namespace {
ModelConfig config(int heads, int kv_heads, int ffn, int64_t vocab, bool fused) {
  ModelConfig c;
  c.architecture = fused ? "Glm4ForCausalLM" : "LlamaForCausalLM";
  c.vocab = vocab, c.hidden = 8 * heads, c.layers = 2, c.heads = heads, c.kv_heads = kv_heads, c.head_dim = 8;
  c.ffn = ffn, c.rotary_dim = 8, c.qkv_bias = true, c.fused_gate_up = fused, c.max_positions = 64;
  return c;
}

void check_plan(const ModelConfig& c, int P) {
  const ShardPlan plan(c, P);
  const ParamLayout full = build_layout(c);
  std::vector<ParamLayout> shards;
  for (int r = 0; r < P; ++r) shards.push_back(build_layout(plan.shard_config(r)));
  for (size_t i = 0; i < full.views.size(); ++i) {
    const ParamView& fv = full.views[i];
    std::vector<float> index(static_cast<size_t>(fv.size)), count(index.size(), 0.0f), back(index.size(), -1.0f);
    for (int64_t j = 0; j < fv.size; ++j) index[j] = static_cast<float>(j);
    for (int r = 0; r < P; ++r) {
      const ParamView& sv = shards[r].views[i];
      CHECK(sv.name == fv.name);
      std::vector<float> piece(static_cast<size_t>(sv.size), -1.0f);
      plan.copy_piece(fv, sv, r, index.data(), piece.data(), true);
      for (float x : piece) CHECK(x >= 0);  // every element of the piece comes from the full tensor
      if (plan.counts_in_norm(fv, r))
        for (float x : piece) count[static_cast<size_t>(x)] += 1.0f;
      plan.copy_piece(fv, sv, r, back.data(), piece.data(), false);
    }
    for (int64_t j = 0; j < fv.size; ++j) {
      const bool once = count[j] == 1.0f, gathered = back[j] == static_cast<float>(j);
      if (!once || !gathered)
        std::fprintf(stderr, "P=%d %s element %lld: counted %g times, gathered %g\n", P, fv.name.c_str(),
                     static_cast<long long>(j), count[j], back[j]);
      CHECK(once);
      CHECK(gathered);
      if (!once || !gathered) return;
    }
  }
}
}  // namespace

TEST(shard_pieces_tile_every_tensor_once) {
  check_plan(config(4, 2, 75, 61, false), 2);  // KV heads split, FFN and vocabulary uneven
  check_plan(config(4, 1, 75, 61, false), 2);  // one KV head replicated on both ranks
  check_plan(config(8, 2, 50, 97, false), 4);  // KV heads replicated in pairs
  check_plan(config(6, 3, 50, 61, true), 3);   // three ranks, fused gate_up_proj
  check_plan(config(4, 4, 9, 5, false), 4);    // vocabulary and FFN barely above the rank count
}

TEST(shard_plan_refuses_sizes_it_cannot_cut) {
  CHECK_THROWS(ShardPlan(config(4, 2, 75, 61, false), 3), ErrorCode::Unsupported);  // 3 does not divide 4 heads
  CHECK_THROWS(ShardPlan(config(4, 4, 3, 61, false), 4), ErrorCode::Unsupported);   // FFN 3 < 4 ranks
  CHECK_THROWS(ShardPlan(config(4, 2, 75, 61, false), 0), ErrorCode::OutOfRange);
}

int main() { return rlhf_test::run_all_tests(); }
