// The run report (lib/report). Charts: well-formed XML (checked by a small tag-balance parser
// below), escaped text, nice ticks, and the edge cases (empty, NaN gaps, a single point, constant
// and negative series, the bar chart's reference line). The page: self-contained (no scripts, no
// URLs), every policy row and the headline numbers, escaped samples, size; the Markdown summary;
// readMetrics with a torn last line; writeReport.
import t from 'tap';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  chartNotes,
  loadRuns,
  niceTicks,
  PALETTE,
  readMetrics,
  renderHtml,
  renderMarkdown,
  renderRunsHtml,
  smoothSeries,
  svgBarChart,
  svgLineChart,
  svgScatter,
  svgWinTieLoss,
  writeReport,
  writeRunReport,
  type DemoSummary,
  type MetricsByStage,
} from '../../lib/report/index.js';
import { goldScore, makePrompt, statedOperands } from '../../lib/demo/task.js';

const VOID = new Set(['meta', 'br', 'hr', 'img', 'input', 'link', 'col', 'wbr']);

/** Null when `doc` is well-formed (XML; with html, HTML void elements and a doctype are allowed), else why not. */
function wellFormed(doc: string, html = false): string | null {
  const stack: string[] = [];
  const re = /<(!--[\s\S]*?--|!DOCTYPE[^>]*|\/?)([A-Za-z][\w:-]*)?((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  let i = 0;
  while (i < doc.length) {
    const lt = doc.indexOf('<', i);
    const text = doc.slice(i, lt < 0 ? doc.length : lt);
    const badEntity = text.match(/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);)/i);
    if (badEntity || text.includes('>')) return `bad text near ${JSON.stringify(text.slice(0, 60))}`;
    if (lt < 0) break;
    re.lastIndex = lt;
    const m = re.exec(doc);
    if (!m) return `malformed tag at ${lt}: ${JSON.stringify(doc.slice(lt, lt + 60))}`;
    i = re.lastIndex;
    if (m[1].startsWith('!')) {
      if (m[1].startsWith('!DOCTYPE') && !html) return 'doctype in XML';
      continue;
    }
    const name = m[2];
    if (!name) return `tag without a name at ${lt}`;
    for (const a of m[3].matchAll(/="([^"]*)"/g))
      if (/&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(a[1])) return `bad entity in attribute of <${name}>`;
    if (m[1] === '/') {
      const open = stack.pop();
      if (open !== name) return `</${name}> closes <${open}>`;
    } else if (!m[4] && !(html && VOID.has(name))) {
      stack.push(name);
      if (name === 'style') {
        const end = doc.indexOf('</style>', i);
        if (end < 0 || doc.slice(i, end).includes('<')) return 'bad <style>';
        i = end;
      }
    }
  }
  return stack.length ? `unclosed <${stack.join('> <')}>` : null;
}

const nums = (svg: string, attr: string, cls: string) => {
  const m = svg.match(new RegExp(`<[a-z]+ class="${cls}"[^>]*?\\s${attr}="(-?[\\d.]+)"`));
  return m ? Number(m[1]) : NaN;
};
const count = (s: string, sub: string) => s.split(sub).length - 1;

t.test('the checker itself', async (t) => {
  t.equal(wellFormed('<svg><g a="1"><path d="M0 0"/></g><text>a &amp; b</text></svg>'), null);
  t.match(wellFormed('<svg><g></svg>'), /closes/);
  t.match(wellFormed('<svg><text>a & b</text></svg>'), /bad text/);
  t.match(wellFormed('<svg><text>a <script> b</text></svg>'), /closes|unclosed/);
  t.match(wellFormed('<svg a="x<y"></svg>'), /malformed/);
  t.equal(
    wellFormed('<!DOCTYPE html><html><head><meta charset="utf-8"><style>a > b {}</style></head></html>', true),
    null,
  );
});

t.test('niceTicks: steps of 1, 2 or 5 × 10^k covering the range', async (t) => {
  for (const [lo, hi] of [
    [0, 1],
    [0, 97],
    [-3.2, 7.9],
    [0.0012, 0.0049],
    [1e6, 3.4e6],
    [-250, -3],
    [5, 5],
    [0, 0],
    [-2, -2],
  ]) {
    const r = niceTicks(lo, hi);
    const mant = r.step / 10 ** Math.floor(Math.log10(r.step) + 1e-9);
    t.ok(
      [1, 2, 5].some((m) => Math.abs(mant - m) < 1e-9),
      `${lo}..${hi}: step ${r.step}`,
    );
    t.ok(r.min <= lo && r.max >= hi && r.values.length >= 2 && r.values.length <= 12, `${lo}..${hi}: ${r.values}`);
    r.values.forEach((v, i) => i && t.ok(Math.abs(v - r.values[i - 1] - r.step) < r.step * 1e-9));
  }
  t.same(niceTicks(0, 1).values, [0, 0.2, 0.4, 0.6, 0.8, 1]);
  t.same(niceTicks(0, 0).values, [-1, -0.5, 0, 0.5, 1], 'a zero-width range is widened');
  t.same(niceTicks(NaN, 3).values, [0, 0.2, 0.4, 0.6, 0.8, 1], 'non-finite bounds: the unit range');
});

