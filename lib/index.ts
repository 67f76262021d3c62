/**
 * rlhf: reinforcement learning from human feedback on a native C++/CUDA engine.
 * Public exports only; see README.md for a map of the modules.
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
  type MemoryEstimate,
  type TrainingMemoryOptions,
} from './engine/memory.js';
export type { BuildInfo, BlockCacheStats } from './native.js';
export { gemm, gemmReference, type GemmOptions } from './engine/gemm.js';
export {
  AdamW,
  adamwStepReference,
  ADAMW_DEFAULTS,
  type AdamWOptions,
  type AdamWPlacement,
  type AdamWState,
  type AdamWStepResult,
  type FlatParameters,
  type OptimizerTarget,
} from './engine/adamw.js';
export { DTYPES, type DType } from './engine/dtype.js';
export { resolveCheckpoint, findInHubCache, hubCacheRoots, isHubId } from './engine/hub.js';
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
} from './engine/model.js';
export { exportGguf, GGUF_DTYPES, type GgufDType, type GgufExportOptions } from './engine/gguf-export.js';
export {
  readGguf,
  parseGguf,
  ggufTensorF32,
  quantizeQ8_0,
  dequantizeQ8_0,
  type GgufFile,
  type GgufValue,
  type GgufTensorInfo,
} from './engine/gguf.js';
export {
  readSafetensorsHeader,
  readTensorF32,
  writeSafetensors,
  readCheckpointIndex,
  writeCheckpointTensors,
} from './engine/safetensors.js';
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
export { pgNative } from './engine/pg.js';
export * from './rewards/index.js';
export * from './rewards/longreward/index.js';
export * from './rollout/index.js';
export { TrainingRun, RUN_OPTION_KEYS, type RunOptions } from './train/run.js';
export { PPOTrainer, type PPOOptions, type PolicyGradientOptions } from './train/ppo.js';
export { GroupTrainer, type GroupOptions } from './train/group.js';
export {
  PolicyGradientLoop,
  type PolicyGradientResult,
  type AdvantageEstimator,
  type KlOptions,
} from './train/policy-gradient.js';
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
export {
  writeReport,
  writeRunReport,
  loadRuns,
  renderRunsHtml,
  renderHtml,
  renderMarkdown,
  readMetrics,
  parseMetrics,
  svgLineChart,
  svgBarChart,
  svgScatter,
  svgWinTieLoss,
} from './report/index.js';
export { attachTracking, TensorBoardWriter, readEventFile, MlflowRun, type DecodedEvent } from './track/index.js';
export type { DemoSummary as ReportSummary, MetricsByStage, RenderOptions, RunData } from './report/index.js';
export { runDemo, DEMO_PRESETS, type DemoSettings, type DemoSummary, type StageHook } from './demo/pipeline.js';
export {
  goldScore,
  annotate,
  makePrompt,
  allPrompts,
  splitPrompts,
  demonstration,
  idealResponse,
  type TaskPrompt,
  type Format,
  type GoldBreakdown,
} from './demo/task.js';
export { CalculatorEnvironment, evaluate as evaluateArithmetic } from './demo/calculator.js';
export {
  initDistributed,
  currentGroup,
  shardRange,
  allGatherRanges,
  launchedByMpi,
  mpiAvailability,
  type ProcessGroup,
  type DistributedBackend,
  type GradientTarget,
} from './distributed/index.js';
export { startServer, type RunningServer, type ServeOptions } from './serve/index.js';
