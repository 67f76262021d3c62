// The model end to end on the CUDA backend (native/cuda/backend.cu) against the same model on the
// CPU backend: the same weights (initialised on the host, uploaded), the same inputs, then
// forward (log-probs, entropy, logits, values), backward (every parameter's gradient; saved and
// checkpointed activations; LoRA adapters on a frozen base) and generate (greedy and sampled).
// Under host emulation (npm run test:cuda-host) the kernels run on the CPU and device memory is
// host memory, but every byte still crosses through the backend's copy().
//
// Tolerances (fp32 both sides; the backends differ in reduction order, the online softmax of the
// attention kernel and expf against the CPU's vectorised exp):
//   forward outputs:  |got − want| ≤ 2e-5 + 2e-4·|want|
//   gradients:        per tensor, |got − want| ≤ 1e-4·max|want| + 1e-7 (absolute, scaled by the tensor)
//   generate:         the same tokens (greedy, and sampled with one seed); log-probs within the forward tolerance.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "../../model/backend.h"
#include "../../model/session.h"
#include "../../model/transformer.h"
#include "cuda_test_util.h"

using namespace rlhf_cuda_test;
using rlhf::Device;
using rlhf::model::ModelConfig;
using rlhf::model::Transformer;

namespace {

constexpr double kFwdAtol = 2e-5, kFwdRtol = 2e-4, kGradRel = 1e-4;

ModelConfig tiny_config(bool lm_head) {
  ModelConfig c;
  c.architecture = lm_head ? "LlamaForCausalLM" : "LlamaForSequenceClassification";
  c.vocab = 61, c.hidden = 32, c.layers = 2, c.heads = 4, c.kv_heads = 2, c.head_dim = 8, c.ffn = 40;
  c.rotary_dim = 8, c.rope_theta = 10000.0f, c.max_positions = 64;
  c.qkv_bias = true, c.o_bias = !lm_head;
  c.lm_head = lm_head, c.value_head = !lm_head;
  return c;
}

std::shared_ptr<rlhf::model::Backend> cuda_backend() {
  std::string why;
  auto be = rlhf::cuda::new_model_backend(&why);
  if (!be) throw rlhf_test::Skip{"no CUDA backend here: " + why};
  return be;
}

struct Pair {
  std::unique_ptr<Transformer> cpu, gpu;
  explicit Pair(const ModelConfig& c) {
    cpu = std::make_unique<Transformer>(c);
    gpu = std::make_unique<Transformer>(c, nullptr, nullptr, cuda_backend());
    cpu->init_random(7, 0.3f);
    gpu->init_random(7, 0.3f);
  }
};

// Every gradient tensor of `gpu` against `cpu`'s, scaled by the tensor's largest element.
// `trained(name)`: the tensors that must get a gradient (the others must stay 0 on both).
template <typename Trained>
void expect_same_gradients(Transformer& cpu, Transformer& gpu, const char* what, Trained trained) {
  for (const auto& v : cpu.full_views()) {
    std::vector<float> want(v.size), got(v.size);
    cpu.read_parameter(v, true, want.data());
    gpu.read_parameter(v, true, got.data());
    double scale = 0.0;
    for (float x : want) scale = std::max(scale, static_cast<double>(std::fabs(x)));
    if ((scale > 0.0) != trained(v.name)) std::printf("  %s: d%s max %g\n", what, v.name.c_str(), scale);
    CHECK((scale > 0.0) == trained(v.name));
    EXPECT_CLOSE((std::string(what) + " d" + v.name).c_str(), got, want, kGradRel * scale + 1e-7, 0.0);
  }
}
void expect_same_gradients(Transformer& cpu, Transformer& gpu, const char* what) {
  expect_same_gradients(cpu, gpu, what, [](const std::string&) { return true; });
}

// B = 3 rows of T = 7, ragged lengths, two packed segments in row 0, targets −1 on some rows.
struct Batch {
  int64_t B = 3, T = 7;
  std::vector<int64_t> lengths{7, 4, 6};
  std::vector<int32_t> tokens, targets, segments;
  explicit Batch(int64_t vocab) {
    tokens = random_ints(B * T, 0, static_cast<int32_t>(vocab - 1));
    targets = random_ints(B * T, 0, static_cast<int32_t>(vocab - 1));
    targets[2] = -1, targets[9] = -1;
    segments.assign(B * T, 0);
    for (int t = 4; t < T; ++t) segments[t] = 1;
  }
  rlhf::model::ForwardInput input(bool save) const {
    rlhf::model::ForwardInput in;
    in.B = B, in.T = T, in.tokens = tokens.data(), in.targets = targets.data(), in.lengths = lengths.data();
    in.segments = segments.data(), in.entropy = true, in.save = save;
    return in;
  }
};

struct Outputs {
  std::vector<float> logprobs, entropy, values, logits;
  Outputs(int64_t N, int64_t V) : logprobs(N), entropy(N), values(N), logits(N * V) {}
  rlhf::model::ForwardOutput out(bool lm) {
    rlhf::model::ForwardOutput o;
    o.logprobs = logprobs.data(), o.entropy = entropy.data(), o.values = values.data();
    if (lm) o.logits = logits.data();
    return o;
  }
};

void run_lm(bool checkpointing) {
  const ModelConfig c = tiny_config(true);
  Pair m(c);
  CHECK(m.gpu->device() == Device::Cuda && m.cpu->device() == Device::Cpu);
  m.gpu->set_gradient_checkpointing(checkpointing);
  Batch batch(c.vocab);
  const int64_t N = batch.B * batch.T;
  Outputs oc(N, c.vocab), og(N, c.vocab);
  m.cpu->forward(batch.input(true), oc.out(true));
  m.gpu->forward(batch.input(true), og.out(true));
  EXPECT_CLOSE("logprobs", og.logprobs, oc.logprobs, kFwdAtol, kFwdRtol);
  EXPECT_CLOSE("entropy", og.entropy, oc.entropy, kFwdAtol, kFwdRtol);
  EXPECT_CLOSE("logits", og.logits, oc.logits, kFwdAtol, kFwdRtol);
  auto dlogp = random_vector(N), dent = random_vector(N);
  rlhf::model::BackwardInput bi;
  bi.dlogprobs = dlogp.data(), bi.dentropy = dent.data();
  m.cpu->zero_grad();
  m.gpu->zero_grad();
  m.cpu->backward(bi);
  m.gpu->backward(bi);
  expect_same_gradients(*m.cpu, *m.gpu, checkpointing ? "checkpointed" : "saved");
}

}  // namespace

