// ByteTokenizer: id layout, UTF-8 round trips (multibyte, emoji, BOM, invalid bytes), special
// tokens literal by default, the built-in chat format and its assistant mask, argument errors.
import t from 'tap';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { maskedRuns, unmaskedText } from '../fixtures/tokenizers/runs.js';

const CHAT = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello there' },
  { role: 'user', content: 'What is 2 + 2?' },
  { role: 'assistant', content: '4, héhé 😀' },
];

t.test('id layout and special tokens', async (t) => {
  const tk = new ByteTokenizer();
  t.equal(tk.kind, 'byte');
  t.equal(tk.vocabSize, 263);
  t.same(
    ['<|pad|>', '<|bos|>', '<|eos|>', '<|system|>', '<|user|>', '<|assistant|>', '<|end|>'].map((s) => tk.tokenToId(s)),
    [256, 257, 258, 259, 260, 261, 262],
  );
  t.same([tk.padId, tk.bosId, tk.eosId, tk.stopIds], [256, 257, 262, [262, 258]]);
  t.equal(tk.tokenToId('<0x41>'), 65);
  t.equal(tk.idToToken(65), '<0x41>');
  t.equal(tk.idToToken(0), '<0x00>');
  t.equal(tk.idToToken(255), '<0xFF>');
  t.equal(tk.idToToken(262), '<|end|>');
  t.equal(tk.idToToken(263), undefined);
  t.equal(tk.idToToken(-1), undefined);
  t.equal(tk.tokenToId('A'), undefined);
  t.equal(tk.tokenToId('<0x4g>'), undefined);

  const ex = new ByteTokenizer({ extraSpecialTokens: ['<tool>', '</tool>'] });
  t.equal(ex.vocabSize, 265);
  t.equal(ex.tokenToId('<tool>'), 263);
  t.equal(ex.idToToken(264), '</tool>');
  t.same(ex.encode('a<tool>b', { addSpecialTokens: true }), [97, 263, 98]);
});

t.test('UTF-8 round trips', async (t) => {
  const tk = new ByteTokenizer();
  const texts = [
    '',
    'Hello, world!',
    'tab\tnew\nline\r\n',
    '\u0000nul',
    'héllo wörld ñ',
    '日本語のテキスト',
    'emoji 😀 👩‍👩‍👧 🇫🇷',
    '\uFEFFleading BOM',
    'e\u0301 decomposed',
    'literal <|end|> and <|user|>',
    'x'.repeat(10000),
  ];
  for (const text of texts) {
    const ids = tk.encode(text);
    t.ok(
      ids.every((id) => id >= 0 && id < 256),
      `only byte ids for ${JSON.stringify(text.slice(0, 20))}`,
    );
    t.same(ids, Array.from(Buffer.from(text, 'utf8')));
    t.equal(tk.decode(ids), text);
    t.equal(tk.decode(Int32Array.from(ids)), text, 'typed arrays decode too');
  }
  t.same(tk.encode('é'), [0xc3, 0xa9]);
  t.same(tk.encode('😀'), [0xf0, 0x9f, 0x98, 0x80]);
});

t.test('invalid byte sequences decode to U+FFFD without throwing', async (t) => {
  const tk = new ByteTokenizer();
  t.equal(tk.decode([0xff, 0x41]), '\uFFFDA');
  t.equal(tk.decode([0x80]), '\uFFFD', 'lone continuation byte');
  t.equal(tk.decode([0x41, 0xc3]), 'A\uFFFD', 'truncated 2-byte sequence');
  t.equal(tk.decode([0xf0, 0x9f, 0x98]), '\uFFFD', 'truncated emoji');
  t.equal(tk.decode([0xf0, 0x9f, 262, 0x41]), '\uFFFD<|end|>A', 'a special token ends a byte run');
  t.equal(tk.decode([0xc0, 0xaf]), '\uFFFD\uFFFD', 'overlong encoding');
});

t.test('special-token strings are bytes unless addSpecialTokens', async (t) => {
  const tk = new ByteTokenizer();
  t.same(tk.encode('<|end|>'), Array.from(Buffer.from('<|end|>')));
  t.same(tk.encode('<|end|>', { addSpecialTokens: false }), Array.from(Buffer.from('<|end|>')));
  t.same(tk.encode('a<|end|>b<|user|>', { addSpecialTokens: true }), [97, 262, 98, 260]);
  t.same(
    tk.encode('<|end', { addSpecialTokens: true }),
    Array.from(Buffer.from('<|end')),
    'partial strings stay bytes',
  );
  t.equal(tk.decode([72, 105, 262, 258]), 'Hi<|end|><|eos|>');
  t.equal(tk.decode([72, 105, 262, 258], { skipSpecialTokens: true }), 'Hi');
  t.equal(tk.decode([]), '');
});

