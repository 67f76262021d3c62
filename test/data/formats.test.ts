// TRL record formats: {prompt, completion}, {messages}, conversational prompt-completion,
// {prompt, chosen, rejected} incl. the conversational and implicit-prompt forms, {prompt, responses,
// scores}, unpaired {prompt, completion, label}, prompt-only records with extra keys kept; errors name file:line, field, expectation.
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  loadPreferenceFile,
  loadPromptFile,
  loadScoredFile,
  loadSftFile,
  loadUnpairedFile,
  parsePreferenceRecord,
  parsePromptRecord,
  parseScoredRecord,
  parseSftRecord,
  parseUnpairedRecord,
} from '../../lib/data/index.js';

const root = await mkdtemp(join(tmpdir(), 'rlhf-data-formats-'));
t.teardown(() => rm(root, { recursive: true, force: true }));
let counter = 0;
const file = async (lines: unknown[]) => {
  const p = join(root, `f${counter++}.jsonl`);
  await writeFile(p, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return p;
};
const W = 'data/train.jsonl:12';
const user = (content: string) => ({ role: 'user', content });
const asst = (content: string) => ({ role: 'assistant', content });
const fmt = (message: string | RegExp) => ({ name: 'RlhfError', code: 'ERR_RLHF_FORMAT', message });

t.test('SFT records from a file', async (t) => {
  t.same(await loadSftFile('test/fixtures/data/sft.jsonl'), [
    { kind: 'completion', prompt: 'What is 2 + 2?', completion: ' 4' },
    { kind: 'messages', messages: [{ role: 'system', content: 'Be brief.' }, user('Hi'), asst('Hello')] },
    { kind: 'messages', messages: [user('Capital of France?'), asst('Paris')] },
  ]);
});

t.test('SFT record checks', async (t) => {
  t.same(
    parseSftRecord({ prompt: '', completion: 'x', extra: 1 }, W),
    { kind: 'completion', prompt: '', completion: 'x' },
    'extra keys allowed, empty strings allowed',
  );
  t.same(
    parseSftRecord({ prompt: [user('q')], completion: 'a' }, W),
    { kind: 'messages', messages: [user('q'), asst('a')] },
    'string completion after a message prompt',
  );
  t.same(parseSftRecord({ messages: [{ role: 'user', content: 'q', name: 'bob' }, asst('a')] }, W).kind, 'messages');
  t.throws(
    () => parseSftRecord({ prompt: 'p', completion: 3 }, W),
    fmt(`${W}: expected "completion" to be a string ({prompt, completion} record), got number`),
  );
  t.throws(
    () => parseSftRecord({ prompt: 'p' }, W),
    fmt(`${W}: expected "completion" to be a string ({prompt, completion} record), got nothing (the key is missing)`),
  );
  t.throws(
    () => parseSftRecord({ completion: 'c', prompt: null }, W),
    fmt(`${W}: expected "prompt" to be a string ({prompt, completion} record), got null`),
  );
  t.throws(
    () => parseSftRecord([1], W),
    fmt(`${W}: expected a JSON object ({prompt, completion} or {messages} record), got array`),
  );
  t.throws(
    () => parseSftRecord({ text: 'x', id: 1 }, W),
    fmt(`${W}: expected a {prompt, completion} or {messages} record, got an object with keys "text", "id"`),
  );
  t.throws(
    () => parseSftRecord({ messages: [] }, W),
    fmt(
      `${W}: expected "messages" to be a non-empty list of {role, content} messages ({messages} record), got an empty array`,
    ),
  );
  t.throws(
    () => parseSftRecord({ messages: [user('a'), { role: '', content: 'b' }] }, W),
    fmt(`${W}: expected "messages[1].role" to be a non-empty string ({messages} record), got an empty string`),
  );
  t.throws(
    () => parseSftRecord({ messages: [user('a'), { role: 'assistant', content: null }] }, W),
    fmt(`${W}: expected "messages[1].content" to be a string ({messages} record), got null`),
  );
  t.throws(
    () => parseSftRecord({ messages: [user('a'), { role: 'assitant', content: 'b' }] }, W),
    fmt(
      `${W}: expected "messages[1].role" to be one of system, developer, user, assistant, tool, ipython, function, observation ({messages} record), got "assitant" (did you mean "assistant"?)`,
    ),
  );
  t.throws(
    () => parsePreferenceRecord({ prompt: [{ role: 'usr', content: 'q' }], chosen: 'a', rejected: 'b' }, W),
    fmt(/"prompt\[0\]\.role" to be one of .* got "usr" \(did you mean "user"\?\)/),
  );
  t.throws(
    () => parseSftRecord({ prompt: 'a\ud800b', completion: 'c' }, W),
    fmt(
      `${W}: expected "prompt" to be well-formed text ({prompt, completion} record), got a lone surrogate \\ud800 at index 1`,
    ),
  );
  t.throws(
    () => parseSftRecord({ messages: [user('a'), asst('\udfff')] }, W),
    fmt(/"messages\[1\]\.content" to be well-formed text/),
  );
  t.same(
    parseSftRecord({ prompt: '🌍', completion: 'x' }, W),
    { kind: 'completion', prompt: '🌍', completion: 'x' },
    'paired surrogates are fine',
  );
  t.throws(
    () => parseSftRecord({ messages: ['hi'] }, W),
    fmt(`${W}: expected "messages[0]" to be a {role, content} message object ({messages} record), got string`),
  );
  t.throws(
    () => parseSftRecord({ messages: [user('a')] }, W),
    fmt(
      `${W}: expected "messages" to contain an assistant message, the text trained on ({messages} record), got roles user`,
    ),
  );
  t.throws(
    () => parseSftRecord({ prompt: [user('a'), asst('b'), user('c')], completion: 'd' }, W),
    fmt(
      /expected "prompt" to have no assistant message \(conversational \{prompt, completion\} record; use \{messages\} to train on every assistant turn\), got one at prompt\[1\]/,
    ),
  );
});

t.test('preference records: plain, conversational, implicit prompt', async (t) => {
  const hi = [user('Say hi')];
  t.same(await loadPreferenceFile('test/fixtures/data/preference.jsonl'), [
    { prompt: 'Say hi', chosen: 'Hi!', rejected: 'No.', margin: 1.5 },
    { prompt: hi, chosen: 'Hi!', rejected: 'No.' },
    { prompt: hi, chosen: 'Hi!', rejected: 'No.' },
  ]);
  // multi-turn context in chosen/rejected continues a message prompt
  const sys = { role: 'system', content: 'S' };
  t.same(
    parsePreferenceRecord({ prompt: [sys], chosen: [user('q'), asst('good')], rejected: [user('q'), asst('bad')] }, W),
    { prompt: [sys, user('q')], chosen: 'good', rejected: 'bad' },
  );
  t.same(
    parsePreferenceRecord({ prompt: 'p', chosen: [asst('a')], rejected: 'b' }, W),
    { prompt: 'p', chosen: 'a', rejected: 'b' },
    'a one-message list mixes with a string',
  );
  const P = '{prompt, chosen, rejected}';
  t.throws(
    () => parsePreferenceRecord({ prompt: 'p', chosen: 'a' }, W),
    fmt(
      `${W}: expected "rejected" to be a string or a list of messages ending with the assistant reply (${P} record), got nothing (the key is missing)`,
    ),
  );
  t.throws(
    () => parsePreferenceRecord({ chosen: 'a', rejected: 'b' }, W),
    fmt(
      `${W}: expected "prompt" to be a string or a non-empty list of {role, content} messages (${P} record), got nothing (the key is missing)`,
    ),
  );
  t.throws(
    () => parsePreferenceRecord({ prompt: 'p', chosen: [user('a')], rejected: 'b' }, W),
    fmt(`${W}: expected the last message of "chosen" to be the assistant reply (${P} record), got role "user"`),
  );
  t.throws(
    () => parsePreferenceRecord({ chosen: [user('q'), asst('a')], rejected: [user('Q'), asst('b')] }, W),
    fmt(`${W}: expected "chosen" and "rejected" to have the same messages before the assistant reply (${P} record)`),
  );
  t.throws(
    () => parsePreferenceRecord({ prompt: 'p', chosen: [user('q'), asst('a')], rejected: [user('q'), asst('b')] }, W),
    fmt(/"prompt" is a string but "chosen" continues a conversation/),
  );
  t.throws(
    () => parsePreferenceRecord({ prompt: 'p', chosen: 'a', rejected: 'b', margin: '1' }, W),
    fmt(`${W}: expected "margin" to be a finite number (${P} record), got string`),
  );
  t.throws(
    () => parsePreferenceRecord({ prompt: [], chosen: 'a', rejected: 'b' }, W),
    fmt(/expected "prompt" to be a string or a non-empty list .* got an empty array/),
  );
});

t.test('scored records', async (t) => {
  t.same(await loadScoredFile('test/fixtures/data/scored.jsonl'), [
    { prompt: 'Pick a number', responses: ['1', '2', '3'], scores: [0.5, -1, 2] },
  ]);
  t.same(
    parseScoredRecord(
      {
        responses: [
          [user('q'), asst('a')],
          [user('q'), asst('b')],
        ],
        scores: [1, 0],
      },
      W,
    ),
    { prompt: [user('q')], responses: ['a', 'b'], scores: [1, 0] },
    'conversational responses share their context',
  );
  const S = '{prompt, responses, scores}';
  t.throws(
    () => parseScoredRecord({ prompt: 'p', responses: ['a'], scores: [1] }, W),
    fmt(`${W}: expected "responses" to be a list of at least 2 responses (${S} record), got array`),
  );
  t.throws(
    () => parseScoredRecord({ prompt: 'p', responses: ['a', 'b'], scores: [1] }, W),
    fmt(`${W}: expected "scores" to have 2 entries, one per response (${S} record), got 1`),
  );
  t.throws(
    () => parseScoredRecord({ prompt: 'p', responses: ['a', 'b'], scores: [1, null] }, W),
    fmt(`${W}: expected "scores[1]" to be a finite number (${S} record), got null`),
  );
  t.throws(
    () => parseScoredRecord({ prompt: 'p', responses: ['a', 2], scores: [1, 2] }, W),
    fmt(/expected "responses\[1\]" to be a string or a list of messages/),
  );
  t.throws(
    () => parseScoredRecord({ prompt: 'p', responses: ['a', 'b'], scores: 'x' }, W),
    fmt(`${W}: expected "scores" to be a list of numbers (${S} record), got string`),
  );
});

t.test('prompt records keep their extra fields', async (t) => {
  t.same(await loadPromptFile('test/fixtures/data/prompts.jsonl'), [
    { prompt: 'What is 6 * 7?', answer: '42' },
    { prompt: [user('Hello')], tags: ['greeting'], meta: { lang: 'en' } },
  ]);
  t.throws(
    () => parsePromptRecord({ question: 'x' }, W),
    fmt(
      `${W}: expected "prompt" to be a string or a non-empty list of {role, content} messages ({prompt} record), got nothing (the key is missing)`,
    ),
  );
  t.throws(() => parsePromptRecord('x', W), fmt(`${W}: expected a JSON object ({prompt} record), got string`));
});

t.test('loaders: file:line in errors, empty files, missing files', async (t) => {
  const p = await file([{ prompt: 'a', completion: 'b' }, '', { prompt: 'c', completion: 7 }]);
  await t.rejects(
    loadSftFile(p),
    fmt(`${p}:3: expected "completion" to be a string ({prompt, completion} record), got number`),
  );
  const typo = await file([
    { messages: [user('q'), asst('a')] },
    { messages: [user('q'), { role: 'assitant', content: 'a' }] },
  ]);
  await t.rejects(
    loadSftFile(typo),
    fmt(
      new RegExp(
        `^${typo}:2: expected "messages\\[1\\]\\.role" to be one of .*got "assitant" \\(did you mean "assistant"\\?\\)$`,
      ),
    ),
    'a typo in a role is caught when the file is read, with file:line and the field',
  );
  const bad = await file(['{"prompt": "a", "chosen": "b", "rejected": "c"}', '{"prompt": "a",']);
  await t.rejects(loadPreferenceFile(bad), fmt(new RegExp(`^${bad}:2: invalid JSON: `)));
  const empty = join(root, 'empty.jsonl');
  await writeFile(empty, '\n\n');
  const loaders: Array<(path: string) => Promise<unknown[]>> = [
    loadSftFile,
    loadPreferenceFile,
    loadScoredFile,
    loadPromptFile,
  ];
  for (const load of loaders)
    await t.rejects(load(empty), fmt(`${empty}: no records (the file is empty or has only blank lines)`), load.name);
  await t.rejects(loadPromptFile(join(root, 'missing.jsonl')), {
    code: 'ERR_RLHF_IO',
    message: /^cannot read .*missing\.jsonl: ENOENT/,
  });
});

t.test('unpaired {prompt, completion, label} records (KTO)', async (t) => {
  const U = '{prompt, completion, label} record';
  t.same(parseUnpairedRecord({ prompt: 'q', completion: 'a', label: false, extra: 1 }, W), {
    prompt: 'q',
    completion: 'a',
    label: false,
  });
  t.same(
    parseUnpairedRecord({ prompt: [user('q')], completion: [asst('a')], label: true }, W),
    { prompt: [user('q')], completion: 'a', label: true },
    'conversational: the reply is the completion',
  );
  t.same(
    parseUnpairedRecord({ completion: [user('q'), asst('a'), user('r'), asst('b')], label: true }, W),
    { prompt: [user('q'), asst('a'), user('r')], completion: 'b', label: true },
    'implicit prompt: the messages before the reply',
  );
  t.throws(
    () => parseUnpairedRecord({ prompt: 'q', completion: 'a', label: 'true' }, W),
    fmt(`${W}: expected "label" to be true (desirable) or false (undesirable) (${U}), got string`),
  );
  t.throws(
    () => parseUnpairedRecord({ prompt: 'q', completion: 'a', label: 1 }, W),
    fmt(`${W}: expected "label" to be true (desirable) or false (undesirable) (${U}), got number`),
  );
  t.throws(
    () => parseUnpairedRecord({ prompt: 'q', completion: 'a' }, W),
    fmt(
      `${W}: expected "label" to be true (desirable) or false (undesirable) (${U}), got nothing (the key is missing)`,
    ),
  );
  t.throws(
    () => parseUnpairedRecord({ prompt: 'q', completion: [user('a')], label: true }, W),
    fmt(`${W}: expected the last message of "completion" to be the assistant reply (${U}), got role "user"`),
  );
  t.throws(
    () => parseUnpairedRecord({ prompt: 7, completion: 'a', label: true }, W),
    fmt(/expected "prompt" to be a string or a non-empty list/),
  );
  const good = { prompt: 'q', completion: 'a', label: true };
  const p = await file([good, '', { prompt: 'q', completion: 'b', label: null }]);
  await t.rejects(
    loadUnpairedFile(p),
    fmt(`${p}:3: expected "label" to be true (desirable) or false (undesirable) (${U}), got null`),
    'file:line, blank lines counted',
  );
  t.same(await loadUnpairedFile(await file([good, { ...good, label: false }])), [good, { ...good, label: false }]);
});