t.test('svgLineChart: well-formed, escaped, legend with distinct palette colours', async (t) => {
  const svg = svgLineChart({
    title: 'Loss <script>alert(1)</script> & "q"',
    xLabel: 'step',
    yLabel: "it's y",
    series: [
      {
        name: 'train <b>',
        points: [
          [1, 3],
          [2, 2],
          [3, 1.5],
        ],
      },
      {
        name: 'eval',
        points: [
          [1, 3.2],
          [3, 1.9],
        ],
      },
    ],
  });
  t.equal(wellFormed(svg), null);
  t.notMatch(svg, /<script|<b>/);
  t.match(svg, 'Loss &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot;');
  t.match(svg, 'train &lt;b&gt;');
  t.match(svg, 'it&#39;s y');
  t.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/, 'standalone SVG');
  t.match(svg, `stroke="${PALETTE[0]}"`);
  t.match(svg, `stroke="${PALETTE[1]}"`);
  t.equal(new Set(PALETTE).size, PALETTE.length, 'palette colours are distinct');
  const many = svgLineChart({
    title: 'm',
    xLabel: 'x',
    yLabel: 'y',
    series: Array.from({ length: 10 }, (_, i) => ({
      name: `s${i}`,
      points: [
        [0, i],
        [1, i + 1],
      ] as [number, number][],
    })),
  });
  t.equal(wellFormed(many), null);
  t.match(many, 'stroke-dasharray', 'series past the palette are dashed');
});

t.test('svgLineChart edge cases: empty, all-NaN, NaN gaps, one point, constant, negative, long', async (t) => {
  const base = { title: 't', xLabel: 'x', yLabel: 'y' };
  const empty = svgLineChart({ ...base, series: [] });
  t.equal(wellFormed(empty), null);
  t.match(empty, 'no data');
  const allNaN = svgLineChart({
    ...base,
    series: [
      {
        name: 'a',
        points: [
          [1, NaN],
          [2, NaN],
        ],
      },
    ],
  });
  t.equal(wellFormed(allNaN), null);
  t.notMatch(allNaN, /class="legend"/, 'a series the plot cannot show is not in the legend');
  t.match(allNaN, 'not plotted (no data): a', 'a note under the plot names it');
  t.notMatch(allNaN, /NaN|Infinity/);
  const gap = svgLineChart({
    ...base,
    series: [
      {
        name: 'a',
        points: [
          [1, 1],
          [2, 2],
          [3, NaN],
          [4, 3],
          [5, 2],
          [6, Infinity],
          [7, 4],
        ],
      },
    ],
  });
  t.equal(wellFormed(gap), null);
  const d = gap.match(/<g class="series"[^>]*><path d="([^"]+)"/)![1];
  t.equal(count(d, 'M'), 2, 'two line segments around the NaN gap');
  t.notMatch(gap, /NaN|Infinity/);
  t.ok(count(gap, '<circle') >= 7 - 2, 'short series get markers (the isolated point included)');
  const steps = svgLineChart({
    ...base,
    series: [
      {
        name: 'a',
        points: [
          [1, 1],
          [2, 2],
          [3, 1],
        ],
      },
    ],
  });
  t.notMatch(steps, />1\.5<\/text>/, 'integer steps get no fractional x ticks');
  const one = svgLineChart({ ...base, series: [{ name: 'a', points: [[3, 0.5]] }] });
  t.equal(wellFormed(one), null);
  t.equal(count(one, '<circle'), 1, 'a single point is a marker');
  t.notMatch(one, /<path d="M[^"]*L/, 'and no line');
  const flat = svgLineChart({
    ...base,
    series: [
      {
        name: 'a',
        points: [
          [0, 2],
          [1, 2],
          [2, 2],
        ],
      },
    ],
  });
  t.equal(wellFormed(flat), null);
  t.notMatch(flat, /NaN|Infinity/);
  t.match(flat, />2(\.0)?<\/text>/, 'the constant value is a tick');
  const neg = svgLineChart({
    ...base,
    series: [
      {
        name: 'a',
        points: [
          [0, -5],
          [1, 3],
        ],
      },
    ],
  });
  t.equal(wellFormed(neg), null);
  t.match(neg, />-4<\/text>/);
  t.match(neg, /stroke="#999"/, 'zero line drawn when the range spans 0');
  const long = svgLineChart({
    ...base,
    maxPoints: 100,
    series: [{ name: 'a', points: Array.from({ length: 5000 }, (_, i): [number, number] => [i, Math.sin(i / 100)]) }],
  });
  t.equal(wellFormed(long), null);
  t.ok(count(long, 'L') <= 100, 'long series are bucket-averaged');
  t.ok(long.length < 8000, `compact (${long.length} chars)`);
});

