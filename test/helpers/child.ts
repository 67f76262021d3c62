// Runs a TypeScript script in a child process (with the TypeScript loader this test runs under),
// so that a crash (SIGSEGV, abort) is observed as a signal instead of taking the test runner down.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { packageRoot } from '../../lib/native.js';

/** The --import flags that let node run .ts files (tap's TypeScript loader). */
export const tsLoaderArgs: string[] = process.execArgv.filter((a) => a.includes('typescript'));

export function runTsChild(
  script: string,
  args: string[] = [],
  nodeFlags: string[] = [],
  timeoutMs = 120_000,
): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [...tsLoaderArgs, ...nodeFlags, script, ...args], {
    cwd: packageRoot,
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, RLHF_THREADS: '1', TS_NODE_TRANSPILE_ONLY: '1' }, // tsc checks these files already
  });
}
