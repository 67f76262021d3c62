// `rlhf demo --quick` through the built command: summary.json has the documented schema, the
// report and per-stage metrics are written, and the same seed reproduces the same figures.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';

const cli = join(packageRoot, 'dist', 'cli', 'main.js');
const demo = (out: string) =>
  spawnSync(process.execPath, [cli, 'demo', '--quick', '--output', out, '--threads', '1'], { encoding: 'utf8' });

t.test('rlhf demo --quick', { timeout: 240000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-demo-'));
  try {
    const r = demo(join(dir, 'a'));
    t.equal(r.status, 0, r.stderr.slice(-2000));
    t.match(r.stdout, /report: +.*report\.html/);
    const s = JSON.parse(readFileSync(join(dir, 'a', 'summary.json'), 'utf8'));
    t.type(s.rm.accuracy, 'number');
    t.type(s.sft.goldScore, 'number');
    t.type(s.seconds, 'number');
    for (const k of ['ppo', 'dpo', 'exo', 'grpo']) {
      const p = s.policies[k];
      for (const f of ['winRate', 'tieRate', 'lossRate', 'goldScore', 'kl', 'length'])
        t.type(p[f], 'number', `${k}.${f}`);
      t.ok(
        Math.abs(p.winRate - (1 - p.lossRate - p.tieRate) - p.tieRate / 2) < 1e-9,
        `${k}: winRate counts ties as half`,
      );
    }
    for (const f of [
      'report.html',
      'summary.md',
      'data/preferences.jsonl',
      'sft/metrics.jsonl',
      'rm/metrics.jsonl',
      'ppo/metrics.jsonl',
      'dpo/metrics.jsonl',
      'exo/metrics.jsonl',
      'grpo/metrics.jsonl',
      'ppo/model/model.safetensors',
    ])
      t.ok(existsSync(join(dir, 'a', f)), f);
    const html = readFileSync(join(dir, 'a', 'report.html'), 'utf8');
    t.match(html, /<svg/);
    t.notMatch(html, /<script/i);
    for (const k of ['ppo', 'grpo']) {
      const iterations = readFileSync(join(dir, 'a', k, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n').length;
      t.equal(s.proxyGold[k].length, iterations, `${k}: one proxy/gold point per iteration`);
      t.ok(
        s.proxyGold[k].length > 0 &&
          s.proxyGold[k].every((r: Record<string, number>) =>
            ['step', 'proxy', 'gold', 'kl'].every((f) => Number.isFinite(r[f])),
          ),
        `${k}: proxy and gold reward per iteration`,
      );
    }
    t.ok(
      s.samples.every((x: { responses: Record<string, { rm: number }> }) =>
        Object.values(x.responses).every((r) => Number.isFinite(r.rm)),
      ),
      'example generations carry the RM score beside gold',
    );
    t.match(html, 'Reward-model over-optimisation', 'the proxy-vs-gold plot');
    t.match(html, /estimator k1/, "PPO's KL chart names its estimator");
    t.match(html, /estimator k3[\s\S]*measured only/, "GRPO's KL is measured though not in its loss");
    t.match(r.stderr, /^pairs /m, 'the pairs stage shows progress');
    t.match(r.stderr, /^eval /m, 'the eval stage shows progress');
    const again = demo(join(dir, 'b'));
    t.equal(again.status, 0);
    const s2 = JSON.parse(readFileSync(join(dir, 'b', 'summary.json'), 'utf8'));
    const figures = (x: typeof s) => JSON.stringify({ rm: x.rm, sft: x.sft, policies: x.policies });
    t.equal(figures(s2), figures(s), 'the same seed reproduces the same figures');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
