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

t.test('rlhf info --memory: the estimate of a training step, before loading anything', async (t) => {
  let r = run('info', '--memory', '--init', 'small', '--batch-size', '8', '--seq-len', '256');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /one training step of LlamaForCausalLM \(4\.5M parameters\), batch 8 × 256 tokens, AdamW:/);
  t.match(r.stdout, /activations +\d+\.\d MiB +\(\d+\.\d MiB with --gradient-checkpointing\)/);
  const peak = (s: string) => Number(/^  peak +([\d.]+) MiB/m.exec(s)![1]);
  const ck = run(
    'info',
    '--memory',
    '--init',
    'small',
    '--batch-size',
    '8',
    '--seq-len',
    '256',
    '--gradient-checkpointing',
  );
  t.ok(peak(ck.stdout) < peak(r.stdout), 'checkpointing lowers the peak');
  const lora = run(
    'info',
    '--memory',
    '--init',
    'small',
    '--batch-size',
    '8',
    '--seq-len',
    '256',
    '--lora-rank',
    '8',
    '--lora-modules',
    'all-linear',
  );
  t.match(lora.stdout, /LoRA r8 on q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj/);
  const moments = (s: string) => Number(/AdamW moments +([\d.]+) MiB/.exec(s)![1]);
  t.ok(moments(lora.stdout) < moments(r.stdout) / 10, 'LoRA: moments for the adapters only');
  r = run('info', '--memory');
  t.equal(r.status, 2);
  t.match(r.stderr, /--memory needs one of --model <dir> or --init tiny\|small/);
  r = run('info', '--memory', '--model', '/nonexistent/model');
  t.equal(r.status, 2);
  t.match(r.stderr, /--model \/nonexistent\/model: cannot read .*config\.json \(ENOENT\)/);
});

t.test('unknown command', async (t) => {
  const r = run('nope');
  t.equal(r.status, 2);
  t.match(r.stderr, /unknown command "nope"/);
});
