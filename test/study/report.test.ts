// The study report page (lib/study/report.ts) and interval chart (lib/study/charts.ts): every text
// from an outcome (names, claims, table cells, notes, chart labels) is escaped, the page is
// self-contained (no scripts, no URLs), and each study gets its section, verdict and one inline SVG.
import t from 'tap';
import { svgIntervals } from '../../lib/study/charts.js';
import { renderStudyReport } from '../../lib/study/report.js';
import type { StudyOutcome } from '../../lib/study/types.js';

const evil = `<script>alert("x")</script>&'`;
const outcome = (name: string, reproduced: boolean): StudyOutcome => ({
  name,
  title: `title ${evil}`,
  claim: `claim ${evil}`,
  source: `source ${evil}`,
  effectLabel: `label ${evil}`,
  effect: 1.5,
  ci: [0.5, 2.5],
  reproduced,
  seeds: [0, 1],
  verdict: `verdict ${evil}`,
  table: { columns: [`col ${evil}`], rows: [[`cell ${evil}`]] },
  chart: svgIntervals({
    title: `chart ${evil}`,
    yLabel: `y ${evil}`,
    rows: [
      { label: `row ${evil}`, mean: 1, lo: 0.5, hi: 2 },
      { label: 'n/a row', mean: NaN, lo: NaN, hi: NaN },
    ],
  }),
  notes: [`note ${evil}`],
});

t.test('everything escaped, nothing external', async (t) => {
  const html = renderStudyReport({
    preset: `small ${evil}`,
    seeds: [0, 1],
    description: `desc ${evil}`,
    outcomes: [outcome('a-study', true), outcome(`b ${evil}`, false)],
  });
  t.notMatch(html, /<script/i, 'no script element survives');
  t.notMatch(html, /alert\("x"\)/, 'quotes inside text are escaped');
  t.match(html, /&lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt;&amp;&#39;/, 'escaped form present');
  t.notMatch(html, /https?:|xmlns=/, 'no URLs (inline SVG has no namespace)');
  t.equal(html.match(/<svg/g)?.length, 2, 'one chart per study');
  t.equal(html.match(/<section /g)?.length, 2);
  t.match(html, /class="verdict yes"><span class="badge">Reproduced\.<\/span>/);
  t.match(html, /class="verdict no"><span class="badge">Not reproduced\.<\/span>/);
  t.match(html, /<td>reproduced<\/td>/, 'overview row');
  // balanced tags for the elements we emit
  for (const tag of ['section', 'table', 'svg', 'div', 'p', 'td', 'tr'])
    t.equal(
      (html.match(new RegExp(`<${tag}[ >]`, 'g')) ?? []).length,
      (html.match(new RegExp(`</${tag}>`, 'g')) ?? []).length,
      `<${tag}> balanced`,
    );
});

t.test('interval chart: whiskers at the interval, a dot at the mean', async (t) => {
  const svg = svgIntervals({ title: 'x', yLabel: 'y', rows: [{ label: 'a', mean: 1, lo: -1, hi: 3 }] });
  t.equal(svg.match(/<circle/g)?.length, 1);
  t.equal(
    svg.match(/<line x1="[\d.]+" y1="[\d.]+" x2="[\d.]+" y2="[\d.]+" stroke="#0072B2" stroke-width="2"\/>/g)?.length,
    3,
  );
  const empty = svgIntervals({ title: 'x', yLabel: 'y', rows: [{ label: 'a', mean: NaN, lo: NaN, hi: NaN }] });
  t.notMatch(empty, /<circle|NaN/, 'a row without numbers draws nothing and prints no NaN');
});
