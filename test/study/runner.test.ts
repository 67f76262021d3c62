// The study runner (lib/study/runner.ts) on the exact, model-free study: the output files, the same
// bytes on a second run, a folder made with other settings refused, and bad options named.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RlhfError } from '../../lib/errors.js';
import { runStudies } from '../../lib/study/runner.js';
import { STUDY_PRESETS } from '../../lib/study/setup.js';

const dir = mkdtempSync(join(tmpdir(), 'rlhf-study-runner-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('one study, two seeds: files, schema, same bytes again', async (t) => {
  const out = join(dir, 'a');
  const lines: string[] = [];
  const r = await runStudies({ output: out, names: ['exo-vs-dpo'], seeds: 2, log: (l) => lines.push(l) });
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  t.same(Object.keys(summary.studies), ['exo-vs-dpo']);
  t.same(summary.studies['exo-vs-dpo'].seeds, [0, 1]);
  t.equal(summary.preset, 'small');
  t.equal(r.outcomes.length, 1);
  t.match(lines.join('\n'), /\[1\/2\] exo-vs-dpo seed 0 .*\n\[2\/2\] exo-vs-dpo seed 1 /, 'progress per seed');
  const html = readFileSync(join(out, 'report.html'), 'utf8');
  t.equal(html.match(/<svg/g)?.length, 1);
  await runStudies({ output: out, names: ['exo-vs-dpo'], seeds: 2 });
  t.equal(readFileSync(join(out, 'report.html'), 'utf8'), html, 'the same report byte for byte');
});

t.test('a folder made with other settings is refused', async (t) => {
  const out = join(dir, 'b');
  await runStudies({ output: out, names: ['exo-vs-dpo'], seeds: 1 });
  const path = join(out, 'runs', 'small', 'settings.json');
  writeFileSync(path, JSON.stringify({ ...STUDY_PRESETS.small, maxNewTokens: 7 }, null, 2) + '\n');
  await t.rejects(runStudies({ output: out, names: ['exo-vs-dpo'], seeds: 1 }), RlhfError);
  await t.rejects(
    runStudies({ output: out, names: ['exo-vs-dpo'], seeds: 1 }),
    /other small settings; use another --output/,
  );
});

t.test('bad options name the parameter', async (t) => {
  await t.rejects(runStudies({ output: join(dir, 'c'), names: ['nope'] }), /options\.names\[0\].*alignment/);
  await t.rejects(runStudies({ output: join(dir, 'c'), seeds: 0 }), /options\.seeds/);
  await t.rejects(runStudies({ output: join(dir, 'c'), preset: 'huge' as 'small' }), /options\.preset/);
  await t.rejects(runStudies({ output: 5 as unknown as string }), /options\.output/);
});
