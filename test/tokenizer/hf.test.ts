// HfTokenizer on the two hand-built fixtures (Qwen2-style ChatML, GLM-4-style): special ids,
// encode/decode, template rendering, assistant masks over multi-turn chats (exact masked tokens),
// both mask alignments, a Unigram (Metaspace) tokenizer, and the errors for templates that cannot be masked.
import t from 'tap';
import { ErrorCode, RlhfError } from '../../lib/errors.js';
import { HfTokenizer, type ChatMessage } from '../../lib/tokenizer/index.js';
import { renderWithSpans } from '../../lib/tokenizer/chat.js';
import { maskByBytes, maskBySegments, type TokenSpeller } from '../../lib/tokenizer/mask.js';
import { glm4Files, qwen2Files } from '../fixtures/tokenizers/build.js';
import { maskedRuns, unmaskedText } from '../fixtures/tokenizers/runs.js';

function qwen2(config: Record<string, unknown> = {}) {
  const f = qwen2Files();
  return new HfTokenizer({ tokenizer: f['tokenizer.json'], config: { ...f['tokenizer_config.json'], ...config } });
}
function glm4() {
  const f = glm4Files();
  return new HfTokenizer({
    tokenizer: f['tokenizer.json'],
    config: f['tokenizer_config.json'],
    generationConfig: f['generation_config.json'],
  });
}

const CHAT: ChatMessage[] = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello there' },
  { role: 'user', content: 'What is 2 + 2?' },
  { role: 'assistant', content: '2 + 2 = 4. 😀' },
];

t.test('special tokens: Qwen2 style', async (t) => {
  const tk = qwen2();
  const id = (s: string) => tk.tokenToId(s)!;
  t.equal(tk.kind, 'huggingface');
  t.equal(tk.vocabSize, id('<|im_end|>') + 1, 'the added tokens are the last ids');
  t.equal(tk.bosId, undefined, 'bos_token: null');
  t.equal(tk.eosId, id('<|im_end|>'));
  t.same(tk.stopIds, [id('<|im_end|>'), id('<|endoftext|>')]);
  t.equal(tk.padId, id('<|endoftext|>'));
  t.equal(tk.idToToken(tk.eosId), '<|im_end|>');
  t.equal(tk.idToToken(tk.vocabSize), undefined);
  t.equal(tk.tokenToId('Hello'), tk.encode('Hello')[0]);
});

t.test('special tokens: GLM-4 style (eos_token object, generation_config eos ids)', async (t) => {
  const tk = glm4();
  const id = (s: string) => tk.tokenToId(s)!;
  t.equal(tk.bosId, undefined);
  t.equal(tk.eosId, id('<|endoftext|>'));
  t.same(tk.stopIds, [id('<|endoftext|>'), id('<|user|>'), id('<|observation|>')]);
  t.equal(tk.padId, id('<|endoftext|>'));
});

t.test('encode/decode round trips', async (t) => {
  for (const tk of [qwen2(), glm4()]) {
    for (const text of [
      'Hello world, how are you?',
      '  two  spaces\n\nnewlines\ttabs',
      'héllo 日本語 😀 👩‍👩‍👧',
      '12345 + 678 = 999',
      '',
    ]) {
      t.equal(tk.decode(tk.encode(text)), text, JSON.stringify(text));
    }
    t.same(
      tk.encode('a<|endoftext|>b').filter((i) => i === tk.tokenToId('<|endoftext|>')).length,
      1,
      'special strings are recognised',
    );
    t.equal(tk.decode(tk.encode('x<|endoftext|>y'), { skipSpecialTokens: true }), 'xy');
    t.equal(tk.decode([]), '');
    const emoji = tk.encode('😀');
    t.equal(emoji.length, 4, 'one token per byte (no merges for it)');
    t.equal(tk.decode(emoji.slice(0, 2)), '\uFFFD', 'a partial UTF-8 sequence decodes to U+FFFD');
    t.throws(() => tk.decode([tk.vocabSize]), {
      name: 'RangeError',
      message: `HfTokenizer.decode: expected ids[0] to be an integer in [0, ${tk.vocabSize}), received ${tk.vocabSize}`,
    });
  }
  const q = qwen2();
  t.same(
    q.encode('Hello world').map((i) => q.idToToken(i)),
    ['Hello', 'Ġworld'],
  );
  t.same(q.encode('Hello', { addSpecialTokens: true }), q.encode('Hello'), 'Qwen2 adds nothing');
  const g = glm4();
  t.same(
    g.encode('Hi', { addSpecialTokens: true }).map((i) => g.idToToken(i)),
    ['[gMASK]', '<sop>', 'Hi'],
    'GLM-4 post-processor prefix',
  );
  t.same(
    g.encode('Hi').map((i) => g.idToToken(i)),
    ['Hi'],
    'not added by default',
  );
  t.same(
    g.encode('12345').map((i) => g.idToToken(i)),
    ['1', '2', '3', '4', '5'],
  );
});