t.test('svgBarChart: reference line position, error bars, n/a values, escaping', async (t) => {
  const svg = svgBarChart({
    title: 'Win rate',
    yLabel: '%',
    yMin: 0,
    yMax: 100,
    bars: [
      { label: 'ppo', value: 62 },
      { label: '<dpo>', value: 48, error: 5 },
      { label: 'exo', value: NaN },
    ],
    referenceLine: { value: 50, label: '50% <parity>' },
  });
  t.equal(wellFormed(svg), null);
  const top = nums(svg, 'y', 'plot'),
    height = nums(svg, 'height', 'plot');
  t.ok(height > 100);
  t.equal(nums(svg, 'y1', 'ref'), Math.round((top + height / 2) * 10) / 10, 'the 50 line is halfway up a 0..100 axis');
  t.match(svg, '50% &lt;parity&gt;');
  t.match(svg, '&lt;dpo&gt;');
  t.match(svg, 'class="err"');
  t.match(svg, '>n/a</text>');
  t.equal(count(svg, '<rect x='), 2, 'no bar for the NaN value');
  const neg = svgBarChart({
    title: 'n',
    yLabel: 'y',
    bars: [
      { label: 'a', value: -2 },
      { label: 'b', value: 3 },
    ],
    referenceLine: { value: 1, label: 'r' },
  });
  t.equal(wellFormed(neg), null);
  t.match(neg, />-2<\/text>/);
  const pTop = nums(neg, 'y', 'plot'),
    pH = nums(neg, 'height', 'plot'),
    ref = nums(neg, 'y1', 'ref');
  t.ok(ref > pTop && ref < pTop + pH);
  t.equal(wellFormed(svgBarChart({ title: 'e', yLabel: 'y', bars: [] })), null);
  t.throws(() => svgBarChart({ title: 'x', yLabel: 'y', bars: [], yMin: 1, yMax: 1 }), RangeError);
  t.throws(() => svgBarChart({ title: 'x', yLabel: 'y', bars: [{ label: 'a', value: '1' as never }] }), {
    name: 'TypeError',
    message: /options\.bars\[0\]\.value/,
  });
});

t.test('svgScatter: labelled points, non-finite points noted, escaping', async (t) => {
  const svg = svgScatter({
    title: 'Gold vs KL',
    xLabel: 'KL',
    yLabel: 'gold',
    points: [
      { label: 'sft', x: 0, y: 1.2 },
      { label: 'ppo', x: 4.1, y: 2.9 },
      { label: 'd<p>o', x: 4.2, y: 2.95 },
      { label: 'bad', x: NaN, y: 1 },
    ],
  });
  t.equal(wellFormed(svg), null);
  t.equal(count(svg, '<circle'), 3);
  t.match(svg, 'd&lt;p&gt;o');
  t.match(svg, 'not shown (non-finite): bad');
  const ys = [
    ...svg.matchAll(/<text x="[\d.]+" y="([\d.]+)" text-anchor="(?:start|end)" font-size="11" fill="#222"[^>]*>/g),
  ].map((m) => Number(m[1]));
  t.ok(Math.abs(ys[1] - ys[2]) >= 12, 'close labels are nudged apart');
  t.equal(
    wellFormed(svgScatter({ title: 'one', xLabel: 'x', yLabel: 'y', points: [{ label: 'a', x: 1, y: 1 }] })),
    null,
  );
  t.equal(wellFormed(svgScatter({ title: 'none', xLabel: 'x', yLabel: 'y', points: [] })), null);
});

t.test('bad arguments name the parameter', async (t) => {
  t.throws(() => svgLineChart(null as never), {
    name: 'TypeError',
    message: /svgLineChart: expected options to be an object/,
  });
  t.throws(() => svgLineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 'a', points: 5 as never }] }), {
    message: /options\.series\[0\]\.points/,
  });
  t.throws(() => svgLineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [], width: 5 }), {
    name: 'RangeError',
    message: /options\.width/,
  });
  t.throws(() => svgScatter({ title: 't', xLabel: 'x', yLabel: 'y', points: [{ label: 'a', x: 1 } as never] }), {
    message: /options\.points\[0\]/,
  });
});

