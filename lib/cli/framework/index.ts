/** The machinery every `rlhf <command>` uses: flag parsing, help, progress rendering, running. */
export {
  CliError,
  camel,
  kebab,
  parseCommand,
  type CommandSpec,
  type FlagSpec,
  type FlagType,
  type ParseResult,
} from './args.js';
export { formatHelp, HELP_WIDTH, wrap } from './help.js';
export {
  attachProgress,
  formatDuration,
  formatNumber,
  type OutStream,
  type Progress,
  type ProgressOptions,
} from './progress.js';
export {
  EXIT_INTERRUPTED,
  interrupted,
  onInterrupt,
  runCommand,
  type CommandContext,
  type CommandHandler,
  type CommandIO,
} from './run.js';
