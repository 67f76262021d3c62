// One small-preset run (3 seeds) of every study but scaling, exo-frontier (the costliest, whose
// claims do not hold at this size; their summaries are tested on synthetic runs in
// summaries.test.ts) and longreward (its own model and task: longreward-run.test.ts), shared by all assertions: the summary.json schema,
// the report (one section and chart per study), the direction of the claims that hold robustly at
// this size with these fixed seeds (alignment, ptx, length-balance, exo-vs-dpo; the others are
// reported either way and not asserted), resuming (a deleted run is redone and nothing else: the
// same summary and report byte for byte), an interrupted CLI run (killed mid-study, then resumed
// to the same summary), and the CLI's usage errors.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { runStudies, STUDY_NAMES as ALL_STUDIES } from '../../lib/study/runner.js';

const STUDY_NAMES = ALL_STUDIES.filter((n) => !['scaling', 'exo-frontier', 'longreward'].includes(n));

// one small-preset run of every study takes about 2 minutes of CPU (longer on a shared machine)
t.setTimeout(1800000);
const dir = mkdtempSync(join(tmpdir(), 'rlhf-study-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const cli = join(packageRoot, 'dist', 'cli', 'main.js');
const files = (d: string): string[] =>
  readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(d, e.name)) : [join(d, e.name)],
  );

t.test('small preset: every study over 3 seeds', { timeout: 1800000 }, async (t) => {
  const first = await runStudies({ output: dir, preset: 'small', names: STUDY_NAMES });
  const summaryText = readFileSync(join(dir, 'summary.json'), 'utf8');
  const reportText = readFileSync(join(dir, 'report.html'), 'utf8');
  const summary = JSON.parse(summaryText);

  t.test('summary.json schema', async (t) => {
    t.same(Object.keys(summary.studies), STUDY_NAMES, 'every study run, in order');
    for (const [name, s] of Object.entries<Record<string, unknown>>(summary.studies)) {
      t.type(s.claim, 'string', `${name}.claim`);
      t.type(s.effect, 'number', `${name}.effect`);
      t.ok(Number.isFinite(s.effect), `${name}.effect finite`);
      const ci = s.ci as number[];
      t.ok(Array.isArray(ci) && ci.length === 2 && ci[0] <= ci[1], `${name}.ci is [lo, hi]`);
      t.type(s.reproduced, 'boolean', `${name}.reproduced`);
      // every study states its effect so that the claim predicts a positive sign
      t.equal(s.reproduced, ci[0] > 0, `${name}: reproduced iff the interval lies above zero`);
      t.same(s.seeds, [0, 1, 2], `${name}.seeds`);
      t.match(s.verdict, new RegExp(`^${name}: .*(reproduced|not reproduced): the 95% interval`), `${name}.verdict`);
    }
  });

  t.test('report: a section, a verdict and a chart per study', async (t) => {
    for (const name of STUDY_NAMES) t.match(reportText, `<section id="${name}">`);
    t.equal(reportText.match(/<svg/g)?.length, STUDY_NAMES.length);
    t.notMatch(reportText, /<script|NaN/);
  });

  t.test('claims that hold robustly on the small preset', async (t) => {
    const by = Object.fromEntries(first.outcomes.map((o) => [o.name, o]));
    for (const name of ['alignment', 'ptx', 'length-balance', 'exo-vs-dpo'])
      t.equal(by[name].reproduced, true, by[name].verdict);
    t.ok(by.alignment.ci[0] > 0, 'PPO wins more than it loses against SFT');
    t.ok(by.ptx.ci[0] > 0, 'PTX lowers the NLL of the SFT data');
  });

  t.test('resume: a deleted run is redone, nothing else; same summary and report', async (t) => {
    const victim = join(dir, 'runs', 'small', 'seed-1', 'policies', 'dpo.json');
    t.ok(existsSync(victim));
    const before = new Map(files(join(dir, 'runs')).map((f) => [f, statSync(f).mtimeMs]));
    rmSync(victim);
    rmSync(join(dir, 'summary.json'));
    await runStudies({ output: dir, preset: 'small', names: STUDY_NAMES });
    t.equal(readFileSync(join(dir, 'summary.json'), 'utf8'), summaryText, 'summary.json byte for byte');
    t.equal(readFileSync(join(dir, 'report.html'), 'utf8'), reportText, 'report.html byte for byte');
    t.ok(existsSync(victim), 'the deleted run is back');
    const touched = [...before].filter(([f, m]) => f !== victim && statSync(f).mtimeMs !== m).map(([f]) => f);
    t.same(touched, [], 'no other cached file was rewritten');
  });

  t.test('interrupted CLI run resumes to the same summary', async (t) => {
    // drop seed 2's PPO and DPO runs, kill the CLI once it has redone PPO, then let it finish
    const policies = join(dir, 'runs', 'small', 'seed-2', 'policies');
    const ppoRun = join(policies, 'ppo-reference-ptx1.json');
    rmSync(ppoRun);
    rmSync(join(policies, 'dpo.json'));
    const args = [cli, 'study', 'dpo-length', ...STUDY_NAMES.filter((n) => n !== 'dpo-length')];
    const child = spawn(process.execPath, [...args, '--output', dir], { stdio: 'ignore' });
    const killed = await new Promise<boolean>((resolve) => {
      const poll = setInterval(() => {
        if (existsSync(ppoRun)) {
          clearInterval(poll);
          resolve(child.kill('SIGKILL'));
        }
      }, 20);
      child.on('exit', () => (clearInterval(poll), resolve(false)));
    });
    t.ok(killed, 'killed after the first redone run');
    t.notOk(existsSync(join(policies, 'dpo.json')), 'the second run was not finished');
    const r = spawnSync(process.execPath, [...args, '--output', dir], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    const again = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
    // the CLI ran dpo-length first: same studies, another order
    for (const name of STUDY_NAMES) t.same(again.studies[name], summary.studies[name], `${name} unchanged`);
    t.match(r.stdout, /^reproduced {2,}alignment: /m);
  });
});

t.test('CLI: help and usage errors', async (t) => {
  const help = spawnSync(process.execPath, [cli, 'study', '--help'], { encoding: 'utf8' });
  t.equal(help.status, 0);
  for (const name of ALL_STUDIES) t.match(help.stdout, name);
  const bad = spawnSync(process.execPath, [cli, 'study', 'nope', '--output', join(dir, 'x')], { encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /unknown study "nope"; the studies are alignment, /);
  const seeds = spawnSync(process.execPath, [cli, 'study', '--seeds', '0'], { encoding: 'utf8' });
  t.equal(seeds.status, 2);
  t.match(seeds.stderr, /--seeds/);
});
