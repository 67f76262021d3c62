// rlhf serve against the official `openai` client on loopback, with a tiny random model. The
// reference for every generated text is Model.generate called directly.
import t from 'tap';
import type { Test } from 'tap';
import OpenAI from 'openai';
import { setThreads } from '../../lib/engine/device.js';
import { GenerationSession } from '../../lib/engine/generation-session.js';
import { startServer, type RunningServer } from '../../lib/serve/index.js';
import { errorOf, tinyCheckpoint } from './helpers.js';

setThreads(1);
const ck = await tinyCheckpoint();
const { model, tokenizer } = ck;
t.teardown(() => {
  model.dispose();
  ck.cleanup();
});

async function serve(
  t: Test,
  opts: Partial<Parameters<typeof startServer>[0]> = {},
): Promise<{ server: RunningServer; client: OpenAI }> {
  const server = await startServer({ model, tokenizer, modelName: 'tiny', port: 0, ...opts });
  t.teardown(() => server.close());
  const client = new OpenAI({ baseURL: server.url, apiKey: opts.apiKey ?? 'unused', maxRetries: 0 });
  return { server, client };
}

/** Greedy reference: one Model.generate call on the chat prompt. */
async function greedy(ids: number[], maxNewTokens: number) {
  const [g] = await model.generate({ prompts: [ids], maxNewTokens, temperature: 0, stopTokens: tokenizer.stopIds });
  const stop = g.finishReason === 'stop';
  const content = Array.from(stop ? g.tokens.subarray(0, g.tokens.length - 1) : g.tokens);
  return {
    text: tokenizer.decode(content, { skipSpecialTokens: true }),
    content,
    logprobs: Array.from(g.logprobs).slice(0, content.length),
    all: g.tokens.length,
    finishReason: g.finishReason,
  };
}

const messages = [{ role: 'user' as const, content: 'Say something.' }];
const chatIds = tokenizer.encodePrompt(messages);

t.test('models, chat and completions match a direct generate call (greedy)', async (t) => {
  const { client } = await serve(t);
  const models = await client.models.list();
  t.same(
    models.data.map((m) => m.id),
    ['tiny'],
  );

  const ref = await greedy(chatIds, 30);
  const r = await client.chat.completions.create({
    model: 'tiny',
    messages,
    temperature: 0,
    max_tokens: 30,
    logprobs: true,
  });
  t.equal(r.object, 'chat.completion');
  t.equal(r.choices[0].message.content, ref.text, 'same text as one generate call');
  t.equal(r.choices[0].finish_reason, ref.finishReason);
  t.same(r.usage, {
    prompt_tokens: chatIds.length,
    completion_tokens: ref.all,
    total_tokens: chatIds.length + ref.all,
  });
  const lp = r.choices[0].logprobs!.content!;
  t.equal(lp.length, ref.content.length, 'one logprob per content token');
  lp.forEach((e, k) => {
    t.ok(Math.abs(e.logprob - ref.logprobs[k]) < 1e-4, `token ${k}: logprob ${e.logprob} vs ${ref.logprobs[k]}`);
    t.equal(e.token, tokenizer.decode([ref.content[k]]));
  });

  const prompt = 'Once upon a time';
  const pids = tokenizer.encode(prompt, { addSpecialTokens: true });
  const cref = await greedy(pids, 12);
  const c = await client.completions.create({ model: 'tiny', prompt, temperature: 0, max_tokens: 12, logprobs: 0 });
  t.equal(c.object, 'text_completion');
  t.equal(c.choices[0].text, cref.text);
  t.equal(c.usage!.prompt_tokens, pids.length);
  t.equal(c.choices[0].logprobs!.token_logprobs!.length, cref.content.length);
  const d = await client.completions.create({ model: 'tiny', prompt: 'abc', temperature: 0 });
  t.ok(d.usage!.completion_tokens <= 16, 'completions default to max_tokens 16');
});

