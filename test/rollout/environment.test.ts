// Multi-turn rollouts (lib/rollout/environment.ts) on a tiny random byte-level policy with scripted
// environments: the environment's tokens are exactly the byte chat template's framing of each
// observation (<|user|> text <|end|> <|assistant|>) and carry lossMask 0 / log-prob 0, the policy's
// tokens carry lossMask 1 and log-probs equal to a forward over the whole episode (bitwise); the
// batch mask the trainers use has the same 0s; 'final' / 'sum' rewards; the same seed gives the same
// episodes; the calculator environment against an independent evaluation; error messages.
import t from 'tap';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import { CalculatorEnvironment, evaluate } from '../../lib/demo/calculator.js';
import {
  multiTurnRollout,
  observationTokens,
  policyTokenMask,
  readEnvironmentOptions,
  type Environment,
} from '../../lib/rollout/environment.js';
import { sequenceBatch } from '../../lib/rollout/sequences.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { GroupTrainer } from '../../lib/train/group.js';
import { SFTTrainer } from '../../lib/train/sft.js';
import { Rng } from '../helpers/random.js';
import { tinyRlConfig } from '../helpers/rl-setup.js';

setThreads(1);
const tok = new ByteTokenizer();
const USER = 260,
  ASSISTANT = 261,
  END = 262;

/** Answers turn k (1-based) with "obs<k>" and reward k; done after `turns` steps. */
class Scripted implements Environment {
  k = 0;
  constructor(readonly turns: number) {}
  reset() {
    this.k = 0;
    return undefined;
  }
  step() {
    this.k++;
    return { observation: `obs${this.k}`, reward: this.k, done: this.k >= this.turns };
  }
}

/** A tiny policy SFT-warmed on short multi-turn chats, so that its turns end with a stop id. */
async function chattyPolicy(seed: number): Promise<Model> {
  const policy = await Model.create(tinyRlConfig(tok), { seed });
  const turn = (role: string, content: string) => ({ role, content });
  const train = ['hi', 'a string prompt'].flatMap((q) =>
    ['ab', 'cd', 'x'].map((a) => ({
      messages: [
        turn('user', q),
        turn('assistant', a),
        turn('user', 'obs1'),
        turn('assistant', a + a),
        turn('user', 'obs2'),
        turn('assistant', 'z'),
      ],
    })),
  );
  await new SFTTrainer({
    model: policy,
    tokenizer: tok,
    train,
    seqLen: 64,
    batchSize: 6,
    epochs: 40,
    lr: 3e-3,
  }).train();
  return policy;
}

const prompts = [{ prompt: [{ role: 'user', content: 'hi' }] }, { prompt: 'a string prompt' }];
const run = (policy: Model, env: Record<string, unknown>, seed = 3, temperature = 0.8) =>
  multiTurnRollout({
    policy,
    tokenizer: tok,
    prompts,
    samplesPerPrompt: 3,
    sampling: { maxNewTokens: 6, temperature },
    seed,
    streamBase: 0,
    environment: readEnvironmentOptions('test', env),
  });

t.test('environment tokens: template framing, lossMask 0, log-prob 0; policy tokens match forward', async (t) => {
  const policy = await chattyPolicy(7);
  const r = await run(policy, { create: () => new Scripted(3), maxTurns: 3, reward: 'sum' });
  let multi = 0;
  for (const [b, s] of r.samples.entries()) {
    const mask = s.lossMask!;
    t.equal(mask.length, s.responseIds.length);
    // walk the response: policy turns end at a stop id (or the turn limit), then obs<k> framed by the template
    let i = 0,
      k = 0;
    while (i < s.responseIds.length) {
      const start = i;
      while (i < s.responseIds.length && mask[i] === 1) i++;
      t.ok(i > start, `sample ${b}: a policy turn of ${i - start} tokens`);
      if (i === s.responseIds.length) break;
      k++;
      const want = [USER, ...Buffer.from(`obs${k}`), END, ASSISTANT];
      t.same([...s.responseIds.subarray(i, i + want.length)], want, `sample ${b}: observation ${k} framed`);
      t.same([...mask.subarray(i, i + want.length)], new Array(want.length).fill(0));
      t.same([...s.logprobs.subarray(i, i + want.length)], new Array(want.length).fill(0));
      i += want.length;
      multi++;
    }
    const turns = s.turns!.filter((m) => m.role === 'assistant').length;
    t.equal(s.turns!.filter((m) => m.role === 'user').length, k, `sample ${b}: one observation message per framing`);
    if (s.finishReason === 'stop') t.equal(s.envReward, (turns * (turns + 1)) / 2, `sample ${b}: 'sum' reward`);
  }
  t.ok(multi > 0, `${multi} observations in the batch`);
  // the trainers' batch mask and a forward over whole episodes at the sampling temperature
  const sb = sequenceBatch(r.samples, tok.padId);
  const m = policyTokenMask(sb, r.samples);
  const f = await policy.forward({
    tokens: sb.tokens,
    targets: sb.targets,
    batch: sb.batch,
    seqLen: sb.seqLen,
    lengths: sb.lengths,
    temperature: 0.8,
    saveForBackward: false,
  });
  let diff = 0,
    count = 0;
  r.samples.forEach((s, b) => {
    for (let i = 0; i < s.responseIds.length; i++) {
      const at = sb.responseStart[b] + i;
      t.equal(m[at], s.lossMask![i]);
      if (s.lossMask![i]) ((diff = Math.max(diff, Math.abs(f.logprobs[at] - s.logprobs[i]))), count++);
    }
  });
  t.equal(diff, 0, `the ${count} policy tokens' log-probs equal forward's bit for bit`);
  t.equal(
    m.reduce((a, x) => a + x, 0),
    count,
  );
});