TEST(cuda_model_lm_forward_backward) { run_lm(false); }
TEST(cuda_model_lm_forward_backward_checkpointed) { run_lm(true); }

TEST(cuda_model_value_head_forward_backward) {
  const ModelConfig c = tiny_config(false);
  Pair m(c);
  Batch batch(c.vocab);
  const int64_t N = batch.B * batch.T;
  Outputs oc(N, c.vocab), og(N, c.vocab);
  m.cpu->forward(batch.input(true), oc.out(false));
  m.gpu->forward(batch.input(true), og.out(false));
  EXPECT_CLOSE("values", og.values, oc.values, kFwdAtol, kFwdRtol);
  auto dv = random_vector(N);
  rlhf::model::BackwardInput bi;
  bi.dvalues = dv.data();
  m.cpu->zero_grad();
  m.gpu->zero_grad();
  m.cpu->backward(bi);
  m.gpu->backward(bi);
  expect_same_gradients(*m.cpu, *m.gpu, "value head");
}

// LoRA on q, v and down (rank 4): the base is frozen (no gradients), the adapters train. lora_B
// starts at 0 (PEFT), so it is set to random values first, on both models alike.
TEST(cuda_model_lora_forward_backward) {
  ModelConfig c = tiny_config(true);
  c.lora_rank = 4, c.lora_alpha = 8.0f;
  c.lora_modules = (1u << rlhf::model::kLoraQ) | (1u << rlhf::model::kLoraV) | (1u << rlhf::model::kLoraDown);
  Pair m(c);
  for (const auto& v : m.cpu->full_views())
    if (v.name.find("lora_B") != std::string::npos) {
      auto b = random_vector(v.size, -0.3f, 0.3f);
      m.cpu->write_parameter(v, b.data());
      m.gpu->write_parameter(v, b.data());
    }
  Batch batch(c.vocab);
  const int64_t N = batch.B * batch.T;
  Outputs oc(N, c.vocab), og(N, c.vocab);
  m.cpu->forward(batch.input(true), oc.out(false));
  m.gpu->forward(batch.input(true), og.out(false));
  EXPECT_CLOSE("lora logprobs", og.logprobs, oc.logprobs, kFwdAtol, kFwdRtol);
  auto dlogp = random_vector(N);
  rlhf::model::BackwardInput bi;
  bi.dlogprobs = dlogp.data();
  m.cpu->zero_grad();
  m.gpu->zero_grad();
  m.cpu->backward(bi);
  m.gpu->backward(bi);
  // only the adapters have gradient storage; the frozen base (norms included) reads zero gradients
  expect_same_gradients(*m.cpu, *m.gpu, "lora",
                        [](const std::string& name) { return name.find(".lora_") != std::string::npos; });
  // the base model without its adapters (a LoRA policy's reference)
  auto in = batch.input(false);
  in.adapters = false;
  m.cpu->forward(in, oc.out(false));
  m.gpu->forward(in, og.out(false));
  EXPECT_CLOSE("base logprobs", og.logprobs, oc.logprobs, kFwdAtol, kFwdRtol);
}

