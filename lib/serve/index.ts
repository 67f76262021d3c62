/** Serving a model over an OpenAI-compatible HTTP API. */
export { startServer, type RunningServer, type ServeOptions } from './server.js';
export {
  Scheduler,
  QueueFullError,
  type ChoiceResult,
  type ChoiceUpdate,
  type SamplingParams,
  type SchedulerOptions,
  type SchedulerStats,
  type TokenLogprob,
} from './scheduler.js';
export { streamId } from './engines.js';
export {
  ApiError,
  parseChatRequest,
  parseCompletionRequest,
  type ChatRequest,
  type CompletionRequest,
} from './requests.js';
