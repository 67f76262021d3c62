/// <reference lib="dom" />
// The labelling page in a real browser (playwright-core driving the system Chromium, installed by
// scripts/install-test-tools.sh): two annotators label at once with the keyboard; one annotator's
// browser is killed mid-session and the server is SIGKILLed, both come back and carry on where they
// were; undo works; the export holds exactly the expected pairs; a response carrying script
// injection is shown as text and never runs.
import t from 'tap';
import type { Test } from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';

const chromiumPath = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
  (p) => p && existsSync(p),
);
if (!chromiumPath) {
  t.comment('SKIPPED: no Chromium found (run scripts/install-test-tools.sh, or set CHROMIUM_PATH)');
  t.pass('skipped: Chromium is not installed');
} else {
  t.test('two annotators label in Chromium', { timeout: 300000 }, (t) => run(t, chromiumPath));
}

async function run(t: Test, executablePath: string) {
  const { chromium } = await import('playwright-core');
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-annotate-browser-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cli = join(packageRoot, 'dist', 'cli', 'main.js');
  const XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
  const items = Array.from({ length: 6 }, (_, i) => ({
    prompt: i === 0 ? 'xss check: **bold** prompt' : `question ${i}`,
    responses:
      i % 2
        ? [`good answer ${i}`, `bad answer ${i}`]
        : [
            `bad answer ${i} ${i === 0 ? XSS : ''}`,
            `good answer ${i}\n\n**bold** and \`code\`\n\n\`\`\`\n${XSS}\n\`\`\``,
          ],
  }));
  writeFileSync(join(dir, 'candidates.jsonl'), items.map((x) => JSON.stringify(x)).join('\n') + '\n');
  const db = join(dir, 'labels.sqlite');

  const startServer = async (port: number): Promise<{ proc: ChildProcess; url: string }> => {
    const proc = spawn(process.execPath, [
      cli,
      'annotate',
      '--pairs',
      join(dir, 'candidates.jsonl'),
      '--db',
      db,
      '--port',
      String(port),
      '--labels-per-item',
      '2',
    ]);
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      proc.stdout!.on('data', (d: Buffer) => {
        out += d;
        const m = /open (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]);
      });
      proc.stderr!.on('data', (d: Buffer) => (out += d));
      proc.on('exit', (c) => reject(new Error(`rlhf annotate exited ${c}: ${out}`)));
    });
    return { proc, url };
  };

  let server = await startServer(0);
  const port = Number(new URL(server.url).port);
  t.teardown(() => void server.proc.kill('SIGKILL'));
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  t.teardown(() => browser.close());
  const errors: string[] = [];

  const open = async (name: string) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    page.on('pageerror', (e) => errors.push(`${name}: ${e.message}`));
    page.on('dialog', (d) => {
      errors.push(`${name}: a dialog opened: ${d.message()}`);
      void d.dismiss();
    });
    await page.goto(server.url);
    await page.fill('#name', name);
    await page.click('#login button');
    await page.waitForSelector('#task:not([hidden]), #finished:not([hidden])');
    return { context, page };
  };
  type Page = Awaited<ReturnType<typeof open>>['page'];
  const shown = (page: Page) =>
    page.evaluate(() => ({
      item: document.body.dataset.item,
      left: document.getElementById('left')!.textContent!,
      prompt: document.getElementById('prompt')!.textContent!,
    }));

  /** Answers the item on screen with a key: the "good" side, or tie (key 3) when `tie` says so. */
  const answer = async (page: Page, who: string, tie: (prompt: string) => boolean = () => false) => {
    const s = await shown(page);
    if (s.prompt.includes('xss check')) await checkNoInjection(page, who);
    await page.keyboard.press(tie(s.prompt) ? '3' : s.left.includes('good answer') ? '1' : '2');
    await page.waitForFunction(
      (prev) => document.body.dataset.item !== prev || !document.getElementById('finished')!.hidden,
      s.item,
    );
    return s;
  };
  const checkNoInjection = async (page: Page, who: string) => {
    const r = await page.evaluate(() => ({
      xss: (window as unknown as { __xss?: number }).__xss,
      tags: document.querySelectorAll('#left img, #right img, #left script, #right script, #prompt img').length,
      text: document.getElementById('left')!.textContent! + document.getElementById('right')!.textContent!,
      bold: Array.from(document.querySelectorAll('#prompt strong, #left strong, #right strong')).map(
        (e) => e.textContent,
      ),
      code: Array.from(document.querySelectorAll('#left pre code, #right pre code')).map((e) => e.textContent),
    }));
    t.equal(r.xss, undefined, `${who}: the injected script did not run`);
    t.equal(r.tags, 0, `${who}: no element was created from model text`);
    t.ok(r.text.includes('<img src=x onerror="window.__xss=1">'), `${who}: the payload is shown as text`);
    t.ok(r.bold.includes('bold'), `${who}: markdown bold rendered as <strong>`);
    t.ok(
      r.code.some((c) => c!.includes('<script>window.__xss=2</script>')),
      `${who}: code fence rendered as <pre><code> text`,
    );
  };

  // phase 1: two annotators at once, two answers each
  let ann = await open('Ann');
  const bob = await open('Bob');
  const bobTie = (prompt: string) => prompt === 'question 3';
  await Promise.all([
    (async () => {
      for (let i = 0; i < 2; i++) await answer(ann.page, 'Ann');
    })(),
    (async () => {
      for (let i = 0; i < 2; i++) await answer(bob.page, 'Bob', bobTie);
    })(),
  ]);
  const annOpen = await shown(ann.page);
  await ann.context.close(); // Ann's browser dies with an item on screen
  server.proc.kill('SIGKILL'); // and so does the server
  await new Promise((r) => server.proc.once('exit', r));
  server = await startServer(port);

  // phase 2: Ann signs in again in a new browser; Bob's page reloads with its session cookie
  ann = await open('Ann');
  t.same(await shown(ann.page), annOpen, 'Ann resumes on the item she had open, in the same order');
  t.match(await ann.page.textContent('#progress'), /done 2 /, 'her two answers survived the kill');
  await bob.page.reload();
  await bob.page.waitForSelector('#task:not([hidden])');
  t.match(await bob.page.textContent('#progress'), /done 2 /);
  await Promise.all([
    (async () => {
      const first = await answer(ann.page, 'Ann');
      await ann.page.keyboard.press('u');
      await ann.page.waitForFunction((id) => document.body.dataset.item === id, first.item);
      t.pass('undo brings back the last answered item');
      while (await ann.page.isHidden('#finished')) await answer(ann.page, 'Ann');
    })(),
    (async () => {
      while (await bob.page.isHidden('#finished')) await answer(bob.page, 'Bob', bobTie);
    })(),
  ]);
  t.match(await ann.page.textContent('#progress'), /done 6 · remaining 0 of 6/);
  await bob.page.reload(); // the agreement shown with his last answer predates Ann's last ones
  await bob.page.waitForSelector('#finished:not([hidden])');
  t.match(await bob.page.textContent('#progress'), /agreement 83%/, 'Bob agrees with Ann on 5 of 6');
  t.same(errors, [], 'no page errors, no dialogs');
  server.proc.kill('SIGTERM');
  await new Promise((r) => server.proc.once('exit', r));

  const out = join(dir, 'preferences.jsonl');
  const r = spawnSync(process.execPath, [cli, 'annotate', 'export', '--db', db, '--out', out], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /5 pairs written .*1 below agreement/);
  const pairs = readFileSync(out, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { prompt: string; chosen: string; rejected: string });
  const expected = items
    .filter((x) => x.prompt !== 'question 3')
    .map((x) => ({
      prompt: x.prompt,
      chosen: x.responses.find((s) => s.startsWith('good'))!,
      rejected: x.responses.find((s) => s.startsWith('bad'))!,
    }));
  t.same(pairs, expected, 'every item both preferred the good response for; the tie item is dropped');
}
