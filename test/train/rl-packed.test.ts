// Packed policy-gradient updates (packTokens): aligned packing's layout; forwardSequences' packed
// log-probs, entropies and values against the padded rows' (bit for bit) and its gradients against
// the padded backward's (summation order only); GRPO, GSPO and PPO with a critic trained packed
// against the same runs padded: the first ratio exactly 1, the first minibatch's losses bit for
// bit, per-step losses and gradient norms and the weights after training within 1e-5.
import t, { type Test } from 'tap';
import { setThreads } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import { rewardFunction } from '../../lib/rewards/types.js';
import { sequenceBatch, type Sequence } from '../../lib/rollout/sequences.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { GroupTrainer, type GroupOptions } from '../../lib/train/group.js';
import { forwardSequences, packRows } from '../../lib/train/packed-rows.js';
import { PPOTrainer, type PPOOptions } from '../../lib/train/ppo.js';
import { Rng } from '../helpers/random.js';
import { asciiFraction, tinyRlConfig } from '../helpers/rl-setup.js';

setThreads(1);
const tok = new ByteTokenizer();
const rng = new Rng(5);
const ids = (n: number) => Int32Array.from({ length: n }, () => rng.int(0, 259));
const randomSeqs = (n: number, maxPrompt: number, maxResponse: number): Sequence[] =>
  Array.from({ length: n }, () => ({
    promptIds: ids(rng.int(1, maxPrompt)),
    responseIds: ids(rng.int(0, maxResponse)),
  }));
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
};

t.test('aligned packRows: starts at multiples of 16, no sequence across a multiple of 256', async (t) => {
  const seqs = [...randomSeqs(40, 30, 60), ...randomSeqs(3, 100, 200)];
  const p = packRows(seqs, tok.padId, 700, { align: true });
  const plain = packRows(seqs, tok.padId, 700);
  t.ok(
    p.batch >= plain.batch && p.batch < seqs.length,
    `${seqs.length} sequences in ${p.batch} rows (unaligned ${plain.batch})`,
  );
  const bad: string[] = [];
  seqs.forEach((s, i) => {
    const n = s.promptIds.length + s.responseIds.length;
    const at = p.starts[i] % p.seqLen;
    if (at % 16 !== 0) bad.push(`${i} starts at ${at}`);
    if (n <= 256 && Math.floor(at / 256) !== Math.floor((at + n - 1) / 256)) bad.push(`${i} crosses a 256 block`);
    if (n > 256 && at % 256 !== 0) bad.push(`long ${i} starts at ${at}`);
    if (at + n > 700) bad.push(`${i} past the row`);
    const tokens = [...p.tokens.subarray(p.starts[i], p.starts[i] + n)];
    if (tokens.join() !== [...s.promptIds, ...s.responseIds].join()) bad.push(`${i} tokens`);
    if (p.responseStart[i] !== p.starts[i] + s.promptIds.length - 1) bad.push(`${i} responseStart`);
  });
  t.same(bad, [], 'every sequence aligned, inside one block (or starting one), its tokens in place');
  t.equal(
    [...p.targets].filter((x) => x >= 0).length,
    seqs.reduce((a, s) => a + s.responseIds.length, 0),
    'targets: the responses only',
  );
});

