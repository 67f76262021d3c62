// rlhf annotate: the label database (assignment, k labels per item, resume, undo), the JSON API
// over HTTP (sessions, validation, isolation between annotators), and the export filters.
import t from 'tap';
import type { Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  exportPreferences,
  LabelDb,
  loadCandidates,
  startAnnotateServer,
  type Answer,
} from '../../lib/annotate/index.js';

const dir = mkdtempSync(join(tmpdir(), 'rlhf-annotate-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let dbCount = 0;
const newDb = (k: number) => new LabelDb(join(dir, `db${dbCount++}.sqlite`), { labelsPerItem: k });

/** Answers every item `who` is given with `want[item index]` (in item terms a/b/...), through the display mapping. */
function labelAll(db: LabelDb, who: string, want: (itemId: number) => Answer | undefined): number[] {
  const me = db.session(db.signIn(who))!;
  const seen: number[] = [];
  for (let a = db.next(me.id); a; a = db.next(me.id)) {
    const answer = want(a.itemId) ?? 'skip';
    const shown =
      answer === 'a' ? (a.swapped ? 'right' : 'left') : answer === 'b' ? (a.swapped ? 'left' : 'right') : answer;
    db.answer(me.id, a.itemId, shown, '');
    seen.push(a.itemId);
  }
  return seen;
}

t.test('candidates file: formats and errors with file:line', async (t) => {
  const f = join(dir, 'c.jsonl');
  writeFileSync(
    f,
    [
      JSON.stringify({ prompt: 'p', responses: ['x', 'y'] }),
      JSON.stringify({ prompt: [{ role: 'user', content: 'q' }], chosen: 'u', rejected: 'v' }),
    ].join('\n'),
  );
  t.same(await loadCandidates(f), [
    { prompt: 'p', a: 'x', b: 'y', source: `${f}:1` },
    { prompt: [{ role: 'user', content: 'q' }], a: 'u', b: 'v', source: `${f}:2` },
  ]);
  for (const [line, msg] of [
    [{ prompt: 'p', responses: ['x'] }, /c2\.jsonl:1: expected exactly two string responses/],
    [{ prompt: 'p', responses: ['x', 'x'] }, /identical/],
    [{ prompt: '', responses: ['x', 'y'] }, /"prompt"/],
    [[1], /JSON object/],
  ] as const) {
    writeFileSync(join(dir, 'c2.jsonl'), JSON.stringify(line) + '\n');
    await t.rejects(loadCandidates(join(dir, 'c2.jsonl')), msg);
  }
});

t.test('k labels per item, never twice from one person, skips do not count, order recorded', async (t) => {
  const db = newDb(2);
  t.teardown(() => db.close());
  t.equal(db.addItems(Array.from({ length: 6 }, (_, i) => ({ prompt: `p${i}`, a: `a${i}`, b: `b${i}` }))), 6);
  t.equal(db.addItems([{ prompt: 'p0', a: 'a0', b: 'b0' }]), 0, 'loading the same pair again adds nothing');
  const ann = labelAll(db, 'ann', () => 'a');
  const bob = labelAll(db, 'bob', (id) => (id === 1 ? 'skip' : 'b'));
  const cid = labelAll(db, 'cid', () => 'tie_good');
  t.equal(new Set(ann).size, ann.length, 'ann saw no item twice');
  t.equal(ann.length, 6);
  t.equal(bob.length, 6);
  t.same(cid, [1], 'cid only gets the item bob skipped: every other item has its 2 answers');
  const labels = db.labels();
  for (let id = 1; id <= 6; id++)
    t.equal(labels.filter((l) => l.itemId === id && l.answer !== 'skip').length, 2, `item ${id} has 2 answers`);
  t.ok(labels.some((l) => l.swapped) && labels.some((l) => !l.swapped), 'both display orders occur and are recorded');
  t.ok(
    labels.filter((l) => l.annotator === 'ann').every((l) => l.answer === 'a'),
    'answers are stored in item terms whatever the order shown',
  );
  t.throws(() => new LabelDb(join(dir, `db${dbCount - 1}.sqlite`), { labelsPerItem: 3 }), /was started with 2/);
});

t.test('resume, undo, and answering only your own open item', async (t) => {
  const db = newDb(1);
  t.teardown(() => db.close());
  db.addItems(Array.from({ length: 3 }, (_, i) => ({ prompt: `p${i}`, a: `a${i}`, b: `b${i}` })));
  const me = db.session(db.signIn('dee'))!;
  const first = db.next(me.id)!;
  const again = db.session(db.signIn('dee'))!; // a new session (killed browser) for the same name
  t.same(db.next(again.id), first, 'the same open item, in the same order');
  const other = db.session(db.signIn('eve'))!;
  const eveItem = db.next(other.id)!;
  t.not(eveItem.itemId, first.itemId, 'an open item is reserved for its annotator');
  t.throws(() => db.answer(me.id, eveItem.itemId, 'left', ''), /not given to you/);
  db.answer(me.id, first.itemId, 'left', 'clearer');
  t.throws(() => db.answer(me.id, first.itemId, 'right', ''), /already answered/);
  const second = db.next(me.id)!;
  t.equal(db.undo(me.id), first.itemId);
  t.same(db.next(me.id), first, 'after undo the undone item comes back first, same order');
  db.answer(me.id, first.itemId, 'right', '');
  t.same(db.next(me.id), second, 'then the item that was next');
  t.match(db.progress(me.id), { done: 1, total: 3 });
});

t.test('export: ties, majority, disagreement, cycles; agreement report', async (t) => {
  const db = newDb(3);
  t.teardown(() => db.close());
  db.addItems([
    { prompt: 'P1', a: 'x', b: 'y' }, // 1: all a  → x > y
    { prompt: 'P1', a: 'y', b: 'z' }, // 2: all a  → y > z
    { prompt: 'P1', a: 'z', b: 'x' }, // 3: all a  → z > x: a cycle with 1 and 2
    { prompt: 'P2', a: 'p', b: 'q' }, // 4: a, a, b → p > q (2/3)
    { prompt: 'P2', a: 'q', b: 'r' }, // 5: a, b, tie → tie
    { prompt: 'P3', a: 's', b: 't' }, // 6: b, tie, tie → 1/3 < 0.6
    { prompt: 'P4', a: 'u', b: 'v' }, // 7: b, b, tie_bad → v > u
    { prompt: 'P1', a: 'x', b: 'w' }, // 8: all a → x > w (outside the cycle)
  ]);
  const votes: Record<number, Answer[]> = {
    1: ['a', 'a', 'a'],
    2: ['a', 'a', 'a'],
    3: ['a', 'a', 'a'],
    4: ['a', 'a', 'b'],
    5: ['a', 'b', 'tie_good'],
    6: ['b', 'tie_good', 'tie_bad'],
    7: ['b', 'b', 'tie_bad'],
    8: ['a', 'a', 'a'],
  };
  ['r0', 'r1', 'r2'].forEach((who, r) => labelAll(db, who, (id) => votes[id][r]));
  const out = exportPreferences(db);
  t.same(
    out.pairs.map((p) => [p.prompt, p.chosen, p.rejected]),
    [
      ['P2', 'p', 'q'],
      ['P4', 'v', 'u'],
      ['P1', 'x', 'w'],
    ],
  );
  t.same(out.dropped, { unlabelled: 0, ties: 1, disagreement: 1, cycles: 3 });
  t.same(out.pairs[0].votes, { chosen: 2, rejected: 1, tie: 0 });
  // agreement on merged categories (a, b, tie): items 1,2,3,8 agree fully (3 pairs each),
  // 4: 1 of 3 pairs, 5: 0 of 3, 6: 1 of 3 (the two ties), 7: 1 of 3
  t.ok(Math.abs(out.report.pairwiseAgreement! - 15 / 24) < 1e-12, `pairwise agreement ${out.report.pairwiseAgreement}`);
  t.equal(out.report.cohensKappa.length, 3, 'one Cohen entry per annotator pair');
  t.same(
    out.report.annotators.map((a) => [a.name, a.answers, a.ties]),
    [
      ['r0', 8, 0],
      ['r1', 8, 1],
      ['r2', 8, 3],
    ],
  );
  t.ok(out.report.fleissKappa! > 0 && out.report.fleissKappa! < 1);
  t.same(exportPreferences(db, { minAgreement: 0.3 }).dropped.disagreement, 0, 'a lower threshold keeps item 6');
});

async function http(t: Test, token?: string) {
  const db = newDb(2);
  db.addItems(Array.from({ length: 4 }, (_, i) => ({ prompt: `prompt ${i}`, a: `A${i}`, b: `B${i}` })));
  const srv = await startAnnotateServer({ db, port: 0, ...(token ? { token } : {}) });
  t.teardown(async () => {
    await srv.close();
    db.close();
  });
  const call = async (path: string, body?: unknown, cookie?: string, headers: Record<string, string> = {}) => {
    const res = await fetch(srv.url + path.slice(1), {
      method: body === undefined ? 'GET' : 'POST',
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(cookie ? { cookie } : {}),
        ...headers,
      },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    return {
      status: res.status,
      body: (await res.json().catch(() => null)) as Record<string, any>,
      headers: res.headers,
    };
  };
  const login = async (name: string, tok?: string) => {
    const r = await call('/api/login', { name, ...(tok !== undefined ? { token: tok } : {}) });
    return { ...r, cookie: (r.headers.get('set-cookie') ?? '').split(';')[0] };
  };
  return { db, srv, call, login };
}

t.test('HTTP API: sessions, answers, isolation, validation, headers', async (t) => {
  const { call, login, srv } = await http(t);
  const page = await fetch(srv.url);
  t.match(page.headers.get('content-security-policy'), /script-src 'self'/);
  t.match(await page.text(), /<script src="\/app.js" defer><\/script>/);
  t.equal((await call('/api/next')).status, 401, 'no session: 401');
  const ann = await login('Ann');
  t.equal(ann.status, 200);
  t.match(ann.headers.get('set-cookie'), /HttpOnly; SameSite=Strict/);
  const bob = await login('Bob');
  const a1 = await call('/api/next', undefined, ann.cookie);
  const b1 = await call('/api/next', undefined, bob.cookie);
  t.match(a1.body, {
    item: { itemId: Number, prompt: String, left: String, right: String },
    progress: { done: 0, remaining: 4, total: 4 },
  });
  const notMine = [1, 2, 3, 4].find((id) => id !== a1.body.item.itemId)!;
  const stolen = await call('/api/answer', { itemId: notMine, answer: 'left' }, ann.cookie);
  t.equal(stolen.status, 409, 'Ann cannot answer an item she was not given');
  t.match(stolen.body.error, /not given to you/);
  t.equal(b1.body.progress.done, 0, "Bob's progress is his own");
  const a2 = await call(
    '/api/answer',
    { itemId: a1.body.item.itemId, answer: 'left', reason: 'more accurate' },
    ann.cookie,
  );
  t.equal(a2.status, 200);
  t.equal(a2.body.progress.done, 1);
  t.not(a2.body.item.itemId, a1.body.item.itemId);
  const undo = await call('/api/undo', {}, ann.cookie);
  t.equal(undo.body.item.itemId, a1.body.item.itemId, 'undo brings the item back');
  t.equal(undo.body.progress.done, 0);
  for (const [body, status, msg] of [
    [{ itemId: 1, answer: 'maybe' }, 400, /answer: expected one of/],
    [{ itemId: '1', answer: 'left' }, 400, /itemId/],
    [{ itemId: 1, answer: 'left', reason: 'x'.repeat(2001) }, 400, /reason/],
    [{ itemId: 1, answer: 'left', extra: 1 }, 400, /extra: unknown field/],
    ['{not json', 400, /not valid JSON/],
    [{ itemId: 1, answer: 'left', reason: 'x'.repeat(20000) }, 413, /larger than/],
  ] as const) {
    const r = await call('/api/answer', body, ann.cookie);
    t.equal(r.status, status, JSON.stringify(body).slice(0, 60));
    t.match(r.body.error, msg);
  }
  t.equal(
    (await call('/api/answer', 'itemId=1', ann.cookie, { 'content-type': 'application/x-www-form-urlencoded' })).status,
    415,
    'form posts are refused',
  );
  t.equal((await login('<script>')).status, 400, 'names are checked');
  t.equal((await call('/api/next', undefined, 'rlhf_annotate=forged')).status, 401, 'a forged session is refused');
  t.equal((await call('/nothing')).status, 404);
});

t.test('HTTP API: the shared access token', async (t) => {
  const { login } = await http(t, 's3cret');
  t.equal((await login('Ann')).status, 403);
  t.equal((await login('Ann', 'wrong')).status, 403);
  t.equal((await login('Ann', 's3cret')).status, 200);
});
