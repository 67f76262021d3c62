// loadTokenizer and save: byte and Hugging Face round trips through a directory (same ids, same
// masks, same special ids), chat_template.jinja, and errors that name the file.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ErrorCode } from '../../lib/errors.js';
import {
  ByteTokenizer,
  HfTokenizer,
  loadTokenizer,
  type ChatMessage,
  type Tokenizer,
} from '../../lib/tokenizer/index.js';
import { glm4Files, qwen2Files, writeFixture } from '../fixtures/tokenizers/build.js';

const CHAT: ChatMessage[] = [
  { role: 'user', content: 'Hi, how are you?' },
  { role: 'assistant', content: 'Fine, thanks. 😀' },
  { role: 'user', content: 'What is 2 + 2?' },
  { role: 'assistant', content: '4.' },
];

function sameBehaviour(t: Test, a: Tokenizer, b: Tokenizer) {
  t.equal(b.kind, a.kind);
  t.same(
    [b.vocabSize, b.bosId, b.eosId, b.stopIds, b.padId],
    [a.vocabSize, a.bosId, a.eosId, a.stopIds, a.padId],
    'special ids',
  );
  t.same(b.encodeChat(CHAT), a.encodeChat(CHAT), 'encodeChat ids and mask');
  t.same(b.encodePrompt(CHAT.slice(0, 3)), a.encodePrompt(CHAT.slice(0, 3)), 'prompt ids');
  t.same(b.encode('héllo 日本 <|x|>'), a.encode('héllo 日本 <|x|>'), 'plain ids');
}

t.test('byte tokenizer: save -> loadTokenizer', async (t) => {
  const dir = t.testdir();
  const tk = new ByteTokenizer({ extraSpecialTokens: ['<tool>', '</tool>'] });
  await tk.save(join(dir, 'ckpt'));
  const config = JSON.parse(await readFile(join(dir, 'ckpt', 'tokenizer_config.json'), 'utf8'));
  t.equal(config.tokenizer_class, 'RlhfByteTokenizer');
  t.same([config.bos_token, config.eos_token, config.pad_token], ['<|bos|>', '<|end|>', '<|pad|>']);
  t.same(config.additional_special_tokens, ['<tool>', '</tool>']);
  t.equal(config.added_tokens_decoder['264'].content, '</tool>');
  const back = await loadTokenizer(join(dir, 'ckpt'));
  t.ok(back instanceof ByteTokenizer);
  t.equal(back.tokenToId('</tool>'), 264);
  sameBehaviour(t, tk, back);
});

t.test('Hugging Face fixtures: load, save, load again', async (t) => {
  for (const [name, files] of [
    ['qwen2', qwen2Files()],
    ['glm4', glm4Files()],
  ] as const) {
    const dir = await writeFixture(join(t.testdir(), name), files);
    const tk = await loadTokenizer(dir);
    t.ok(tk instanceof HfTokenizer, `${name} is a Hugging Face tokenizer`);
    const direct = new HfTokenizer({
      tokenizer: files['tokenizer.json'],
      config: files['tokenizer_config.json'],
      generationConfig: (files as Record<string, unknown>)['generation_config.json'] as
        Record<string, unknown> | undefined,
    });
    sameBehaviour(t, direct, tk);
    const copy = join(dir, 'saved');
    await tk.save(copy);
    const back = await loadTokenizer(copy);
    sameBehaviour(t, tk, back);
  }
});

t.test('chat_template.jinja is used when tokenizer_config.json has no chat_template', async (t) => {
  const files = qwen2Files();
  const template = files['tokenizer_config.json'].chat_template;
  const config: Record<string, unknown> = { ...files['tokenizer_config.json'] };
  delete config.chat_template;
  const dir = await writeFixture(t.testdir(), {
    'tokenizer.json': files['tokenizer.json'],
    'tokenizer_config.json': config,
  });
  await writeFile(join(dir, 'chat_template.jinja'), template);
  const tk = await loadTokenizer(dir);
  t.match(tk.applyChatTemplate(CHAT), /^<\|im_start\|>system\n/);
  await tk.save(join(dir, 'out'));
  const saved = JSON.parse(await readFile(join(dir, 'out', 'tokenizer_config.json'), 'utf8'));
  t.equal(saved.chat_template, template, 'save inlines the template');
});

