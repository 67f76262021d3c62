// `--model org/name` resolves in the local Hugging Face cache (HF_HUB_CACHE), with no network,
// and says where it looked when the model is absent.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { tinyConfig } from '../../lib/engine/config.js';

const cli = join(packageRoot, 'dist', 'cli', 'main.js');

t.test('rlhf info --memory --model <hub id>', async (t) => {
  const dir = t.testdir();
  const cache = join(dir, 'hub');
  const hash = 'c'.repeat(40);
  const repo = join(cache, 'models--Org--Tiny');
  mkdirSync(join(repo, 'refs'), { recursive: true });
  mkdirSync(join(repo, 'snapshots', hash), { recursive: true });
  writeFileSync(join(repo, 'refs', 'main'), hash);
  writeFileSync(
    join(repo, 'snapshots', hash, 'config.json'),
    JSON.stringify(tinyConfig({ vocab: 300, hidden: 32, layers: 2, heads: 4, ffn: 64 })),
  );
  const env = { ...process.env, HF_HUB_CACHE: cache, HF_HOME: join(dir, 'home') };
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', cwd: dir, env });
  const r = run('info', '--memory', '--model', 'Org/Tiny', '--batch-size', '1', '--seq-len', '8');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /one training step of LlamaForCausalLM/);
  const absent = run('info', '--memory', '--model', 'Org/Absent', '--batch-size', '1', '--seq-len', '8');
  t.equal(absent.status, 2);
  t.match(
    absent.stderr,
    /--model: Org\/Absent is neither a directory nor in the local Hugging Face cache \(no network access is attempted\); looked for .*hub\/models--Org--Absent\/refs\/main, .*home\/hub\/models--Org--Absent\/refs\/main/,
  );
  mkdirSync(join(dir, 'Org', 'Tiny'), { recursive: true });
  const local = run('info', '--memory', '--model', 'Org/Tiny', '--batch-size', '1', '--seq-len', '8');
  t.match(
    local.stderr,
    /--model .*Org\/Tiny: cannot read .*Org\/Tiny\/config\.json/,
    'a local folder of that name wins over the cache',
  );
});
