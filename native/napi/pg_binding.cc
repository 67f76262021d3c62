// pg: the policy-gradient kernels of cpu/pg_losses.h, one namespace object of SYNCHRONOUS calls.
//
//   pg.klPerToken({logp, refLogp, mask?, estimator: 'k1'|'k2'|'k3'})           -> {kl, dLogp}
//   pg.tokenRewards({score, kl, klCoef, mask, batch, seqLen, clipScore?})     -> {rewards}
//   pg.gae({rewards, values, mask, batch, seqLen, gamma, lambda})             -> {advantages, returns}
//   pg.ppoPolicyLoss({logp, oldLogp, advantages, mask, clipEps, clipEpsHigh?, dualClip?})
//       -> {loss, dLogp, clipFraction, dualClipFraction, approxKl}
//   pg.ppoValueLoss({values, oldValues, returns, mask, clipEps?})             -> {loss, dValues, clipFraction}
//   pg.aggregationWeights({mask, batch, seqLen, aggregation, lengthNormalizer?}) -> {weights: Float64Array}
//   pg.ppoPolicyLoss / pg.gspoPolicyLoss / pg.entropyBonus / pg.klLoss take weights?: Float64Array (n)
//   pg.gspoPolicyLoss({logp, oldLogp, advantages, mask, weights?, batch, seqLen, clipEps, clipEpsHigh?})
//       -> {loss, dLogp, clipFraction, approxKl}
//   pg.entropyBonus({entropy, mask, weights?, coef})                           -> {loss, dEntropy, meanEntropy}
//   pg.klLoss({logp, refLogp, mask, weights?, estimator, coef})               -> {loss, dLogp, meanKl}
//   pg.dpoLoss({policyChosen, policyRejected, refChosen, refRejected, beta, labelSmoothing?, variant?})
//       -> {loss, dPolicyChosen, dPolicyRejected, rewardsChosen, rewardsRejected, accuracy, margin}
//   pg.exoPrefLoss({...the four pair arrays, beta, epsilon?, form?})         -> the same + pChosen
//   pg.exoRwLoss({policy, ref, rewards, groupSize, betaPi, betaR})           -> {loss, dPolicy, p, q, groupKl}
//
// Inputs are Float32Arrays (masks too: 0/1 floats); outputs are new Float32Arrays and numbers.
// Why synchronous: each call is one O(n) pass over the tokens of a batch: microseconds for a
// minibatch, about 1 ms at 64 × 2048 tokens (measured, serial), like the metadata calls; a
// Promise round trip and worker hop would cost more than the work. The kernels run inline on the calling thread under a
// one-thread pool (ScopedPool), so a sync call never waits for the shared pool that a long async job (gemm, a model
// step) holds. lib/engine/pg.ts validates first; the re-checks here (types, exact lengths, the kernels' own
// RLHF_CHECKs) only keep a direct call from reading out of bounds.
#include <napi.h>

#include <cstdint>
#include <initializer_list>
#include <string>

#include "../core/thread_pool.h"
#include "../cpu/pg_losses.h"
#include "args.h"
#include "bindings.h"
#include "js_errors.h"

