// The transformer family the engine runs: decoder-only, pre-norm RMSNorm, RoPE (full or partial,
// half-split or interleaved), grouped-query attention, optional q/k/v (and o) biases, SwiGLU,
// tied or untied LM head, optional scalar head. TS parses Hugging Face config.json (Llama, Qwen2,
// GLM-4 and their *ForSequenceClassification) into this struct; native re-checks it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace rlhf {
namespace model {

struct ModelConfig {
  std::string architecture;  // the HF architectures[0], kept for save()
  int64_t vocab = 0;         // V
  int hidden = 0;            // C
  int layers = 0;            // L
  int heads = 0;             // NH
  int kv_heads = 0;          // KVH (NH % KVH == 0)
  int head_dim = 0;          // HD
  int ffn = 0;               // F
  float rms_eps = 1e-6f;
  float rope_theta = 10000.0f;
  int rotary_dim = 0;             // dims of each head that RoPE rotates (even, <= HD)
  bool rope_interleaved = false;  // GLM-4: pairs (2i, 2i+1); Llama/Qwen2: (i, i + rotary_dim/2)
  // RoPE scaling (transformers' rope_type, computed in lib/engine/rope.ts): rope_inv_freq holds the
  // rotary_dim/2 frequencies (empty: the default 1/theta^(2i/rotary_dim)); cos and sin are multiplied
  // by rope_attention_scaling (YaRN's attention factor, 1 otherwise); rope_position_limit > 0 makes
  // positions >= it an error (dynamic NTK scaling, which is the identity below that length).
  std::vector<float> rope_inv_freq;
  float rope_attention_scaling = 1.0f;
  int64_t rope_position_limit = 0;
  bool qkv_bias = false;
  bool o_bias = false;
  // Mistral: each query attends to at most sliding_window keys, itself included (0: no window)
  int64_t sliding_window = 0;
  // Gemma 2 / 3 and GLM-4-0414 (lib/engine/config.ts maps their Hugging Face keys):
  float norm_offset = 0.0f;    // Gemma: every RMSNorm multiplies by (1 + w): norm_offset 1
  float embed_scale = 1.0f;    // Gemma: the embeddings are multiplied by sqrt(hidden)
  int sandwich_norms = 0;      // a kSandwich* value: norms on the attention and MLP outputs
  bool gelu_tanh = false;      // MLP: GeGLU with the tanh GELU (Gemma) instead of SwiGLU
  float attn_scale = 0.0f;     // > 0: the attention scale (Gemma: query_pre_attn_scalar^-1/2); 0: head_dim^-1/2
  float attn_softcap = 0.0f;   // > 0: attention scores c·tanh(s/c) (Gemma 2)
  float final_softcap = 0.0f;  // > 0: LM logits c·tanh(z/c) before the softmax (Gemma 2)
  // per layer, 1: sliding window (a local layer), 0: global; empty: every layer when sliding_window > 0
  std::vector<uint8_t> sliding_layers;
  float rope_local_theta = 0.0f;  // > 0: sliding layers use the default RoPE of this base (Gemma 3)
  bool is_sliding(int l) const { return sliding_window > 0 && (sliding_layers.empty() || sliding_layers[l]); }
  // Qwen3: RMSNorm over each q and k head (weights q_norm, k_norm (HD)) before RoPE
  bool qk_norm = false;
  bool fused_gate_up = false;  // GLM-4 names the (2F, C) gate_up_proj; Llama/Qwen2 gate_proj + up_proj
  bool tie_embeddings = false;
  bool lm_head = true;      // CausalLM: logits over V
  bool value_head = false;  // *ForSequenceClassification with num_labels 1: a scalar per token
  int64_t max_positions = 4096;
  // LoRA (PEFT's LoraConfig): rank 0 = none. Low-rank adapters on the modules whose bit is set in
  // lora_modules (bit k = kLoraModuleNames[k]), scaled by lora_alpha / lora_rank; the base weights
  // are then frozen: no gradients, not in the optimizer (only the adapters and a scalar head are).
  int lora_rank = 0;
  float lora_alpha = 0.0f;
  uint32_t lora_modules = 0;

  int qkv_width() const { return (heads + 2 * kv_heads) * head_dim; }
  float lora_scale() const { return lora_rank > 0 ? lora_alpha / static_cast<float>(lora_rank) : 0.0f; }
};

// Sandwich norms and their Hugging Face names (input norm, attention-output norm, pre-MLP norm,
// MLP-output norm):
//   kSandwichGemma: input_layernorm, post_attention_layernorm, pre_feedforward_layernorm, post_feedforward_layernorm
//   kSandwichGlm4:  input_layernorm, post_self_attn_layernorm, post_attention_layernorm, post_mlp_layernorm
enum SandwichNorms : int { kSandwichNone = 0, kSandwichGemma = 1, kSandwichGlm4 = 2 };

// Hugging Face module names LoRA can target, in bit order.
constexpr int kLoraModuleCount = 8;
extern const char* const kLoraModuleNames[kLoraModuleCount];
enum LoraModule : int { kLoraQ, kLoraK, kLoraV, kLoraO, kLoraGate, kLoraUp, kLoraGateUp, kLoraDown };

// Throws rlhf::Error(OutOfRange / Unsupported) naming the bad field.
void validate_config(const ModelConfig& c);

}  // namespace model
}  // namespace rlhf
