#include "layout.h"

namespace rlhf {
namespace model {

ParamLayout build_layout(const ModelConfig& c) {
  ParamLayout L;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float wd = 1.0f) {
    ParamView v;
    v.name = name;
    v.shape = std::move(shape);
    v.size = 1;
    for (int64_t d : v.shape) v.size *= d;
    v.offset = L.total;
    v.weight_decay_scale = wd;
    L.total += v.size;
    L.views.push_back(v);
    return v.offset;
  };
  const int64_t C = c.hidden, qd = int64_t(c.heads) * c.head_dim, kvd = int64_t(c.kv_heads) * c.head_dim;
  L.embed = add("model.embed_tokens.weight", {c.vocab, C});
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerOffsets o{};
    o.in_norm = add(p + "input_layernorm.weight", {C}, 0.0f);
    o.wqkv = add(p + "self_attn.q_proj.weight", {qd, C});
    add(p + "self_attn.k_proj.weight", {kvd, C});
    add(p + "self_attn.v_proj.weight", {kvd, C});
    o.bqkv = -1;
    if (c.qkv_bias) {
      o.bqkv = add(p + "self_attn.q_proj.bias", {qd}, 0.0f);
      add(p + "self_attn.k_proj.bias", {kvd}, 0.0f);
      add(p + "self_attn.v_proj.bias", {kvd}, 0.0f);
    }
    o.wo = add(p + "self_attn.o_proj.weight", {C, qd});
    o.bo = c.o_bias ? add(p + "self_attn.o_proj.bias", {C}, 0.0f) : -1;
    o.post_norm = add(p + "post_attention_layernorm.weight", {C}, 0.0f);
    if (c.fused_gate_up) {
      o.wgu = add(p + "mlp.gate_up_proj.weight", {2 * int64_t(c.ffn), C});
    } else {
      o.wgu = add(p + "mlp.gate_proj.weight", {c.ffn, C});
      add(p + "mlp.up_proj.weight", {c.ffn, C});
    }
    o.wdown = add(p + "mlp.down_proj.weight", {C, c.ffn});
    L.layers.push_back(o);
  }
  L.final_norm = add("model.norm.weight", {C}, 0.0f);
  if (c.lm_head) L.lm_head = c.tie_embeddings ? L.embed : add("lm_head.weight", {c.vocab, C});
  if (c.value_head) L.score = add("score.weight", {1, C});
  return L;
}

}  // namespace model
}  // namespace rlhf
