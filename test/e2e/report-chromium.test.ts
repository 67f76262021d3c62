// The report page as a browser lays it out: headless Chromium renders a demo report and a
// comparison of runs at a desktop and a phone width; a script measures every chart's text boxes
// (no two overlap, none sticks out of its chart), the page width (nothing scrolls sideways outside
// a table wrapper), each policy row's win + tie + loss (100%) and every legend (it names exactly
// the series drawn). Skipped when Chromium is not installed (scripts/install-test-tools.sh).
// RLHF_REPORT_SHOTS=dir also saves a screenshot per page and width there.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { writeRunReport } from '../../lib/report/index.js';

const chromium = ['chromium', 'chromium-browser', 'google-chrome'].find(
  (c) => spawnSync(c, ['--version'], { encoding: 'utf8' }).status === 0,
);
if (!chromium) {
  t.comment('Chromium not installed (scripts/install-test-tools.sh installs it): layout check skipped');
  process.exit(0);
}
const dir = mkdtempSync(join(tmpdir(), 'rlhf-chromium-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

// a demo folder: four policies, ties, negative k1 KL, a flat PPO clip fraction, RM/gold disagreements, long labels
const demo = join(dir, 'demo');
const wave = (i: number) => Math.sin(i * 1.7) * 0.1;
const rows = (stage: string, n: number, f: (i: number) => Record<string, number>) =>
  Array.from({ length: n }, (_, i) => JSON.stringify({ stage, step: i + 1, ...f(i + 1) })).join('\n') + '\n';
const policy = (win: number, tie: number, gold: number, kl: number) => ({
  winRate: win + tie / 2,
  tieRate: tie,
  lossRate: 1 - win - tie,
  goldScore: gold,
  kl,
  length: 9.1,
});
const summary = {
  rm: { accuracy: 0.839 },
  sft: { goldScore: -1.41, length: 14.1 },
  seconds: 372,
  policies: {
    ppo: policy(0.475, 0.275, -0.94, 0.93),
    grpo: policy(0.467, 0.308, -1.11, -0.26),
    dpo: policy(0.45, 0.317, -0.97, 0.47),
    'exo-with-a-long-name': policy(0.483, 0.3, -0.94, 0.57),
  },
  task: { description: 'Single-digit addition with a requested format.', noise: 0.1 },
  stages: [{ name: 'sft', seconds: 100, line: 'done' }],
  samples: [
    {
      prompt: 'What is 3+0? Answer in a sentence.',
      responses: {
        sft: { text: '3+0 is 3.', gold: 4, rm: 0.2 },
        ppo: { text: '0+0 is 3.', gold: -1.5, rm: 0.9 },
        grpo: { text: 'um 3', gold: 1.4, rm: -0.3 },
      },
    },
  ],
  proxyGold: {
    ppo: Array.from({ length: 40 }, (_, i) => ({
      step: i + 1,
      proxy: i / 10 + wave(i),
      gold: Math.min(i, 20) / 20 - Math.max(0, i - 20) / 15,
    })),
  },
};
mkdirSync(demo, { recursive: true });
writeFileSync(join(demo, 'summary.json'), JSON.stringify(summary));
for (const [stage, text] of [
  ['sft', rows('sft', 300, (i) => ({ loss: 2 * Math.exp(-i / 60) + 0.5 + wave(i) }))],
  [
    'rm',
    rows('reward', 60, (i) => ({
      loss: 0.7 - i / 200 + wave(i),
      accuracy: 0.5 + i / 200,
      ...(i % 10 === 0 ? { evalAccuracy: 0.6 + i / 300 } : {}),
    })),
  ],
  [
    'ppo',
    rows('ppo', 80, (i) => ({
      rewardMean: i / 40 + wave(i),
      shapedRewardMean: i / 50,
      kl: i < 10 ? -0.05 * i : i / 30,
      klEstimator: 1,
      klCoef: 0.05,
      policyLoss: 1e-9 * wave(i),
      clipFraction: 0,
      approxKl: 0,
      valueLoss: 0.3 / i,
    })),
  ],
  [
    'grpo',
    rows('group', 30, (i) => ({
      rewardMean: i / 30,
      kl: i / 20,
      klEstimator: 3,
      klCoef: 0,
      policyLoss: wave(i),
      clipFraction: 0.1 + wave(i),
      approxKl: 0.01,
      entropy: 1,
    })),
  ],
]) {
  mkdirSync(join(demo, stage), { recursive: true });
  writeFileSync(join(demo, stage, 'metrics.jsonl'), text);
}
const run = (name: string, scale: number) => {
  mkdirSync(join(dir, name), { recursive: true });
  writeFileSync(
    join(dir, name, 'metrics.jsonl'),
    rows('group', 50, (i) => ({
      rewardMean: (scale * i) / 50 + wave(i),
      kl: i / 25,
      klEstimator: 3,
      klCoef: 0.01,
      clipFraction: 0.1,
      approxKl: 0.002,
    })),
  );
  writeFileSync(
    join(dir, name, 'samples.jsonl'),
    JSON.stringify({
      stage: 'group',
      step: 1,
      samples: [{ prompt: 'What is 1+8?', response: '10 I hope that helps you today', reward: 1.2, kl: 0.3 }],
    }) + '\n',
  );
};
run('grpo-lr-1e-4', 1);
run('grpo-lr-3e-4', 1.4);

const checker = readFileSync(join(packageRoot, 'test', 'helpers', 'layout-check.js'), 'utf8');
const shots = process.env.RLHF_REPORT_SHOTS;

async function measure(page: string, width: number) {
  const probe = join(dir, `probe-${width}.html`);
  writeFileSync(probe, readFileSync(page, 'utf8').replace('</body>', `<script>${checker}</script></body>`));
  const r = spawnSync(
    chromium!,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--hide-scrollbars',
      `--window-size=${width},1200`,
      '--virtual-time-budget=3000',
      '--dump-dom',
      `file://${probe}`,
    ],
    { encoding: 'utf8', timeout: 120000 },
  );
  const m = r.stdout.match(/<pre id="layout-check">(\{.*?)<\/pre>/s);
  if (!m) throw new Error(`chromium gave no layout report (status ${r.status}): ${r.stderr.slice(-400)}`);
  if (shots) {
    mkdirSync(shots, { recursive: true });
    spawnSync(
      chromium!,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--hide-scrollbars',
        `--window-size=${width},4000`,
        `--screenshot=${join(shots, `${page.split('/').at(-1)!.replace('.html', '')}-${width}.png`)}`,
        `file://${page}`,
      ],
      { timeout: 120000 },
    );
  }
  return JSON.parse(
    m[1]
      .replace(/&quot;/g, '"')
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&amp;/g, '&'),
  );
}

for (const [name, dirs] of [
  ['demo', [demo]],
  ['comparison', [join(dir, 'grpo-lr-1e-4'), join(dir, 'grpo-lr-3e-4'), demo]],
] as const) {
  t.test(`${name} report in Chromium at two widths`, { timeout: 300000 }, async (t) => {
    const page = join(dir, `${name}.html`);
    await writeRunReport([...dirs], page);
    for (const width of [1280, 420]) {
      const m = await measure(page, width);
      t.ok(m.charts >= (name === 'demo' ? 10 : 4), `${width}px: ${m.charts} charts rendered`);
      t.same(m.overlaps, [], `${width}px: no two labels overlap`);
      t.same(m.outside, [], `${width}px: no label outside its chart`);
      t.same(m.overflow, [], `${width}px: nothing wider than the page`);
      t.equal(m.sums.length, 4, `${width}px: a row per policy`);
      for (const s of m.sums)
        t.ok(Math.abs(s.sum - 100) <= 0.15, `${width}px: ${s.policy}: win + tie + loss = ${s.sum}%`);
      for (const l of m.legends)
        t.same(
          [...l.names].sort(),
          [...l.series].sort(),
          `${width}px: the legend of "${l.chart}" names exactly the series drawn`,
        );
    }
  });
}
