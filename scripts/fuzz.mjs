#!/usr/bin/env node
// `npm run fuzz [-- --seconds 60 --seed N --iterations N --per-input-ms 2000]`: runs the mutation
// fuzzer (test/fuzz/main.ts, TypeScript through tap's loader) in a child process with a watchdog:
// a reader stuck in a synchronous loop cannot be timed per input, so the whole run is killed
// 60 s after its time is up and reported as a hang (the inputs of findings are in build-native/fuzz/).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const i = args.indexOf('--seconds');
const seconds = i >= 0 ? Number(args[i + 1]) : 60;
const r = spawnSync(
  process.execPath,
  ['--import', '@tapjs/typescript/import', join(root, 'test', 'fuzz', 'main.ts'), ...args],
  {
    cwd: root,
    stdio: 'inherit',
    timeout: (seconds + 60) * 1000,
  },
);
if (r.signal) {
  console.log(`fuzz: the run ended by ${r.signal}${r.signal === 'SIGTERM' ? ' (watchdog: a hang)' : ' (a crash)'}`);
  process.exit(1);
}
process.exit(r.status ?? 1);
