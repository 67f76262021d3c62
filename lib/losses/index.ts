/**
 * Every RLHF loss of the seed spec as a plain float64 TypeScript function with its analytic
 * gradient: the references the native kernels are tested against (test/engine/pg*.test.ts). The
 * policy-gradient trainers run the native family (pgNative, native/cpu/pg_losses.cc) on whole
 * minibatches; they use these functions only for the float64 advantage estimators (GAE, group
 * advantages, whitening). Exported for users who want a loss on plain arrays.
 *
 *   rm.ts          Bradley-Terry (+ margin, score penalty), correctness BCE, process-reward BCE
 *   kl.ts          k1 / k2 / k3 per-token KL, KL as a loss term
 *   gae.ts         token rewards, GAE, whitening, reference-baseline scores
 *   ppo.ts         clipped (dual-clip) policy loss, clipped value loss, entropy bonus
 *   group.ts       GRPO / RLOO / REINFORCE++ advantages, prompt-variance filter
 *   preference.ts  DPO / cDPO / IPO, SimPO, KTO, dpo-rw
 *   exo.ts         EXO-pref (TRL and official forms), EXO-rw
 *   sequence.ts    token → sequence log-probs and back, NTP regulariser
 */
export type { NumArray, Aggregation } from './common.js';
export { AGGREGATIONS, sigmoid, logSigmoid } from './common.js';
export { sequenceLogprobs, spreadSequenceGrad, ntpLoss, type SequenceOptions } from './sequence.js';
export {
  bradleyTerryLoss,
  correctnessLoss,
  processRewardLoss,
  aggregateProcessScores,
  type BradleyTerryResult,
  type ProcessAggregation,
} from './rm.js';
export { klPerToken, klLoss, KL_ESTIMATORS, type KlEstimator } from './kl.js';
export { tokenRewards, gae, whiten, referenceBaselineScores, lastValidIndex } from './gae.js';
export {
  ppoPolicyLoss,
  gspoPolicyLoss,
  truncatedImportanceWeights,
  ppoValueLoss,
  entropyBonus,
  type PpoPolicyLossResult,
} from './ppo.js';
export {
  grpoAdvantages,
  rlooAdvantages,
  reinforcePlusPlusAdvantages,
  filterPromptsByVariance,
  varianceQuantile,
} from './group.js';
export {
  dpoLoss,
  simpoLoss,
  orpoLoss,
  ktoLoss,
  ktoKlBaseline,
  dpoRwLoss,
  type DpoVariant,
  type PairLossResult,
} from './preference.js';
export { exoPrefLoss, exoRwLoss, EXO_OFFICIAL_EPSILON, type ExoPrefResult } from './exo.js';
