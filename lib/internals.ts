/**
 * `rlhf/internals`: building blocks behind the public API (lib/index.ts), exported for tests,
 * benchmarks and users writing their own loops. Not a stable promise: names and shapes here may
 * change between minor versions.
 */
export { gemmReference } from './engine/gemm.js';
export { adamwStepReference } from './engine/adamw.js';
export { parseGguf, ggufTensorF32, quantizeQ8_0, dequantizeQ8_0 } from './io/gguf.js';
export { pgNative } from './engine/pg.js';
export { TrainingRun, RUN_OPTION_KEYS } from './train/run.js';
export { PolicyGradientLoop } from './train/policy-gradient.js';
export {
  renderRunsHtml,
  renderHtml,
  renderMarkdown,
  parseMetrics,
  svgLineChart,
  svgBarChart,
  svgScatter,
  svgWinTieLoss,
} from './report/index.js';
export { annotate, makePrompt, allPrompts, splitPrompts, demonstration, idealResponse } from './demo/task.js';
