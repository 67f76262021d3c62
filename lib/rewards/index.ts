export * from './types.js';
export { RewardModel } from './reward-model.js';
export { ProcessRewardModel, type ProcessRewardModelOptions } from './process-reward-model.js';
export { monteCarloStepLabels, type StepLabelOptions } from './step-labels.js';
export { overlongPenalty, type OverlongOptions } from './overlong.js';
