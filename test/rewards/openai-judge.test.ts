// OpenAIJudge / OpenAIEmbedder against loopback HTTP servers written here: retries with backoff on
// 429/5xx, no retry on 400, timeouts, the concurrency limit, and the on-disk reply cache.
import t from 'tap';
import type { Test } from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LexicalEmbedder, OpenAIEmbedder, OpenAIJudge } from '../../lib/rewards/longreward/index.js';

type Handler = (
  body: Record<string, unknown>,
  req: IncomingMessage,
  res: ServerResponse,
  n: number,
) => void | Promise<void>;

async function server(t: Test, handler: Handler) {
  let n = 0;
  let inFlight = 0;
  const state = {
    requests: 0,
    maxInFlight: 0,
    bodies: [] as Record<string, unknown>[],
    auth: [] as (string | undefined)[],
  };
  const s = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
    state.requests++;
    state.bodies.push(body);
    state.auth.push(req.headers.authorization);
    inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, inFlight);
    res.on('close', () => inFlight--);
    await handler(body, req, res, n++);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    s.closeAllConnections();
    s.close();
  });
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/v1`, state };
}

const reply = (res: ServerResponse, content: string) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }] }));
};
const fail = (res: ServerResponse, status: number, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify({ error: { message: `failure ${status}`, type: 'x' } }));
};

t.test(
  'retries 429 and 5xx with backoff, then answers; sends model, prompt, temperature, max_tokens and the key',
  async (t) => {
    const { url, state } = await server(t, (body, _req, res, n) => {
      if (n === 0) return fail(res, 429, { 'retry-after': '0' });
      if (n === 1) return fail(res, 500);
      if (n === 2) return fail(res, 503);
      reply(res, `analysis ... [[7]] (call ${n})`);
    });
    process.env.TEST_JUDGE_KEY = 'abc';
    const judge = new OpenAIJudge({
      baseURL: url,
      model: 'judge-1',
      apiKeyEnv: 'TEST_JUDGE_KEY',
      backoffMs: 20,
      maxTokens: 100,
    });
    delete process.env.TEST_JUDGE_KEY;
    const started = Date.now();
    t.equal(await judge.complete('rate this', { temperature: 0.01, maxTokens: 512 }), 'analysis ... [[7]] (call 3)');
    t.ok(Date.now() - started >= 20 + 40, 'backed off 20 ms then 40 ms (429 had Retry-After: 0)');
    t.same(judge.stats, { requests: 4, retries: 3, cacheHits: 0, answered: 1 });
    t.same(
      state.bodies[3],
      { model: 'judge-1', messages: [{ role: 'user', content: 'rate this' }], temperature: 0.01, max_tokens: 100 },
      'max_tokens capped by the option',
    );
    t.equal(state.auth[0], 'Bearer abc');
  },
);

t.test('gives up after maxRetries, and never retries a 400', async (t) => {
  const { url, state } = await server(t, (body, _req, res) =>
    fail(res, (body.messages as Array<{ content: string }>)[0].content === 'bad' ? 400 : 502),
  );
  const judge = new OpenAIJudge({ baseURL: url, model: 'j', maxRetries: 2, backoffMs: 1 });
  await t.rejects(judge.complete('x', { temperature: 0.5 }), /HTTP 502: failure 502 \(after 3 attempts\)/);
  t.equal(state.requests, 3);
  await t.rejects(judge.complete('bad', { temperature: 0.5 }), /HTTP 400: failure 400$/);
  t.equal(state.requests, 4, 'a 400 is not retried');
});

t.test('times out a server that does not answer, and retries it', async (t) => {
  const { url, state } = await server(t, (_b, _req, res, n) => {
    if (n < 2) return; // hang
    reply(res, 'late but fine');
  });
  const judge = new OpenAIJudge({ baseURL: url, model: 'j', timeoutMs: 100, maxRetries: 1, backoffMs: 1 });
  await t.rejects(judge.complete('x', { temperature: 0 }), /no answer in 100 ms \(after 2 attempts\)/);
  t.equal(
    await new OpenAIJudge({ baseURL: url, model: 'j', timeoutMs: 100, backoffMs: 1 }).complete('y', { temperature: 0 }),
    'late but fine',
  );
  t.equal(state.requests, 3);
});

t.test('maxConcurrent bounds the requests in flight', async (t) => {
  const { url, state } = await server(t, async (_b, _req, res) => {
    await new Promise((r) => setTimeout(r, 30));
    reply(res, 'ok');
  });
  const judge = new OpenAIJudge({ baseURL: url, model: 'j', maxConcurrent: 2 });
  await Promise.all(Array.from({ length: 6 }, (_, i) => judge.complete(`p${i}`, { temperature: 0 })));
  t.equal(state.requests, 6);
  t.equal(state.maxInFlight, 2);
});

t.test('the disk cache: a second run pays nothing, and repeated identical calls get their own replies', async (t) => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'rlhf-judge-cache-'));
  t.teardown(() => rmSync(cacheDir, { recursive: true, force: true }));
  const { url, state } = await server(t, (_b, _req, res, n) => reply(res, `reply ${n}`));
  const run = async () => {
    const judge = new OpenAIJudge({ baseURL: url, model: 'j', cacheDir });
    const a = await judge.complete('same', { temperature: 0.95 });
    const b = await judge.complete('same', { temperature: 0.95 });
    const c = await judge.complete('other', { temperature: 0.95 });
    return { replies: [a, b, c], stats: judge.stats };
  };
  const first = await run();
  t.same(first.replies, ['reply 0', 'reply 1', 'reply 2'], 'a retry of the same request is asked again');
  t.equal(state.requests, 3);
  const second = await run();
  t.same(second.replies, first.replies, 'the resumed run replays the same replies in order');
  t.equal(state.requests, 3, 'no new request');
  t.equal(second.stats.cacheHits, 3);
  const files = readdirSync(cacheDir, { recursive: true }).filter((f) => String(f).endsWith('.json'));
  t.equal(files.length, 3, 'one file per reply');
  t.notOk(
    readdirSync(cacheDir, { recursive: true }).some((f) => String(f).includes('.tmp-')),
    'no temporary files left',
  );
});

t.test('malformed replies and bad options', async (t) => {
  const { url } = await server(t, (_b, _req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"choices": []}');
  });
  await t.rejects(
    new OpenAIJudge({ baseURL: url, model: 'j' }).complete('x', { temperature: 0 }),
    /no choices\[0\]\.message\.content/,
  );
  t.throws(() => new OpenAIJudge({ baseURL: 'ftp://x', model: 'j' }), /options\.baseURL/);
  t.throws(() => new OpenAIJudge({ baseURL: url, model: 'j', maxConcurrent: 0 }), /options\.maxConcurrent/);
  t.throws(() => new OpenAIJudge({ baseURL: url, model: 'j', bogus: 1 } as never), /bogus/);
});

t.test('OpenAIEmbedder: batches, order by index; LexicalEmbedder: unit vectors, overlap ranks first', async (t) => {
  const { url, state } = await server(t, (body, _req, res) => {
    const input = body.input as string[];
    const data = input.map((s, index) => ({ object: 'embedding', index, embedding: [s.length, 1] })).reverse();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data }));
  });
  const e = new OpenAIEmbedder({ baseURL: url, model: 'emb', batchSize: 2 });
  t.same(await e.embed(['a', 'bbb', 'cc']), [
    [1, 1],
    [3, 1],
    [2, 1],
  ]);
  t.equal(state.requests, 2, 'two batches');
  const lex = new LexicalEmbedder(256);
  const [q, near, far] = await lex.embed([
    'revenue grew in 2019',
    'In 2019 the revenue grew by 5%',
    'the cat sat on the mat',
  ]);
  const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0);
  t.ok(Math.abs(dot(q, q) - 1) < 1e-9, 'unit length');
  t.ok(
    dot(q, near) > dot(q, far) + 0.3,
    `overlapping text is closer (${dot(q, near).toFixed(2)} vs ${dot(q, far).toFixed(2)})`,
  );
});
