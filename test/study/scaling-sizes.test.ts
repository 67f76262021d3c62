// The exo-frontier study's β/epochs sweep and the scaling study's size arms on shrunken settings (a functional run, not the claim): reward
// models and SFT policies of another size are trained once, cached under sizes/, and reused; the
// table gains one reward-model row and one policy row per size; the base size's arms are the
// base's own runs (the same cache files as the samples-per-prompt arm at the default n).
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStudies } from '../../lib/study/runner.js';
import { STUDY_PRESETS, type StudySettings } from '../../lib/study/setup.js';

t.setTimeout(900000);
const dir = mkdtempSync(join(tmpdir(), 'rlhf-study-sizes-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const small = STUDY_PRESETS.small;
const settings: StudySettings = {
  ...small,
  sft: { ...small.sft, repeats: 1, epochs: 2 },
  pairs: { rounds: 1, evalRounds: 1 },
  rm: { ...small.rm, epochs: 1 },
  ppo: { ...small.ppo, iterations: 2, promptsPerIteration: 4 },
  eval: { samples: 1 },
  scalingSamples: [1, 2],
  scalingSizes: [{ hidden: 32, layers: 1, heads: 4, kvHeads: 2, ffn: 86 }],
};

t.test('scaling with one extra size', async (t) => {
  const r = await runStudies({ output: dir, names: ['scaling'], seeds: 1, settings });
  const rows = r.outcomes[0].table.rows.map((row) => row[0]);
  t.same(rows, ['1', '2', 'reward model 1 × 32', 'policy 1 × 32', 'reward model 2 × 64', 'policy 2 × 64']);
  const seed = join(dir, 'runs', 'small', 'seed-0');
  t.ok(existsSync(join(seed, 'sizes', 'h32-l1', 'sft', 'done.json')));
  t.ok(existsSync(join(seed, 'sizes', 'h32-l1', 'rm', 'done.json')));
  t.notOk(existsSync(join(seed, 'sizes', 'h64-l2')), 'the base size is the base');
  const policies = readdirSync(join(seed, 'policies')).sort();
  t.same(policies, [
    'ppo-reference-ptx1-n1.json',
    'ppo-reference-ptx1-policy-h32-l1.json',
    'ppo-reference-ptx1-rm-h32-l1.json',
    'ppo-reference-ptx1.json',
    'sft-h32-l1.json',
    'sft-samples.json',
    'sft.json',
  ]);
  const acc = r.outcomes[0].table.rows[2][2];
  t.match(acc, /^RM accuracy \d+(\.\d+)?%$/);
  t.match(r.outcomes[0].table.rows[3][2], /^own SFT gold /);
  t.ok(r.outcomes[0].chart.includes('policy 1×32') && r.outcomes[0].chart.includes('RM 2×64'));
});

t.test('exo-frontier with a β and an epochs point', async (t) => {
  const out = join(dir, 'frontier');
  const r = await runStudies({
    output: out,
    names: ['exo-frontier'],
    seeds: 1,
    settings: { ...settings, frontierKs: [2], frontierBetas: [0.3], frontierEpochs: [2] },
  });
  t.same(
    r.outcomes[0].table.rows.map((row) => row[0]),
    [
      'EXO-rw K=2',
      'DPO-rw K=2',
      'EXO-rw K=4 β=0.3 ep=1',
      'DPO-rw K=4 β=0.3 ep=1',
      'EXO-rw K=4 β=0.1 ep=2',
      'DPO-rw K=4 β=0.1 ep=2',
    ],
  );
  const policies = readdirSync(join(out, 'runs', 'small', 'seed-0', 'policies')).sort();
  for (const f of ['exo-rw-k4-beta0.3-ep1.json', 'dpo-rw-k4-beta0.1-ep2.json']) t.ok(policies.includes(f), f);
  t.equal(r.outcomes[0].chart.match(/<circle/g)?.length, 6, 'one point per row');
});
