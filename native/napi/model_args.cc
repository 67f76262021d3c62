// Reading a NativeModel's arguments: see model_args.h.
#include "model_args.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>

#include "../core/error.h"
#include "../core/mpi.h"
#include "../core/thread_pool.h"
#include "../model/tensor_parallel.h"
#include "../model/tensor_parallel_process.h"
#include "args.h"

namespace rlhf {
namespace napi {

model::ModelConfig read_model_config(const Napi::Object& o) {
  const char* fn = "Model";
  model::ModelConfig c;
  c.architecture = get_string(o, fn, "architecture");
  c.vocab = get_int(o, fn, "vocab", 1, int64_t(1) << 31);
  c.hidden = static_cast<int>(get_int(o, fn, "hidden", 1, 1 << 20));
  c.layers = static_cast<int>(get_int(o, fn, "layers", 1, 4096));
  c.heads = static_cast<int>(get_int(o, fn, "heads", 1, 4096));
  c.kv_heads = static_cast<int>(get_int(o, fn, "kvHeads", 1, 4096));
  c.head_dim = static_cast<int>(get_int(o, fn, "headDim", 1, 4096));
  c.ffn = static_cast<int>(get_int(o, fn, "ffn", 1, 1 << 22));
  c.rms_eps = static_cast<float>(get_number(o, fn, "rmsEps"));
  c.rope_theta = static_cast<float>(get_number(o, fn, "ropeTheta"));
  c.rotary_dim = static_cast<int>(get_int(o, fn, "rotaryDim", 2, 4096));
  c.rope_interleaved = get_bool_or(o, fn, "ropeInterleaved", false);
  {
    Napi::Value inv = o.Get("ropeInvFreq");
    if (!inv.IsUndefined() && !inv.IsNull()) {
      auto a = as_f32(o.Env(), inv, std::string(fn) + ": ropeInvFreq", 1);
      c.rope_inv_freq.assign(a.Data(), a.Data() + a.ElementLength());
    }
  }
  c.rope_attention_scaling = static_cast<float>(get_number_or(o, fn, "ropeAttentionScaling", 1.0));
  c.rope_position_limit = get_int_or(o, fn, "ropePositionLimit", 0, int64_t(1) << 24, 0);
  c.qkv_bias = get_bool_or(o, fn, "qkvBias", false);
  c.o_bias = get_bool_or(o, fn, "oBias", false);
  c.fused_gate_up = get_bool_or(o, fn, "fusedGateUp", false);
  c.qk_norm = get_bool_or(o, fn, "qkNorm", false);
  c.sliding_window = get_int_or(o, fn, "slidingWindow", 0, int64_t(1) << 24, 0);
  {
    Napi::Value sl = o.Get("slidingLayers");  // Uint8Array-like 0/1 per layer (Int32Array)
    if (!sl.IsUndefined() && !sl.IsNull()) {
      auto a = as_i32(o.Env(), sl, std::string(fn) + ": slidingLayers", 0);
      for (size_t i = 0; i < a.ElementLength(); ++i) c.sliding_layers.push_back(a[i] != 0);
    }
  }
  c.norm_offset = static_cast<float>(get_number_or(o, fn, "normOffset", 0.0));
  c.embed_scale = static_cast<float>(get_number_or(o, fn, "embedScale", 1.0));
  c.sandwich_norms = static_cast<int>(get_int_or(o, fn, "sandwichNorms", 0, 2, 0));
  c.gelu_tanh = get_bool_or(o, fn, "geluTanh", false);
  c.attn_scale = static_cast<float>(get_number_or(o, fn, "attnScale", 0.0));
  c.attn_softcap = static_cast<float>(get_number_or(o, fn, "attnSoftcap", 0.0));
  c.final_softcap = static_cast<float>(get_number_or(o, fn, "finalSoftcap", 0.0));
  c.rope_local_theta = static_cast<float>(get_number_or(o, fn, "ropeLocalTheta", 0.0));
  c.tie_embeddings = get_bool_or(o, fn, "tieEmbeddings", false);
  c.lm_head = get_bool_or(o, fn, "lmHead", true);
  c.value_head = get_bool_or(o, fn, "valueHead", false);
  c.max_positions = get_int(o, fn, "maxPositions", 1, int64_t(1) << 24);
  c.lora_rank = static_cast<int>(get_int_or(o, fn, "loraRank", 0, 4096, 0));
  c.lora_alpha = static_cast<float>(get_number_or(o, fn, "loraAlpha", 0.0));
  c.lora_modules = static_cast<uint32_t>(get_int_or(o, fn, "loraModules", 0, 255, 0));
  return c;
}

std::unique_ptr<model::Engine> make_model_engine(const Napi::Object& cfg, int* tp_rank) {
  // read once the kind of engine is settled, so its errors come in the order of the checks
  auto config = [&cfg] { return read_model_config(cfg); };
  std::unique_ptr<model::Engine> engine;
  *tp_rank = 0;
  // dtype: the weights' compute type ('f32' default; 'bf16': bf16 GEMMs, bf16-only frozen
  // matrices, transformer.h WeightStorage); trainable false: a frozen model without gradients
  const std::string dtype = cfg.Get("dtype").IsUndefined() ? "f32" : get_string(cfg, "Model", "dtype");
  if (dtype != "f32" && dtype != "bf16")
    throw Error(ErrorCode::InvalidArgument, "Model: dtype must be 'f32' or 'bf16', got '" + dtype + "'");
  model::WeightStorage storage;
  storage.dtype = dtype == "bf16" ? DType::BF16 : DType::F32;
  storage.trainable = get_bool_or(cfg, "Model", "trainable", true);
  const int tp = static_cast<int>(get_int_or(cfg, "Model", "tensorParallel", 1, 64, 1));
  const std::string device = cfg.Get("device").IsUndefined() ? "cpu" : get_string(cfg, "Model", "device");
  if (device != "cpu" && device != "cuda")
    throw Error(ErrorCode::InvalidArgument, "Model: device must be 'cpu' or 'cuda', got '" + device + "'");
  const std::string tp_group =
      cfg.Get("tensorParallelGroup").IsUndefined() ? "threads" : get_string(cfg, "Model", "tensorParallelGroup");
  if (tp_group != "threads" && tp_group != "mpi")
    throw Error(ErrorCode::InvalidArgument,
                "Model: tensorParallelGroup must be 'threads' or 'mpi', got '" + tp_group + "'");
  if (tp_group == "mpi") {
    RLHF_CHECK(device == "cpu", ErrorCode::Unsupported, "Model: tensorParallelGroup 'mpi' runs on the CPU only");
    const int layout = MpiGroup::layout_tensor_parallel();
    RLHF_CHECK(tp == 1 || layout == tp, ErrorCode::InvalidArgument, "Model: tensorParallel ", tp,
               " with tensorParallelGroup 'mpi' needs the job split into tensor-parallel groups of ", tp,
               " first (initDistributed({tensorParallel: ", tp, "})); ",
               layout ? "it was split into groups of " + std::to_string(layout) : std::string("it was not split"));
    MpiGroup& g = MpiGroup::tensor_parallel();
    if (tp == 1)
      engine = std::make_unique<model::Transformer>(config(), nullptr, nullptr, nullptr, storage);
    else {
      auto pm = std::make_unique<model::ProcessTensorParallelModel>(
          config(), &g, [&g](double* x, int64_t n) { g.all_reduce_sum_f64(x, n); });
      *tp_rank = pm->rank();
      engine = std::move(pm);
    }
  } else if (device == "cuda") {
    RLHF_CHECK(tp == 1, ErrorCode::Unsupported, "Model: tensorParallel > 1 runs on the CPU only");
    engine =
        std::make_unique<model::Transformer>(config(), nullptr, nullptr, model::make_backend(Device::Cuda), storage);
  } else if (tp > 1)
    engine = std::make_unique<model::TensorParallelModel>(config(), tp, std::max(1, default_thread_count() / tp));
  else
    engine = std::make_unique<model::Transformer>(config(), nullptr, nullptr, nullptr, storage);
  if (!dynamic_cast<model::Transformer*>(engine.get())) {
    RLHF_CHECK(dtype == "f32", ErrorCode::Unsupported, "Model: dtype 'bf16' is not supported with tensorParallel > 1");
    RLHF_CHECK(storage.trainable, ErrorCode::Unsupported,
               "Model: trainable: false is not supported with tensorParallel > 1");
  }
  return engine;
}

template <typename T>
std::vector<T> copy_typed(const Napi::Object& o, const char* fn, const char* name, size_t n, bool required) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throw_expected_type(o.Env(), std::string(fn) + ": options." + name, "present", v);
    return {};
  }
  std::vector<T> out(n);
  if constexpr (std::is_same_v<T, float>) {
    auto a = as_f32(o.Env(), v, std::string(fn) + ": options." + name, n);
    if (a.ElementLength() != n)
      throw_expected_range(o.Env(), std::string(fn) + ": options." + name,
                           "a typed array of exactly " + std::to_string(n) + " elements", v);
    std::memcpy(out.data(), a.Data(), n * sizeof(T));
  } else {
    auto a = as_i32(o.Env(), v, std::string(fn) + ": options." + name, n);
    if (a.ElementLength() != n)
      throw_expected_range(o.Env(), std::string(fn) + ": options." + name,
                           "a typed array of exactly " + std::to_string(n) + " elements", v);
    std::memcpy(out.data(), a.Data(), n * sizeof(T));
  }
  return out;
}