t.test('Qwen2 ChatML: rendering and masks', async (t) => {
  const tk = qwen2();
  t.equal(
    tk.applyChatTemplate(CHAT.slice(1, 2), { addGenerationPrompt: true }),
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    'default system prompt and generation prompt',
  );
  const text = tk.applyChatTemplate(CHAT);
  t.equal(
    text,
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello there<|im_end|>\n' +
      '<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n2 + 2 = 4. 😀<|im_end|>\n',
  );
  const e = tk.encodeChat(CHAT);
  t.equal(e.ids.length, e.assistantMask.length);
  t.same(e.ids, tk.encode(text), 'ids = the rendering encoded');
  t.same(
    maskedRuns(tk, e),
    ['Hello there<|im_end|>', '2 + 2 = 4. 😀<|im_end|>'],
    'content + <|im_end|>, not the newline after it',
  );
  const firstTurn = e.ids
    .filter((_, i) => e.assistantMask[i])
    .slice(0, 3)
    .map((i) => tk.idToToken(i));
  t.same(firstTurn, ['Hello', 'Ġthere', '<|im_end|>'], 'exact masked tokens of the first turn');
  const rest = unmaskedText(tk, e);
  t.notMatch(rest, /Hello there|= 4/, 'no assistant content unmasked');
  t.match(rest, /You are a helpful assistant\.<\|im_end\|>\n<\|im_start\|>user\nHi<\|im_end\|>/);
  t.ok(rest.endsWith('<|im_start|>assistant\n\n'), 'the newline after <|im_end|> stays unmasked');

  const g = tk.encodeChat(CHAT.slice(0, 4), { addGenerationPrompt: true });
  t.same(maskedRuns(tk, g), ['Hello there<|im_end|>']);
  t.equal(g.assistantMask.at(-1), 0);
  const p = tk.encodePrompt(CHAT.slice(0, 4));
  t.same(p, g.ids);
  t.ok(
    tk.decode(p).endsWith('What is 2 + 2?<|im_end|>\n<|im_start|>assistant\n'),
    'prompt ends with the generation prompt',
  );
  t.same(
    p.slice(-3).map((i) => tk.idToToken(i)),
    ['<|im_start|>', 'assistant', 'Ċ'],
  );
});

t.test('GLM-4: rendering and masks (the next <|user|> ends a turn; nothing is appended)', async (t) => {
  const tk = glm4();
  const text = tk.applyChatTemplate(CHAT);
  t.equal(
    text,
    '[gMASK]<sop><|system|>\nYou are a helpful assistant.<|user|>\nHi<|assistant|>\nHello there<|user|>\nWhat is 2 + 2?<|assistant|>\n2 + 2 = 4. 😀',
  );
  const e = tk.encodeChat(CHAT);
  t.same(e.ids, tk.encode(text), 'exactly the rendered tokens: no eos the template does not render');
  t.same(
    maskedRuns(tk, e),
    ['\nHello there<|user|>', '\n2 + 2 = 4. 😀'],
    'the "\\n" the model writes after <|assistant|>, content, end marker when rendered',
  );
  t.same(
    e.ids
      .filter((_, i) => e.assistantMask[i])
      .slice(0, 4)
      .map((i) => tk.idToToken(i)),
    ['Ċ', 'Hello', 'Ġthere', '<|user|>'],
  );
  t.equal(
    unmaskedText(tk, e),
    '[gMASK]<sop><|system|>\nYou are a helpful assistant.<|user|>\nHi<|assistant|>\nWhat is 2 + 2?<|assistant|>',
  );

  const tool = tk.encodeChat([
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'call' },
    { role: 'observation', content: '42' },
    { role: 'assistant', content: 'It is 42' },
    { role: 'user', content: 'Thanks' },
  ]);
  t.same(
    maskedRuns(tk, tool),
    ['\ncall<|observation|>', '\nIt is 42<|user|>'],
    'an observation turn ends the assistant turn; no eos mid-text',
  );
  t.equal(tool.ids.at(-1), tk.encode('Thanks').at(-1));

  const p = tk.encodePrompt(CHAT.slice(0, 4));
  t.equal(tk.idToToken(p.at(-1)!), '<|assistant|>', 'prompt ends with the generation prompt');
  t.same(p, tk.encodeChat(CHAT.slice(0, 4), { addGenerationPrompt: true }).ids);
  t.same(
    p.slice(0, 2).map((i) => tk.idToToken(i)),
    ['[gMASK]', '<sop>'],
  );
});