// Sampling (temperature, top-k, top-p) happens on the host from the downloaded logits with the
// CPU's Philox streams: the same seed draws the same tokens as on the CPU.
TEST(cuda_model_sampled_generate) {
  const ModelConfig c = tiny_config(true);
  Pair m(c);
  rlhf::model::GenerateRequest req;
  req.prompts = {random_ints(4, 0, 60), random_ints(7, 0, 60)};
  req.max_new_tokens = 10;
  req.sampling.temperature = 0.9f, req.sampling.top_k = 20, req.sampling.top_p = 0.95f;
  req.seed = 5;
  auto rc = m.cpu->generate(req);
  auto rg = m.gpu->generate(req);
  for (size_t b = 0; b < req.prompts.size(); ++b) {
    CHECK(rg.tokens[b] == rc.tokens[b]);
    EXPECT_CLOSE(("sampled logprobs row " + std::to_string(b)).c_str(), rg.logprobs[b], rc.logprobs[b], kFwdAtol,
                 kFwdRtol);
  }
}

// The paged KV cache runs on the CPU only: a GenerationSession over the CUDA backend is refused
// (Unsupported, naming the op), and the CUDA model's generate keeps the static batch; on the CPU,
// generate (a session) gives the static batch's bits.
TEST(cuda_model_generation_session_refused) {
  const ModelConfig c = tiny_config(true);
  Pair m(c);
  rlhf::model::SessionOptions o;
  o.num_blocks = 8;
  CHECK_THROWS(rlhf::model::GenerationSession(*m.gpu, o), rlhf::ErrorCode::Unsupported);
  rlhf::model::GenerateRequest req;
  req.prompts = {random_ints(5, 0, 60), random_ints(5, 0, 60), random_ints(9, 0, 60)};
  req.prompts[1] = req.prompts[0];  // shared prefill
  req.max_new_tokens = 8;
  req.seed = 3;
  auto session = m.cpu->generate(req);
  req.static_batch = true;
  auto batch = m.cpu->generate(req);
  for (size_t b = 0; b < req.prompts.size(); ++b) {
    CHECK(session.tokens[b] == batch.tokens[b]);
    CHECK(session.logprobs[b] == batch.logprobs[b]);  // bitwise (float ==, no NaN here)
  }
}