t.test('stop strings cut the text before the first match, streamed or not', async (t) => {
  const { client } = await serve(t);
  const ref = await greedy(chatIds, 40);
  t.ok(ref.text.length >= 8, `the reference is long enough (${JSON.stringify(ref.text)})`);
  const stop = ref.text.slice(5, 8);
  const expected = ref.text.slice(0, ref.text.indexOf(stop));
  const r = await client.chat.completions.create({
    model: 'tiny',
    messages,
    temperature: 0,
    max_tokens: 40,
    stop: [stop, '\u0000never'],
  });
  t.equal(r.choices[0].message.content, expected);
  t.equal(r.choices[0].finish_reason, 'stop');
  const s = await client.chat.completions.create({
    model: 'tiny',
    messages,
    temperature: 0,
    max_tokens: 40,
    stop,
    stream: true,
  });
  let text = '';
  let finish: string | null = null;
  for await (const chunk of s) {
    text += chunk.choices[0]?.delta.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  t.equal(text, expected, 'the stream never shows the stop string');
  t.equal(finish, 'stop');
});

t.test('seeds, n > 1, and streaming agree with the non-streamed answer', async (t) => {
  const { client } = await serve(t);
  const ask = (seed: number) =>
    client.completions.create({ model: 'tiny', prompt: 'xyz', n: 3, max_tokens: 20, seed, temperature: 1 });
  const a = await ask(11);
  const b = await ask(11);
  const c = await ask(12);
  t.same(
    a.choices.map((x) => x.index),
    [0, 1, 2],
  );
  t.same(
    a.choices.map((x) => x.text),
    b.choices.map((x) => x.text),
    'same seed, same texts',
  );
  t.not(a.choices.map((x) => x.text).join('|'), c.choices.map((x) => x.text).join('|'), 'another seed, other texts');
  t.ok(new Set(a.choices.map((x) => x.text)).size > 1, 'the n choices differ');

  const full = await client.chat.completions.create({
    model: 'tiny',
    messages,
    n: 2,
    max_tokens: 25,
    seed: 5,
    logprobs: true,
  });
  const stream = await client.chat.completions.create({
    model: 'tiny',
    messages,
    n: 2,
    max_tokens: 25,
    seed: 5,
    stream: true,
    stream_options: { include_usage: true },
    logprobs: true,
  });
  const texts = ['', ''];
  const lps: number[][] = [[], []];
  let usage: OpenAI.CompletionUsage | undefined;
  let roles = 0;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      if (ch.delta.role) roles++;
      texts[ch.index] += ch.delta.content ?? '';
      for (const e of ch.logprobs?.content ?? []) lps[ch.index].push(e.logprob);
    }
  }
  t.same(
    texts,
    full.choices.map((x) => x.message.content),
    'streamed text = non-streamed text',
  );
  t.equal(roles, 2, 'one role delta per choice');
  t.same(usage, full.usage, 'usage chunk at the end');
  t.same(
    lps,
    full.choices.map((x) => x.logprobs!.content!.map((e) => e.logprob)),
    'streamed logprobs = non-streamed logprobs',
  );
  t.ok(lps[0].length > 0 && lps[0].length <= 25);

  const plain = await client.completions.create({ model: 'tiny', prompt: 'abc', max_tokens: 20, seed: 9, logprobs: 0 });
  const streamed = await client.completions.create({
    model: 'tiny',
    prompt: 'abc',
    max_tokens: 20,
    seed: 9,
    logprobs: 0,
    stream: true,
  });
  let text = '';
  const offsets: number[] = [];
  const tokenLps: number[] = [];
  for await (const chunk of streamed) {
    text += chunk.choices[0].text;
    offsets.push(...(chunk.choices[0].logprobs?.text_offset ?? []));
    tokenLps.push(...(chunk.choices[0].logprobs?.token_logprobs ?? []));
  }
  t.equal(text, plain.choices[0].text, 'streamed completion = non-streamed');
  t.same(offsets, plain.choices[0].logprobs!.text_offset, 'text offsets continue across chunks');
  t.same(tokenLps, plain.choices[0].logprobs!.token_logprobs);
});

t.test('concurrent clients are batched together and each gets its solo answer', async (t) => {
  const { client, server } = await serve(t);
  const ask = (i: number) =>
    client.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: `question ${i}` }],
      max_tokens: 16,
      seed: i,
      temperature: 0.8,
    });
  const solo = [];
  for (let i = 0; i < 6; i++) solo.push((await ask(i)).choices[0].message.content);
  const before = server.stats.maxRowsInBatch;
  t.equal(before, 1, 'one row per call when requests come one by one');
  const together = await Promise.all(Array.from({ length: 6 }, (_, i) => ask(i)));
  t.same(
    together.map((r) => r.choices[0].message.content),
    solo,
    'the same seeded answer alone or batched',
  );
  t.ok(
    server.stats.maxRowsInBatch > 1,
    `concurrent requests shared a model call (${server.stats.maxRowsInBatch} rows)`,
  );
});

