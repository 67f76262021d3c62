// `rlhf info` prints the build; unknown commands exit non-zero with the usage.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';

// The built command (npm's `prepare` compiles lib/ to dist/; npm test rebuilds it first).
const cli = join(packageRoot, 'dist', 'cli', 'main.js');
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: packageRoot });

t.test('rlhf info', async (t) => {
  const r = run('info');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /rlhf \d+\.\d+\.\d+/);
  t.match(r.stdout, /backends: +cpu/);
  const j = JSON.parse(run('info', '--json').stdout);
  t.ok(j.threads >= 1);
});

t.test('the built bin is executable, run directly as `npx rlhf` runs it', async (t) => {
  t.ok(statSync(cli).mode & 0o100, 'dist/cli/main.js has the owner execute bit (scripts/build-ts.mjs)');
  const r = spawnSync(cli, ['info', '--json'], { encoding: 'utf8', cwd: packageRoot });
  t.equal(r.status, 0, r.stderr);
});

t.test('unknown command', async (t) => {
  const r = run('nope');
  t.equal(r.status, 2);
  t.match(r.stderr, /unknown command "nope"/);
});