t.test(
  'forwardSequences: packed outputs are the padded rows, bit for bit; gradients up to summation order',
  async (t) => {
    const policy = await Model.create(tinyRlConfig(tok), { seed: 2, initStd: 0.3 });
    const critic = await Model.create(tinyRlConfig(tok, true), { seed: 3 });
    t.teardown(() => (policy.dispose(), critic.dispose()));
    const seqs = randomSeqs(24, 12, 40);
    const sb = sequenceBatch(seqs, tok.padId);
    const [r0, r1] = [3, 21]; // a share of the rows, as a data-parallel rank forwards
    let packedRows = 0;
    const forward = policy.forward.bind(policy);
    policy.forward = (o) => (o.segments && (packedRows += o.batch), forward(o));
    const run = async (packTokens?: number) => {
      const common = { packTokens, padId: tok.padId };
      const f = await forwardSequences(policy, sb, seqs, r0, r1, {
        ...common,
        forward: { temperature: 0.7, entropy: true },
      });
      const dLogprobs = Float32Array.from(f.logprobs, (_, i) => ((i * 7919) % 13) / 13 - 0.5);
      const dEntropy = Float32Array.from(f.logprobs, (_, i) => ((i * 104729) % 11) / 11 - 0.5);
      await f.backward({ dLogprobs, dEntropy });
      const grad = await policy.getGradient('model.layers.1.self_attn.q_proj.weight');
      const embGrad = await policy.getGradient('model.embed_tokens.weight');
      await policy.zeroGrad();
      const v = await forwardSequences(critic, sb, seqs, r0, r1, {
        ...common,
        targets: false,
        forward: { values: true },
      });
      const dValues = Float32Array.from(v.values!, (_, i) => ((i * 31) % 7) / 7 - 0.5);
      await v.backward({ dValues });
      const criticGrad = await critic.getGradient('model.layers.0.mlp.up_proj.weight');
      await critic.zeroGrad();
      return { f, v, grad, embGrad, criticGrad };
    };
    const pad = await run();
    const pack = await run(100);
    t.ok(packedRows > 0 && packedRows < (r1 - r0) / 2, `${r1 - r0} sequences in ${packedRows} packed rows`);
    const T = sb.seqLen;
    let differ = 0;
    for (let b = r0; b < r1; b++) {
      const n = seqs[b].promptIds.length + seqs[b].responseIds.length;
      for (let i = 0; i < n; i++) {
        const k = (b - r0) * T + i;
        if (
          !Object.is(pad.f.logprobs[k], pack.f.logprobs[k]) ||
          !Object.is(pad.f.entropy![k], pack.f.entropy![k]) ||
          !Object.is(pad.v.values![k], pack.v.values![k])
        )
          differ++;
      }
    }
    t.equal(differ, 0, 'log-probs, entropies and values at every token of every sequence: the same bits');
    for (const [name, a, b] of [
      ['policy q_proj', pad.grad, pack.grad],
      ['policy embeddings', pad.embGrad, pack.embGrad],
      ['critic up_proj', pad.criticGrad, pack.criticGrad],
    ] as const) {
      const scale = maxAbsDiff(a, new Float32Array(a.length));
      const d = maxAbsDiff(a, b);
      t.ok(
        scale > 0 && d <= 1e-5 * scale,
        `${name} gradient: max |Δ| ${d.toExponential(2)} (max |g| ${scale.toExponential(2)})`,
      );
    }
  },
);

const prompts = ['q:', 'wxy:', 'e:', 'rrrrrr:', 't:', 'yy:', 'u:', 'iiii:'].map((prompt) => ({ prompt }));
const reward = rewardFunction('ascii', (r) => asciiFraction(r.responseIds));

/** Trains a fresh policy (and critic) padded and packed; returns per-step metrics, forwarded rows and weights. */
async function both(make: (policy: Model, critic: Model, packTokens?: number) => GroupTrainer | PPOTrainer) {
  const runs = [];
  for (const packTokens of [undefined, 64]) {
    const policy = await Model.create(tinyRlConfig(tok), { seed: 1, initStd: 0.3 });
    const critic = await Model.create(tinyRlConfig(tok, true), { seed: 4 });
    let rows = 0,
      packed = 0;
    for (const m of [policy, critic]) {
      const forward = m.forward.bind(m);
      m.forward = (o) => ((rows += o.batch), o.segments && (packed += o.batch), forward(o));
    }
    const trainer = make(policy, critic, packTokens);
    const steps: Record<string, number>[] = [];
    trainer.on('step', (e) => steps.push(e.metrics));
    await trainer.train();
    trainer.dispose();
    runs.push({
      steps,
      rows,
      packed,
      policy: await policy.getParameter('model.layers.0.mlp.up_proj.weight'),
      critic: await critic.getParameter('model.layers.1.self_attn.v_proj.weight'),
    });
    policy.dispose();
    critic.dispose();
  }
  return runs;
}