/** The two alignments' masks for a conversation (reaching into HfTokenizer's private members). */
function alignments(tk: HfTokenizer, chat: ChatMessage[]) {
  const inner = tk as unknown as {
    core: { encode(s: string, o: object): { ids: number[]; tokens: string[] } };
    speller: TokenSpeller;
  };
  const markers = tk.stopIds.map((i) => tk.idToToken(i)!);
  const render = (m: ChatMessage[], g: boolean) => tk.applyChatTemplate(m, { addGenerationPrompt: g });
  const { text, spans } = renderWithSpans('test', chat, false, render, markers);
  const whole = inner.core.encode(text, { add_special_tokens: false });
  return {
    bytes: maskByBytes(text, whole.tokens, spans, inner.speller),
    segments: maskBySegments(text, whole.ids, spans, (s) => inner.core.encode(s, { add_special_tokens: false }).ids),
  };
}

t.test("both alignments agree on both fixtures; each covers the other's failure", async (t) => {
  for (const [name, tk] of [
    ['qwen2', qwen2()],
    ['glm4', glm4()],
  ] as const) {
    const { bytes, segments } = alignments(tk, CHAT);
    t.ok(bytes && segments, `${name}: both align`);
    t.same(bytes, segments, `${name}: same mask`);
  }
  const tk = qwen2();
  // content starting with "\n": the template's "assistant\n" and it merge into one "ĊĊ" token, which
  // segment encoding cannot reproduce; byte alignment masks the straddling token (it holds content).
  const nlChat = [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: '\nHello' },
  ];
  t.equal(alignments(tk, nlChat).segments, undefined, 'segments cannot align a token across the span start');
  const nl = tk.encodeChat(nlChat);
  t.same(
    nl.ids,
    tk.encode(
      tk.applyChatTemplate([
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: '\nHello' },
      ]),
    ),
  );
  const masked = nl.ids.filter((_, i) => nl.assistantMask[i]).map((i) => tk.idToToken(i));
  t.same(masked, ['ĊĊ', 'Hello', '<|im_end|>']);
  // decomposed "é" is changed by the NFC normalizer: bytes cannot align, segments can
  const nfdChat = [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Cafe\u0301 you' },
  ];
  t.equal(alignments(tk, nfdChat).bytes, undefined, 'bytes cannot align a normalised text');
  const nfd = tk.encodeChat(nfdChat);
  t.same(maskedRuns(tk, nfd), ['Café you<|im_end|>']);
  // both at once: neither alignment is exact, so it refuses rather than guess
  t.throws(
    () =>
      tk.encodeChat([
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: '\nCafe\u0301' },
      ]),
    {
      name: 'RlhfError',
      code: ErrorCode.UNSUPPORTED,
      message:
        'HfTokenizer.encodeChat: the chat template cannot be masked: its assistant turns do not start and end on token boundaries',
    },
  );
});

