export * from './types.js';
export { RewardModel } from './reward-model.js';
