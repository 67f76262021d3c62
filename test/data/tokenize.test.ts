// Tokenization with loss masks, on the ByteTokenizer (ids are UTF-8 bytes; <|user|> 260,
// <|assistant|> 261, <|end|> 262 = eos): prompt tokens untrained, completion + eos trained,
// chat: only assistant spans; lossMask[0] is always 0; truncation keeps the start.
import t from 'tap';
import { ByteTokenizer, HfTokenizer } from '../../lib/tokenizer/index.js';
import { glm4Files, qwen2Files } from '../fixtures/tokenizers/build.js';
import { encodePrompt, tokenizePromptResponse, tokenizeSft, type SftRecord } from '../../lib/data/index.js';

const tok = new ByteTokenizer();
const U = 260,
  A = 261,
  END = 262;
const bytes = (s: string) => Array.from(Buffer.from(s, 'utf8'));
const arr = (a: ArrayLike<number>) => Array.from(a);

t.test('{prompt, completion}: encode(prompt) ++ encode(completion) ++ [eos], loss on completion + eos', async (t) => {
  const ex = tokenizeSft(tok, { kind: 'completion', prompt: 'Q:', completion: 'Hé' });
  t.ok(ex.ids instanceof Int32Array && ex.lossMask instanceof Uint8Array);
  t.same(arr(ex.ids), [81, 58, 72, 0xc3, 0xa9, END]);
  t.same(arr(ex.lossMask), [0, 0, 1, 1, 1, 1]);
  t.equal(ex.truncated, false);

  const noPrompt = tokenizeSft(tok, { kind: 'completion', prompt: '', completion: 'ab' });
  t.same(arr(noPrompt.ids), [97, 98, END]);
  t.same(arr(noPrompt.lossMask), [0, 1, 1], 'lossMask[0] is 0 even when the completion starts the sequence');

  const special = tokenizeSft(tok, { kind: 'completion', prompt: '<|end|>', completion: '' });
  t.same(arr(special.ids), [...bytes('<|end|>'), END], 'special-token strings in data are plain text');
  t.same(arr(special.lossMask), [0, 0, 0, 0, 0, 0, 0, 1], 'an empty completion still trains the eos');
});

t.test('{messages}: loss exactly on the assistant spans (content + <|end|>)', async (t) => {
  const rec: SftRecord = {
    kind: 'messages',
    messages: [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Yo' },
      { role: 'user', content: 'x' },
      { role: 'assistant', content: 'z' },
    ],
  };
  const ex = tokenizeSft(tok, rec);
  t.same(arr(ex.ids), [U, 72, 105, END, A, 89, 111, END, U, 120, END, A, 122, END]);
  t.same(arr(ex.lossMask), [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1]);
  t.equal(ex.truncated, false);
});

t.test('truncation keeps the start and reports it', async (t) => {
  const rec: SftRecord = { kind: 'completion', prompt: 'ab', completion: 'cd' };
  const cut = tokenizeSft(tok, rec, { maxLength: 3 });
  t.same(arr(cut.ids), [97, 98, 99]);
  t.same(arr(cut.lossMask), [0, 0, 1]);
  t.equal(cut.truncated, true);
  const exact = tokenizeSft(tok, rec, { maxLength: 5 });
  t.equal(exact.ids.length, 5);
  t.equal(exact.truncated, false, 'exactly maxLength is not truncated');
  const chat = tokenizeSft(
    tok,
    {
      kind: 'messages',
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Yo' },
      ],
    },
    { maxLength: 6 },
  );
  t.same(arr(chat.ids), [U, 72, 105, END, A, 89]);
  t.same(arr(chat.lossMask), [0, 0, 0, 0, 0, 1]);
  t.equal(chat.truncated, true);
});

t.test('encodePrompt: text without eos, conversations with the generation prompt', async (t) => {
  t.same(encodePrompt(tok, 'Hi'), [72, 105]);
  t.same(encodePrompt(tok, [{ role: 'user', content: 'Hi' }]), [U, 72, 105, END, A]);
  t.throws(() => encodePrompt(tok, 5 as never), {
    name: 'TypeError',
    message: 'encodePrompt: expected prompt to be a string or a list of messages, received 5',
  });
});