t.test(
  'templates whose prefixes render differently are masked from the whole rendering; template errors; no template',
  async (t) => {
    // the separator depends on what follows and the generation prompt is not part of the turn:
    // rendering prefixes cannot locate the turn, comparing whole renderings can
    const inconsistent = qwen2({
      chat_template:
        "{% for m in messages %}{{ m.role + ':' + m.content }}{% if not loop.last %}|{% endif %}{% endfor %}{% if add_generation_prompt %}>{% endif %}",
    });
    const chat = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'you' },
    ];
    t.equal(
      inconsistent.applyChatTemplate(chat),
      'user:Hi|assistant:Hello|user:Hi|assistant:you',
      'rendering itself works',
    );
    const m = inconsistent.encodeChat(chat);
    t.same(m.ids, inconsistent.encode('user:Hi|assistant:Hello|user:Hi|assistant:you'), 'exactly the rendered tokens');
    t.same(maskedRuns(inconsistent, m), ['Hello', 'you'], 'each assistant content, nothing else');
    t.same(
      inconsistent.encodeChat([{ role: 'user', content: 'Hi' }]).assistantMask,
      new Uint8Array(inconsistent.encode('user:Hi').length),
      'no assistant turn: nothing masked',
    );
    t.throws(
      () =>
        inconsistent.encodeChat([
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'a\uE000b' },
        ]),
      {
        name: 'RlhfError',
        code: ErrorCode.UNSUPPORTED,
        message:
          'HfTokenizer.encodeChat: messages[1].content holds a private-use character (U+E000..U+E005) that assistant masking reserves',
      },
    );

    const strict = qwen2({
      chat_template:
        "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools here') }}{% endif %}{{ m.content }}{% endfor %}",
    });
    t.throws(() => strict.applyChatTemplate([{ role: 'tool', content: 'x' }]), {
      name: 'RlhfError',
      code: ErrorCode.INVALID_ARGUMENT,
      message: /^HfTokenizer\.applyChatTemplate: the chat template failed to render the messages: .*no tools here/,
    });
    const none = qwen2({ chat_template: undefined });
    t.throws(() => none.encodePrompt(chat), {
      name: 'RlhfError',
      code: ErrorCode.UNSUPPORTED,
      message: 'HfTokenizer.encodePrompt: this tokenizer has no chat_template',
    });
    t.ok(new RlhfError(ErrorCode.UNSUPPORTED, 'x') instanceof Error);

    const tk = qwen2();
    t.throws(() => tk.encodeChat([{ role: 'user' }] as never), {
      name: 'TypeError',
      message: 'HfTokenizer.encodeChat: expected messages[0].content to be a string, received undefined',
    });
    t.throws(() => tk.encode('x', { addSpecialTokens: 'yes' } as never), {
      name: 'TypeError',
      message: 'HfTokenizer.encode: expected options.addSpecialTokens to be a boolean, received "yes"',
    });
  },
);

t.test('Unigram (SentencePiece, Metaspace ▁ prepended per section): masks align', async (t) => {
  const pieces = [
    '▁Hello',
    '▁there',
    '▁Hi',
    '▁how',
    '▁are',
    '▁you',
    '?',
    '▁',
    ...'abcdefghijklmnopqrstuvwxyzHT'.split(''),
  ];
  const vocab: [string, number][] = [
    ['<unk>', 0],
    ...pieces.map((p, i): [string, number] => [p, p.length > 2 ? -1 - i / 100 : -8]),
  ];
  const specials = ['<s>', '</s>', '<|user|>', '<|assistant|>'];
  const added = specials.map((content, i) => ({
    id: vocab.length + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    post_processor: null,
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
    model: { type: 'Unigram', unk_id: 0, vocab, byte_fallback: false },
  };
  const template =
    "{% for m in messages %}{{ '<|' + m.role + '|>' + m.content + '</s>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";
  const tk = new HfTokenizer({
    tokenizer,
    config: { eos_token: '</s>', bos_token: '<s>', unk_token: '<unk>', chat_template: template },
  });
  const chat = [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello there' },
    { role: 'user', content: 'how are you?' },
    { role: 'assistant', content: 'Hi' },
  ];
  const text = tk.applyChatTemplate(chat);
  t.equal(text, '<|user|>Hi</s><|assistant|>Hello there</s><|user|>how are you?</s><|assistant|>Hi</s>');
  const e = tk.encodeChat(chat);
  t.same(e.ids, tk.encode(text));
  const tokens = e.ids.map((id) => tk.idToToken(id));
  t.same(
    tokens.filter((_, i) => e.assistantMask[i]),
    ['▁Hello', '▁there', '</s>', '▁Hi', '</s>'],
    'the ▁ the pre-tokenizer inserts is inside the first content token',
  );
  t.same(
    tokens.filter((_, i) => !e.assistantMask[i]),
    ['<|user|>', '▁Hi', '</s>', '<|assistant|>', '<|user|>', '▁how', '▁are', '▁you', '?', '</s>', '<|assistant|>'],
  );
  const { maskByBytes } = await import('../../lib/tokenizer/mask.js');
  const inner = tk as unknown as { speller: TokenSpeller };
  t.equal(inner.speller.kind, 'metaspace');
  t.ok(
    maskByBytes(text, tokens as string[], [{ start: 0, end: 1 }], inner.speller),
    'the byte alignment (not the segment fallback) aligns it',
  );
});
