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
