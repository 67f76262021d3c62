// Hub ids resolved in a local Hugging Face cache (no network): cache roots from the environment,
// refs -> snapshots, revisions, Model.load and loadTokenizer by id, and the error that lists every
// place looked at. The cache is a fake layout made in a temp dir.
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '../../lib/errors.js';
import { findInHubCache, hubCacheRoots, isHubId, resolveCheckpoint } from '../../lib/io/hub.js';
import { Model } from '../../lib/engine/model.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { loadTokenizer } from '../../lib/tokenizer/index.js';
import { qwen2Files, writeFixture } from '../fixtures/tokenizers/build.js';

const HASH = 'a'.repeat(40);
const OTHER = 'b'.repeat(40);

/** models--org--name with refs/main -> snapshots/HASH (and refs/dev -> snapshots/OTHER). */
function fakeRepo(root: string, id: string): { main: string; dev: string } {
  const repo = join(root, `models--${id.replace('/', '--')}`);
  mkdirSync(join(repo, 'refs'), { recursive: true });
  writeFileSync(join(repo, 'refs', 'main'), HASH); // huggingface_hub writes the hash without a newline
  writeFileSync(join(repo, 'refs', 'dev'), OTHER + '\n');
  const main = join(repo, 'snapshots', HASH);
  const dev = join(repo, 'snapshots', OTHER);
  mkdirSync(main, { recursive: true });
  mkdirSync(dev, { recursive: true });
  return { main, dev };
}

t.test('isHubId', async (t) => {
  for (const id of [
    'Qwen/Qwen2.5-0.5B-Instruct',
    'meta-llama/Llama-3.2-1B',
    'org/name@main',
    'org/name@refs/pr/1',
    'a/b.c_d',
  ])
    t.ok(isHubId(id), id);
  for (const s of [
    'name',
    './org/name',
    '/org/name',
    'org/name/x',
    '../org',
    'org/..',
    'org/name@../x',
    '-org/name',
    'org/',
    '',
  ])
    t.notOk(isHubId(s), s);
});

t.test('cache roots: HF_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME, ~/.cache', async (t) => {
  t.same(hubCacheRoots({ HF_HUB_CACHE: '/c', HF_HOME: '/h' }), ['/c', '/h/hub']);
  t.same(hubCacheRoots({ HF_HOME: '/h', XDG_CACHE_HOME: '/x' }), ['/h/hub']);
  t.same(hubCacheRoots({ XDG_CACHE_HOME: '/x' }), ['/x/huggingface/hub']);
  t.same(hubCacheRoots({}), [join(homedir(), '.cache', 'huggingface', 'hub')]);
});

t.test('refs/<revision> -> snapshots/<hash>; a commit hash names its snapshot; first root wins', async (t) => {
  const dir = t.testdir();
  const first = join(dir, 'first'),
    second = join(dir, 'home', 'hub');
  const a = fakeRepo(first, 'Org/Model');
  const b = fakeRepo(second, 'Org/Other');
  fakeRepo(second, 'Org/Model');
  const env = { HF_HUB_CACHE: first, HF_HOME: join(dir, 'home') };
  t.equal(findInHubCache('Org/Model', env), a.main);
  t.equal(findInHubCache('Org/Model@dev', env), a.dev, 'a branch ref (file ends with a newline)');
  t.equal(findInHubCache(`Org/Model@${OTHER}`, env), a.dev, 'a commit hash without a ref');
  t.equal(findInHubCache('Org/Other', env), b.main, 'found in the second root');
  const looked: string[] = [];
  t.equal(findInHubCache('Org/Missing', env, looked), undefined);
  t.same(looked, [
    join(first, 'models--Org--Missing', 'refs', 'main'),
    join(second, 'models--Org--Missing', 'refs', 'main'),
  ]);
  const l2: string[] = [];
  mkdirSync(join(first, 'models--Org--Broken', 'refs'), { recursive: true });
  writeFileSync(join(first, 'models--Org--Broken', 'refs', 'main'), HASH);
  t.equal(findInHubCache('Org/Broken', { HF_HUB_CACHE: first }, l2), undefined, 'a ref whose snapshot is absent');
  t.same(l2, [
    join(first, 'models--Org--Broken', 'snapshots', HASH),
    join(homedir(), '.cache', 'huggingface', 'hub', 'models--Org--Broken', 'refs', 'main'),
  ]);
});