t.test('a client that disconnects stops its generation', async (t) => {
  const { client, server } = await serve(t);
  const controller = new AbortController();
  const tokensBefore = server.stats.generatedTokens;
  const stream = await client.completions.create(
    { model: 'tiny', prompt: 'a long story:', max_tokens: 200, temperature: 1, seed: 1, stream: true },
    { signal: controller.signal },
  );
  let chunks = 0;
  try {
    // stop reading at the second chunk: chunks the client had already buffered are not read
    for await (const _ of stream)
      if (++chunks === 2) {
        controller.abort();
        break;
      }
  } catch (err) {
    t.match(String(err), /abort/i, 'the client reports the abort');
  }
  t.equal(chunks, 2, 'the client stopped reading after two chunks');
  for (let i = 0; i < 200 && server.stats.cancelled === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(server.stats.cancelled, 1, 'the request was cancelled');
  const spent = server.stats.generatedTokens - tokensBefore;
  t.ok(spent < 40, `generation stopped early (${spent} of up to 200 tokens generated)`);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(server.stats.generatedTokens - tokensBefore, spent, 'nothing generated after the cancellation');
  const ok = await client.completions.create({ model: 'tiny', prompt: 'still alive?', max_tokens: 3 });
  t.equal(ok.choices.length, 1, 'the server still answers');
});

t.test('bad requests: 400 naming the field, 404, 413, 429', async (t) => {
  const { client, server } = await serve(t, { maxRequests: 1, maxBodyBytes: 4096 });
  const bad = async (body: Record<string, unknown>, param: string, status = 400) => {
    const err = await client.chat.completions.create({ model: 'tiny', messages, ...body } as never).then(
      () => undefined,
      (e: unknown) => e as InstanceType<typeof OpenAI.APIError>,
    );
    t.ok(err, `${JSON.stringify(body)} is refused`);
    t.equal(err?.status, status, `${param}: HTTP ${status}`);
    t.equal(err?.param, param, `names ${param}: ${err?.message}`);
  };
  await bad({ temperature: 5 }, 'temperature');
  await bad({ temperature: 'hot' }, 'temperature');
  await bad({ top_p: 0 }, 'top_p');
  await bad({ n: 0 }, 'n');
  await bad({ max_tokens: 1.5 }, 'max_tokens');
  await bad({ max_tokens: 100000 }, 'max_tokens');
  await bad({ messages: [] }, 'messages');
  await bad({ messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role');
  await bad(
    { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] },
    'messages[0].content[0]',
  );
  await bad({ stop: [''] }, 'stop');
  await bad({ top_logprobs: 3, logprobs: true }, 'top_logprobs');
  await bad({ frequency_penalty: 1 }, 'frequency_penalty');
  await bad({ bogus: 1 }, 'bogus');
  await bad({ model: 'other' }, 'model', 404);
  await bad({ messages: [{ role: 'user', content: 'x'.repeat(300) }] }, 'messages');
  t.match(await errorOf(client.completions.create({ model: 'tiny', prompt: [1, 2, 99999] })), {
    status: 400,
    param: 'prompt',
  });

  const raw = (path: string, init: RequestInit) => fetch(`${server.url}${path}`, init);
  const notJson = await raw('/chat/completions', { method: 'POST', body: '{"model": "tiny",' });
  t.equal(notJson.status, 400);
  t.match(await notJson.json(), { error: { type: 'invalid_request_error', message: /not valid JSON/ } });
  const big = await raw('/chat/completions', {
    method: 'POST',
    body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'x'.repeat(5000) }] }),
  });
  t.equal(big.status, 413);
  t.equal((await raw('/nothing', { method: 'GET' })).status, 404);
  t.equal((await raw('/chat/completions', { method: 'GET' })).status, 405);

  // the queue holds one request: a second one while the first waits on the model is a 429 (the
  // session's steps are held at a gate, so the first cannot finish before the second arrives)
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const step = GenerationSession.prototype.step;
  GenerationSession.prototype.step = async function (this: GenerationSession) {
    await gate;
    return step.call(this);
  };
  try {
    const long = client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 4 });
    for (let i = 0; i < 500 && server.stats.submitted === 0; i++) await new Promise((r) => setTimeout(r, 10));
    t.equal(server.stats.submitted, 1, 'the first request is in the queue');
    t.match(await errorOf(client.completions.create({ model: 'tiny', prompt: 'y', max_tokens: 2 })), { status: 429 });
    release();
    t.ok((await long).choices[0].text !== undefined, 'the first request completes once the model is free');
  } finally {
    release();
    GenerationSession.prototype.step = step;
  }
});

t.test('a request that cannot fit the KV cache is a 400 naming max_tokens', async (t) => {
  const blockBytes = 2 * model.config.layers * 16 * model.config.kvHeads * model.config.headDim * 4;
  const { client } = await serve(t, { kvBytes: 3 * blockBytes }); // 3 blocks of 16 positions
  t.ok(chatIds.length > 0 && chatIds.length % 16 !== 0 && chatIds.length < 32, 'a prompt over 1–2 blocks');
  const err = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 40 }).then(
    () => undefined,
    (e: unknown) => e as InstanceType<typeof OpenAI.APIError>,
  );
  t.equal(err?.status, 400);
  t.equal(err?.param, 'max_tokens', String(err?.message));
  // ⌈(prompt + max_tokens − 1) / 16⌉ + 1 copy-on-write block = 3 fits
  const fits = 48 - chatIds.length - 15;
  const ok = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: fits, temperature: 0 });
  t.equal(ok.choices.length, 1, `max_tokens ${fits} fits the 3 blocks`);
});

t.test('with an API key, /v1 needs the bearer token', async (t) => {
  const { server } = await serve(t, { apiKey: 'sekret' });
  const wrong = new OpenAI({ baseURL: server.url, apiKey: 'nope', maxRetries: 0 });
  t.match(await errorOf(wrong.models.list()), { status: 401 });
  const right = new OpenAI({ baseURL: server.url, apiKey: 'sekret', maxRetries: 0 });
  t.equal((await right.models.list()).data[0].id, 'tiny');
  t.equal((await fetch(`${server.url}/models`)).status, 401, 'no header: 401');
});
