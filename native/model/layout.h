// Where every parameter lives in the model's one flat fp32 buffer, under its Hugging Face name.
// Tensors that the engine multiplies together are adjacent, so q/k/v (weights, biases) form one
// ((NH + 2·KVH)·HD, C) matrix and gate/up one (2F, C) matrix — exactly GLM-4's fused gate_up_proj
// and the concatenation of Llama's gate_proj and up_proj.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"

namespace rlhf {
namespace model {

struct ParamView {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, size = 0;
  float weight_decay_scale = 1.0f;  // 0 for norms and biases
};

// Where a LoRA adapter adds s·(x·Aᵀ)·Bᵀ: the output of the fused q/k/v, o, fused gate/up or
// down projection.
enum class LoraSite { kQkv, kO, kGateUp, kDown };

// One adapter: A (rank × in) at `a`, B (out × rank) at `b`; it adds to the site's output columns
// [out_begin, out_begin + out).
struct LoraAdapter {
  LoraSite site;
  int64_t out_begin, out, in, a, b;
};

struct LayerOffsets {  // -1 when absent
  int64_t in_norm, wqkv, bqkv, wo, bo, post_norm, wgu, wdown;
  int64_t q_norm = -1, k_norm = -1;               // (HD) each, with qk_norm
  int64_t attn_out_norm = -1, mlp_out_norm = -1;  // (C) each, with sandwich_norms
  std::vector<LoraAdapter> lora;
};

struct ParamLayout {
  std::vector<ParamView> views;
  std::vector<LayerOffsets> layers;
  int64_t embed = -1, final_norm = -1, lm_head = -1 /* = embed when tied */, score = -1;
  int64_t total = 0;
  // [trainable_begin, total) is what the optimizer updates: everything without LoRA; with it the
  // scalar head (if any) and the adapters, which the layout puts last (PEFT names:
  // base_model.model.model.layers.{l}.self_attn.q_proj.lora_A.weight, ...)
  int64_t trainable_begin = 0;
};

ParamLayout build_layout(const ModelConfig& c);

}  // namespace model
}  // namespace rlhf