t.test('errors name the file', async (t) => {
  const root = t.testdir({
    empty: {},
    badjson: { 'tokenizer.json': '{"model": ', 'tokenizer_config.json': '{}' },
    array: { 'tokenizer.json': '[1, 2]' },
    badconfig: { 'tokenizer.json': JSON.stringify(qwen2Files()['tokenizer.json']), 'tokenizer_config.json': '{ nope' },
    badbyte: {
      'tokenizer_config.json': JSON.stringify({
        tokenizer_class: 'RlhfByteTokenizer',
        additional_special_tokens: ['<|eos|>'],
      }),
    },
  });
  const at = (d: string, f: string) => join(root, d, f).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  await t.rejects(loadTokenizer(join(root, 'missing')), {
    name: 'RlhfError',
    code: ErrorCode.IO,
    message: new RegExp(`^loadTokenizer: cannot read ${at('missing', 'tokenizer.json')}: no such file$`),
  });
  await t.rejects(loadTokenizer(join(root, 'empty')), {
    code: ErrorCode.IO,
    message: new RegExp(at('empty', 'tokenizer.json')),
  });
  await t.rejects(loadTokenizer(join(root, 'badjson')), {
    name: 'RlhfError',
    code: ErrorCode.FORMAT,
    message: new RegExp(`^loadTokenizer: ${at('badjson', 'tokenizer.json')} is not valid JSON \\(`),
  });
  await t.rejects(loadTokenizer(join(root, 'array')), {
    code: ErrorCode.FORMAT,
    message: `loadTokenizer: ${join(root, 'array', 'tokenizer.json')}: expected a JSON object, received array(2)`,
  });
  await t.rejects(loadTokenizer(join(root, 'badconfig')), {
    code: ErrorCode.FORMAT,
    message: new RegExp(`${at('badconfig', 'tokenizer_config.json')} is not valid JSON`),
  });
  await t.rejects(loadTokenizer(join(root, 'badbyte')), {
    code: ErrorCode.FORMAT,
    message: new RegExp(`${at('badbyte', 'tokenizer_config.json')}: bad additional_special_tokens`),
  });

  const q = qwen2Files();
  const cases: [string, Record<string, unknown>, Record<string, unknown>, string, RegExp][] = [
    [
      'nomodel',
      { ...q['tokenizer.json'], model: { type: 'Nope' } },
      q['tokenizer_config.json'],
      'tokenizer.json',
      /not a tokenizer @huggingface\/tokenizers can load \(Unknown TokenizerModel type: Nope\)/,
    ],
    [
      'eos',
      q['tokenizer.json'],
      { ...q['tokenizer_config.json'], eos_token: '<|missing|>' },
      'tokenizer_config.json',
      /eos_token "<\|missing\|>" is not in the vocabulary/,
    ],
    [
      'eostype',
      q['tokenizer.json'],
      { ...q['tokenizer_config.json'], eos_token: 5 },
      'tokenizer_config.json',
      /expected eos_token to be a string or an object with a string content, received 5/,
    ],
    [
      'template',
      q['tokenizer.json'],
      { ...q['tokenizer_config.json'], chat_template: '{% for %}' },
      'tokenizer_config.json',
      /chat_template does not parse/,
    ],
    [
      'added',
      { ...q['tokenizer.json'], added_tokens: {} },
      q['tokenizer_config.json'],
      'tokenizer.json',
      /expected added_tokens to be an array/,
    ],
  ];
  for (const [name, json, config, file, message] of cases) {
    const dir = await writeFixture(join(root, name), { 'tokenizer.json': json, 'tokenizer_config.json': config });
    const err = await loadTokenizer(dir).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    );
    t.equal(err?.name, 'RlhfError', name);
    t.equal(err?.code, ErrorCode.FORMAT, name);
    t.ok(err?.message.startsWith(`HfTokenizer: ${join(dir, file)}: `), `${name}: names ${file} (${err?.message})`);
    t.match(err?.message, message, name);
  }
  await t.rejects(loadTokenizer('' as never), {
    name: 'TypeError',
    message: 'loadTokenizer: expected dir to be a non-empty string, received ""',
  });
});
