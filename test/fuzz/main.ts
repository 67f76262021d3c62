// `npm run fuzz [-- --seconds 60 --seed N --iterations N --per-input-ms 2000]`: the mutation
// fuzzer of test/fuzz/harness.ts over the safetensors and JSONL readers. Failing inputs are saved
// under build-native/fuzz/. Exit code 1 when anything but clean errors and acceptances was seen.
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { runFuzz, summary } from './harness.js';

function flag(name: string, fallback?: number): number | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0)
    throw new RangeError(`fuzz: expected --${name} to be a non-negative number, received ${process.argv[i + 1]}`);
  return v;
}

const seed = flag('seed', Date.now() % 1_000_000)!;
const stats = await runFuzz({
  seed,
  seconds: flag('seconds', 60),
  iterations: flag('iterations'),
  perInputMs: flag('per-input-ms', 2000),
  corpusDir: join(packageRoot, 'test', 'fuzz', 'corpus'),
  saveDir: join(packageRoot, 'build-native', 'fuzz'),
  log: (line) => console.log(line),
});
console.log(summary(stats, seed));
const bad = stats.crashes + stats.hangs + stats.wrongLines + stats.silentAcceptances + stats.falseRejections;
process.exitCode = bad > 0 ? 1 : 0;
