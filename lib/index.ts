/**
 * rlhf: reinforcement learning from human feedback on a native C++/CUDA engine.
 * Public exports only; see README.md for a map of the modules.
 */
export { RlhfError, ErrorCode, withCallerStack } from './errors.js';
export { buildInfo, setThreads, availableDevices, nativeMemoryInUse, type DeviceName } from './engine/device.js';
export type { BuildInfo } from './native.js';
export { gemm, gemmReference, type GemmOptions } from './engine/gemm.js';
export {
  AdamW,
  adamwStepReference,
  ADAMW_DEFAULTS,
  type AdamWOptions,
  type AdamWState,
  type AdamWStepResult,
  type FlatParameters,
  type OptimizerTarget,
} from './engine/adamw.js';
export { DTYPES, type DType } from './engine/dtype.js';
export { configFromHF, configToHF, tinyConfig, SUPPORTED_ARCHITECTURES, type ModelConfig, type Architecture } from './engine/config.js';
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
export { readSafetensorsHeader, readTensorF32, writeSafetensors, readCheckpointIndex, writeCheckpointTensors } from './engine/safetensors.js';
export * from './tokenizer/index.js';
export * from './data/index.js';
export { makeSchedule, type Schedule, type ScheduleOptions } from './train/schedule.js';
export { TrainerEmitter, type StepEvent, type TrainerEvents } from './train/events.js';
export { saveCheckpoint, restoreCheckpoint, findLatestCheckpoint, readTrainerState, type CheckpointPart, type TrainerState } from './train/checkpoint.js';
export { SFTTrainer, type SFTOptions, type SFTResult } from './train/sft.js';
