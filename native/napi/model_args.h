// Reading a NativeModel's arguments (model_binding.cc): the constructor's config and the engine it
// selects, forward()'s typed arrays, generate()'s options. Every bad value throws a JS error of the one shape of
// args.h naming its parameter ("Model: expected hidden to be ...", "Model.generate: expected
// options.prompts[2] to be ..."); nothing is kept past the call (everything is copied).
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "../model/transformer.h"

namespace rlhf {
namespace napi {

// config: the object lib/engine/config.ts builds (vocab, hidden, layers, ..., LoRA fields).
model::ModelConfig read_model_config(const Napi::Object& config);

// The engine `new NativeModel(config)` builds: config's architecture plus dtype ('f32' | 'bf16'),
// trainable, device ('cpu' | 'cuda'), tensorParallel (P) and tensorParallelGroup ('threads' |
// 'mpi'): a Transformer, a TensorParallelModel of P thread ranks, or this process's shard of a
// ProcessTensorParallelModel (*tp_rank its rank there, else 0). Throws rlhf::Error
// (InvalidArgument / Unsupported) for a combination it does not build; std::bad_alloc.
std::unique_ptr<model::Engine> make_model_engine(const Napi::Object& config, int* tp_rank);

// options[name] copied out: a Float32Array (T = float) or Int32Array (T = int32_t) of exactly n
// elements; absent (undefined / null): an empty vector, or a TypeError when required.
// fn names the call in messages ("Model.forward").
template <typename T>
std::vector<T> copy_typed(const Napi::Object& options, const char* fn, const char* name, size_t n, bool required);

// generate()'s options: {prompts: Int32Array[], maxNewTokens, temperature?, topK?, topP?, seed?,
// adapters?, staticBatch?, kvBf16?, streamOffset?, streams?: number[], stopTokens?: Int32Array}.
std::shared_ptr<model::GenerateRequest> read_generate_request(const Napi::Object& options);

}  // namespace napi
}  // namespace rlhf
