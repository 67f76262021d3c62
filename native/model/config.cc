#include "config.h"

#include <cmath>

#include "../core/error.h"

namespace rlhf {
namespace model {

const char* const kLoraModuleNames[kLoraModuleCount] = {"q_proj",    "k_proj",  "v_proj",       "o_proj",
                                                        "gate_proj", "up_proj", "gate_up_proj", "down_proj"};

void validate_config(const ModelConfig& c) {
  auto positive = [](const char* name, int64_t v) {
    RLHF_CHECK(v > 0, ErrorCode::OutOfRange, "model config: ", name, " must be > 0, got ", v);
  };
  positive("vocab_size", c.vocab);
  positive("hidden_size", c.hidden);
  positive("num_hidden_layers", c.layers);
  positive("num_attention_heads", c.heads);
  positive("num_key_value_heads", c.kv_heads);
  positive("head_dim", c.head_dim);
  positive("intermediate_size", c.ffn);
  positive("max_position_embeddings", c.max_positions);
  RLHF_CHECK(c.vocab < (int64_t(1) << 31), ErrorCode::OutOfRange, "model config: vocab_size must be < 2^31");
  RLHF_CHECK(c.heads % c.kv_heads == 0, ErrorCode::OutOfRange, "model config: num_attention_heads (", c.heads,
             ") must be a multiple of num_key_value_heads (", c.kv_heads, ")");
  RLHF_CHECK(c.rotary_dim >= 2 && c.rotary_dim % 2 == 0 && c.rotary_dim <= c.head_dim, ErrorCode::OutOfRange,
             "model config: the rotary dimension (head_dim × partial_rotary_factor = ", c.rotary_dim,
             ") must be even and in [2, head_dim]");
  RLHF_CHECK(c.rms_eps > 0, ErrorCode::OutOfRange, "model config: rms_norm_eps must be > 0");
  RLHF_CHECK(c.rope_theta > 0, ErrorCode::OutOfRange, "model config: rope_theta must be > 0");
  RLHF_CHECK(c.rope_inv_freq.empty() || c.rope_inv_freq.size() == static_cast<size_t>(c.rotary_dim / 2),
             ErrorCode::OutOfRange, "model config: ropeInvFreq must have rotary_dim / 2 = ", c.rotary_dim / 2,
             " entries, got ", c.rope_inv_freq.size());
  for (float f : c.rope_inv_freq)
    RLHF_CHECK(std::isfinite(f) && f > 0, ErrorCode::OutOfRange,
               "model config: ropeInvFreq entries must be finite and > 0, got ", f);
  RLHF_CHECK(std::isfinite(c.rope_attention_scaling) && c.rope_attention_scaling > 0, ErrorCode::OutOfRange,
             "model config: ropeAttentionScaling must be finite and > 0, got ", c.rope_attention_scaling);
  RLHF_CHECK(c.sliding_window >= 0, ErrorCode::OutOfRange, "model config: sliding_window must be >= 0, got ",
             c.sliding_window);
  RLHF_CHECK(std::isfinite(c.norm_offset), ErrorCode::OutOfRange, "model config: norm offset must be finite");
  RLHF_CHECK(std::isfinite(c.embed_scale) && c.embed_scale > 0, ErrorCode::OutOfRange,
             "model config: embedScale must be finite and > 0, got ", c.embed_scale);
  RLHF_CHECK(c.sandwich_norms >= kSandwichNone && c.sandwich_norms <= kSandwichGlm4, ErrorCode::OutOfRange,
             "model config: sandwichNorms must be 0, 1 or 2, got ", c.sandwich_norms);
  for (float v : {c.attn_scale, c.attn_softcap, c.final_softcap, c.rope_local_theta})
    RLHF_CHECK(std::isfinite(v) && v >= 0, ErrorCode::OutOfRange,
               "model config: attention scale, soft-caps and the local RoPE base must be finite and >= 0, got ", v);
  RLHF_CHECK(c.sliding_layers.empty() || c.sliding_layers.size() == static_cast<size_t>(c.layers),
             ErrorCode::OutOfRange, "model config: layer_types must have num_hidden_layers (", c.layers,
             ") entries, got ", c.sliding_layers.size());
  RLHF_CHECK(c.rope_position_limit >= 0, ErrorCode::OutOfRange, "model config: ropePositionLimit must be >= 0");
  RLHF_CHECK(
      c.lm_head != c.value_head, ErrorCode::Unsupported,
      "model config: a model has either an LM head (*ForCausalLM) or a scalar head (*ForSequenceClassification)");
  RLHF_CHECK(!(c.tie_embeddings && !c.lm_head), ErrorCode::Unsupported,
             "model config: tie_word_embeddings needs an LM head");
  RLHF_CHECK(c.lora_rank >= 0 && c.lora_rank <= 4096, ErrorCode::OutOfRange, "LoRA: rank must be in [0, 4096], got ",
             c.lora_rank);
  if (c.lora_rank > 0) {
    RLHF_CHECK(c.lora_alpha > 0, ErrorCode::OutOfRange, "LoRA: alpha must be > 0, got ", c.lora_alpha);
    RLHF_CHECK(c.lora_modules != 0 && c.lora_modules < (1u << kLoraModuleCount), ErrorCode::OutOfRange,
               "LoRA: no target module");
    const uint32_t separate = (1u << kLoraGate) | (1u << kLoraUp), fused = 1u << kLoraGateUp;
    RLHF_CHECK(!(c.lora_modules & (c.fused_gate_up ? separate : fused)), ErrorCode::Unsupported,
               "LoRA: this model has ",
               c.fused_gate_up ? "a fused gate_up_proj (target gate_up_proj)"
                               : "gate_proj and up_proj (target them, not gate_up_proj)");
  }
}

}  // namespace model
}  // namespace rlhf
