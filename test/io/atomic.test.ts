// Atomic writes: no temporary files left behind, content replaced whole, failures reported as
// ERR_RLHF_IO naming the path; directory replacement keeps the old directory when fill throws.
import t from 'tap';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { replaceDirAtomic, writeFileAtomic } from '../../lib/io/atomic.js';

const root = await mkdtemp(join(tmpdir(), 'rlhf-atomic-'));
t.teardown(() => rm(root, { recursive: true, force: true }));
let counter = 0;
const freshDir = async () => {
  const d = join(root, `case-${counter++}`);
  await mkdir(d);
  return d;
};
const leftovers = async (dir: string) => (await readdir(dir)).filter((n) => /\.(tmp|old)-/.test(n));

t.test('writeFileAtomic creates and replaces files, leaves no temporary files', async (t) => {
  const dir = await freshDir();
  const p = join(dir, 'a.json');
  await writeFileAtomic(p, 'first');
  t.equal(await readFile(p, 'utf8'), 'first');
  await writeFileAtomic(p, new Uint8Array([104, 105]));
  t.equal(await readFile(p, 'utf8'), 'hi', 'replaced (shorter content, no leftover bytes)');
  await writeFileAtomic(p, [Buffer.from('ab'), new Uint8Array(0), Buffer.from('cd')]);
  t.equal(await readFile(p, 'utf8'), 'abcd', 'chunks written in order');
  await writeFileAtomic(p, 'ü€');
  t.equal(await readFile(p, 'utf8'), 'ü€', 'strings as UTF-8');
  t.same(await readdir(dir), ['a.json']);
});

t.test('writeFileAtomic failures: ERR_RLHF_IO naming the path, nothing left behind', async (t) => {
  const dir = await freshDir();
  const missing = join(dir, 'no', 'such', 'x.bin');
  await t.rejects(
    writeFileAtomic(missing, 'x'),
    { name: 'RlhfError', code: 'ERR_RLHF_IO', message: new RegExp(`^cannot write ${missing}: ENOENT`) },
    'missing parent',
  );
  const sub = join(dir, 'sub');
  await mkdir(sub);
  await writeFile(join(sub, 'keep'), 'k');
  const err = await writeFileAtomic(sub, 'over a directory').catch((e: unknown) => e);
  t.match(
    err,
    { code: 'ERR_RLHF_IO', message: new RegExp(`^cannot write ${sub}: E(ISDIR|NOTEMPTY|EXIST)`) },
    'renaming over a directory fails',
  );
  t.ok((err as Error).cause instanceof Error, 'the system error is the cause');
  t.same(await readdir(dir), ['sub'], 'the temporary file was removed');
  t.same(await readdir(sub), ['keep']);
  t.throws(() => writeFileAtomic(join(dir, 'y'), 5 as never), {
    name: 'TypeError',
    message: /writeFileAtomic: expected data to be a Uint8Array, a string or an array of Uint8Array, received 5/,
  });
  t.throws(() => writeFileAtomic('', 'x'), { name: 'TypeError', message: /expected path to be a non-empty string/ });
});

t.test('replaceDirAtomic: fill throws -> old directory untouched, temporary removed, error rethrown', async (t) => {
  const parent = await freshDir();
  const dir = join(parent, 'ckpt');
  await mkdir(dir);
  await writeFile(join(dir, 'old.txt'), 'old');
  const boom = new Error('boom');
  let seen = '';
  await t.rejects(
    replaceDirAtomic(dir, async (tmp) => {
      seen = tmp;
      await writeFile(join(tmp, 'half.txt'), 'partial');
      throw boom;
    }),
    boom,
  );
  t.match(seen, new RegExp(`^${dir}\\.tmp-${process.pid}-[0-9a-f]+$`), 'the temporary directory is a sibling');
  t.same(await readdir(dir), ['old.txt']);
  t.equal(await readFile(join(dir, 'old.txt'), 'utf8'), 'old');
  t.same(await leftovers(parent), [], 'no .tmp-/.old- siblings left');
});

t.test('replaceDirAtomic: fill succeeds -> directory replaced whole, nothing left behind', async (t) => {
  const parent = await freshDir();
  const dir = join(parent, 'ckpt');
  await mkdir(join(dir, 'nested'), { recursive: true });
  await writeFile(join(dir, 'old.txt'), 'old');
  await writeFile(join(dir, 'nested', 'deep.txt'), 'deep');
  await replaceDirAtomic(dir, async (tmp) => {
    await writeFileAtomic(join(tmp, 'new.txt'), 'new');
    await mkdir(join(tmp, 'sub'));
    await writeFile(join(tmp, 'sub', 'f.bin'), new Uint8Array([1, 2, 3]));
  });
  t.same((await readdir(dir)).sort(), ['new.txt', 'sub'], 'old files gone, new files in place');
  t.equal(await readFile(join(dir, 'new.txt'), 'utf8'), 'new');
  t.same([...(await readFile(join(dir, 'sub', 'f.bin')))], [1, 2, 3]);
  t.same(await readdir(parent), ['ckpt'], 'no .tmp-/.old- siblings left');

  const created = join(parent, 'a', 'b', 'fresh');
  await replaceDirAtomic(created, async (tmp) => writeFile(join(tmp, 'x'), 'x'));
  t.same(await readdir(created), ['x'], 'a missing directory (and its parents) is created');

  const file = join(parent, 'plain-file');
  await writeFile(file, 'data');
  await t.rejects(
    replaceDirAtomic(file, async () => {}),
    { code: 'ERR_RLHF_IO', message: new RegExp(`^cannot replace ${file}: it exists and is not a directory`) },
  );
  t.equal(await readFile(file, 'utf8'), 'data', 'a file in the way is left alone');
  t.same(await leftovers(parent), []);
  t.throws(() => replaceDirAtomic(dir, 'nope' as never), {
    name: 'TypeError',
    message: /replaceDirAtomic: expected fill to be a function/,
  });
});