namespace rlhf {
namespace napi {

namespace {

const int64_t kMaxLen = int64_t(1) << 40;

ThreadPool& inline_pool() {
  static ThreadPool pool(1);  // runs every task on the calling thread; never contended
  return pool;
}

// A Float32Array field with exactly n elements.
Napi::Float32Array f32_exact(const Napi::Object& o, const char* fn, const char* name, size_t n) {
  Napi::Float32Array a = get_f32(o, fn, name, 0);
  if (a.ElementLength() != n)
    throw_expected_range(o.Env(), std::string(fn) + ": options." + name,
                         "a Float32Array of exactly " + std::to_string(n) + " elements", a);
  return a;
}

// Length of a Float32Array field (the one that fixes n for the others).
size_t f32_length(const Napi::Object& o, const char* fn, const char* name) {
  return get_f32(o, fn, name, 0).ElementLength();
}

Napi::Float32Array new_f32(Napi::Env env, size_t n) { return Napi::Float32Array::New(env, n); }

// One of `names` (the string field), as its index; TypeError listing them otherwise.
int get_choice(const Napi::Object& o, const char* fn, const char* name, std::initializer_list<const char*> names,
               int fallback) {
  if (o.Get(name).IsUndefined() && fallback >= 0) return fallback;
  std::string v = get_string(o, fn, name), list;
  int i = 0;
  for (const char* c : names) {
    if (v == c) return i;
    list += (i++ ? ", '" : "'") + std::string(c) + "'";
  }
  throw_expected_type(o.Env(), std::string(fn) + ": options." + name, "one of " + list, o.Get(name));
}

template <typename F>
Napi::Value run_pg(const Napi::CallbackInfo& info, const char* fn, F&& body) {
  return guard(info, [&]() -> Napi::Value {
    Napi::Object o = arg_object(info, 0, (std::string(fn) + ": options").c_str());
    ScopedPool serial(&inline_pool());
    return body(info.Env(), o);
  });
}

Napi::Value kl_per_token(const Napi::CallbackInfo& info) {
  const char* fn = "pg.klPerToken";
  return run_pg(info, fn, [&](Napi::Env env, const Napi::Object& o) -> Napi::Value {
    const size_t n = f32_length(o, fn, "logp");
    auto logp = f32_exact(o, fn, "logp", n), ref = f32_exact(o, fn, "refLogp", n);
    const float* mask = o.Get("mask").IsUndefined() ? nullptr : f32_exact(o, fn, "mask", n).Data();
    auto est = static_cast<cpu::KlEstimator>(1 + get_choice(o, fn, "estimator", {"k1", "k2", "k3"}, -1));
    auto kl = new_f32(env, n), d = new_f32(env, n);
    cpu::kl_per_token(kl.Data(), d.Data(), logp.Data(), ref.Data(), mask, int64_t(n), est);
    Napi::Object r = Napi::Object::New(env);
    r.Set("kl", kl), r.Set("dLogp", d);
    return r;
  });
}

Napi::Value token_rewards(const Napi::CallbackInfo& info) {
  const char* fn = "pg.tokenRewards";
  return run_pg(info, fn, [&](Napi::Env env, const Napi::Object& o) -> Napi::Value {
    const int64_t B = get_int(o, fn, "batch", 0, kMaxLen), T = get_int(o, fn, "seqLen", 0, kMaxLen);
    if (T > 0 && B > kMaxLen / T)
      throw_expected_range(env, std::string(fn) + ": options.batch * options.seqLen",
                           "at most " + std::to_string(kMaxLen), std::to_string(B) + " * " + std::to_string(T));
    const size_t n = size_t(B * T);
    auto score = f32_exact(o, fn, "score", size_t(B)), kl = f32_exact(o, fn, "kl", n),
         mask = f32_exact(o, fn, "mask", n);
    const double kl_coef = get_number(o, fn, "klCoef"), clip = get_number_or(o, fn, "clipScore", 0.0);
    auto rewards = new_f32(env, n);
    cpu::token_rewards(rewards.Data(), score.Data(), kl.Data(), kl_coef, mask.Data(), B, T, clip);
    Napi::Object r = Napi::Object::New(env);
    r.Set("rewards", rewards);
    return r;
  });
}

Napi::Value gae(const Napi::CallbackInfo& info) {
  const char* fn = "pg.gae";
  return run_pg(info, fn, [&](Napi::Env env, const Napi::Object& o) -> Napi::Value {
    const int64_t B = get_int(o, fn, "batch", 0, kMaxLen), T = get_int(o, fn, "seqLen", 0, kMaxLen);
    if (T > 0 && B > kMaxLen / T)
      throw_expected_range(env, std::string(fn) + ": options.batch * options.seqLen",
                           "at most " + std::to_string(kMaxLen), std::to_string(B) + " * " + std::to_string(T));
    const size_t n = size_t(B * T);
    auto rw = f32_exact(o, fn, "rewards", n), v = f32_exact(o, fn, "values", n), mask = f32_exact(o, fn, "mask", n);
    const double gamma = get_number(o, fn, "gamma"), lambda = get_number(o, fn, "lambda");
    auto adv = new_f32(env, n), ret = new_f32(env, n);
    cpu::gae(adv.Data(), ret.Data(), rw.Data(), v.Data(), mask.Data(), B, T, gamma, lambda);
    Napi::Object r = Napi::Object::New(env);
    r.Set("advantages", adv), r.Set("returns", ret);
    return r;
  });
}

// The optional Float64Array `weights` field with exactly n elements; null when absent.
const double* weights_or_null(const Napi::Object& o, const char* fn, size_t n) {
  if (!o.Has("weights") || o.Get("weights").IsUndefined()) return nullptr;
  Napi::Value v = o.Get("weights");
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw_expected_type(o.Env(), std::string(fn) + ": options.weights", "a Float64Array", v);
  Napi::Float64Array a = v.As<Napi::Float64Array>();
  if (a.ElementLength() != n)
    throw_expected_range(o.Env(), std::string(fn) + ": options.weights",
                         "a Float64Array of exactly " + std::to_string(n) + " elements", v);
  return a.Data();
}

Napi::Value aggregation_weights(const Napi::CallbackInfo& info) {
  const char* fn = "pg.aggregationWeights";
  return run_pg(info, fn, [&](Napi::Env env, const Napi::Object& o) -> Napi::Value {
    const int64_t B = get_int(o, fn, "batch", 0, kMaxLen), T = get_int(o, fn, "seqLen", 0, kMaxLen);
    auto mask = f32_exact(o, fn, "mask", size_t(B * T));
    auto mode = static_cast<cpu::Aggregation>(
        get_choice(o, fn, "aggregation",
                   {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"}, 0));
    const double norm = get_number_or(o, fn, "lengthNormalizer", 1.0);
    auto w = Napi::Float64Array::New(env, size_t(B * T));
    cpu::aggregation_weights(w.Data(), mask.Data(), B, T, mode, norm);
    Napi::Object r = Napi::Object::New(env);
    r.Set("weights", w);
    return r;
  });
}

Napi::Value gspo_policy_loss(const Napi::CallbackInfo& info) {
  const char* fn = "pg.gspoPolicyLoss";
  return run_pg(info, fn, [&](Napi::Env env, const Napi::Object& o) -> Napi::Value {
    const int64_t B = get_int(o, fn, "batch", 0, kMaxLen), T = get_int(o, fn, "seqLen", 0, kMaxLen);
    const size_t n = size_t(B * T);
    auto logp = f32_exact(o, fn, "logp", n), old = f32_exact(o, fn, "oldLogp", n);
    auto adv = f32_exact(o, fn, "advantages", n), mask = f32_exact(o, fn, "mask", n);
    const double* w = weights_or_null(o, fn, n);
    const double eps = get_number(o, fn, "clipEps"), eps_high = get_number_or(o, fn, "clipEpsHigh", eps);
    auto d = new_f32(env, n);
    double loss, clip, kl;
    cpu::gspo_policy_loss(d.Data(), logp.Data(), old.Data(), adv.Data(), mask.Data(), w, B, T, eps, eps_high, &loss,
                          &clip, &kl);
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", loss), r.Set("dLogp", d), r.Set("clipFraction", clip), r.Set("approxKl", kl);
    return r;
  });
}

Napi::Value entropy_bonus(const Napi::CallbackInfo& info) {
  const char* fn = "pg.entropyBonus";
  return run_pg(info, fn, [&](Napi::Env env, const Napi::Object& o) -> Napi::Value {
    const size_t n = f32_length(o, fn, "entropy");
    auto ent = f32_exact(o, fn, "entropy", n), mask = f32_exact(o, fn, "mask", n);
    const double* w = weights_or_null(o, fn, n);
    const double coef = get_number(o, fn, "coef");
    auto d = new_f32(env, n);
    double loss, mean;
    cpu::entropy_bonus(d.Data(), ent.Data(), mask.Data(), w, int64_t(n), coef, &loss, &mean);
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", loss), r.Set("dEntropy", d), r.Set("meanEntropy", mean);
    return r;
  });
}

Napi::Value kl_loss(const Napi::CallbackInfo& info) {
  const char* fn = "pg.klLoss";
  return run_pg(info, fn, [&](Napi::Env env, const Napi::Object& o) -> Napi::Value {
    const size_t n = f32_length(o, fn, "logp");
    auto logp = f32_exact(o, fn, "logp", n), ref = f32_exact(o, fn, "refLogp", n), mask = f32_exact(o, fn, "mask", n);
    const double* w = weights_or_null(o, fn, n);
    auto est = static_cast<cpu::KlEstimator>(get_choice(o, fn, "estimator", {"k1", "k2", "k3"}, -1) + 1);
    const double coef = get_number(o, fn, "coef");
    auto d = new_f32(env, n);
    double loss, mean;
    cpu::kl_loss(d.Data(), logp.Data(), ref.Data(), mask.Data(), w, int64_t(n), est, coef, &loss, &mean);
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", loss), r.Set("dLogp", d), r.Set("meanKl", mean);
    return r;
  });
}

Napi::Value ppo_policy_loss(const Napi::CallbackInfo& info) {
  const char* fn = "pg.ppoPolicyLoss";
  return run_pg(info, fn, [&](Napi::Env env, const Napi::Object& o) -> Napi::Value {
    const size_t n = f32_length(o, fn, "logp");
    auto logp = f32_exact(o, fn, "logp", n), old = f32_exact(o, fn, "oldLogp", n);
    auto adv = f32_exact(o, fn, "advantages", n), mask = f32_exact(o, fn, "mask", n);
    const double eps = get_number(o, fn, "clipEps");
    const double eps_high = get_number_or(o, fn, "clipEpsHigh", eps), dual = get_number_or(o, fn, "dualClip", 0.0);
    auto d = new_f32(env, n);
    double loss, clip, kl, dual_frac;
    const double* w = weights_or_null(o, fn, n);
    cpu::ppo_policy_loss(d.Data(), logp.Data(), old.Data(), adv.Data(), mask.Data(), int64_t(n), eps, eps_high, dual,
                         &loss, &clip, &kl, &dual_frac, w);
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", loss), r.Set("dLogp", d), r.Set("clipFraction", clip), r.Set("dualClipFraction", dual_frac);
    r.Set("approxKl", kl);
    return r;
  });
}

Napi::Value ppo_value_loss(const Napi::CallbackInfo& info) {
  const char* fn = "pg.ppoValueLoss";
  return run_pg(info, fn, [&](Napi::Env env, const Napi::Object& o) -> Napi::Value {
    const size_t n = f32_length(o, fn, "values");
    auto v = f32_exact(o, fn, "values", n), old = f32_exact(o, fn, "oldValues", n);
    auto ret = f32_exact(o, fn, "returns", n), mask = f32_exact(o, fn, "mask", n);
    const double eps = get_number_or(o, fn, "clipEps", 0.0);
    auto d = new_f32(env, n);
    double loss, clip;
    cpu::ppo_value_loss(d.Data(), v.Data(), old.Data(), ret.Data(), mask.Data(), int64_t(n), eps, &loss, &clip);
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", loss), r.Set("dValues", d), r.Set("clipFraction", clip);
    return r;
  });
}

struct PairArrays {
  size_t n;
  Napi::Float32Array pc, pr, rc, rr;
};
PairArrays read_pairs(const Napi::Object& o, const char* fn) {
  const size_t n = f32_length(o, fn, "policyChosen");
  return {n, f32_exact(o, fn, "policyChosen", n), f32_exact(o, fn, "policyRejected", n),
          f32_exact(o, fn, "refChosen", n), f32_exact(o, fn, "refRejected", n)};
}

Napi::Value dpo_loss(const Napi::CallbackInfo& info) {
  const char* fn = "pg.dpoLoss";
  return run_pg(info, fn, [&](Napi::Env env, const Napi::Object& o) -> Napi::Value {
    PairArrays in = read_pairs(o, fn);
    const double beta = get_number(o, fn, "beta"), ls = get_number_or(o, fn, "labelSmoothing", 0.0);
    auto variant = static_cast<cpu::DpoVariant>(get_choice(o, fn, "variant", {"dpo", "ipo"}, 0));
    auto dc = new_f32(env, in.n), dr = new_f32(env, in.n), rwc = new_f32(env, in.n), rwr = new_f32(env, in.n);
    double loss, acc, margin;
    cpu::dpo_loss(dc.Data(), dr.Data(), rwc.Data(), rwr.Data(), in.pc.Data(), in.pr.Data(), in.rc.Data(), in.rr.Data(),
                  int64_t(in.n), beta, ls, variant, &loss, &acc, &margin);
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", loss), r.Set("dPolicyChosen", dc), r.Set("dPolicyRejected", dr);
    r.Set("rewardsChosen", rwc), r.Set("rewardsRejected", rwr), r.Set("accuracy", acc), r.Set("margin", margin);
    return r;
  });
}

Napi::Value exo_pref_loss(const Napi::CallbackInfo& info) {
  const char* fn = "pg.exoPrefLoss";
  return run_pg(info, fn, [&](Napi::Env env, const Napi::Object& o) -> Napi::Value {
    PairArrays in = read_pairs(o, fn);
    const double beta = get_number(o, fn, "beta"), eps = get_number_or(o, fn, "epsilon", 1e-3);
    auto form = static_cast<cpu::ExoForm>(get_choice(o, fn, "form", {"trl", "official"}, 0));
    auto dc = new_f32(env, in.n), dr = new_f32(env, in.n), p = new_f32(env, in.n);
    auto rwc = new_f32(env, in.n), rwr = new_f32(env, in.n);
    double loss, acc, margin;
    cpu::exo_pref_loss(dc.Data(), dr.Data(), p.Data(), rwc.Data(), rwr.Data(), in.pc.Data(), in.pr.Data(), in.rc.Data(),
                       in.rr.Data(), int64_t(in.n), beta, eps, form, &loss, &acc, &margin);
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", loss), r.Set("dPolicyChosen", dc), r.Set("dPolicyRejected", dr), r.Set("pChosen", p);
    r.Set("rewardsChosen", rwc), r.Set("rewardsRejected", rwr), r.Set("accuracy", acc), r.Set("margin", margin);
    return r;
  });
}

Napi::Value exo_rw_loss(const Napi::CallbackInfo& info) {
  const char* fn = "pg.exoRwLoss";
  return run_pg(info, fn, [&](Napi::Env env, const Napi::Object& o) -> Napi::Value {
    const size_t n = f32_length(o, fn, "policy");
    auto policy = f32_exact(o, fn, "policy", n), ref = f32_exact(o, fn, "ref", n), rw = f32_exact(o, fn, "rewards", n);
    const int64_t K = get_int(o, fn, "groupSize", 2, kMaxLen);
    if (n % size_t(K) != 0)
      throw_expected_range(env, std::string(fn) + ": options.policy",
                           "a Float32Array whose length is a multiple of options.groupSize (" + std::to_string(K) + ")",
                           o.Get("policy"));
    const double beta_pi = get_number(o, fn, "betaPi"), beta_r = get_number(o, fn, "betaR");
    auto d = new_f32(env, n), p = new_f32(env, n), q = new_f32(env, n), gkl = new_f32(env, n / size_t(K));
    double loss;
    cpu::exo_rw_loss(d.Data(), p.Data(), q.Data(), gkl.Data(), policy.Data(), ref.Data(), rw.Data(), int64_t(n), K,
                     beta_pi, beta_r, &loss);
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", loss), r.Set("dPolicy", d), r.Set("p", p), r.Set("q", q), r.Set("groupKl", gkl);
    return r;
  });
}

}  // namespace

void register_pg(Napi::Env env, Napi::Object exports) {
  Napi::Object pg = Napi::Object::New(env);
  pg.Set("klPerToken", Napi::Function::New(env, kl_per_token, "klPerToken"));
  pg.Set("tokenRewards", Napi::Function::New(env, token_rewards, "tokenRewards"));
  pg.Set("gae", Napi::Function::New(env, gae, "gae"));
  pg.Set("ppoPolicyLoss", Napi::Function::New(env, ppo_policy_loss, "ppoPolicyLoss"));
  pg.Set("ppoValueLoss", Napi::Function::New(env, ppo_value_loss, "ppoValueLoss"));
  pg.Set("aggregationWeights", Napi::Function::New(env, aggregation_weights, "aggregationWeights"));
  pg.Set("gspoPolicyLoss", Napi::Function::New(env, gspo_policy_loss, "gspoPolicyLoss"));
  pg.Set("entropyBonus", Napi::Function::New(env, entropy_bonus, "entropyBonus"));
  pg.Set("klLoss", Napi::Function::New(env, kl_loss, "klLoss"));
  pg.Set("dpoLoss", Napi::Function::New(env, dpo_loss, "dpoLoss"));
  pg.Set("exoPrefLoss", Napi::Function::New(env, exo_pref_loss, "exoPrefLoss"));
  pg.Set("exoRwLoss", Napi::Function::New(env, exo_rw_loss, "exoRwLoss"));
  exports.Set("pg", pg);
}

}  // namespace napi
}  // namespace rlhf
