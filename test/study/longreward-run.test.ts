// The longreward study on the small preset, one seed (a seed costs about a minute of CPU): the
// outcome's schema, the pipeline's pairs ordered as the gold function orders them (the judge is
// the gold function; only retrieval can disagree), the per-dimension table, and a second run read
// from the cache to the same summary. The direction of the claim is not asserted: at this size it
// does not hold robustly (README, "What the papers claim").
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStudies } from '../../lib/study/runner.js';

t.setTimeout(1800000);
const dir = mkdtempSync(join(tmpdir(), 'rlhf-study-longreward-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('longreward, small preset, seed 0', { timeout: 1800000 }, async (t) => {
  const lines: string[] = [];
  const r = await runStudies({ output: dir, names: ['longreward'], seeds: 1, log: (l) => lines.push(l) });
  const o = r.outcomes[0];
  t.equal(o.name, 'longreward');
  t.same(o.seeds, [0]);
  t.ok(Number.isFinite(o.effect) && o.ci[0] <= o.effect && o.effect <= o.ci[1], `effect ${o.effect} in ${o.ci}`);
  t.equal(o.reproduced, o.ci[0] > 0);
  t.same(
    o.table.rows.map((row) => row[0]),
    ['faithfulness', 'completeness', 'helpfulness', 'logicality', 'total'],
  );
  for (const row of o.table.rows.slice(0, 4))
    for (const v of row.slice(1, 3)) t.ok(Number(v) >= 0 && Number(v) <= 10, `${row[0]} ${v} on 0..10`);
  t.match(lines.join('\n'), /longreward seed 0: SFT loss .* on 2400 short documents/);
  t.match(lines.join('\n'), /longreward seed 0: 128 SFT answers scored by the LongReward pipeline, \d+ pairs/);
  const m = /(\d+) best-vs-worst pairs \(ties dropped\), of which the gold total orders (\d+) of (\d+)/.exec(
    o.notes.join('\n'),
  );
  t.ok(m, 'pairs note');
  const [pairs, agree, decided] = m!.slice(1).map(Number);
  t.ok(pairs >= 8, `${pairs} pairs from 32 questions`);
  t.ok(decided > 0 && agree / decided >= 0.9, `gold agrees with the pipeline on ${agree} of ${decided} pairs`);
  t.ok(existsSync(join(dir, 'runs', 'small', 'seed-0', 'longreward', 'result.json')));
  const summary = readFileSync(join(dir, 'summary.json'), 'utf8');
  await runStudies({ output: dir, names: ['longreward'], seeds: 1 });
  t.equal(readFileSync(join(dir, 'summary.json'), 'utf8'), summary, 'read back from the cache: same summary');
});