t.test('tokenizePromptResponse: loss on the response (+ eos), promptLength', async (t) => {
  const chat = tokenizePromptResponse(tok, [{ role: 'user', content: 'Hi' }], 'Yo');
  t.same(arr(chat.ids), [U, 72, 105, END, A, 89, 111, END]);
  t.same(arr(chat.lossMask), [0, 0, 0, 0, 0, 1, 1, 1]);
  t.equal(chat.promptLength, 5);
  t.equal(chat.truncated, false);

  const noEos = tokenizePromptResponse(tok, 'Q', 'ab', { addEos: false });
  t.same(arr(noEos.ids), [81, 97, 98]);
  t.same(arr(noEos.lossMask), [0, 1, 1]);
  t.equal(noEos.promptLength, 1);

  const cut = tokenizePromptResponse(tok, 'Q', 'abc', { maxLength: 3 });
  t.same([arr(cut.ids), arr(cut.lossMask), cut.promptLength, cut.truncated], [[81, 97, 98], [0, 1, 1], 1, true]);
  const intoPrompt = tokenizePromptResponse(tok, 'Question', 'a', { maxLength: 3 });
  t.same(
    [arr(intoPrompt.ids), arr(intoPrompt.lossMask), intoPrompt.promptLength],
    [[81, 117, 101], [0, 0, 0], 3],
    'promptLength counts prompt tokens kept',
  );
});

t.test('Hugging Face tokenizers: the trained tokens decode to the response and its end of turn', async (t) => {
  const q = qwen2Files();
  const g = glm4Files();
  const toks = {
    qwen2: new HfTokenizer({ tokenizer: q['tokenizer.json'], config: q['tokenizer_config.json'] }),
    glm4: new HfTokenizer({
      tokenizer: g['tokenizer.json'],
      config: g['tokenizer_config.json'],
      generationConfig: g['generation_config.json'],
    }),
  };
  const trained = (hf: HfTokenizer, e: { ids: Int32Array; lossMask: Uint8Array }) =>
    hf.decode(arr(e.ids).filter((_, i) => e.lossMask[i]));
  for (const [name, hf] of Object.entries(toks)) {
    const eos = hf.decode([hf.eosId]);
    const chat = tokenizeSft(hf, {
      kind: 'messages',
      messages: [
        { role: 'user', content: 'Hi there' },
        { role: 'assistant', content: 'Hello world' },
      ],
    });
    // the chat template decides: ChatML renders <|im_end|> after the turn; GLM-4 renders nothing
    // after a final assistant turn (the next <|user|> would end it), and nothing is added
    const rendered = name === 'glm4' ? '' : eos;
    t.equal(
      trained(hf, chat).trim(),
      'Hello world' + rendered,
      `${name}: messages (the assistant span and its end-of-turn marker when rendered)`,
    );
    const pr = tokenizePromptResponse(hf, [{ role: 'user', content: 'Hi there' }], 'Hello world');
    t.same(
      arr(pr.ids.subarray(0, pr.promptLength)),
      encodePrompt(hf, [{ role: 'user', content: 'Hi there' }]),
      `${name}: prompt first`,
    );
    // the final turn as the template renders it (GLM-4's newline after <|assistant|> is the model's
    // to generate), closed with eos where the template renders no end-of-turn marker
    const lead = name === 'glm4' ? '\n' : '';
    t.equal(trained(hf, pr), lead + 'Hello world' + eos, `${name}: prompt + response`);
    const c = tokenizeSft(hf, { kind: 'completion', prompt: 'What is 2 + 2?', completion: ' 4' });
    t.equal(trained(hf, c), ' 4' + eos, `${name}: completion`);
  }
});

t.test('argument errors', async (t) => {
  const rec: SftRecord = { kind: 'completion', prompt: 'a', completion: 'b' };
  t.throws(() => tokenizeSft(tok, rec, { maxLength: 0 }), {
    name: 'RangeError',
    message: 'tokenizeSft: expected options.maxLength to be an integer >= 1, received 0',
  });
  t.throws(() => tokenizeSft(tok, rec, { maxLenght: 4 } as never), {
    name: 'TypeError',
    message: /unknown option options.maxLenght \(did you mean options.maxLength\?\)/,
  });
  t.throws(() => tokenizeSft(tok, { kind: 'text' } as never), {
    name: 'TypeError',
    message: /expected rec.kind to be "completion" or "messages"/,
  });
  t.throws(() => tokenizeSft({} as never, rec), {
    name: 'TypeError',
    message: 'tokenizeSft: expected tok to be a Tokenizer, received an object (Object)',
  });
  t.throws(() => tokenizePromptResponse(tok, 'p', 3 as never), {
    name: 'TypeError',
    message: 'tokenizePromptResponse: expected response to be a string, received 3',
  });
  t.throws(() => tokenizePromptResponse(tok, 'p', 'r', { addEos: 1 } as never), {
    name: 'TypeError',
    message: 'tokenizePromptResponse: expected options.addEos to be a boolean, received 1',
  });
});
