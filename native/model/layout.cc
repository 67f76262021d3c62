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
    o.q_norm = o.k_norm = o.attn_out_norm = o.mlp_out_norm = -1;
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
    if (c.qk_norm) {
      o.q_norm = add(p + "self_attn.q_norm.weight", {c.head_dim}, 0.0f);
      o.k_norm = add(p + "self_attn.k_norm.weight", {c.head_dim}, 0.0f);
    }
    const bool gemma = c.sandwich_norms == kSandwichGemma, glm4 = c.sandwich_norms == kSandwichGlm4;
    if (gemma) o.attn_out_norm = add(p + "post_attention_layernorm.weight", {C}, 0.0f);
    if (glm4) o.attn_out_norm = add(p + "post_self_attn_layernorm.weight", {C}, 0.0f);
    o.post_norm = add(p + (gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"), {C}, 0.0f);
    if (c.fused_gate_up) {
      o.wgu = add(p + "mlp.gate_up_proj.weight", {2 * int64_t(c.ffn), C});
    } else {
      o.wgu = add(p + "mlp.gate_proj.weight", {c.ffn, C});
      add(p + "mlp.up_proj.weight", {c.ffn, C});
    }
    o.wdown = add(p + "mlp.down_proj.weight", {C, c.ffn});
    if (gemma) o.mlp_out_norm = add(p + "post_feedforward_layernorm.weight", {C}, 0.0f);
    if (glm4) o.mlp_out_norm = add(p + "post_mlp_layernorm.weight", {C}, 0.0f);
    L.layers.push_back(o);
  }
  L.final_norm = add("model.norm.weight", {C}, 0.0f);
  if (c.lm_head) L.lm_head = c.tie_embeddings ? L.embed : add("lm_head.weight", {c.vocab, C});
  if (c.value_head) L.score = add("score.weight", {1, C});
  L.trainable_begin = c.lora_rank > 0 ? (c.value_head ? L.score : L.total) : 0;
  if (c.lora_rank > 0) {
    const int64_t r = c.lora_rank, F = c.ffn;
    struct Target {
      LoraModule module;
      LoraSite site;
      int64_t out_begin, out, in;
      const char* block;
    };
    const Target targets[] = {
        {kLoraQ, LoraSite::kQkv, 0, qd, C, "self_attn"},         {kLoraK, LoraSite::kQkv, qd, kvd, C, "self_attn"},
        {kLoraV, LoraSite::kQkv, qd + kvd, kvd, C, "self_attn"}, {kLoraO, LoraSite::kO, 0, C, qd, "self_attn"},
        {kLoraGate, LoraSite::kGateUp, 0, F, C, "mlp"},          {kLoraUp, LoraSite::kGateUp, F, F, C, "mlp"},
        {kLoraGateUp, LoraSite::kGateUp, 0, 2 * F, C, "mlp"},    {kLoraDown, LoraSite::kDown, 0, C, F, "mlp"},
    };
    for (int l = 0; l < c.layers; ++l)
      for (const Target& t : targets) {
        if (!(c.lora_modules & (1u << t.module))) continue;
        const std::string p = "base_model.model.model.layers." + std::to_string(l) + "." + t.block + "." +
                              kLoraModuleNames[t.module] + ".";
        LoraAdapter ad{t.site, t.out_begin, t.out, t.in, 0, 0};
        ad.a = add(p + "lora_A.weight", {r, t.in});
        ad.b = add(p + "lora_B.weight", {t.out, r});
        L.layers[l].lora.push_back(ad);
      }
  }
  return L;
}

}  // namespace model
}  // namespace rlhf
