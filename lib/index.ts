/**
 * rlhf: reinforcement learning from human feedback on a native C++/CUDA engine.
 *
 * The public API, on purpose: what a user needs to load, train, align, evaluate, serve and export
 * models (see README.md for a map of the modules and docs/api for the reference). Building blocks
 * that are useful for tests, benchmarks and custom loops but are not a stable promise — the plain
 * reference kernels, the trainers' shared loop plumbing, the report's SVG/HTML renderers, the demo
 * task's internals, GGUF quantisers, the raw native policy-gradient family — are exported from
 * `rlhf/internals` instead (lib/internals.ts).
 */
export { RlhfError, ErrorCode, withCallerStack } from './errors.js';
export {
  buildInfo,
  setThreads,
  availableDevices,
  nativeMemoryInUse,
  nativeMemoryPeak,
  nativeWorkspaceBytes,
  nativeMemoryCached,
  releaseCachedMemory,
  setCacheLimit,
  setHugePages,
  nativeMemoryStats,
  type DeviceName,
} from './engine/device.js';
export {
  estimateTrainingMemory,
  parameterCount,
  tensorParallelShard,
  type MemoryEstimate,
  type TrainingMemoryOptions,
} from './engine/memory.js';
export { estimateKvPool, type KvPoolEstimate, type KvPoolGroup, type KvPoolOptions } from './engine/kv-memory.js';
export type { BuildInfo, BlockCacheStats } from './native.js';
export { gemm, type GemmOptions } from './engine/gemm.js';
export {
  AdamW,
  ADAMW_DEFAULTS,
  type AdamWOptions,
  type AdamWPlacement,
  type AdamWState,
  type AdamWStepResult,
  type FlatParameters,
  type OptimizerTarget,
} from './engine/adamw.js';
export { DTYPES, type DType } from './engine/dtype.js';
export { resolveCheckpoint, findInHubCache, hubCacheRoots, isHubId } from './io/hub.js';
export { parseRope, ropeFrequencies, ROPE_TYPES, type RopeScaling, type RopeType } from './engine/rope.js';
export {
  configFromHF,
  configToHF,
  tinyConfig,
  SUPPORTED_ARCHITECTURES,
  type ModelConfig,
  type Architecture,
} from './engine/config.js';
export { LORA_MODULES, type LoraOptions, type LoraConfig, type LoraModuleName } from './engine/lora.js';
export {
  Model,
  type ForwardBatch,
  type ForwardResult,
  type BackwardGrads,
  type GenerateOptions,
  type GeneratedSequence,
  type ParameterInfo,
  type LoadOptions,
  type SaveOptions,
  type TensorParallelGroup,
} from './engine/model.js';
export {
  GenerationSession,
  type GenerationSessionOptions,
  type GenerationSessionStats,
  type KvGroupStats,
  type SessionRequestOptions,
  type SessionResult,
  type SessionStepReport,
} from './engine/generation-session.js';
export { exportGguf, GGUF_DTYPES, type GgufDType, type GgufExportOptions } from './io/gguf-export.js';
export { readGguf, type GgufFile, type GgufValue, type GgufTensorInfo } from './io/gguf.js';
export {
  readSafetensorsHeader,
  readTensorF32,
  writeSafetensors,
  readCheckpointIndex,
  writeCheckpointTensors,
} from './io/safetensors.js';
export * from './tokenizer/index.js';
export * from './data/index.js';
export { makeSchedule, type Schedule, type ScheduleOptions } from './train/schedule.js';
export { TrainerEmitter, type StepEvent, type TrainerEvents } from './train/events.js';
export {
  saveCheckpoint,
  restoreCheckpoint,
  findLatestCheckpoint,
  findVerifiedCheckpoint,
  verifyCheckpoint,
  cleanCheckpointLeftovers,
  readTrainerState,
  type CheckpointManifest,
  type CheckpointPart,
  type TrainerState,
} from './train/checkpoint.js';
export { RunLock, type LockInfo } from './train/run-lock.js';
export { readManifest, runIdentity, type RunManifest, type RunIdentitySource } from './train/run-manifest.js';
export { SFTTrainer, type SFTOptions, type SFTResult } from './train/sft.js';
export * from './losses/index.js';
export * from './rewards/index.js';
export * from './rewards/longreward/index.js';
export * from './rollout/index.js';
export type { RunOptions } from './train/run.js';
export { PPOTrainer, type PPOOptions, type PolicyGradientOptions } from './train/ppo.js';
export { GroupTrainer, type GroupOptions } from './train/group.js';
export { type PolicyGradientResult, type AdvantageEstimator, type KlOptions } from './train/policy-gradient.js';
export {
  RewardTrainer,
  type RewardTrainerOptions,
  type RewardEvalResult,
  type RewardTrainResult,
} from './train/reward.js';
export {
  ProcessRewardTrainer,
  type ProcessRewardTrainerOptions,
  type ProcessRewardEvalResult,
  type ProcessRewardTrainResult,
} from './train/process-reward.js';
export {
  PreferenceTrainer,
  PREFERENCE_LOSSES,
  type PreferenceLoss,
  type PreferenceTrainResult,
  type OnlinePair,
} from './train/preference.js';
export { bestOfN, type BestOfNRecord } from './train/rejection.js';
export { writeReport, writeRunReport, loadRuns, readMetrics } from './report/index.js';
export { attachTracking, TensorBoardWriter, readEventFile, MlflowRun, type DecodedEvent } from './track/index.js';
export type { DemoSummary as ReportSummary, MetricsByStage, RenderOptions, RunData } from './report/index.js';
export { runDemo, DEMO_PRESETS, type DemoSettings, type DemoSummary, type StageHook } from './demo/pipeline.js';
export { goldScore, type TaskPrompt, type Format, type GoldBreakdown } from './demo/task.js';
export { runStudies, STUDY_NAMES, type RunStudiesOptions, type StudySummary } from './study/runner.js';
export { STUDY_PRESETS, type StudySettings, type PresetName } from './study/setup.js';
export { hierarchicalBootstrap, type Estimate, type BootstrapOptions } from './study/stats.js';
export type { StudyOutcome } from './study/types.js';
export { CalculatorEnvironment, evaluate as evaluateArithmetic } from './demo/calculator.js';
export {
  initDistributed,
  currentGroup,
  shardRange,
  allGatherRanges,
  launchedByMpi,
  mpiAvailability,
  DEFAULT_BUCKET_BYTES,
  type ProcessGroup,
  type OverlapReport,
  type DistributedBackend,
  type GradientTarget,
} from './distributed/index.js';
export { startServer, type RunningServer, type ServeOptions } from './serve/index.js';
