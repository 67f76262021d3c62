#!/usr/bin/env node
// `npm run bench [-- <name>...] [--json] [--quick]`: compiles bench/ (tsc -> build-native/bench-dist)
// and runs bench/<name>.bench.ts for each name (all when none is given).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const names = args.filter((a) => !a.startsWith('--'));
const flags = args.filter((a) => a.startsWith('--'));
const all = readdirSync(join(root, 'bench'))
  .filter((f) => f.endsWith('.bench.ts'))
  .map((f) => f.replace('.bench.ts', ''))
  .sort();
for (const n of names)
  if (!all.includes(n)) {
    console.error(`unknown benchmark "${n}"; available: ${all.join(', ')}`);
    process.exit(2);
  }
const tsc = spawnSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.bench.json'], {
  cwd: root,
  stdio: 'inherit',
});
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
let status = 0;
for (const name of names.length ? names : all) {
  const r = spawnSync(
    process.execPath,
    [join(root, 'build-native', 'bench-dist', 'bench', `${name}.bench.js`), ...flags],
    { cwd: root, stdio: 'inherit' },
  );
  if (r.status !== 0) status = r.status ?? 1;
}
process.exitCode = status;