TEST(cuda_model_greedy_generate) {
  const ModelConfig c = tiny_config(true);
  Pair m(c);
  rlhf::model::GenerateRequest req;
  req.prompts = {random_ints(5, 0, 60), random_ints(2, 0, 60), random_ints(9, 0, 60)};
  req.max_new_tokens = 8;
  req.sampling.temperature = 0.0f;
  auto rc = m.cpu->generate(req);
  auto rg = m.gpu->generate(req);
  for (size_t b = 0; b < req.prompts.size(); ++b) {
    CHECK(rg.tokens[b] == rc.tokens[b]);
    CHECK(rg.tokens[b].size() == static_cast<size_t>(req.max_new_tokens));
    EXPECT_CLOSE(("generate logprobs row " + std::to_string(b)).c_str(), rg.logprobs[b], rc.logprobs[b], kFwdAtol,
                 kFwdRtol);
  }
  // generate == forward on the CUDA backend: the log-probs of the generated tokens, teacher-forced.
  for (size_t b = 0; b < req.prompts.size(); ++b) {
    std::vector<int32_t> seq = req.prompts[b];
    seq.insert(seq.end(), rg.tokens[b].begin(), rg.tokens[b].end());
    const int64_t T = static_cast<int64_t>(seq.size()) - 1, P = static_cast<int64_t>(req.prompts[b].size());
    std::vector<int32_t> in(seq.begin(), seq.end() - 1), tg(T, -1);
    for (int64_t t = P - 1; t < T; ++t) tg[t] = seq[t + 1];
    rlhf::model::ForwardInput fi;
    fi.B = 1, fi.T = T, fi.tokens = in.data(), fi.targets = tg.data(), fi.save = false;
    std::vector<float> lp(T);
    rlhf::model::ForwardOutput fo;
    fo.logprobs = lp.data();
    m.gpu->forward(fi, fo);
    std::vector<float> tail(lp.begin() + (P - 1), lp.end());
    EXPECT_CLOSE(("forward of generated row " + std::to_string(b)).c_str(), tail, rg.logprobs[b], kFwdAtol, kFwdRtol);
  }
}

TEST(cuda_model_device_memory) {
  const ModelConfig c = tiny_config(true);
  Transformer gpu(c, nullptr, nullptr, cuda_backend());
  const auto& v = gpu.full_views()[0];
  auto data = random_vector(v.size);
  gpu.write_parameter(v, data.data());
  std::vector<float> back(v.size);
  gpu.read_parameter(v, false, back.data());
  CHECK(back == data);
  CHECK(gpu.optimizer_view().backend != nullptr && gpu.optimizer_view().backend->device() == Device::Cuda);
}

// Training steps end to end: forward, backward, then AdamW through each model's backend on its
// optimizer view (moments on the model's device, as the AdamW binding keeps them). Weights after
// three steps within the gradients' tolerance scaled by lr; the gradient norms within 1e-4.
TEST(cuda_model_training_steps) {
  const ModelConfig c = tiny_config(true);
  Pair m(c);
  rlhf::cpu::AdamWOptions o;
  o.lr = 1e-2f, o.weight_decay = 0.1f, o.max_grad_norm = 1.0f;
  struct Moments {
    rlhf::Buffer m, v;
  };
  auto moments = [](Transformer& t) {
    const auto view = t.optimizer_view();
    const size_t bytes = static_cast<size_t>(view.size) * sizeof(float);
    return Moments{rlhf::Buffer(bytes, true, t.device()), rlhf::Buffer(bytes, true, t.device())};
  };
  Moments mc = moments(*m.cpu), mg = moments(*m.gpu);
  Batch batch(c.vocab);
  const int64_t N = batch.B * batch.T;
  for (int64_t step = 1; step <= 3; ++step) {
    auto dlogp = random_vector(N);
    rlhf::model::BackwardInput bi;
    bi.dlogprobs = dlogp.data();
    double norms[2];
    int i = 0;
    for (auto [t, mom] : {std::pair<Transformer*, Moments*>{m.cpu.get(), &mc}, {m.gpu.get(), &mg}}) {
      Outputs out(N, c.vocab);
      t->forward(batch.input(true), out.out(false));
      t->zero_grad();
      t->backward(bi);
      auto view = t->optimizer_view();
      auto r = view.backend->adamw_step(view.params, view.grads, mom->m.as<float>(), mom->v.as<float>(), view.size, o,
                                        step, view.segments, view.norm_ranges);
      CHECK(!r.skipped);
      norms[i++] = r.grad_norm;
    }
    CHECK(std::fabs(norms[1] - norms[0]) <= 1e-4 * norms[0]);
  }
  for (const auto& v : m.cpu->full_views()) {
    std::vector<float> want(v.size), got(v.size);
    m.cpu->read_parameter(v, false, want.data());
    m.gpu->read_parameter(v, false, got.data());
    EXPECT_CLOSE(("after 3 steps " + v.name).c_str(), got, want, 3 * o.lr * 1e-2, 0.0);
  }
}