t.test("rewards 'final' and 'sum', maxTurns, determinism", async (t) => {
  const policy = await chattyPolicy(8);
  const a = await run(policy, { create: () => new Scripted(10), maxTurns: 2, reward: 'final' }, 5);
  const b = await run(policy, { create: () => new Scripted(10), maxTurns: 2, reward: 'sum' }, 5);
  for (const [i, s] of a.samples.entries()) {
    t.same([...s.responseIds], [...b.samples[i].responseIds], 'same seed, same episode');
    const turns = s.turns!.filter((x) => x.role === 'assistant').length;
    t.ok(turns <= 2, 'at most maxTurns policy turns');
    if (s.finishReason === 'stop') {
      t.equal(s.envReward, turns, "'final': the last step's reward");
      t.equal(b.samples[i].envReward, (turns * (turns + 1)) / 2, "'sum': every step's");
    }
  }
  const c = await run(policy, { create: () => new Scripted(10), maxTurns: 2 }, 6);
  t.notSame(
    c.samples.map((s) => [...s.responseIds]),
    a.samples.map((s) => [...s.responseIds]),
    'another seed, other episodes',
  );
});

t.test('the calculator: arithmetic against an independent evaluation, tool calls and answers', async (t) => {
  const rng = new Rng(4);
  const gen = (d: number): string => {
    if (d > 3 || rng.next() < 0.3) return String(rng.int(0, 20));
    const op = rng.pick(['+', '-', '*', '/']);
    const l = gen(d + 1),
      r = op === '/' ? String(rng.int(1, 20)) : gen(d + 1); // division by zero is checked below
    return rng.next() < 0.3 ? `(${l} ${op} ${r})` : `${l}${op}${r}`;
  };
  let checked = 0;
  for (let i = 0; i < 300; i++) {
    const e = gen(0);
    const want = Function(`"use strict"; return (${e});`)() as number;
    const got = evaluate(e);
    t.ok(Math.abs(got - want) <= 1e-12 * Math.max(1, Math.abs(want)), `${e} = ${want}, got ${got}`) || t.end();
    checked++;
  }
  t.equal(checked, 300);
  t.equal(evaluate('-(2+3)*-2'), 10);
  for (const [bad, why] of [
    ['1/0', /division by zero/],
    ['2+', /unexpected end/],
    ['(1+2', /missing "\)"/],
    ['2 plus 2', /unexpected "plus2"/],
    ['', /empty expression/],
  ] as const)
    t.throws(() => evaluate(bad), why, bad);
  const env = new CalculatorEnvironment();
  env.reset({ prompt: 'What is 3+4?', answer: 7 });
  t.same(env.step('calc 3 + 4'), { observation: '7', reward: 0, done: false });
  t.same(env.step('calc 7/2'), { observation: '3.5', reward: 0, done: false });
  t.same(env.step('calc 3+'), { observation: 'error: unexpected end', reward: 0, done: false });
  t.same(env.step('7'), { reward: 1, done: true });
  t.same(env.step('seven'), { reward: 1, done: true }, 'number words as the gold function reads them');
  t.same(env.step('3+4 is 8.'), { reward: 0, done: true });
  t.throws(() => env.reset({ prompt: 'What is 3+4?' }), {
    code: 'ERR_RLHF_FORMAT',
    message: `CalculatorEnvironment: expected the prompt record's "answer" to be a finite number, got nothing`,
  });
});

t.test('errors', async (t) => {
  const policy = await chattyPolicy(9);
  const bad = (step: unknown): Environment => ({ reset: () => undefined, step: () => step as never });
  await t.rejects(run(policy, { create: () => bad({ done: false, reward: NaN }) }), {
    code: 'ERR_RLHF_INVALID_ARGUMENT',
    message:
      /^environment: step\(\) returned reward NaN, expected a finite number \(prompt [01] "(hi|a string prompt)", sample [012]\)$/,
  });
  await t.rejects(run(policy, { create: () => bad({ reward: 1 }) }), {
    message: /step\(\) returned object, expected \{observation\?, reward\?, done: boolean\}/,
  });
  await t.rejects(run(policy, { create: () => ({ reset: () => 3 as never, step: () => ({ done: true }) }) }), {
    message: 'environment: reset() returned 3, expected a string or undefined (prompt 0 "hi", sample 0)',
  });
  t.throws(() => readEnvironmentOptions('GroupTrainer', { create: () => new Scripted(1), maxTurns: 0 }), {
    name: 'RangeError',
    message: /options\.environment\.maxTurns/,
  });
  t.throws(() => readEnvironmentOptions('GroupTrainer', { create: 1 }), {
    name: 'TypeError',
    message: /options\.environment\.create/,
  });
  t.throws(() => new GroupTrainer({ policy, tokenizer: tok, prompts, iterations: 1 } as never), {
    name: 'TypeError',
    message: /options\.reward/,
  });
  // a template that rewrites earlier turns cannot be continued token by token
  const rewriting = Object.create(tok) as ByteTokenizer;
  rewriting.encodeChat = () => ({ ids: [1, 2, 3], assistantMask: new Uint8Array(3) });
  t.throws(() => observationTokens(rewriting, [{ role: 'user', content: 'x' }], { role: 'user', content: 'y' }), {
    code: 'ERR_RLHF_INVALID_ARGUMENT',
    message: /rewrites earlier turns/,
  });
});
