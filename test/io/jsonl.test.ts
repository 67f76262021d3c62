// JSONL reading and writing: line numbers count blank lines, BOM and CRLF accepted, malformed JSON
// and unreadable files reported as file:line FORMAT / IO errors, atomic writes.
import t from 'tap';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readJsonl, readJsonlFile, writeJsonl } from '../../lib/data/index.js';

const root = await mkdtemp(join(tmpdir(), 'rlhf-data-jsonl-'));
t.teardown(() => rm(root, { recursive: true, force: true }));
let counter = 0;
const file = async (text: string) => {
  const p = join(root, `f${counter++}.jsonl`);
  await writeFile(p, text);
  return p;
};

t.test('reads values with 1-based line numbers, skipping blank lines', async (t) => {
  const p = await file('{"a":1}\n\n  \n[1,2]\n"s"\nnull\n');
  t.same(await readJsonlFile(p), [
    { value: { a: 1 }, line: 1 },
    { value: [1, 2], line: 4 },
    { value: 's', line: 5 },
    { value: null, line: 6 },
  ]);
  const streamed: number[] = [];
  for await (const { line } of readJsonl(p)) streamed.push(line);
  t.same(streamed, [1, 4, 5, 6], 'the generator streams the same lines');
});

t.test('CRLF, no final newline, byte-order mark', async (t) => {
  t.same(await readJsonlFile('test/fixtures/data/crlf-no-final-newline.jsonl'), [
    { value: { prompt: 'a', completion: 'b' }, line: 1 },
    { value: { prompt: 'c', completion: 'd' }, line: 4 },
  ]);
  t.same(await readJsonlFile(await file('\uFEFF{"x":"ü"}\n')), [{ value: { x: 'ü' }, line: 1 }]);
  t.same(await readJsonlFile(await file('')), [], 'an empty file has no lines (the loaders reject it)');
});

t.test('malformed JSON names the file and line', async (t) => {
  const p = await file('{"ok":1}\n\n{"broken": }\n{"ok":2}\n');
  const err = await readJsonlFile(p).catch((e: unknown) => e);
  t.match(err, { name: 'RlhfError', code: 'ERR_RLHF_FORMAT', message: new RegExp(`^${p}:3: invalid JSON: .+`) });
  const seen: number[] = [];
  await t.rejects(
    (async () => {
      for await (const { line } of readJsonl(p)) seen.push(line);
    })(),
    { code: 'ERR_RLHF_FORMAT' },
  );
  t.same(seen, [1], 'lines before the bad one were yielded');
  await t.rejects(
    readJsonlFile(await file('{"a":1}{"b":2}\n')),
    { message: /:1: invalid JSON:/ },
    'two values on one line',
  );
});

t.test('invalid UTF-8 is a FORMAT error naming file, line and byte; nothing decodes to U+FFFD', async (t) => {
  const raw = async (bytes: number[] | Uint8Array) => {
    const p = join(root, `f${counter++}.jsonl`);
    await writeFile(p, Uint8Array.from(bytes));
    return p;
  };
  const enc = (s: string) => [...new TextEncoder().encode(s)];
  for (const [label, bad] of [
    ['a lone continuation byte', [0x80]],
    ['a truncated 2-byte sequence', [0xc3]],
    ['an overlong encoding', [0xc0, 0xaf]],
    ['a UTF-16 surrogate', [0xed, 0xa0, 0x80]],
    ['above U+10FFFF', [0xf4, 0x90, 0x80, 0x80]],
    ['0xff', [0xff]],
  ] as const) {
    const p = await raw([...enc('{"a":"ok"}\n\n{"a":"x'), ...bad, ...enc('y"}\n{"a":"z"}\n')]);
    await t.rejects(
      readJsonlFile(p),
      {
        name: 'RlhfError',
        code: 'ERR_RLHF_FORMAT',
        message: `${p}:3: invalid UTF-8 at byte 7 of the line (0x${bad[0].toString(16)}); the file must be UTF-8 text`,
      },
      label,
    );
  }
  // valid multi-byte text split across read chunks is fine: 64 KiB chunks, a 4-byte emoji on every boundary
  const line = JSON.stringify({ a: 'x'.repeat(65533) + '🌍'.repeat(20000) });
  const p = await raw(new TextEncoder().encode(`${line}\r\n${line}\r${line}\n`));
  t.same(
    (await readJsonlFile(p)).map((l) => l.line),
    [1, 2, 3],
    'CRLF and a lone CR end lines; characters across chunk boundaries decode',
  );
  t.same(
    await readJsonlFile(await raw([0x0d, 0x0a, 0x0d, ...enc('{"b":1}')])),
    [{ value: { b: 1 }, line: 3 }],
    'blank CRLF and CR lines are counted',
  );
});

t.test('unreadable files are IO errors naming the path', async (t) => {
  const missing = join(root, 'nope.jsonl');
  await t.rejects(readJsonlFile(missing), {
    name: 'RlhfError',
    code: 'ERR_RLHF_IO',
    message: `cannot read ${missing}: ENOENT: no such file or directory, open '${missing}'`,
  });
  await t.rejects(readJsonlFile(root), { code: 'ERR_RLHF_IO', message: new RegExp(`^cannot read ${root}: EISDIR`) });
  t.throws(() => readJsonl(''), {
    name: 'TypeError',
    message: 'readJsonl: expected path to be a non-empty string, received ""',
  });
});

t.test('writeJsonl: one compact JSON per line, trailing newline, atomic, round trip', async (t) => {
  const p = join(root, 'out.jsonl');
  const records = [{ prompt: 'a\nb', completion: 'ü "q"' }, [1, 2], 'x', null, 3.5];
  await writeJsonl(p, records);
  const text = await readFile(p, 'utf8');
  t.equal(text, '{"prompt":"a\\nb","completion":"ü \\"q\\""}\n[1,2]\n"x"\nnull\n3.5\n');
  t.same(
    (await readJsonlFile(p)).map((l) => l.value),
    records,
  );
  await writeJsonl(p, []);
  t.equal(await readFile(p, 'utf8'), '', 'no records: an empty file');
  t.same(
    (await readdir(root)).filter((n) => n.includes('.tmp-')),
    [],
    'no temporary files left',
  );
  t.throws(() => writeJsonl(p, [1, undefined]), {
    name: 'TypeError',
    message: 'writeJsonl: expected records[1] to be a JSON value, received undefined',
  });
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  t.throws(() => writeJsonl(p, [cyclic]), {
    name: 'TypeError',
    message: /^writeJsonl: cannot serialise records\[0\]: /,
  });
  t.throws(() => writeJsonl(p, 'x' as never), {
    name: 'TypeError',
    message: 'writeJsonl: expected records to be an array, received "x"',
  });
  await t.rejects(writeJsonl(join(root, 'no', 'dir.jsonl'), [1]), { code: 'ERR_RLHF_IO' });
});