/** A realistic demo run: four policies, six stages of metrics with eval rows, a NaN, samples with markup. */
function fixture(): { summary: DemoSummary; metrics: MetricsByStage } {
  const noise = (i: number) => Math.sin(i * 12.9898) * 0.05;
  type Row = Record<string, number | string>;
  const curve = (stage: string, n: number, f: (i: number) => Record<string, number>, evalEvery = 0): Row[] =>
    Array.from({ length: n }, (_, i): Row[] => [
      { stage, step: i + 1, time: '2025-01-01T00:00:00Z', ...f(i + 1) },
      ...(evalEvery && (i + 1) % evalEvery === 0
        ? [{ stage, step: i + 1, evalLoss: 2.5 * Math.exp(-i / 300) + 0.7 }]
        : []),
    ]).flat();
  const metrics: MetricsByStage = {
    sft: curve('sft', 1200, (i) => ({ loss: 2.6 * Math.exp(-i / 250) + 0.6 + noise(i), lr: 1e-3, gradNorm: 1 }), 100),
    rm: curve(
      'rm',
      400,
      (i) => ({ loss: 0.69 * Math.exp(-i / 200) + 0.3 + noise(i), accuracy: 0.5 + 0.4 * (1 - Math.exp(-i / 100)) }),
      50,
    ),
    ppo: curve('ppo', 150, (i) => ({
      rewardMean: 1 + 2 * (1 - Math.exp(-i / 40)) + noise(i),
      kl: i / 30,
      policyLoss: noise(i) - 0.01,
      valueLoss: 0.5 * Math.exp(-i / 50),
      entropy: 1,
    })),
    grpo: curve('grpo', 150, (i) => ({
      rewardMean: 1 + 1.8 * (1 - Math.exp(-i / 50)),
      kl: i === 70 ? NaN : i / 40,
      policyLoss: noise(i),
    })),
    dpo: curve('dpo', 300, (i) => ({ loss: 0.69 * Math.exp(-i / 150) + 0.2, margin: i / 100, accuracy: 0.8 })),
    exo: curve('exo', 300, (i) => ({ loss: 0.5 * Math.exp(-i / 150) + 0.1, margin: i / 120 })),
  };
  const policy = (winRate: number, goldScore: number, kl: number, length: number) => ({
    winRate,
    tieRate: 0.2,
    lossRate: 1 - winRate - 0.1,
    goldScore,
    kl,
    length,
  });
  const summary: DemoSummary = {
    rm: { accuracy: 0.873, loss: 0.31 },
    sft: { goldScore: 1.42, length: 17.3 },
    policies: {
      ppo: policy(0.712, 3.05, 4.8, 9.1),
      dpo: policy(0.64, 2.61, 3.1, 11.2),
      exo: policy(0.655, 2.7, 3.4, 10.8),
      grpo: policy(0.69, 2.95, 4.1, 9.6),
    },
    seconds: 1234.5,
    task: { description: 'Single-digit arithmetic with a format request; a hidden gold function judges.', noise: 0.1 },
    stages: ['sft', 'rm', 'ppo', 'dpo', 'exo', 'grpo', 'eval'].map((name, i) => ({
      name,
      seconds: 100 + 40 * i,
      line: `${name}: done | <ok> & fine`,
    })),
    samples: Array.from({ length: 10 }, (_, i) => ({
      prompt: `What is ${i}+3? Answer in words. <script>alert("x")</script>`,
      responses: {
        sft: { text: `um, ${i + 3}`, gold: 1.5 },
        ppo: { text: `<img src=x onerror=alert(1)> ${i + 3}`, gold: 3 },
        dpo: { text: `line one\nline two & more`, gold: 2.2 },
      },
    })),
    settings: { seed: 1, model: 'tiny <d=64>', cuda: false },
  };
  return { summary, metrics };
}