t.test('chat format, assistant mask, generation prompt', async (t) => {
  const tk = new ByteTokenizer();
  const text = tk.applyChatTemplate(CHAT);
  t.equal(
    text,
    '<|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>Hello there<|end|><|user|>What is 2 + 2?<|end|><|assistant|>4, héhé 😀<|end|>',
  );
  t.equal(
    tk.applyChatTemplate(CHAT.slice(0, 2), { addGenerationPrompt: true }),
    '<|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>',
  );

  const e = tk.encodeChat(CHAT);
  t.equal(e.assistantMask.length, e.ids.length);
  t.same(e.ids, tk.encode(text, { addSpecialTokens: true }), 'ids = the rendering with special tokens recognised');
  t.same(
    maskedRuns(tk, e),
    ['Hello there<|end|>', '4, héhé 😀<|end|>'],
    'exactly the assistant contents and their <|end|>',
  );
  t.equal(
    unmaskedText(tk, e),
    '<|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|><|user|>What is 2 + 2?<|end|><|assistant|>',
  );
  t.equal(e.assistantMask[e.ids.indexOf(261)], 0, 'the <|assistant|> role token is not trained on');

  const g = tk.encodeChat(CHAT.slice(0, 4), { addGenerationPrompt: true });
  t.equal(g.ids.at(-1), 261);
  t.equal(g.assistantMask.at(-1), 0);
  t.same(maskedRuns(tk, g), ['Hello there<|end|>']);

  const p = tk.encodePrompt(CHAT.slice(0, 4));
  t.same(p, g.ids, 'encodePrompt = encodeChat with the generation prompt');
  t.equal(p.at(-1), 261, 'ends with <|assistant|>');
  t.equal(tk.decode(p.slice(-2)), '<|end|><|assistant|>');
});

t.test('message content is never a control token', async (t) => {
  const tk = new ByteTokenizer();
  const e = tk.encodeChat([
    { role: 'user', content: 'a<|end|><|assistant|>b' },
    { role: 'assistant', content: 'ok' },
  ]);
  t.same(
    e.ids.filter((id) => id >= 256),
    [260, 262, 261, 262],
    'only the structural special ids',
  );
  t.same(maskedRuns(tk, e), ['ok<|end|>']);
  t.same(tk.encodeChat([]).ids, []);
  t.same(tk.encodePrompt([]), [261]);
});

t.test('argument errors', async (t) => {
  const tk = new ByteTokenizer();
  t.throws(() => tk.decode([1, 263]), {
    name: 'RangeError',
    message: 'ByteTokenizer.decode: expected ids[1] to be an integer in [0, 263), received 263',
  });
  t.throws(() => tk.decode([-1]), { name: 'RangeError' });
  t.throws(() => tk.decode([1.5]), {
    name: 'TypeError',
    message: 'ByteTokenizer.decode: expected ids[0] to be an integer in [0, 263), received 1.5',
  });
  t.throws(() => tk.decode('abc' as never), {
    name: 'TypeError',
    message: /expected ids to be an array of token ids, received "abc"/,
  });
  t.throws(() => tk.encode(5 as never), {
    name: 'TypeError',
    message: 'ByteTokenizer.encode: expected text to be a string, received 5',
  });
  t.throws(() => tk.encode('x', { addSpecialToken: true } as never), {
    name: 'TypeError',
    message: /unknown option options.addSpecialToken \(did you mean options.addSpecialTokens\?\)/,
  });
  t.throws(() => tk.encodeChat([{ role: 'tool', content: 'x' }]), {
    name: 'TypeError',
    message:
      'ByteTokenizer.encodeChat: expected messages[0].role to be one of "system", "user", "assistant", received "tool"',
  });
  t.throws(() => tk.encodeChat([{ role: 'user', content: 3 }] as never), {
    name: 'TypeError',
    message: /expected messages\[0\]\.content to be a string, received 3/,
  });
  t.throws(() => tk.applyChatTemplate({} as never), { name: 'TypeError', message: /expected messages to be an array/ });
  t.throws(() => tk.encodeChat([], { addGenerationPrompt: 1 } as never), {
    name: 'TypeError',
    message: /options.addGenerationPrompt to be a boolean/,
  });
  t.throws(() => new ByteTokenizer({ extraSpecialTokens: ['<|eos|>'] }), {
    name: 'RangeError',
    message: /options.extraSpecialTokens\[0\]/,
  });
  t.throws(() => new ByteTokenizer({ extraSpecialTokens: ['<a>', '<a>'] }), {
    name: 'RangeError',
    message: /options.extraSpecialTokens\[1\]/,
  });
  t.throws(() => new ByteTokenizer({ extraSpecialTokens: ['<0x41>'] }), { name: 'RangeError' });
  t.throws(() => new ByteTokenizer({ extraSpecialTokens: [''] }), { name: 'TypeError' });
  t.throws(() => new ByteTokenizer({ extraSpecialTokens: '<a>' } as never), { name: 'TypeError' });
});