function compare(
  t: Test,
  [pad, pack]: Awaited<ReturnType<typeof both>>,
  keys: string[],
  opts: { critic?: boolean; firstExact: string[] },
) {
  t.ok(pack.packed > 0 && pack.rows < pad.rows * 0.7, `rows forwarded: packed ${pack.rows}, padded ${pad.rows}`);
  t.equal(pad.packed, 0, 'the padded run packs nothing');
  t.equal(pack.steps[0].rolloutLogprobDiffMax, 0, 'packed: the first ratio is exactly 1');
  for (const k of opts.firstExact) t.equal(pack.steps[0][k], pad.steps[0][k], `iteration 1 ${k}: the same bits`);
  let worst = 0,
    worstKey = '';
  const missing: string[] = [];
  pad.steps.forEach((m, i) =>
    keys.forEach((k) => {
      if (!Number.isFinite(m[k]) || !Number.isFinite(pack.steps[i][k])) missing.push(`${k} at ${i + 1}`);
      const d = Math.abs(m[k] - pack.steps[i][k]) / Math.max(1, Math.abs(m[k]));
      if (d >= worst) ((worst = d), (worstKey = k));
    }),
  );
  t.same(missing, [], 'every metric logged and finite');
  t.ok(
    worst <= 1e-5,
    `per-iteration ${keys.join(', ')}: max relative difference ${worst.toExponential(2)} (${worstKey})`,
  );
  const dw = maxAbsDiff(pad.policy, pack.policy);
  t.ok(dw <= 1e-5, `policy weights after ${pad.steps.length} iterations: max |Δ| ${dw.toExponential(2)}`);
  if (opts.critic) {
    const dc = maxAbsDiff(pad.critic, pack.critic);
    t.ok(dc <= 1e-5, `critic weights: max |Δ| ${dc.toExponential(2)}`);
  }
}

for (const lossMode of ['vanilla', 'gspo'] as const)
  t.test(`GRPO (${lossMode}) packed equals padded`, async (t) => {
    const runs = await both(
      (policy, _critic, packTokens) =>
        new GroupTrainer({
          policy,
          tokenizer: tok,
          reward,
          prompts,
          iterations: 3,
          promptsPerIteration: 4,
          samplesPerPrompt: 4,
          miniBatchSize: 8,
          epochs: 2,
          sampling: { maxNewTokens: 14, temperature: 1 },
          lr: 1e-2,
          entropyCoef: 0.01,
          kl: { coef: 0.05 },
          lossMode,
          seed: 2,
          ...(packTokens ? { packTokens } : {}),
        } as GroupOptions),
    );
    compare(t, runs, ['policyLoss', 'gradNorm', 'entropy', 'approxKl', 'kl', 'rewardMean'], {
      firstExact: ['rewardMean', 'kl'],
    });
  });

t.test("one minibatch: the first update's losses are the same bits packed and padded", async (t) => {
  const runs = await both(
    (policy, _critic, packTokens) =>
      new GroupTrainer({
        policy,
        tokenizer: tok,
        reward,
        prompts,
        iterations: 1,
        promptsPerIteration: 4,
        samplesPerPrompt: 4,
        sampling: { maxNewTokens: 14, temperature: 1 },
        lr: 1e-2,
        entropyCoef: 0.01,
        kl: { coef: 0.05 },
        seed: 7,
        ...(packTokens ? { packTokens } : {}),
      } as GroupOptions),
  );
  compare(t, runs, ['gradNorm'], { firstExact: ['policyLoss', 'entropy', 'approxKl', 'clipFraction', 'kl'] });
});

t.test('PPO with a critic packed equals padded', async (t) => {
  const runs = await both(
    (policy, critic, packTokens) =>
      new PPOTrainer({
        policy,
        critic,
        tokenizer: tok,
        reward,
        prompts,
        iterations: 3,
        promptsPerIteration: 8,
        miniBatchSize: 4,
        sampling: { maxNewTokens: 14, temperature: 1 },
        lr: 1e-2,
        baseline: 'none',
        seed: 5,
        ...(packTokens ? { packTokens } : {}),
      } as PPOOptions),
  );
  compare(t, runs, ['policyLoss', 'gradNorm', 'valueLoss', 'criticGradNorm', 'kl', 'rewardMean'], {
    critic: true,
    firstExact: ['rewardMean', 'kl', 'shapedRewardMean'],
  });
});

t.test('packTokens is validated', async (t) => {
  const policy = await Model.create(tinyRlConfig(tok), { seed: 1 });
  t.teardown(() => policy.dispose());
  t.throws(() => new GroupTrainer({ policy, tokenizer: tok, reward, prompts, iterations: 1, packTokens: 1 }), {
    name: 'RangeError',
    message: /options\.packTokens to be an integer >= 2, received 1/,
  });
});