t.test('renderHtml: self-contained, well-formed, every policy and the headline numbers, escaped', async (t) => {
  const { summary, metrics } = fixture();
  const html = renderHtml(summary, metrics, { generatedAt: new Date(0) });
  t.equal(wellFormed(html, true), null, 'well-formed');
  t.notMatch(html, /<script/i, 'no scripts (sample text escaped)');
  t.notMatch(html, /https?:/, 'no URLs');
  const tags = html.match(/<[a-zA-Z][^>]*>/g) ?? [];
  t.same(
    tags.filter((tag) => /^<(img|link|iframe|object|embed|image|use|script)\b|\s(src|href|on\w+)=/i.test(tag)),
    [],
    'no external resources, no handlers',
  );
  t.notMatch(html, /@import|url\(/);
  t.match(html, '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
  t.match(html, '&lt;img src=x onerror=alert(1)&gt;');
  for (const name of Object.keys(summary.policies))
    t.match(
      html,
      new RegExp(`<tr data-policy="${name}"><td><span class="swatch"[^>]*></span>${name}</td>`),
      `row for ${name}`,
    );
  t.match(html, '87.3%', 'RM accuracy');
  t.match(html, /Best win rate vs SFT<\/div><div class="v">71\.2%<\/div><div class="d">ppo/, 'best policy win rate');
  t.match(html, '20 min 35 s', 'total time');
  t.match(html, '+1.63', 'gold score difference against SFT');
  t.match(html, 'class="ref"', 'the 50% line');
  for (const title of [
    'SFT · Loss',
    'Reward model · Accuracy',
    'PPO · Reward',
    'PPO · KL to the reference',
    'PPO · Value loss',
    'GRPO · Policy loss',
    'DPO · Margin',
    'EXO · Loss',
  ])
    t.match(html, `aria-label="${title}"`, title);
  t.notMatch(html, 'GRPO · Value loss', 'charts without data are left out');
  t.match(html, 'eval loss', 'eval rows on the same axes');
  t.match(html, 'sft: done | &lt;ok&gt; &amp; fine');
  t.match(html, '8 of 10 examples shown');
  t.match(html, 'tiny &lt;d=64&gt;');
  t.ok(html.length < 300_000, `size ${html.length} < 300 KB`);
  const bare = renderHtml({ rm: { accuracy: 0.5 }, sft: { goldScore: 0 }, policies: {}, seconds: 1 }, {});
  t.equal(wellFormed(bare, true), null, 'minimal summary, no metrics');
  t.match(bare, 'no policy evaluated');
  const nan = renderHtml(
    {
      rm: { accuracy: NaN },
      sft: { goldScore: 1 },
      policies: { ppo: { winRate: NaN, tieRate: NaN, lossRate: NaN, goldScore: NaN, kl: NaN, length: NaN } },
      seconds: NaN,
    },
    { ppo: [{ stage: 'ppo', step: 1, kl: NaN }] },
  );
  t.equal(wellFormed(nan, true), null, 'NaN everywhere still renders');
  t.notMatch(nan, /NaN/);
  t.match(nan, 'not shown (non-finite): ppo');
  t.throws(() => renderHtml({ rm: { accuracy: 1 }, sft: { goldScore: 0 }, policies: { ppo: 3 } } as never, {}), {
    name: 'TypeError',
    message: /summary\.policies\.ppo/,
  });
});

t.test('renderMarkdown: headline numbers, a table row per policy, stage timings', async (t) => {
  const { summary } = fixture();
  const md = renderMarkdown(summary);
  t.match(md, /^# /);
  t.match(md, '**RM accuracy:** 87.3%');
  t.match(md, '**Best win rate vs SFT:** 71.2% (ppo');
  t.match(md, '**Total time:** 20 min 35 s');
  t.match(md, /^\| policy \| win \| tie \| loss \|/m);
  t.match(md, /^\| --- \| ---: \|/m);
  for (const name of Object.keys(summary.policies))
    t.match(md, new RegExp(`^\\| ${name} \\| \\d+\\.\\d% \\|`, 'm'), `row for ${name}`);
  t.match(md, /^\| sft \(baseline\) \|/m);
  t.match(md, /^\| eval \| 5 min 40 s \| eval: done \\\| \\<ok\\> & fine \|$/m, 'pipes and markup escaped in cells');
  for (const table of md.split(/\n(?!\|)/).filter((b) => b.startsWith('|'))) {
    const pipes = (line: string) => line.match(/(?<!\\)\|/g)?.length ?? 0;
    const lines = table.split('\n');
    t.ok(
      lines.length >= 3 && lines.every((l) => pipes(l) === pipes(lines[0])),
      `every row of the table "${lines[0]}" has the header's columns`,
    );
  }
});

t.test(
  'readMetrics: grouped by stage, NaN from null, torn last line tolerated, bad middle line rejected',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'rlhf-report-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const p = join(dir, 'metrics.jsonl');
    await writeFile(
      p,
      '{"stage":"sft","step":1,"loss":2.5,"time":"t"}\n{"stage":"sft","step":2,"loss":null}\n\n{"stage":"reward","step":1,"accuracy":0.6,"ok":true}\n{"stage":"reward","st',
    );
    const m = await readMetrics(p);
    t.same(Object.keys(m), ['sft', 'reward']);
    t.equal(m.sft.length, 2);
    t.ok(Number.isNaN(m.sft[1].loss));
    t.equal(m.sft[0].time, 't');
    t.equal(m.reward[0].ok, 1);
    t.same(Object.keys(await readMetrics(p, { stage: 'dpo' })), ['dpo'], 'opts.stage files everything under one name');
    await writeFile(p, '{"stage":"sft"}\n{oops\n{"stage":"sft"}\n');
    await t.rejects(readMetrics(p), { name: 'RlhfError', code: 'ERR_RLHF_FORMAT', message: /metrics\.jsonl:2/ });
    await t.rejects(readMetrics(join(dir, 'none.jsonl')), { code: 'ERR_RLHF_IO' });
    await t.rejects(async () => readMetrics(p, { stges: 'x' } as never), { message: /did you mean opts\.stage/ });
  },
);

t.test('writeReport writes report.html and summary.md atomically', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'rlhf-report-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const { summary, metrics } = fixture();
  const dir = join(root, 'out', 'report');
  const paths = await writeReport(dir, summary, metrics);
  t.same(paths, { html: join(dir, 'report.html'), markdown: join(dir, 'summary.md') });
  t.same((await readdir(dir)).sort(), ['report.html', 'summary.md'], 'no temporary files left');
  t.match(await readFile(paths.html, 'utf8'), /^<!DOCTYPE html>/);
  t.equal(await readFile(paths.markdown, 'utf8'), renderMarkdown(summary));
  await writeFile(join(root, 'file'), 'x');
  await t.rejects(writeReport(join(root, 'file'), summary, metrics), { code: 'ERR_RLHF_IO' });
});

const pctOf = (s: string) => Number(s.replace(/<[^>]*>/g, '').replace('%', ''));

t.test(
  'win / tie / loss: three parts summing to 100% in the table and the chart, the half-tie win rate beside',
  async (t) => {
    const { summary, metrics } = fixture();
    const html = renderHtml(summary, metrics);
    for (const name of Object.keys(summary.policies)) {
      const row = html.match(new RegExp(`<tr data-policy="${name}">(.*?)</tr>`))![1];
      const cell = (cls: string) => pctOf(row.match(new RegExp(`<td class="n ${cls}">([^<]*)</td>`))![1]);
      t.ok(
        Math.abs(cell('win') + cell('tie') + cell('loss') - 100) <= 0.15,
        `${name}: win + tie + loss = 100% (${cell('win')} + ${cell('tie')} + ${cell('loss')})`,
      );
      t.equal(
        cell('rate'),
        Number((100 * summary.policies[name].winRate).toFixed(1)),
        `${name}: the win rate with ties half`,
      );
      t.ok(Math.abs(cell('rate') - (cell('win') + cell('tie') / 2)) <= 0.15, `${name}: rate = win + tie/2`);
      const g = html.match(
        new RegExp(
          `<g class="wtl-row" data-label="${name}" data-win="([^"]*)" data-tie="([^"]*)" data-loss="([^"]*)" data-rate="([^"]*)"`,
        ),
      )!;
      t.ok(Math.abs(Number(g[1]) + Number(g[2]) + Number(g[3]) - 1) < 1e-9, `${name}: chart parts sum to 1`);
    }
    const svg = svgWinTieLoss({
      title: 'w',
      rows: [
        { label: 'a', win: 0.5, tie: 0.2, loss: 0.3 },
        { label: 'b', win: 0.01, tie: 0.01, loss: 0.98 },
      ],
    });
    t.equal(wellFormed(svg), null);
    const widths = [...svg.matchAll(/<rect class="(win|tie|loss)" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"/g)].map(
      (m) => [m[1], Number(m[2]), Number(m[3])] as const,
    );
    t.equal(widths.length, 6);
    t.ok(
      Math.abs(widths[0][2] + widths[1][2] + widths[2][2] - (widths[3][2] + widths[4][2] + widths[5][2])) < 0.5,
      'every bar is the full width',
    );
    t.equal(count(svg, 'class="part"'), 4, 'labels only in parts wide enough (b: only its loss part)');
    t.match(svg, />60\.0%</, 'a: win rate with ties half = 60%');
    t.throws(() => svgWinTieLoss({ title: 'w', rows: [{ label: 'a', win: 0.6, tie: 0.2, loss: 0.3 }] }), {
      name: 'RangeError',
      message: /win \+ tie \+ loss to be 1, received 1\.1/,
    });
    const md = renderMarkdown(summary);
    const ppo = md.match(/^\| ppo \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \| ([\d.]+)% \|/m)!;
    t.ok(Math.abs(Number(ppo[1]) + Number(ppo[2]) + Number(ppo[3]) - 100) <= 0.15, 'markdown: parts sum to 100%');
    t.equal(Number(ppo[4]), 71.2, 'markdown: the half-tie win rate in its own column');
  },
);

t.test('smoothing: EMA with debiasing, the raw series faint, NaN kept as gaps', async (t) => {
  const pts: [number, number][] = Array.from({ length: 30 }, (_, i) => [
    i + 1,
    i % 7 === 3 ? NaN : Math.sin(i) + i / 10,
  ]);
  const w = 0.6;
  const sm = smoothSeries(pts, w);
  // independent: weighted mean of the finite values so far, weights w^(age)
  pts.forEach(([, y], i) => {
    if (Number.isNaN(y)) return void t.ok(Number.isNaN(sm[i][1]), `gap at ${i}`);
    const seen = pts
      .slice(0, i + 1)
      .map((p) => p[1])
      .filter((v) => !Number.isNaN(v));
    const weights = seen.map((_, k) => w ** (seen.length - 1 - k));
    const ref = seen.reduce((a, v, k) => a + v * weights[k], 0) / weights.reduce((a, b) => a + b, 0);
    t.ok(Math.abs(sm[i][1] - ref) < 1e-12, `point ${i}`);
  });
  const svg = svgLineChart({
    title: 's',
    xLabel: 'x',
    yLabel: 'y',
    series: [
      { name: 'loss', points: pts },
      {
        name: 'short',
        points: [
          [1, 1],
          [2, 2],
        ],
      },
    ],
    smooth: w,
  });
  t.equal(wellFormed(svg), null);
  t.equal(count(svg, 'class="raw"'), 1, 'the long series is drawn raw (faint) and smoothed; the short one only raw');
  t.match(svg, /class="raw"[^>]*stroke-opacity="0\.25"/);
  t.equal(count(svg, 'class="smoothed"'), 1);
  t.equal(count(svg.match(/<g class="legend">.*?<\/g>/)![0], '<text'), 2, 'one legend entry per series');
});

t.test(
  'chart notes: the KL estimator named, negative KL and β = 0 explained, flat PPO diagnostics explained',
  async (t) => {
    const rows = (f: (i: number) => Record<string, number>) =>
      Array.from({ length: 12 }, (_, i) => ({ stage: 'ppo', step: i + 1, ...f(i) }));
    const k1 = chartNotes(
      'KL to the reference',
      rows((i) => ({ kl: i === 3 ? -0.2 : 0.1 * i, klEstimator: 1, klCoef: 0.05 })),
    );
    t.match(k1[0], /^estimator k1 = .*can be negative/);
    t.match(k1.join('\n'), /values below 0 are sampling noise/);
    t.notMatch(k1.join('\n'), /measured only/);
    const k3 = chartNotes(
      'KL to the reference',
      rows((i) => ({ kl: 0.1 * i, klEstimator: 3, klCoef: 0 })),
    );
    t.match(k3[0], /^estimator k3/);
    t.notMatch(k3.join('\n'), /below 0/);
    t.match(k3.join('\n'), /measured only: KL is not in the loss or reward here \(β = 0\)/);
    t.match(
      chartNotes(
        'KL to the reference',
        rows(() => ({ kl: 1 })),
      )[0],
      'estimator not recorded',
    );
    t.match(
      chartNotes(
        'Clip fraction and approx. KL',
        rows(() => ({ clipFraction: 0, approxKl: 0 })),
      )[0],
      /one on-policy pass/,
    );
    t.same(
      chartNotes(
        'Clip fraction and approx. KL',
        rows((i) => ({ clipFraction: i ? 0.1 : 0, approxKl: 0.01 })),
      ),
      [],
    );
    t.match(
      chartNotes(
        'Policy loss',
        rows((i) => ({ clipFraction: 0, approxKl: 0, policyLoss: 1e-9 * ((i % 3) - 1) })),
      )[0],
      /≈ 0 by construction/,
    );
    t.same(
      chartNotes(
        'Policy loss',
        rows((i) => ({ clipFraction: 0, approxKl: 0, policyLoss: 0.1 * i })),
      ),
      [],
      'a policy loss that moves needs no note',
    );
    const html = renderHtml(fixture().summary, {
      grpo: rows((i) => ({ rewardMean: i, kl: 0.1 * i, klEstimator: 3, klCoef: 0 })),
    });
    t.match(html, /aria-label="GRPO · KL to the reference"/);
    t.match(html, /class="note"[^>]*>estimator k3/, 'the estimator is written on the chart');
  },
);

t.test('the demo gold function checks the operands of a sentence answer', async (t) => {
  const p = makePrompt(3, 0, 'sentence');
  t.same(statedOperands('3+0 is 3. 0 + 0 is 0'), [
    [3, 0],
    [0, 0],
  ]);
  t.equal(goldScore(p, '3+0 is 3.').total, 4, 'the ideal answer: +3 correct, +1 format');
  t.equal(goldScore(p, '0+3 is 3.').correct, 3, 'operands in either order');
  const wrong = goldScore(p, '0+0 is 3.');
  t.equal(wrong.correct, -1, '"0+0 is 3." states a wrong sum');
  t.equal(wrong.format, 0);
  t.ok(wrong.total < goldScore(p, '3+0 is 3.').total - 4, 'far below the maximum');
  t.equal(goldScore(p, '3 is 3.').format, 0, 'a sentence must restate the question');
  t.equal(goldScore(makePrompt(1, 8, 'number'), '10 I hope that helps you today').correct, -1);
  t.equal(goldScore(makePrompt(1, 8, 'number'), '9').total, 4);
});

t.test('rlhf report: runs read from disk, one demo folder gives the demo report, several runs compared', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'rlhf-runs-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const { summary, metrics } = fixture();
  const { mkdir } = await import('node:fs/promises');
  const write = async (dir: string, rows: Array<Record<string, unknown>>, samples?: unknown[]) => {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'metrics.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    if (samples) await writeFile(join(dir, 'samples.jsonl'), samples.map((r) => JSON.stringify(r)).join('\n') + '\n');
  };
  const sample = (step: number) => ({
    stage: 'group',
    step,
    samples: [{ prompt: 'What is 1+8? <b>', response: `answer ${step}`, reward: step / 10, kl: 0.01 * step }],
  });
  await write(
    join(root, 'grpo-a'),
    metrics.grpo.map((r) => ({ ...r, stage: 'group' })),
    [sample(1), sample(2), sample(150)],
  );
  await write(
    join(root, 'grpo-b'),
    metrics.grpo.map((r) => ({ ...r, stage: 'group', rewardMean: (r.rewardMean as number) * 0.5 })),
  );
  const demo = join(root, 'demo');
  await mkdir(demo);
  await writeFile(join(demo, 'summary.json'), JSON.stringify(summary));
  for (const st of ['sft', 'ppo']) await write(join(demo, st), metrics[st]);
  await mkdir(join(root, 'empty'));

  const one = await loadRuns([demo]);
  t.same(Object.keys(one[0].metrics).sort(), ['ppo', 'sft'], 'stage folders under their names');
  const demoHtml = renderRunsHtml(one);
  t.equal(wellFormed(demoHtml, true), null);
  t.match(demoHtml, 'Policies against SFT');
  t.match(demoHtml, 'aria-label="PPO · KL to the reference"');

  const out = join(root, 'compare.html');
  const runs = await writeRunReport([join(root, 'grpo-a'), join(root, 'grpo-b'), demo], out);
  t.same(
    runs.map((r) => r.name),
    ['grpo-a', 'grpo-b', 'demo'],
  );
  const html = await readFile(out, 'utf8');
  t.equal(wellFormed(html, true), null);
  t.notMatch(html, /<script|https?:/);
  t.match(html, '<h2>Runs</h2>');
  t.equal(count(html, '<tr><td>grpo-a</td>'), 1, 'one row per run and stage');
  const reward = html.match(/<svg class="chart"[^>]*aria-label="GRPO · Reward".*?<\/svg>/)![0];
  t.match(reward, 'data-name="grpo-a"');
  t.match(reward, 'data-name="grpo-b"', 'the runs overlaid on one chart');
  t.match(html, 'Samples during training');
  t.match(html, 'grpo-a · GRPO, iteration 1');
  t.match(html, 'grpo-a · GRPO, iteration 150', 'first and last logged iteration');
  t.notMatch(html, 'iteration 2<', 'not the ones between');
  t.match(html, 'What is 1+8? &lt;b&gt;');
  t.match(html, /<td>demo<\/td><td>ppo<\/td><td class="n win">/, 'the demo run in the comparison of policies');
  await t.rejects(loadRuns([join(root, 'empty')]), /holds no metrics\.jsonl/);
  await t.rejects(loadRuns([join(root, 'missing')]), /cannot read the run folder/);
});
