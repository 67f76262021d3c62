/**
 * EXO — Efficient Exact Optimization (Ji et al., ICML 2024, arXiv 2402.00856; docs/algorithms.md §3.1–3.3,
 * properties 4–9): the policy's empirical distribution over sampled candidates is matched to the
 * reward's by the REVERSE KL (mode-seeking), where DPO uses the forward KL.
 *
 * Inputs are sequence log-probs over response tokens (sequenceLogprobs); gradients are w.r.t. the
 * policy's sequence log-probs; losses are means over pairs / groups.
 */
import {
  args,
  groupLogSoftmax,
  logSigmoid,
  pairDiagnostics,
  readGroups,
  readPairs,
  sameLength,
  sigmoid,
  type NumArray,
} from './common.js';
import type { PairLossResult } from './preference.js';

/**
 * ε of the official repo's exo-pref: its log-targets [0, −10] are those of Bernoulli(1 − ε) with
 * ε = 1/(1 + e^10) ≈ 4.54e-5, up to normalisation (docs/algorithms.md §3.3, property 5).
 */
export const EXO_OFFICIAL_EPSILON = 1 / (1 + Math.exp(10));

export interface ExoPrefResult extends PairLossResult {
  /** p_i = σ(β z_i), the policy's probability of the chosen response within the pair */
  pChosen: Float64Array;
}

/**
 * EXO with pairwise preferences (paper Eq. 16; docs/algorithms.md §3.3; TRL `loss_type="exo_pair"`). With
 * z = h_w − h_l, p = σ(βz):
 *
 *   form 'trl':      ℓ = p [log p − log(1 − ε)] + (1 − p) [log(1 − p) − log ε] = KL(Bern(p) ‖ Bern(1 − ε))
 *   form 'official': ℓ = p [log p − 0] + (1 − p) [log(1 − p) − log(ε/(1 − ε))]   (log-targets plugged
 *                    in unnormalised as in the official repo, [0, −10] for ε = EXO_OFFICIAL_EPSILON)
 *                    = the 'trl' value + log(1 − ε)  (−4.54e-5 for the repo's ε)
 *
 *   ∂ℓ/∂z = β p (1 − p) (βz − log((1 − ε)/ε))   for both forms,
 *
 * so ℓ ≥ 0 ('trl') with its minimum 0 exactly at βz = log((1 − ε)/ε) (6.9068 for ε = 1e-3): the
 * margin is pushed to a finite target, and the gradient changes sign there (properties 4–6).
 * ∂ℓ/∂policyChosen = ∂ℓ/∂z, ∂ℓ/∂policyRejected = −∂ℓ/∂z (÷ N for the mean).
 * @param input.beta β = β_π > 0 (TRL: the DPO beta)
 * @param input.epsilon ε in (0, 1), default 1e-3 (TRL forces label_smoothing 0 to 1e-3)
 */
export function exoPrefLoss(input: {
  policyChosen: NumArray;
  policyRejected: NumArray;
  refChosen: NumArray;
  refRejected: NumArray;
  beta: number;
  epsilon?: number;
  form?: 'trl' | 'official';
}): ExoPrefResult {
  const fn = 'exoPrefLoss';
  const a = args(fn, input, ['policyChosen', 'policyRejected', 'refChosen', 'refRejected', 'beta', 'epsilon', 'form']);
  const { hW, hL } = readPairs(fn, a);
  const beta = a.number('beta', { gt: 0 });
  const eps = a.number('epsilon', { gt: 0, lt: 1 }, 1e-3);
  const form = a.oneOf('form', ['trl', 'official'] as const, 'trl');
  const logTargetW = form === 'trl' ? Math.log1p(-eps) : 0;
  const logTargetL = form === 'trl' ? Math.log(eps) : Math.log(eps) - Math.log1p(-eps);
  const target = Math.log1p(-eps) - Math.log(eps);
  const n = hW.length;
  const dPolicyChosen = new Float64Array(n),
    dPolicyRejected = new Float64Array(n),
    pChosen = new Float64Array(n);
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const u = beta * (hW[i] - hL[i]);
    const p = sigmoid(u),
      q = sigmoid(-u);
    pChosen[i] = p;
    loss += (p * (logSigmoid(u) - logTargetW) + q * (logSigmoid(-u) - logTargetL)) / n;
    const dz = beta * p * q * (u - target);
    dPolicyChosen[i] = dz / n;
    dPolicyRejected[i] = -dz / n;
  }
  return { loss, dPolicyChosen, dPolicyRejected, pChosen, ...pairDiagnostics(beta, hW, hL) };
}

/**
 * EXO with a reward model and K samples per prompt ("exo-rw", docs/algorithms.md §3.2,).
 * Per group of K = groupSize candidates of one prompt (group-contiguous layout):
 *
 *   f_i = β_π h_i,  log p_i = f_i − logsumexp_j f_j,  log q_i = r_i/β_r − logsumexp_j r_j/β_r,
 *   L_group = Σ_i p_i (log p_i − log q_i) = KL(p ‖ q) ≥ 0,
 *   ∂L_group/∂f_i = p_i [(log p_i − log q_i) − KL(p ‖ q)]   (sums to 0 over the group),
 *
 * loss = mean over groups, ∂loss/∂policy_i = β_π ∂L_group/∂f_i / #groups. L = 0 iff
 * f_i − f_j = (r_i − r_j)/β_r, i.e. h_i − h_j = (r_i − r_j)/(β_π β_r) (properties 7–8).
 * The repo's logit temperature (0.8) applies upstream, to the logits that give the log-probs.
 * @param input.groupSize K >= 2, dividing policy.length
 * @returns also p and q (per sample) and the per-group KL
 */
export function exoRwLoss(input: {
  policy: NumArray;
  ref: NumArray;
  rewards: NumArray;
  groupSize: number;
  betaPi: number;
  betaR: number;
}): { loss: number; dPolicy: Float64Array; p: Float64Array; q: Float64Array; groupKl: Float64Array } {
  const fn = 'exoRwLoss';
  const a = args(fn, input, ['policy', 'ref', 'rewards', 'groupSize', 'betaPi', 'betaR']);
  const { h, k } = readGroups(fn, a, input.groupSize);
  const rewards = a.array('rewards');
  sameLength(fn, 'policy', h, 'rewards', rewards);
  const betaPi = a.number('betaPi', { gt: 0 });
  const betaR = a.number('betaR', { gt: 0 });
  const logp = groupLogSoftmax(h, k, betaPi);
  const logq = groupLogSoftmax(rewards, k, 1 / betaR);
  const p = logp.map(Math.exp),
    q = logq.map(Math.exp);
  const groups = h.length / k;
  const dPolicy = new Float64Array(h.length),
    groupKl = new Float64Array(groups);
  let loss = 0;
  for (let g = 0, off = 0; g < groups; g++, off += k) {
    let kl = 0;
    for (let i = 0; i < k; i++) kl += p[off + i] * (logp[off + i] - logq[off + i]);
    groupKl[g] = kl;
    loss += kl / groups;
    for (let i = 0; i < k; i++)
      dPolicy[off + i] = (betaPi * p[off + i] * (logp[off + i] - logq[off + i] - kl)) / groups;
  }
  return { loss, dPolicy, p, q, groupKl };
}
