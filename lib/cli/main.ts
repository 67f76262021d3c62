#!/usr/bin/env node
/**
 * The `rlhf` command. `rlhf <command> --help` shows each command's flags and an example; every
 * flag can also come from a YAML or JSON file given with --config.
 */
import { runCommand, type CommandHandler, type CommandSpec } from './framework/index.js';
import { annotateCommand, annotateSpec } from './commands/annotate.js';
import { demoCommand, demoSpec } from './commands/demo.js';
import { studyCommand, studySpec } from './commands/study.js';
import { dpoCommand, dpoSpec } from './commands/dpo.js';
import { evalCommand, evalSpec } from './commands/evaluate.js';
import { exportCommand, exportSpec } from './commands/export.js';
import { generateCommand, generateSpec } from './commands/generate.js';
import { infoCommand, infoSpec } from './commands/info.js';
import { labelCommand, labelSpec } from './commands/label.js';
import { longrewardCommand, longrewardSpec } from './commands/longreward.js';
import { grpoCommand, grpoSpec, ppoCommand, ppoSpec } from './commands/policy.js';
import { prmCommand, prmSpec } from './commands/prm.js';
import { reportCommand, reportSpec } from './commands/report.js';
import { rmCommand, rmSpec } from './commands/rm.js';
import { serveCommand, serveSpec } from './commands/serve.js';
import { sftCommand, sftSpec } from './commands/sft.js';

const COMMANDS: Array<[CommandSpec, CommandHandler]> = [
  [demoSpec, demoCommand],
  [studySpec, studyCommand],
  [sftSpec, sftCommand],
  [labelSpec, labelCommand],
  [rmSpec, rmCommand],
  [prmSpec, prmCommand],
  [ppoSpec, ppoCommand],
  [grpoSpec, grpoCommand],
  [dpoSpec, dpoCommand],
  [generateSpec, generateCommand],
  [evalSpec, evalCommand],
  [reportSpec, reportCommand],
  [exportSpec, exportCommand],
  [infoSpec, infoCommand],
  [serveSpec, serveCommand],
  [longrewardSpec, longrewardCommand],
  [annotateSpec, annotateCommand],
];

function usage(): string {
  const width = Math.max(...COMMANDS.map(([s]) => s.name.length));
  return [
    'usage: rlhf <command> [flags]',
    '',
    'commands:',
    ...COMMANDS.map(([s]) => `  ${s.name.padEnd(width)}  ${s.summary}`),
    '',
    'rlhf <command> --help shows the flags of a command and an example.',
    'Every flag can also come from a YAML or JSON file: --config settings.yaml',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(usage() + '\n');
    return command ? 0 : 1;
  }
  const entry = COMMANDS.find(([s]) => s.name === command);
  if (!entry) {
    process.stderr.write(`rlhf: unknown command "${command}"\n\n${usage()}\n`);
    return 2;
  }
  return runCommand(entry[0], rest, entry[1]);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`rlhf: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);
