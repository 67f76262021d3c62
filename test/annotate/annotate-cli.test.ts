// The `rlhf annotate` command: serving a database, flag mistakes, and `annotate export` output that
// `rlhf rm` trains a reward model on.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LabelDb } from '../../lib/annotate/index.js';
import { packageRoot } from '../../lib/native.js';
import { tinyCheckpoint } from '../serve/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'rlhf-annotate-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const cli = join(packageRoot, 'dist', 'cli', 'main.js');
const rlhf = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 240000 });

const items = Array.from({ length: 8 }, (_, i) => ({
  prompt: [{ role: 'user', content: `Name a colour (${i}).` }],
  responses: [`Blue, number ${i}.`, `I do not know ${i}`],
}));
writeFileSync(join(dir, 'candidates.jsonl'), items.map((x) => JSON.stringify(x)).join('\n') + '\n');
const db = join(dir, 'labels.sqlite');

t.test('serve: loads the candidates, prints the address, stops on SIGTERM; flag mistakes exit 2', async (t) => {
  const proc = spawn(process.execPath, [
    cli,
    'annotate',
    '--pairs',
    join(dir, 'candidates.jsonl'),
    '--db',
    db,
    '--port',
    '0',
    '--labels-per-item',
    '2',
  ]);
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d));
  const url = await new Promise<string>((resolve) =>
    proc.stdout.on('data', () => {
      const m = /open (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) resolve(m[1]);
    }),
  );
  t.match(out, /8 new items from/);
  t.equal((await fetch(url)).status, 200);
  proc.kill('SIGTERM');
  t.equal(await new Promise((r) => proc.on('exit', r)), 0);
  const again = rlhf('annotate', '--db', db, '--labels-per-item', '3', '--port', '0');
  t.equal(again.status, 2);
  t.match(again.stderr, /was started with 2/);
  t.match(rlhf('annotate', 'export', '--db', db).stderr, /needs --out/);
  t.match(rlhf('annotate', 'publish', '--db', db).stderr, /unknown action "publish"/);
  t.match(
    rlhf('annotate', 'export', '--db', join(dir, 'none.sqlite'), '--out', join(dir, 'x.jsonl')).stderr,
    /no such database/,
  );
});

t.test('export → rlhf rm trains on the pairs', { timeout: 240000 }, async (t) => {
  const labels = new LabelDb(db);
  for (const who of ['ann', 'bob']) {
    const me = labels.session(labels.signIn(who))!;
    for (let a = labels.next(me.id); a; a = labels.next(me.id))
      labels.answer(me.id, a.itemId, a.left.startsWith('Blue') ? 'left' : 'right', 'answers the question');
  }
  labels.close();
  const r = rlhf(
    'annotate',
    'export',
    '--db',
    db,
    '--out',
    join(dir, 'prefs.jsonl'),
    '--report',
    join(dir, 'report.json'),
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /8 pairs written/);
  t.match(r.stdout, /pairwise 1\.000/);
  const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as {
    pairwiseAgreement: number;
    annotators: unknown[];
  };
  t.equal(report.pairwiseAgreement, 1);
  t.equal(report.annotators.length, 2);
  const pairs = readFileSync(join(dir, 'prefs.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { chosen: string });
  t.ok(pairs.every((p) => p.chosen.startsWith('Blue')));

  const ck = await tinyCheckpoint();
  t.teardown(() => {
    ck.model.dispose();
    ck.cleanup();
  });
  const rm = rlhf(
    'rm',
    '--model',
    ck.dir,
    '--data',
    join(dir, 'prefs.jsonl'),
    '--output',
    join(dir, 'rm'),
    '--epochs',
    '1',
    '--batch-size',
    '2',
    '--seq-len',
    '96',
    '--eval-split',
    '0.25',
    '--threads',
    '1',
  );
  t.equal(rm.status, 0, rm.stderr);
  t.ok(existsSync(join(dir, 'rm', 'model', 'config.json')), 'a reward model trained on the exported pairs');
});