t.test('resolveCheckpoint: directories and paths pass through; absent ids say where they looked', async (t) => {
  const dir = t.testdir({ local: {} });
  const env = { HF_HUB_CACHE: join(dir, 'cache'), HF_HOME: join(dir, 'home') };
  t.equal(resolveCheckpoint('f', join(dir, 'local'), env), join(dir, 'local'));
  t.equal(
    resolveCheckpoint('f', '/no/such/dir', env),
    '/no/such/dir',
    'an absolute path is left to the caller to report',
  );
  t.equal(resolveCheckpoint('f', 'plain', env), 'plain', 'not a hub id');
  t.throws(() => resolveCheckpoint('Model.load', 'Qwen/Qwen2.5-0.5B-Instruct', env), {
    name: 'RlhfError',
    code: ErrorCode.IO,
    message: `Model.load: Qwen/Qwen2.5-0.5B-Instruct is neither a directory nor in the local Hugging Face cache (no network access is attempted); looked for ${join(dir, 'cache', 'models--Qwen--Qwen2.5-0.5B-Instruct', 'refs', 'main')}, ${join(dir, 'home', 'hub', 'models--Qwen--Qwen2.5-0.5B-Instruct', 'refs', 'main')}. Download it first (e.g. \`huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct\`) or set HF_HUB_CACHE / HF_HOME.`,
  });
  t.throws(() => resolveCheckpoint('f', 3 as never, env), {
    name: 'TypeError',
    message: 'f: expected dir to be a non-empty string, received 3',
  });
});

t.test('Model.load and loadTokenizer by hub id from HF_HUB_CACHE', async (t) => {
  const dir = t.testdir();
  const cache = join(dir, 'hub');
  const { main } = fakeRepo(cache, 'Org/Tiny-Chat');
  const saved = await Model.create(tinyConfig({ vocab: 300, hidden: 16, layers: 1, heads: 2, ffn: 32 }), { seed: 3 });
  await saved.save(main);
  const f = qwen2Files();
  await writeFixture(main, {
    'tokenizer.json': f['tokenizer.json'],
    'tokenizer_config.json': f['tokenizer_config.json'],
  });
  const before = { HF_HUB_CACHE: process.env.HF_HUB_CACHE, HF_HOME: process.env.HF_HOME };
  process.env.HF_HUB_CACHE = cache;
  delete process.env.HF_HOME;
  t.teardown(() => {
    for (const [k, v] of Object.entries(before)) v === undefined ? delete process.env[k] : (process.env[k] = v);
  });
  const m = await Model.load('Org/Tiny-Chat');
  t.equal(m.config.hidden, 16);
  t.same(
    await m.getParameter('model.embed_tokens.weight'),
    await saved.getParameter('model.embed_tokens.weight'),
    "the snapshot's weights",
  );
  const tk = await loadTokenizer('Org/Tiny-Chat');
  t.equal(tk.eosId, tk.tokenToId('<|im_end|>'));
  await t.rejects(Model.load('Org/Absent'), {
    name: 'RlhfError',
    code: ErrorCode.IO,
    message:
      /^Model\.load: Org\/Absent is neither a directory nor in the local Hugging Face cache .*looked for .*models--Org--Absent/,
  });
  await t.rejects(loadTokenizer('Org/Absent@v2'), {
    code: ErrorCode.IO,
    message: /^loadTokenizer: Org\/Absent@v2 is neither .*models--Org--Absent\/refs\/v2/,
  });
  m.dispose?.();
  saved.dispose?.();
});
