// The `rlhf serve` command: starts from a checkpoint folder, answers the openai client, stops on SIGTERM.
import t from 'tap';
import OpenAI from 'openai';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { errorOf, spawnServe, tinyCheckpoint } from './helpers.js';

const withTok = await tinyCheckpoint();
const noTok = await tinyCheckpoint({ withTokenizer: false });
t.teardown(() => {
  withTok.model.dispose();
  noTok.model.dispose();
  withTok.cleanup();
  noTok.cleanup();
});

t.test('serve a checkpoint with its tokenizer, with an API key from the environment', async (t) => {
  process.env.RLHF_API_KEY = 'k1';
  const s = await spawnServe(['--model', withTok.dir, '--model-name', 'tiny-chat']);
  delete process.env.RLHF_API_KEY;
  t.teardown(() => s.stop('SIGKILL'));
  t.match(s.url, /^http:\/\/127\.0\.0\.1:\d+\/v1$/, 'loopback by default');
  t.match(s.output(), /API key required/);
  const client = new OpenAI({ baseURL: s.url, apiKey: 'k1', maxRetries: 0 });
  const r = await client.chat.completions.create({
    model: 'tiny-chat',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 5,
    temperature: 0,
  });
  t.equal(r.choices.length, 1);
  t.ok(r.usage!.completion_tokens >= 1 && r.usage!.completion_tokens <= 5);
  t.match(await errorOf(new OpenAI({ baseURL: s.url, apiKey: 'k2', maxRetries: 0 }).models.list()), { status: 401 });
  t.equal(await s.stop('SIGTERM'), 0, 'SIGTERM stops it cleanly');
  t.match(s.output(), /stopped after 1 requests/);
});

t.test('a checkpoint without tokenizer files: a clear error, or --tokenizer byte', async (t) => {
  const cli = join(packageRoot, 'dist', 'cli', 'main.js');
  const r = spawnSync(process.execPath, [cli, 'serve', '--model', noTok.dir, '--port', '0'], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stderr, /--tokenizer byte/);
  const s = await spawnServe(['--model', noTok.dir, '--tokenizer', 'byte']);
  t.teardown(() => s.stop('SIGKILL'));
  const models = await new OpenAI({ baseURL: s.url, apiKey: 'x', maxRetries: 0 }).models.list();
  t.same(
    models.data.map((m) => m.id),
    ['tiny'],
    'the folder name is the model id',
  );
  const bad = spawnSync(process.execPath, [cli, 'serve', '--model', noTok.dir, '--port', '70000'], {
    encoding: 'utf8',
  });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /--port/);
});