template std::vector<float> copy_typed<float>(const Napi::Object&, const char*, const char*, size_t, bool);
template std::vector<int32_t> copy_typed<int32_t>(const Napi::Object&, const char*, const char*, size_t, bool);

std::shared_ptr<model::GenerateRequest> read_generate_request(const Napi::Object& o) {
  const char* fn = "Model.generate";
  auto req = std::make_shared<model::GenerateRequest>();
  Napi::Value pv = field(o, fn, "prompts");
  if (!pv.IsArray()) throw_expected_type(o.Env(), "Model.generate: options.prompts", "an array of Int32Array", pv);
  Napi::Array prompts = pv.As<Napi::Array>();
  for (uint32_t i = 0; i < prompts.Length(); ++i) {
    auto a = as_i32(o.Env(), prompts.Get(i), "Model.generate: options.prompts[" + std::to_string(i) + "]", 0);
    req->prompts.emplace_back(a.Data(), a.Data() + a.ElementLength());
  }
  req->max_new_tokens = get_int(o, fn, "maxNewTokens", 1, int64_t(1) << 24);
  req->sampling.temperature = static_cast<float>(get_number_or(o, fn, "temperature", 1.0));
  req->sampling.top_k = get_int_or(o, fn, "topK", 0, int64_t(1) << 31, 0);
  req->sampling.top_p = static_cast<float>(get_number_or(o, fn, "topP", 1.0));
  req->seed = static_cast<uint64_t>(get_int_or(o, fn, "seed", 0, (int64_t(1) << 53), 0));
  req->adapters = get_bool_or(o, fn, "adapters", true);
  req->static_batch = get_bool_or(o, fn, "staticBatch", false);
  req->kv_bf16 = get_bool_or(o, fn, "kvBf16", false);
  req->stream_offset = get_int_or(o, fn, "streamOffset", 0, (int64_t(1) << 53), 0);
  Napi::Value sv = o.Get("streams");
  if (!sv.IsUndefined()) {
    if (!sv.IsArray()) throw_expected_type(o.Env(), "Model.generate: options.streams", "an array of integers", sv);
    Napi::Array streams = sv.As<Napi::Array>();
    for (uint32_t i = 0; i < streams.Length(); ++i) {
      Napi::Value s = streams.Get(i);
      const double d = s.IsNumber() ? s.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 0 && d <= 9007199254740992.0 && d == static_cast<double>(static_cast<int64_t>(d))))
        throw_expected_range(o.Env(), "Model.generate: options.streams[" + std::to_string(i) + "]",
                             "an integer in [0, 2^53]", s);
      req->streams.push_back(static_cast<int64_t>(d));
    }
  }
  Napi::Value st = o.Get("stopTokens");
  if (!st.IsUndefined()) {
    auto a = as_i32(o.Env(), st, "Model.generate: options.stopTokens", 0);
    req->stop_tokens.assign(a.Data(), a.Data() + a.ElementLength());
  }
  return req;
}

}  // namespace napi
}  // namespace rlhf
