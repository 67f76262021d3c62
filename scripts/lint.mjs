#!/usr/bin/env node
// `npm run lint`: ESLint and Prettier (--check) over the TypeScript/JavaScript tree, clang-format
// (--dry-run --Werror, .clang-format) over native/. Exits non-zero on the first tool that finds
// something; `npm run format` rewrites with Prettier and clang-format instead.
// clang-format comes from Debian (scripts/install-test-tools.sh installs it).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const fix = process.argv.includes('--fix');
const bin = (name) => join(root, 'node_modules', '.bin', name);
const run = (label, cmd, args) => {
  process.stdout.write(`== ${label}\n`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) {
    process.stderr.write(
      `lint: cannot run ${cmd} (${r.error.message})${cmd === 'clang-format' ? '; install it with scripts/install-test-tools.sh' : ''}\n`,
    );
    process.exit(1);
  }
  if (r.status !== 0) process.exit(r.status ?? 1);
};
const tsTree = ['lib', 'test', 'bench', 'scripts'];
// clang-format 14 reaches no fixed point on these (RLHF_LAUNCH(kernel, …)(args) under an unbraced
// if/else, and the microkernels' intrinsic tables): formatting them twice gives two answers, so they
// are kept as formatted by hand and left out of the check.
const UNSTABLE = new Set([
  'native/cpu/gemm_microkernels.cc',
  'native/cuda/attention.cu',
  'native/cuda/embedding.cu',
  'native/cuda/logsoftmax.cu',
  'native/cuda/rope.cu',
  'native/cuda/swiglu.cu',
]);
const native = spawnSync('git', ['ls-files', 'native/*.cc', 'native/*.h', 'native/*.cu'], {
  cwd: root,
  encoding: 'utf8',
})
  .stdout.split('\n')
  .filter((f) => f && !UNSTABLE.has(f));

if (!fix) run('eslint', bin('eslint'), tsTree);
run(fix ? 'prettier --write' : 'prettier --check', bin('prettier'), [
  fix ? '--write' : '--check',
  '--log-level',
  'warn',
  ...tsTree,
]);
run(
  fix ? 'clang-format -i' : 'clang-format --dry-run',
  'clang-format',
  fix ? ['-i', ...native] : ['--dry-run', '--Werror', ...native],
);
process.stdout.write('lint: clean\n');
